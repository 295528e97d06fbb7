//! `token_cache.store: redis` (§5): a fleet of replicas shares one token per credential, and a
//! refresh lock, a short lease renewed by its holder, lets one replica at a time fetch for the
//! fleet.
//!
//! Keys: `{prefix}token:{store_id}` holds the token entry (the file store's JSON entry) and
//! expires with the token; `{prefix}lock:{store_id}` holds a random owner value and expires
//! after [`LOCK_LEASE`] unless its holder renews it (every
//! [`LOCK_RENEW_EVERY`](super::LOCK_RENEW_EVERY) while it fetches), and never later than
//! `lock_timeout` after it was taken. `prefix` is `key_prefix` followed by `:` (unless empty
//! or already ending in `:`).
//!
//! Invariants: a lock is taken only if free (`SET NX PX`), renewed and deleted only by its
//! owner (compare-and-PEXPIRE, compare-and-delete, each one Lua script, so a lapsed lock
//! taken by another replica is never extended or deleted); a holder that dies blocks the
//! fleet at most one lease, a live one at most `lock_timeout`; Redis being down is never an
//! error for a caller (operations give up after a short timeout and the cache carries on in
//! memory).

use std::time::{Duration, SystemTime};

use super::entry;
use super::{LockOutcome, RefreshLock, Renewal, StoreFuture, TokenStore, LOCK_LEASE};
use crate::auth::oauth::token::AccessToken;
use crate::metrics::metrics;
use crate::redis_link::{millis, namespace, Purpose, RedisLink};

pub(super) use crate::redis_link::RedisUrlError;

/// Deletes the lock only if it still holds our owner value (KEYS[1] = lock, ARGV[1] = owner).
const RELEASE_SCRIPT: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
else
  return 0
end"#;

/// Extends the lock's expiry only if it still holds our owner value (KEYS[1] = lock,
/// ARGV[1] = owner, ARGV[2] = the new lease in ms): 1 when renewed, 0 when not ours.
const RENEW_SCRIPT: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
else
  return 0
end"#;

const UNREACHABLE: &str = "token store redis unreachable; tokens cached in memory on this replica";

/// The `store` label of the token store metrics.
const STORE: &str = "redis";

/// The token store's link: its outage costs sharing, not service.
static TOKENS: Purpose = Purpose {
    setting: "token_cache.url",
    down: "the Redis token store is unreachable; tokens are cached in memory on this replica \
           until it answers again",
    up: "the Redis token store answers again; tokens are shared with the fleet",
    set_up: |up| metrics().set_token_store_up(STORE, up),
    count_error: |operation| metrics().count_token_store_error(STORE, operation),
};

#[derive(Debug)]
pub struct RedisStore {
    link: RedisLink,
    /// `key_prefix` with its `:` separator.
    namespace: String,
    /// `lock_timeout`: the longest one holder keeps the lock, renewals included.
    max_hold: Duration,
}

impl RedisStore {
    /// Connects lazily: building the store never waits for Redis. `lock_timeout` caps how
    /// long one replica holds a refresh lock (its leases renewed); see [`LOCK_LEASE`].
    pub fn new(url: &str, key_prefix: &str, lock_timeout: Duration) -> Result<Self, RedisUrlError> {
        Ok(RedisStore {
            link: RedisLink::new(url, &TOKENS)?,
            namespace: namespace(key_prefix),
            max_hold: lock_timeout,
        })
    }

    fn token_key(&self, id: &str) -> String {
        format!("{}token:{id}", self.namespace)
    }

    fn lock_key(&self, id: &str) -> String {
        format!("{}lock:{id}", self.namespace)
    }
}

impl TokenStore for RedisStore {
    fn load<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<AccessToken>> {
        Box::pin(async move {
            let command = redis::cmd("GET").arg(self.token_key(id)).to_owned();
            let value: Vec<u8> = self
                .link
                .query::<Option<Vec<u8>>>("load", &command)
                .await
                .flatten()?;
            let token = entry::decode(&value);
            if token.is_none() {
                // The value is not logged: it may well be a token.
                tracing::warn!("a token entry in Redis is malformed; ignoring it");
            }
            token
        })
    }

    fn save<'a>(&'a self, id: &'a str, token: &'a AccessToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            // The entry lives as long as the token; an expired token is not worth keeping.
            let Ok(ttl) = token.expires_at().duration_since(SystemTime::now()) else {
                return;
            };
            let Some(json) = entry::encode(token) else {
                return;
            };
            let command = redis::cmd("SET")
                .arg(self.token_key(id))
                .arg(json)
                .arg("PX")
                .arg(millis(ttl))
                .to_owned();
            let _: Option<()> = self.link.query("save", &command).await;
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn acquire_refresh_lock<'a>(&'a self, id: &'a str) -> StoreFuture<'a, LockOutcome> {
        Box::pin(async move {
            let lock = RefreshLock::new(self.max_hold);
            let lease = lock.lease().unwrap_or(LOCK_LEASE);
            let command = redis::cmd("SET")
                .arg(self.lock_key(id))
                .arg(lock.owner())
                .arg("NX")
                .arg("PX")
                .arg(millis(lease))
                .to_owned();
            // `OK` when set, nil when the key exists.
            match self.link.query::<Option<String>>("lock", &command).await {
                Some(Some(_)) => LockOutcome::Acquired(lock),
                Some(None) => LockOutcome::HeldElsewhere,
                None => LockOutcome::Unavailable,
            }
        })
    }

    fn renew_refresh_lock<'a>(
        &'a self,
        id: &'a str,
        lock: &'a RefreshLock,
    ) -> StoreFuture<'a, Renewal> {
        Box::pin(async move {
            // Held `lock_timeout` in all: left to lapse at its cap.
            let Some(lease) = lock.lease() else {
                return Renewal::Ended;
            };
            let command = redis::cmd("EVAL")
                .arg(RENEW_SCRIPT)
                .arg(1)
                .arg(self.lock_key(id))
                .arg(lock.owner())
                .arg(millis(lease))
                .to_owned();
            match self.link.query::<i64>("renew", &command).await {
                Some(1) => Renewal::Renewed,
                Some(_) => Renewal::Ended,
                None => Renewal::Unavailable,
            }
        })
    }

    fn release_refresh_lock<'a>(&'a self, id: &'a str, lock: RefreshLock) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let command = redis::cmd("EVAL")
                .arg(RELEASE_SCRIPT)
                .arg(1)
                .arg(self.lock_key(id))
                .arg(lock.owner())
                .to_owned();
            // Unreachable: the lock expires on its own.
            let _: Option<i64> = self.link.query("unlock", &command).await;
        })
    }

    fn probe(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let _: Option<String> = self.link.query("ping", &redis::cmd("PING")).await;
        })
    }

    fn readiness_warning(&self) -> Option<String> {
        (!self.link.is_up()).then(|| UNREACHABLE.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_by_the_prefix_and_the_credential() {
        let store = RedisStore::new(
            "redis://127.0.0.1:1/0",
            "tango-gateway",
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(store.token_key("abc"), "tango-gateway:token:abc");
        assert_eq!(store.lock_key("abc"), "tango-gateway:lock:abc");
    }

    #[test]
    fn a_url_with_a_password_is_never_shown() {
        let store = RedisStore::new(
            "redis://:very-secret@127.0.0.1:1/0",
            "p",
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{store:?}").contains("very-secret"));
        assert!(RedisStore::new("http://x", "p", Duration::from_secs(1)).is_err());
    }
}
