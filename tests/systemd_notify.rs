//! systemd readiness (src/systemd.rs) as systemd sees it: the real binary, started with
//! `NOTIFY_SOCKET` pointing at a datagram socket the test owns, says `READY=1` only once
//! `/readyz` answers 200 (its OAuth route holds its first token), `RELOADING=1` then `READY=1`
//! around a SIGHUP reload, `WATCHDOG=1` when `WATCHDOG_USEC` asks for it, and `STOPPING=1` on
//! SIGTERM.
//!
//! Robust on a loaded machine: the token endpoint stays down until the test lets it up, so
//! "not ready yet" does not depend on timing; every wait is for an event, with a generous
//! deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::process::Process;
use support::{OAuth, Setup};
use tokio::net::UnixDatagram;
use tokio::time::Instant;

/// Long enough for a start, a token fetch after a backoff, or a drain on a busy CI machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// The socket systemd would listen on, and what arrived on it.
struct Notifications {
    socket: UnixDatagram,
    /// Every datagram so far, in order.
    received: Vec<String>,
    /// How many of `received` a `wait_for` has gone past.
    consumed: usize,
}

impl Notifications {
    fn bind(path: &Path) -> Self {
        Notifications {
            socket: UnixDatagram::bind(path).unwrap(),
            received: Vec::new(),
            consumed: 0,
        }
    }

    /// Takes in every datagram already queued, without waiting.
    fn poll(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.try_recv(&mut buf) {
            self.received
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    /// Waits for the next datagram (after the ones already gone past) with the line `line`.
    async fn wait_for(&mut self, line: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            while self.consumed < self.received.len() {
                let datagram = self.received[self.consumed].clone();
                self.consumed += 1;
                if datagram.lines().any(|l| l == line) {
                    return datagram;
                }
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await {
                Ok(received) => {
                    let n = received.unwrap();
                    self.received
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                Err(_) => panic!(
                    "no {line:?} within {PATIENCE:?}; received: {:#?}",
                    self.received
                ),
            }
        }
    }

    fn any_line(&self, line: &str) -> bool {
        self.received
            .iter()
            .any(|datagram| datagram.lines().any(|l| l == line))
    }
}

/// GET `/readyz` on the admin listener: its status.
async fn readyz(gateway: &Process) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::get(format!("http://{}/readyz", gateway.admin))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ready_only_once_the_first_token_is_in_reloading_on_sighup_stopping_on_sigterm() {
    let staged = Setup::new()
        .oauth(OAuth {
            token_endpoint_down: true,
            ..OAuth::default()
        })
        .log("json", "info")
        .stage_with(|_| {})
        .await;
    let socket = staged.dir.path().join("notify.sock");
    let mut notes = Notifications::bind(&socket);
    let env: [(&str, OsString); 2] = [
        ("NOTIFY_SOCKET", socket.clone().into_os_string()),
        // A ping every 0.5 s.
        ("WATCHDOG_USEC", OsString::from("1000000")),
    ];
    let mut gateway = Process::start_with_env(&staged.config_file, &env).await;

    // The token endpoint answers 503 to everything: the gateway has asked and has no token,
    // so it is not ready, and must not have said so.
    wait_until("the start-up token request", || {
        staged.fake.token_requests() > 0
    })
    .await;
    assert_eq!(readyz(&gateway).await, 503);
    notes.poll();
    assert!(
        !notes.any_line("READY=1"),
        "READY=1 before the first token: {:#?}",
        notes.received
    );
    // The watchdog pings while the start waits.
    notes.wait_for("WATCHDOG=1").await;
    assert!(!notes.any_line("READY=1"), "{:#?}", notes.received);

    // The token endpoint comes back: the retry gets a token, then READY=1 comes.
    staged.fake.set_token_endpoint_down(false);
    let ready = notes.wait_for("READY=1").await;
    assert!(ready.lines().any(|l| l == "STATUS=serving"), "{ready:?}");
    assert!(
        staged.fake.tokens_issued() >= 1,
        "READY=1 came before any token was issued"
    );
    assert_eq!(
        readyz(&gateway).await,
        200,
        "READY=1 while /readyz is not 200"
    );

    // SIGHUP: the reload is announced, then its end.
    gateway.signal("HUP");
    notes.wait_for("RELOADING=1").await;
    notes.wait_for("READY=1").await;

    // SIGTERM: the drain is announced, and the gateway exits 0.
    gateway.signal("TERM");
    notes.wait_for("STOPPING=1").await;
    let exit = gateway.wait_exit(PATIENCE).await;
    assert_eq!(exit.code(), Some(0), "{:#?}", gateway.output());
    notes.poll();
    let stopping = notes
        .received
        .iter()
        .position(|d| d.lines().any(|l| l == "STOPPING=1"))
        .unwrap();
    assert!(
        !notes.received[stopping..]
            .iter()
            .any(|d| d.lines().any(|l| l == "READY=1")),
        "READY=1 after STOPPING=1: {:#?}",
        notes.received
    );
}

#[tokio::test]
async fn check_sends_nothing_even_with_a_notify_socket() {
    // Only `run` talks to systemd: a `check` run by an ExecStartPre= (or by hand inside the
    // unit's environment) must not claim the service is ready.
    let staged = Setup::new().stage_with(|_| {}).await;
    let socket = staged.dir.path().join("notify.sock");
    let mut notes = Notifications::bind(&socket);
    let status = std::process::Command::new(support::process::BIN)
        .args(["check", "--config"])
        .arg(&staged.config_file)
        .env("NOTIFY_SOCKET", &socket)
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    notes.poll();
    assert!(notes.received.is_empty(), "{:#?}", notes.received);
}
