//! The `json` log format: one JSON object per line, `timestamp`, `level`, the event's fields
//! (`message` first), `target`, then `spans` (root to leaf, each `{"name":…, fields…}`) when
//! the event happened inside any: the keys of tracing-subscriber's JSON format with
//! `flatten_event(true)`, which this replaces. Install both halves: `.fmt_fields(JsonSpanFields)`
//! and `.event_format(JsonLines)`.
//!
//! Written here because of its cost: the access log writes one line per request, and
//! tracing-subscriber's JSON format builds each line through serde, `tracing-serde` and an
//! `io::Write` adaptor that re-validates UTF-8 on every write. Under callgrind that came to
//! about 24,000 instructions per request, a fifth of the gateway's whole user-space work
//! per request. This writes the same object straight into the line buffer.
//!
//! Invariant: every line is one valid JSON object (strings escaped per RFC 8259 §7,
//! non-finite numbers written as `null`); checked against serde_json in the tests.

use std::cell::RefCell;
use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// A line longer than this is not kept as the thread's buffer afterwards.
const KEPT_LINE_CAPACITY: usize = 4096;

thread_local! {
    /// Each thread's line under construction, reused from event to event.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// The `json` event format.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// How a span's fields are kept for [`JsonLines`]: `,"name":value` pairs, ready to be placed
/// in the span's object.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut pairs = String::new();
        fields.record(&mut JsonFields { line: &mut pairs });
        writer.write_str(&pairs)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // Pairs append as they are: each starts with its own comma.
        fields.record(&mut JsonFields {
            line: &mut current.fields,
        });
        Ok(())
    }
}

impl<S> FormatEvent<S, JsonSpanFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonSpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Built in a plain `String` (direct, inlined appends) and handed to `writer` once,
        // rather than through `writer`'s dynamic `fmt::Write` call by call.
        with_line(|line| {
            write_line(line, ctx, event);
            writer.write_str(line)
        })
    }
}

/// Runs `build` on this thread's line buffer, emptied first (a fresh `String` if the buffer
/// is in use: only when an event is emitted while a line is built, by a `Debug` that logs).
pub(super) fn with_line<R>(build: impl FnOnce(&mut String) -> R) -> R {
    LINE.with(|line| match line.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            let result = build(&mut line);
            if line.capacity() > KEPT_LINE_CAPACITY {
                *line = String::with_capacity(512);
            }
            result
        }
        Err(_) => build(&mut String::new()),
    })
}

fn write_line<S>(line: &mut String, ctx: &FmtContext<'_, S, JsonSpanFields>, event: &Event<'_>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let metadata = event.metadata();
    line.push_str("{\"timestamp\":\"");
    super::timestamp::push_now(line);
    line.push_str("\",\"level\":\"");
    line.push_str(metadata.level().as_str());
    line.push('"');
    let mut fields = JsonFields { line };
    event.record(&mut fields);
    line.push_str(",\"target\":");
    push_string(line, metadata.target());
    if let Some(scope) = ctx.event_scope() {
        line.push_str(",\"spans\":[");
        for (index, span) in scope.from_root().enumerate() {
            if index > 0 {
                line.push(',');
            }
            line.push_str("{\"name\":");
            push_string(line, span.name());
            if let Some(fields) = span.extensions().get::<FormattedFields<JsonSpanFields>>() {
                line.push_str(&fields.fields);
            }
            line.push('}');
        }
        line.push(']');
    }
    line.push_str("}\n");
}

/// Appends each field as `,"name":value`.
struct JsonFields<'a> {
    line: &'a mut String,
}

impl JsonFields<'_> {
    fn name(&mut self, field: &Field) -> &mut String {
        self.line.push(',');
        push_string(self.line, field.name());
        self.line.push(':');
        self.line
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        push_string(self.name(field), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field).push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field).push_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field)
            .push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        push_float(self.name(field), value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        push_displayed(self.name(field), format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        push_displayed(self.name(field), format_args!("{value:?}"));
    }
}

/// A JSON number (shortest round-trip form, as serde_json writes it), or `null` for NaN and
/// infinities, which JSON cannot carry.
pub(super) fn push_float(line: &mut String, value: f64) {
    if value.is_finite() {
        line.push_str(ryu::Buffer::new().format_finite(value));
    } else {
        line.push_str("null");
    }
}

/// A JSON string literal.
pub(super) fn push_string(line: &mut String, value: &str) {
    line.push('"');
    push_escaped(line, value);
    line.push('"');
}

/// A formatted value as a JSON string literal.
fn push_displayed(line: &mut String, value: fmt::Arguments<'_>) {
    line.push('"');
    match value.as_str() {
        Some(text) => push_escaped(line, text),
        // Writing into a `String` cannot fail.
        None => {
            let _ = Escaped(line).write_fmt(value);
        }
    }
    line.push('"');
}

/// Bytes that must be escaped inside a JSON string: controls, `"` and `\`.
const fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Whether any byte of `text` needs escaping, eight bytes at a time.
///
/// Every access-log line runs about 25 strings through here, nearly all clean; the
/// byte-by-byte test was 3 % of a request's instructions. The word test is the classic
/// "has a byte below n" / "has a zero byte" bit trick (exact, not approximate: it is checked
/// against [`needs_escape`] by a property test), written by hand because no crate in the
/// tree offers it for this set of bytes.
fn any_needs_escape(text: &str) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const fn has_zero_byte(word: u64) -> bool {
        word.wrapping_sub(ONES) & !word & HIGHS != 0
    }
    let mut words = text.as_bytes().chunks_exact(8);
    for chunk in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(bytes);
        // Below 0x20: subtracting 0x20 from a byte below it borrows into its high bit
        // (bytes of 0x80 and above have their high bit set already and are masked by !word).
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
        if control
            || has_zero_byte(word ^ (ONES * u64::from(b'"')))
            || has_zero_byte(word ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    words.remainder().iter().copied().any(needs_escape)
}

/// The inside of a JSON string.
fn push_escaped(line: &mut String, text: &str) {
    if !any_needs_escape(text) {
        line.push_str(text);
        return;
    }
    let mut clean_from = 0;
    for (at, byte) in text.bytes().enumerate() {
        if !needs_escape(byte) {
            continue;
        }
        line.push_str(&text[clean_from..at]);
        match byte {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            b'\n' => line.push_str("\\n"),
            b'\r' => line.push_str("\\r"),
            b'\t' => line.push_str("\\t"),
            _ => {
                let _ = write!(line, "\\u{byte:04x}");
            }
        }
        clean_from = at + 1;
    }
    line.push_str(&text[clean_from..]);
}

/// Escapes what is formatted through it (for `Debug` and `Display` values).
struct Escaped<'a>(&'a mut String);

impl Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        push_escaped(self.0, text);
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn string_literal(value: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, value);
        out
    }

    fn float(value: f64) -> String {
        let mut out = String::new();
        push_float(&mut out, value);
        out
    }

    #[test]
    fn specials_are_escaped() {
        assert_eq!(
            string_literal("a\"b\\c\nd\te\u{1}"),
            r#""a\"b\\c\nd\te\u0001""#
        );
        assert_eq!(string_literal("/raas/v2/é"), "\"/raas/v2/é\"");
    }

    #[test]
    fn floats_stay_numbers() {
        assert_eq!(float(1.25), "1.25");
        assert_eq!(float(3.0), "3.0");
        assert_eq!(float(63.436417999999996), "63.436417999999996");
        assert_eq!(float(f64::NAN), "null");
        assert_eq!(float(f64::INFINITY), "null");
        for value in [0.1, 63.436417999999996, 1e300, -2.5e-7] {
            assert_eq!(float(value).parse::<f64>().ok(), Some(value));
            let json: Result<serde_json::Value, _> = serde_json::from_str(&float(value));
            assert!(json.is_ok_and(|v| v.is_f64()), "{value}");
        }
    }

    /// Captures what a subscriber using [`JsonLines`] writes for the events of `emit`.
    pub(in crate::telemetry) fn lines_of(emit: impl FnOnce()) -> Vec<String> {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut bytes) = self.0.lock() {
                    bytes.extend_from_slice(buf);
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonSpanFields)
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = sink.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_event_is_one_object_with_the_usual_keys_in_order() {
        let error = std::io::Error::other("disk \"full\"");
        let lines = lines_of(|| {
            tracing::warn!(
                target: "tango_gateway::access",
                text = "a\tb",
                count = 3u64,
                delta = -2i64,
                ok = true,
                ms = 1.5f64,
                shown = %"display",
                debugged = ?Some(1),
                error = &error as &(dyn std::error::Error + 'static),
                "request {}",
                7
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let text = &lines[0];
        assert!(text.starts_with(r#"{"timestamp":""#), "{text}");
        assert!(
            text.contains(r#"","level":"WARN","message":"request 7","text":"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#","target":"tango_gateway::access"}"#),
            "{text}"
        );
        let line: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "request 7");
        assert_eq!(line["text"], "a\tb");
        assert_eq!(line["count"], 3);
        assert_eq!(line["delta"], -2);
        assert_eq!(line["ok"], true);
        assert_eq!(line["ms"], 1.5);
        assert_eq!(line["shown"], "display");
        assert_eq!(line["debugged"], "Some(1)");
        assert_eq!(line["error"], "disk \"full\"");
        assert_eq!(line["target"], "tango_gateway::access");
        let timestamp = line["timestamp"].as_str().unwrap_or("");
        assert!(
            timestamp.ends_with('Z') && timestamp.contains('T'),
            "{timestamp}"
        );
    }

    #[test]
    fn spans_are_listed_root_first_with_their_fields() {
        let lines = lines_of(|| {
            let outer = tracing::info_span!("connection", peer = "10.0.0.1:5000", n = 1u64);
            let _outer = outer.enter();
            let inner = tracing::info_span!("stream", id = 3u64, later = tracing::field::Empty);
            inner.record("later", "set \"afterwards\"");
            let _inner = inner.enter();
            tracing::info!("inside");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap_or_default();
        assert_eq!(line["message"], "inside");
        let spans = line["spans"].as_array().cloned().unwrap_or_default();
        assert_eq!(spans.len(), 2, "{}", lines[0]);
        assert_eq!(spans[0]["name"], "connection");
        assert_eq!(spans[0]["peer"], "10.0.0.1:5000");
        assert_eq!(spans[0]["n"], 1);
        assert_eq!(spans[1]["name"], "stream");
        assert_eq!(spans[1]["id"], 3);
        assert_eq!(spans[1]["later"], "set \"afterwards\"");
    }

    #[test]
    fn no_spans_key_outside_spans() {
        let lines = lines_of(|| tracing::info!("alone"));
        assert!(!lines[0].contains("\"spans\""), "{}", lines[0]);
    }

    #[test]
    fn the_word_test_finds_a_bad_byte_anywhere() {
        for bad in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
            for at in 0..20 {
                let mut chars: Vec<char> = "é-clean text, twenty".chars().collect();
                assert!(!any_needs_escape(&chars.iter().collect::<String>()));
                chars.insert(at, bad);
                let text: String = chars.into_iter().collect();
                assert!(any_needs_escape(&text), "{text:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn the_word_test_agrees_with_the_byte_test(
            value in "[\\x00-\\x22\\x5b-\\x5d\\x7e-\\u{a0}a ]{0,40}|\\PC{0,40}"
        ) {
            prop_assert_eq!(any_needs_escape(&value), value.bytes().any(needs_escape));
        }

        #[test]
        fn any_string_round_trips_through_serde_json(value in any::<String>()) {
            let literal = string_literal(&value);
            let parsed: Result<String, _> = serde_json::from_str(&literal);
            prop_assert_eq!(parsed.ok(), Some(value));
        }

        #[test]
        fn any_finite_float_is_a_json_number_of_the_same_value(
            value in any::<f64>().prop_filter("finite", |v| v.is_finite())
        ) {
            let text = float(value);
            // Exactness against Rust's parser (serde_json's default one rounds).
            prop_assert_eq!(text.parse::<f64>().ok(), Some(value));
            let json: Result<serde_json::Value, _> = serde_json::from_str(&text);
            prop_assert!(json.is_ok_and(|v| v.is_number()), "{}", text);
        }
    }
}
