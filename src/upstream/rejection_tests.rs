//! One test per cause, the edges between them, and a property: no input makes the
//! classifier panic, and its verdict depends on the body only when it says so.
#![allow(clippy::unwrap_used)]

use http::HeaderValue;
use proptest::prelude::*;

use super::*;

const ALB_PAGE: &[u8] = b"<html>\r\n<head><title>403 Forbidden</title></head>\r\n\
<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n</body>\r\n</html>\r\n";
const BROWSER_REFUSAL: &[u8] = br#"{"timestamp":"2026-01-01T00:00:00.000Z","requestId":"a1","path":"/raas/v2/orders","httpCode":403,"httpPhrase":"Forbidden","i18nKey":"403.001","message":"Browser-based API calls are not allowed."}"#;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// The verdict on `status` with `pairs`, giving the body only when the classifier asks for it
/// (as the gateway does).
fn cause(status: u16, pairs: &[(&str, &str)], body: &[u8]) -> Option<Cause> {
    let status = StatusCode::from_u16(status).unwrap();
    let headers = headers(pairs);
    let body = if needs_body(status, &headers) {
        body
    } else {
        &[]
    };
    classify(status, &headers, body)
}

#[test]
fn alb_xff_is_the_load_balancers_403_page() {
    let alb = [("server", "awselb/2.0"), ("content-type", "text/html")];
    assert_eq!(cause(403, &alb, ALB_PAGE), Some(Cause::AlbXff));
    // Known from the head alone: the body is not needed.
    assert!(!needs_body(StatusCode::FORBIDDEN, &headers(&alb)));
    // Without a content type, the page itself says it is HTML.
    assert_eq!(
        cause(403, &[("server", "AWSELB/2.0")], ALB_PAGE),
        Some(Cause::AlbXff)
    );
    assert_eq!(
        cause(
            403,
            &[("server", "awselb/2.0")],
            b"\r\n<!DOCTYPE html><html>"
        ),
        Some(Cause::AlbXff)
    );
}

#[test]
fn alb_other_is_any_other_answer_the_load_balancer_made() {
    let alb = [("server", "awselb/2.0"), ("content-type", "text/html")];
    for status in [400, 401, 404, 429, 460, 502, 503, 504] {
        assert_eq!(
            cause(status, &alb, ALB_PAGE),
            Some(Cause::AlbOther),
            "{status}"
        );
    }
    // A 403 from the ALB that is not an HTML page (a JSON fixed response).
    let json = [
        ("server", "awselb/2.0"),
        ("content-type", "application/json"),
    ];
    assert_eq!(cause(403, &json, b"{}"), Some(Cause::AlbOther));
    assert_eq!(cause(301, &alb, b""), Some(Cause::AlbOther));
    // 2xx is never a rejection, whoever answers.
    assert_eq!(cause(200, &alb, b""), None);
}

#[test]
fn browser_refused_is_a_403_whose_json_names_403_001() {
    let json = [("content-type", "application/json; charset=utf-8")];
    assert_eq!(
        cause(403, &json, BROWSER_REFUSAL),
        Some(Cause::BrowserRefused)
    );
    assert_eq!(
        cause(403, &[], br#" {"errors":[{"code":"403.001"}]}"#),
        Some(Cause::BrowserRefused)
    );
    let problem = [("content-type", "application/problem+json")];
    assert_eq!(
        cause(403, &problem, br#"{"code":"403.001"}"#),
        Some(Cause::BrowserRefused)
    );
}

#[test]
fn a_403_not_naming_403_001_is_a_client_error() {
    let json = [("content-type", "application/json")];
    for body in [
        &br#"{"httpCode":403,"message":"Forbidden"}"#[..],
        br#"{"code":"1403.0012"}"#,
        br#"{"code":"403.0011"}"#,
        b"",
    ] {
        assert_eq!(cause(403, &json, body), Some(Cause::ClientError));
    }
    // Not JSON: an HTML 403 from something else than the ALB, or text naming the code.
    assert_eq!(
        cause(403, &[("content-type", "text/html")], ALB_PAGE),
        Some(Cause::ClientError)
    );
    assert_eq!(
        cause(403, &[("content-type", "text/plain")], b"403.001"),
        Some(Cause::ClientError)
    );
    assert_eq!(cause(403, &[], b"403.001"), Some(Cause::ClientError));
}

#[test]
fn unauthorized_is_a_401_without_a_dpop_error() {
    assert_eq!(cause(401, &[], b""), Some(Cause::Unauthorized));
    for challenge in [
        r#"Basic realm="raas""#,
        r#"Bearer error="invalid_token""#,
        // A DPoP challenge without an error: no credentials were recognised.
        r#"DPoP algs="ES256""#,
        "DPoP",
        // `error` belongs to the Bearer challenge, not to the DPoP one before it.
        r#"DPoP algs="ES256", Bearer error="invalid_token""#,
    ] {
        assert_eq!(
            cause(401, &[("www-authenticate", challenge)], b""),
            Some(Cause::Unauthorized),
            "{challenge}"
        );
    }
}

#[test]
fn dpop_nonce_is_a_401_asking_for_the_servers_nonce() {
    for challenge in [
        r#"DPoP error="use_dpop_nonce""#,
        r#"dpop error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
        r#"DPoP algs="ES256 PS256", error=use_dpop_nonce"#,
        r#"Bearer realm="x", DPoP error = "use_dpop_nonce""#,
    ] {
        assert_eq!(
            cause(401, &[("www-authenticate", challenge)], b""),
            Some(Cause::DpopNonce),
            "{challenge}"
        );
    }
    // Each challenge on its own line.
    let lines = [
        ("www-authenticate", r#"Bearer realm="x""#),
        ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
    ];
    assert_eq!(cause(401, &lines, b""), Some(Cause::DpopNonce));
}

#[test]
fn dpop_invalid_is_a_401_with_another_dpop_error() {
    for challenge in [
        r#"DPoP error="invalid_dpop_proof", error_description="iat out of range""#,
        r#"DPoP error="invalid_token""#,
        // A comma inside a quoted description does not end the challenge.
        r#"DPoP error_description="stale, or skewed", error="invalid_dpop_proof""#,
    ] {
        assert_eq!(
            cause(401, &[("www-authenticate", challenge)], b""),
            Some(Cause::DpopInvalid),
            "{challenge}"
        );
    }
    // `use_dpop_nonce` named elsewhere than as the DPoP error is not a nonce challenge.
    let described = r#"DPoP error="invalid_dpop_proof", error_description="use_dpop_nonce""#;
    assert_eq!(
        cause(401, &[("www-authenticate", described)], b""),
        Some(Cause::DpopInvalid)
    );
}

#[test]
fn rate_limited_is_a_429() {
    assert_eq!(
        cause(429, &[("retry-after", "2")], b""),
        Some(Cause::RateLimited)
    );
}

#[test]
fn client_error_is_any_other_4xx() {
    for status in [400, 402, 404, 405, 409, 413, 422, 499] {
        assert_eq!(
            cause(status, &[], b""),
            Some(Cause::ClientError),
            "{status}"
        );
    }
}

#[test]
fn server_error_is_a_5xx() {
    for status in [500, 502, 503, 504, 599] {
        assert_eq!(
            cause(status, &[], b""),
            Some(Cause::ServerError),
            "{status}"
        );
    }
}

#[test]
fn success_and_redirects_from_tango_have_no_cause() {
    for status in [200, 201, 204, 301, 304] {
        assert_eq!(cause(status, &[], b""), None, "{status}");
    }
}

#[test]
fn only_an_unsettled_403_needs_its_body() {
    let needs = |status: u16, pairs: &[(&str, &str)]| {
        needs_body(StatusCode::from_u16(status).unwrap(), &headers(pairs))
    };
    assert!(needs(403, &[]));
    assert!(needs(403, &[("content-type", "application/json")]));
    assert!(needs(403, &[("server", "awselb/2.0")]));
    assert!(!needs(403, &[("content-type", "text/html")]));
    assert!(!needs(
        403,
        &[
            ("server", "awselb/2.0"),
            ("content-type", "text/html; charset=utf-8")
        ]
    ));
    for status in [200, 401, 404, 429, 500] {
        assert!(!needs(status, &[]), "{status}");
    }
}

#[test]
fn codes_round_trip_and_names_are_distinct() {
    for cause in Cause::ALL {
        assert_ne!(cause.code(), 0);
        assert_eq!(Cause::from_code(cause.code()), Some(cause));
    }
    assert_eq!(Cause::from_code(0), None);
    let mut names: Vec<_> = Cause::ALL.iter().map(|c| c.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Cause::ALL.len());
}

proptest! {
    /// Whatever a server sends, the classifier answers; 2xx is never a cause; and an answer
    /// whose body is not needed gets the same verdict whatever its body.
    #[test]
    fn never_panics_and_reads_the_body_only_when_it_must(
        status in 100u16..1000,
        server in proptest::option::of(proptest::collection::vec(0x20u8..0x7f, 0..24)),
        content_type in proptest::option::of(proptest::collection::vec(0x20u8..0x7f, 0..40)),
        challenges in proptest::collection::vec(proptest::collection::vec(0x20u8..0x7f, 0..80), 0..3),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        pick in proptest::sample::select(vec![
            &b"DPoP error=\"use_dpop_nonce\""[..], b"DPoP error=", b"\"", b",", b"=", b"awselb/",
            b"<html", b"{\"c\":\"403.001\"}", b"application/json", b"text/html",
        ]),
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let mut headers = HeaderMap::new();
        let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).ok();
        if let Some(server) = server.as_deref().and_then(value) {
            headers.insert(SERVER, server);
        }
        if let Some(content_type) = content_type.as_deref().and_then(value) {
            headers.insert(CONTENT_TYPE, content_type);
        }
        for challenge in challenges.iter().chain(std::iter::once(&pick.to_vec())) {
            if let Some(challenge) = value(challenge) {
                headers.append(WWW_AUTHENTICATE, challenge);
            }
        }
        let mut body = body;
        body.extend_from_slice(pick);
        let verdict = classify(status, &headers, &body);
        if status.is_success() {
            prop_assert_eq!(verdict, None);
        }
        if !needs_body(status, &headers) {
            prop_assert_eq!(verdict, classify(status, &headers, &[]));
        }
        if status.as_u16() >= 400 {
            prop_assert!(verdict.is_some());
        }
    }
}
