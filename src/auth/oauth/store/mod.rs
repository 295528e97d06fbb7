//! Where tokens outlive the process (§5 `token_cache.store`): nowhere (`memory`), a file, or
//! Redis shared by a fleet; and, for a shared store, the lock that lets one replica refresh.
//!
//! Invariants: only tokens are stored, never a client secret, password or key; a store's
//! failures are its own business (it logs and counts them) and never fail a caller: the
//! cache carries on in memory; a refresh lock is released and renewed only by the holder that
//! took it; a lock is a short lease ([`LOCK_LEASE`]) its holder renews while it fetches, so a
//! holder that dies holds the fleet up one lease at most, and a live holder keeps it no longer
//! than `lock_timeout` in all.

mod entry;
#[cfg(test)]
pub(crate) mod fake_shared;
mod file;
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use super::token::AccessToken;

pub use file::FileStore;
pub use redis::RedisStore;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a refresh lock lasts unless its holder renews it: the longest a holder that died
/// (SIGKILL, a lost host) holds up the replicas waiting for its token.
pub const LOCK_LEASE: Duration = Duration::from_secs(3);
/// How often a holder renews its lease: a third of it, so one renewal can fail (or be late by
/// a store timeout) and the next still lands before the lease runs out.
pub const LOCK_RENEW_EVERY: Duration = Duration::from_secs(1);

/// A place tokens are kept between restarts and, for a shared store, between replicas.
///
/// The lock methods have defaults for stores no other process shares (memory, file): there
/// is nobody to coordinate with, so the lock is always "acquired" and releasing is a no-op.
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// The token saved under `id`, if there is one (usable or not: the caller decides).
    fn load<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<AccessToken>>;
    fn save<'a>(&'a self, id: &'a str, token: &'a AccessToken) -> StoreFuture<'a, ()>;

    /// Whether other gateway processes use this store: a refresh then goes through
    /// [`TokenStore::acquire_refresh_lock`] so that one replica fetches for the fleet.
    fn is_shared(&self) -> bool {
        false
    }

    /// Tries once (never waits for a holder) to take the refresh lock of credential `id`;
    /// the lock is a lease of [`LOCK_LEASE`] that expires on its own unless renewed, so a
    /// holder that dies blocks nobody for long.
    fn acquire_refresh_lock<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, LockOutcome> {
        Box::pin(async { LockOutcome::Acquired(RefreshLock::unshared()) })
    }

    /// Extends `lock`'s lease by [`LOCK_LEASE`] (never past `lock_timeout` after it was
    /// taken) if it is still held by its taker; its holder calls this every
    /// [`LOCK_RENEW_EVERY`] while it fetches.
    fn renew_refresh_lock<'a>(
        &'a self,
        _id: &'a str,
        _lock: &'a RefreshLock,
    ) -> StoreFuture<'a, Renewal> {
        Box::pin(async { Renewal::Renewed })
    }

    /// Releases `lock` if it is still held by its taker (it may have expired and been taken
    /// by another replica since: that replica's lock is left alone).
    fn release_refresh_lock<'a>(&'a self, _id: &'a str, _lock: RefreshLock) -> StoreFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Checks that the store answers, updating its health; run every few seconds for a
    /// shared store so an outage (and its end) shows without waiting for a refresh.
    fn probe(&self) -> StoreFuture<'_, ()> {
        Box::pin(async {})
    }

    /// A `/readyz` warning while the store is degraded (never a reason: tokens are then
    /// kept in memory and requests keep flowing).
    fn readiness_warning(&self) -> Option<String> {
        None
    }
}

/// The answer to a refresh-lock attempt.
#[derive(Debug)]
pub enum LockOutcome {
    /// This process holds the lock: it fetches, saves, then releases.
    Acquired(RefreshLock),
    /// Another replica is refreshing: read its token from the store instead of fetching.
    HeldElsewhere,
    /// The store does not answer: fetch locally (memory fallback).
    Unavailable,
}

/// The answer to a lease renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease runs for another [`LOCK_LEASE`] (or up to its cap).
    Renewed,
    /// The lock is no longer this holder's (it lapsed, and another replica may hold it now),
    /// or it has been held `lock_timeout` in all: renewing stops, the fetch carries on.
    Ended,
    /// The store does not answer: try again at the next renewal.
    Unavailable,
}

/// Proof of holding a refresh lock: the random value stored under the lock key, compared
/// before renewing or deleting it, and how long it may be held in all. `Debug` never shows
/// the value (it would let anyone release the lock).
pub struct RefreshLock {
    owner: String,
    taken_at: Instant,
    /// `lock_timeout`: a live holder keeps the lock no longer than this after `taken_at`.
    max_hold: Duration,
}

impl RefreshLock {
    /// A fresh, unguessable owner value, for a lock held at most `max_hold` in all.
    fn new(max_hold: Duration) -> Self {
        RefreshLock {
            owner: uuid::Uuid::new_v4().simple().to_string(),
            taken_at: Instant::now(),
            max_hold,
        }
    }

    fn unshared() -> Self {
        RefreshLock {
            owner: String::new(),
            taken_at: Instant::now(),
            max_hold: Duration::ZERO,
        }
    }

    fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease to set now: [`LOCK_LEASE`], cut short so the lock never outlives its cap;
    /// `None` once the cap has passed (the lock is left to lapse).
    fn lease(&self) -> Option<Duration> {
        // Subtracted, never added to an instant: any `lock_timeout` is safe.
        let left = self.max_hold.saturating_sub(self.taken_at.elapsed());
        (!left.is_zero()).then(|| LOCK_LEASE.min(left))
    }
}

impl std::fmt::Debug for RefreshLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshLock([redacted])")
    }
}

/// `store: memory`: the cache itself is the only copy.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl TokenStore for MemoryStore {
    fn load<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, Option<AccessToken>> {
        Box::pin(async { None })
    }

    fn save<'a>(&'a self, _id: &'a str, _token: &'a AccessToken) -> StoreFuture<'a, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_owners_are_random_and_never_shown() {
        let (a, b) = (RefreshLock::new(LOCK_LEASE), RefreshLock::new(LOCK_LEASE));
        assert_ne!(a.owner(), b.owner());
        assert!(a.owner().len() >= 32);
        assert!(!format!("{a:?}").contains(a.owner()));
    }

    #[tokio::test]
    async fn unshared_stores_always_grant_the_lock() {
        let store = MemoryStore;
        assert!(!store.is_shared());
        let outcome = store.acquire_refresh_lock("id").await;
        assert!(matches!(outcome, LockOutcome::Acquired(_)));
        assert!(store.readiness_warning().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_short_and_never_runs_past_the_lock_timeout() {
        let lock = RefreshLock::new(Duration::from_secs(20));
        assert_eq!(lock.lease(), Some(LOCK_LEASE));
        tokio::time::advance(Duration::from_millis(18_500)).await;
        assert_eq!(
            lock.lease(),
            Some(Duration::from_millis(1_500)),
            "cut to the cap"
        );
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(lock.lease(), None, "held lock_timeout in all: not renewed");
        let short = RefreshLock::new(Duration::from_secs(1));
        assert_eq!(short.lease(), Some(Duration::from_secs(1)));
        assert!(LOCK_RENEW_EVERY * 3 <= LOCK_LEASE);
    }
}
