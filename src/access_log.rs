//! One access-log event per request (PRODUCT.md §7), emitted when the answer's body has been
//! sent (or abandoned), so `duration_ms` and `bytes` are what the caller really got.
//!
//! Invariant: the event carries no query string, no body and no header value but the caller's
//! `User-Agent` (cut to 256 bytes) and the trace id of its `traceparent`: nothing in it can
//! hold a credential.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
// Monotonic, on tokio's clock: a duration, never a date (the event's timestamp is the
// logger's own wall-clock time).
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::body::ResponseBody;
use crate::context::RequestContext;
use crate::error::{BoxError, ERROR_HEADER};
use crate::metrics::{self, metrics, RejectedLabels, RequestLabels, RouteLabels};
use crate::telemetry::{self, access::AccessRecord};
use crate::upstream::rejection::Cause;

/// Paths longer than this are cut in the log (a caller controls them).
const MAX_LOGGED_PATH: usize = 256;

/// `User-Agent` values are cut to this many bytes in the log (§13).
const MAX_LOGGED_USER_AGENT: usize = 256;

static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AccessLog<S> {
    inner: S,
}

/// Counts a request in `tango_gateway_inflight_requests` for as long as it lives.
struct Inflight;

impl Inflight {
    fn start() -> Self {
        metrics().inflight.inc();
        Inflight
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        metrics().inflight.dec();
    }
}

/// What is known of a request before its answer. Everything in it is shared or copied
/// cheaply: no per-request string is built unless a path needs cutting.
struct Pending {
    _inflight: Inflight,
    context: Arc<RequestContext>,
    method: Method,
    /// The target as the caller sent it: a reference-counted share of hyper's parsed request
    /// line, not a copy. The log shows its path only; the query (which may carry secrets)
    /// is held in memory until the answer ends and never written anywhere.
    uri: Uri,
    /// The caller's `User-Agent` and `traceparent`: shares of hyper's parsed header block,
    /// not copies (logged cut, and only a valid trace id).
    user_agent: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
    started: Instant,
}

/// What the event says, gathered before the body is streamed.
struct Entry {
    request: Pending,
    status: StatusCode,
    gateway_error: Option<HeaderValue>,
}

impl Entry {
    /// Request metrics, at response headers: by route (or `none` before routing), method
    /// (a closed set after admission; anything else is `other`) and status.
    fn count(&self) {
        static NO_ROUTE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("none"));
        let request = &self.request;
        let route = match request.context.route() {
            Some(name) => name.clone(),
            None => NO_ROUTE.clone(),
        };
        let method = match request.method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        static NO_CALLER: LazyLock<Arc<str>> =
            LazyLock::new(|| Arc::from(crate::config::NO_CALLER));
        let caller = match request.context.caller() {
            Some(caller) => caller.name.clone(),
            None => NO_CALLER.clone(),
        };
        metrics::count_request(RequestLabels {
            route: route.clone(),
            caller,
            method,
            status: self.status.as_u16(),
        });
        metrics::observe_request_duration(
            RouteLabels { route },
            request.started.elapsed().as_secs_f64(),
        );
        if let Some(code) = self.gateway_error() {
            // Only the gateway's own codes (a closed set); anything else is not a label.
            let own_code = code.len() <= 48
                && code.starts_with("gateway.")
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
            if own_code && !code.starts_with("gateway.upstream_") {
                metrics()
                    .rejected
                    .get_or_create(&RejectedLabels {
                        reason: code.to_owned(),
                    })
                    .inc();
            }
        }
    }

    fn gateway_error(&self) -> Option<&str> {
        self.gateway_error.as_ref().and_then(|v| v.to_str().ok())
    }

    /// The request's trace id as logged: the server span's while tracing is on (the caller's
    /// trace, or the new one the span started), else that of the caller's valid
    /// `traceparent`, else `-`. `hex` holds the span's id written out (no allocation).
    fn trace_id<'a>(&'a self, hex: &'a mut [u8; 32]) -> &'a str {
        if let Some(id) = self.request.context.trace_id() {
            use std::io::Write as _;
            // `TraceId` displays as exactly 32 lowercase hex digits.
            if write!(&mut hex[..], "{id}").is_ok() {
                return std::str::from_utf8(&hex[..]).unwrap_or("-");
            }
        }
        self.request
            .traceparent
            .as_ref()
            .and_then(|value| telemetry::traceparent::trace_id(value.as_bytes()))
            .unwrap_or("-")
    }

    fn emit(&self, bytes: u64, complete: bool) {
        let request = &self.request;
        let user_agent = request.user_agent.as_ref().map(logged_user_agent);
        let mut server_trace = [0u8; 32];
        telemetry::access::emit(&AccessRecord {
            request_id: request.context.request_id().unwrap_or(""),
            trace_id: self.trace_id(&mut server_trace),
            route: request.context.route().map_or("-", |name| &**name),
            caller: request.context.caller().map_or("-", |caller| &*caller.name),
            peer: request.context.peer().map(|peer| peer.ip().to_canonical()),
            method: request.method.as_str(),
            path: &logged_path(request.uri.path()),
            status: self.status.as_u16(),
            gateway_error: self.gateway_error().unwrap_or("-"),
            attempts: request.context.attempts(),
            upstream_status: request.context.upstream_status().unwrap_or(0),
            upstream_cause: Cause::from_code(request.context.upstream_cause_code())
                .map_or("-", Cause::as_str),
            upstream_us: u64::try_from(request.context.upstream_time().as_micros())
                .unwrap_or(u64::MAX),
            duration_ms: request.started.elapsed().as_secs_f64() * 1000.0,
            bytes,
            complete,
            user_agent: user_agent.as_deref().unwrap_or("-"),
        });
    }
}

/// The `User-Agent` as logged: its first [`MAX_LOGGED_USER_AGENT`] bytes, cut back to a
/// character boundary; bytes that are not UTF-8 (obs-text) are replaced, not dropped.
fn logged_user_agent(value: &HeaderValue) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    let bytes = &bytes[..bytes.len().min(MAX_LOGGED_USER_AGENT)];
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        // Cut inside a character: keep what precedes it.
        Err(error) if error.error_len().is_none() => {
            Cow::Borrowed(std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or(""))
        }
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The path as logged: cut after [`MAX_LOGGED_PATH`] characters (a caller controls it).
fn logged_path(path: &str) -> Cow<'_, str> {
    // No more bytes than the limit: no more characters either, no need to count them.
    if path.len() <= MAX_LOGGED_PATH {
        return Cow::Borrowed(path);
    }
    match path.char_indices().nth(MAX_LOGGED_PATH) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &path[..cut])),
        None => Cow::Borrowed(path),
    }
}

impl<S, B, E> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = E>,
{
    type Response = Response<ResponseBody>;
    type Error = E;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let pending = Pending {
            _inflight: Inflight::start(),
            context: RequestContext::of(&mut request),
            method: request.method().clone(),
            uri: request.uri().clone(),
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
            traceparent: request.headers().get(&TRACEPARENT).cloned(),
            started: Instant::now(),
        };
        AccessLogFuture {
            inner: self.inner.call(request),
            pending: Some(pending),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer, counted and with a body that logs the event when it ends (a named future:
    /// no allocation per request).
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<ResponseBody>, E>>,
{
    type Output = Result<Response<ResponseBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let Some(request) = this.pending.take() else {
            // Polled again after completion: a caller bug; answer as it is, unlogged.
            return Poll::Ready(Ok(response));
        };
        let entry = Entry {
            request,
            status: response.status(),
            gateway_error: response.headers().get(ERROR_HEADER).cloned(),
        };
        entry.count();
        Poll::Ready(Ok(response.map(|body| {
            LoggedBody {
                inner: body,
                bytes: 0,
                entry: Some(entry),
            }
            .boxed_unsync()
        })))
    }
}

/// Counts the bytes sent and emits the event once: at the end, on error, or when dropped.
struct LoggedBody {
    inner: ResponseBody,
    bytes: u64,
    entry: Option<Entry>,
}

impl LoggedBody {
    fn finish(&mut self, complete: bool) {
        if let Some(entry) = self.entry.take() {
            entry.emit(self.bytes, complete);
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Ready(None) => self.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // Dropped before its end: the caller went away, or the body was never polled (HEAD,
        // 204); the latter is complete when the inner body had nothing to send.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_and_marked_short_ones_kept() {
        assert!(matches!(
            logged_path("/raas/v2/catalogs"),
            Cow::Borrowed("/raas/v2/catalogs")
        ));
        let exact = format!("/{}", "a".repeat(MAX_LOGGED_PATH - 1));
        assert_eq!(logged_path(&exact), exact.as_str());
        let long = format!("/{}", "a".repeat(MAX_LOGGED_PATH * 2));
        let cut = logged_path(&long);
        assert_eq!(cut.chars().count(), MAX_LOGGED_PATH + 1);
        assert!(cut.ends_with('…'));
        assert!(long.starts_with(cut.trim_end_matches('…')));
    }

    #[test]
    fn user_agents_are_cut_to_256_bytes_on_a_character_boundary() {
        let short = HeaderValue::from_static("payouts/1.0");
        assert!(matches!(
            logged_user_agent(&short),
            Cow::Borrowed("payouts/1.0")
        ));
        let long = HeaderValue::from_str(&"a".repeat(1000)).unwrap_or(short.clone());
        assert_eq!(logged_user_agent(&long).len(), MAX_LOGGED_USER_AGENT);
        // 255 ASCII bytes then a two-byte character: the character would end past 256.
        let split = HeaderValue::from_bytes(format!("{}é", "a".repeat(255)).as_bytes())
            .unwrap_or(short.clone());
        assert_eq!(logged_user_agent(&split), "a".repeat(255));
        let obs_text = HeaderValue::from_bytes(b"agent\xff/1").unwrap_or(short);
        assert_eq!(logged_user_agent(&obs_text), "agent\u{fffd}/1");
    }
}
