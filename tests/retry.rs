//! Timeouts and retries end to end (PRODUCT.md §6): what is retried, how often, and that an
//! order is never duplicated. Real time, so a wait is checked by its lower bound only (a
//! wait never ends early; a busy machine only makes it longer); the exact waits, limits and
//! deadlines are unit tests in virtual time (`retry::policy`, `upstream::timeout`,
//! `upstream::stall`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use support::wire::closed_port;
use support::{Harness, Setup};
use tango_sandbox::fake::Fault;
use tokio::time::Instant;

const ORDER_WITH_REF: &str = r#"{"externalRefID":"order-1","customerIdentifier":"c1","accountIdentifier":"a1","amount":10,"utid":"U000001"}"#;
const ORDER_WITHOUT_REF: &str =
    r#"{"customerIdentifier":"c1","accountIdentifier":"a1","amount":10,"utid":"U000001"}"#;
const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

fn status(status: u16, retry_after: Option<&str>, times: usize) -> Fault {
    Fault::Status {
        status,
        retry_after: retry_after.map(str::to_owned),
        times,
    }
}

#[tokio::test]
async fn a_get_is_retried_after_a_503() {
    let h = Harness::start().await;
    h.fake.push_fault(status(503, None, 1));
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 200);
    assert_eq!(h.fake.request_count(), 2);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let h = Setup::new()
        .retry("initial_backoff", "1ms")
        .retry("jitter", "none")
        .start()
        .await;
    h.fake.push_fault(status(503, Some("1"), 1));
    let started = Instant::now();
    let answer = h.get("/raas/v2/catalogs").await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 200);
    assert_eq!(h.fake.request_count(), 2);
    assert!(
        elapsed >= Duration::from_millis(950),
        "waited only {elapsed:?}"
    );
}

#[tokio::test]
async fn a_retry_after_beyond_max_backoff_passes_the_answer_through_at_once() {
    let h = Setup::new().retry("max_backoff", "2s").start().await;
    h.fake.push_fault(status(503, Some("30"), 1));
    // Patience far below the 30 s Retry-After: the answer comes without that wait (that it
    // comes with no wait at all is `retry::policy`'s unit test).
    let answer = tokio::time::timeout(Duration::from_secs(20), h.get("/raas/v2/catalogs"))
        .await
        .expect("passed through, not held for the Retry-After");
    assert_eq!(answer.status, 503);
    assert!(answer.is_from_fake(), "Tango's own 503 is passed through");
    assert_eq!(answer.header("retry-after"), Some("30"));
    assert_eq!(h.fake.request_count(), 1);
}

#[tokio::test]
async fn when_retries_are_exhausted_the_last_upstream_answer_passes_through() {
    let h = Setup::new().retry("max_attempts", "3").start().await;
    h.fake.push_fault(status(502, None, 2));
    h.fake.push_fault(status(504, None, 5));
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 504, "the last answer, not the first");
    assert!(answer.is_from_fake());
    assert!(answer.error_code().is_none());
    assert_eq!(h.fake.request_count(), 3);
}

#[tokio::test]
async fn a_status_not_in_retry_on_is_not_retried() {
    let h = Harness::start().await;
    h.fake.push_fault(status(500, None, 1));
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 500);
    assert_eq!(h.fake.request_count(), 1);
}

#[tokio::test]
async fn a_post_without_external_ref_id_is_never_resent() {
    let h = Harness::start().await;
    h.fake.push_fault(Fault::ResetAfterRead);
    let answer = h
        .call(Method::POST, "/raas/v2/orders", &JSON, ORDER_WITHOUT_REF)
        .await;
    answer.assert_gateway_error(502, "gateway.upstream_unreachable");
    assert_eq!(h.fake.request_count(), 1);
    assert_eq!(h.fake.orders_created(), 0);
}

#[tokio::test]
async fn a_post_without_external_ref_id_is_not_retried_on_503() {
    let h = Harness::start().await;
    h.fake.push_fault(status(503, None, 1));
    let answer = h
        .call(Method::POST, "/raas/v2/orders", &JSON, ORDER_WITHOUT_REF)
        .await;
    assert_eq!(answer.status, 503);
    assert!(answer.is_from_fake());
    assert_eq!(h.fake.request_count(), 1);
}

#[tokio::test]
async fn a_post_with_external_ref_id_is_retried_and_creates_one_order() {
    let h = Harness::start().await;
    h.fake.push_fault(Fault::ResetAfterRead);
    let answer = h
        .call(Method::POST, "/raas/v2/orders", &JSON, ORDER_WITH_REF)
        .await;
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(h.fake.request_count(), 2);
    assert_eq!(h.fake.orders_created(), 1);
    let bodies: Vec<Bytes> = h.fake.received().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies[0], bodies[1], "the retry resends the same body");
    assert_eq!(bodies[0], ORDER_WITH_REF.as_bytes());
}

#[tokio::test]
async fn with_post_requires_idempotency_key_the_header_makes_a_post_retryable() {
    let h = Setup::new()
        .retry("post_requires", "idempotency_key")
        .start()
        .await;
    h.fake.push_fault(Fault::ResetAfterRead);
    let headers = [JSON[0], ("idempotency-key", "key-1")];
    let answer = h
        .call(Method::POST, "/raas/v2/orders", &headers, ORDER_WITH_REF)
        .await;
    assert_eq!(answer.status, 201);
    assert_eq!(h.fake.request_count(), 2);
}

#[tokio::test]
async fn with_post_requires_idempotency_key_external_ref_id_alone_is_not_enough() {
    let h = Setup::new()
        .retry("post_requires", "idempotency_key")
        .start()
        .await;
    h.fake.push_fault(Fault::ResetAfterRead);
    let answer = h
        .call(Method::POST, "/raas/v2/orders", &JSON, ORDER_WITH_REF)
        .await;
    answer.assert_gateway_error(502, "gateway.upstream_unreachable");
    assert_eq!(h.fake.request_count(), 1);
}

#[tokio::test]
async fn a_hanging_upstream_times_out_per_attempt() {
    let h = Setup::new()
        .upstream("timeout", "1s")
        .retry("max_attempts", "2")
        .start()
        .await;
    h.fake.push_fault(Fault::Hang);
    h.fake.push_fault(Fault::Hang);
    let started = Instant::now();
    let answer = h.get("/raas/v2/catalogs").await;
    let elapsed = started.elapsed();
    answer.assert_gateway_error(504, "gateway.upstream_timeout");
    assert_eq!(h.fake.request_count(), 2);
    assert!(
        elapsed >= Duration::from_secs(2),
        "two 1 s attempts took {elapsed:?}"
    );
}

#[tokio::test]
async fn the_deadline_stops_retries_early() {
    let h = Setup::new()
        .upstream("timeout", "1s")
        .upstream("deadline", "1500ms")
        .retry("max_attempts", "5")
        .start()
        .await;
    for _ in 0..5 {
        h.fake.push_fault(Fault::Hang);
    }
    let answer = h.get("/raas/v2/catalogs").await;
    answer.assert_gateway_error(504, "gateway.upstream_timeout");
    // Five attempts allowed; a 1 s attempt, a backoff and a second attempt cut short by the
    // deadline leave no room for a third, however slow the machine.
    let attempts = h.fake.request_count();
    assert!(
        (1..=2).contains(&attempts),
        "{attempts} attempts within a 1.5 s deadline"
    );
}

#[tokio::test]
async fn a_stalled_body_ends_abruptly_and_is_not_retried() {
    let h = Setup::new().upstream("body_timeout", "1s").start().await;
    h.fake.push_fault(Fault::StallBody { after_bytes: 10 });
    let request = Request::get(h.url("/raas/v2/catalogs"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = h.send(request).await;
    assert_eq!(response.status(), 200);
    // The stall guard arms when the gateway starts waiting, before this test sees the
    // headers: how long is left of it here is not this test's business (`upstream::stall`
    // measures it exactly); that the body ends, and not cleanly, is.
    let outcome = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the stalled body is ended by the gateway, not by this test");
    assert!(outcome.is_err(), "a truncated body must not end cleanly");
    assert_eq!(h.fake.request_count(), 1);
}

#[tokio::test]
async fn an_unreachable_upstream_is_tried_max_attempts_times() {
    let url = format!("\"https://localhost:{}\"", closed_port());
    let h = Setup::new()
        .upstream("url", &url)
        .retry("max_attempts", "3")
        .retry("initial_backoff", "300ms")
        .retry("multiplier", "2.0")
        .retry("jitter", "none")
        .start()
        .await;
    let started = Instant::now();
    let answer = h.get("/raas/v2/catalogs").await;
    let elapsed = started.elapsed();
    answer.assert_gateway_error(502, "gateway.upstream_unreachable");
    // Three attempts mean two waits: 300 ms + 600 ms.
    assert!(
        elapsed >= Duration::from_millis(850),
        "{elapsed:?}: not retried"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_with_one_attempt_fails_at_once() {
    let url = format!("\"https://localhost:{}\"", closed_port());
    // A retry would first wait a minute: an answer within the patience below had none.
    let h = Setup::new()
        .upstream("url", &url)
        .retry("max_attempts", "1")
        .retry("initial_backoff", "60s")
        .retry("max_backoff", "60s")
        .retry("jitter", "none")
        .start()
        .await;
    let answer = tokio::time::timeout(Duration::from_secs(30), h.get("/raas/v2/catalogs"))
        .await
        .expect("answered without a backoff");
    answer.assert_gateway_error(502, "gateway.upstream_unreachable");
}
