//! OAuth 2.0 access tokens, optionally DPoP-bound (§5): the per-attempt step that presents
//! them, and the registry that shares one token per credential across routes.
//!
//! Pieces: [`token`] (a token and its lifetime), [`key`] (what makes routes share a token),
//! [`client`] (the token request), [`cache`] (single flight, background refresh,
//! compare-and-drop), [`store`] (memory or file), [`nonce`] (DPoP nonces per origin).
//!
//! Invariants: every attempt carries the current token and, with DPoP, a proof made for that
//! attempt alone (new `jti`, its own `htu`, `ath`); a `401` is answered at most once by a
//! nonce round trip and at most once by a new token; nothing here logs a token or proof.

pub mod cache;
pub mod client;
pub mod key;
pub mod nonce;
pub mod store;
pub mod token;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response, StatusCode};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

use crate::auth::dpop::{DpopError, DpopKey};
use crate::body::{clone_request, Payload, ResponseBody};
use crate::config::{DpopKeyConfig, OAuth2Config, TokenCacheConfig};
use crate::context::RequestContext;
use crate::error::{BoxError, ErrorCode, GatewayError};
use crate::upstream::tls::TlsSetupError;
use cache::TokenSource;
use client::TokenClient;
use key::CacheKey;
use nonce::Nonces;
use store::{FileStore, MemoryStore, TokenStore};
use token::{AccessToken, TokenKind};

pub const DPOP_HEADER: &str = "dpop";

#[derive(Debug, thiserror::Error)]
pub enum OAuthSetupError {
    #[error("dpop.key_file: {0}")]
    DpopKeyFile(String),
    #[error("dpop: {0}")]
    DpopKey(#[from] DpopError),
    #[error("token endpoint TLS: {0}")]
    Tls(#[from] TlsSetupError),
}

/// The credentials of one OAuth route.
#[derive(Debug, Clone)]
pub struct OAuthCredentials {
    source: Arc<TokenSource>,
    dpop: Option<Arc<DpopKey>>,
    nonces: Arc<Nonces>,
}

impl OAuthCredentials {
    /// Sends one attempt with the current token, answering a DPoP nonce challenge once and
    /// a rejected token once (a `401` means the API refused the request before acting on
    /// it, so resending is safe whatever the method).
    pub async fn send<S>(
        &self,
        mut request: Request<Payload>,
        mut inner: S,
    ) -> Result<Response<ResponseBody>, BoxError>
    where
        S: Service<Request<Payload>, Response = Response<ResponseBody>, Error = BoxError>,
    {
        let mut token = self.token().await?;
        let mut nonce_retry_left = self.dpop.is_some();
        let mut refresh_retry_left = true;
        let origin = nonce::origin(request.uri()).unwrap_or_default();
        loop {
            let spare = (nonce_retry_left || refresh_retry_left)
                .then(|| clone_request(&request))
                .flatten();
            self.present(&mut request, &token, &origin)?;
            let response = inner.ready().await?.call(request).await?;
            if self.dpop.is_some() {
                self.nonces.remember(&origin, response.headers());
            }
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let Some(next) = spare else {
                return Ok(response);
            };
            if is_nonce_challenge(response.headers()) {
                // Same token, new proof carrying the nonce just remembered (§9).
                if !nonce_retry_left {
                    return Ok(response);
                }
                nonce_retry_left = false;
            } else {
                if !refresh_retry_left {
                    return Ok(response);
                }
                refresh_retry_left = false;
                self.source.reject(&token);
                token = self.token().await?;
            }
            if let Some(context) = next.extensions().get::<Arc<RequestContext>>() {
                context.start_attempt();
            }
            request = next;
        }
    }

    async fn token(&self) -> Result<Arc<AccessToken>, GatewayError> {
        self.source.token().await.map_err(|_| {
            GatewayError::new(
                ErrorCode::CredentialsUnavailable,
                "no usable OAuth token for this route; the token endpoint is failing \
                 (see the gateway's log and /readyz)",
            )
        })
    }

    /// Sets `Authorization` and, for a DPoP-bound token, this attempt's proof (with the
    /// latest nonce of `origin`, the request's `scheme://authority`).
    fn present(
        &self,
        request: &mut Request<Payload>,
        token: &AccessToken,
        origin: &str,
    ) -> Result<(), GatewayError> {
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, token.authorization().clone());
        headers.remove(DPOP_HEADER);
        if token.kind() != TokenKind::Dpop {
            return Ok(());
        }
        let key = self.dpop.as_ref().ok_or_else(proof_failure)?;
        let nonce = self.nonces.get(origin);
        let proof = key
            .proof(
                request.method(),
                request.uri(),
                Some(token.secret().expose_secret()),
                nonce.as_deref(),
                SystemTime::now(),
            )
            .map_err(|_| proof_failure())?;
        request.headers_mut().insert(DPOP_HEADER, proof);
        Ok(())
    }
}

fn proof_failure() -> GatewayError {
    GatewayError::new(
        ErrorCode::CredentialsUnavailable,
        "cannot make a DPoP proof for this request",
    )
}

/// `WWW-Authenticate: DPoP error="use_dpop_nonce"` (RFC 9449 §9).
fn is_nonce_challenge(headers: &HeaderMap) -> bool {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.trim_start();
            v.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("dpop"))
                && v.contains("use_dpop_nonce")
        })
}

/// Every credential of one configuration: token sources shared by key, the DPoP nonces and
/// the token store. Built without a runtime (`check` uses it); `start` spawns the refreshers.
#[derive(Debug)]
pub struct TokenSources {
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
}

impl TokenSources {
    /// `previous` is the configuration a reload replaces: its nonces, ephemeral DPoP keys
    /// and tokens carry over to credentials with the same cache key.
    pub fn new(cache: &TokenCacheConfig, previous: Option<&TokenSources>) -> Self {
        let store: Arc<dyn TokenStore> = match cache {
            TokenCacheConfig::Memory => Arc::new(MemoryStore),
            TokenCacheConfig::File { path } => Arc::new(FileStore::new(path.clone())),
            TokenCacheConfig::Redis { .. } => {
                tracing::warn!(
                    "token_cache.store: redis is not available in this version; tokens are \
                     cached in memory (each replica fetches its own)"
                );
                Arc::new(MemoryStore)
            }
        };
        TokenSources {
            store,
            nonces: previous.map_or_else(Default::default, |p| p.nonces.clone()),
            by_key: HashMap::new(),
            ephemeral_keys: previous.map_or_else(HashMap::new, |p| p.ephemeral_keys.clone()),
            previous: previous.map_or_else(HashMap::new, |p| p.by_key.clone()),
            routes: Vec::new(),
        }
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
                let client =
                    TokenClient::new(Arc::new(config.clone()), dpop.clone(), self.nonces.clone())?;
                let source = Arc::new(TokenSource::new(
                    key.clone(),
                    config.refresh_at,
                    client,
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
        Ok(OAuthCredentials {
            source,
            dpop,
            nonces: self.nonces.clone(),
        })
    }

    /// Lets go of the replaced configuration's sources once every route is built, so a
    /// chain of reloads does not keep old generations alive.
    pub fn forget_previous(&mut self) {
        self.previous.clear();
    }

    /// Starts one refresher per credential; they stop when the returned guard is dropped.
    pub fn start(&self) -> Refreshers {
        let tasks = self
            .by_key
            .values()
            .map(|source| tokio::spawn(source.clone().run()))
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn nonce_challenge_is_recognised_only_for_dpop() {
        let mut headers = HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="use_dpop_nonce", error_description="x""#),
        );
        assert!(is_nonce_challenge(&headers));
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="invalid_token""#),
        );
        assert!(!is_nonce_challenge(&headers));
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="use_dpop_nonce""#),
        );
        assert!(!is_nonce_challenge(&headers));
    }
}
