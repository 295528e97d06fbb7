//! The process-wide cap on requests in flight: a request over the cap is refused at once
//! (`503 gateway.overloaded` with `Retry-After`), never queued.
//!
//! Invariant: at most `max` requests are past this layer at any time, across every
//! connection and worker; a permit is held until the response future completes.
//!
//! Written here rather than tower's `load_shed().concurrency_limit(n)`: that pair reserves
//! the permit in `poll_ready`, and each clone of it (one per request, as hyper clones the
//! service for every call) allocates a fresh boxed acquire future. Here a request takes a
//! permit with one atomic `try_acquire` and clones nothing but an `Arc`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::load_shed::error::Overloaded;
use tower::{Layer, Service};

use crate::error::BoxError;

/// Sheds requests beyond `max` in flight.
#[derive(Clone)]
pub struct InFlightLimitLayer {
    permits: Arc<Semaphore>,
}

impl InFlightLimitLayer {
    pub fn new(max: usize) -> Self {
        InFlightLimitLayer {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
        }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            permits: self.permits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, R> Service<R> for InFlightLimit<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = InFlight<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => InFlight::Admitted {
                future: self.inner.call(request),
                permit,
            },
            Err(_) => InFlight::Shed,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a request that took a permit (held until it resolves), or a refusal.
    #[project = InFlightProjection]
    pub enum InFlight<F> {
        Admitted {
            #[pin]
            future: F,
            permit: OwnedSemaphorePermit,
        },
        Shed,
    }
}

impl<F, T, E> Future for InFlight<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            InFlightProjection::Admitted { future, .. } => future.poll(cx).map_err(Into::into),
            InFlightProjection::Shed => Poll::Ready(Err(Overloaded::new().into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_over_the_cap_are_refused_at_once_and_permits_come_back() {
        let (release, released) = tokio::sync::watch::channel(false);
        let slow = tower::service_fn(move |_: ()| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                Ok::<_, BoxError>("answered")
            }
        });
        let limited = InFlightLimitLayer::new(2).layer(slow);
        let first = tokio::spawn(limited.clone().oneshot(()));
        let second = tokio::spawn(limited.clone().oneshot(()));
        tokio::task::yield_now().await;
        // Both permits are taken by the two waiting requests.
        let refused = limited.clone().oneshot(()).await;
        let err = refused.expect_err("a third request is shed");
        assert!(err.downcast_ref::<Overloaded>().is_some(), "{err}");

        release.send(true).expect("release");
        assert_eq!(first.await.expect("task").expect("first"), "answered");
        assert_eq!(second.await.expect("task").expect("second"), "answered");
        // The permits are back.
        assert_eq!(limited.oneshot(()).await.expect("after"), "answered");
    }
}
