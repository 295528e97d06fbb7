//! What a `401` from the API does to the cache (§5, §12): the rejected token is dropped only
//! if it is still the current one, and a drop (hence a token request) happens at most once per
//! [`REFRESH_ON_401_INTERVAL`] per credential.
//!
//! Invariants: a burst of 401s for one token drops it once, and every request of the burst
//! may be resent with the token that replaces it; within the interval after a 401-triggered
//! drop, a 401 on the current token leaves it in place and makes no token request (the
//! caller gets Tango's 401); the check and the drop happen under one lock, so two 401s can
//! never both pass the check; background refresh-ahead and DPoP nonce challenges never go
//! through here.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::TokenSource;
use crate::auth::oauth::token::AccessToken;

/// A `401` may make a credential fetch a new token at most once per this interval (§12).
/// Tango rate-limits token issuance: an API that refuses every token (a client disabled on
/// its side, say) would otherwise turn each caller request into a token request and get the
/// client throttled at the token endpoint too. Ten seconds keeps a genuinely revoked token's
/// recovery immediate while bounding the damage to six token requests a minute.
pub const REFRESH_ON_401_INTERVAL: Duration = Duration::from_secs(10);

/// What [`TokenSource::reject`] did with a rejected token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// This call dropped it; a new token is being fetched: resend with that one.
    Dropped,
    /// It is no longer the current token (a concurrent 401 dropped it, or a refresh replaced
    /// it): resend with whatever token is current now, without a fetch of its own.
    AlreadyReplaced,
    /// A `401` made this credential fetch less than [`REFRESH_ON_401_INTERVAL`] ago: the
    /// token stays, and the 401 goes to the caller as Tango's answer.
    RateLimited,
}

/// When a `401` last made the credential drop its token.
#[derive(Debug, Default)]
pub(super) struct RefreshWindow {
    /// A std mutex: held for a few loads and stores, never across an await.
    last_drop: Mutex<Option<Instant>>,
}

impl RefreshWindow {
    /// On reload: the new source of the same credential keeps the old one's window.
    pub(super) fn inherit(&self, previous: &RefreshWindow) {
        let previous = *previous
            .last_drop
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *self
            .last_drop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = previous;
    }
}

/// Whether a drop at `last` still closes the window at `now`.
fn within_interval(last: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|at| now.saturating_duration_since(at) < REFRESH_ON_401_INTERVAL)
}

impl TokenSource {
    /// The upstream refused `rejected` (401, not a nonce challenge): drops it if it is still
    /// the current token and no 401 has made this credential fetch within
    /// [`REFRESH_ON_401_INTERVAL`], and asks the refresher for a new one.
    pub fn reject(&self, rejected: &Arc<AccessToken>) -> Rejected {
        self.reject_traced(rejected, None)
    }

    /// [`TokenSource::reject`] for a traced request (§13): the fetch it causes is recorded
    /// as a child of `trace`, the request's server span.
    pub fn reject_traced(
        &self,
        rejected: &Arc<AccessToken>,
        trace: Option<&opentelemetry::Context>,
    ) -> Rejected {
        // Held across the check and the drop: a concurrent 401 then either sees the token
        // gone (and resends with the next one) or finds the window closed, never both open.
        let mut last_drop = self
            .refresh_window
            .last_drop
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let is_current = self
            .current
            .load()
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, rejected));
        if !is_current {
            return Rejected::AlreadyReplaced;
        }
        let now = Instant::now();
        if within_interval(*last_drop, now) {
            tracing::debug!(
                credential = %self.key,
                interval_secs = REFRESH_ON_401_INTERVAL.as_secs(),
                "the upstream refused the current token (401) again within the interval \
                 after a 401 refresh; the 401 goes to the caller"
            );
            return Rejected::RateLimited;
        }
        // Remembered before the drop, so the refresher can never adopt it back from a
        // shared store in between.
        self.rejected.store(Some(Arc::new(rejected.fingerprint())));
        let previous = self
            .current
            .compare_and_swap(&Some(rejected.clone()), None::<Arc<AccessToken>>);
        if !previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, rejected)) {
            // The refresher replaced it since the check above.
            return Rejected::AlreadyReplaced;
        }
        *last_drop = Some(now);
        drop(last_drop);
        tracing::info!(
            credential = %self.key,
            "the upstream refused the current token (401); fetching a new one"
        );
        // Before the refresher is woken, so the fetch it starts knows whose it is.
        self.note_demand(trace);
        self.demand.notify_one();
        Rejected::Dropped
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use secrecy::SecretString;

    use super::*;
    use crate::auth::oauth::cache::LastFetch;
    use crate::auth::oauth::fake_fetch::FakeFetch;
    use crate::auth::oauth::token::TokenKind;

    fn source() -> TokenSource {
        FakeFetch::new(TokenKind::Dpop, Duration::from_secs(86_400)).source(0.8)
    }

    fn token(value: &str) -> Arc<AccessToken> {
        let now = SystemTime::now();
        let token = AccessToken::new(
            SecretString::from(value.to_owned()),
            TokenKind::Dpop,
            now,
            now + Duration::from_secs(86_400),
        );
        Arc::new(token.unwrap())
    }

    /// What the refresher does once it has a token: makes it current, tells the waiters.
    fn install(source: &TokenSource, token: &Arc<AccessToken>) {
        source.current.store(Some(token.clone()));
        source.status.send_replace(LastFetch::Succeeded);
    }

    fn is_current(source: &TokenSource, token: &Arc<AccessToken>) -> bool {
        source
            .current
            .load()
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, token))
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_refreshes_at_most_once_per_interval() {
        let source = source();
        let (first, second, third) = (token("t1"), token("t2"), token("t3"));
        install(&source, &first);
        assert_eq!(source.reject(&first), Rejected::Dropped);
        assert!(
            source.current.load().is_none(),
            "dropped: the refresher fetches"
        );
        // A burst: the other requests that carried `first` resend with the next token.
        assert_eq!(source.reject(&first), Rejected::AlreadyReplaced);
        install(&source, &second);
        assert_eq!(source.reject(&first), Rejected::AlreadyReplaced);

        // The new token is refused too, within the interval: it stays, nothing is fetched.
        tokio::time::advance(REFRESH_ON_401_INTERVAL - Duration::from_millis(1)).await;
        assert_eq!(source.reject(&second), Rejected::RateLimited);
        assert!(is_current(&source, &second));

        // Once the interval has passed, the next 401 refreshes again (and opens a new one).
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(source.reject(&second), Rejected::Dropped);
        install(&source, &third);
        assert_eq!(source.reject(&third), Rejected::RateLimited);
        assert!(is_current(&source, &third));
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_survives_a_reload() {
        let old = source();
        let first = token("t1");
        install(&old, &first);
        assert_eq!(old.reject(&first), Rejected::Dropped);
        let second = token("t2");
        install(&old, &second);
        let new = source();
        new.inherit(&old, false);
        assert!(is_current(&new, &second), "the token carries over");
        assert_eq!(new.reject(&second), Rejected::RateLimited);
        tokio::time::advance(REFRESH_ON_401_INTERVAL).await;
        assert_eq!(new.reject(&second), Rejected::Dropped);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_401_wakes_no_refresher() {
        let source = Arc::new(source());
        let first = token("t1");
        install(&source, &first);
        assert_eq!(source.reject(&first), Rejected::Dropped);
        // Take the notification the drop left for the refresher.
        source.demand.notified().await;
        let second = token("t2");
        install(&source, &second);
        assert_eq!(source.reject(&second), Rejected::RateLimited);
        let woken = tokio::time::timeout(Duration::from_secs(60), source.demand.notified());
        assert!(woken.await.is_err(), "no token request was asked for");
    }
}
