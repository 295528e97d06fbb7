//! `/metrics` (PRODUCT.md §7): the §7 series move with traffic, labels stay in a closed set.
//!
//! One test in its own binary: the registry is process-wide, so counts are exact here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::{Method, StatusCode};
use support::{Harness, OAuth, Setup};
use tango_sandbox::fake::Fault;

/// The value of the sample line starting with `series` (labels included), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn scrape(h: &Harness) -> String {
    let uri = format!("http://{}/metrics", h.gateway.admin_addr);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client.get(uri.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    use http_body_util::BodyExt;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_move_with_traffic_and_never_carry_a_path() {
    let h = Harness::start().await;
    for _ in 0..3 {
        assert_eq!(
            h.get("/raas/v2/catalogs?customer=secret-query")
                .await
                .status,
            200
        );
    }
    h.fake.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
        times: 1,
    });
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
    let refused = h
        .call(
            Method::GET,
            "/raas/v2/catalogs",
            &[("origin", "https://x.example")],
            "",
        )
        .await;
    refused.assert_gateway_error(403, "gateway.browser_request");
    h.get("/not-a-route/abc")
        .await
        .assert_gateway_error(404, "gateway.no_route");

    let oauth = Setup::new().oauth(OAuth::default()).start().await;
    assert_eq!(oauth.get("/raas/v2/catalogs").await.status, 200);

    let text = scrape(&h).await;
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    // Both gateways live in this process and share the registry: 4 + 1 GETs on route raas.
    assert_eq!(
        value(
            r#"tango_gateway_requests_total{route="raas",method="GET",status="200",caller="none"}"#
        ),
        5.0
    );
    assert_eq!(
        value(r#"tango_gateway_upstream_attempts_total{route="raas",outcome="5xx"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tango_gateway_upstream_attempts_total{route="raas",outcome="2xx"}"#),
        5.0
    );
    assert_eq!(
        value(r#"tango_gateway_retries_total{route="raas",reason="503"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tango_gateway_rejected_total{reason="gateway.browser_request"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tango_gateway_rejected_total{reason="gateway.no_route"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tango_gateway_request_duration_seconds_count{route="raas"}"#),
        5.0
    );
    // Refused at admission, before a route was chosen.
    assert_eq!(
        value(r#"tango_gateway_request_duration_seconds_count{route="none"}"#),
        2.0
    );
    assert_eq!(
        value(
            r#"tango_gateway_token_requests_total{credential="test-client@https://api.tangocard.com/",outcome="success"}"#
        ),
        1.0
    );
    let expiry = value(
        r#"tango_gateway_token_expiry_timestamp_seconds{credential="test-client@https://api.tangocard.com/"}"#,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now + 80_000.0,
        "a 24 h token: {expiry} vs now {now}"
    );
    assert!(value(r#"tango_gateway_client_cert_expiry_timestamp_seconds{route="raas"}"#) > now);
    assert_eq!(value("tango_gateway_inflight_requests"), 0.0);
    assert!(
        !text.contains("secret-query") && !text.contains("/raas/v2"),
        "no path in labels"
    );
    // Build, readiness and process series (§13).
    let build = text
        .lines()
        .find(|line| line.starts_with("tango_gateway_build_info{"))
        .unwrap_or_else(|| panic!("no build_info:\n{text}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.contains("commit=\"")
            && build.ends_with(" 1"),
        "{build}"
    );
    assert_eq!(
        value("tango_gateway_ready"),
        1.0,
        "an OAuth route with its token"
    );
    assert!(value("process_cpu_seconds_total") > 0.0);
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_open_fds") > 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    let start = value("process_start_time_seconds");
    assert!(
        start > now - 3_600.0 && start <= now + 1.0,
        "{start} vs {now}"
    );
}
