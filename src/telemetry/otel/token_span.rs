//! The span of one token fetch (§13): which credential, which endpoint, the outcome; never
//! the token, the secret or the proof.

use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::Span;

use super::tracer;

/// A token fetch in progress; [`TokenFetchSpan::end`] records its outcome.
pub struct TokenFetchSpan {
    span: Span,
}

impl TokenFetchSpan {
    /// Starts the span of a fetch for `credential` (`client_id@audience`, the metrics'
    /// label) at `token_url`, as a child of `parent` (the request that waits for it) or as a
    /// root (a scheduled refresh). `None` with tracing off.
    pub fn start(
        credential: &str,
        token_url: &http::Uri,
        parent: Option<&Context>,
    ) -> Option<Self> {
        let tracer = tracer()?;
        let mut attributes = vec![
            KeyValue::new("tango_gateway.credential", credential.to_owned()),
            KeyValue::new(
                "tango_gateway.trigger",
                if parent.is_some() {
                    "request"
                } else {
                    "refresh"
                },
            ),
        ];
        if let Some(host) = token_url.host() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = token_url.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let builder = tracer
            .span_builder("oauth token")
            .with_kind(SpanKind::Client)
            .with_attributes(attributes);
        let root = Context::new();
        let span = tracer.build_with_context(builder, parent.unwrap_or(&root));
        Some(TokenFetchSpan { span })
    }

    /// Ends the span with `outcome`: `success`, `adopted` (from a shared store), `refused`
    /// (the endpoint refuses the credential) or `failed`.
    pub fn end(mut self, outcome: &'static str) {
        self.span
            .set_attribute(KeyValue::new("tango_gateway.outcome", outcome));
        if matches!(outcome, "refused" | "failed") {
            self.span.set_status(Status::error(outcome));
        }
        self.span.end();
    }
}
