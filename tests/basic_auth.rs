//! Basic credentials and header hygiene end to end: what the fake Tango receives is the
//! gateway's credentials and the caller's harmless headers, nothing else; Tango's answers come
//! back untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use base64::Engine as _;
use http::Method;
use support::{Harness, Setup, PLATFORM};

#[tokio::test]
async fn the_configured_platform_and_key_are_sent_as_basic_credentials() {
    let h = Harness::start().await;
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 200);
    let seen = h.only_request();
    let value = seen
        .header("authorization")
        .expect("an Authorization header");
    let encoded = value.strip_prefix("Basic ").expect("the Basic scheme");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("{PLATFORM}:{}", h.api_key)
    );
}

#[tokio::test]
async fn caller_credentials_never_reach_tango() {
    let h = Harness::start().await;
    let headers = [
        ("authorization", "Basic Y2FsbGVyOmd1ZXNz"),
        ("proxy-authorization", "Basic cHJveHk6cGFzcw=="),
        ("cookie", "session=caller-secret"),
        ("dpop", "eyJ0eXAiOiJkcG9wK2p3dCJ9.caller.proof"),
    ];
    let answer = h.call(Method::GET, "/raas/v2/catalogs", &headers, "").await;
    assert_eq!(
        answer.status, 200,
        "the gateway's own credentials are accepted"
    );
    let seen = h.only_request();
    assert_eq!(seen.header_all("authorization").len(), 1);
    assert_ne!(seen.header("authorization"), Some("Basic Y2FsbGVyOmd1ZXNz"));
    for name in ["proxy-authorization", "cookie", "dpop"] {
        assert!(seen.header(name).is_none(), "{name} reached the fake");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
    let h = Harness::start().await;
    let headers = [
        ("connection", "x-foo"),
        ("x-foo", "hop"),
        ("keep-alive", "timeout=5"),
        ("te", "gzip"),
        ("x-end-to-end", "kept"),
    ];
    let answer = h.call(Method::GET, "/raas/v2/catalogs", &headers, "").await;
    assert_eq!(answer.status, 200);
    let seen = h.only_request();
    for name in ["connection", "x-foo", "keep-alive", "te"] {
        assert!(seen.header(name).is_none(), "{name} reached the fake");
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn a_foreign_host_header_is_ignored() {
    let h = Harness::start().await;
    let answer = h
        .call(
            Method::GET,
            "/raas/v2/catalogs",
            &[("host", "evil.example")],
            "",
        )
        .await;
    assert_eq!(answer.status, 200);
    let seen = h.only_request();
    // Over h2 the authority travels as :authority and no Host header is recorded.
    if let Some(host) = seen.header("host") {
        assert_eq!(host, format!("localhost:{}", h.fake.addr().port()));
    }
    for (name, value) in &seen.headers {
        let value = value.to_str().unwrap_or_default();
        assert!(
            !value.contains("evil.example"),
            "{name}: {value} reached the fake"
        );
    }
}

#[tokio::test]
async fn a_request_id_is_made_set_on_the_answer_and_forwarded() {
    let h = Harness::start().await;
    let answer = h.get("/raas/v2/catalogs").await;
    let id = answer
        .header("x-request-id")
        .expect("x-request-id on the answer");
    assert!(!id.is_empty());
    assert_eq!(h.only_request().header("x-request-id"), Some(id));
}

#[tokio::test]
async fn the_callers_sane_request_id_is_kept() {
    let h = Harness::start().await;
    let id = "caller-id-0123.abc";
    let answer = h
        .call(
            Method::GET,
            "/raas/v2/catalogs",
            &[("x-request-id", id)],
            "",
        )
        .await;
    assert_eq!(answer.header("x-request-id"), Some(id));
    assert_eq!(h.only_request().header("x-request-id"), Some(id));
}

#[tokio::test]
async fn tangos_answer_passes_through_byte_for_byte() {
    let h = Harness::start().await;
    for path in ["/raas/v2/catalogs", "/raas/v2/accounts/demo-account"] {
        let direct = h.direct(path).await;
        let through = h.get(path).await;
        assert_eq!(through.status, direct.status, "{path}");
        assert_eq!(through.body, direct.body, "{path}");
        assert!(
            through.is_from_fake(),
            "{path}: x-fake-tango is passed through"
        );
        assert_eq!(
            through.header("content-type"),
            direct.header("content-type")
        );
    }
}

#[tokio::test]
async fn tangos_401_for_a_wrong_key_passes_through_and_is_not_retried() {
    let h = Setup::new().wrong_key().start().await;
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 401);
    assert!(answer.is_from_fake(), "the 401 is Tango's own answer");
    assert!(answer.error_code().is_none());
    assert_eq!(h.fake.request_count(), 1, "a 401 is not retried");
}
