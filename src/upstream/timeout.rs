//! The per-attempt timeout: from sending the request until response headers (§6).
//!
//! Invariant: no attempt outlives `upstream.timeout`, nor the route's deadline when one is set.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::Request;
use tokio::time::Instant;
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

#[cfg(test)]
mod tests {
    use std::future::pending;

    use tower::ServiceExt;

    use super::*;
    use crate::upstream::classify::{classify_attempt_error, AttemptFailure};

    const LIMIT: Duration = Duration::from_secs(15);

    /// An upstream that answers after `delay` (never, for `None`).
    fn upstream(
        delay: Option<Duration>,
    ) -> impl Service<Request<()>, Response = &'static str, Error = BoxError> {
        tower::service_fn(move |_request: Request<()>| async move {
            match delay {
                Some(delay) => tokio::time::sleep(delay).await,
                None => pending::<()>().await,
            }
            Ok::<_, BoxError>("answer")
        })
    }

    fn request(deadline: Option<Instant>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(at) = deadline {
            request.extensions_mut().insert(Deadline(at));
        }
        request
    }

    /// Sends `request` through the layer; the outcome and how long it took (virtual time).
    async fn attempt(
        delay: Option<Duration>,
        request: Request<()>,
    ) -> (Result<&'static str, BoxError>, Duration) {
        let started = Instant::now();
        let result = AttemptTimeoutLayer::new(LIMIT)
            .layer(upstream(delay))
            .oneshot(request)
            .await;
        (result, started.elapsed())
    }

    fn is_attempt_timeout(result: &Result<&'static str, BoxError>) -> bool {
        result.as_ref().is_err_and(|err| {
            err.is::<AttemptTimedOut>()
                && classify_attempt_error(&**err) == Some(AttemptFailure::Timeout)
        })
    }

    // Paused time: the limits below are met exactly, to the millisecond.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_fails_as_a_timeout_exactly_at_the_limit() {
        let (result, took) = attempt(None, request(None)).await;
        assert!(is_attempt_timeout(&result), "{result:?}");
        assert_eq!(took, LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_just_inside_the_limit_passes() {
        let just_inside = LIMIT - Duration::from_millis(1);
        let (result, took) = attempt(Some(just_inside), request(None)).await;
        assert_eq!(result.ok(), Some("answer"));
        assert_eq!(took, just_inside);
    }

    #[tokio::test(start_paused = true)]
    async fn a_nearer_deadline_cuts_the_attempt_short() {
        let deadline = Instant::now() + Duration::from_secs(4);
        let (result, took) = attempt(None, request(Some(deadline))).await;
        assert!(is_attempt_timeout(&result), "{result:?}");
        assert_eq!(
            took,
            Duration::from_secs(4),
            "the deadline, not the 15 s limit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_leaves_the_limit_as_it_is() {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (result, took) = attempt(None, request(Some(deadline))).await;
        assert!(is_attempt_timeout(&result));
        assert_eq!(took, LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_past_ends_the_attempt_at_once() {
        let deadline = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        let (result, took) = attempt(Some(Duration::from_millis(1)), request(Some(deadline))).await;
        assert!(is_attempt_timeout(&result), "{result:?}");
        assert_eq!(took, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_error_passes_through_unchanged() {
        let failing = tower::service_fn(|_request: Request<()>| async {
            Err::<&'static str, _>(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        });
        let result = AttemptTimeoutLayer::new(LIMIT)
            .layer(failing)
            .oneshot(request(None))
            .await;
        let kind = result
            .err()
            .and_then(|err| err.downcast::<std::io::Error>().ok())
            .map(|err| err.kind());
        assert_eq!(kind, Some(std::io::ErrorKind::ConnectionReset));
    }
}
