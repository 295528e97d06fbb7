//! Limits on callers (§12) through real sockets: a stalled upload is answered 408 and holds
//! no capacity, so other callers keep being served; connections that never finish a request
//! head, idle keep-alive and h2c connections are closed; connections beyond the cap are
//! closed at once; out of file descriptors, no accept loop spins and `/healthz` answers again
//! once descriptors free up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use support::process::Process;
use support::{Harness, Setup};
use tango_sandbox::fake::Fault;

/// How long a test waits for something the gateway must do within a limit of a second or
/// two: generous, so a loaded machine cannot fail it, and still far below the other limits
/// in play (which are set to 60 s where they must not interfere).
const PATIENCE: Duration = Duration::from_secs(15);

/// Reads until the peer closes the connection; returns what was read. Panics if it stays
/// open past `PATIENCE`.
async fn read_until_closed(tcp: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let result = tokio::time::timeout(PATIENCE, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "the gateway kept the connection open; read so far: {:?}",
        String::from_utf8_lossy(&seen)
    );
    String::from_utf8_lossy(&seen).into_owned()
}

/// Opens a connection that sends an order's head and the start of its body, then stalls.
async fn stalled_upload(h: &Harness) -> TcpStream {
    let mut tcp = TcpStream::connect(h.gateway.listen_addr).await.unwrap();
    tcp.write_all(
        b"POST /raas/v2/orders HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
          content-length: 200\r\n\r\n{\"externalRefID\":\"stalled\"",
    )
    .await
    .unwrap();
    tcp
}

#[tokio::test]
async fn a_stalled_upload_is_answered_408_and_nothing_is_sent() {
    let h = Setup::new()
        .inbound("body_read_timeout", "500ms")
        .start()
        .await;
    let mut tcp = stalled_upload(&h).await;
    let answer = read_until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("gateway.request_timeout"), "{answer}");
    assert_eq!(h.fake.request_count(), 0, "a partial body reached Tango");
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
}

#[tokio::test]
async fn stalled_uploads_hold_no_capacity_other_callers_keep_being_served() {
    let max = 2;
    let h = Setup::new()
        .max_concurrent_requests(max)
        .inbound("body_read_timeout", "60s")
        .start()
        .await;
    // Twice as many stalled uploads as there are permits, over HTTP/1.1 ...
    let mut stalled = Vec::new();
    for _ in 0..2 * max {
        stalled.push(stalled_upload(&h).await);
    }
    // ... and as h2c streams on one connection.
    let (mut h2, driver) = h2c(&h).await;
    let mut streams = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..2 * max {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"{\"externalRefID\""))))
            .await
            .unwrap();
        senders.push(tx);
        let body = StreamBody::new(tokio_stream_from(rx));
        let request = Request::post(format!("http://{}/raas/v2/orders", h.gateway.listen_addr))
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        h2.ready().await.unwrap();
        streams.push(tokio::spawn(h2.send_request(request)));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for round in 0..5 {
        let answer = h.get("/raas/v2/catalogs").await;
        assert_eq!(answer.status, 200, "round {round}: {answer:?}");
    }
    // As many at once as there are permits: none is taken by a stalled upload.
    let together = futures_util::future::join_all((0..max).map(|_| h.get("/raas/v2/catalogs")));
    for answer in together.await {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    assert!(
        h.fake.received().iter().all(|r| r.method == Method::GET),
        "no stalled order reached Tango"
    );
    drop(senders);
    drop(stalled);
    driver.abort();
}

/// A channel receiver as a `Stream` (what `StreamBody` wants), without tokio-stream.
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// An h2c (prior knowledge) connection to the gateway and the task driving it.
async fn h2c<B>(
    h: &Harness,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<()>,
)
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(h.gateway.listen_addr).await.unwrap();
    let (send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send, driver)
}

#[tokio::test]
async fn connections_that_never_finish_a_request_head_are_closed() {
    let h = Setup::new()
        .inbound("header_read_timeout", "1s")
        .inbound("idle_timeout", "60s")
        .start()
        .await;
    let partial_heads: [&[u8]; 4] = [
        b"",
        b"GET /raas/v2/catalogs HTTP/1.1\r\nhost: gw\r\n",
        // An incomplete h2c preface: protocol detection is bounded too.
        b"PRI * HTTP/2.0\r\n",
        b"G",
    ];
    for head in partial_heads {
        let mut tcp = TcpStream::connect(h.gateway.listen_addr).await.unwrap();
        tcp.write_all(head).await.unwrap();
        let started = Instant::now();
        read_until_closed(&mut tcp).await;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "closed by the head limit, not the idle one"
        );
    }
    assert_eq!(h.fake.request_count(), 0);
    assert_eq!(h.get("/raas/v2/catalogs").await.status, 200);
}

#[tokio::test]
async fn a_later_request_head_left_unfinished_is_closed() {
    let h = Setup::new()
        .inbound("header_read_timeout", "1s")
        .inbound("idle_timeout", "60s")
        .start()
        .await;
    let mut tcp = TcpStream::connect(h.gateway.listen_addr).await.unwrap();
    tcp.write_all(b"GET /raas/v2/catalogs HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    // Keep-alive: the next head starts, and never ends.
    tcp.write_all(b"GET /raas/v2/catalogs HTTP/1.1\r\n")
        .await
        .unwrap();
    read_until_closed(&mut tcp).await;
    assert_eq!(
        h.fake.request_count(),
        1,
        "only the complete request is sent"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let h = Setup::new()
        .inbound("header_read_timeout", "60s")
        .inbound("idle_timeout", "1s")
        .start()
        .await;
    let mut tcp = TcpStream::connect(h.gateway.listen_addr).await.unwrap();
    tcp.write_all(b"GET /raas/v2/catalogs HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, then (the head limit being 60 s) only the idle limit closes it.
    let answer = read_until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn idle_h2c_connections_are_closed_after_idle_timeout() {
    let h = Setup::new()
        .inbound("header_read_timeout", "60s")
        .inbound("idle_timeout", "1s")
        .start()
        .await;
    let (mut h2, driver) = h2c::<Full<Bytes>>(&h).await;
    let request = Request::get(format!("http://{}/raas/v2/catalogs", h.gateway.listen_addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = h2.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    // GOAWAY, then the connection ends: the driver task finishes.
    tokio::time::timeout(PATIENCE, driver)
        .await
        .expect("the idle h2c connection was not closed")
        .unwrap();
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once() {
    let h = Setup::new()
        .inbound("max_connections", "3")
        .inbound("header_read_timeout", "60s")
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(h.gateway.listen_addr).await.unwrap();
        // A complete exchange proves the connection was accepted and counted.
        tcp.write_all(b"GET /raas/v2/catalogs HTTP/1.1\r\nhost: gw\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        tcp.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(tcp);
    }
    let mut over = TcpStream::connect(h.gateway.listen_addr).await.unwrap();
    let _ = over
        .write_all(b"GET /raas/v2/catalogs HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut over).await;
    assert!(answer.is_empty(), "served beyond the cap: {answer}");
    let metrics = h.admin_text("/metrics").await;
    assert!(
        metrics.contains("tango_gateway_connections_refused_total{listener=\"listen\"} "),
        "{metrics}"
    );
    // A freed slot serves again.
    drop(held.pop());
    let started = Instant::now();
    loop {
        let mut tcp = TcpStream::connect(h.gateway.listen_addr).await.unwrap();
        let _ = tcp
            .write_all(b"GET /raas/v2/catalogs HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
            .await;
        if read_until_closed(&mut tcp)
            .await
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the freed slot was never reused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU time (user + system) the process has used, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces) start after its `)`.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

async fn healthz(admin: std::net::SocketAddr) -> bool {
    let attempt = async {
        let mut tcp = TcpStream::connect(admin).await.ok()?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.ok()?;
        Some(answer.starts_with("HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[tokio::test]
async fn out_of_file_descriptors_no_accept_loop_spins_and_healthz_comes_back() {
    let staged = Setup::new()
        .log("json", "info")
        .inbound("header_read_timeout", "60s")
        // The hung attempts end after 3 s (and are not retried), freeing their descriptors.
        .upstream("timeout", "3s")
        .retry("max_attempts", "1")
        .stage_with(|_| {})
        .await;
    let gateway = Process::start_with_open_file_limit(&staged.config_file, 64).await;
    assert!(healthz(gateway.admin).await);
    // Every request hangs at the upstream: each holds an inbound and an upstream connection,
    // and many more connections wait unserved, until the process has no descriptor left.
    for _ in 0..200 {
        staged.fake.push_fault(Fault::Hang);
    }
    let mut callers = Vec::new();
    for _ in 0..120 {
        if let Ok(mut tcp) = TcpStream::connect(gateway.listen).await {
            let _ = tcp
                .write_all(b"GET /raas/v2/catalogs HTTP/1.1\r\nhost: gw\r\n\r\n")
                .await;
            callers.push(tcp);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_time(gateway.pid());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_time(gateway.pid()) - before;
    assert!(
        used < Duration::from_millis(1500),
        "the gateway used {used:?} of CPU in 3 s while out of descriptors: a loop spins"
    );
    // Descriptors free up: the callers leave and the upstream lets go.
    drop(callers);
    staged.fake.clear();
    let started = Instant::now();
    while !healthz(gateway.admin).await {
        assert!(
            started.elapsed() < PATIENCE,
            "/healthz did not answer once descriptors were free: {:#?}",
            gateway.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warnings = gateway
        .output()
        .iter()
        .filter(|line| line.contains("backing off") || line.contains("connection limit"))
        .count();
    assert!(
        warnings <= 10,
        "accept failures are logged at most once a second"
    );
}
