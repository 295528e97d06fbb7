//! The binary as an operator runs it (§7): `SIGTERM` lets a slow in-flight request finish
//! and exits 0; `SIGHUP` reloads; and a whole run — `check`, start-up, requests, refusals,
//! retries, token refreshes, a 401, reloads good and bad, shutdown — logs no secret, token,
//! proof or key, at debug level for every crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::process::{Process, BIN};
use support::{OAuth, Setup, CLIENT_ID};
use tango_sandbox::fake::Fault;

const PATH: &str = "/raas/v2/catalogs";

fn url(gateway: &Process, path: &str) -> String {
    format!("http://{}{}", gateway.listen, path)
}

async fn start(config: &Path, rust_log: Option<&str>) -> Process {
    match rust_log {
        Some(filter) => Process::start_with_env(config, &[("RUST_LOG", filter)]).await,
        None => Process::start(config).await,
    }
}

async fn ready(gateway: &Process) {
    let start = Instant::now();
    while get(&format!("http://{}/readyz", gateway.admin), &[])
        .await
        .0
        != 200
    {
        assert!(start.elapsed() < Duration::from_secs(10), "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET with headers: (status, body); status 0 when the connection failed.
async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(_) => (0, String::new()),
    }
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    let mut gateway = start(&staged.config_file, None).await;
    assert_eq!(get(&url(&gateway, PATH), &[]).await.0, 200);
    staged
        .fake
        .push_fault(Fault::Delay(Duration::from_millis(1500)));
    let slow_url = url(&gateway, PATH);
    let slow = tokio::spawn(async move { get(&slow_url, &[]).await.0 });
    let start = Instant::now();
    while staged.fake.request_count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway.signal("TERM");
    gateway.wait_for_line(0, "shutdown requested").await;
    // Draining: not ready, no new connection, the slow request still in flight.
    let (status, body) = get(&format!("http://{}/readyz", gateway.admin), &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    assert_eq!(
        get(&url(&gateway, PATH), &[]).await.0,
        0,
        "new calls are refused"
    );
    assert_eq!(slow.await.unwrap(), 200, "the in-flight request completes");
    let exit = gateway.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0), "{:#?}", gateway.output());
    gateway.wait_for_line(0, "tango-gateway stopped").await;
}

#[tokio::test]
async fn a_whole_run_logs_no_secret_token_proof_or_key() {
    let staged = Setup::new()
        .oauth(OAuth {
            grant: "password",
            client_auth: "basic",
            token_nonce: true,
            api_nonce: true,
            token_lifetime: Duration::from_secs(3),
            refresh_at: Some(0.5),
            ..OAuth::default()
        })
        .log("json", "debug")
        .stage_with(|_| {})
        .await;
    let fake = &staged.fake;
    let mut everything: Vec<String> = Vec::new();

    // `check`: the summary and its problems.
    let check = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&staged.config_file)
        .output()
        .unwrap();
    assert!(check.status.success());
    everything.push(String::from_utf8_lossy(&check.stdout).into_owned());
    everything.push(String::from_utf8_lossy(&check.stderr).into_owned());

    // Every crate at debug: hyper, rustls, h2 and ours.
    let mut gateway = start(&staged.config_file, Some("debug")).await;
    ready(&gateway).await;
    let caller_token = "caller-bearer-do-not-forward-4f1e";
    let caller = [
        ("authorization", "Bearer caller-bearer-do-not-forward-4f1e"),
        ("cookie", "session=caller-cookie-do-not-forward"),
    ];
    for _ in 0..3 {
        assert_eq!(get(&url(&gateway, PATH), &caller).await.0, 200);
    }
    // A refusal, a retried 503, a revoked token (401, refresh, resend), a failed upstream.
    let browser = [
        ("origin", "https://evil.example"),
        ("sec-fetch-mode", "cors"),
    ];
    assert_eq!(get(&url(&gateway, PATH), &browser).await.0, 403);
    fake.push_fault(Fault::Status {
        status: 503,
        times: 1,
        retry_after: Some("0".to_owned()),
    });
    assert_eq!(get(&url(&gateway, PATH), &caller).await.0, 200);
    fake.revoke_tokens();
    assert_eq!(get(&url(&gateway, PATH), &caller).await.0, 200);
    // Background refreshes of 3 s tokens while calls go on.
    for _ in 0..8 {
        assert_eq!(get(&url(&gateway, PATH), &caller).await.0, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    // Reloads: a rotated client secret (SIGHUP), then a broken file (refused).
    let new_secret = "cs-rotated-do-not-log-9d2b";
    fake.accept_client_secret(CLIENT_ID, new_secret);
    std::fs::write(staged.dir.path().join("client-secret"), new_secret).unwrap();
    let from = gateway.lines();
    gateway.signal("HUP");
    gateway.wait_for_line(from, "configuration reloaded").await;
    let good = std::fs::read_to_string(&staged.config_file).unwrap();
    let from = gateway.lines();
    std::fs::write(
        &staged.config_file,
        good.replace("grant: password", "grant: magic"),
    )
    .unwrap();
    gateway
        .wait_for_line(from, "configuration reload refused")
        .await;
    assert_eq!(get(&url(&gateway, PATH), &caller).await.0, 200);

    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(35)).await.code(),
        Some(0)
    );
    gateway.wait_for_line(0, "tango-gateway stopped").await;
    everything.extend(gateway.output());
    let text = everything.join("\n");

    // What the run must have logged, so the search below searched something real.
    for event in [
        "tango-gateway serving",
        "OAuth token obtained",
        "access",
        "configuration reloaded",
        "configuration reload refused",
        "shutdown requested",
        "OK",
    ] {
        assert!(text.contains(event), "no {event:?} in the output");
    }
    assert!(fake.tokens_issued() >= 3, "refreshes happened");

    // Every answer Tango sent whole was delivered whole, and the access log says so.
    let delivered: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["message"] == "request" && event["status"] == 200)
        .collect();
    assert!(delivered.len() >= 10, "{} access events", delivered.len());
    for event in &delivered {
        assert_eq!(event["complete"], true, "{event}");
        assert!(event["bytes"].as_u64() > Some(0), "{event}");
    }

    // What must never appear: secrets, every credential Tango received, the caller's.
    let mut forbidden: Vec<String> = vec![
        staged.client_secret.clone(),
        new_secret.to_owned(),
        staged.service_password.clone(),
        caller_token.to_owned(),
        "caller-cookie-do-not-forward".to_owned(),
        "eyJ".to_owned(),
        "PRIVATE KEY".to_owned(),
    ];
    for request in fake.received() {
        for name in ["authorization", "dpop"] {
            for value in request.header_all(name) {
                // The scheme word alone ("DPoP", "Basic") is not a secret.
                let credential = value.split_once(' ').map_or(value, |(_, c)| c);
                forbidden.push(credential.to_owned());
            }
        }
    }
    assert!(forbidden.len() > 20, "credentials were collected");
    for secret in &forbidden {
        assert!(
            !text.contains(secret.as_str()),
            "a secret reached the output: {} characters starting {:?}",
            secret.len(),
            secret.get(..4)
        );
    }
    eprintln!(
        "searched {} lines of output for {} secrets: none found",
        text.lines().count(),
        forbidden.len()
    );
}

#[tokio::test]
async fn sighup_reloads_without_a_restart() {
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    let gateway = start(&staged.config_file, None).await;
    assert_eq!(get(&url(&gateway, PATH), &[]).await.0, 200);
    let config = std::fs::read_to_string(&staged.config_file).unwrap();
    let from = gateway.lines();
    // Same content: the watcher has nothing to do; only the signal reloads.
    gateway.signal("HUP");
    gateway.wait_for_line(from, "configuration reloaded").await;
    assert!(gateway.output()[from..]
        .iter()
        .any(|l| l.contains("SIGHUP") && l.contains("\"generation\":2")));
    assert_eq!(
        std::fs::read_to_string(&staged.config_file).unwrap(),
        config
    );
    assert_eq!(get(&url(&gateway, PATH), &[]).await.0, 200);
}

/// The access log's `json` lane honours the log filter like every other event: none at
/// `warn`, one per request when the filter turns the access target on. (The start-up event
/// stays on in both: it tells the test the gateway's ports.)
#[tokio::test]
async fn the_access_log_follows_the_log_filter() {
    let staged = Setup::new().log("json", "warn").stage_with(|_| {}).await;
    let quiet =
        access_lines_for_three_requests(&staged.config_file, "warn,tango_gateway::app=info");
    assert_eq!(quiet.await, 0);
    let loud = access_lines_for_three_requests(
        &staged.config_file,
        "warn,tango_gateway::app=info,tango_gateway::access=info",
    );
    assert_eq!(loud.await, 3);
}

/// Runs the gateway under `filter` for three requests and a clean exit; counts the access
/// lines it wrote.
async fn access_lines_for_three_requests(config: &Path, filter: &str) -> usize {
    let mut gateway = start(config, Some(filter)).await;
    for _ in 0..3 {
        assert_eq!(get(&url(&gateway, PATH), &[]).await.0, 200);
    }
    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(35)).await.code(),
        Some(0)
    );
    gateway
        .output()
        .iter()
        .filter(|line| line.contains(r#""target":"tango_gateway::access""#))
        .count()
}
