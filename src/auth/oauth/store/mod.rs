//! Where tokens outlive the process (§5 `token_cache.store`): nowhere (`memory`), a file, or
//! Redis shared by a fleet; and, for a shared store, the lock that lets one replica refresh.
//!
//! Invariants: only tokens are stored, never a client secret, password or key; a store's
//! failures are its own business (it logs and counts them) and never fail a caller: the
//! cache carries on in memory; a refresh lock is released only by the holder that took it.

mod entry;
mod file;
mod redis;
mod redis_link;

use std::future::Future;
use std::pin::Pin;

use super::token::AccessToken;

pub use file::FileStore;
pub use redis::RedisStore;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
    /// the lock expires on its own, so a holder that dies blocks nobody for long.
    fn acquire_refresh_lock<'a>(&'a self, _id: &'a str) -> StoreFuture<'a, LockOutcome> {
        Box::pin(async { LockOutcome::Acquired(RefreshLock::unshared()) })
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

/// Proof of holding a refresh lock: the random value stored under the lock key, compared
/// before deleting it. `Debug` never shows it (it would let anyone release the lock).
pub struct RefreshLock {
    owner: String,
}

impl RefreshLock {
    /// A fresh, unguessable owner value.
    fn new() -> Self {
        RefreshLock {
            owner: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    fn unshared() -> Self {
        RefreshLock {
            owner: String::new(),
        }
    }

    fn owner(&self) -> &str {
        &self.owner
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
        let (a, b) = (RefreshLock::new(), RefreshLock::new());
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
}
