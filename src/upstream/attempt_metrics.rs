//! Counts every upstream attempt by outcome (`tango_gateway_upstream_attempts_total`).
//!
//! Invariant: sits directly above the attempt timeout, so each attempt — first, retried, or
//! resent after a 401 — is counted exactly once, with a closed set of outcome labels: a status
//! class (`2xx`..`5xx`), a failure kind (`connect_failure`, `tls`, `timeout`, `reset`),
//! `internal` for a failure the gateway cannot classify (a bug, answered 500), or `error` for
//! one that is not the upstream's (a gateway answer raised below this layer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::classify::{classify_attempt_error, AttemptFailure};
use crate::error::BoxError;
use crate::metrics::{self, OutcomeLabels};

#[derive(Debug, Clone)]
pub struct AttemptMetricsLayer {
    route: Arc<str>,
}

impl AttemptMetricsLayer {
    pub fn new(route: Arc<str>) -> Self {
        AttemptMetricsLayer { route }
    }
}

impl<S> Layer<S> for AttemptMetricsLayer {
    type Service = AttemptMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AttemptMetrics {
            inner,
            route: self.route.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptMetrics<S> {
    inner: S,
    route: Arc<str>,
}

impl<S, B, RB> Service<Request<B>> for AttemptMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = AttemptMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        AttemptMetricsFuture {
            attempt: self.inner.call(request),
            route: self.route.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// One attempt, counted when it ends (a named future: no allocation per attempt).
    pub struct AttemptMetricsFuture<F> {
        #[pin]
        attempt: F,
        route: Arc<str>,
    }
}

impl<F, RB> Future for AttemptMetricsFuture<F>
where
    F: Future<Output = Result<Response<RB>, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.attempt.poll(cx));
        let outcome = match &result {
            Ok(response) => status_class(response.status().as_u16()),
            Err(err) => classify_attempt_error(&**err).map_or("error", AttemptFailure::as_str),
        };
        metrics::count_upstream_attempt(OutcomeLabels {
            route: this.route.clone(),
            outcome,
        });
        Poll::Ready(result)
    }
}

pub(super) fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("something the gateway did not expect")]
    struct Unexpected;

    /// One attempt on `route` failing with `err`; the route's attempt series afterwards.
    async fn count_failure(route: &str, err: fn() -> BoxError) -> String {
        let failing = tower::service_fn(move |_request: Request<()>| async move {
            Err::<Response<()>, BoxError>(err())
        });
        let attempt = AttemptMetricsLayer::new(Arc::from(route))
            .layer(failing)
            .oneshot(Request::new(()));
        assert!(attempt.await.is_err());
        let prefix = format!("tango_gateway_upstream_attempts_total{{route=\"{route}\",");
        metrics::metrics()
            .encode()
            .lines()
            .filter(|line| line.starts_with(&prefix))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn an_unclassified_failure_counts_as_internal_not_as_a_reset() {
        let series = count_failure("attempt-metrics-internal", || Box::new(Unexpected)).await;
        assert_eq!(
            series,
            "tango_gateway_upstream_attempts_total{route=\"attempt-metrics-internal\",outcome=\"internal\"} 1"
        );
    }

    #[tokio::test]
    async fn a_connection_reset_counts_as_a_reset() {
        let series = count_failure("attempt-metrics-reset", || {
            std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()
        })
        .await;
        assert_eq!(
            series,
            "tango_gateway_upstream_attempts_total{route=\"attempt-metrics-reset\",outcome=\"reset\"} 1"
        );
    }
}
