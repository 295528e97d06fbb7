//! Steps 1 and 2: resolve the upstream host, then open a TCP connection to the first address
//! that takes one within `connect_timeout` (the connection the TLS step then uses).
//!
//! Invariant: every wait is bounded; every address tried is reported, in the order tried.

use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;
use tokio::net::TcpStream;
// The step's own timeout is a tokio timer: its report measures on the same clock.
use tokio::time::Instant;

use super::hints::Hint;
use super::report::{Step, StepResult};

/// A resolver that has not answered by then will not; say so instead of hanging.
const DNS_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a route's requests go: host, port, and whether TLS is spoken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Endpoint {
    /// From a validated upstream URL (`https`, or `http` with `allow_insecure_upstream`).
    pub fn of(url: &Uri) -> Option<Endpoint> {
        let tls = url.scheme_str() != Some("http");
        let host = url.host()?.trim_start_matches('[').trim_end_matches(']');
        Some(Endpoint {
            host: host.to_owned(),
            port: url.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            tls,
        })
    }
}

/// Step 1: the host's addresses, in the resolver's order.
pub async fn resolve(endpoint: &Endpoint) -> (StepResult, Option<Vec<SocketAddr>>) {
    let lookup = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port));
    let failed = |why: String| {
        let detail = format!("cannot resolve {}: {why}", endpoint.host);
        (StepResult::fail(Step::Dns, detail, Hint::DnsFailed), None)
    };
    match tokio::time::timeout(DNS_TIMEOUT, lookup).await {
        Err(_) => failed(format!("no answer within {}", seconds(DNS_TIMEOUT))),
        Ok(Err(err)) => failed(err.to_string()),
        Ok(Ok(found)) => {
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for addr in found {
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
            if addrs.is_empty() {
                return failed("no address".to_owned());
            }
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            let detail = format!("{} → {}", endpoint.host, list.join(", "));
            (StepResult::pass(Step::Dns, detail), Some(addrs))
        }
    }
}

/// Step 2: the first address that accepts a connection within `connect_timeout`.
pub async fn connect(
    addrs: &[SocketAddr],
    connect_timeout: Duration,
) -> (StepResult, Option<TcpStream>) {
    let mut refused = Vec::new();
    for addr in addrs {
        let started = Instant::now();
        let why = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let detail = format!(
                    "connected to {addr} in {} ms",
                    started.elapsed().as_millis()
                );
                let result = StepResult::pass(Step::Tcp, detail).with_notes(refused);
                return (result, Some(stream));
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {}", seconds(connect_timeout)),
        };
        refused.push(format!("{addr}: {why}"));
    }
    let detail = match refused.as_slice() {
        [only] => only.clone(),
        _ => format!("none of {} addresses accepted a connection", addrs.len()),
    };
    let notes = if refused.len() > 1 {
        refused
    } else {
        Vec::new()
    };
    let result = StepResult::fail(Step::Tcp, detail, Hint::TcpFailed).with_notes(notes);
    (result, None)
}

/// With `upstream.proxy`: the CONNECT tunnel through the proxy to the upstream, on the
/// connection the TCP step made to the proxy.
pub async fn tunnel(
    mut stream: TcpStream,
    upstream: &Endpoint,
    proxy: &crate::config::ProxyConfig,
    connect_timeout: Duration,
) -> (StepResult, Option<TcpStream>) {
    use crate::upstream::connect::{open_tunnel, TunnelError};
    use secrecy::ExposeSecret;
    let authorization = proxy.auth.as_ref().and_then(|auth| {
        http::HeaderValue::from_str(crate::config::proxy_authorization(auth).expose_secret()).ok()
    });
    let opening = open_tunnel(
        &mut stream,
        &upstream.host,
        upstream.port,
        authorization.as_ref(),
    );
    let target = format!("{}:{}", upstream.host, upstream.port);
    match tokio::time::timeout(connect_timeout, opening).await {
        Ok(Ok(())) => (
            StepResult::pass(
                Step::Proxy,
                format!("{} opened a tunnel to {target}", proxy.address()),
            ),
            Some(stream),
        ),
        Ok(Err(TunnelError::Refused(status))) => {
            let hint = if status.contains(" 407") {
                Hint::ProxyAuth
            } else {
                Hint::ProxyTunnel
            };
            (
                StepResult::fail(
                    Step::Proxy,
                    format!("{} answered {status}", proxy.address()),
                    hint,
                ),
                None,
            )
        }
        Ok(Err(TunnelError::Io(err))) => (
            StepResult::fail(
                Step::Proxy,
                format!("{}: {err}", proxy.address()),
                Hint::ProxyTunnel,
            ),
            None,
        ),
        Err(_) => (
            StepResult::fail(
                Step::Proxy,
                format!(
                    "{} opened no tunnel within {}",
                    proxy.address(),
                    seconds(connect_timeout)
                ),
                Hint::ProxyTunnel,
            ),
            None,
        ),
    }
}

/// `5s`, `250ms`: how durations read elsewhere in the configuration.
pub fn seconds(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::doctor::report::Outcome;

    #[test]
    fn endpoint_of_a_url() {
        let of = |url: &str| Endpoint::of(&url.parse().unwrap()).unwrap();
        assert_eq!(
            of("https://integration-api.tangocard.com"),
            Endpoint {
                host: "integration-api.tangocard.com".to_owned(),
                port: 443,
                tls: true
            }
        );
        assert_eq!(of("https://[::1]:8443/base").host, "::1");
        assert_eq!(of("https://[::1]:8443/base").port, 8443);
        assert!(!of("http://localhost").tls);
        assert_eq!(of("http://localhost").port, 80);
    }

    #[tokio::test]
    async fn an_ip_literal_resolves_to_itself() {
        let endpoint = Endpoint::of(&"https://127.0.0.1:1".parse().unwrap()).unwrap();
        let (result, addrs) = resolve(&endpoint).await;
        assert_eq!(result.outcome, Outcome::Pass);
        assert_eq!(addrs.unwrap(), ["127.0.0.1:1".parse().unwrap()]);
    }

    #[tokio::test]
    async fn a_closed_port_fails_with_the_tcp_hint() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let (result, stream) = connect(&[addr], Duration::from_secs(2)).await;
        assert!(stream.is_none());
        assert_eq!(result.outcome, Outcome::Fail);
        assert_eq!(result.hint, Some(Hint::TcpFailed));
        assert!(result.detail.starts_with(&addr.to_string()), "{result:?}");
    }
}
