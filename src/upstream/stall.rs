//! The stall guard on an upstream answer's body (PRODUCT.md §9): a body that sends nothing
//! for `body_timeout` ends with an error, so the caller sees a truncated answer, never a
//! clean end.
//!
//! Written here rather than tower-http's `TimeoutBody`, which (0.7) neither forwards
//! `is_end_stream` nor `size_hint`: with it, the end of a body of known length was never
//! seen (the access log reported every such answer as incomplete), and it started a timer
//! for every frame, even one already waiting in the buffer. Here the timer is armed only
//! while the body is actually waiting for the upstream.
//!
//! Invariant: between two frames the body waits at most `timeout`; a frame resets the wait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::BoxError;

/// The body stopped sending for longer than `body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the upstream body sent nothing for longer than body_timeout")]
pub struct BodyStalled;

pin_project_lite::pin_project! {
    /// `inner`, ended with [`BodyStalled`] when it sends nothing for `timeout`.
    pub struct StallGuard<B> {
        #[pin]
        inner: B,
        timeout: Duration,
        // Armed while waiting for the next frame; `None` until the first wait.
        #[pin]
        wait: Option<Sleep>,
        waiting: bool,
    }
}

impl<B> StallGuard<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        StallGuard {
            inner,
            timeout,
            wait: None,
            waiting: false,
        }
    }
}

impl<B> Body for StallGuard<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.waiting = false;
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        if !*this.waiting {
            *this.waiting = true;
            // A timeout too long to represent never fires (and never panics).
            if let Some(deadline) = Instant::now().checked_add(*this.timeout) {
                match this.wait.as_mut().as_pin_mut() {
                    Some(wait) => wait.reset(deadline),
                    None => this.wait.set(Some(tokio::time::sleep_until(deadline))),
                }
            } else {
                this.wait.set(None);
            }
        }
        let stalled = this
            .wait
            .as_pin_mut()
            .is_some_and(|wait| wait.poll(cx).is_ready());
        if stalled {
            Poll::Ready(Some(Err(BodyStalled.into())))
        } else {
            Poll::Pending
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn a_complete_body_passes_and_shows_its_end() {
        let mut body = std::pin::pin!(StallGuard::new(
            Full::new(Bytes::from_static(b"hello")),
            Duration::from_secs(1),
        ));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let frame = body.frame().await;
        let data = frame.and_then(|f| f.ok()).and_then(|f| f.into_data().ok());
        assert_eq!(data.as_deref(), Some(&b"hello"[..]));
        assert!(
            body.is_end_stream(),
            "the end of a known-length body is visible"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_sending_ends_with_an_error_after_the_timeout() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = tokio_stream_from(receiver);
        let mut body = std::pin::pin!(StallGuard::new(
            StreamBody::new(stream),
            Duration::from_secs(5)
        ));
        let sent = sender.send(Ok(Frame::data(Bytes::from_static(b"x")))).await;
        assert!(sent.is_ok());
        assert!(matches!(body.frame().await, Some(Ok(_))));
        let started = Instant::now();
        let stalled = body.frame().await;
        let error = stalled.and_then(|r| r.err()).map(|e| e.is::<BodyStalled>());
        assert_eq!(error, Some(true));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(sender);
    }

    #[tokio::test(start_paused = true)]
    async fn each_frame_resets_the_wait() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let mut body = std::pin::pin!(StallGuard::new(
            StreamBody::new(tokio_stream_from(receiver)),
            Duration::from_secs(5),
        ));
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                if sender
                    .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        for _ in 0..3 {
            assert!(
                matches!(body.frame().await, Some(Ok(_))),
                "4 s gaps are within 5 s"
            );
        }
        assert!(feeder.await.is_ok());
        assert!(
            body.frame().await.is_none(),
            "the sender is gone: a clean end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_too_long_to_represent_never_fires_nor_panics() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let mut body = std::pin::pin!(StallGuard::new(
            StreamBody::new(tokio_stream_from(receiver)),
            Duration::MAX,
        ));
        let waited = tokio::time::timeout(Duration::from_secs(3600), body.frame()).await;
        assert!(
            waited.is_err(),
            "still waiting for the upstream after an hour"
        );
        drop(sender);
    }

    /// A `Stream` over an mpsc receiver, without pulling in tokio-stream.
    fn tokio_stream_from<T>(
        receiver: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        })
    }
}
