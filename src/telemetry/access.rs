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
    /// Time spent waiting on Tango, summed over attempts (send to answer headers), in
    /// microseconds; logged as `upstream_ms`.
    pub upstream_us: u64,
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
        upstream_ms = millis(record.upstream_us),
        duration_ms = record.duration_ms,
        bytes = record.bytes,
        complete = record.complete,
        user_agent = record.user_agent,
        "request"
    );
}

/// Microseconds as the float of milliseconds the `tracing` event records.
fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The peer as [`Peer`] displays it. An IPv4 address is written octet by octet: through
/// `fmt`'s padding and dispatch it cost about 1 % of a request's instructions (callgrind)
/// for four small numbers.
fn push_peer(line: &mut String, peer: Option<IpAddr>) {
    match peer {
        Some(IpAddr::V4(ip)) => {
            let [a, b, c, d] = ip.octets();
            let mut digits = itoa::Buffer::new();
            line.push_str(digits.format(a));
            for octet in [b, c, d] {
                line.push('.');
                line.push_str(digits.format(octet));
            }
        }
        peer => {
            use std::fmt::Write as _;
            // Writing into a `String` cannot fail.
            let _ = write!(line, "{}", Peer(peer));
        }
    }
}

/// `micros` as the JSON number of milliseconds that `ryu` writes for [`millis`] (the
/// `tracing` event's form): the whole part, a point, the thousandths without trailing
/// zeros but at least one digit (`40.125`, `40.1`, `0.0`). Written with integers: `ryu`
/// cost about half a percent of a request's instructions here. Exact because `micros / 1000` has at most
/// three decimals and, below 2^53 µs, the nearest double to it prints as those decimals
/// (`ryu` switches to exponents only from 1e16, centuries of waiting). Checked against
/// `ryu` by a property test.
fn push_millis(line: &mut String, micros: u64) {
    const EXACT_BELOW: u64 = 1 << 53;
    if micros >= EXACT_BELOW {
        push_float(line, millis(micros));
        return;
    }
    let mut digits = itoa::Buffer::new();
    line.push_str(digits.format(micros / 1000));
    line.push('.');
    let thousandths = micros % 1000;
    let (value, width) = match thousandths {
        0 => (0, 1),
        t if t % 100 == 0 => (t / 100, 1),
        t if t % 10 == 0 => (t / 10, 2),
        t => (t, 3),
    };
    let text = digits.format(value);
    for _ in text.len()..width {
        line.push('0');
    }
    line.push_str(text);
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
    push_peer(line, record.peer);
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
    push_millis(line, record.upstream_us);
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
            upstream_us: 40_125,
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
                upstream_us: 0,
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

    #[test]
    fn milliseconds_are_written_as_ryu_writes_them() {
        for micros in [
            0,
            1,
            10,
            100,
            999,
            1000,
            1001,
            40_100,
            40_125,
            123_456_789,
            1 << 53,
        ] {
            let mut line = String::new();
            push_millis(&mut line, micros);
            let mut expected = String::new();
            push_float(&mut expected, millis(micros));
            assert_eq!(line, expected, "{micros}");
        }
    }

    proptest! {
        #[test]
        fn milliseconds_match_ryu(micros in prop_oneof![0..100_000_000u64, any::<u64>()]) {
            let mut line = String::new();
            push_millis(&mut line, micros);
            let mut expected = String::new();
            push_float(&mut expected, millis(micros));
            prop_assert_eq!(line, expected);
        }

        #[test]
        fn any_peer_is_written_as_displayed(peer in proptest::option::of(any::<IpAddr>())) {
            let mut line = String::new();
            push_peer(&mut line, peer);
            prop_assert_eq!(line, Peer(peer).to_string());
        }

        #[test]
        fn any_strings_give_the_same_line_both_ways(
            path in ".{0,40}",
            route in ".{0,12}",
            gateway_error in ".{0,12}",
            user_agent in ".{0,40}",
            duration_ms in proptest::num::f64::ANY,
            upstream_us in prop_oneof![0..10_000_000u64, any::<u64>()],
            peer in proptest::option::of(any::<IpAddr>()),
        ) {
            let record = AccessRecord {
                duration_ms,
                upstream_us,
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
