//! One accepted connection, served within the limits of PRODUCT.md §12, on the inbound and
//! the admin listener alike.
//!
//! Invariants:
//! - the first request head is complete within `header_read_timeout` of accept, protocol
//!   detection (HTTP/1.1 or h2c preface) included, else the connection is closed;
//! - on HTTP/1.1 every later head is complete within `header_read_timeout` of its first
//!   byte;
//! - a connection with no request in flight (no response still being written) for
//!   `idle_timeout` is shut down gracefully (h2: GOAWAY), and closed if it lingers;
//! - at shutdown every connection is asked to finish gracefully.
//!
//! Written here because hyper's own HTTP/1.1 header timer starts when the connection goes
//! idle (so it would close every idle keep-alive connection after `header_read_timeout`), and
//! neither hyper nor hyper-util bounds protocol detection or idle h2 connections.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use super::listener::stop_requested;
use crate::body::ResponseBody;
use crate::error::BoxError;

/// The time limits one connection is served with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// How often a connection's state is looked at when nothing is due sooner.
    fn recheck(&self) -> Duration {
        self.idle_timeout.min(self.header_read_timeout)
    }
}

/// Serves `stream` with `service` until the connection ends, a limit closes it, or `stop`
/// turns true and the connection has finished gracefully. `peer` is only for log lines.
// Written with an explicit `impl Future + Send + 'static` rather than `async fn`: with the
// async fn, rustc cannot prove the future `Send` at the `tokio::spawn` call sites (a known
// limitation with higher-ranked lifetimes in generic services); the explicit bound can.
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve<S>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    service: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) -> impl Future<Output = ()> + Send + 'static
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    async move {
        let activity = Arc::new(Activity::new(Instant::now()));
        let io = TokioIo::new(WatchedIo {
            inner: stream,
            activity: activity.clone(),
        });
        let service = Tracked {
            inner: service,
            activity: activity.clone(),
        };
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut stopping = false;
        // Set once an idle connection was asked to close: past it, it is dropped.
        let mut closing_by: Option<Instant> = None;
        loop {
            let wake = match closing_by {
                Some(by) if Instant::now() >= by => return,
                Some(by) => by,
                None => match activity.verdict(Instant::now(), limits) {
                    // The state changes without waking this loop (a request starts or
                    // ends): look again at least this often, so each limit is kept within
                    // twice itself.
                    Verdict::Wait(at) => at.min(Instant::now() + limits.recheck()),
                    Verdict::HeadTimedOut => {
                        tracing::debug!(peer = %peer, "request head not complete in time; connection closed");
                        return;
                    }
                    Verdict::Idle => {
                        tracing::trace!(peer = %peer, "idle connection closed");
                        connection.as_mut().graceful_shutdown();
                        let by = Instant::now() + limits.header_read_timeout;
                        closing_by = Some(by);
                        by
                    }
                },
            };
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(err) = ended {
                        tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
                    }
                    return;
                }
                _ = stop_requested(&mut stop), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// What a connection is doing, as far as its limits are concerned; shared by the I/O
/// wrapper (bytes arriving), the service wrapper (requests starting, responses ending) and
/// the loop in [`serve`] that enforces the limits. Times are milliseconds since accept.
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    /// Requests whose response has not been fully written (or dropped) yet.
    in_flight: AtomicUsize,
    /// Requests started on this connection so far.
    requests: AtomicU64,
    /// When `in_flight` last fell to zero.
    idle_since: AtomicU64,
    /// When the first byte of a new request head arrived on an idle HTTP/1.1 connection;
    /// [`NONE`] when no head is in progress.
    head_since: AtomicU64,
    /// h2 connections carry control frames while idle: no byte there starts a head.
    http2: AtomicBool,
}

const NONE: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing to do before this instant.
    Wait(Instant),
    HeadTimedOut,
    Idle,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Activity {
            accepted,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            http2: AtomicBool::new(false),
        }
    }

    fn millis_since_accept(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.accepted + Duration::from_millis(millis)
    }

    fn request_started(&self, version: Version) {
        if version == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Relaxed);
    }

    fn response_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since
                .store(self.millis_since_accept(), Ordering::Relaxed);
        }
    }

    /// Bytes arrived: on an idle HTTP/1.1 connection they begin the next request head.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Relaxed) == NONE
            && !self.http2.load(Ordering::Relaxed)
        {
            self.head_since
                .store(self.millis_since_accept(), Ordering::Relaxed);
        }
    }

    fn verdict(&self, now: Instant, limits: ConnectionLimits) -> Verdict {
        if self.requests.load(Ordering::Relaxed) == 0 {
            let deadline = self.accepted + limits.header_read_timeout;
            return if now >= deadline {
                Verdict::HeadTimedOut
            } else {
                Verdict::Wait(deadline)
            };
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // Requests in flight are bounded by their own timeouts. Look again soon enough
            // that a head begun once they are done is still caught within twice its limit.
            return Verdict::Wait(now + limits.recheck());
        }
        match self.head_since.load(Ordering::Relaxed) {
            NONE => {
                let deadline =
                    self.at(self.idle_since.load(Ordering::Relaxed)) + limits.idle_timeout;
                if now >= deadline {
                    Verdict::Idle
                } else {
                    Verdict::Wait(deadline)
                }
            }
            since => {
                let deadline = self.at(since) + limits.header_read_timeout;
                if now >= deadline {
                    Verdict::HeadTimedOut
                } else {
                    Verdict::Wait(deadline)
                }
            }
        }
    }
}

/// The connection's socket, telling [`Activity`] when bytes arrive.
struct WatchedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The connection's service: counts each request in flight until its response body is
/// done (or dropped), so a response still streaming never looks idle.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// One request in flight on a connection; dropping it ends it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.response_ended();
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible> + Clone,
{
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture<S>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.request_started(request.version());
        TrackedFuture {
            inner: self.inner.clone().oneshot(request),
            in_flight: Some(InFlight(self.activity.clone())),
        }
    }
}

pin_project_lite::pin_project! {
    struct TrackedFuture<S: Service<Request<Incoming>>> {
        #[pin]
        inner: Oneshot<S, Request<Incoming>>,
        in_flight: Option<InFlight>,
    }
}

impl<S> Future for TrackedFuture<S>
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>,
{
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => return Poll::Pending,
        };
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|body| TrackedBody {
            inner: body,
            _in_flight: in_flight,
        })))
    }
}

/// A response body that keeps its request counted in flight until it is done.
struct TrackedBody {
    inner: ResponseBody,
    _in_flight: Option<InFlight>,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn the_first_head_is_due_header_read_timeout_after_accept() {
        let accepted = Instant::now();
        let activity = Activity::new(accepted);
        activity.bytes_arrived();
        assert_eq!(
            activity.verdict(accepted, LIMITS),
            Verdict::Wait(accepted + LIMITS.header_read_timeout)
        );
        tokio::time::advance(LIMITS.header_read_timeout).await;
        assert_eq!(
            activity.verdict(Instant::now(), LIMITS),
            Verdict::HeadTimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_idle_timeout_not_header_read_timeout() {
        let activity = Activity::new(Instant::now());
        activity.request_started(Version::HTTP_11);
        tokio::time::advance(Duration::from_secs(3)).await;
        // A request in flight is never idle, however long it takes.
        assert!(matches!(
            activity.verdict(Instant::now() + Duration::from_secs(600), LIMITS),
            Verdict::Wait(_)
        ));
        activity.response_ended();
        let idle_from = Instant::now();
        tokio::time::advance(LIMITS.header_read_timeout * 2).await;
        assert_eq!(
            activity.verdict(Instant::now(), LIMITS),
            Verdict::Wait(idle_from + LIMITS.idle_timeout)
        );
        tokio::time::advance(LIMITS.idle_timeout).await;
        assert_eq!(activity.verdict(Instant::now(), LIMITS), Verdict::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_head_is_due_header_read_timeout_after_its_first_byte() {
        let activity = Activity::new(Instant::now());
        activity.request_started(Version::HTTP_11);
        activity.response_ended();
        tokio::time::advance(Duration::from_secs(30)).await;
        let first_byte = Instant::now();
        activity.bytes_arrived();
        assert_eq!(
            activity.verdict(first_byte, LIMITS),
            Verdict::Wait(first_byte + LIMITS.header_read_timeout)
        );
        tokio::time::advance(LIMITS.header_read_timeout).await;
        assert_eq!(
            activity.verdict(Instant::now(), LIMITS),
            Verdict::HeadTimedOut
        );
        // The head completed in time instead: the request is in flight, the clock is off.
        activity.request_started(Version::HTTP_11);
        assert!(matches!(
            activity.verdict(Instant::now(), LIMITS),
            Verdict::Wait(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_on_an_idle_h2_connection_are_control_frames_not_a_head() {
        let activity = Activity::new(Instant::now());
        activity.request_started(Version::HTTP_2);
        activity.response_ended();
        let idle_from = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.bytes_arrived();
        assert_eq!(
            activity.verdict(Instant::now(), LIMITS),
            Verdict::Wait(idle_from + LIMITS.idle_timeout)
        );
    }
}
