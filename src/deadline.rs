//! The route's `deadline` (§6): one instant, fixed when a request enters its route, after
//! which no attempt may start and no wait may end. A leaf: the step that sets it and the
//! layers that keep to it (retry, attempt timeout) all depend on it, and it on none of them.
//!
//! Invariant: a request carries at most one deadline, set once, before any attempt.

use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
// Tokio's clock, not std's: the retry and attempt-timeout layers compare it with their own
// timers, and tests pause it.
use tokio::time::Instant;
use tower::{Layer, Service};

/// The instant after which no attempt may start and no wait may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(pub Instant);

impl Deadline {
    /// The request's deadline, if its route has one.
    pub(crate) fn of<B>(request: &Request<B>) -> Option<Instant> {
        request
            .extensions()
            .get::<Deadline>()
            .map(|Deadline(at)| *at)
    }
}

/// Sets the deadline `budget` from now on every request (none when the route has none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SetDeadlineLayer {
    pub budget: Option<Duration>,
}

impl<S> Layer<S> for SetDeadlineLayer {
    type Service = SetDeadline<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SetDeadline {
            inner,
            budget: self.budget,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SetDeadline<S> {
    inner: S,
    budget: Option<Duration>,
}

impl<S, B> Service<Request<B>> for SetDeadline<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // A deadline too far away to represent is no deadline (never a panic).
        if let Some(at) = self
            .budget
            .and_then(|budget| Instant::now().checked_add(budget))
        {
            request.extensions_mut().insert(Deadline(at));
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_set_from_the_route_budget_or_not_at_all() {
        let seen = |budget| async move {
            let inner = tower::service_fn(|request: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(Deadline::of(&request))
            });
            SetDeadlineLayer { budget }
                .layer(inner)
                .oneshot(Request::new(()))
                .await
                .unwrap_or(None)
        };
        // Paused time: no time passes between here and the layer, so the deadline is exact.
        let now = Instant::now();
        assert_eq!(
            seen(Some(Duration::from_secs(60))).await,
            Some(now + Duration::from_secs(60))
        );
        assert_eq!(seen(None).await, None);
        assert_eq!(
            seen(Some(Duration::MAX)).await,
            None,
            "unrepresentable: none"
        );
    }
}
