//! The retry decision for one route, as a `tower::retry::Policy` (PRODUCT.md §6, §9).
//!
//! Invariants: a request that may have reached Tango is sent again only when it is
//! retry-safe; TLS failures and failures the gateway cannot classify are never retried; a
//! `Retry-After` longer than `max_backoff` passes the upstream's answer through; retries
//! stop when the route's budget is spent or the deadline would pass.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{header::RETRY_AFTER, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};

use super::backoff;
use super::idempotency::is_retry_safe;
use crate::body::{clone_request, Payload, ResponseBody};
use crate::config::RetryConfig;
use crate::context::RequestContext;
use crate::deadline::Deadline;
use crate::error::BoxError;
use crate::metrics::{metrics, ReasonLabels};
use crate::upstream::classify::{classify_attempt_error, AttemptFailure};

/// Window over which the retry budget counts requests (§3: "over the last 10 s").
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Retry settings and budget shared by every request of a route.
pub(crate) struct RouteRetry {
    pub route: Arc<str>,
    pub config: RetryConfig,
    budget: TpsBudget,
}

impl RouteRetry {
    pub(crate) fn new(route: Arc<str>, config: RetryConfig) -> Self {
        // Validation keeps these in TpsBudget's accepted ranges; clamp anyway so a bad value
        // can never reach its assertions.
        let ratio = config.budget_ratio.clamp(0.0, 1000.0);
        let min_per_sec = config.budget_min_per_sec.min(i32::MAX as u32 - 1);
        RouteRetry {
            route,
            budget: TpsBudget::new(BUDGET_WINDOW, min_per_sec, ratio),
            config,
        }
    }
}

impl std::fmt::Debug for RouteRetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteRetry")
            .field("route", &self.route)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Cloned for every request (the stack is cloned per call), so its fields are per request.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    shared: Arc<RouteRetry>,
    attempts: u32,
    retry_safe: bool,
}

/// Why an attempt's outcome calls for another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retryable {
    Failure(AttemptFailure),
    Status(StatusCode),
}

impl Retryable {
    fn reason(self) -> Cow<'static, str> {
        match self {
            Retryable::Failure(failure) => Cow::Borrowed(failure.as_str()),
            Retryable::Status(status) => Cow::Owned(status.as_u16().to_string()),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn new(shared: Arc<RouteRetry>) -> Self {
        RetryPolicy {
            shared,
            attempts: 0,
            retry_safe: false,
        }
    }

    fn classify(&self, result: &Result<Response<ResponseBody>, BoxError>) -> Option<Retryable> {
        let retry_on = &self.shared.config.retry_on;
        match result {
            Ok(response) => {
                let status = response.status();
                let listed = retry_on.statuses.contains(&status.as_u16());
                (listed && self.retry_safe).then_some(Retryable::Status(status))
            }
            Err(err) => {
                let failure = classify_attempt_error(&**err)?;
                let allowed = match failure {
                    AttemptFailure::Tls => false,
                    // Never reached the upstream: safe whatever the method.
                    AttemptFailure::ConnectFailure => retry_on.connect_failure,
                    AttemptFailure::Timeout => retry_on.timeout && self.retry_safe,
                    AttemptFailure::Reset => retry_on.reset && self.retry_safe,
                    // A failure we cannot name is a bug: resending would repeat it, and
                    // could act twice on something that reached Tango.
                    AttemptFailure::Unknown => false,
                };
                allowed.then_some(Retryable::Failure(failure))
            }
        }
    }

    /// The wait before the next attempt, or `None` when the answer must pass through.
    fn wait_for(
        &self,
        retryable: Retryable,
        result: &Result<Response<ResponseBody>, BoxError>,
    ) -> Option<Duration> {
        let config = &self.shared.config;
        let retry_after = match (retryable, result) {
            (
                Retryable::Status(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE),
                Ok(response),
            ) => response
                .headers()
                .get(RETRY_AFTER)
                // The wall clock: an HTTP-date names a moment in the upstream's calendar.
                .and_then(|value| backoff::parse_retry_after(value, SystemTime::now())),
            _ => None,
        };
        match retry_after {
            Some(wait) if wait > config.max_backoff => None,
            Some(wait) => Some(wait),
            None => Some(backoff::delay(config, self.attempts, &mut rand::rng())),
        }
    }
}

impl tower::retry::Policy<Request<Payload>, Response<ResponseBody>, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut Request<Payload>,
        result: &mut Result<Response<ResponseBody>, BoxError>,
    ) -> Option<Self::Future> {
        let retryable = self.classify(result)?;
        let route = &self.shared.route;
        if self.attempts >= self.shared.config.max_attempts {
            return None;
        }
        let Some(wait) = self.wait_for(retryable, result) else {
            tracing::info!(route = %route, reason = %retryable.reason(), "Retry-After exceeds max_backoff; passing the answer through");
            return None;
        };
        if let Some(deadline) = Deadline::of(request) {
            if Instant::now() + wait >= deadline {
                tracing::info!(route = %route, attempts = self.attempts, "route deadline reached; no further attempt");
                return None;
            }
        }
        if !self.shared.budget.withdraw() {
            tracing::warn!(route = %route, reason = %retryable.reason(), "retry budget exhausted; no further attempt");
            return None;
        }
        metrics()
            .retries
            .get_or_create(&ReasonLabels {
                route: route.clone(),
                reason: retryable.reason(),
            })
            .inc();
        tracing::info!(
            route = %route,
            attempt = self.attempts,
            reason = %retryable.reason(),
            wait_ms = wait.as_millis() as u64,
            "retrying upstream request"
        );
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, request: &Request<Payload>) -> Option<Request<Payload>> {
        self.attempts += 1;
        if self.attempts == 1 {
            self.shared.budget.deposit();
            self.retry_safe = is_retry_safe(
                request.method(),
                request.headers(),
                request.body().as_bytes().map(|b| &b[..]),
                self.shared.config.post_requires,
            );
        }
        if let Some(context) = request.extensions().get::<Arc<RequestContext>>() {
            context.start_attempt();
        }
        if self.attempts >= self.shared.config.max_attempts {
            return None;
        }
        clone_request(request)
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
