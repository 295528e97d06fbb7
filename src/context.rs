//! Per-request facts gathered on the way down the stack and read by the layers below and by
//! the access log.
//!
//! One `Arc<RequestContext>` in the request's extensions carries them all (the peer, the
//! request id, the admitted route, attempt counts): every extension is a separate boxed
//! value that `tower::retry` clones again for each attempt, so one shared context costs one
//! allocation where separate extensions cost one each, every request.
//!
//! Invariant: holds no credential-bearing header value and no body, so logging it can never
//! leak a credential (the request id is the sanitised `x-request-id`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderValue, Request};

use crate::orders::callers::Caller;

/// Shared by every layer of one request through `Arc` in the request's extensions.
#[derive(Debug, Default)]
pub(crate) struct RequestContext {
    /// The inbound peer of the connection, set by the listener.
    peer: Option<SocketAddr>,
    request_id: OnceLock<HeaderValue>,
    /// The route admission chose, by name (logs, metrics).
    route: OnceLock<Arc<str>>,
    /// The caller admission identified (§10), when callers are configured.
    caller: OnceLock<Arc<Caller>>,
    attempts: AtomicU32,
    upstream_status: AtomicU16,
    /// The code of the last non-2xx upstream answer's cause (`upstream::rejection::Cause`),
    /// 0 for none; written for non-2xx answers only (see [`Self::upstream_cause_code`]).
    upstream_cause: AtomicU8,
    /// Time spent waiting on the upstream, summed over attempts (µs): see
    /// [`Self::add_upstream_time`].
    upstream_micros: AtomicU64,
    /// The server span of the request while tracing is on (§13), as the parent of its
    /// attempt and token-fetch spans; never set with tracing off.
    trace: OnceLock<opentelemetry::Context>,
}

impl RequestContext {
    /// The context of a request that arrived from `peer`.
    pub(crate) fn from_peer(peer: SocketAddr) -> Self {
        RequestContext {
            peer: Some(peer),
            ..RequestContext::default()
        }
    }

    /// The request's context, inserting an empty one (no peer) when it has none yet.
    pub(crate) fn of<B>(request: &mut Request<B>) -> Arc<RequestContext> {
        request
            .extensions_mut()
            .get_or_insert_with(|| Arc::new(RequestContext::default()))
            .clone()
    }

    /// The context of a request, if it has one.
    pub(crate) fn get<B>(request: &Request<B>) -> Option<&Arc<RequestContext>> {
        request.extensions().get::<Arc<RequestContext>>()
    }

    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub(crate) fn set_request_id(&self, id: HeaderValue) {
        // First writer wins: the id is chosen once, at the top of the stack.
        let _ = self.request_id.set(id);
    }

    /// The request id, once set (ids are always visible ASCII).
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.request_id.get().and_then(|id| id.to_str().ok())
    }

    pub(crate) fn set_route(&self, name: Arc<str>) {
        // First writer wins: a request is routed once.
        let _ = self.route.set(name);
    }

    /// The name of the route the request was admitted to, once it was.
    pub(crate) fn route(&self) -> Option<&Arc<str>> {
        self.route.get()
    }

    pub(crate) fn set_caller(&self, caller: Arc<Caller>) {
        // First writer wins: a request is admitted once.
        let _ = self.caller.set(caller);
    }

    /// The caller admission identified, when callers are configured.
    pub(crate) fn caller(&self) -> Option<&Arc<Caller>> {
        self.caller.get()
    }

    /// Records the request's server span (first writer wins: one per request).
    pub(crate) fn set_trace(&self, server_span: opentelemetry::Context) {
        let _ = self.trace.set(server_span);
    }

    /// The request's server span, while tracing is on: the parent of its other spans.
    pub(crate) fn trace(&self) -> Option<&opentelemetry::Context> {
        self.trace.get()
    }

    /// The trace id of the request's server span (tracing on): the caller's trace id when
    /// it sent a `traceparent`, else a new one. `None` with tracing off; the access log then
    /// reads the caller's `traceparent` itself.
    pub(crate) fn trace_id(&self) -> Option<opentelemetry::trace::TraceId> {
        use opentelemetry::trace::TraceContextExt;
        self.trace
            .get()
            .map(|cx| cx.span().span_context().trace_id())
    }

    /// Counts one upstream attempt and returns its number (1-based).
    pub(crate) fn start_attempt(&self) -> u32 {
        self.attempts.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }

    pub(crate) fn set_upstream_status(&self, status: http::StatusCode) {
        self.upstream_status
            .store(status.as_u16(), Ordering::Relaxed);
    }

    /// The status of the last upstream answer, if any attempt got one.
    pub(crate) fn upstream_status(&self) -> Option<u16> {
        match self.upstream_status.load(Ordering::Relaxed) {
            0 => None,
            status => Some(status),
        }
    }

    /// Records the cause code of a non-2xx upstream answer (0: none), after its status.
    pub(crate) fn set_upstream_cause(&self, code: u8) {
        self.upstream_cause.store(code, Ordering::Relaxed);
    }

    /// The cause code of the last upstream answer, 0 when it had none. A 2xx answer writes no
    /// cause (the 2xx path does no more than check its status), so an earlier attempt's cause
    /// is hidden here when the last answer was 2xx.
    pub(crate) fn upstream_cause_code(&self) -> u8 {
        match self.upstream_status() {
            Some(200..=299) | None => 0,
            Some(_) => self.upstream_cause.load(Ordering::Relaxed),
        }
    }

    /// Adds one attempt's time: from sending it to its answer's headers, or to its failure or
    /// abandonment (attempt timeout, caller gone). Backoff waits and body streaming are not
    /// upstream time.
    pub(crate) fn add_upstream_time(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.upstream_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The time spent waiting on the upstream so far (the access log's `upstream_ms`).
    pub(crate) fn upstream_time(&self) -> Duration {
        Duration::from_micros(self.upstream_micros.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};

    use super::*;
    use crate::telemetry::otel;

    #[test]
    fn the_trace_id_is_the_server_spans_and_none_without_one() {
        let context = RequestContext::default();
        assert_eq!(context.trace_id(), None);
        // A local provider: the process's tracer stays off in unit tests.
        let tracer = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .build()
            .tracer("test");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            otel::TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let span = tracer.start_with_context("server", &otel::extract(&headers));
        context.set_trace(opentelemetry::Context::new().with_span(span));
        assert_eq!(
            context.trace_id().map(|id| id.to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(context.trace_id(), otel::trace_id_of(&headers));
    }
}
