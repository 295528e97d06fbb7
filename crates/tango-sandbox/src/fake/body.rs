//! The response body of the fake: whole, a prefix followed by a stall, or whole but slow.
//!
//! Invariant: a stalling body declares its full length but never delivers it; it ends with an
//! error (never a clean end) when the fake shuts down, so a client sees a truncated body. A
//! slow body delivers every byte it declares, a chunk at a time with a pause between.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

type Until = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Body of every response the fake sends.
pub(super) struct FakeBody(Kind);

enum Kind {
    Full(Option<Bytes>),
    Stalling {
        prefix: Option<Bytes>,
        total: u64,
        until: Until,
    },
    Slow {
        rest: Bytes,
        total: u64,
        chunk: usize,
        pause: Duration,
        /// The pause before the next chunk; `None` before the first one (sent at once).
        sleep: Option<Pin<Box<Sleep>>>,
    },
}

impl FakeBody {
    pub(super) fn full(bytes: impl Into<Bytes>) -> Self {
        FakeBody(Kind::Full(Some(bytes.into())))
    }

    /// Sends `prefix`, then nothing until `until` completes, then fails; `total` is the
    /// announced length (larger than the prefix, so the client waits for more).
    pub(super) fn stalling(prefix: Bytes, total: u64, until: Until) -> Self {
        FakeBody(Kind::Stalling {
            prefix: Some(prefix),
            total,
            until,
        })
    }

    /// Sends all of `bytes`, `chunk` bytes at a time (at least one), pausing `pause` between
    /// chunks: a slow but healthy answer.
    pub(super) fn slow(bytes: Bytes, chunk: usize, pause: Duration) -> Self {
        FakeBody(Kind::Slow {
            total: bytes.len() as u64,
            rest: bytes,
            chunk: chunk.max(1),
            pause,
            sleep: None,
        })
    }
}

impl FakeBody {
    /// The bytes of a whole body not yet sent; `None` for a stalling or slow one.
    pub(super) fn into_full(self) -> Option<Bytes> {
        match self.0 {
            Kind::Full(bytes) => bytes,
            Kind::Stalling { .. } | Kind::Slow { .. } => None,
        }
    }
}

impl From<&'static str> for FakeBody {
    fn from(text: &'static str) -> Self {
        FakeBody::full(text)
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().0 {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stalling { prefix, until, .. } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                until.as_mut().poll(cx).map(|()| {
                    Some(Err(std::io::Error::other(
                        "fake tango: stalled body aborted",
                    )))
                })
            }
            Kind::Slow {
                rest,
                chunk,
                pause,
                sleep,
                ..
            } => {
                if rest.is_empty() {
                    return Poll::Ready(None);
                }
                if let Some(pending) = sleep.as_mut() {
                    if pending.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                let next = rest.split_to((*chunk).min(rest.len()));
                *sleep = Some(Box::pin(tokio::time::sleep(*pause)));
                Poll::Ready(Some(Ok(Frame::data(next))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stalling { .. } => false,
            Kind::Slow { rest, .. } => rest.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stalling { total, .. } | Kind::Slow { total, .. } => SizeHint::with_exact(*total),
        }
    }
}
