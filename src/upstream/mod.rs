//! The upstream side: verified TLS (with mTLS), pooled connections, per-attempt timeout.
pub mod client;
pub mod timeout;
pub mod tls;
