//! A scripted [`TokenFetch`] for unit tests under paused time (test builds only): counts the
//! fetches and notes when each started, answers after a virtual delay, fails on demand, and
//! dates its tokens on the test's wall clock, so token lifetimes move with paused time.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;

use super::cache::TokenSource;
use super::client::FetchError;
use super::fetch::{FetchFuture, TokenFetch, WallClock};
use super::key::CacheKey;
use super::store::{MemoryStore, TokenStore};
use super::token::{AccessToken, TokenKind};
use crate::config::{ClientAuthMethod, OAuth2Config, OAuthGrant, TlsConfig};

/// A handle on one fake token endpoint; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct FakeFetch(Arc<Script>);

#[derive(Debug)]
struct Script {
    kind: TokenKind,
    clock: WallClock,
    lifetime: Mutex<Duration>,
    delay: Mutex<Duration>,
    failure: Mutex<Option<FetchError>>,
    started: Mutex<Vec<Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeFetch {
    /// Answers at once with tokens of `kind` that live `lifetime`, on a wall clock that
    /// follows tokio's from now. The tokens are `token-1`, `token-2`, ... in fetch order.
    pub(crate) fn new(kind: TokenKind, lifetime: Duration) -> Self {
        FakeFetch(Arc::new(Script {
            kind,
            clock: WallClock::following_tokio(),
            lifetime: Mutex::new(lifetime),
            delay: Mutex::new(Duration::ZERO),
            failure: Mutex::new(None),
            started: Mutex::new(Vec::new()),
        }))
    }

    /// The wall clock the tokens are dated on (the source under test reads it too).
    pub(crate) fn clock(&self) -> WallClock {
        self.0.clock
    }

    /// Fetches from now on answer `delay` after they start.
    pub(crate) fn set_delay(&self, delay: Duration) {
        *lock(&self.0.delay) = delay;
    }

    /// Fetches from now on fail with `failure` (succeed again with `None`).
    pub(crate) fn fail_with(&self, failure: Option<FetchError>) {
        *lock(&self.0.failure) = failure;
    }

    /// How many fetches have started.
    pub(crate) fn calls(&self) -> usize {
        lock(&self.0.started).len()
    }

    /// When each fetch started.
    pub(crate) fn started(&self) -> Vec<Instant> {
        lock(&self.0.started).clone()
    }

    /// A token source on this fetcher: memory store, refresh at `refresh_at` of a lifetime.
    pub(crate) fn source(&self, refresh_at: f64) -> TokenSource {
        self.source_with_store(refresh_at, Arc::new(MemoryStore))
    }

    pub(crate) fn source_with_store(
        &self,
        refresh_at: f64,
        store: Arc<dyn TokenStore>,
    ) -> TokenSource {
        let config = Arc::new(config(refresh_at));
        let thumbprint = (self.0.kind == TokenKind::Dpop).then_some("fake-thumbprint");
        let key = CacheKey::new(&config, thumbprint);
        TokenSource::new(key, config, Box::new(self.clone()), store).with_clock(self.0.clock)
    }
}

impl TokenFetch for FakeFetch {
    fn fetch(&self) -> FetchFuture<'_> {
        let script = self.0.clone();
        Box::pin(async move {
            let number = {
                let mut started = lock(&script.started);
                started.push(Instant::now());
                started.len()
            };
            let failure = lock(&script.failure).clone();
            let delay = *lock(&script.delay);
            let lifetime = *lock(&script.lifetime);
            // Dated when the request is sent, as the real client does.
            let obtained_at = script.clock.now();
            tokio::time::sleep(delay).await;
            if let Some(failure) = failure {
                return Err(failure);
            }
            AccessToken::new(
                SecretString::from(format!("token-{number}")),
                script.kind,
                obtained_at,
                obtained_at + lifetime,
            )
            .map_err(|_| FetchError::Transient("unusable token text".to_owned()))
        })
    }

    fn token_kind(&self) -> TokenKind {
        self.0.kind
    }
}

/// A client-credentials configuration (never used to reach anything).
fn config(refresh_at: f64) -> OAuth2Config {
    OAuth2Config {
        token_url: http::Uri::from_static("https://auth.example/oauth/token"),
        grant: OAuthGrant::ClientCredentials,
        client_id: "client".to_owned(),
        client_secret: SecretString::from("client-secret".to_owned()),
        username: None,
        password: None,
        audience: None,
        scope: None,
        client_auth: ClientAuthMethod::Post,
        refresh_at,
        dpop: None,
        dpop_clock: Default::default(),
        tls: TlsConfig::default(),
        proxy: None,
    }
}
