//! Nothing secret reaches a log line (PRODUCT.md §7): every event of a full OAuth/DPoP run is
//! captured, at debug level for every crate, and searched for the client secret, the
//! service-account password, every token issued, every proof sent, and `eyJ` (the start of
//! any base64url JSON object: a JWT, a proof, a JWK).
//!
//! One test in its own binary, because the log subscriber is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use support::{OAuth, Setup};
use tango_sandbox::fake::Fault;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Waits (at most 30 s: patience for a busy machine, not a limit under test) until `done`.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 30 s");
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_secret_token_or_proof_in_any_log_line() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .fmt_fields(tango_gateway::telemetry::JsonSpanFields)
        .event_format(tango_gateway::telemetry::JsonLines)
        .with_env_filter("debug")
        .with_writer(captured.clone())
        .init();

    // A password-grant DPoP credential with nonces on both endpoints and short tokens, so
    // the run covers: start-up fetch, nonce challenges, background refreshes, a 401 refresh,
    // a retried attempt, a token endpoint outage, and shutdown.
    let mut h = Setup::new()
        .oauth(OAuth {
            grant: "password",
            client_auth: "basic",
            token_nonce: true,
            api_nonce: true,
            token_lifetime: Duration::from_secs(3),
            refresh_at: Some(0.5),
            file_store: true,
            ..OAuth::default()
        })
        .start()
        .await;
    h.wait_ready().await;
    for _ in 0..5 {
        assert_eq!(h.get("/raas/v2/catalogs?q=1").await.status, 200);
    }
    h.fake.rotate_nonce();
    h.fake.revoke_tokens();
    h.fake.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
        times: 1,
    });
    let answer = h
        .call(
            Method::POST,
            "/raas/v2/orders",
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer caller-secret-token"),
            ],
            r#"{"externalRefID":"log-1","customerIdentifier":"c","accountIdentifier":"a","amount":1,"utid":"U1"}"#,
        )
        .await;
    assert!(answer.status.is_success(), "{answer:?}");
    // Background refreshes of the 3 s tokens, then a refresh against a token endpoint that
    // is down: waited for as events, not for a fixed time.
    wait_until("background refreshes", || h.fake.tokens_issued() >= 3).await;
    let failures = || captured.text().matches("token request failed").count();
    let before = failures();
    h.fake.set_token_endpoint_down(true);
    wait_until("a failed refresh logged", || failures() > before).await;
    let _ = h.get("/raas/v2/catalogs").await;
    h.restart_gateway().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut needles = vec![
        h.client_secret.clone(),
        h.service_password.clone(),
        "caller-secret-token".to_owned(),
        "eyJ".to_owned(),
        "PRIVATE KEY".to_owned(),
    ];
    for request in h.fake.received() {
        for name in ["authorization", "dpop"] {
            if let Some(value) = request.header(name) {
                let secret_part = value.split_once(' ').map_or(value, |(_, v)| v);
                needles.push(secret_part.to_owned());
            }
        }
    }
    assert!(needles.len() > 10, "the run made authenticated requests");
    assert!(h.fake.tokens_issued() >= 3, "refreshes happened");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("OAuth token obtained"),
        "the capture works and saw the token events"
    );
    assert!(
        logs.contains("token request failed"),
        "the outage was logged"
    );
    for needle in &needles {
        assert!(
            !logs.contains(needle.as_str()),
            "a log line contains a secret ({} chars starting {:?})",
            needle.len(),
            needle.chars().take(3).collect::<String>()
        );
    }
}
