//! The Redis connection behind the shared stores (tokens, §5; orders, §10): connected lazily,
//! every operation bounded by a timeout, dropped and re-made after any failure, and the
//! store's health tracked from the outcomes (log once per outage, a metric). What differs
//! between the stores (their log lines, their metrics, the setting their URL comes from) is
//! a [`Purpose`].
//!
//! Invariants: no operation takes longer than [`OPERATION_TIMEOUT`], so a dead Redis never
//! stalls a refresher or a caller for long; nothing logged or returned here carries the URL's
//! userinfo (a password) or a value read from Redis.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue};
use tokio::sync::Mutex;

use crate::config::redact_userinfo;

/// Connecting to Redis (TCP, TLS, AUTH, SELECT) gives up after this long...
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// ... one command waits this long for its answer...
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// ... and one operation, connection included, never takes longer than this.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_millis(1_000);

/// What a link serves: how it names itself, what it logs when Redis stops and starts
/// answering, and which metrics it keeps.
#[derive(Debug)]
pub(crate) struct Purpose {
    /// The setting the URL comes from, for [`RedisUrlError`] (`token_cache.url`).
    pub setting: &'static str,
    /// Logged (warn) once when an outage begins: what stops working, and until when.
    pub down: &'static str,
    /// Logged (info) once when it ends.
    pub up: &'static str,
    /// Sets the store's health gauge.
    pub set_up: fn(bool),
    /// Counts one failed operation (`operation` is a fixed word, never a key or value).
    pub count_error: fn(&'static str),
}

/// The URL cannot be used (its text is not repeated: it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("{setting} is not a usable Redis URL")]
pub struct RedisUrlError {
    setting: &'static str,
}

pub(crate) struct RedisLink {
    client: Client,
    purpose: &'static Purpose,
    /// The URL without userinfo, for logs.
    target: String,
    /// One multiplexed connection, shared by every operation; `None` until first use and
    /// after a failure.
    connection: Mutex<Option<MultiplexedConnection>>,
    /// Whether the last operation succeeded; starts optimistic (no warning before the
    /// first contact, which the store's probe makes right after start).
    up: AtomicBool,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("serves", &self.purpose.setting)
            .field("target", &self.target)
            .field("up", &self.up)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Parses the URL; connects only when first used (so `check` and start-up never wait
    /// for Redis).
    pub(crate) fn new(url: &str, purpose: &'static Purpose) -> Result<Self, RedisUrlError> {
        let client = Client::open(url).map_err(|_| RedisUrlError {
            setting: purpose.setting,
        })?;
        Ok(RedisLink {
            client,
            purpose,
            target: redact_userinfo(url),
            connection: Mutex::new(None),
            up: AtomicBool::new(true),
        })
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Runs `command`; `None` when Redis did not answer (or answered an error) in time.
    /// `operation` names it in logs and metrics (a fixed word, never a key or value).
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        command: &Cmd,
    ) -> Option<T> {
        let attempt = async {
            let mut connection = self.connection().await?;
            command.query_async::<T>(&mut connection).await
        };
        let failure = match tokio::time::timeout(OPERATION_TIMEOUT, attempt).await {
            Ok(Ok(value)) => {
                self.record_success();
                return Some(value);
            }
            Ok(Err(err)) => describe(&err),
            Err(_) => "timed out".to_owned(),
        };
        // Whatever went wrong, the next operation starts on a fresh connection.
        *self.connection.lock().await = None;
        self.record_failure(operation, &failure);
        None
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    fn record_success(&self) {
        (self.purpose.set_up)(true);
        if !self.up.swap(true, Ordering::SeqCst) {
            tracing::info!(redis = %self.target, "{}", self.purpose.up);
        }
    }

    fn record_failure(&self, operation: &'static str, failure: &str) {
        (self.purpose.count_error)(operation);
        (self.purpose.set_up)(false);
        if self.up.swap(false, Ordering::SeqCst) {
            // Once per outage: every operation fails while it lasts.
            tracing::warn!(
                redis = %self.target,
                operation,
                error = %failure,
                "{}",
                self.purpose.down
            );
        } else {
            tracing::debug!(redis = %self.target, operation, error = %failure, "Redis still unreachable");
        }
    }
}

/// `key_prefix` with its `:` separator: none when empty or already ending in `:`.
pub(crate) fn namespace(key_prefix: &str) -> String {
    if key_prefix.is_empty() || key_prefix.ends_with(':') {
        key_prefix.to_owned()
    } else {
        format!("{key_prefix}:")
    }
}

/// Whole milliseconds, at least 1 (Redis refuses `PX 0`, and `PEXPIRE 0` deletes).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// What went wrong, in the client's words: its messages name the failure kind and the server's
/// error code, never the URL or a command's arguments.
fn describe(err: &redis::RedisError) -> String {
    if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_io_error() || err.is_connection_dropped() {
        format!("connection failed: {err}")
    } else {
        err.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static TEST: Purpose = Purpose {
        setting: "test.url",
        down: "down",
        up: "up",
        set_up: |_| {},
        count_error: |_| {},
    };

    #[test]
    fn keys_are_namespaced_by_the_prefix() {
        assert_eq!(namespace("tango-gateway"), "tango-gateway:");
        assert_eq!(namespace("fleet-a:"), "fleet-a:");
        assert_eq!(namespace(""), "");
    }

    #[test]
    fn ttls_are_whole_positive_milliseconds() {
        assert_eq!(millis(Duration::from_secs(20)), 20_000);
        assert_eq!(millis(Duration::from_micros(10)), 1);
    }

    #[test]
    fn a_url_with_a_password_is_never_shown() {
        let link = RedisLink::new("redis://:very-secret@127.0.0.1:1/0", &TEST).unwrap();
        assert!(!format!("{link:?}").contains("very-secret"));
        let err = RedisLink::new("http://:very-secret@x", &TEST).unwrap_err();
        assert_eq!(err.to_string(), "test.url is not a usable Redis URL");
    }
}
