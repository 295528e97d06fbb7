//! The binary as an operator runs it (§7): `SIGTERM` lets a slow in-flight request finish
//! and exits 0; `SIGHUP` reloads; and a whole run — `check`, start-up, requests, refusals,
//! retries, token refreshes, a 401, reloads good and bad, shutdown — logs no secret, token,
//! proof or key, at debug level for every crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{OAuth, Setup, CLIENT_ID};
use tango_gateway::sandbox::Fault;

const BIN: &str = env!("CARGO_BIN_EXE_tango-gateway");
const PATH: &str = "/raas/v2/catalogs";

/// A `tango-gateway run` child process with its output collected line by line.
struct Process {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    listen: SocketAddr,
    admin: SocketAddr,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

impl Process {
    /// Starts `run` with JSON logs and waits for its "serving" event (listen addresses).
    async fn start(config: &Path, rust_log: Option<&str>) -> Process {
        let mut command = Command::new(BIN);
        command
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        // Waited for by `Process`'s `Drop` (kill + wait), which clippy cannot see.
        #[allow(clippy::zombie_processes)]
        let mut child = command.spawn().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        let start = Instant::now();
        loop {
            let serving = output
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|event| event["message"] == "tango-gateway serving");
            if let Some(event) = serving {
                return Process {
                    child,
                    output,
                    listen: event["listen"].as_str().unwrap().parse().unwrap(),
                    admin: event["admin"].as_str().unwrap().parse().unwrap(),
                };
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the gateway did not start: {:#?}",
                output.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until a log line contains `text` (counting from line `from`).
    async fn wait_for_line(&self, from: usize, text: &str) {
        let start = Instant::now();
        while !self.output.lock().unwrap()[from..]
            .iter()
            .any(|l| l.contains(text))
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no log line with {text:?}: {:#?}",
                self.output.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn lines(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "the gateway did not exit");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    async fn ready(&self) {
        let start = Instant::now();
        while get(&format!("http://{}/readyz", self.admin), &[]).await.0 != 200 {
            assert!(start.elapsed() < Duration::from_secs(10), "not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let mut gateway = Process::start(&staged.config_file, None).await;
    assert_eq!(get(&gateway.url(PATH), &[]).await.0, 200);
    staged
        .fake
        .push_fault(Fault::Delay(Duration::from_millis(1500)));
    let url = gateway.url(PATH);
    let slow = tokio::spawn(async move { get(&url, &[]).await.0 });
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
        get(&gateway.url(PATH), &[]).await.0,
        0,
        "new calls are refused"
    );
    assert_eq!(slow.await.unwrap(), 200, "the in-flight request completes");
    let exit = gateway.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        exit.code(),
        Some(0),
        "{:#?}",
        gateway.output.lock().unwrap()
    );
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
    let mut gateway = Process::start(&staged.config_file, Some("debug")).await;
    gateway.ready().await;
    let caller_token = "caller-bearer-do-not-forward-4f1e";
    let caller = [
        ("authorization", "Bearer caller-bearer-do-not-forward-4f1e"),
        ("cookie", "session=caller-cookie-do-not-forward"),
    ];
    for _ in 0..3 {
        assert_eq!(get(&gateway.url(PATH), &caller).await.0, 200);
    }
    // A refusal, a retried 503, a revoked token (401, refresh, resend), a failed upstream.
    let browser = [
        ("origin", "https://evil.example"),
        ("sec-fetch-mode", "cors"),
    ];
    assert_eq!(get(&gateway.url(PATH), &browser).await.0, 403);
    fake.push_fault(Fault::Status {
        status: 503,
        times: 1,
        retry_after: Some("0".to_owned()),
    });
    assert_eq!(get(&gateway.url(PATH), &caller).await.0, 200);
    fake.revoke_tokens();
    assert_eq!(get(&gateway.url(PATH), &caller).await.0, 200);
    // Background refreshes of 3 s tokens while calls go on.
    for _ in 0..8 {
        assert_eq!(get(&gateway.url(PATH), &caller).await.0, 200);
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
    assert_eq!(get(&gateway.url(PATH), &caller).await.0, 200);

    gateway.signal("TERM");
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(35)).await.code(),
        Some(0)
    );
    gateway.wait_for_line(0, "tango-gateway stopped").await;
    everything.extend(gateway.output.lock().unwrap().iter().cloned());
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
    let gateway = Process::start(&staged.config_file, None).await;
    assert_eq!(get(&gateway.url(PATH), &[]).await.0, 200);
    let config = std::fs::read_to_string(&staged.config_file).unwrap();
    let from = gateway.lines();
    // Same content: the watcher has nothing to do; only the signal reloads.
    gateway.signal("HUP");
    gateway.wait_for_line(from, "configuration reloaded").await;
    assert!(gateway.output.lock().unwrap()[from..]
        .iter()
        .any(|l| l.contains("SIGHUP") && l.contains("\"generation\":2")));
    assert_eq!(
        std::fs::read_to_string(&staged.config_file).unwrap(),
        config
    );
    assert_eq!(get(&gateway.url(PATH), &[]).await.0, 200);
}
