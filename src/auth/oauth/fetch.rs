//! The token cache's seams: where its tokens come from ([`TokenFetch`]: the OAuth client in
//! service, a scripted fake in tests) and the wall clock their lifetimes are read on
//! ([`WallClock`]).
//!
//! Invariant: in service the cache runs on the real token request and the system's wall
//! clock; a fake fetch and a clock driven by tokio's (pausable) clock exist in test builds
//! only.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use super::client::{FetchError, TokenClient};
use super::token::{AccessToken, TokenKind};

/// One token request's outcome, boxed so the cache can hold any fetcher behind one pointer
/// (an allocation per token request: nothing on a caller's path).
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AccessToken, FetchError>> + Send + 'a>>;

/// Where a token source gets a new token. The source's refresher is the only caller, so a
/// fetcher never sees two calls at once.
pub trait TokenFetch: Send + Sync + std::fmt::Debug {
    /// Asks for a new token.
    fn fetch(&self) -> FetchFuture<'_>;

    /// The only kind of token this credential may use (DPoP-bound when a key is configured):
    /// a stored token of another kind is never served.
    fn token_kind(&self) -> TokenKind;
}

impl TokenFetch for TokenClient {
    fn fetch(&self) -> FetchFuture<'_> {
        // The inherent method: the token request itself.
        Box::pin(TokenClient::fetch(self))
    }

    fn token_kind(&self) -> TokenKind {
        TokenClient::token_kind(self)
    }
}

/// The clock token lifetimes are read on. A token's expiry is a wall-clock date (its
/// `expires_in` counted from the request, kept in a file or Redis and compared by other
/// processes), so in service this is the system clock, never a monotonic one.
#[derive(Debug, Clone, Copy)]
pub enum WallClock {
    System,
    /// Tests: a wall clock that moves with tokio's clock from `start`, so paused time moves
    /// token lifetimes too.
    #[cfg(test)]
    Tokio {
        epoch: SystemTime,
        start: tokio::time::Instant,
    },
}

impl WallClock {
    /// A wall clock that starts now and then follows tokio's clock (paused or not).
    #[cfg(test)]
    pub fn following_tokio() -> Self {
        WallClock::Tokio {
            epoch: SystemTime::now(),
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(self) -> SystemTime {
        match self {
            WallClock::System => SystemTime::now(),
            #[cfg(test)]
            WallClock::Tokio { epoch, start } => epoch + start.elapsed(),
        }
    }
}
