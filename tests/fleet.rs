//! A fleet on one Redis (PRODUCT.md §5, §8, §9): replicas share tokens, one refreshes at a
//! time under a lock that is a short lease its holder renews (so a holder that dies holds the
//! others up one lease, not `lock_timeout`), and Redis going away degrades to per-replica
//! memory caches without failing a request. Every test runs a real `redis-server`.
//!
//! The token-request counts are printed (`--nocapture`) as the measured result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use support::process::Process;
use support::redis::RedisServer;
use support::{start_gateway, OAuth, Setup, Staged};
use tango_gateway::auth::oauth::store::LOCK_LEASE;
use tango_gateway::config::DEFAULT_LOCK_TIMEOUT;
use tango_sandbox::fake::{FakeTango, TokenFault};

const PATH: &str = "/raas/v2/catalogs";
const PREFIX: &str = "fleet-test";
const WARNING: &str = "token store redis unreachable; tokens cached in memory on this replica";

/// `lock_timeout` is left at its default (20 s), as a fleet would run it.
fn redis_block(redis: &RedisServer) -> String {
    format!(
        "token_cache:\n  store: redis\n  url: \"{}\"\n  key_prefix: {PREFIX}\n",
        redis.url()
    )
}

/// The harness with a Redis token store; JSON logs at info (the binary's serving event).
async fn stage(redis: &RedisServer, prepare: impl FnOnce(&FakeTango)) -> Staged {
    Setup::new()
        .log("json", "info")
        .oauth(OAuth {
            token_cache: Some(redis_block(redis)),
            ..OAuth::default()
        })
        .stage_with(prepare)
        .await
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> (StatusCode, String) {
    let request = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.expect("the gateway answers");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn readyz(
    client: &Client<HttpConnector, Full<Bytes>>,
    admin: SocketAddr,
) -> (StatusCode, serde_json::Value) {
    let (status, body) = get(client, admin, "/readyz").await;
    (status, serde_json::from_str(&body).unwrap())
}

/// Steady traffic: `workers` callers calling `PATH` on `addr` back to back until
/// [`Load::finish`], which returns how many calls were made and the answers that were not 200.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Tally>>,
}

/// How many calls were made, and the answers that were not 200.
type Tally = (usize, Vec<(StatusCode, String)>);

impl Load {
    fn start(addr: SocketAddr, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|_| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let client = client();
                    let (mut calls, mut failed) = (0, Vec::new());
                    while !stop.load(Ordering::SeqCst) {
                        let answer = get(&client, addr, PATH).await;
                        calls += 1;
                        if answer.0 != StatusCode::OK {
                            failed.push(answer);
                        }
                    }
                    (calls, failed)
                })
            })
            .collect();
        Load { stop, workers }
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let (mut calls, mut failed) = (0, Vec::new());
        for worker in self.workers {
            let (n, f) = worker.await.unwrap();
            calls += n;
            failed.extend(f);
        }
        (calls, failed)
    }
}

/// Polls `check` every 50 ms for up to 15 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_make_one_token_request_for_150_cold_calls() {
    let redis = RedisServer::start().await;
    // A slow token endpoint, so every replica's first refresh overlaps the one in flight.
    let staged = stage(&redis, |fake| {
        fake.push_token_fault(TokenFault::Delay(Duration::from_millis(300)))
    })
    .await;
    let replicas =
        futures_util::future::join_all((0..3).map(|_| start_gateway(&staged.config_file))).await;
    let client = client();
    let calls = (0..150).map(|i| get(&client, replicas[i % 3].listen_addr, PATH));
    let answers = futures_util::future::join_all(calls).await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let token_requests = staged.fake.token_requests();
    eprintln!("fleet: 3 replicas, 150 concurrent cold calls: {ok} answered 200, {token_requests} token request(s)");
    assert_eq!(
        ok,
        150,
        "{:?}",
        answers.iter().find(|(s, _)| *s != StatusCode::OK)
    );
    assert_eq!(token_requests, 1);
    assert_eq!(redis.keys(&format!("{PREFIX}:token:*")).await.len(), 1);
    assert!(
        redis.keys(&format!("{PREFIX}:lock:*")).await.is_empty(),
        "the lock was released"
    );
    for replica in replicas {
        replica.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_holder_killed_mid_refresh_holds_the_fleet_up_one_lease_not_the_lock_timeout() {
    let redis = RedisServer::start().await;
    // Every token request takes 3 s: A's (which A never sees answered) and B's.
    let staged = stage(&redis, |fake| {
        for _ in 0..3 {
            fake.push_token_fault(TokenFault::Delay(Duration::from_secs(3)));
        }
    })
    .await;
    let mut a = Process::start(&staged.config_file).await;
    eventually("A's token request", async || {
        staged.fake.token_requests() == 1
    })
    .await;
    let locks = redis.keys(&format!("{PREFIX}:lock:*")).await;
    assert_eq!(locks.len(), 1, "A holds the refresh lock");
    let lease = i64::try_from(LOCK_LEASE.as_millis()).unwrap();
    let ttl = redis.pttl(&locks[0]).await;
    assert!((1..=lease).contains(&ttl), "a short lease: {ttl} ms");
    // 1.5 s into A's 3 s token request: unrenewed, its lease would have under 1.5 s left.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let ttl = redis.pttl(&locks[0]).await;
    assert!(
        ttl > 1_600,
        "A renews its lease while it fetches: {ttl} ms left"
    );

    let killed_at = Instant::now();
    let lease_left = Duration::from_millis(redis.pttl(&locks[0]).await.max(0) as u64);
    a.kill();
    assert_eq!(staged.fake.token_requests(), 1, "killed mid-refresh");

    let b = Process::start(&staged.config_file).await;
    let listen = b.listen;
    let call = tokio::spawn(async move { get(&client(), listen, PATH).await });
    eventually("B's token request", async || {
        staged.fake.token_requests() == 2
    })
    .await;
    let fetched_after = killed_at.elapsed();
    let (status, body) = call.await.unwrap();
    let served_after = killed_at.elapsed();
    eprintln!(
        "fleet: lock holder SIGKILLed mid-refresh (3 s token endpoint) with {lease_left:?} of \
         its lease left; the other replica fetched {fetched_after:?} and served \
         {served_after:?} after the kill (lock_timeout {DEFAULT_LOCK_TIMEOUT:?})"
    );
    assert_eq!(status, StatusCode::OK, "{body}\n{:#?}", b.output());
    assert!(
        fetched_after >= lease_left,
        "B fetched before the dead holder's lease lapsed"
    );
    assert!(
        served_after < Duration::from_secs(15),
        "B waited far past the dead holder's lease"
    );
    assert!(
        served_after < DEFAULT_LOCK_TIMEOUT,
        "not held up by lock_timeout"
    );
    assert_eq!(staged.fake.token_requests(), 2, "A's (lost) and B's");
    assert!(
        redis.keys(&format!("{PREFIX}:lock:*")).await.is_empty(),
        "B released the lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_mid_run_degrades_to_memory_and_readyz_warns() {
    // The real binary, with its own metrics registry (the other tests' replicas are healthy)
    // and a Redis password that must never be printed.
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let mut redis = RedisServer::start_with(Some(&password)).await;
    let staged = stage(&redis, |_| {}).await;
    let gateway = Process::start(&staged.config_file).await;
    let client = client();
    assert_eq!(get(&client, gateway.listen, PATH).await.0, StatusCode::OK);
    assert_eq!(
        redis.keys(&format!("{PREFIX}:token:*")).await.len(),
        1,
        "the token is shared"
    );

    // Calls keep flowing while Redis stops and comes back.
    let load = Load::start(gateway.listen, 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.stop();
    // Refused tokens force a refresh while Redis is down: it is fetched locally.
    staged.fake.revoke_tokens();
    let answers =
        futures_util::future::join_all((0..20).map(|_| get(&client, gateway.listen, PATH))).await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{answers:?}"
    );
    eventually("the /readyz warning", async || {
        readyz(&client, gateway.admin).await.1["warnings"][0] == WARNING
    })
    .await;
    let (status, body) = readyz(&client, gateway.admin).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Redis down is a warning, not a reason: {body}"
    );
    let metrics = get(&client, gateway.admin, "/metrics").await.1;
    assert!(
        metrics.contains(r#"tango_gateway_token_store_up{store="redis"} 0"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"tango_gateway_token_store_errors_total{store="redis""#));
    let during_outage = staged.fake.token_requests();

    redis.restart().await;
    eventually("the warning to clear", async || {
        let (status, body) = readyz(&client, gateway.admin).await;
        status == StatusCode::OK && body.get("warnings").is_none()
    })
    .await;
    let metrics = get(&client, gateway.admin, "/metrics").await.1;
    assert!(metrics.contains(r#"tango_gateway_token_store_up{store="redis"} 1"#));
    assert_eq!(get(&client, gateway.listen, PATH).await.0, StatusCode::OK);
    let (calls, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} of {calls} calls failed: {failed:?}",
        failed.len()
    );
    eprintln!(
        "fleet: Redis stopped mid-run and restarted under load ({calls} calls, all 200): 20/20 \
         calls answered 200; {during_outage} token requests (1 before, 1 after a 401 during the \
         outage); readyz warned, then cleared"
    );
    assert_eq!(during_outage, 2);
    let output = gateway.output();
    assert!(output
        .iter()
        .any(|l| l.contains("Redis token store is unreachable")));
    assert!(output.iter().any(|l| l.contains("answers again")));
    assert!(
        !output.iter().any(|l| l.contains(&password)),
        "the Redis password was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_and_a_new_replica_reuse_the_shared_token() {
    let redis = RedisServer::start().await;
    let staged = stage(&redis, |_| {}).await;
    let client = client();
    let first = start_gateway(&staged.config_file).await;
    assert_eq!(
        get(&client, first.listen_addr, PATH).await.0,
        StatusCode::OK
    );
    first.reload().await.unwrap();
    assert_eq!(
        get(&client, first.listen_addr, PATH).await.0,
        StatusCode::OK
    );
    let second = start_gateway(&staged.config_file).await;
    assert_eq!(
        get(&client, second.listen_addr, PATH).await.0,
        StatusCode::OK
    );
    let token_requests = staged.fake.token_requests();
    eprintln!("fleet: a reload and a new replica: {token_requests} token request(s)");
    assert_eq!(token_requests, 1);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_refused_on_one_replica_is_refetched_once_for_the_fleet() {
    let redis = RedisServer::start().await;
    let staged = stage(&redis, |_| {}).await;
    let client = client();
    let a = start_gateway(&staged.config_file).await;
    let b = start_gateway(&staged.config_file).await;
    for replica in [&a, &b] {
        assert_eq!(
            get(&client, replica.listen_addr, PATH).await.0,
            StatusCode::OK
        );
    }
    staged.fake.revoke_tokens();
    // A meets the 401, drops the token and fetches; B meets the 401 later and adopts A's new
    // token from Redis instead of fetching a third.
    assert_eq!(get(&client, a.listen_addr, PATH).await.0, StatusCode::OK);
    assert_eq!(get(&client, b.listen_addr, PATH).await.0, StatusCode::OK);
    let token_requests = staged.fake.token_requests();
    eprintln!("fleet: one refused token seen by 2 replicas: {token_requests} token requests");
    assert_eq!(token_requests, 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rediss_shares_tokens_over_tls_verified_with_the_system_trust_store() {
    // TLS through rustls on aws-lc-rs; the server's CA is trusted the way an operator would
    // (SSL_CERT_FILE, read by rustls-native-certs), not by a test-only switch.
    let mut redis = RedisServer::tls_on_free_port();
    let staged = stage(&redis, |_| {}).await;
    redis.start_tls(staged.dir.path()).await;
    let ca = staged.dir.path().join("ca.pem");
    let env = [("SSL_CERT_FILE", ca.as_path())];
    let client = client();
    let a = Process::start_with_env(&staged.config_file, &env).await;
    assert_eq!(get(&client, a.listen, PATH).await.0, StatusCode::OK);
    let b = Process::start_with_env(&staged.config_file, &env).await;
    assert_eq!(get(&client, b.listen, PATH).await.0, StatusCode::OK);
    let (status, body) = readyz(&client, b.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("warnings").is_none(), "{body}");
    let token_requests = staged.fake.token_requests();
    eprintln!("fleet: 2 replicas on rediss://: {token_requests} token request(s)");
    assert_eq!(token_requests, 1, "{:#?}", b.output());
    // Without the CA the server's certificate is refused: the store is unreachable (a
    // warning), never silently used unverified.
    let untrusting = Process::start(&staged.config_file).await;
    eventually("the untrusted server's warning", async || {
        readyz(&client, untrusting.admin).await.1["warnings"][0] == WARNING
    })
    .await;
}
