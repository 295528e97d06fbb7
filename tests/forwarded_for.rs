//! `X-Forwarded-For` as the fake Tango receives it, in each mode: bare IPs only, so the ALB's
//! `ip:port` rule (403 HTML from `awselb/2.0`) never fires; `Forwarded` and `X-Real-IP` never
//! pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::IpAddr;

use http::Method;
use support::{Answer, Setup};

/// A caller's forwarding headers, with ports, brackets, junk and several lines.
const CALLER_HEADERS: [(&str, &str); 5] = [
    ("x-forwarded-for", "203.0.113.42:54321, [2001:db8::1]:443"),
    ("x-forwarded-for", "[2001:db8::2], unknown, 198.51.100.9"),
    ("x-forwarded-for", "_hidden, 10.1.2.3:8080"),
    ("forwarded", "for=192.0.2.60;proto=http"),
    ("x-real-ip", "192.0.2.61"),
];

async fn xff_seen(setup: Setup) -> Option<Vec<String>> {
    let h = setup.start().await;
    let answer = h
        .call(Method::GET, "/raas/v2/catalogs", &CALLER_HEADERS, "")
        .await;
    assert_not_refused_by_the_alb(&answer);
    let seen = h.only_request();
    assert!(
        seen.header("forwarded").is_none(),
        "Forwarded reached the fake"
    );
    assert!(
        seen.header("x-real-ip").is_none(),
        "X-Real-IP reached the fake"
    );
    let lines = seen.header_all("x-forwarded-for");
    assert!(
        lines.len() <= 1,
        "one X-Forwarded-For line at most: {lines:?}"
    );
    let entries: Option<Vec<String>> = lines
        .first()
        .map(|line| line.split(',').map(|e| e.trim().to_owned()).collect());
    for entry in entries.iter().flatten() {
        assert!(entry.parse::<IpAddr>().is_ok(), "not a bare IP: {entry:?}");
    }
    entries
}

fn assert_not_refused_by_the_alb(answer: &Answer) {
    assert_ne!(
        answer.header("server"),
        Some("awselb/2.0"),
        "the ALB rule fired"
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
}

#[tokio::test]
async fn peer_mode_sends_only_the_peer_ip() {
    let seen = xff_seen(Setup::new().forwarded_for("peer", None)).await;
    assert_eq!(seen, Some(vec!["127.0.0.1".to_owned()]));
}

#[tokio::test]
async fn append_mode_keeps_bare_ips_in_order_with_the_peer_last() {
    let seen = xff_seen(Setup::new().forwarded_for("append", None)).await;
    let expected = [
        "203.0.113.42",
        "2001:db8::1",
        "2001:db8::2",
        "198.51.100.9",
        "10.1.2.3",
        "127.0.0.1",
    ];
    assert_eq!(seen, Some(expected.map(str::to_owned).to_vec()));
}

#[tokio::test]
async fn append_mode_without_an_incoming_chain_sends_the_peer() {
    let h = Setup::new().forwarded_for("append", None).start().await;
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    assert_eq!(
        h.only_request().header("x-forwarded-for"),
        Some("127.0.0.1")
    );
}

#[tokio::test]
async fn append_mode_keeps_the_rightmost_thirty_entries() {
    let h = Setup::new().forwarded_for("append", None).start().await;
    let chain: Vec<String> = (1..=40).map(|i| format!("192.0.2.{i}:1{i}")).collect();
    let chain = chain.join(", ");
    let answer = h
        .call(
            Method::GET,
            "/raas/v2/catalogs",
            &[("x-forwarded-for", &chain)],
            "",
        )
        .await;
    assert_not_refused_by_the_alb(&answer);
    let seen = h.only_request();
    let entries: Vec<&str> = seen
        .header("x-forwarded-for")
        .unwrap()
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(entries.len(), 30);
    assert_eq!(entries.first(), Some(&"192.0.2.12"));
    assert_eq!(entries.last(), Some(&"127.0.0.1"));
}

#[tokio::test]
async fn static_mode_sends_the_configured_ip() {
    let seen = xff_seen(Setup::new().forwarded_for("static", Some("203.0.113.7"))).await;
    assert_eq!(seen, Some(vec!["203.0.113.7".to_owned()]));
}

#[tokio::test]
async fn remove_mode_sends_no_forwarding_header() {
    let seen = xff_seen(Setup::new().forwarded_for("remove", None)).await;
    assert_eq!(seen, None);
}
