//! Per-request facts gathered on the way down the stack and read by the access log.
//!
//! Invariant: holds no header value and no body, so logging it can never leak a credential.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// The inbound peer of a connection, set by the listener on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Shared by every layer of one request through `Arc` in the request's extensions.
#[derive(Debug, Default)]
pub struct RequestContext {
    route: OnceLock<Arc<str>>,
    attempts: AtomicU32,
    upstream_status: AtomicU16,
}

impl RequestContext {
    pub fn set_route(&self, name: Arc<str>) {
        // First writer wins: a request is routed once.
        let _ = self.route.set(name);
    }

    pub fn route(&self) -> Option<&str> {
        self.route.get().map(|r| &**r)
    }

    /// Counts one upstream attempt and returns its number (1-based).
    pub fn start_attempt(&self) -> u32 {
        self.attempts.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }

    pub fn set_upstream_status(&self, status: http::StatusCode) {
        self.upstream_status
            .store(status.as_u16(), Ordering::Relaxed);
    }

    /// The status of the last upstream answer, if any attempt got one.
    pub fn upstream_status(&self) -> Option<u16> {
        match self.upstream_status.load(Ordering::Relaxed) {
            0 => None,
            status => Some(status),
        }
    }
}
