//! The access-log event: one per request (PRODUCT.md §7), with a direct lane for the `json`
//! format.
//!
//! In the `json` format the line is written here, straight into the log writer's queue, with
//! the same keys in the same order as [`super::JsonLines`] writes for the `tracing` event.
//! Going through `tracing` cost about 7,000 instructions per request under callgrind: the
//! dispatch, the filter, the writer adaptor, and a dynamic visitor call per field whose name
//! is escaped like a value. Here the keys are constants and only the values from outside are
//! escaped. The `pretty` format, and any process without the `json` subscriber installed
//! (tests, `doctor`), get the `tracing` event.
//!
//! Invariants: a line is written only when `tracing` would emit the event (same target and
//! level, so `log.level` and `RUST_LOG` apply as before); the direct line is identical to the
//! `tracing` one (checked in the tests); both go through the same queue, so a thread's lines
//! keep their order.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::sync::OnceLock;

use tracing_appender::non_blocking::NonBlocking;

use super::json::{push_float, push_string, with_line};
use super::timestamp;

/// What one access-log event says. Strings are borrowed: nothing is built per request but
/// the line itself.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    pub request_id: &'a str,
    /// The trace id of the caller's valid `traceparent`, `-` when it sent none.
    pub trace_id: &'a str,
    pub route: &'a str,
    /// The caller's name (§10), `-` when callers are not configured.
    pub caller: &'a str,
    /// The caller's IP address (the TCP peer), when known.
    pub peer: Option<IpAddr>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub gateway_error: &'a str,
    pub attempts: u32,
    pub upstream_status: u16,
    /// Why Tango refused (§11): the final upstream answer's cause, `-` when it was 2xx or
    /// there was none.
    pub upstream_cause: &'static str,
    /// Time spent waiting on Tango, summed over attempts (send to answer headers).
    pub upstream_ms: f64,
    pub duration_ms: f64,
    pub bytes: u64,
    pub complete: bool,
    /// The caller's `User-Agent`, already cut to its first 256 bytes; `-` when absent.
    pub user_agent: &'a str,
}

/// The peer as logged: the address, or `-`.
struct Peer(Option<IpAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The log writer's queue, when the `json` subscriber is installed (set once, by `init`).
static JSON_WRITER: OnceLock<NonBlocking> = OnceLock::new();

thread_local! {
    /// This thread's handle on the queue: cloned once per thread, not once per line (a clone
    /// touches counters shared by every thread).
    static THREAD_WRITER: RefCell<Option<NonBlocking>> = const { RefCell::new(None) };
}

/// Sends access-log lines of the `json` format to `writer` directly from now on.
pub(super) fn write_json_to(writer: NonBlocking) {
    let _ = JSON_WRITER.set(writer);
}

/// Emits the access-log event of one request.
pub fn emit(record: &AccessRecord<'_>) {
    if !tracing::enabled!(target: "tango_gateway::access", tracing::Level::INFO) {
        return;
    }
    match JSON_WRITER.get() {
        Some(shared) => write_json(record, shared),
        None => emit_event(record),
    }
}

/// The `tracing` event: what the `pretty` format (and any other subscriber) receives.
fn emit_event(record: &AccessRecord<'_>) {
    tracing::info!(
        target: "tango_gateway::access",
        request_id = record.request_id,
        trace_id = record.trace_id,
        route = record.route,
        caller = record.caller,
        peer = %Peer(record.peer),
        method = record.method,
        path = record.path,
        status = record.status,
        gateway_error = record.gateway_error,
        attempts = record.attempts,
        upstream_status = record.upstream_status,
        upstream_cause = record.upstream_cause,
        upstream_ms = record.upstream_ms,
        duration_ms = record.duration_ms,
        bytes = record.bytes,
        complete = record.complete,
        user_agent = record.user_agent,
        "request"
    );
}

fn write_json(record: &AccessRecord<'_>, shared: &NonBlocking) {
    with_line(|line| {
        push_json_line(line, record, timestamp::push_now);
        THREAD_WRITER.with_borrow_mut(|writer| {
            let writer = writer.get_or_insert_with(|| shared.clone());
            // As in the `tracing` path: a line that cannot be queued (the writer has stopped,
            // at exit) is dropped, not reported through the log that failed.
            let _ = writer.write_all(line.as_bytes());
        });
    });
}

/// Appends the JSON line of `record`, timestamp written by `push_time`.
fn push_json_line(
    line: &mut String,
    record: &AccessRecord<'_>,
    push_time: impl FnOnce(&mut String),
) {
    line.push_str("{\"timestamp\":\"");
    push_time(line);
    line.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":");
    push_string(line, record.request_id);
    line.push_str(",\"trace_id\":");
    push_string(line, record.trace_id);
    line.push_str(",\"route\":");
    push_string(line, record.route);
    line.push_str(",\"caller\":");
    push_string(line, record.caller);
    // An address or `-`: nothing to escape.
    line.push_str(",\"peer\":\"");
    {
        use std::fmt::Write as _;
        // Writing into a `String` cannot fail.
        let _ = write!(line, "{}", Peer(record.peer));
    }
    line.push('"');
    line.push_str(",\"method\":");
    push_string(line, record.method);
    line.push_str(",\"path\":");
    push_string(line, record.path);
    line.push_str(",\"status\":");
    line.push_str(itoa::Buffer::new().format(record.status));
    line.push_str(",\"gateway_error\":");
    push_string(line, record.gateway_error);
    line.push_str(",\"attempts\":");
    line.push_str(itoa::Buffer::new().format(record.attempts));
    line.push_str(",\"upstream_status\":");
    line.push_str(itoa::Buffer::new().format(record.upstream_status));
    // A closed set of plain words: no escaping needed, but pushed like any string.
    line.push_str(",\"upstream_cause\":");
    push_string(line, record.upstream_cause);
    line.push_str(",\"upstream_ms\":");
    push_float(line, record.upstream_ms);
    line.push_str(",\"duration_ms\":");
    push_float(line, record.duration_ms);
    line.push_str(",\"bytes\":");
    line.push_str(itoa::Buffer::new().format(record.bytes));
    line.push_str(if record.complete {
        ",\"complete\":true"
    } else {
        ",\"complete\":false"
    });
    line.push_str(",\"user_agent\":");
    push_string(line, record.user_agent);
    line.push_str(",\"target\":\"tango_gateway::access\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::json::tests::lines_of;
    use proptest::prelude::*;

    /// The line after its timestamp, which differs between two lines written apart.
    fn after_timestamp(line: &str) -> &str {
        line.split_once("\",\"level\"")
            .map_or(line, |(_, rest)| rest)
    }

    fn direct_line(record: &AccessRecord<'_>) -> String {
        let mut line = String::new();
        push_json_line(&mut line, record, |line| {
            line.push_str("2026-11-22T10:00:00.000000Z")
        });
        line
    }

    fn event_line(record: &AccessRecord<'_>) -> String {
        let lines = lines_of(|| emit_event(record));
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0].clone()
    }

    fn record<'a>(path: &'a str, route: &'a str, gateway_error: &'a str) -> AccessRecord<'a> {
        AccessRecord {
            request_id: "ad36ff8d-a88f-4d6d-9ada-46c178564d78",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            route,
            caller: "payouts",
            peer: Some(IpAddr::from([10, 1, 2, 3])),
            method: "GET",
            path,
            status: 200,
            gateway_error,
            attempts: 1,
            upstream_status: 200,
            upstream_cause: "-",
            upstream_ms: 40.125,
            duration_ms: 42.309566,
            bytes: 204,
            complete: true,
            user_agent: "payouts-service/1.4 (+ops@example.com)",
        }
    }

    #[test]
    fn the_direct_line_is_the_tracing_line() {
        for record in [
            record("/raas/v2/catalogs", "raas", "-"),
            AccessRecord {
                method: "PATCH",
                status: 504,
                attempts: 3,
                upstream_status: 503,
                upstream_cause: "server_error",
                peer: Some("2001:db8::7".parse().unwrap_or(IpAddr::from([0; 4]))),
                trace_id: "-",
                upstream_ms: 0.0,
                user_agent: "curl/8 \"quoted\" \\ \u{7}",
                duration_ms: f64::NAN,
                bytes: 0,
                complete: false,
                ..record(
                    "/raas/v2/a\"b\\c\u{1}é…",
                    "r\tx",
                    "gateway.upstream_timeout",
                )
            },
        ] {
            let direct = direct_line(&record);
            let event = event_line(&record);
            assert_eq!(after_timestamp(direct.trim_end()), after_timestamp(&event));
            let parsed: serde_json::Value = serde_json::from_str(&direct).unwrap_or_default();
            assert_eq!(parsed["path"], record.path);
            assert_eq!(parsed["route"], record.route);
            assert_eq!(parsed["upstream_cause"], record.upstream_cause);
            assert_eq!(parsed["user_agent"], record.user_agent);
            assert_eq!(parsed["trace_id"], record.trace_id);
            assert_eq!(parsed["peer"], Peer(record.peer).to_string());
            assert_eq!(parsed["target"], "tango_gateway::access");
        }
    }

    #[test]
    fn a_direct_line_is_one_line_ending_in_a_newline() {
        let line = direct_line(&record("/raas/v2/x\ny", "raas", "-"));
        assert!(line.ends_with("}\n"), "{line}");
        assert_eq!(line.matches('\n').count(), 1, "{line}");
    }

    proptest! {
        #[test]
        fn any_strings_give_the_same_line_both_ways(
            path in ".{0,40}",
            route in ".{0,12}",
            gateway_error in ".{0,12}",
            user_agent in ".{0,40}",
            duration_ms in proptest::num::f64::ANY,
            upstream_ms in proptest::num::f64::ANY,
            peer in proptest::option::of(any::<IpAddr>()),
        ) {
            let record = AccessRecord {
                duration_ms,
                upstream_ms,
                peer,
                user_agent: &user_agent,
                ..record(&path, &route, &gateway_error)
            };
            let direct = direct_line(&record);
            let event = event_line(&record);
            prop_assert_eq!(after_timestamp(direct.trim_end()), after_timestamp(&event));
        }
    }
}
