//! Live reload (§7): credentials and certificates rotated under a steady request loop drop no
//! request, Tango sees the new credential right after the reload, a bad configuration is
//! refused while the old one keeps serving, and in-flight requests finish on the old state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;
use support::{Harness, OAuth, Setup, CLIENT_ID, PLATFORM};
use tango_sandbox::fake::{Fault, TOKEN_PATH};
use tango_sandbox::pki::ClientSpec;
use tokio::task::JoinHandle;

const CALLERS: usize = 8;
const PATH: &str = "/raas/v2/catalogs";

/// `CALLERS` tasks calling the gateway back to back until stopped; each keeps its statuses.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Vec<u16>>>,
}

impl Load {
    fn start(h: &Harness) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..CALLERS)
            .map(|_| {
                let stop = stop.clone();
                let url = h.url(PATH);
                tokio::spawn(async move {
                    let client = Client::builder(TokioExecutor::new()).build_http();
                    let mut statuses = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let request = Request::get(&url).body(Full::new(Bytes::new())).unwrap();
                        let status = match client.request(request).await {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                // A body cut short counts as a failure too.
                                match response.into_body().collect().await {
                                    Ok(_) => status,
                                    Err(_) => 0,
                                }
                            }
                            Err(_) => 0,
                        };
                        statuses.push(status);
                    }
                    statuses
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the callers; returns (requests, failures), a failure being anything but 200.
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        let mut failed = 0;
        for task in self.tasks {
            let statuses = task.await.unwrap();
            total += statuses.len();
            let failures: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
            if !failures.is_empty() {
                eprintln!("failed statuses: {failures:?}");
            }
            failed += failures.len();
        }
        (total, failed)
    }
}

/// Polls `done` every 20 ms; panics with `what` after `limit`. Returns the time it took.
async fn eventually(limit: Duration, what: &str, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Replaces `path` atomically (write aside, rename), as an orchestrator would.
fn replace_file(path: &Path, content: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn basic_header(password: &str) -> String {
    let pair = format!("{PLATFORM}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Lets the load run a little so the loop is established before and after a change.
async fn steady() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_basic_api_key_drops_no_request() {
    let h = Harness::start().await;
    let load = Load::start(&h);
    steady().await;
    let old_key = h.api_key.clone();
    let new_key = format!("rotated-{}", uuid::Uuid::new_v4().simple());
    // Tango's rotation: the new key is valid alongside the old one for a while.
    h.fake.accept_basic(PLATFORM, &new_key);
    replace_file(&h.dir.path().join("tango-api-key"), &new_key);
    let new_header = basic_header(&new_key);
    let took = eventually(Duration::from_secs(5), "Tango sees the new key", || {
        h.fake
            .received()
            .iter()
            .any(|r| r.header("authorization") == Some(new_header.as_str()))
    })
    .await;
    assert_eq!(h.gateway.generation(), 2);
    // The old key is revoked: a request still sending it would fail.
    h.fake.revoke_basic(&old_key);
    let revoked_at = h.fake.request_count();
    steady().await;
    let (total, failed) = load.finish().await;
    eprintln!("basic key rotation: {total} requests, {failed} failed, new key seen after {took:?}");
    assert_eq!(failed, 0, "no request may fail during the rotation");
    let after: Vec<_> = h.fake.received().into_iter().skip(revoked_at).collect();
    assert!(!after.is_empty());
    assert!(after
        .iter()
        .all(|r| r.header("authorization") == Some(new_header.as_str())));
    assert_eq!(h.fake.api_auth_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_oauth_client_secret_drops_no_request() {
    let h = Setup::new().oauth(OAuth::default()).start().await;
    h.wait_ready().await;
    let load = Load::start(&h);
    steady().await;
    // A reload that leaves the credential alone costs no token request.
    let token_requests = h.fake.token_requests();
    let config = std::fs::read_to_string(&h.config_file).unwrap();
    replace_file(&h.config_file, &format!("{config}\n# touched\n"));
    eventually(
        Duration::from_secs(5),
        "the touched config is reloaded",
        || h.gateway.generation() == 2,
    )
    .await;
    assert_eq!(h.fake.token_requests(), token_requests, "no token request");

    let old_secret = h.client_secret.clone();
    let new_secret = format!("cs-rotated-{}", uuid::Uuid::new_v4().simple());
    h.fake.accept_client_secret(CLIENT_ID, &new_secret);
    replace_file(&h.dir.path().join("client-secret"), &new_secret);
    let form_secret = format!("client_secret={new_secret}");
    let took = eventually(
        Duration::from_secs(5),
        "the token endpoint sees the new secret",
        || {
            h.fake.received().iter().any(|r| {
                r.path_and_query == TOKEN_PATH
                    && String::from_utf8_lossy(&r.body).contains(&form_secret)
            })
        },
    )
    .await;
    assert_eq!(h.gateway.generation(), 3);
    eventually(Duration::from_secs(5), "the new secret's token", || {
        h.fake.tokens_issued() == 2
    })
    .await;
    // Requests that picked the old token before the new one arrived have finished.
    steady().await;
    // The old secret is revoked and every token too: the gateway must carry on with the
    // new secret (a 401, one refresh with the new secret, the request resent).
    h.fake.revoke_client_secret(&old_secret);
    h.fake.revoke_tokens();
    steady().await;
    let (total, failed) = load.finish().await;
    eprintln!(
        "client secret rotation: {total} requests, {failed} failed, new secret used after \
         {took:?}, {} token requests in all",
        h.fake.token_requests()
    );
    assert_eq!(failed, 0, "no request may fail during the rotation");
    let (status, body) = h.admin_get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_the_client_certificate_drops_no_request() {
    let h = Harness::start().await;
    let load = Load::start(&h);
    steady().await;
    let rotated = h
        .pki
        .ca
        .issue_client(&ClientSpec::new("rotated-client"))
        .unwrap();
    // Key first, then certificate: in between, the pair does not match and a reload that
    // sees it is refused (the running configuration keeps serving).
    replace_file(
        &h.dir.path().join("client.key"),
        rotated.key_pem.expose_secret(),
    );
    replace_file(&h.dir.path().join("client.pem"), &rotated.cert_pem);
    let took = eventually(
        Duration::from_secs(5),
        "Tango sees the new certificate",
        || {
            h.fake
                .received()
                .iter()
                .any(|r| r.client_cn.as_deref() == Some("rotated-client"))
        },
    )
    .await;
    // Requests that were in flight at the swap finish on the old certificate; after that,
    // only the new one is presented.
    steady().await;
    let settled_at = h.fake.request_count();
    steady().await;
    let (total, failed) = load.finish().await;
    eprintln!(
        "client certificate rotation: {total} requests, {failed} failed, new certificate \
         seen after {took:?}"
    );
    assert_eq!(failed, 0, "no request may fail during the rotation");
    let after: Vec<_> = h.fake.received().into_iter().skip(settled_at).collect();
    assert!(!after.is_empty());
    assert!(after
        .iter()
        .all(|r| r.client_cn.as_deref() == Some("rotated-client")));
    let metrics = h.admin_text("/metrics").await;
    assert!(
        metrics.contains("tango_gateway_config_reloads_total{outcome=\"success\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_bad_configuration_is_refused_and_the_old_one_keeps_serving() {
    let h = Harness::start().await;
    let good = std::fs::read_to_string(&h.config_file).unwrap();
    replace_file(
        &h.config_file,
        &good.replace(
            "forwarded_for:\n  mode: peer",
            "forwarded_for:\n  mode: sideways",
        ),
    );
    let refused = h.gateway.reload().await.unwrap_err().to_string();
    assert!(refused.contains("forwarded_for.mode"), "{refused}");
    assert_eq!(h.gateway.generation(), 1);
    assert_eq!(h.get(PATH).await.status, StatusCode::OK);
    // The watcher saw the same change and refused it too; it does not retry it every tick.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(h.gateway.generation(), 1);
    assert_eq!(h.get(PATH).await.status, StatusCode::OK);
    let (status, _) = h.admin_get("/readyz").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a refused reload does not make it unready"
    );
    // A missing secret file is refused the same way.
    std::fs::remove_file(h.dir.path().join("tango-api-key")).unwrap();
    replace_file(&h.config_file, &good);
    assert!(h.gateway.reload().await.is_err());
    assert_eq!(h.get(PATH).await.status, StatusCode::OK);
    // Once the file is back, the watcher reloads by itself.
    std::fs::write(h.dir.path().join("tango-api-key"), &h.api_key).unwrap();
    eventually(
        Duration::from_secs(5),
        "the fixed files are reloaded",
        || h.gateway.generation() == 2,
    )
    .await;
    assert_eq!(h.get(PATH).await.status, StatusCode::OK);
    let metrics = h.admin_text("/metrics").await;
    // The registry is process-wide (other tests share it): the series exist, counts vary.
    assert!(metrics.contains("tango_gateway_config_reloads_total{outcome=\"refused\"}"));
    assert!(metrics.contains("tango_gateway_config_generation "));
}

#[tokio::test]
async fn an_in_flight_request_finishes_on_the_configuration_it_started_on() {
    let h = Harness::start().await;
    h.fake.push_fault(Fault::Delay(Duration::from_millis(800)));
    let url = h.url(PATH);
    let slow = tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
        client.request(request).await.unwrap().status()
    });
    eventually(
        Duration::from_secs(5),
        "the slow request reaches Tango",
        || h.fake.request_count() == 1,
    )
    .await;
    // The new configuration no longer has the route the request is on.
    let config = std::fs::read_to_string(&h.config_file).unwrap();
    replace_file(&h.config_file, &config.replace("/raas/v2/", "/elsewhere/"));
    assert_eq!(h.gateway.reload().await.unwrap(), 2);
    h.get(PATH)
        .await
        .assert_gateway_error(404, "gateway.no_route");
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
}
