//! Body types: what goes upstream (`Payload`) and what goes back to the caller.
//!
//! Invariants: a request body is kept in memory only when a retry could need to send it
//! again (`Payload::Buffered`); otherwise it streams, with the size limit and the per-chunk
//! read timeout enforced as it flows. A caller's trailers are never passed on.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::error::{find_cause, BoxError, ErrorCode, GatewayError};

/// Every response body the gateway sends: Tango's streamed through, or its own JSON.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A copy of `request` to send again (same target, headers and extensions); `None` when its
/// body streams and cannot be replayed.
pub(crate) fn clone_request(request: &http::Request<Payload>) -> Option<http::Request<Payload>> {
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
    Streaming(Box<CallerStream>),
}

/// A request body streamed from the caller as the upstream reads it.
#[derive(Debug)]
pub struct CallerStream {
    body: Limited<Incoming>,
    /// The longest wait for the next chunk (`inbound.body_read_timeout`).
    stall_limit: Duration,
    /// Armed while the caller is silent; reset when a chunk arrives.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    progressed: bool,
    fault: Arc<StreamFault>,
}

/// Why a streamed body failed, recorded for the layer that answers the caller: the error
/// itself may not survive the trip through the client (h2 turns it into a stream reset).
#[derive(Debug, Default)]
pub struct StreamFault(AtomicU8);

impl StreamFault {
    const OVERFLOW: u8 = 1;
    const STALLED: u8 = 2;
    /// The caller's side of the body failed (its connection reset mid-upload, say).
    const BROKEN: u8 = 3;

    fn set(&self, fault: u8) {
        self.0.store(fault, Ordering::Release);
    }

    /// The gateway error to answer for the fault, if the stream had one.
    pub fn error(&self, max_body_bytes: u64) -> Option<GatewayError> {
        match self.0.load(Ordering::Acquire) {
            Self::OVERFLOW => Some(GatewayError::new(
                ErrorCode::BodyTooLarge,
                format!("request body larger than {max_body_bytes} bytes"),
            )),
            Self::STALLED => Some(body_stalled()),
            Self::BROKEN => Some(GatewayError::new(
                ErrorCode::BadRequest,
                "the request body could not be read",
            )),
            _ => None,
        }
    }
}

/// The answer to a caller whose request body stopped arriving (§12).
pub(crate) fn body_stalled() -> GatewayError {
    GatewayError::new(
        ErrorCode::RequestTimeout,
        "the request body stopped arriving (inbound.body_read_timeout)",
    )
}

impl CallerStream {
    pub fn new(body: Limited<Incoming>, stall_limit: Duration, fault: Arc<StreamFault>) -> Self {
        CallerStream {
            body,
            stall_limit,
            stall: None,
            progressed: false,
            fault,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.progressed = true;
                if frame.is_trailers() {
                    // Trailers come last: the body ends here, without them.
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                self.fault
                    .set(if find_cause::<LengthLimitError>(&*err).is_some() {
                        StreamFault::OVERFLOW
                    } else {
                        StreamFault::BROKEN
                    });
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + self.stall_limit;
                let stall = match &mut self.stall {
                    Some(stall) => {
                        if std::mem::take(&mut self.progressed) {
                            stall.as_mut().reset(deadline);
                        }
                        stall
                    }
                    None => self
                        .stall
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                if stall.as_mut().poll(cx).is_ready() {
                    self.fault.set(StreamFault::STALLED);
                    return Poll::Ready(Some(Err(body_stalled().into())));
                }
                Poll::Pending
            }
        }
    }
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
            Payload::Streaming(_) => None,
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
            Payload::Streaming(stream) => stream.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Payload::Empty => true,
            Payload::Buffered { sent, .. } => *sent,
            Payload::Streaming(stream) => stream.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Payload::Empty => SizeHint::with_exact(0),
            Payload::Buffered { bytes, sent } => {
                SizeHint::with_exact(if *sent { 0 } else { bytes.len() as u64 })
            }
            Payload::Streaming(stream) => stream.body.size_hint(),
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
    fn a_streamed_body_fault_names_the_answer() {
        let code = |fault: u8| {
            let recorded = StreamFault::default();
            recorded.set(fault);
            recorded.error(10).map(|e| e.code)
        };
        assert_eq!(StreamFault::default().error(10), None);
        assert_eq!(code(StreamFault::OVERFLOW), Some(ErrorCode::BodyTooLarge));
        assert_eq!(code(StreamFault::STALLED), Some(ErrorCode::RequestTimeout));
        // A caller that broke its own upload is not a gateway bug (500) nor Tango's (502).
        assert_eq!(code(StreamFault::BROKEN), Some(ErrorCode::BadRequest));
    }

    #[test]
    fn empty_bytes_become_empty_payload() {
        assert!(matches!(Payload::buffered(Bytes::new()), Payload::Empty));
    }
}
