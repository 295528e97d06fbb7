//! The access log's fields of §13 through the real binary: `peer` (the caller's IP),
//! `user_agent` (cut to 256 bytes), `trace_id` (from a valid `traceparent` only),
//! `upstream_ms` (time spent waiting on Tango, over every attempt, abandoned ones included).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use support::process::Process;
use support::Setup;
use tango_sandbox::fake::Fault;

const PATH: &str = "/raas/v2/catalogs";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A GET tagged with `request_id`, with the extra `headers`: the answer's status.
async fn get(gateway: &Process, request_id: &str, headers: &[(&str, &[u8])]) -> StatusCode {
    get_path(gateway, PATH, request_id, headers).await
}

async fn get_path(
    gateway: &Process,
    path: &str,
    request_id: &str,
    headers: &[(&str, &[u8])],
) -> StatusCode {
    let mut request = Request::get(format!("http://{}{path}?secret=hidden", gateway.listen))
        .header("x-request-id", request_id);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap_or_else(|err| panic!("{request_id}: {err}:\n{:#?}", gateway.output()));
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_peer_user_agent_trace_and_upstream_time() {
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    let gateway = Process::start(&staged.config_file).await;

    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let status = get(
        &gateway,
        "full",
        &[
            ("user-agent", b"payouts-service/1.4"),
            ("traceparent", traceparent.as_bytes()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let event = gateway.access_event("full").await;
    assert_eq!(event["peer"], "127.0.0.1", "{event}");
    assert_eq!(event["user_agent"], "payouts-service/1.4", "{event}");
    assert_eq!(event["trace_id"], TRACE_ID, "{event}");
    let upstream_ms = event["upstream_ms"].as_f64().unwrap();
    let duration_ms = event["duration_ms"].as_f64().unwrap();
    assert!(upstream_ms > 0.0, "{event}");
    assert!(upstream_ms <= duration_ms, "{event}");
    // The query string is never logged, whatever field.
    assert!(!event.to_string().contains("hidden"), "{event}");

    // No User-Agent, a malformed traceparent: `-` for both.
    get(&gateway, "bare", &[("traceparent", b"00-not-a-trace-01")]).await;
    let event = gateway.access_event("bare").await;
    assert_eq!(event["user_agent"], "-", "{event}");
    assert_eq!(event["trace_id"], "-", "{event}");

    // A long User-Agent is cut to its first 256 bytes.
    let long = "x".repeat(1000);
    get(&gateway, "long", &[("user-agent", long.as_bytes())]).await;
    let event = gateway.access_event("long").await;
    assert_eq!(event["user_agent"], long[..256], "{event}");

    // Refused before any attempt (no route): no upstream time.
    let status = get_path(&gateway, "/elsewhere", "refused", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let event = gateway.access_event("refused").await;
    assert_eq!(event["attempts"], 0, "{event}");
    assert_eq!(event["upstream_ms"], 0.0, "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_time_counts_an_attempt_abandoned_at_its_timeout() {
    let staged = Setup::new()
        .log("json", "info")
        .upstream("timeout", "1s")
        .stage_with(|_| {})
        .await;
    let gateway = Process::start(&staged.config_file).await;
    // The first attempt hangs past its 1 s timeout; the GET is resent and answered.
    staged.fake.push_fault(Fault::Hang);
    let status = get(&gateway, "hung", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let event = gateway.access_event("hung").await;
    assert_eq!(event["attempts"], 2, "{event}");
    let upstream_ms = event["upstream_ms"].as_f64().unwrap();
    assert!(upstream_ms >= 1000.0, "{event}");
    assert!(
        upstream_ms <= event["duration_ms"].as_f64().unwrap(),
        "{event}"
    );
}
