//! Why Tango refused (PRODUCT.md §11), end to end through the real binary: the fake Tango
//! answers each rejection cause, and the gateway counts it in
//! `tango_gateway_upstream_rejections_total{route,cause}` and names it in the access log's
//! `upstream_cause`; the caller gets Tango's answer unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use support::process::Process;
use support::{OAuth, Setup};
use tango_sandbox::fake::rejections::CannedAnswer;
use tango_sandbox::fake::Fault;

const PATH: &str = "/raas/v2/catalogs";

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A GET tagged with `request_id`: the answer's status and body.
async fn get(gateway: &Process, request_id: &str) -> (StatusCode, Bytes) {
    let request = Request::get(format!("http://{}{PATH}", gateway.listen))
        .header("x-request-id", request_id)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client()
        .request(request)
        .await
        .unwrap_or_else(|err| panic!("{request_id}: {err}:\n{:#?}", gateway.output()));
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

async fn metrics(gateway: &Process) -> String {
    let uri = format!("http://{}/metrics", gateway.admin);
    let response = client().get(uri.parse().unwrap()).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of `tango_gateway_upstream_rejections_total{route="raas",cause=...}`, 0 if absent.
fn rejections(text: &str, cause: &str) -> f64 {
    let series =
        format!("tango_gateway_upstream_rejections_total{{route=\"raas\",cause=\"{cause}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rejection_cause_is_counted_and_logged_and_passed_through() {
    // One attempt per request: each answer below is the final one.
    let staged = Setup::new()
        .log("json", "info")
        .retry("max_attempts", "1")
        .stage_with(|_| {})
        .await;
    let gateway = Process::start(&staged.config_file).await;
    let not_browser = CannedAnswer::json_error(403, "Forbidden", &[]);
    let cases = [
        (CannedAnswer::alb_forbidden(), "alb_xff"),
        (CannedAnswer::alb_bad_gateway(), "alb_other"),
        (CannedAnswer::browser_refused(), "browser_refused"),
        (not_browser, "client_error"),
        (CannedAnswer::unauthorized(), "unauthorized"),
        (CannedAnswer::dpop_challenge("use_dpop_nonce"), "dpop_nonce"),
        (
            CannedAnswer::dpop_challenge("invalid_dpop_proof"),
            "dpop_invalid",
        ),
        (CannedAnswer::rate_limited(30), "rate_limited"),
        (
            CannedAnswer::json_error(404, "Not Found", &[]),
            "client_error",
        ),
        (
            CannedAnswer::json_error(500, "Internal Server Error", &[]),
            "server_error",
        ),
    ];
    for (index, (answer, cause)) in cases.iter().enumerate() {
        staged.fake.push_fault(Fault::Answer {
            answer: answer.clone(),
            times: 1,
        });
        let request_id = format!("rejection-{index}-{cause}");
        let (status, body) = get(&gateway, &request_id).await;
        // Tango's answer, unchanged: the peek at a 403's body re-emits every byte.
        assert_eq!(status.as_u16(), answer.status, "{cause}");
        assert_eq!(body, answer.body.as_bytes(), "{cause}");
        let event = gateway.access_event(&request_id).await;
        assert_eq!(event["upstream_cause"], *cause, "{event}");
        assert_eq!(event["upstream_status"], answer.status, "{event}");
        assert_eq!(event["bytes"], answer.body.len(), "{event}");
    }
    let (status, _) = get(&gateway, "rejection-ok").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        gateway.access_event("rejection-ok").await["upstream_cause"],
        "-"
    );

    let text = metrics(&gateway).await;
    for (cause, count) in [
        ("alb_xff", 1.0),
        ("alb_other", 1.0),
        ("browser_refused", 1.0),
        ("unauthorized", 1.0),
        ("dpop_nonce", 1.0),
        ("dpop_invalid", 1.0),
        ("rate_limited", 1.0),
        ("client_error", 2.0),
        ("server_error", 1.0),
    ] {
        assert_eq!(rejections(&text, cause), count, "{cause}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_counted_and_the_log_names_the_final_answer() {
    // The default retry policy resends a GET after a 503.
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    let gateway = Process::start(&staged.config_file).await;
    staged.fake.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
        times: 1,
    });
    let (status, _) = get(&gateway, "retried").await;
    assert_eq!(status, StatusCode::OK);
    let event = gateway.access_event("retried").await;
    assert_eq!(event["attempts"], 2, "{event}");
    assert_eq!(event["upstream_status"], 200, "{event}");
    assert_eq!(event["upstream_cause"], "-", "{event}");
    assert_eq!(rejections(&metrics(&gateway).await, "server_error"), 1.0);

    // Every attempt refused: the log names the last answer's cause.
    staged.fake.push_fault(Fault::Answer {
        answer: CannedAnswer::alb_bad_gateway(),
        times: 3,
    });
    let (status, _) = get(&gateway, "exhausted").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let event = gateway.access_event("exhausted").await;
    assert_eq!(event["attempts"], 3, "{event}");
    assert_eq!(event["upstream_cause"], "alb_other", "{event}");
    assert_eq!(rejections(&metrics(&gateway).await, "alb_other"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_nonce_round_trip_is_counted_but_the_answer_is_tangos_200() {
    let staged = Setup::new()
        .log("json", "info")
        .oauth(OAuth {
            api_nonce: true,
            ..OAuth::default()
        })
        .stage_with(|_| {})
        .await;
    let gateway = Process::start(&staged.config_file).await;
    let (status, _) = get(&gateway, "nonce").await;
    assert_eq!(status, StatusCode::OK);
    let event = gateway.access_event("nonce").await;
    assert_eq!(event["attempts"], 2, "{event}");
    assert_eq!(event["upstream_cause"], "-", "{event}");
    let text = metrics(&gateway).await;
    assert_eq!(rejections(&text, "dpop_nonce"), 1.0, "{text}");
    assert_eq!(rejections(&text, "dpop_invalid"), 0.0, "{text}");
}
