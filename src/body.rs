//! Body types: what goes upstream (`Payload`) and what goes back to the caller.
//!
//! Invariant: a request body is kept in memory only when a retry could need to send it again
//! (`Payload::Buffered`); otherwise it streams, with the size limit enforced as it flows.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::error::{find_cause, BoxError};

/// Every response body the gateway sends: Tango's streamed through, or its own JSON.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A copy of `request` to send again (same target, headers and extensions); `None` when its
/// body streams and cannot be replayed.
pub fn clone_request(request: &http::Request<Payload>) -> Option<http::Request<Payload>> {
    let body = request.body().try_clone()?;
    let mut copy = http::Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    Some(copy)
}

/// The body of a request on its way upstream.
#[derive(Debug)]
pub enum Payload {
    Empty,
    /// Held in memory so each attempt can send it again.
    Buffered {
        bytes: Bytes,
        sent: bool,
    },
    /// Streamed from the caller; can be sent once only.
    Streaming {
        body: Limited<Incoming>,
        /// Set when the stream passed the size limit. The limit error itself may not survive
        /// the trip through the client (h2 turns it into a stream reset), so it is recorded
        /// here for the layer that answers 413.
        overflow: Arc<AtomicBool>,
    },
}

impl Payload {
    pub fn buffered(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Payload::Empty
        } else {
            Payload::Buffered { bytes, sent: false }
        }
    }

    /// A fresh copy for another attempt; `None` for a stream, which cannot be replayed.
    pub fn try_clone(&self) -> Option<Payload> {
        match self {
            Payload::Empty => Some(Payload::Empty),
            Payload::Buffered { bytes, .. } => Some(Payload::Buffered {
                bytes: bytes.clone(),
                sent: false,
            }),
            Payload::Streaming { .. } => None,
        }
    }

    /// The whole body when it is in memory (for idempotency-key detection).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Payload::Buffered { bytes, .. } => Some(bytes),
            _ => None,
        }
    }
}

impl Body for Payload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Payload::Empty => Poll::Ready(None),
            Payload::Buffered { bytes, sent } => {
                if *sent {
                    Poll::Ready(None)
                } else {
                    *sent = true;
                    Poll::Ready(Some(Ok(Frame::data(bytes.clone()))))
                }
            }
            Payload::Streaming { body, overflow } => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Err(err))) = &polled {
                    if find_cause::<LengthLimitError>(&**err).is_some() {
                        overflow.store(true, Ordering::Release);
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Payload::Empty => true,
            Payload::Buffered { sent, .. } => *sent,
            Payload::Streaming { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Payload::Empty => SizeHint::with_exact(0),
            Payload::Buffered { bytes, sent } => {
                SizeHint::with_exact(if *sent { 0 } else { bytes.len() as u64 })
            }
            Payload::Streaming { body, .. } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buffered_payload_replays_identically() {
        let original = Payload::buffered(Bytes::from_static(b"{\"externalRefID\":\"a\"}"));
        let copy = original.try_clone().map(|p| p.collect());
        let first = original.collect().await.map(|c| c.to_bytes()).ok();
        let second = match copy {
            Some(fut) => fut.await.map(|c| c.to_bytes()).ok(),
            None => None,
        };
        assert_eq!(first, second);
        assert!(first.is_some_and(|b| !b.is_empty()));
    }

    #[test]
    fn empty_bytes_become_empty_payload() {
        assert!(matches!(Payload::buffered(Bytes::new()), Payload::Empty));
    }
}
