//! The upstream side: verified TLS (with mTLS), pooled connections, per-attempt timeout.
pub mod attempt_metrics;
pub mod attempt_span;
pub mod classify;
pub mod client;
pub mod connect;
pub mod lease;
pub mod pool;
pub mod rejection;
pub mod rejection_record;
pub mod stall;
pub mod timeout;
pub mod tls;
