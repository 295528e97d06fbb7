//! The server span of each request while tracing is on (§13): the caller's W3C trace
//! context continued, the route, method, status and caller recorded when the answer's
//! headers are ready. With tracing off the request passes straight through (one check).
//!
//! Invariant: the span holds no header value, no path, no query and no body: its name is the
//! method and the route's name, its attributes a method, a status, config names and the
//! gateway's own error code.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Method, Request, Response};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::KeyValue;
use tower::{Layer, Service};

use crate::context::RequestContext;
use crate::error::ERROR_HEADER;
use crate::telemetry::otel;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServerSpanLayer;

impl<S> Layer<S> for ServerSpanLayer {
    type Service = ServerSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerSpan { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ServerSpan<S> {
    inner: S,
}

/// The method as a span attribute: a closed set (`_OTHER` for the rest, as OpenTelemetry's
/// HTTP conventions say).
pub(crate) fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

impl<S, B, RB> Service<Request<B>> for ServerSpan<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ServerSpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(tracer) = otel::tracer() else {
            return ServerSpanFuture {
                inner: self.inner.call(request),
                traced: None,
            };
        };
        let method = method_name(request.method());
        let parent = otel::extract(request.headers());
        let builder = tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("http.request.method", method)]);
        let span = tracer.build_with_context(builder, &parent);
        let trace = opentelemetry::Context::new().with_span(span);
        let context = RequestContext::of(&mut request);
        context.set_trace(trace.clone());
        ServerSpanFuture {
            inner: self.inner.call(request),
            traced: Some(Box::new(Traced {
                trace,
                context,
                method,
            })),
        }
    }
}

/// What the span needs when the answer is ready.
struct Traced {
    trace: opentelemetry::Context,
    context: std::sync::Arc<RequestContext>,
    method: &'static str,
}

impl Traced {
    fn end<RB>(self, response: Option<&Response<RB>>) {
        let span = self.trace.span();
        let mut name = Cow::Borrowed(self.method);
        if let Some(route) = self.context.route() {
            span.set_attribute(KeyValue::new("tango_gateway.route", route.to_string()));
            name = Cow::Owned(format!("{} {route}", self.method));
        }
        if let Some(caller) = self.context.caller() {
            span.set_attribute(KeyValue::new(
                "tango_gateway.caller",
                caller.name.to_string(),
            ));
        }
        span.set_attribute(KeyValue::new(
            "tango_gateway.attempts",
            i64::from(self.context.attempts()),
        ));
        match response {
            Some(response) => {
                let status = response.status();
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status.as_u16()),
                ));
                // The gateway's own code (a closed set it writes), never a caller's header.
                if let Some(code) = response
                    .headers()
                    .get(ERROR_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .filter(|code| code.starts_with("gateway.") && code.len() <= 48)
                {
                    span.set_attribute(KeyValue::new("tango_gateway.error", code.to_owned()));
                }
                if status.is_server_error() {
                    span.set_status(Status::error(""));
                }
            }
            None => span.set_status(Status::error("")),
        }
        span.update_name(name);
        span.end();
    }
}

pin_project_lite::pin_project! {
    /// The answer, with the span ended when its headers are ready (a named future: no
    /// allocation with tracing off). `Traced` is boxed so that, off, the future grows by
    /// one pointer, not by the span's context.
    pub(crate) struct ServerSpanFuture<F> {
        #[pin]
        inner: F,
        traced: Option<Box<Traced>>,
    }
}

impl<F, RB, E> Future for ServerSpanFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(traced) = this.traced.take() {
            traced.end(result.as_ref().ok());
        }
        Poll::Ready(result)
    }
}
