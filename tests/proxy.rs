//! `upstream.proxy` and `oauth2.proxy` (§13): the gateway reaches Tango through an `http://`
//! forward proxy with `CONNECT`, TLS and the client certificate end to end through the
//! tunnel, the proxy's credentials on the CONNECT only; the proxy's own failures are
//! `502 gateway.upstream_unreachable` (nothing was sent to Tango, so they may be retried).
//!
//! The proxy is written here: it reads the CONNECT head, checks `Proxy-Authorization`, dials
//! the target and relays bytes, recording what it saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use support::{OAuth, Setup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PROXY_USER: &str = "egress";
const PROXY_PASSWORD: &str = "proxy-pass-do-not-log-4e1";

/// What the proxy saw of one CONNECT.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    authorization: Option<String>,
}

struct Proxy {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    /// A CONNECT proxy; with `require_auth`, a CONNECT without the right credentials is
    /// answered 407.
    async fn start(require_auth: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let _ = tunnel(client, require_auth, record).await;
                });
            }
        });
        Proxy { addr, seen }
    }

    fn url(&self) -> String {
        format!("\"http://{}\"", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn expected_authorization() -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{PROXY_PASSWORD}"));
    format!("Basic {encoded}")
}

async fn tunnel(
    mut client: TcpStream,
    require_auth: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let target = request_line
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.strip_suffix(" HTTP/1.1"))
        .unwrap_or_default()
        .to_owned();
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    seen.lock().unwrap().push(Seen {
        target: target.clone(),
        authorization: authorization.clone(),
    });
    if require_auth && authorization.as_deref() != Some(expected_authorization().as_str()) {
        client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"egress\"\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    }
    let mut upstream = TcpStream::connect(&target).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[tokio::test]
async fn calls_reach_tango_through_the_tunnel_with_the_client_certificate() {
    let proxy = Proxy::start(true).await;
    let h = Setup::new()
        .upstream("proxy", &proxy.url())
        .upstream("proxy_auth", &format!("\"{PROXY_USER}:{PROXY_PASSWORD}\""))
        .start()
        .await;
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // The fake requires a client certificate: the handshake ran end to end in the tunnel.
    let request = h.only_request();
    assert_eq!(
        request.client_cn.as_deref(),
        Some(tango_sandbox::pki::DEV_CLIENT_CN)
    );
    // The proxy's credentials went on the CONNECT only, never to Tango.
    assert!(request.header("proxy-authorization").is_none());
    let seen = proxy.seen();
    assert!(!seen.is_empty());
    assert_eq!(seen[0].target, h.fake.url().trim_start_matches("https://"));
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(expected_authorization().as_str())
    );
}

#[tokio::test]
async fn the_token_endpoint_is_reached_through_the_routes_proxy() {
    let proxy = Proxy::start(true).await;
    let h = Setup::new()
        .oauth(OAuth::default())
        .upstream("proxy", &proxy.url())
        .upstream("proxy_auth", &format!("\"{PROXY_USER}:{PROXY_PASSWORD}\""))
        .start()
        .await;
    h.wait_ready().await;
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(h.fake.token_requests() >= 1);
    // Every connection to the fake, the token endpoint's included, came through the proxy.
    let tunnels = proxy.seen().len();
    assert!(
        tunnels >= 2 && tunnels == h.fake.connections_accepted(),
        "{tunnels} tunnels, {} connections at the fake",
        h.fake.connections_accepted()
    );
}

#[tokio::test]
async fn a_proxy_refusing_the_credentials_is_a_502_and_nothing_reaches_tango() {
    let proxy = Proxy::start(true).await;
    let h = Setup::new()
        .upstream("proxy", &proxy.url())
        .upstream("proxy_auth", "\"egress:wrong\"")
        .start()
        .await;
    let answer = h.get("/raas/v2/catalogs").await;
    answer.assert_gateway_error(502, "gateway.upstream_unreachable");
    assert!(
        !String::from_utf8_lossy(&answer.body).contains("wrong"),
        "{:?}",
        answer.body
    );
    assert_eq!(h.fake.connections_accepted(), 0);
    assert!(!proxy.seen().is_empty());
}

#[tokio::test]
async fn a_proxy_that_is_down_is_a_502() {
    // A port that was bound and released: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let h = Setup::new()
        .upstream("proxy", &format!("\"http://{addr}\""))
        .start()
        .await;
    let answer = h.get("/raas/v2/catalogs").await;
    answer.assert_gateway_error(502, "gateway.upstream_unreachable");
    assert_eq!(h.fake.connections_accepted(), 0);
}

/// Doctor through the proxy: DNS and TCP are the proxy's, then the tunnel, then the rest.
async fn doctor_steps(h: &support::Harness) -> Vec<(String, String, Option<String>)> {
    use std::collections::HashMap;
    use tango_gateway::doctor;
    let config = tango_gateway::config::load_with_env(&h.config_file, &HashMap::new()).unwrap();
    let report = doctor::run(&config, &doctor::Options::default())
        .await
        .unwrap();
    report.routes[0]
        .steps
        .iter()
        .map(|s| {
            (
                s.step.name().to_owned(),
                format!("{:?}", s.outcome),
                s.hint.as_ref().map(|h| h.to_string()),
            )
        })
        .collect()
}

#[tokio::test]
async fn doctor_reports_the_proxy_tunnel_step() {
    let proxy = Proxy::start(true).await;
    let h = Setup::new()
        .upstream("proxy", &proxy.url())
        .upstream("proxy_auth", &format!("\"{PROXY_USER}:{PROXY_PASSWORD}\""))
        .start()
        .await;
    let steps = doctor_steps(&h).await;
    let names: Vec<&str> = steps.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "DNS",
            "TCP",
            "proxy tunnel",
            "TLS handshake",
            "client certificate",
            "token fetch",
            "authenticated call"
        ]
    );
    assert!(
        steps.iter().all(|(_, outcome, _)| outcome != "Fail"),
        "{steps:?}"
    );

    let refused = Setup::new()
        .upstream("proxy", &proxy.url())
        .upstream("proxy_auth", "\"egress:wrong\"")
        .start()
        .await;
    let steps = doctor_steps(&refused).await;
    let tunnel = steps.iter().find(|(n, _, _)| n == "proxy tunnel").unwrap();
    assert_eq!(tunnel.1, "Fail", "{steps:?}");
    assert!(
        tunnel
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("proxy_auth"),
        "{steps:?}"
    );
}
