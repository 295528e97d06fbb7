//! OpenTelemetry traces (PRODUCT.md §13): the process's tracer, when tracing is on, and the
//! W3C trace-context helpers the spans use. Off by default; `telemetry.otlp.endpoint` (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) turns it on for the life of the process.
//!
//! Design: spans are made directly with the `opentelemetry` API behind one `Option` check
//! ([`tracer`], a `OnceLock` read), not through `tracing-opentelemetry`. A `tracing` layer
//! would sit on the log subscriber every event of the process already passes: each
//! `tracing` span the stack entered would cost a registry slot, an extension map and the
//! layer's bookkeeping on every request even with export off, and the span attributes would
//! be whatever fields a call site happened to record (a header value one day). Direct spans
//! cost nothing when off (no span, no allocation: the layers check [`tracer`] and pass the
//! request through), and the attribute set is fixed here and in the three places that make
//! spans: the server span ([`crate::server_span`]), the attempt span
//! ([`crate::upstream::attempt_span`]) and the token-fetch span (the OAuth refresher).
//!
//! Export (see [`export`]): the SDK's batch processor on its own thread, OTLP HTTP/protobuf
//! sent by our own hyper client, so a slow or dead collector never blocks a request: spans
//! that cannot be queued or delivered are dropped and counted in
//! `tango_gateway_otel_spans_dropped_total`.
//!
//! Invariant: no span made by the gateway holds a header value, a query string, a body, a
//! token, a secret or a DPoP proof: every attribute is set by name below or at the three
//! span sites, from closed sets (methods, statuses, outcome words) or config names (routes,
//! callers, the upstream's host).

pub mod export;
mod token_span;

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceId};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

pub use export::{init, OtelGuard, OtelSetupError};
pub use token_span::TokenFetchSpan;

/// The W3C trace-context headers.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The process's tracer while tracing is on; `None` (the default) costs one atomic load.
#[inline]
pub fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// Installs the tracer for the rest of the process (the first call wins).
fn install(tracer: SdkTracer) -> bool {
    TRACER.set(tracer).is_ok()
}

/// The caller's trace context from `traceparent`/`tracestate`, as the parent of the server
/// span: an empty context (a new root) when there is none or it is malformed.
pub fn extract(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract_with_context(
        &Context::new(),
        &opentelemetry_http::HeaderExtractor(headers),
    )
}

/// The trace id of a `traceparent` header, when it has a valid one: what the access log
/// shows for a request while tracing is off (with tracing on, the server span's trace id is
/// in the request's context). Reads the header only; allocates nothing.
pub fn trace_id_of(headers: &HeaderMap) -> Option<TraceId> {
    let value = headers.get(TRACEPARENT)?;
    let hex = super::traceparent::trace_id(value.as_bytes())?;
    TraceId::from_hex(hex).ok()
}

/// Writes `span`'s context as this request's `traceparent` (and its `tracestate`, the
/// caller's carried on, or none): what Tango sees as the parent of its own work.
pub fn inject(span: &SpanContext, headers: &mut HeaderMap) {
    if !span.is_valid() {
        return;
    }
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    );
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        headers.insert(TRACEPARENT, value);
    }
    let state = span.trace_state().header();
    match HeaderValue::from_str(&state) {
        Ok(value) if !state.is_empty() => {
            headers.insert(TRACESTATE, value);
        }
        _ => {
            headers.remove(TRACESTATE);
        }
    }
}

/// The span context a `Context` carries (the server span's, for its children).
pub fn span_context(cx: &Context) -> SpanContext {
    cx.span().span_context().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(traceparent: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_str(traceparent).unwrap());
        headers
    }

    #[test]
    fn a_valid_traceparent_gives_its_trace_id_and_parent() {
        let found = trace_id_of(&headers(PARENT)).unwrap();
        assert_eq!(found.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let cx = extract(&headers(PARENT));
        let parent = span_context(&cx);
        assert_eq!(parent.trace_id(), found);
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_sampled() && parent.is_remote());
    }

    #[test]
    fn malformed_traceparents_give_nothing() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(&headers(bad)), None, "{bad}");
        }
        assert_eq!(trace_id_of(&HeaderMap::new()), None);
        assert!(!span_context(&extract(&HeaderMap::new())).is_valid());
    }

    #[test]
    fn injection_writes_the_span_as_parent_and_carries_tracestate_on() {
        let mut inbound = headers(PARENT);
        inbound.insert(TRACESTATE, HeaderValue::from_static("vendor=abc"));
        let caller = span_context(&extract(&inbound));
        let mut outbound = HeaderMap::new();
        outbound.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        inject(&caller, &mut outbound);
        assert_eq!(outbound[TRACEPARENT], PARENT);
        assert_eq!(outbound[TRACESTATE], "vendor=abc");

        let no_state = span_context(&extract(&headers(PARENT)));
        inject(&no_state, &mut outbound);
        assert!(outbound.get(TRACESTATE).is_none());
    }

    #[test]
    fn tracing_is_off_unless_installed() {
        // Unit tests never install the tracer: every layer passes requests through.
        assert!(tracer().is_none());
    }
}
