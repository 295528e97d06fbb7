//! The retry policy under paused time: every wait is measured exactly, on tokio's clock, and
//! the upstream is a `service_fn` that answers from a script and notes when each attempt came.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use http::{Method, Uri};
use tower::{ServiceBuilder, ServiceExt};

use super::*;
use crate::body::full;
use crate::config::Jitter;

/// A failure no classifier knows: a bug, as far as the policy can tell.
#[derive(Debug, thiserror::Error)]
#[error("something the gateway did not expect")]
struct Unexpected;

/// Sends a GET (retry-safe) with the default retry settings to an upstream that fails
/// its first call with `first` and answers 200 after; the result and the number of
/// calls the upstream saw.
async fn first_call_fails_with(
    first: fn() -> BoxError,
) -> (Result<Response<ResponseBody>, BoxError>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let upstream = tower::service_fn(move |_request: Request<Payload>| {
        let call = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            match call {
                0 => Err(first()),
                _ => Ok(Response::new(full(""))),
            }
        }
    });
    let shared = RouteRetry::new(Arc::from("retry-policy-test"), RetryConfig::default());
    let service = ServiceBuilder::new()
        .retry(RetryPolicy::new(Arc::new(shared)))
        .service(upstream);
    let mut request = Request::new(Payload::Empty);
    *request.method_mut() = Method::GET;
    *request.uri_mut() = Uri::from_static("https://tango.test/raas/v2/catalogs");
    let result = service.oneshot(request).await;
    (result, calls.load(Ordering::SeqCst))
}

// Paused time: the backoff before a retry passes at once, and exactly.
#[tokio::test(start_paused = true)]
async fn an_unclassified_failure_is_never_retried() {
    let (result, calls) = first_call_fails_with(|| Box::new(Unexpected)).await;
    assert_eq!(calls, 1, "one call, no resend");
    let err = result.err().map(|err| err.is::<Unexpected>());
    assert_eq!(err, Some(true), "the failure is passed on as it is");
}

#[tokio::test(start_paused = true)]
async fn an_unclassified_failure_in_an_io_error_is_never_retried() {
    let (result, calls) =
        first_call_fails_with(|| Box::new(std::io::Error::other(Unexpected))).await;
    assert_eq!(calls, 1, "one call, no resend");
    assert!(result.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_connection_reset_of_an_idempotent_request_is_still_retried() {
    let reset = || -> BoxError { std::io::Error::from(std::io::ErrorKind::ConnectionReset).into() };
    let (result, calls) = first_call_fails_with(reset).await;
    assert_eq!(calls, 2, "the reset attempt was resent");
    assert_eq!(result.ok().map(|r| r.status()), Some(StatusCode::OK));
}

/// One upstream answer of a script.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// A status with a `Retry-After` value.
    StatusAfter(u16, &'static str),
}

impl Answer {
    fn response(self) -> Response<ResponseBody> {
        let (status, retry_after) = match self {
            Answer::Status(status) => (status, None),
            Answer::StatusAfter(status, after) => (status, Some(after)),
        };
        let mut response = Response::new(full(""));
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        if let Some(after) = retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, http::HeaderValue::from_static(after));
        }
        response
    }
}

/// An upstream that gives the script's answers in order (200 once it runs out) and records
/// when each call came, in virtual time.
#[derive(Clone)]
struct Scripted {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    fn new(answers: &[Answer]) -> Self {
        Scripted {
            answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// When each call came, counted from `start`.
    fn call_times(&self, start: Instant) -> Vec<Duration> {
        let calls = self.calls.lock().map(|c| c.clone()).unwrap_or_default();
        calls.into_iter().map(|at| at - start).collect()
    }

    async fn send(
        &self,
        route: &Arc<RouteRetry>,
        deadline: Option<Instant>,
    ) -> Result<Response<ResponseBody>, BoxError> {
        let script = self.clone();
        let upstream = tower::service_fn(move |_request: Request<Payload>| {
            if let Ok(mut calls) = script.calls.lock() {
                calls.push(Instant::now());
            }
            let answer = script
                .answers
                .lock()
                .ok()
                .and_then(|mut answers| answers.pop_front())
                .unwrap_or(Answer::Status(200));
            async move { Ok::<_, BoxError>(answer.response()) }
        });
        let service = ServiceBuilder::new()
            .retry(RetryPolicy::new(route.clone()))
            .service(upstream);
        let mut request = Request::new(Payload::Empty);
        *request.method_mut() = Method::GET;
        *request.uri_mut() = Uri::from_static("https://tango.test/raas/v2/catalogs");
        if let Some(at) = deadline {
            request.extensions_mut().insert(Deadline(at));
        }
        service.oneshot(request).await
    }
}

/// Retry settings with exact waits (no jitter): 250 ms, 500 ms, 1 s, ... up to 5 s.
fn exact(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        jitter: Jitter::None,
        ..RetryConfig::default()
    }
}

fn route(config: RetryConfig) -> Arc<RouteRetry> {
    Arc::new(RouteRetry::new(Arc::from("retry-policy-test"), config))
}

fn status_of(result: &Result<Response<ResponseBody>, BoxError>) -> Option<u16> {
    result.as_ref().ok().map(|r| r.status().as_u16())
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_grow_by_the_multiplier_in_virtual_time() {
    let upstream = Scripted::new(&[Answer::Status(503); 3]);
    let start = Instant::now();
    let result = upstream.send(&route(exact(4)), None).await;
    assert_eq!(status_of(&result), Some(200));
    // Waits of 250 ms, 500 ms and 1 s between the four attempts.
    assert_eq!(
        upstream.call_times(start),
        [ms(0), ms(250), ms(750), ms(1750)]
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_stop_growing_at_max_backoff() {
    let config = RetryConfig {
        initial_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(3),
        ..exact(4)
    };
    let upstream = Scripted::new(&[Answer::Status(502); 3]);
    let start = Instant::now();
    upstream.send(&route(config), None).await.ok();
    assert_eq!(
        upstream.call_times(start),
        [ms(0), ms(2000), ms(5000), ms(8000)],
        "2 s, then 4 s capped at 3 s, twice"
    );
}

#[tokio::test(start_paused = true)]
async fn full_jitter_waits_at_most_the_ceiling() {
    for _ in 0..20 {
        let upstream = Scripted::new(&[Answer::Status(503); 2]);
        let start = Instant::now();
        upstream
            .send(&route(RetryConfig::default()), None)
            .await
            .ok();
        let times = upstream.call_times(start);
        assert_eq!(times.len(), 3);
        assert!(times[1] <= ms(250), "{times:?}");
        assert!(times[2] - times[1] <= ms(500), "{times:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn after_max_attempts_the_last_answer_passes_through() {
    let upstream = Scripted::new(&[
        Answer::Status(502),
        Answer::Status(503),
        Answer::Status(504),
        Answer::Status(200),
    ]);
    let result = upstream.send(&route(exact(3)), None).await;
    assert_eq!(
        status_of(&result),
        Some(504),
        "the last answer, not the first"
    );
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retry_and_no_wait() {
    let upstream = Scripted::new(&[Answer::Status(503)]);
    let start = Instant::now();
    let result = upstream.send(&route(exact(1)), None).await;
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(upstream.calls(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_replaces_the_backoff() {
    for status in [429, 503] {
        let upstream = Scripted::new(&[Answer::StatusAfter(status, "3")]);
        let start = Instant::now();
        let result = upstream.send(&route(exact(3)), None).await;
        assert_eq!(status_of(&result), Some(200));
        assert_eq!(
            upstream.call_times(start),
            [ms(0), ms(3000)],
            "{status}: Retry-After, not the 250 ms backoff"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_max_backoff_passes_the_answer_through_at_once() {
    let upstream = Scripted::new(&[Answer::StatusAfter(503, "30")]);
    let start = Instant::now();
    let result = upstream.send(&route(exact(3)), None).await;
    assert_eq!(status_of(&result), Some(503), "the upstream's own answer");
    let retry_after = result
        .ok()
        .and_then(|r| r.headers().get(RETRY_AFTER).cloned());
    assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"30"[..]));
    assert_eq!(upstream.calls(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait at all");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_ignored_on_other_statuses_and_when_unreadable() {
    // Only 429 and 503 carry a meaningful Retry-After; elsewhere, and when it cannot be
    // read, the backoff applies.
    for answer in [
        Answer::StatusAfter(502, "30"),
        Answer::StatusAfter(504, "30"),
        Answer::StatusAfter(503, "soon"),
    ] {
        let upstream = Scripted::new(&[answer]);
        let start = Instant::now();
        let result = upstream.send(&route(exact(3)), None).await;
        assert_eq!(status_of(&result), Some(200), "{answer:?}");
        assert_eq!(upstream.call_times(start), [ms(0), ms(250)], "{answer:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_retries_before_a_wait_that_would_pass_it() {
    let upstream = Scripted::new(&[Answer::Status(503); 5]);
    let start = Instant::now();
    // Attempts at 0 and 250 ms; the next wait (500 ms) would end past 600 ms.
    let deadline = start + ms(600);
    let result = upstream.send(&route(exact(5)), Some(deadline)).await;
    assert_eq!(
        status_of(&result),
        Some(503),
        "the last answer passes through"
    );
    assert_eq!(upstream.call_times(start), [ms(0), ms(250)]);
    assert_eq!(start.elapsed(), ms(250), "no wait towards the deadline");
}

#[tokio::test(start_paused = true)]
async fn a_wait_ending_exactly_at_the_deadline_is_not_started() {
    let upstream = Scripted::new(&[Answer::Status(503)]);
    let start = Instant::now();
    let result = upstream.send(&route(exact(3)), Some(start + ms(250))).await;
    assert_eq!(status_of(&result), Some(503));
    assert_eq!(
        upstream.calls(),
        1,
        "no attempt could start before the deadline"
    );
    let upstream = Scripted::new(&[Answer::Status(503)]);
    let start = Instant::now();
    let result = upstream.send(&route(exact(3)), Some(start + ms(251))).await;
    assert_eq!(status_of(&result), Some(200), "1 ms to spare is enough");
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_stops_retries_until_its_window_passes() {
    // No share of requests, a reserve of one retry a second over the 10 s window: 10.
    let shared = route(RetryConfig {
        budget_ratio: 0.0,
        budget_min_per_sec: 1,
        ..exact(2)
    });
    let upstream = Scripted::new(&[Answer::Status(503); 100]);
    let mut retried = 0;
    for _ in 0..15 {
        let before = upstream.calls();
        let result = upstream.send(&shared, None).await;
        assert_eq!(status_of(&result), Some(503));
        if upstream.calls() - before == 2 {
            retried += 1;
        }
    }
    assert_eq!(
        retried, 10,
        "the reserve, then the 503s pass through unretried"
    );
    // The withdrawals age out of the window: retries are allowed again.
    tokio::time::advance(BUDGET_WINDOW + Duration::from_secs(1)).await;
    let before = upstream.calls();
    upstream.send(&shared, None).await.ok();
    assert_eq!(upstream.calls() - before, 2);
}

#[tokio::test(start_paused = true)]
async fn a_status_not_listed_is_never_retried() {
    let upstream = Scripted::new(&[Answer::Status(500)]);
    let result = upstream.send(&route(exact(3)), None).await;
    assert_eq!(status_of(&result), Some(500));
    assert_eq!(upstream.calls(), 1);
}
