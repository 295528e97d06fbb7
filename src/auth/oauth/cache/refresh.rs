//! How the refresher obtains a token: from the store at start, from the token endpoint, or —
//! with a store shared by a fleet — from the replica that holds the store's refresh lock.
//!
//! Invariants: with a shared store at most one replica fetches per credential at a time (the
//! lock holder), and it re-reads the store first, so a token another replica just saved is
//! adopted instead of fetched again; the holder renews its lock's short lease while it works
//! and stops when the work ends (or dies with it), so a dead holder delays the others by one
//! lease at most: they poll the store and the lock every [`LOCK_POLL`] and take over as soon
//! as the lease lapses; a replica that cannot reach the store fetches for itself (memory
//! fallback) rather than wait; a token adopted from the store is usable, not yet due for
//! refresh, not one this replica saw rejected, and of the credential's kind (a stored Bearer
//! token never serves a DPoP credential); every token obtained here is made current before
//! the refresher wakes waiters.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::{LastFetch, TokenSource};
use crate::auth::oauth::client::FetchError;
use crate::auth::oauth::store::{LockOutcome, RefreshLock, Renewal, LOCK_RENEW_EVERY};
use crate::auth::oauth::token::AccessToken;
use crate::metrics::metrics;

/// While another replica holds the refresh lock: how often to look for its token (and
/// whether the lock is free again, expired or released).
pub(super) const LOCK_POLL: Duration = Duration::from_millis(100);

/// A new current token and where it came from (only fetches count as token requests).
pub(super) enum Refreshed {
    Fetched(Arc<AccessToken>),
    Adopted(Arc<AccessToken>),
}

impl TokenSource {
    /// At start: a usable token kept in the store (a restart, or another replica's token)
    /// spares a token request. Waiters already queued are woken.
    pub(super) async fn load_stored(&self) {
        // A token inherited on reload is at least as fresh as the stored one.
        if self.usable(self.clock.now()).is_some() {
            return;
        }
        let Some(token) = self.store.load(&self.store_id).await else {
            return;
        };
        if !self.fits(&token) {
            self.log_misfit(&token);
            return;
        }
        if token.is_usable(self.clock.now()) {
            tracing::info!(
                credential = %self.key,
                expires_at = %humantime::format_rfc3339_seconds(token.expires_at()),
                "using the token kept in the token store"
            );
            metrics().set_token_expiry(&self.key.to_string(), token.expires_at());
            self.current.store(Some(Arc::new(token)));
            self.status.send_replace(LastFetch::Succeeded);
        }
    }

    /// One refresh. `forced` (a reload changed the secret) fetches even when the store holds
    /// a fresh token, so the new secret is proved.
    pub(super) async fn refresh(&self, forced: bool) -> Result<Refreshed, FetchError> {
        if !self.store.is_shared() {
            return self.fetch_and_keep().await;
        }
        loop {
            match self.store.acquire_refresh_lock(&self.store_id).await {
                LockOutcome::Acquired(lock) => {
                    let work = async {
                        match self.adopt_stored(forced).await {
                            Some(token) => Ok(Refreshed::Adopted(token)),
                            None => self.fetch_and_keep().await,
                        }
                    };
                    let refreshed = self.holding(&lock, work).await;
                    // After the save: a replica that takes the lock next reads this token.
                    self.store.release_refresh_lock(&self.store_id, lock).await;
                    return refreshed;
                }
                LockOutcome::HeldElsewhere => {
                    tokio::time::sleep(LOCK_POLL).await;
                    if let Some(token) = self.adopt_stored(false).await {
                        return Ok(Refreshed::Adopted(token));
                    }
                    // Still nothing: try the lock again (its holder may have died: its
                    // lease then lapses within `LOCK_LEASE`).
                }
                LockOutcome::Unavailable => {
                    // The store logged and counted the outage; this replica fetches for
                    // itself and keeps the token in memory (saving would only time out).
                    let token = self.fetch().await?;
                    self.current.store(Some(token.clone()));
                    return Ok(Refreshed::Fetched(token));
                }
            }
        }
    }

    /// Runs `work` while renewing `lock`'s lease every [`LOCK_RENEW_EVERY`]; renewing stops
    /// when `work` ends, when the lock is no longer ours or has been held `lock_timeout`
    /// (the work carries on: a token request already sent is worth its answer).
    async fn holding<T>(&self, lock: &RefreshLock, work: impl Future<Output = T>) -> T {
        let renew = async {
            let mut ticks =
                tokio::time::interval_at(Instant::now() + LOCK_RENEW_EVERY, LOCK_RENEW_EVERY);
            // A renewal that waited out a store timeout is followed by the next one a full
            // interval later, not by a burst.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match self.store.renew_refresh_lock(&self.store_id, lock).await {
                    // Unavailable: the store logged it; the lease may still be in place.
                    Renewal::Renewed | Renewal::Unavailable => {}
                    Renewal::Ended => {
                        tracing::warn!(
                            credential = %self.key,
                            "the refresh lock ran out before the token request ended (held \
                             lock_timeout, or lapsed while the store was unreachable); another \
                             replica may fetch too"
                        );
                        break;
                    }
                }
            }
            // Renewing is over; the work alone decides when this ends.
            std::future::pending::<T>().await
        };
        tokio::select! {
            // The work first: its outcome is never held back by a renewal.
            biased;
            outcome = work => outcome,
            outcome = renew => outcome,
        }
    }

    /// Fetches, makes the token current at once (new callers get it), then saves it.
    async fn fetch_and_keep(&self) -> Result<Refreshed, FetchError> {
        let token = self.fetch().await?;
        self.current.store(Some(token.clone()));
        self.store.save(&self.store_id, &token).await;
        Ok(Refreshed::Fetched(token))
    }

    /// Makes the stored token current if another replica put a better one there: usable,
    /// not due for refresh, and neither the one held here nor the one rejected here.
    pub(super) async fn adopt_stored(&self, forced: bool) -> Option<Arc<AccessToken>> {
        if forced {
            return None;
        }
        let token = self.store.load(&self.store_id).await?;
        if !self.fits(&token) {
            // Not logged: this runs every lock poll; `load_stored` warned at start.
            return None;
        }
        let now = self.clock.now();
        if !token.is_usable(now) || token.refresh_due(self.refresh_at) <= now {
            return None;
        }
        let fingerprint = token.fingerprint();
        if self.rejected.load().as_deref() == Some(&fingerprint) {
            return None;
        }
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|current| current.fingerprint() == fingerprint)
        {
            return None;
        }
        tracing::info!(
            credential = %self.key,
            expires_at = %humantime::format_rfc3339_seconds(token.expires_at()),
            "using the token another replica obtained (shared token store)"
        );
        let token = Arc::new(token);
        self.current.store(Some(token.clone()));
        Some(token)
    }

    /// A stored token of the wrong kind is ignored (and replaced by the next save); says so
    /// without showing it.
    fn log_misfit(&self, token: &AccessToken) {
        tracing::warn!(
            credential = %self.key,
            stored_token_type = token.kind().as_str(),
            required_token_type = self.fetcher.token_kind().as_str(),
            "the token store holds a token of the wrong type for this credential; ignoring it"
        );
    }

    pub(super) async fn fetch(&self) -> Result<Arc<AccessToken>, FetchError> {
        let token = self.fetcher.fetch().await?;
        let now = self.clock.now();
        // A token that is already unusable would make the refresher spin.
        if !token.is_usable(now) {
            return Err(FetchError::Transient(
                "the token answer's expires_in is too short to use".to_owned(),
            ));
        }
        tracing::info!(
            credential = %self.key,
            token_type = token.kind().as_str(),
            expires_in_secs = token.expires_at().duration_since(now).map_or(0, |d| d.as_secs()),
            "OAuth token obtained"
        );
        Ok(Arc::new(token))
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use secrecy::SecretString;

    use super::*;
    use crate::auth::oauth::fake_fetch::FakeFetch;
    use crate::auth::oauth::store::{StoreFuture, TokenStore};
    use crate::auth::oauth::token::TokenKind;

    /// A shared store that always holds one token of `kind` (as one written by an older
    /// gateway, or by a misconfigured replica, could).
    #[derive(Debug)]
    struct Holding(TokenKind);

    impl TokenStore for Holding {
        fn load<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, Option<AccessToken>> {
            let now = SystemTime::now();
            let token = AccessToken::new(
                SecretString::from("stored-token".to_owned()),
                self.0,
                now,
                now + Duration::from_secs(86_400),
            );
            Box::pin(async move { token.ok() })
        }

        fn save<'a>(&'a self, _id: &'a str, _token: &'a AccessToken) -> StoreFuture<'a, ()> {
            Box::pin(async {})
        }

        fn is_shared(&self) -> bool {
            true
        }
    }

    fn dpop_source(stored: TokenKind) -> TokenSource {
        FakeFetch::new(TokenKind::Dpop, Duration::from_secs(300))
            .source_with_store(0.8, Arc::new(Holding(stored)))
    }

    #[tokio::test]
    async fn a_stored_bearer_token_never_serves_a_dpop_credential() {
        let source = dpop_source(TokenKind::Bearer);
        source.load_stored().await;
        assert!(source.current.load().is_none(), "not loaded at start");
        assert!(
            source.adopt_stored(false).await.is_none(),
            "nor adopted later"
        );
        assert!(source.current.load().is_none());
        assert_eq!(*source.status.borrow(), LastFetch::NotYet);
    }

    #[tokio::test]
    async fn a_stored_dpop_token_serves_a_dpop_credential() {
        let source = dpop_source(TokenKind::Dpop);
        source.load_stored().await;
        let current = source.current.load_full().unwrap();
        assert_eq!(current.kind(), TokenKind::Dpop);
    }
}
