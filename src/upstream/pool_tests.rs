//! The pool against real local servers (rustls + hyper, certificates made per test): reuse,
//! stale connections, the idle cap and expiry, aborted bodies, and how failures classify.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex as StdMutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Version};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tango_sandbox::pki::{Ca, CertifiedMaterial};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::config::{TlsConfig, UpstreamConfig};
use crate::upstream::classify::{classify_attempt_error, AttemptFailure};
use crate::upstream::connect::{alpn_protocols, ConnectError};
use crate::upstream::lease::Lease;
use crate::upstream::tls::client_config;

const H1: &[u8] = b"http/1.1";
const H2: &[u8] = b"h2";

/// What a test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    uri: String,
    host: Option<String>,
}

#[derive(Clone)]
struct ServerOptions {
    /// `None`: plain TCP; otherwise TLS offering these ALPN protocols.
    alpn: Option<Vec<&'static [u8]>>,
    /// Each connection is dropped this long after it was accepted, whatever it is doing.
    drop_after: Option<Duration>,
    /// Each answer waits this long before its head is sent.
    delay: Duration,
    /// The names the server certificate is valid for.
    names: &'static [&'static str],
}

impl ServerOptions {
    fn tls(alpn: &[&'static [u8]]) -> Self {
        ServerOptions {
            alpn: Some(alpn.to_vec()),
            drop_after: None,
            delay: Duration::ZERO,
            names: &["localhost", "127.0.0.1"],
        }
    }
}

/// A TLS server side for `leaf`, offering these ALPN protocols.
fn tls_acceptor(leaf: &CertifiedMaterial, alpn: &[&[u8]]) -> TlsAcceptor {
    let mut config = ServerConfig::builder_with_provider(crate::upstream::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// A server on its own thread and runtime, so a test can block its own runtime while the
/// server goes on. Stops when dropped.
struct TestServer {
    addr: SocketAddr,
    ca: Ca,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    seen: Arc<StdMutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    fn start(options: ServerOptions) -> TestServer {
        let ca = Ca::new("pool test CA").unwrap();
        let server = ca.issue_server(options.names).unwrap();
        let acceptor = options
            .alpn
            .as_deref()
            .map(|alpn| tls_acceptor(&server, alpn));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let counters = (accepted.clone(), closed.clone(), seen.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = stopped => {}
                    _ = accept_loop(listener, acceptor, options, counters) => {}
                }
            });
        });
        TestServer {
            addr,
            ca,
            accepted,
            closed,
            seen,
            _stop: stop,
        }
    }

    fn url(&self, host: &str) -> String {
        let scheme = if host == "plain" { "http" } else { "https" };
        let host = if host == "plain" { "localhost" } else { host };
        format!("{scheme}://{host}:{}", self.addr.port())
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type Counters = (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<StdMutex<Vec<Seen>>>);

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    options: ServerOptions,
    (accepted, closed, seen): Counters,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        let (acceptor, options, closed, seen) = (
            acceptor.clone(),
            options.clone(),
            closed.clone(),
            seen.clone(),
        );
        tokio::spawn(async move {
            let serve = async {
                let service = service_fn(move |request: Request<Incoming>| {
                    let seen = seen.clone();
                    let delay = options.delay;
                    async move {
                        seen.lock().unwrap().push(Seen {
                            version: request.version(),
                            uri: request.uri().to_string(),
                            host: request
                                .headers()
                                .get(HOST)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                        });
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(answer(request.uri().path()))
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            };
            match options.drop_after {
                Some(after) => {
                    let _ = tokio::time::timeout(after, serve).await;
                }
                None => serve.await,
            }
            closed.fetch_add(1, Ordering::SeqCst);
        });
    }
}

/// `/big`: more than any socket buffer, so a reader can stop midway; `/empty`: 204;
/// `/not-modified`: 304; `/chunked`: a body of unknown length; `/close`: `Connection: close`;
/// anything else: `ok` with its length.
fn answer(path: &str) -> Response<UnsizedOr> {
    match path {
        "/big" => Response::new(UnsizedOr::Sized(Full::new(Bytes::from(vec![
            b'x';
            4 << 20
        ])))),
        "/empty" => {
            let mut response = Response::new(UnsizedOr::Sized(Full::default()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        "/chunked" => Response::new(UnsizedOr::Unsized(Some(Bytes::from_static(b"chunked")))),
        "/not-modified" => {
            let mut response = Response::new(UnsizedOr::Sized(Full::default()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        }
        "/close" => {
            let mut response =
                Response::new(UnsizedOr::Sized(Full::new(Bytes::from_static(b"bye"))));
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            response
        }
        _ => Response::new(UnsizedOr::Sized(Full::new(Bytes::from_static(b"ok")))),
    }
}

/// A test answer body: of known length, or of unknown length (sent chunked).
enum UnsizedOr {
    Sized(Full<Bytes>),
    Unsized(Option<Bytes>),
}

impl Body for UnsizedOr {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut *self {
            UnsizedOr::Sized(full) => Pin::new(full).poll_frame(cx),
            UnsizedOr::Unsized(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UnsizedOr::Sized(full) => full.is_end_stream(),
            UnsizedOr::Unsized(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UnsizedOr::Sized(full) => full.size_hint(),
            UnsizedOr::Unsized(_) => SizeHint::default(),
        }
    }
}

fn upstream(url: &str, ca: &Ca, allow_insecure: bool) -> UpstreamConfig {
    UpstreamConfig {
        url: crate::config::UpstreamUrl::parse(url, true).unwrap(),
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(5),
        deadline: None,
        allow_insecure_upstream: allow_insecure,
        tls: TlsConfig {
            extra_roots: vec![ca.cert().cert_der.clone()],
            ..TlsConfig::default()
        },
        proxy: None,
    }
}

fn pool_for(config: &UpstreamConfig, settings: PoolSettings) -> Arc<Pool> {
    let mut tls = client_config(&config.tls).unwrap();
    tls.alpn_protocols = alpn_protocols();
    let destination = Destination::new(config, Arc::new(tls));
    Arc::new(Pool::new(
        Arc::new(destination),
        settings,
        Counter::default(),
    ))
}

fn pool(server: &TestServer, settings: PoolSettings) -> Arc<Pool> {
    pool_for(
        &upstream(&server.url("localhost"), &server.ca, false),
        settings,
    )
}

fn get(url: &str, path: &str) -> Request<Payload> {
    let mut request = Request::get(format!("{url}{path}"))
        .body(Payload::Empty)
        .unwrap();
    // What `Upstream` sends, whatever the caller's version.
    *request.version_mut() = Version::HTTP_11;
    request
}

/// Sends a GET and reads the whole answer.
async fn fetch(pool: &Arc<Pool>, url: &str, path: &str) -> Result<(StatusCode, Bytes), BoxError> {
    let response = pool.send(get(url, path)).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn settle() {
    // Lets the connection tasks see what just happened (end of a body, a closed socket).
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn a_second_request_reuses_the_http1_connection() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    for _ in 0..3 {
        let (status, body) = fetch(&pool, &url, "/a?b=1").await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(server.accepted(), 1);
    assert_eq!(pool.idle_http1(), 1);
}

#[tokio::test]
async fn http1_sends_the_origin_form_and_the_upstream_host() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    fetch(&pool, &url, "/raas/v2/catalogs?verbose=true")
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, Version::HTTP_11);
    assert_eq!(seen[0].uri, "/raas/v2/catalogs?verbose=true");
    let expected_host = format!("localhost:{}", server.addr.port());
    assert_eq!(seen[0].host.as_deref(), Some(expected_host.as_str()));
}

#[tokio::test]
async fn an_ip_literal_upstream_is_verified_against_its_ip() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("127.0.0.1");
    let pool = pool_for(&upstream(&url, &server.ca, false), PoolSettings::default());
    let (status, _) = fetch(&pool, &url, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let expected_host = format!("127.0.0.1:{}", server.addr.port());
    assert_eq!(
        server.seen()[0].host.as_deref(),
        Some(expected_host.as_str())
    );
}

#[tokio::test]
async fn an_ip_literal_upstream_is_refused_when_the_certificate_lacks_that_ip() {
    let server = TestServer::start(ServerOptions {
        names: &["localhost"],
        ..ServerOptions::tls(&[H1])
    });
    let url = server.url("127.0.0.1");
    let pool = pool_for(&upstream(&url, &server.ca, false), PoolSettings::default());
    let err = fetch(&pool, &url, "/").await.unwrap_err();
    assert_eq!(
        classify_attempt_error(&*err),
        Some(AttemptFailure::Tls),
        "{err}"
    );
    assert!(server.seen().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn head_and_not_modified_answers_give_their_connection_back() {
    // Neither has a body whatever its headers say (RFC 9110 §9.3.2, §15.4.5): the
    // connection is free as soon as the head is read.
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    let mut head = get(&url, "/");
    *head.method_mut() = http::Method::HEAD;
    let response = pool.send(head).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .is_empty());
    let (status, body) = fetch(&pool, &url, "/not-modified").await.unwrap();
    assert_eq!((status, body.is_empty()), (StatusCode::NOT_MODIFIED, true));
    settle().await;
    assert_eq!(pool.idle_http1(), 1);
    fetch(&pool, &url, "/").await.unwrap();
    assert_eq!(server.accepted(), 1, "one connection served all three");
}

#[tokio::test]
async fn a_shared_h2_connection_the_upstream_closed_is_replaced() {
    let server = TestServer::start(ServerOptions {
        drop_after: Some(Duration::from_millis(200)),
        ..ServerOptions::tls(&[H2])
    });
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    fetch(&pool, &url, "/").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.closed(), 1);
    let (status, body) = fetch(&pool, &url, "/again").await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(server.accepted(), 2);
    assert!(server
        .seen()
        .iter()
        .all(|seen| seen.version == Version::HTTP_2));
}

#[tokio::test]
async fn h2_requests_share_one_connection() {
    let server = TestServer::start(ServerOptions::tls(&[H2, H1]));
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    let answers = futures_util::future::join_all((0..4).map(|_| fetch(&pool, &url, "/x"))).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    for _ in 0..3 {
        fetch(&pool, &url, "/y?z").await.unwrap();
    }
    // The concurrent first requests may each connect; after that, one shared connection.
    let after_burst = server.accepted();
    assert!((1..=4).contains(&after_burst));
    fetch(&pool, &url, "/y").await.unwrap();
    assert_eq!(server.accepted(), after_burst);
    let seen = server.seen();
    assert!(seen.iter().all(|s| s.version == Version::HTTP_2));
    let expected = format!("https://localhost:{}/y?z", server.addr.port());
    assert!(seen.iter().any(|s| s.uri == expected), "{seen:?}");
    assert_eq!(pool.idle_http1(), 0);
}

#[tokio::test]
async fn plain_http_is_used_only_when_allowed() {
    let server = TestServer::start(ServerOptions {
        alpn: None,
        ..ServerOptions::tls(&[])
    });
    let url = server.url("plain");
    let allowed = pool_for(&upstream(&url, &server.ca, true), PoolSettings::default());
    let (status, _) = fetch(&allowed, &url, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);

    let refused = pool_for(&upstream(&url, &server.ca, false), PoolSettings::default());
    let err = fetch(&refused, &url, "/").await.unwrap_err();
    assert_eq!(
        classify_attempt_error(&*err),
        Some(AttemptFailure::ConnectFailure)
    );
    assert_eq!(server.accepted(), 1, "the refused pool never connected");
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced() {
    let server = TestServer::start(ServerOptions {
        drop_after: Some(Duration::from_millis(200)),
        ..ServerOptions::tls(&[H1])
    });
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    fetch(&pool, &url, "/").await.unwrap();
    // The server closes the idle connection and our side notices.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.closed(), 1);
    let (status, _) = fetch(&pool, &url, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn a_request_an_idle_connection_never_took_is_sent_on_a_new_one() {
    let server = TestServer::start(ServerOptions {
        drop_after: Some(Duration::from_millis(200)),
        ..ServerOptions::tls(&[H1])
    });
    let url = server.url("localhost");
    // Built as a route's pools are, so the resend shows in the route's metric series.
    let workers = crate::upstream::client::build_worker_clients(
        "pool-test-stale",
        &upstream(&url, &server.ca, false),
        1,
    )
    .unwrap();
    let pool = workers.get().clone();
    fetch(&pool, &url, "/").await.unwrap();
    settle().await;
    assert_eq!(pool.idle_http1(), 1);
    // Blocks this runtime while the server closes the connection; then one yield lets the
    // runtime poll its I/O driver, which wakes the connection task, but this (block_on)
    // future runs first: the idle connection still looks ready at checkout and is handed a
    // request that its task, running next, finds it cannot send and gives back.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(server.closed(), 1);
    tokio::task::yield_now().await;
    let (status, body) = fetch(&pool, &url, "/again").await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(
        pool.stale_resends(),
        1,
        "the given-back request was sent again"
    );
    assert!(crate::metrics::metrics()
        .encode()
        .contains("tango_gateway_upstream_stale_resends_total{route=\"pool-test-stale\"} 1\n"));
    assert_eq!(server.accepted(), 2);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_request_written_to_a_connection_the_upstream_had_closed_is_a_reset() {
    let server = TestServer::start(ServerOptions {
        drop_after: Some(Duration::from_millis(200)),
        ..ServerOptions::tls(&[H1])
    });
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    fetch(&pool, &url, "/").await.unwrap();
    settle().await;
    // Blocked with no yield: the connection task is handed the request before the I/O
    // driver has seen the close, and writes it. Whether the upstream acted on it cannot be
    // known, so this is a reset (the retry layer resends only idempotent requests), as it
    // was with hyper-util's client; never a TLS or connect failure.
    std::thread::sleep(Duration::from_millis(400));
    let err = fetch(&pool, &url, "/again").await.unwrap_err();
    assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Reset));
    assert_eq!(pool.stale_resends(), 0);
    // The next request gets a new connection.
    fetch(&pool, &url, "/").await.unwrap();
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn idle_connections_are_capped() {
    let server = TestServer::start(ServerOptions {
        delay: Duration::from_millis(200),
        ..ServerOptions::tls(&[H1])
    });
    let url = server.url("localhost");
    let pool = pool(
        &server,
        PoolSettings {
            max_idle: 2,
            ..PoolSettings::default()
        },
    );
    // Four at once: four connections, since none is idle while the others wait.
    let answers = futures_util::future::join_all((0..4).map(|_| fetch(&pool, &url, "/"))).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(server.accepted(), 4);
    settle().await;
    assert_eq!(pool.idle_http1(), 2);
    // The two dropped ones were closed.
    assert_eq!(server.closed(), 2);
}

#[tokio::test]
async fn an_expired_idle_connection_is_never_used() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    // Long sweep period relative to the test: only the checkout's own check applies here.
    let pool = pool(
        &server,
        PoolSettings {
            idle_timeout: Duration::from_millis(300),
            ..PoolSettings::default()
        },
    );
    fetch(&pool, &url, "/").await.unwrap();
    settle().await;
    assert_eq!(pool.idle_http1(), 1);
    // Blocking, so the sweep cannot run either: checkout must see the expiry itself.
    std::thread::sleep(Duration::from_millis(400));
    fetch(&pool, &url, "/").await.unwrap();
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn the_sweep_closes_expired_idle_connections() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    let pool = pool(
        &server,
        PoolSettings {
            idle_timeout: Duration::from_millis(200),
            ..PoolSettings::default()
        },
    );
    fetch(&pool, &url, "/").await.unwrap();
    settle().await;
    assert_eq!(pool.idle_http1(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.idle_http1(), 0);
    assert_eq!(server.closed(), 1, "the upstream saw the connection closed");
}

#[tokio::test]
async fn a_body_dropped_before_its_end_does_not_return_its_connection() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    let response = pool.send(get(&url, "/big")).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    settle().await;
    assert_eq!(pool.idle_http1(), 0);
    fetch(&pool, &url, "/").await.unwrap();
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn a_body_read_to_its_end_returns_its_connection() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    let (_, body) = fetch(&pool, &url, "/big").await.unwrap();
    assert_eq!(body.len(), 4 << 20);
    settle().await;
    assert_eq!(pool.idle_http1(), 1);
    fetch(&pool, &url, "/").await.unwrap();
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn connections_return_after_empty_and_chunked_bodies() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    for path in ["/empty", "/chunked", "/empty", "/chunked", "/"] {
        let (status, body) = fetch(&pool, &url, path).await.unwrap();
        assert!(status.is_success(), "{path}: {status}");
        assert_eq!(body.is_empty(), path == "/empty", "{path}");
        // An empty body ends with the head, before hyper's task is ready for another
        // request: the connection comes back a moment later.
        settle().await;
        assert_eq!(pool.idle_http1(), 1, "{path}");
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closes_after_its_answer_is_not_kept() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    let (_, body) = fetch(&pool, &url, "/close").await.unwrap();
    assert_eq!(&body[..], b"bye");
    settle().await;
    assert_eq!(pool.idle_http1(), 0);
    fetch(&pool, &url, "/").await.unwrap();
    assert_eq!(server.accepted(), 2);
    assert_eq!(pool.stale_resends(), 0);
}

#[tokio::test]
async fn a_connection_released_before_it_is_ready_returns_once_it_is() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let pool = pool(&server, PoolSettings::default());
    // A new connection whose task has not run yet is not ready: what a lease finds when a
    // body ends before hyper's task has caught up.
    let Connection::Http1(send) = pool.destination.connect().await.unwrap() else {
        panic!("the server offers HTTP/1.1 only");
    };
    assert!(!send.is_ready());
    Lease::new(pool.clone(), send).release();
    assert_eq!(pool.idle_http1(), 0);
    settle().await;
    assert_eq!(pool.idle_http1(), 1);
    fetch(&pool, &server.url("localhost"), "/").await.unwrap();
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let ca = Ca::new("unused").unwrap();
    let url = format!("https://localhost:{port}");
    let pool = pool_for(&upstream(&url, &ca, false), PoolSettings::default());
    let err = fetch(&pool, &url, "/").await.unwrap_err();
    assert!(find_connect_error(&*err).is_some(), "{err}");
    assert_eq!(
        classify_attempt_error(&*err),
        Some(AttemptFailure::ConnectFailure)
    );
}

#[tokio::test]
async fn a_connect_timeout_is_a_connect_failure() {
    // A listener that never accepts, its queue filled: further handshakes get no answer
    // (the kernel drops their SYNs), so connecting hangs until the timeout.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let _queued: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
        })
        .collect();
    let ca = Ca::new("unused").unwrap();
    let url = format!("https://127.0.0.1:{}", addr.port());
    let mut config = upstream(&url, &ca, false);
    config.connect_timeout = Duration::from_millis(200);
    let pool = pool_for(&config, PoolSettings::default());
    let err = fetch(&pool, &url, "/").await.unwrap_err();
    assert!(
        matches!(find_connect_error(&*err), Some(ConnectError::Timeout)),
        "{err}"
    );
    assert_eq!(
        classify_attempt_error(&*err),
        Some(AttemptFailure::ConnectFailure)
    );
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_a_connect_failure_within_connect_timeout() {
    // Accepts TCP, then never answers the ClientHello (a stuck listener, a path that drops
    // the large certificate flight): no request was sent, so it may always be retried.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let ca = Ca::new("unused").unwrap();
    let url = format!("https://localhost:{}", addr.port());
    let mut config = upstream(&url, &ca, false);
    config.connect_timeout = Duration::from_millis(300);
    let pool = pool_for(&config, PoolSettings::default());
    let started = tokio::time::Instant::now();
    let err = fetch(&pool, &url, "/").await.unwrap_err();
    assert!(
        matches!(find_connect_error(&*err), Some(ConnectError::TlsTimeout)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by connect_timeout"
    );
    assert_eq!(
        classify_attempt_error(&*err),
        Some(AttemptFailure::ConnectFailure)
    );
    held.abort();
}

#[test]
fn a_request_given_back_unsent_is_a_connect_failure_and_a_written_one_a_reset() {
    // What hyper reports when a connection closes before or after taking a request (the
    // give-back itself is exercised against a real server above).
    let closed =
        || -> BoxError { std::io::Error::from(std::io::ErrorKind::ConnectionReset).into() };
    let given_back = Unsent {
        error: closed(),
        request: Some(get("https://localhost", "/")),
    }
    .into_error();
    assert!(matches!(
        find_connect_error(&*given_back),
        Some(ConnectError::ClosedBeforeSend(_))
    ));
    assert_eq!(
        classify_attempt_error(&*given_back),
        Some(AttemptFailure::ConnectFailure)
    );
    let written = Unsent {
        error: closed(),
        request: None,
    }
    .into_error();
    assert_eq!(
        classify_attempt_error(&*written),
        Some(AttemptFailure::Reset)
    );
}

#[tokio::test]
async fn an_upstream_hanging_up_right_after_the_handshake_is_never_a_tls_failure() {
    // Completes TLS, then closes before reading anything. Depending on who runs first the
    // request was given back (a connect failure) or written (a reset); either way neither a
    // TLS failure (never retried) nor a wait until the attempt timeout.
    let ca = Ca::new("closer").unwrap();
    let acceptor = tls_acceptor(&ca.issue_server(&["localhost"]).unwrap(), &[H1]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closer = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if let Ok(mut tls) = acceptor.accept(stream).await {
                use tokio::io::AsyncWriteExt;
                let _ = tls.shutdown().await;
            }
        }
    });
    let url = format!("https://localhost:{}", addr.port());
    let pool = pool_for(&upstream(&url, &ca, false), PoolSettings::default());
    let err = tokio::time::timeout(Duration::from_secs(5), fetch(&pool, &url, "/"))
        .await
        .expect("the failure is reported at once")
        .unwrap_err();
    assert!(
        matches!(
            classify_attempt_error(&*err),
            Some(AttemptFailure::Reset | AttemptFailure::ConnectFailure)
        ),
        "{err}"
    );
    closer.abort();
}

#[tokio::test]
async fn an_unresolvable_host_is_a_connect_failure() {
    let ca = Ca::new("unused").unwrap();
    // `.invalid` never resolves (RFC 6761).
    let url = "https://upstream.invalid";
    let pool = pool_for(&upstream(url, &ca, false), PoolSettings::default());
    let err = fetch(&pool, url, "/").await.unwrap_err();
    assert_eq!(
        classify_attempt_error(&*err),
        Some(AttemptFailure::ConnectFailure)
    );
}

#[tokio::test]
async fn an_unknown_server_ca_is_a_tls_failure() {
    let server = TestServer::start(ServerOptions::tls(&[H1]));
    let url = server.url("localhost");
    let other = Ca::new("another CA").unwrap();
    let pool = pool_for(&upstream(&url, &other, false), PoolSettings::default());
    let err = fetch(&pool, &url, "/").await.unwrap_err();
    assert!(find_connect_error(&*err).is_some(), "{err}");
    assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Tls));
}

#[tokio::test]
async fn a_hostname_mismatch_is_a_tls_failure() {
    let server = TestServer::start(ServerOptions {
        names: &["other.example"],
        ..ServerOptions::tls(&[H1])
    });
    let url = server.url("localhost");
    let pool = pool(&server, PoolSettings::default());
    let err = fetch(&pool, &url, "/").await.unwrap_err();
    assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Tls));
}

fn find_connect_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a ConnectError> {
    crate::error::find_cause::<ConnectError>(err)
}
