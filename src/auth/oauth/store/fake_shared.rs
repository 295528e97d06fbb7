//! A store shared by a fleet, in memory, for paused-time tests (test builds only): the Redis
//! store's lock rules — taken only if free, renewed and released only by its owner, a lease
//! that lapses on tokio's clock and is never renewed past `lock_timeout` — so lock renewal
//! and takeover are tested with exact virtual time, and the replicas are token sources in one
//! process.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::{LockOutcome, RefreshLock, Renewal, StoreFuture, TokenStore, LOCK_LEASE};
use crate::auth::oauth::token::AccessToken;

/// One store; clones share it (one per replica, like one Redis behind a fleet).
#[derive(Debug, Clone)]
pub(crate) struct FakeShared(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// `lock_timeout`.
    max_hold: Duration,
    token: Mutex<Option<AccessToken>>,
    lock: Mutex<Option<Held>>,
    renewals: Mutex<usize>,
}

#[derive(Debug)]
struct Held {
    owner: String,
    until: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The same token (a stored copy, as a store's reader gets).
fn copy(token: &AccessToken) -> Option<AccessToken> {
    AccessToken::new(
        SecretString::from(token.secret().expose_secret().to_owned()),
        token.kind(),
        token.obtained_at(),
        token.expires_at(),
    )
    .ok()
}

impl FakeShared {
    pub(crate) fn new(lock_timeout: Duration) -> Self {
        FakeShared(Arc::new(Shared {
            max_hold: lock_timeout,
            token: Mutex::new(None),
            lock: Mutex::new(None),
            renewals: Mutex::new(0),
        }))
    }

    /// How many renewals have extended a lease.
    pub(crate) fn renewals(&self) -> usize {
        *lock(&self.0.renewals)
    }

    /// How long the lock has left, if it is held.
    pub(crate) fn lock_left(&self) -> Option<Duration> {
        let now = Instant::now();
        lock(&self.0.lock)
            .as_ref()
            .filter(|held| held.until > now)
            .map(|held| held.until - now)
    }

    /// The lock if it is held and its lease has not lapsed.
    fn live(&self) -> MutexGuard<'_, Option<Held>> {
        let mut held = lock(&self.0.lock);
        if held.as_ref().is_some_and(|h| h.until <= Instant::now()) {
            *held = None;
        }
        held
    }
}

impl TokenStore for FakeShared {
    fn load<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, Option<AccessToken>> {
        let token = lock(&self.0.token).as_ref().and_then(copy);
        Box::pin(async move { token })
    }

    fn save<'a>(&'a self, _id: &'a str, token: &'a AccessToken) -> StoreFuture<'a, ()> {
        *lock(&self.0.token) = copy(token);
        Box::pin(async {})
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn acquire_refresh_lock<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, LockOutcome> {
        let mut held = self.live();
        let outcome = if held.is_some() {
            LockOutcome::HeldElsewhere
        } else {
            let taken = RefreshLock::new(self.0.max_hold);
            *held = Some(Held {
                owner: taken.owner().to_owned(),
                until: Instant::now() + taken.lease().unwrap_or(LOCK_LEASE),
            });
            LockOutcome::Acquired(taken)
        };
        Box::pin(async move { outcome })
    }

    fn renew_refresh_lock<'a>(
        &'a self,
        _id: &'a str,
        taken: &'a RefreshLock,
    ) -> StoreFuture<'a, Renewal> {
        let mut held = self.live();
        let renewal = match (held.as_mut(), taken.lease()) {
            (Some(h), Some(lease)) if h.owner == taken.owner() => {
                h.until = Instant::now() + lease;
                *lock(&self.0.renewals) += 1;
                Renewal::Renewed
            }
            _ => Renewal::Ended,
        };
        Box::pin(async move { renewal })
    }

    fn release_refresh_lock<'a>(&'a self, _id: &'a str, taken: RefreshLock) -> StoreFuture<'a, ()> {
        let mut held = self.live();
        if held.as_ref().is_some_and(|h| h.owner == taken.owner()) {
            *held = None;
        }
        Box::pin(async {})
    }
}
