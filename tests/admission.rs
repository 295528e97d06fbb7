//! Admission end to end: who may call, which targets and paths are accepted, browser refusal,
//! body limits. Every refusal is the gateway's own JSON error, the fake Tango sees nothing, and
//! the gateway keeps serving afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::Method;
use std::sync::Arc;
use std::time::Duration;

use support::{Harness, Setup};
use tango_sandbox::fake::Fault;

/// After a refusal the gateway still answers a normal call.
async fn assert_still_serving(h: &Harness) {
    h.fake.clear();
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 200, "the gateway stopped serving");
    assert_eq!(h.fake.request_count(), 1);
}

#[tokio::test]
async fn a_source_outside_inbound_allow_is_forbidden() {
    let h = Setup::new().allow(&["10.0.0.0/8"]).start().await;
    let answer = h.get("/raas/v2/catalogs").await;
    answer.assert_gateway_error(403, "gateway.forbidden_source");
    assert_eq!(h.fake.request_count(), 0);
}

#[tokio::test]
async fn a_route_whose_sources_exclude_the_peer_is_forbidden_while_another_works() {
    let h = Setup::new()
        .sources(&["10.0.0.0/8"])
        .extra_route("catalogs", "/raas/v2/catalogs", None)
        .start()
        .await;
    let answer = h.get("/raas/v2/customers").await;
    answer.assert_gateway_error(403, "gateway.forbidden_source");
    assert_eq!(h.fake.request_count(), 0);
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn browser_context_calls_are_refused() {
    let h = Harness::start().await;
    let browser_headers = [
        ("origin", "https://shop.example"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-mode", "no-cors"),
    ];
    for header in browser_headers {
        let answer = h
            .call(Method::GET, "/raas/v2/catalogs", &[header], "")
            .await;
        answer.assert_gateway_error(403, "gateway.browser_request");
        assert_eq!(h.fake.request_count(), 0, "{header:?} reached the fake");
    }
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn sec_fetch_mode_same_origin_is_not_a_browser_refusal() {
    let h = Harness::start().await;
    let headers = [("sec-fetch-mode", "same-origin")];
    let answer = h.call(Method::GET, "/raas/v2/catalogs", &headers, "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(h.fake.request_count(), 1);
}

#[tokio::test]
async fn absolute_form_targets_are_refused_whatever_their_authority() {
    let h = Harness::start().await;
    let own = h.gateway.listen_addr;
    for authority in ["evil.example".to_owned(), own.to_string()] {
        let request = format!(
            "GET http://{authority}/raas/v2/catalogs HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        );
        let (status, text) = h.raw(&request).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("gateway.bad_request"), "{text}");
        assert_eq!(h.fake.request_count(), 0);
    }
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn connect_is_refused() {
    let h = Harness::start().await;
    let request = "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n";
    let (status, text) = h.raw(request).await;
    assert!(status == 405 || status == 400, "{text}");
    assert!(text.contains("x-tango-gateway-error"), "{text}");
    assert_eq!(h.fake.request_count(), 0);
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn unknown_methods_are_refused() {
    let h = Harness::start().await;
    let request = "BREW /raas/v2/catalogs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (status, text) = h.raw(request).await;
    assert_eq!(status, 405, "{text}");
    assert!(text.contains("gateway.method_not_allowed"), "{text}");
    assert_eq!(h.fake.request_count(), 0);
}

#[tokio::test]
async fn a_malformed_request_is_refused_and_never_forwarded() {
    let h = Harness::start().await;
    let request = "GET /raas/v2/catalogs HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n";
    let (status, text) = h.raw(request).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(h.fake.request_count(), 0);
    assert_still_serving(&h).await;
}

/// `raas` (`/raas/v2/`) admits only 10.0.0.0/8, not the test; `catalogs` is open to it. A
/// path that normalises into `raas` must not be carried by `catalogs`.
async fn restricted_route_harness() -> Harness {
    Setup::new()
        .sources(&["10.0.0.0/8"])
        .extra_route("catalogs", "/raas/v2/catalogs", None)
        .start()
        .await
}

#[tokio::test]
async fn no_path_encoding_reaches_a_route_the_caller_may_not_use() {
    let h = restricted_route_harness().await;
    let attempts = [
        "/raas/v2/catalogs/../accounts/demo-account",
        "/raas/v2/catalogs/./../accounts/demo-account",
        "/raas/v2/catalogs/%2e%2e/accounts/demo-account",
        "/raas/v2/catalogs/%2E%2E/accounts/demo-account",
        "/raas/v2/catalogs/.%2e/accounts/demo-account",
        "/raas/v2/catalogs%2f..%2faccounts/demo-account",
        "/raas/v2/catalogs/..%2faccounts/demo-account",
        "/raas/v2/catalogs/..%5caccounts/demo-account",
        "//raas/v2/catalogs//..//accounts/demo-account",
        "/raas/v2/catalogs%2e/accounts/demo-account",
    ];
    for path in attempts {
        let answer = h.get(path).await;
        let code = answer.error_code();
        let refused = matches!(
            (answer.status.as_u16(), code.as_deref()),
            (403, Some("gateway.forbidden_source")) | (400, Some("gateway.bad_path"))
        );
        assert!(refused, "{path}: {} {code:?}", answer.status);
        assert_eq!(h.fake.request_count(), 0, "{path} reached the fake");
    }
    h.fake.clear();
    assert_eq!(
        h.get("/raas/v2/catalogs").await.status,
        200,
        "the open route still works"
    );
}

#[tokio::test]
async fn doubled_and_dot_segments_are_normalised_before_forwarding() {
    let h = Harness::start().await;
    let answer = h.get("//raas/v2/./accounts//demo-account").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        h.only_request().path_and_query,
        "/raas/v2/accounts/demo-account"
    );
}

#[tokio::test]
async fn climbing_out_of_a_prefix_finds_no_route() {
    let h = Harness::start().await;
    let answer = h.get("/raas/v2/../admin").await;
    answer.assert_gateway_error(404, "gateway.no_route");
    let answer = h.get("/raas/v2/../../../etc/passwd").await;
    assert!(
        matches!(answer.status.as_u16(), 400 | 404),
        "{}",
        answer.status
    );
    assert_eq!(h.fake.request_count(), 0);
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn an_unknown_path_is_no_route() {
    let h = Harness::start().await;
    h.get("/other/thing")
        .await
        .assert_gateway_error(404, "gateway.no_route");
    h.get("/raas/v2x/catalogs")
        .await
        .assert_gateway_error(404, "gateway.no_route");
    assert_eq!(h.fake.request_count(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_with_content_length_is_refused() {
    let h = Setup::new().max_body_bytes(1024).start().await;
    let body = format!(
        "{{\"externalRefID\":\"big\",\"pad\":\"{}\"}}",
        "x".repeat(2048)
    );
    let answer = h.call(Method::POST, "/raas/v2/orders", &[], body).await;
    answer.assert_gateway_error(413, "gateway.body_too_large");
    assert_eq!(h.fake.request_count(), 0);
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn a_body_over_the_limit_with_content_length_is_refused_without_retries() {
    let h = Setup::new()
        .max_body_bytes(1024)
        .retry("max_attempts", "1")
        .start()
        .await;
    let body = format!(
        "{{\"externalRefID\":\"big\",\"pad\":\"{}\"}}",
        "x".repeat(2048)
    );
    let answer = h.call(Method::POST, "/raas/v2/orders", &[], body).await;
    answer.assert_gateway_error(413, "gateway.body_too_large");
    assert_eq!(h.fake.request_count(), 0);
    assert_still_serving(&h).await;
}

fn chunked_post(size: usize) -> String {
    let chunk = "x".repeat(size);
    format!(
        "POST /raas/v2/orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{size:x}\r\n{chunk}\r\n0\r\n\r\n"
    )
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused() {
    let h = Setup::new().max_body_bytes(1024).start().await;
    let (status, text) = h.raw(&chunked_post(2048)).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("gateway.body_too_large"), "{text}");
    assert_eq!(h.fake.request_count(), 0);
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_without_retries() {
    // max_attempts 1: the body is streamed rather than buffered for a resend.
    let h = Setup::new()
        .max_body_bytes(1024)
        .retry("max_attempts", "1")
        .start()
        .await;
    let (status, text) = h.raw(&chunked_post(4096)).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("gateway.body_too_large"), "{text}");
    // Streamed, the first 1024 bytes were on their way before the limit was seen: Tango gets
    // an aborted request (recorded whenever the fake finishes reading it), never an order.
    assert_eq!(h.fake.orders_created(), 0);
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
}

#[tokio::test]
async fn requests_beyond_max_concurrent_requests_are_refused_at_once_then_served_again() {
    let h = Arc::new(Setup::new().max_concurrent_requests(2).start().await);
    h.fake.push_fault(Fault::Delay(Duration::from_millis(800)));
    h.fake.push_fault(Fault::Delay(Duration::from_millis(800)));
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.get("/raas/v2/catalogs").await.status })
        })
        .collect();
    // Both slow calls are at the fake: every permit is taken.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.fake.request_count() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow calls never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = h.get("/raas/v2/catalogs").await;
    refused.assert_gateway_error(503, "gateway.overloaded");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(h.fake.request_count(), 2, "the refused call reached Tango");
    for call in slow {
        assert_eq!(call.await.expect("slow call"), 200);
    }
    // The permits came back.
    assert_still_serving(&h).await;
}
