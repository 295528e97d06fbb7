//! One worker's connections to one upstream: idle HTTP/1.1 connections (most recently used
//! first) and at most one shared h2 connection.
//!
//! Why not hyper-util's pooled client: each route talks to exactly one authority, so its
//! per-request map lookups keyed by (scheme, authority), its checkout/put machinery and the
//! connection-info extension it inserts in every response were pure cost (about 10k
//! instructions of ~88k per proxied request), and its idle list had no cap.
//!
//! h2 (PRODUCT.md §4: "HTTP/1.1 or h2 by ALPN"): ALPN offers h2 first; an h2 connection is
//! shared by all of the worker's requests (its handle cloned per request) and replaced by
//! the next connect once closed or expired. Concurrent first requests may each connect; the
//! extra connections end with their request.
//!
//! Invariants: a connection is used by the worker whose runtime runs its task; an idle
//! connection older than the idle timeout is never used; at most `max_idle` idle HTTP/1.1
//! connections are kept; a request an idle connection gave back unsent (it closed while
//! idle) is sent again, once, on a new connection, so a stale connection alone never
//! makes a 502. (A request
//! already written to a connection the upstream had closed is a reset, as it was before:
//! the retry layer resends it if it is idempotent.)

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use http::header::HOST;
use http::{Request, Response, Uri};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use super::connect::{ConnectError, Connection, Destination};
use super::lease::{Lease, PooledBody};
use crate::body::Payload;
use crate::error::BoxError;

/// Idle connections are closed after this long (below typical ALB idle timeouts of 60 s, so
/// the gateway, not the ALB, closes them and no request races a closing socket).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Idle HTTP/1.1 connections kept per worker and upstream. Under overload every request in
/// flight holds a connection; when the burst passes, all of them would turn idle and keep
/// their TLS buffers (tens of kB each) for the idle timeout. 256 covers the concurrency a
/// worker sustains (bench: 256 client connections in total) and bounds peak RSS.
pub const MAX_IDLE_PER_WORKER: usize = 256;

/// How often the sweep looks for expired or closed idle connections, as a fraction of the
/// idle timeout: a connection is closed at most a tenth of the timeout late.
const SWEEPS_PER_IDLE_TIMEOUT: u32 = 10;

/// The answer of one exchange, or why there was none.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<PooledBody>, BoxError>> + Send>>;

#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub idle_timeout: Duration,
    pub max_idle: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            idle_timeout: POOL_IDLE_TIMEOUT,
            max_idle: MAX_IDLE_PER_WORKER,
        }
    }
}

/// One worker's connections to one upstream.
///
/// A `std::sync::Mutex` guards the idle list although only this pool's worker touches it:
/// the route's services must be `Send + Sync` (they sit in `BoxCloneSyncService`s), which
/// rules out a `RefCell`, and an uncontended lock is one atomic exchange to take and one to
/// release, held for a few instructions and never across an await.
pub struct Pool {
    destination: Arc<Destination>,
    settings: PoolSettings,
    idle: Mutex<Idle>,
    /// Requests sent again after an idle connection gave them back: the route's series of
    /// `tango_gateway_upstream_stale_resends_total`, touched on that rare path only.
    stale_resends: Counter,
}

#[derive(Default)]
struct Idle {
    /// Oldest at the front, most recently used at the back: checkout takes from the back, so
    /// under light load the same few connections serve and the rest expire.
    http1: VecDeque<IdleHttp1>,
    /// An h2 connection carries any number of requests at once: one is shared.
    http2: Option<SharedHttp2>,
    /// The periodic sweep was started (on the runtime of the first connection).
    sweeping: bool,
}

struct IdleHttp1 {
    send: http1::SendRequest<Payload>,
    since: Instant,
}

struct SharedHttp2 {
    send: http2::SendRequest<Payload>,
    last_used: Instant,
}

/// A request that could not be sent, with the request itself when it never left (the
/// connection closed before taking it).
struct Unsent {
    error: BoxError,
    request: Option<Request<Payload>>,
}

impl Unsent {
    /// A request a new connection gave back (an upstream that accepts and hangs up at
    /// once) provably never left: a connect failure, retried whatever the method. One that
    /// was written may have been acted on: the connection's error as it is (a reset).
    fn into_error(self) -> BoxError {
        match self.request {
            Some(_) => ConnectError::ClosedBeforeSend(self.error).into(),
            None => self.error,
        }
    }
}

impl Pool {
    /// `stale_resends` counts the requests an idle connection gave back unsent.
    pub fn new(
        destination: Arc<Destination>,
        settings: PoolSettings,
        stale_resends: Counter,
    ) -> Self {
        Pool {
            destination,
            settings,
            idle: Mutex::new(Idle::default()),
            stale_resends,
        }
    }

    /// Sends `request` (absolute URI) on an idle connection, or on a new one.
    ///
    /// The request is handed to an idle connection here, and the boxed future only waits for
    /// the answer: an `async fn` taking the request would keep it twice (a generator stores
    /// its arguments apart from the values it awaits), which made this per-request future
    /// 1.5 kB, past glibc's 1 kB per-thread cache. The rare paths (connect, resend) are
    /// boxed on their own for the same reason.
    pub fn send(self: &Arc<Self>, mut request: Request<Payload>) -> ResponseFuture {
        match self.checkout() {
            Some(Connection::Http1(mut send)) => {
                self.for_http1(&mut request);
                let sent = send.try_send_request(request);
                Box::pin(self.clone().on_reused(sent, Some(send)))
            }
            Some(Connection::Http2(mut send)) => {
                self.for_http2(&mut request);
                let sent = send.try_send_request(request);
                Box::pin(self.clone().on_reused(sent, None))
            }
            None => Box::pin(self.clone().on_new(request)),
        }
    }

    /// The answer on a reused connection (`lease`: the HTTP/1.1 connection to give back
    /// when its body ends).
    async fn on_reused<F>(
        self: Arc<Self>,
        sent: F,
        lease: Option<http1::SendRequest<Payload>>,
    ) -> Result<Response<PooledBody>, BoxError>
    where
        F: Future<Output = Result<Response<Incoming>, TrySendError<Request<Payload>>>>,
    {
        let answer = sent.await;
        match self.answered(answer, lease) {
            Ok(response) => Ok(response),
            // The idle connection closed before it took the request (the upstream ended it
            // while we were not looking): nothing was sent, so send it on a new one, once,
            // as hyper-util's `retry_canceled_requests` did.
            Err(Unsent {
                request: Some(request),
                error,
            }) => Box::pin(self.resend(request, error)).await,
            Err(unsent) => Err(unsent.into_error()),
        }
    }

    /// No usable idle connection: a new one.
    async fn on_new(
        self: Arc<Self>,
        request: Request<Payload>,
    ) -> Result<Response<PooledBody>, BoxError> {
        let connection = self.connect().await?;
        self.try_send(connection, request)
            .await
            .map_err(Unsent::into_error)
    }

    /// Sends on a new connection a request that an idle one gave back unsent.
    async fn resend(
        self: &Arc<Self>,
        request: Request<Payload>,
        error: BoxError,
    ) -> Result<Response<PooledBody>, BoxError> {
        tracing::debug!(error = %error, "idle upstream connection was closed; reconnecting");
        self.stale_resends.inc();
        Arc::clone(self).on_new(request).await
    }

    async fn try_send(
        self: &Arc<Self>,
        connection: Connection,
        mut request: Request<Payload>,
    ) -> Result<Response<PooledBody>, Unsent> {
        match connection {
            Connection::Http1(mut send) => {
                self.for_http1(&mut request);
                let answer = send.try_send_request(request).await;
                self.answered(answer, Some(send))
            }
            Connection::Http2(mut send) => {
                self.for_http2(&mut request);
                let answer = send.try_send_request(request).await;
                self.answered(answer, None)
            }
        }
    }

    /// The response with its body on lease (HTTP/1.1), or the request back if it was never
    /// sent.
    // The request comes back by value (as hyper hands it back) on a rare path; the result is
    // consumed at once by the caller, never stored.
    #[allow(clippy::result_large_err)]
    fn answered(
        self: &Arc<Self>,
        answer: Result<Response<Incoming>, TrySendError<Request<Payload>>>,
        lease: Option<http1::SendRequest<Payload>>,
    ) -> Result<Response<PooledBody>, Unsent> {
        match (answer, lease) {
            (Ok(response), Some(send)) => Ok(self.lease(send, response)),
            (Ok(response), None) => Ok(response.map(|body| PooledBody::new(body, None))),
            (Err(mut err), _) => Err(Unsent {
                request: err.take_message(),
                error: err.into_error().into(),
            }),
        }
    }

    /// HTTP/1.1 wants the origin-form target on the wire and the upstream's `Host` (the
    /// caller's was removed by hygiene: the upstream's authority is used, §4).
    fn for_http1(&self, request: &mut Request<Payload>) {
        if request.uri().scheme().is_some() {
            let parts = std::mem::take(request.uri_mut()).into_parts();
            *request.uri_mut() = parts.path_and_query.map_or_else(Uri::default, Uri::from);
        }
        request
            .headers_mut()
            .insert(HOST, self.destination.host_header().clone());
    }

    /// h2 takes `:scheme` and `:authority` from an absolute URI, which the request has
    /// unless an HTTP/1.1 attempt made it origin-form (a reconnect that negotiated h2).
    fn for_http2(&self, request: &mut Request<Payload>) {
        if request.uri().scheme().is_none() {
            if let Some(absolute) = self.destination.absolute(request.uri()) {
                *request.uri_mut() = absolute;
            }
            request.headers_mut().remove(HOST);
        }
    }

    /// The response, with its connection handed back to the pool when its body ends.
    fn lease(
        self: &Arc<Self>,
        send: http1::SendRequest<Payload>,
        response: Response<Incoming>,
    ) -> Response<PooledBody> {
        let lease = Lease::new(self.clone(), send);
        response.map(|body| {
            if body.is_end_stream() {
                lease.release();
                PooledBody::new(body, None)
            } else {
                PooledBody::new(body, Some(lease))
            }
        })
    }

    async fn connect(self: &Arc<Self>) -> Result<Connection, BoxError> {
        let connection = self.destination.connect().await?;
        self.start_sweep();
        if let Connection::Http2(send) = &connection {
            let mut idle = self.lock();
            // Keep the connection already shared if it still works: concurrent first
            // requests each connect, and the extra connections end with their request.
            if !idle.http2.as_ref().is_some_and(|h2| h2.send.is_ready()) {
                idle.http2 = Some(SharedHttp2 {
                    send: send.clone(),
                    last_used: Instant::now(),
                });
            }
        }
        Ok(connection)
    }

    /// A usable idle connection: the shared h2 one, else the most recently used HTTP/1.1 one.
    /// Closed ones are dropped on the way; an expired one means all older ones are too.
    fn checkout(&self) -> Option<Connection> {
        let now = Instant::now();
        let timeout = self.settings.idle_timeout;
        let mut idle = self.lock();
        if let Some(h2) = idle.http2.as_mut() {
            if h2.send.is_ready() && now.saturating_duration_since(h2.last_used) < timeout {
                h2.last_used = now;
                return Some(Connection::Http2(h2.send.clone()));
            }
            idle.http2 = None;
        }
        while let Some(entry) = idle.http1.pop_back() {
            if now.saturating_duration_since(entry.since) >= timeout {
                idle.http1.clear();
                return None;
            }
            if entry.send.is_ready() {
                return Some(Connection::Http1(entry.send));
            }
        }
        None
    }

    /// Takes back an HTTP/1.1 connection that is ready for its next request.
    pub(super) fn put(&self, send: http1::SendRequest<Payload>) {
        if self.settings.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let timeout = self.settings.idle_timeout;
        let mut idle = self.lock();
        // The oldest are at the front: close the expired ones now, not at the next sweep.
        while idle
            .http1
            .front()
            .is_some_and(|entry| now.saturating_duration_since(entry.since) >= timeout)
        {
            idle.http1.pop_front();
        }
        if idle.http1.len() >= self.settings.max_idle {
            idle.http1.pop_front();
        }
        idle.http1.push_back(IdleHttp1 { send, since: now });
    }

    /// Closes expired and closed idle connections, so that a quiet worker does not keep
    /// sockets open until the upstream closes them.
    fn sweep(&self) {
        let now = Instant::now();
        let timeout = self.settings.idle_timeout;
        let mut idle = self.lock();
        idle.http1.retain(|entry| {
            !entry.send.is_closed() && now.saturating_duration_since(entry.since) < timeout
        });
        if idle.http2.as_ref().is_some_and(|h2| {
            h2.send.is_closed() || now.saturating_duration_since(h2.last_used) >= timeout
        }) {
            idle.http2 = None;
        }
    }

    /// Starts the periodic sweep once, on the runtime that runs this pool's connections.
    /// It holds the pool weakly and ends with it (a reload drops the old routes).
    fn start_sweep(self: &Arc<Self>) {
        {
            let mut idle = self.lock();
            if idle.sweeping {
                return;
            }
            idle.sweeping = true;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        let period = self.settings.idle_timeout / SWEEPS_PER_IDLE_TIMEOUT;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match pool.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => break,
                }
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        // Held for list operations only, never across an await; a list left by a panic
        // elsewhere is still a valid list.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long an idle connection is kept.
    pub(super) fn idle_timeout(&self) -> Duration {
        self.settings.idle_timeout
    }

    /// Idle HTTP/1.1 connections now kept (tests and diagnostics).
    pub fn idle_http1(&self) -> usize {
        self.lock().http1.len()
    }

    /// Requests sent again because the idle connection they were given had closed.
    pub fn stale_resends(&self) -> u64 {
        self.stale_resends.get()
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
