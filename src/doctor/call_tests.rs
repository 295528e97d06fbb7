//! The call step's pure parts: the verdict on an answer (its cause and hint), the synthetic
//! peer.
#![allow(clippy::unwrap_used)]

use http::HeaderValue;

use super::*;
use crate::doctor::report::Outcome;

fn answer(status: u16) -> Answer {
    classified(status, &[], b"")
}

/// An answer as doctor keeps it: its cause given by the gateway's classifier.
fn classified(status: u16, headers: &[(&'static str, &'static str)], body: &[u8]) -> Answer {
    let status = StatusCode::from_u16(status).unwrap();
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.append(*name, HeaderValue::from_static(value));
    }
    Answer {
        status,
        gateway_error: None,
        server: map
            .get(http::header::SERVER)
            .map(|v| v.to_str().unwrap().to_owned()),
        cause: crate::upstream::rejection::classify(status, &map, body),
    }
}

fn judged(answer: &Answer) -> StepResult {
    verdict(answer, "GET /raas/v2/catalogs")
}

const ALB_PAGE: &[u8] = b"<html>\r\n<head><title>403 Forbidden</title></head></html>";

#[test]
fn success_passes() {
    let result = judged(&answer(200));
    assert_eq!(result.outcome, Outcome::Pass);
    assert_eq!(result.detail, "GET /raas/v2/catalogs → 200 OK");
    assert_eq!(result.hint, None);
}

#[test]
fn the_albs_403_is_an_xff_problem_not_a_credentials_problem() {
    let alb = classified(403, &[("server", "awselb/2.0")], ALB_PAGE);
    let result = judged(&alb);
    assert_eq!(result.outcome, Outcome::Fail);
    assert_eq!(result.hint, Some(Hint::XffRejected));
    assert!(result.detail.contains("alb_xff"), "{}", result.detail);
    assert!(result.detail.contains("awselb/2.0"), "{}", result.detail);
}

#[test]
fn another_answer_of_the_alb_is_named_as_the_albs() {
    let headers = [("server", "awselb/2.0"), ("content-type", "text/html")];
    let result = judged(&classified(502, &headers, b"<html></html>"));
    assert_eq!(result.hint, Some(Hint::AlbRefused));
    assert!(result.detail.contains("alb_other"), "{}", result.detail);
}

#[test]
fn a_json_403_is_the_api_refusing_unless_it_names_403_001() {
    let json = [("content-type", "application/json")];
    let refused = judged(&classified(403, &json, br#"{"httpCode":403}"#));
    assert_eq!(refused.hint, Some(Hint::Forbidden));
    assert!(
        refused.detail.contains("client_error"),
        "{}",
        refused.detail
    );
    let browser = judged(&classified(403, &json, br#"{"i18nKey":"403.001"}"#));
    assert_eq!(browser.hint, Some(Hint::BrowserRefused));
    assert!(
        browser.detail.contains("browser_refused"),
        "{}",
        browser.detail
    );
}

#[test]
fn dpop_refusals_are_told_apart_from_credentials() {
    let invalid = [("www-authenticate", r#"DPoP error="invalid_dpop_proof""#)];
    let result = judged(&classified(401, &invalid, b""));
    assert_eq!(result.hint, Some(Hint::DpopInvalid));
    assert!(result.detail.contains("dpop_invalid"), "{}", result.detail);
    let nonce = [("www-authenticate", r#"DPoP error="use_dpop_nonce""#)];
    assert_eq!(
        judged(&classified(401, &nonce, b"")).hint,
        Some(Hint::DpopNonce)
    );
    let unauthorized = judged(&answer(401));
    assert_eq!(unauthorized.hint, Some(Hint::CredentialsRefused));
    assert!(
        unauthorized.detail.contains("unauthorized"),
        "{}",
        unauthorized.detail
    );
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
