//! One access-log event per request (PRODUCT.md §7), emitted when the answer's body has been
//! sent (or abandoned), so `duration_ms` and `bytes` are what the caller really got.
//!
//! Invariant: the event carries no header value, no query string and no body: nothing in it
//! can hold a credential.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::body::ResponseBody;
use crate::context::RequestContext;
use crate::error::{BoxError, ERROR_HEADER};
use crate::metrics::{metrics, RejectedLabels, RequestLabels, RouteLabels};
use crate::request_id::RequestId;

/// Paths longer than this are cut in the log (a caller controls them).
const MAX_LOGGED_PATH: usize = 256;

#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner }
    }
}

#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
}

/// What the event says, gathered before the body is streamed.
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

struct Entry {
    _inflight: Inflight,
    context: Arc<RequestContext>,
    request_id: String,
    method: Method,
    path: String,
    status: StatusCode,
    gateway_error: Option<String>,
    started: Instant,
}

impl Entry {
    /// Request metrics, at response headers: by route (or `none` before routing), method
    /// (a closed set after admission; anything else is `other`) and status.
    fn count(&self) {
        let route = self.context.route().unwrap_or("none").to_owned();
        let method = match self.method {
            Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS => self.method.as_str().to_owned(),
            _ => "other".to_owned(),
        };
        let m = metrics();
        m.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                method,
                status: self.status.as_str().to_owned(),
            })
            .inc();
        m.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(code) = &self.gateway_error {
            // Only the gateway's own codes (a closed set); anything else is not a label.
            let own_code = code.len() <= 48
                && code.starts_with("gateway.")
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
            if own_code && !code.starts_with("gateway.upstream_") {
                m.rejected
                    .get_or_create(&RejectedLabels {
                        reason: code.clone(),
                    })
                    .inc();
            }
        }
    }

    fn emit(&self, bytes: u64, complete: bool) {
        // Strings as `&str`, not `%` (Display): recorded as they are, with no formatting
        // into a temporary String per field.
        tracing::info!(
            target: "tango_gateway::access",
            request_id = self.request_id.as_str(),
            route = self.context.route().unwrap_or("-"),
            method = self.method.as_str(),
            path = self.path.as_str(),
            status = self.status.as_u16(),
            gateway_error = self.gateway_error.as_deref().unwrap_or("-"),
            attempts = self.context.attempts(),
            upstream_status = self.context.upstream_status().unwrap_or(0),
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            bytes,
            complete,
            "request"
        );
    }
}

impl<S, B, E> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = E>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = E;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, E>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let context = Arc::new(RequestContext::default());
        request.extensions_mut().insert(context.clone());
        let mut path: String = request.uri().path().chars().take(MAX_LOGGED_PATH).collect();
        if request.uri().path().len() > MAX_LOGGED_PATH {
            path.push('…');
        }
        let method = request.method().clone();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        let started = Instant::now();
        let inflight = Inflight::start();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let entry = Entry {
                _inflight: inflight,
                context,
                request_id,
                method,
                path,
                status: response.status(),
                gateway_error: response
                    .headers()
                    .get(ERROR_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                started,
            };
            entry.count();
            Ok(response.map(|body| {
                LoggedBody {
                    inner: body,
                    bytes: 0,
                    entry: Some(entry),
                }
                .boxed_unsync()
            }))
        })
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
