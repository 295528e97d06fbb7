//! The call step's pure parts: the verdict on an answer, HTML detection, the synthetic peer.
#![allow(clippy::unwrap_used)]

use http::HeaderValue;

use super::*;
use crate::doctor::report::Outcome;

fn answer(status: u16) -> Answer {
    Answer {
        status: StatusCode::from_u16(status).unwrap(),
        gateway_error: None,
        server: None,
        html: false,
    }
}

fn judged(answer: &Answer) -> StepResult {
    verdict(answer, "GET /raas/v2/catalogs")
}

#[test]
fn success_passes() {
    let result = judged(&answer(200));
    assert_eq!(result.outcome, Outcome::Pass);
    assert_eq!(result.detail, "GET /raas/v2/catalogs → 200 OK");
    assert_eq!(result.hint, None);
}

#[test]
fn the_albs_403_is_an_xff_problem_not_a_credentials_problem() {
    let alb = Answer {
        server: Some("awselb/2.0".to_owned()),
        html: true,
        ..answer(403)
    };
    let result = judged(&alb);
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(result.hint, Some(Hint::XffRejected));
    assert!(result.detail.contains("awselb/2.0"), "{}", result.detail);
    // Either mark alone is enough: some proxies strip `Server`.
    let html_only = Answer {
        html: true,
        ..answer(403)
    };
    assert_eq!(judged(&html_only).hint, Some(Hint::XffRejected));
    let server_only = Answer {
        server: Some("awselb/2.0".to_owned()),
        ..answer(403)
    };
    assert_eq!(judged(&server_only).hint, Some(Hint::XffRejected));
}

#[test]
fn a_json_403_is_the_api_refusing() {
    assert_eq!(judged(&answer(403)).hint, Some(Hint::Forbidden));
}

#[test]
fn statuses_and_their_hints() {
    for (status, hint) in [
        (401, Hint::CredentialsRefused),
        (404, Hint::PathNotFound),
        (429, Hint::RateLimited),
        (500, Hint::UpstreamError),
        (503, Hint::UpstreamError),
        (302, Hint::UnexpectedStatus),
        (400, Hint::UnexpectedStatus),
    ] {
        let result = judged(&answer(status));
        assert_eq!(result.outcome, Outcome::Fail, "{status}");
        assert_eq!(result.hint, Some(hint), "{status}");
    }
}

#[test]
fn a_gateway_error_names_its_code_whatever_the_status() {
    let made = Answer {
        gateway_error: Some("gateway.upstream_tls".to_owned()),
        ..answer(502)
    };
    let result = judged(&made);
    assert_eq!(
        result.hint,
        Some(Hint::Gateway("gateway.upstream_tls".to_owned()))
    );
    assert!(result.detail.contains("gateway.upstream_tls"));
    // Even a 403 the gateway made is its own, not the ALB's.
    let refused = Answer {
        gateway_error: Some("gateway.forbidden_source".to_owned()),
        ..answer(403)
    };
    assert!(matches!(judged(&refused).hint, Some(Hint::Gateway(_))));
}

#[test]
fn html_by_content_type_or_by_its_first_bytes() {
    let mut headers = HeaderMap::new();
    assert!(!is_html(&headers, br#"{"errors":[]}"#));
    assert!(is_html(&headers, b"\r\n<html>\r\n<head>"));
    assert!(is_html(&headers, b"<!DOCTYPE html><html>"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    assert!(is_html(&headers, b""));
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

#[test]
fn the_synthetic_peer_is_loopback_when_admitted() {
    let allow = nets(&["10.0.0.0/8", "127.0.0.0/8"]);
    assert_eq!(
        synthetic_peer(&allow, None),
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
    let allow = nets(&["::1/128"]);
    assert_eq!(
        synthetic_peer(&allow, None),
        Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
    );
}

#[test]
fn otherwise_an_address_both_lists_admit() {
    let allow = nets(&["10.0.0.0/8"]);
    assert_eq!(
        synthetic_peer(&allow, None),
        Some("10.0.0.1".parse().unwrap())
    );
    let sources = nets(&["10.1.0.0/16"]);
    assert_eq!(
        synthetic_peer(&allow, Some(&sources)),
        Some("10.1.0.1".parse().unwrap())
    );
    let single = nets(&["192.0.2.7/32"]);
    assert_eq!(
        synthetic_peer(&single, None),
        Some("192.0.2.7".parse().unwrap())
    );
}

#[test]
fn no_peer_when_nothing_is_admitted() {
    assert_eq!(synthetic_peer(&[], None), None);
    let allow = nets(&["10.0.0.0/8"]);
    let sources = nets(&["192.168.0.0/16"]);
    assert_eq!(synthetic_peer(&allow, Some(&sources)), None);
}
