//! Logging setup: `json` or `pretty`, level from the config (or `RUST_LOG` when set).
//!
//! Invariant: nothing here formats request headers; the events that the gateway emits carry
//! only the fields chosen at each call site.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call (tests, demo) keeps the first one.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().with_target(false).try_init(),
    };
    // An error only means a subscriber is already installed.
    drop(result);
}
