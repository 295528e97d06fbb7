//! Opens one connection to a route's upstream: DNS, TCP, verified TLS, then the HTTP
//! handshake of the protocol ALPN picked (h2 or HTTP/1.1).
//!
//! Invariant: the peer is always verified against the route's trust anchors for the URL's
//! host; plain `http` only when the upstream says `allow_insecure_upstream`; anything that
//! fails before a request could have been written is a [`ConnectError`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::body::Payload;
use crate::config::UpstreamConfig;
use crate::error::BoxError;

/// Probes a silent peer after this long without traffic (as the legacy connector did).
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// While requests are open on an h2 connection, a PING every this long...
const H2_PING_INTERVAL: Duration = Duration::from_secs(10);
/// ...answered within this long, or the connection is closed.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(5);

const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A failure before the request could have reached the upstream: safe to retry whatever
/// the method. TLS failures are told apart by their cause (a `rustls::Error` inside the
/// `io::Error`), which is why the cause is kept as `source()`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("plain http to the upstream is not allowed (allow_insecure_upstream is off)")]
    InsecureRefused,
    #[error("the upstream host did not resolve")]
    Resolve(#[source] io::Error),
    #[error("the upstream host resolved to no address")]
    NoAddress,
    #[error("could not connect to the upstream")]
    Tcp(#[source] io::Error),
    #[error("connecting to the upstream timed out")]
    Timeout,
    #[error("the TLS handshake with the upstream failed")]
    TlsHandshake(#[source] io::Error),
    #[error("the TLS handshake with the upstream timed out")]
    TlsTimeout,
    #[error("the new upstream connection closed before it took the request")]
    ClosedBeforeSend(#[source] BoxError),
    #[error("the proxy {proxy} refused the tunnel ({status})")]
    ProxyRefused { proxy: String, status: String },
    #[error("the proxy {proxy} did not open the tunnel")]
    ProxyFailed {
        proxy: String,
        #[source]
        source: io::Error,
    },
}

/// How the bytes travel: verified TLS, plain TCP (allowed by configuration) or not at all.
enum Transport {
    Tls {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
    Plain,
    /// Plain `http` without `allow_insecure_upstream` (refused at load; kept as a guard).
    Refused,
}

/// One upstream's fixed facts, shared by every worker's pool.
pub struct Destination {
    /// DNS name or IP literal (IPv6 without brackets).
    host: Box<str>,
    port: u16,
    transport: Transport,
    connect_timeout: Duration,
    scheme: Scheme,
    authority: Authority,
    /// `Host` for HTTP/1.1: the URL's host, with its port unless it is the scheme's default
    /// (what the previous client sent).
    host_header: HeaderValue,
    h2: http2::Builder<TokioExecutor>,
    /// `upstream.proxy`: the TCP connection goes to it, then a CONNECT tunnel to the
    /// upstream carries TLS end to end.
    proxy: Option<Proxy>,
}

/// A forward proxy as the connector uses it.
struct Proxy {
    host: Box<str>,
    port: u16,
    /// `Basic …` for `Proxy-Authorization`, marked sensitive.
    authorization: Option<HeaderValue>,
}

/// A connection ready for its first request, with its task running on this runtime.
pub enum Connection {
    Http1(http1::SendRequest<Payload>),
    Http2(http2::SendRequest<Payload>),
}

impl Destination {
    /// `tls` is the upstream's client configuration with its ALPN list (shared by every
    /// worker, so its session cache is too).
    pub fn new(upstream: &UpstreamConfig, tls: Arc<ClientConfig>) -> Self {
        let url = &upstream.url;
        let transport = if url.is_https() {
            Transport::Tls {
                connector: TlsConnector::from(tls),
                server_name: url.server_name().clone(),
            }
        } else if upstream.allow_insecure_upstream {
            Transport::Plain
        } else {
            Transport::Refused
        };
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        // The h2 connection is shared by all of a worker's requests: a peer gone silent
        // (a replaced NAT or load-balancer node) must be noticed by PING, not after the
        // kernel gives up on the socket minutes later, or every attempt lands on it.
        h2.timer(TokioTimer::new())
            .keep_alive_interval(Some(H2_PING_INTERVAL))
            .keep_alive_timeout(H2_PING_TIMEOUT);
        Destination {
            host: url.host().into(),
            port: url.port(),
            transport,
            connect_timeout: upstream.connect_timeout,
            host_header: url.host_header().clone(),
            scheme: url.scheme().clone(),
            authority: url.authority().clone(),
            h2,
            proxy: upstream.proxy.as_ref().and_then(Proxy::new),
        }
    }

    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// `path_and_query` on this upstream, absolute (what h2 needs for `:scheme` and
    /// `:authority`).
    pub fn absolute(&self, origin: &Uri) -> Option<Uri> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(origin.path_and_query()?.clone())
            .build()
            .ok()
    }

    /// A new connection, its task spawned on the current runtime. Errors are a
    /// [`ConnectError`], or the `hyper::Error` of a failed HTTP handshake, which, as with
    /// hyper-util's client, does not count as a connect failure (for h2 the connection
    /// preface has already been written to the upstream).
    pub async fn connect(&self) -> Result<Connection, BoxError> {
        // One budget for resolution, TCP and the TLS handshake: none of them has sent a
        // request yet, so a stall in any of them is a connect failure (retried whatever the
        // method), not an attempt timeout. A timeout too long to represent is no limit.
        let deadline = Instant::now().checked_add(self.connect_timeout);
        match &self.transport {
            Transport::Refused => Err(ConnectError::InsecureRefused.into()),
            Transport::Plain => {
                let tcp = self.transport_stream(deadline).await?;
                start_http1(tcp).await
            }
            Transport::Tls {
                connector,
                server_name,
            } => {
                let tcp = self.transport_stream(deadline).await?;
                let handshake = connector.connect(server_name.clone(), tcp);
                let tls = tokio::time::timeout(self.left_until(deadline), handshake)
                    .await
                    .map_err(|_| ConnectError::TlsTimeout)?
                    .map_err(ConnectError::TlsHandshake)?;
                if tls.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
                    start_http2(&self.h2, tls).await
                } else {
                    start_http1(tls).await
                }
            }
        }
    }

    /// Time left until `deadline` (`None`: no limit, the whole `connect_timeout`).
    fn left_until(&self, deadline: Option<Instant>) -> Duration {
        deadline.map_or(self.connect_timeout, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    /// TCP to the upstream, or through the proxy's CONNECT tunnel to it.
    async fn transport_stream(&self, deadline: Option<Instant>) -> Result<TcpStream, ConnectError> {
        let Some(proxy) = &self.proxy else {
            return self.tcp(&self.host, self.port, deadline).await;
        };
        let mut stream = self.tcp(&proxy.host, proxy.port, deadline).await?;
        let tunnel = open_tunnel(
            &mut stream,
            &self.host,
            self.port,
            proxy.authorization.as_ref(),
        );
        match tokio::time::timeout(self.left_until(deadline), tunnel).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(err)) => {
                let err = match err {
                    TunnelError::Refused(status) => ConnectError::ProxyRefused {
                        proxy: proxy.address(),
                        status,
                    },
                    TunnelError::Io(source) => ConnectError::ProxyFailed {
                        proxy: proxy.address(),
                        source,
                    },
                };
                tracing::warn!(error = %err, upstream = %self.authority, "the egress proxy did not open a tunnel to the upstream");
                Err(err)
            }
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    /// Resolves and connects, trying the addresses in order; resolution and all attempts
    /// together end by `deadline`, its time shared out evenly among the addresses left, so
    /// one black-holed address does not use up the whole budget.
    async fn tcp(
        &self,
        host: &str,
        port: u16,
        deadline: Option<Instant>,
    ) -> Result<TcpStream, ConnectError> {
        let left_until = |deadline| self.left_until(deadline);
        let resolve = tokio::net::lookup_host((host, port));
        let addresses: Vec<SocketAddr> = tokio::time::timeout(left_until(deadline), resolve)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Resolve)?
            .collect();
        let mut last = ConnectError::NoAddress;
        for (index, address) in addresses.iter().enumerate() {
            let addresses_left = u32::try_from(addresses.len() - index).unwrap_or(u32::MAX);
            let share = left_until(deadline) / addresses_left;
            last = match tokio::time::timeout(share, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => return Ok(configure(stream)),
                Ok(Err(err)) => ConnectError::Tcp(err),
                Err(_) => ConnectError::Timeout,
            };
        }
        Err(last)
    }
}

impl Proxy {
    fn new(config: &crate::config::ProxyConfig) -> Option<Self> {
        let authority = config.url.authority()?;
        let authorization = config.auth.as_ref().and_then(|auth| {
            let value = crate::config::proxy_authorization(auth);
            let mut value = HeaderValue::from_str(value.expose_secret()).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Some(Proxy {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .into(),
            port: authority.port_u16().unwrap_or(80),
            authorization,
        })
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why a CONNECT tunnel did not open.
pub(crate) enum TunnelError {
    /// The proxy answered with a non-2xx status line (its text, e.g. `407 Proxy
    /// Authentication Required`, shortened).
    Refused(String),
    Io(io::Error),
}

/// The longest CONNECT answer head read: a proxy's answer is a status line and a few headers.
const MAX_TUNNEL_HEAD: usize = 8 * 1024;

/// Opens a CONNECT tunnel to `host:port` over `stream` (RFC 9110 §9.3.6).
///
/// Written here rather than with hyper-util's `Tunnel` connector: the gateway's pool dials
/// its own TCP connections (addresses tried in turn within one `connect_timeout`), and the
/// exchange is one request head out and one response head in.
pub(crate) async fn open_tunnel(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
    authorization: Option<&HeaderValue>,
) -> Result<(), TunnelError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(value) = authorization {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    stream.write_all(&head).await.map_err(TunnelError::Io)?;
    // Read up to the end of the answer's head. Nothing may follow it: TLS starts with our
    // ClientHello, so the upstream sends nothing until we do.
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let end = loop {
        let read = stream.read(&mut chunk).await.map_err(TunnelError::Io)?;
        if read == 0 {
            return Err(TunnelError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the proxy closed the connection",
            )));
        }
        answer.extend_from_slice(&chunk[..read]);
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if answer.len() > MAX_TUNNEL_HEAD {
            return Err(TunnelError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "the proxy's answer head is too long",
            )));
        }
    };
    let status_line = answer
        .split(|&b| b == b'\n')
        .next()
        .map(|line| String::from_utf8_lossy(line).trim().to_owned())
        .unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || !code.starts_with('2') || code.len() != 3 {
        let shown: String = status_line
            .chars()
            .filter(|c| !c.is_control())
            .take(80)
            .collect();
        return Err(TunnelError::Refused(shown));
    }
    if answer.len() > end {
        return Err(TunnelError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "the proxy sent data before the tunnel was used",
        )));
    }
    Ok(())
}

async fn start_http1<T>(io: T) -> Result<Connection, BoxError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "upstream connection ended with an error");
        }
    });
    Ok(Connection::Http1(send))
}

async fn start_http2<T>(
    builder: &http2::Builder<TokioExecutor>,
    io: T,
) -> Result<Connection, BoxError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, connection) = builder.handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "upstream h2 connection ended with an error");
        }
    });
    // A connection closed during the handshake is reported now, not on the first request.
    send.ready().await?;
    Ok(Connection::Http2(send))
}

/// Nodelay (requests are small and latency-bound) and keep-alive probes; a socket that
/// refuses either still works, so failures are only logged.
fn configure(stream: TcpStream) -> TcpStream {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "could not set TCP_NODELAY on an upstream connection");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    if let Err(err) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %err, "could not set TCP keep-alive on an upstream connection");
    }
    stream
}

/// The ALPN list offered to upstreams: h2 first, HTTP/1.1 as the fall-back.
pub fn alpn_protocols() -> Vec<Vec<u8>> {
    vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
}
