//! `token_cache` (§3, §5): where tokens are kept — memory, a file, or Redis shared by a fleet.
//!
//! Invariants: a key that only one store uses is refused with another store (a typo must not
//! pass silently); a Redis URL is checked for shape without connecting and is never repeated
//! in a problem (its userinfo may hold a password).

use std::path::PathBuf;
use std::time::Duration;

use super::errors::{join, Problems};
use secrecy::ExposeSecret;

use super::fields::{choice, duration, optional, secret};
use super::model::TokenCacheConfig;
use super::raw::RawTokenCache;

pub const DEFAULT_KEY_PREFIX: &str = "tango-gateway";
/// The longest one replica holds the refresh lock for one refresh, its short lease renewed
/// all along (a replica that dies holding it blocks the others for one lease only, see
/// `auth::oauth::store::LOCK_LEASE`): longer than one token request (15 s), so a replica
/// that is merely slow keeps the lock, and so the bound on how long the others wait for a
/// live holder's token before one of them fetches too.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(20);
/// Below this the lock could run out while its holder's token request is still in flight.
const MIN_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq)]
enum Store {
    Memory,
    File,
    Redis,
}

pub(crate) fn token_cache(p: &mut Problems, raw: RawTokenCache) -> Option<TokenCacheConfig> {
    let stores = [
        ("memory", Store::Memory),
        ("file", Store::File),
        ("redis", Store::Redis),
    ];
    let store = choice(p, "token_cache.store", &raw.store, &stores, Store::Memory)?;
    let before = p.len();
    let path = optional(p, "token_cache.path", &raw.path)?;
    // A URL with a password is a secret: `url_file` keeps it out of the YAML.
    let url = secret(p, "token_cache", "url", &raw.url, &raw.url_file, false)?;
    let key_prefix = optional(p, "token_cache.key_prefix", &raw.key_prefix)?;
    let lock_timeout = duration(
        p,
        "token_cache.lock_timeout",
        &raw.lock_timeout,
        DEFAULT_LOCK_TIMEOUT,
    )?;
    let unused = |p: &mut Problems, key: &str, set: bool, store: &str| {
        if set {
            p.add(
                join("token_cache", key),
                format!("is only used with store: {store}"),
            );
        }
    };
    if store != Store::File {
        unused(p, "path", path.is_some(), "file");
    }
    if store != Store::Redis {
        unused(p, "url", raw.url.is_some(), "redis");
        unused(p, "url_file", raw.url_file.is_some(), "redis");
        unused(p, "key_prefix", key_prefix.is_some(), "redis");
        unused(p, "lock_timeout", raw.lock_timeout.is_some(), "redis");
    }
    let cache = match store {
        Store::Memory => TokenCacheConfig::Memory,
        Store::File => match path {
            Some(path) => TokenCacheConfig::File {
                path: PathBuf::from(path),
            },
            None => {
                p.add("token_cache.path", "is required with store: file");
                return None;
            }
        },
        Store::Redis => {
            let Some(url) = url else {
                p.add(
                    "token_cache.url",
                    "is required with store: redis (or url_file)",
                );
                return None;
            };
            let url = url.expose_secret().to_owned();
            let key = if raw.url_file.is_some() {
                "token_cache.url_file"
            } else {
                "token_cache.url"
            };
            redis_url(p, key, &url);
            if lock_timeout < MIN_LOCK_TIMEOUT {
                p.add(
                    "token_cache.lock_timeout",
                    "must be at least 1s (more than one token request, 15 s, is best)",
                );
            }
            TokenCacheConfig::Redis {
                url,
                key_prefix: key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string()),
                lock_timeout,
            }
        }
    };
    (p.len() == before).then_some(cache)
}

/// `redis://` or `rediss://` (TLS), parsed as the client will parse it.
pub(super) fn redis_url(p: &mut Problems, key: &str, url: &str) {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        p.add(key, "must start with redis:// or rediss://");
    } else if redis::Client::open(url).is_err() {
        p.add(
            key,
            "is not a valid Redis URL (redis[s]://[[user]:password@]host[:port][/db])",
        );
    }
}
