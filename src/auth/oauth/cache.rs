//! One credential's token, kept fresh by a background task (§5): callers read it without a
//! lock; only a cold or dropped token makes them wait, and then for one shared fetch.
//!
//! Invariants:
//! - one token request in flight per credential, whatever the number of callers (the
//!   refresher task is the only code that fetches);
//! - a token is never handed out past `usable_until`;
//! - a refresh starts at `refresh_at` of the lifetime, so callers do not wait;
//! - after a failed fetch, callers without a usable token are answered at once (no queue of
//!   callers hanging on a dead token endpoint) and the next fetch waits out a backoff;
//! - a `401` drops a token only if it is still the current one (compare-and-drop), so a
//!   burst of 401s for the same token causes one refresh, and at most once per
//!   [`REFRESH_ON_401_INTERVAL`] ([`reject`]);
//! - only a token of the credential's kind is ever current: DPoP-bound when a DPoP key is
//!   configured, Bearer otherwise, whether fetched, inherited or read from a store;
//! - with a shared store (Redis), one replica of the fleet fetches at a time (it holds the
//!   store's refresh lock) and the others adopt its token from the store ([`refresh`]); a
//!   token rejected here is never adopted back from the store;
//! - a token obtained either way updates the expiry metric and wakes waiters through the
//!   status watch.

mod backoff;
mod refresh;
mod reject;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::client::{FetchError, TOKEN_REQUEST_TIMEOUT};
use super::fetch::{TokenFetch, WallClock};
use super::key::CacheKey;
use super::store::TokenStore;
use super::token::{AccessToken, Fingerprint};
use crate::config::OAuth2Config;
use crate::metrics::metrics;
use backoff::backoff;
use refresh::Refreshed;
use reject::RefreshWindow;
pub use reject::{Rejected, REFRESH_ON_401_INTERVAL};

/// How long a caller with no usable token waits for the fetch in flight: the token request
/// and one nonce round trip.
const WAIT_LIMIT: Duration = Duration::from_secs(2 * TOKEN_REQUEST_TIMEOUT.as_secs() + 1);
/// How often a refresher in backoff looks in a shared store when callers want a token.
const STORE_LOOK_EVERY: Duration = Duration::from_secs(1);
/// The outcome of the most recent fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastFetch {
    NotYet,
    Succeeded,
    Failed(FetchError),
}

/// No usable token for this request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no usable OAuth token: {reason}")]
pub struct TokenUnavailable {
    pub reason: String,
}

pub struct TokenSource {
    key: CacheKey,
    store_id: String,
    /// The credential's settings (a reload compares secrets with them).
    config: Arc<OAuth2Config>,
    refresh_at: f64,
    /// The token request (the OAuth client; a fake in tests).
    fetcher: Box<dyn TokenFetch>,
    /// What "now" is for token lifetimes: the system's wall clock (tests: tokio's).
    clock: WallClock,
    store: Arc<dyn TokenStore>,
    /// The hot path: one atomic load.
    current: ArcSwapOption<AccessToken>,
    /// Bumped after every fetch; waiters watch it.
    status: watch::Sender<LastFetch>,
    /// Callers ask the refresher for a token now (cold cache, token dropped after a 401).
    demand: Notify,
    /// Fetch at once even though the current token is still good: set by a reload that
    /// changed the credential's secret, so the new secret is proved while the inherited
    /// token keeps serving.
    refresh_early: AtomicBool,
    /// The last token the upstream refused: a shared store may still hold it, and adopting
    /// it back would make every replica refetch for it in turn.
    rejected: ArcSwapOption<Fingerprint>,
    /// When a `401` last made this credential fetch: another 401 may not make it fetch
    /// again within [`REFRESH_ON_401_INTERVAL`].
    refresh_window: RefreshWindow,
    /// With tracing on, the server span of a request waiting for the next fetch: that
    /// fetch's span is its child (a scheduled refresh is a root of its own).
    demanded_by: Mutex<Option<opentelemetry::Context>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("credential", &self.key.to_string())
            .field("token", &self.current.load().as_deref())
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// `fetcher` gets the tokens (the OAuth client made from `config`).
    pub fn new(
        key: CacheKey,
        config: Arc<OAuth2Config>,
        fetcher: Box<dyn TokenFetch>,
        store: Arc<dyn TokenStore>,
    ) -> Self {
        TokenSource {
            store_id: key.store_id(),
            key,
            refresh_at: config.refresh_at,
            config,
            fetcher,
            clock: WallClock::System,
            store,
            current: ArcSwapOption::empty(),
            status: watch::Sender::new(LastFetch::NotYet),
            demand: Notify::new(),
            refresh_early: AtomicBool::new(false),
            rejected: ArcSwapOption::empty(),
            refresh_window: RefreshWindow::default(),
            demanded_by: Mutex::new(None),
        }
    }

    /// Reads token lifetimes on `clock` (tests: one that follows paused time).
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// On reload: takes over `previous`'s token (same cache key) so a reload costs no token
    /// request and no caller waits. `secret_changed` asks for a fetch right away with the
    /// new secret, which shows at once whether the new secret works.
    ///
    /// Only a token of this credential's kind is taken, and the 401 refresh window carries
    /// over too: Tango's rate limit does not reset on reload.
    pub fn inherit(&self, previous: &TokenSource, secret_changed: bool) {
        let token = previous
            .usable(self.clock.now())
            .filter(|token| self.fits(token));
        if let Some(token) = token {
            self.current.store(Some(token));
            self.status.send_replace(LastFetch::Succeeded);
        }
        self.refresh_window.inherit(&previous.refresh_window);
        self.refresh_early.store(secret_changed, Ordering::SeqCst);
    }

    /// Whether `token` is of the kind this credential may send (a store shared with other
    /// configurations, or written by an older gateway, could hold a Bearer token under a
    /// DPoP credential's id: it must never be served).
    fn fits(&self, token: &AccessToken) -> bool {
        token.kind() == self.fetcher.token_kind()
    }

    /// The OAuth settings this source fetches with (a reload compares secrets with them).
    pub fn config(&self) -> &OAuth2Config {
        &self.config
    }

    fn usable(&self, now: SystemTime) -> Option<Arc<AccessToken>> {
        self.current.load_full().filter(|t| t.is_usable(now))
    }

    /// The current token if it is usable; otherwise waits for the fetch in flight, or fails
    /// at once when the last fetch failed.
    pub async fn token(&self) -> Result<Arc<AccessToken>, TokenUnavailable> {
        self.token_by(None).await
    }

    /// [`TokenSource::token`], waiting no later than `deadline` (the route's, when it has
    /// one): a cold caller behind a slow refresh — or behind another replica's lock — gives
    /// up when its request's time budget does, never after it.
    pub async fn token_by(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Arc<AccessToken>, TokenUnavailable> {
        self.token_traced(deadline, None).await
    }

    /// [`TokenSource::token_by`] for a traced request (§13): a fetch it has to wait for is
    /// recorded as a child of `trace`, the request's server span.
    pub async fn token_traced(
        &self,
        deadline: Option<Instant>,
        trace: Option<&opentelemetry::Context>,
    ) -> Result<Arc<AccessToken>, TokenUnavailable> {
        if let Some(token) = self.usable(self.clock.now()) {
            return Ok(token);
        }
        // The slow path only: the next fetch is this request's (the latest waiter's).
        self.note_demand(trace);
        let mut status = self.status.subscribe();
        let limit = Instant::now() + WAIT_LIMIT;
        let deadline = deadline.map_or(limit, |deadline| deadline.min(limit));
        loop {
            let last = status.borrow_and_update().clone();
            if let Some(token) = self.usable(self.clock.now()) {
                return Ok(token);
            }
            if let LastFetch::Failed(err) = last {
                // The refresher is backing off; with a shared store another replica may hold
                // a token by now, and this wakes the refresher to look (it does not fetch).
                self.demand.notify_one();
                return Err(TokenUnavailable {
                    reason: err.to_string(),
                });
            }
            self.demand.notify_one();
            match tokio::time::timeout_at(deadline, status.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    return Err(TokenUnavailable {
                        reason: "the token refresher has stopped".to_owned(),
                    })
                }
                Err(_) => {
                    return Err(TokenUnavailable {
                        reason: "no token arrived in time".to_owned(),
                    })
                }
            }
        }
    }

    /// Resolves once there is a usable token or the first fetch has an outcome.
    pub async fn settled(&self) {
        let mut status = self.status.subscribe();
        loop {
            let not_yet = *status.borrow_and_update() == LastFetch::NotYet;
            if !not_yet || self.usable(self.clock.now()).is_some() {
                return;
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    }

    /// Why this credential makes the gateway not ready (§7), if it does.
    pub fn readiness_problem(&self, now: SystemTime) -> Option<String> {
        let usable = self.usable(now).is_some();
        match &*self.status.borrow() {
            // Names the reason alone: the endpoint did not refuse the client, it answered
            // with a token this route cannot use.
            LastFetch::Failed(err @ FetchError::Unusable(_)) => Some(err.to_string()),
            LastFetch::Failed(err) if err.is_permanent() => {
                Some(format!("the token endpoint refuses the credential: {err}"))
            }
            LastFetch::Failed(err) if !usable => Some(format!("no usable token: {err}")),
            LastFetch::NotYet if !usable => Some("no token yet".to_owned()),
            _ => None,
        }
    }

    /// The refresher: loads the stored token, then refreshes whenever a token is due or
    /// demanded, backing off after failures. Runs until aborted.
    pub async fn run(self: Arc<Self>) {
        self.load_stored().await;
        let mut failures: u32 = 0;
        let mut retry_at: Option<Instant> = None;
        // While backing off, callers' demand makes the refresher look in a shared store (at
        // most once per STORE_LOOK_EVERY): another replica may have a token by now, and a
        // replica must not refuse callers for its whole backoff while the fleet has one.
        let mut store_looked: Option<Instant> = None;
        loop {
            let mut forced = false;
            let due = match retry_at {
                Some(at) => at,
                None if self.refresh_early.swap(false, Ordering::SeqCst) => {
                    forced = true;
                    Instant::now()
                }
                None => self.next_refresh(),
            };
            if due > Instant::now() {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    // Re-evaluate: the token may have been dropped.
                    () = self.demand.notified() => {
                        let look = retry_at.is_some()
                            && self.store.is_shared()
                            && store_looked.is_none_or(|at| at.elapsed() >= STORE_LOOK_EVERY);
                        if look {
                            store_looked = Some(Instant::now());
                            if let Some(token) = self.adopt_stored(false).await {
                                metrics().set_token_expiry(&self.key.to_string(), token.expires_at());
                                failures = 0;
                                retry_at = None;
                                self.rejected.store(None);
                                self.status.send_replace(LastFetch::Succeeded);
                            }
                        }
                        continue;
                    }
                }
            }
            let credential = self.key.to_string();
            let span = self.fetch_span(&credential);
            let refreshed = self.refresh(forced).await;
            if let Some(span) = span {
                span.end(match &refreshed {
                    Ok(Refreshed::Fetched(_)) => "success",
                    Ok(Refreshed::Adopted(_)) => "adopted",
                    Err(err) if err.is_permanent() => "refused",
                    Err(_) => "failed",
                });
            }
            match refreshed {
                Ok(refreshed) => {
                    let token = match refreshed {
                        Refreshed::Fetched(token) => {
                            metrics().count_token_request(&credential, "success");
                            token
                        }
                        Refreshed::Adopted(token) => token,
                    };
                    metrics().set_token_expiry(&credential, token.expires_at());
                    failures = 0;
                    retry_at = None;
                    self.rejected.store(None);
                    // `refresh` made it current (and saved it) before this wakes waiters.
                    self.status.send_replace(LastFetch::Succeeded);
                }
                Err(err) => {
                    let outcome = if err.is_permanent() {
                        "refused"
                    } else {
                        "failed"
                    };
                    metrics().count_token_request(&credential, outcome);
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures, err.is_permanent(), &mut rand::rng());
                    retry_at = Some(Instant::now() + delay);
                    self.log_failure(&err, failures, delay);
                    self.status.send_replace(LastFetch::Failed(err));
                }
            }
        }
    }

    /// With tracing on, records `trace` (a request's server span) as the parent of the next
    /// fetch's span.
    fn note_demand(&self, trace: Option<&opentelemetry::Context>) {
        if let Some(trace) = trace {
            *self
                .demanded_by
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(trace.clone());
        }
    }

    /// The span of the fetch about to start, while tracing is on: a child of the request
    /// that demanded it, if one did.
    fn fetch_span(&self, credential: &str) -> Option<crate::telemetry::otel::TokenFetchSpan> {
        crate::telemetry::otel::tracer()?;
        let parent = self
            .demanded_by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        crate::telemetry::otel::TokenFetchSpan::start(
            credential,
            &self.config.token_url,
            parent.as_ref(),
        )
    }

    /// When the refresher should fetch next: at the current token's refresh time, or now.
    /// The due time is a wall-clock date; the wait until it is slept on tokio's clock.
    fn next_refresh(&self) -> Instant {
        let now = self.clock.now();
        match self.usable(now) {
            Some(token) => {
                let wait = token
                    .refresh_due(self.refresh_at)
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO);
                Instant::now() + wait
            }
            None => Instant::now(),
        }
    }
}

#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod tests;
