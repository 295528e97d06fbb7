//! The Redis connection behind the token store: connected lazily, every operation bounded by
//! a timeout, dropped and re-made after any failure, and the store's health tracked from the
//! outcomes (log once per outage, a metric, a `/readyz` warning).
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
use crate::metrics::metrics;

/// Connecting to Redis (TCP, TLS, AUTH, SELECT) gives up after this long...
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// ... one command waits this long for its answer...
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// ... and one operation, connection included, never takes longer than this.
pub(super) const OPERATION_TIMEOUT: Duration = Duration::from_millis(1_000);

/// The `store` label of the token store metrics.
const STORE: &str = "redis";

/// The URL cannot be used (its text is not repeated: it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("token_cache.url is not a usable Redis URL")]
pub struct RedisUrlError;

pub(super) struct RedisLink {
    client: Client,
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
            .field("target", &self.target)
            .field("up", &self.up)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Parses the URL; connects only when first used (so `check` and start-up never wait
    /// for Redis).
    pub(super) fn new(url: &str) -> Result<Self, RedisUrlError> {
        let client = Client::open(url).map_err(|_| RedisUrlError)?;
        Ok(RedisLink {
            client,
            target: redact_userinfo(url),
            connection: Mutex::new(None),
            up: AtomicBool::new(true),
        })
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Runs `command`; `None` when Redis did not answer (or answered an error) in time.
    /// `operation` names it in logs and metrics (a fixed word, never a key or value).
    pub(super) async fn query<T: FromRedisValue>(
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
        metrics().set_token_store_up(STORE, true);
        if !self.up.swap(true, Ordering::SeqCst) {
            tracing::info!(
                redis = %self.target,
                "the Redis token store answers again; tokens are shared with the fleet"
            );
        }
    }

    fn record_failure(&self, operation: &'static str, failure: &str) {
        metrics().count_token_store_error(STORE, operation);
        metrics().set_token_store_up(STORE, false);
        if self.up.swap(false, Ordering::SeqCst) {
            // Once per outage: every refresher and the probe fail while it lasts.
            tracing::warn!(
                redis = %self.target,
                operation,
                error = %failure,
                "the Redis token store is unreachable; tokens are cached in memory on this \
                 replica until it answers again"
            );
        } else {
            tracing::debug!(redis = %self.target, operation, error = %failure, "Redis still unreachable");
        }
    }
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
