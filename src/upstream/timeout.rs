//! The per-attempt timeout: from sending the request until response headers (§6).
//!
//! Invariant: no attempt outlives `upstream.timeout`, nor the route's deadline when one is set.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http::Request;
use tower::{Layer, Service};

use super::classify::AttemptTimedOut;
use crate::deadline::Deadline;
use crate::error::BoxError;

#[derive(Debug, Clone, Copy)]
pub struct AttemptTimeoutLayer {
    timeout: Duration,
}

impl AttemptTimeoutLayer {
    pub fn new(timeout: Duration) -> Self {
        AttemptTimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptTimeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<Request<B>> for AttemptTimeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AttemptTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let limit = match Deadline::of(&request) {
            Some(deadline) => self
                .timeout
                .min(deadline.saturating_duration_since(Instant::now())),
            None => self.timeout,
        };
        AttemptTimeoutFuture {
            attempt: tokio::time::timeout(limit, self.inner.call(request)),
        }
    }
}

pin_project_lite::pin_project! {
    /// One attempt under its time limit (a named future: no allocation per attempt).
    pub struct AttemptTimeoutFuture<F> {
        #[pin]
        attempt: tokio::time::Timeout<F>,
    }
}

impl<F, T, E> Future for AttemptTimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().attempt.poll(cx)) {
            Ok(result) => result.map_err(Into::into),
            Err(_elapsed) => Err(AttemptTimedOut.into()),
        })
    }
}
