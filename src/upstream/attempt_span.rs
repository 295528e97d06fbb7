//! The client span of each upstream attempt while tracing is on (§13), and the attempt's
//! own trace context sent to Tango as `traceparent` (with the caller's `tracestate`). With
//! tracing off the request passes through untouched: the caller's `traceparent`, if any,
//! goes upstream as it came, as it always did.
//!
//! Invariant: sits with the attempt metrics, below the credentials, so each attempt (first,
//! retried, or resent after a 401) has exactly one span, numbered like the access log's
//! `attempts`; its attributes are the method, the upstream's host and port (from the
//! config), the attempt number and the outcome words of `tango_gateway_upstream_attempts_total`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Span;
use tower::{Layer, Service};

use super::attempt_metrics::status_class;
use super::classify::{classify_attempt_error, AttemptFailure};
use crate::context::RequestContext;
use crate::error::BoxError;
use crate::server_span::method_name;
use crate::telemetry::otel;

#[derive(Debug, Clone)]
pub struct AttemptSpanLayer {
    route: Arc<str>,
}

impl AttemptSpanLayer {
    pub fn new(route: Arc<str>) -> Self {
        AttemptSpanLayer { route }
    }
}

impl<S> Layer<S> for AttemptSpanLayer {
    type Service = AttemptSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AttemptSpan {
            inner,
            route: self.route.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptSpan<S> {
    inner: S,
    route: Arc<str>,
}

impl<S, B, RB> Service<Request<B>> for AttemptSpan<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = AttemptSpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let span = otel::tracer().map(|tracer| {
            let context = RequestContext::get(&request);
            let attempt = context.map_or(1, |c| c.attempts().max(1));
            let method = method_name(request.method());
            let uri = request.uri();
            let mut attributes = vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("tango_gateway.route", self.route.to_string()),
                KeyValue::new("tango_gateway.attempt", i64::from(attempt)),
            ];
            if attempt > 1 {
                attributes.push(KeyValue::new(
                    "http.request.resend_count",
                    i64::from(attempt - 1),
                ));
            }
            if let Some(host) = uri.host() {
                attributes.push(KeyValue::new("server.address", host.to_owned()));
            }
            if let Some(port) = uri.port_u16().or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            }) {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
            let builder = tracer
                .span_builder(format!("{method} {}", self.route))
                .with_kind(SpanKind::Client)
                .with_attributes(attributes);
            let root = opentelemetry::Context::new();
            let parent = context.and_then(|c| c.trace()).unwrap_or(&root);
            let span = tracer.build_with_context(builder, parent);
            // Tango sees this attempt as the parent of its work (sampled or not).
            otel::inject(span.span_context(), request.headers_mut());
            Box::new(span)
        });
        AttemptSpanFuture {
            attempt: self.inner.call(request),
            span,
        }
    }
}

pin_project_lite::pin_project! {
    /// One attempt, its span ended with its outcome (a named future: nothing allocated
    /// per attempt with tracing off). The span is boxed: an SDK span is a few hundred
    /// bytes, which every attempt's future would carry and copy even with tracing off.
    pub struct AttemptSpanFuture<F> {
        #[pin]
        attempt: F,
        span: Option<Box<Span>>,
    }
}

impl<F, RB> Future for AttemptSpanFuture<F>
where
    F: Future<Output = Result<Response<RB>, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.attempt.poll(cx));
        if let Some(mut span) = this.span.take() {
            match &result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    span.set_attribute(KeyValue::new(
                        "http.response.status_code",
                        i64::from(status),
                    ));
                    span.set_attribute(KeyValue::new(
                        "tango_gateway.outcome",
                        status_class(status),
                    ));
                    if status >= 500 {
                        span.set_status(Status::error(""));
                    }
                }
                Err(err) => {
                    let outcome =
                        classify_attempt_error(&**err).map_or("error", AttemptFailure::as_str);
                    span.set_attribute(KeyValue::new("tango_gateway.outcome", outcome));
                    span.set_attribute(KeyValue::new("error.type", outcome));
                    span.set_status(Status::error(outcome));
                }
            }
            span.end();
        }
        Poll::Ready(result)
    }
}
