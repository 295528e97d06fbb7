//! One configuration's OAuth credentials: token sources shared by cache key, the DPoP nonces,
//! ephemeral DPoP keys and the token store; what a reload carries over; what `/readyz` shows.
//!
//! Invariants: routes with the same cache key share one source (one token, one refresher); a
//! reload keeps tokens, nonces and ephemeral keys of unchanged credentials, and keeps the
//! store itself when `token_cache` did not change (one Redis connection, one outage log); an
//! unreachable shared store is a readiness warning, never a reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;
use tokio::task::JoinHandle;

use super::cache::TokenSource;
use super::client::TokenClient;
use super::key::CacheKey;
use super::nonce::Nonces;
use super::store::{FileStore, MemoryStore, RedisStore, TokenStore};
use super::{OAuthCredentials, OAuthSetupError};
use crate::auth::basic::{BasicCredentials, BasicRoutes, InvalidBasicCredentials};
use crate::auth::dpop::DpopKey;
use crate::config::{BasicAuthConfig, DpopKeyConfig, OAuth2Config, TokenCacheConfig};

/// How often a shared store is checked while credentials use it, so an outage and its end
/// show in logs, metrics and `/readyz` without waiting for a token refresh.
const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Every credential of one configuration: token sources shared by key, the DPoP nonces and
/// the token store. Built without a runtime (`check` uses it); `start` spawns the refreshers.
#[derive(Debug)]
pub struct TokenSources {
    /// The `token_cache` settings the store was made from: a reload with the same settings
    /// keeps the store.
    cache: TokenCacheConfig,
    store: Arc<dyn TokenStore>,
    nonces: Arc<Nonces>,
    by_key: HashMap<CacheKey, Arc<TokenSource>>,
    /// Ephemeral DPoP keys by the cache key they serve (without a thumbprint): routes with the
    /// same credential share one key, hence one token, and a reload keeps them.
    ephemeral_keys: HashMap<CacheKey, Arc<DpopKey>>,
    /// What a reload inherits from: the sources of the configuration being replaced.
    previous: HashMap<CacheKey, Arc<TokenSource>>,
    /// (route name, source) in file order, for `/readyz`.
    routes: Vec<(String, Arc<TokenSource>)>,
    /// The Basic routes' credentials: a reload keeps the key in use (§11) of unchanged keys.
    basic: BasicRoutes,
}

impl TokenSources {
    /// `previous` is the configuration a reload replaces: its nonces, ephemeral DPoP keys
    /// and tokens carry over to credentials with the same cache key.
    pub fn new(cache: &TokenCacheConfig, previous: Option<&TokenSources>) -> Self {
        let store = match previous {
            Some(previous) if previous.cache == *cache => previous.store.clone(),
            _ => make_store(cache),
        };
        TokenSources {
            cache: cache.clone(),
            store,
            nonces: previous.map_or_else(Default::default, |p| p.nonces.clone()),
            by_key: HashMap::new(),
            ephemeral_keys: previous.map_or_else(HashMap::new, |p| p.ephemeral_keys.clone()),
            previous: previous.map_or_else(HashMap::new, |p| p.by_key.clone()),
            routes: Vec::new(),
            basic: BasicRoutes::new(previous.map(|p| &p.basic)),
        }
    }

    /// The Basic credentials of route `route` (kept here so a reload can hand them on).
    pub fn basic(
        &mut self,
        route: &str,
        config: &BasicAuthConfig,
    ) -> Result<Arc<BasicCredentials>, InvalidBasicCredentials> {
        self.basic.credentials(route, config)
    }

    /// The credentials of route `route`, sharing the token source of any earlier route with
    /// the same cache key.
    pub fn credentials(
        &mut self,
        route: &str,
        config: &OAuth2Config,
    ) -> Result<OAuthCredentials, OAuthSetupError> {
        let dpop = match &config.dpop {
            None => None,
            Some(DpopKeyConfig::Ephemeral) => {
                let unbound = CacheKey::new(config, None);
                match self.ephemeral_keys.get(&unbound) {
                    Some(key) => Some(key.clone()),
                    None => {
                        let key = Arc::new(DpopKey::generate()?);
                        self.ephemeral_keys.insert(unbound, key.clone());
                        Some(key)
                    }
                }
            }
            Some(DpopKeyConfig::KeyFile(path)) => {
                let der =
                    crate::certs::load_dpop_key(path).map_err(OAuthSetupError::DpopKeyFile)?;
                Some(Arc::new(DpopKey::from_pkcs8_der(der.secret_der())?))
            }
        };
        let key = CacheKey::new(config, dpop.as_ref().map(|k| k.thumbprint()));
        let source = match self.by_key.get(&key) {
            Some(source) => source.clone(),
            None => {
                let shared = Arc::new(config.clone());
                let client = TokenClient::new(shared.clone(), dpop.clone(), self.nonces.clone())?;
                let source = Arc::new(TokenSource::new(
                    key.clone(),
                    shared,
                    Box::new(client),
                    self.store.clone(),
                ));
                if let Some(previous) = self.previous.get(&key) {
                    source.inherit(previous, !same_secrets(previous.config(), config));
                }
                self.by_key.insert(key, source.clone());
                source
            }
        };
        self.routes.push((route.to_owned(), source.clone()));
        Ok(OAuthCredentials::new(source, dpop, self.nonces.clone())
            .with_dpop_clock(config.dpop_clock))
    }

    /// Lets go of the replaced configuration's sources once every route is built, so a
    /// chain of reloads does not keep old generations alive.
    pub fn forget_previous(&mut self) {
        self.previous.clear();
        self.basic.forget_previous();
    }

    /// Starts one refresher per credential, and the probe of a shared store that some
    /// credential uses; they stop when the returned guard is dropped.
    pub fn start(&self) -> Refreshers {
        let mut tasks: Vec<JoinHandle<()>> = self
            .by_key
            .values()
            .map(|source| tokio::spawn(source.clone().run()))
            .collect();
        if self.store.is_shared() && !self.by_key.is_empty() {
            let store = self.store.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    store.probe().await;
                    tokio::time::sleep(STORE_PROBE_INTERVAL).await;
                }
            }));
        }
        Refreshers { tasks }
    }

    /// Waits, at most `limit`, until every credential has a token or a first fetch outcome:
    /// a reload puts new credentials in service only once they had their chance.
    pub async fn settled(&self, limit: std::time::Duration) -> bool {
        let all = futures_util::future::join_all(self.by_key.values().map(|s| s.settled()));
        tokio::time::timeout(limit, all).await.is_ok()
    }

    /// Reasons for `/readyz`, one per OAuth route without a usable token.
    pub fn readiness_problems(&self, now: SystemTime) -> Vec<String> {
        self.routes
            .iter()
            .filter_map(|(route, source)| {
                source
                    .readiness_problem(now)
                    .map(|problem| format!("route {route}: OAuth: {problem}"))
            })
            .collect()
    }

    /// Warnings for `/readyz` (it stays 200): a shared token store that does not answer, a
    /// Basic route on its fallback key.
    pub fn readiness_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.by_key.is_empty() {
            warnings.extend(self.store.readiness_warning());
        }
        warnings.extend(self.basic.readiness_warnings(tokio::time::Instant::now()));
        warnings
    }
}

/// The store `token_cache` names. A Redis URL that the client refuses (validation checks it,
/// so only a bug gets here) leaves tokens in memory rather than failing the gateway.
fn make_store(cache: &TokenCacheConfig) -> Arc<dyn TokenStore> {
    match cache {
        TokenCacheConfig::Memory => Arc::new(MemoryStore),
        TokenCacheConfig::File { path } => Arc::new(FileStore::new(path.clone())),
        TokenCacheConfig::Redis {
            url,
            key_prefix,
            lock_timeout,
        } => match RedisStore::new(url, key_prefix, *lock_timeout) {
            Ok(store) => Arc::new(store),
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "tokens are cached in memory on this replica (each replica fetches its own)"
                );
                Arc::new(MemoryStore)
            }
        },
    }
}

/// Whether a reload left the credential's secrets as they were (compared in memory only).
fn same_secrets(old: &OAuth2Config, new: &OAuth2Config) -> bool {
    fn password(c: &OAuth2Config) -> Option<&str> {
        c.password.as_ref().map(|p| p.expose_secret())
    }
    old.client_secret.expose_secret() == new.client_secret.expose_secret()
        && password(old) == password(new)
}

/// The refresher tasks of one configuration; aborted on drop (on shutdown, or when a reload
/// replaces the configuration).
#[derive(Debug)]
pub struct Refreshers {
    tasks: Vec<JoinHandle<()>>,
}

impl Refreshers {
    pub fn abort_all(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Refreshers {
    fn drop(&mut self) {
        self.abort_all();
    }
}
