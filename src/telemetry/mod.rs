//! Logging setup: `json` or `pretty`, level from the config (or `RUST_LOG` when set).
//!
//! Invariants: nothing here formats request headers; the events that the gateway emits carry
//! only the fields chosen at each call site. Events are formatted on the calling thread and
//! written by one background thread through a buffer, so a request never waits on a
//! `write` to stdout and a busy second of access logs costs a few system calls, not one per
//! line. Nothing is dropped: when the queue is full, callers wait.

pub mod access;
mod json;
pub mod otel;
mod timestamp;
pub mod traceparent;

use std::io::BufWriter;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub use json::{JsonLines, JsonSpanFields};

/// Lines queued for the writer thread before callers wait: about 2–3 MB of JSON at most.
/// tracing-appender's default (128,000 lines, tens of MB) would let a slow stdout turn
/// into resident memory under load.
const QUEUED_LINES: usize = 8_192;

/// Keeps the log writer thread alive; dropping it flushes what is queued. Hold it until the
/// process exits.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    /// Only held: its `Drop` flushes the queue and stops the writer thread.
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber; a second call (tests, demo) keeps the first one.
pub fn init(format: LogFormat, level: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("tango-gateway-log")
        .finish(BufWriter::new(std::io::stdout()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
    let result = match format {
        LogFormat::Json => builder
            .fmt_fields(json::JsonSpanFields)
            .event_format(json::JsonLines)
            .try_init(),
        LogFormat::Pretty => builder.compact().with_target(false).try_init(),
    };
    if result.is_ok() && matches!(format, LogFormat::Json) {
        access::write_json_to(writer);
    }
    // An error only means a subscriber is already installed (and its writer kept).
    LogGuard {
        _writer: result.is_ok().then_some(guard),
    }
}
