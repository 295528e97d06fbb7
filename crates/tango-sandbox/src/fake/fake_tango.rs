//! The fake's TLS listener: accepts connections, runs the mTLS handshake, serves HTTP/1.1 and h2.
//!
//! Invariant: no request reaches the handler without a completed handshake (with a trusted client
//! certificate unless optional), and every connection task ends when the fake shuts down or is
//! dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::handler::{self, ConnInfo, State};
use super::oauth::AuthServer;
use super::{ConnectionFault, FakeTangoOptions, Fault, RecordedRequest, TokenFault, TOKEN_PATH};

/// A handshake slower than this is counted as failed (a client that connects and says nothing).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by the listener, every connection and the [`FakeTango`] handle.
pub(super) struct Shared {
    state: Mutex<State>,
    pub(super) connections: AtomicUsize,
    pub(super) failed_handshakes: AtomicUsize,
    /// The Basic credentials accepted (several during a rotation); `None`: no Basic check.
    pub(super) basic_auth: Option<Mutex<Vec<super::BasicCredentials>>>,
    /// A port-appending proxy sits in front of the ALB (see [`FakeTango::set_port_appending_proxy`]).
    pub(super) port_appending_proxy: AtomicBool,
    /// A fault for the next new connections and how many more it applies to.
    pub(super) connection_fault: Mutex<Option<(ConnectionFault, usize)>>,
    /// Seconds the fake's clock is ahead of the host's (negative: behind); see
    /// [`FakeTango::set_clock_offset`].
    clock_offset: AtomicI64,
    pub(super) shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// The lock is never held across an await; a poisoned lock still holds usable records.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the connection fault for a new connection, if one is pending.
    fn take_connection_fault(&self) -> Option<ConnectionFault> {
        let mut pending = self
            .connection_fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (fault, remaining) = pending.as_mut()?;
        let fault = *fault;
        *remaining -= 1;
        if *remaining == 0 {
            *pending = None;
        }
        Some(fault)
    }

    /// The fake's clock: the host's moved by the offset set with
    /// [`FakeTango::set_clock_offset`]. What its `Date` headers say, and what DPoP proofs'
    /// `iat` and tokens' expiry are judged against.
    pub(super) fn now(&self) -> SystemTime {
        let offset = self.clock_offset.load(Ordering::Relaxed);
        let magnitude = Duration::from_secs(offset.unsigned_abs());
        let host = SystemTime::now();
        let moved = if offset >= 0 {
            host.checked_add(magnitude)
        } else {
            host.checked_sub(magnitude)
        };
        moved.unwrap_or(host)
    }

    /// Completes when the fake shuts down (at once if it already has).
    pub(super) async fn shut_down(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, which only happens once the fake is dropped.
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// A running fake Tango on `127.0.0.1:<port>`; shuts down when dropped.
pub struct FakeTango {
    addr: SocketAddr,
    pub(super) shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    pub(super) acceptor: TlsAcceptor,
    /// The accept loop; `None` while the listener is down (see `chaos`).
    pub(super) accept_task: Mutex<Option<JoinHandle<()>>>,
    /// Bumped to make the accept loop end every open connection.
    pub(super) drop_connections: watch::Sender<u64>,
}

impl FakeTango {
    /// Binds `127.0.0.1:0` and starts serving. Fails on a bad certificate, key or client CA.
    pub async fn start(options: FakeTangoOptions) -> io::Result<FakeTango> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&options)?));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = State {
            oauth: options.oauth.map(AuthServer::new).transpose()?,
            ..State::default()
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            connections: AtomicUsize::new(0),
            failed_handshakes: AtomicUsize::new(0),
            basic_auth: options.basic_auth.map(|c| Mutex::new(vec![c])),
            port_appending_proxy: AtomicBool::new(false),
            connection_fault: Mutex::new(None),
            clock_offset: AtomicI64::new(0),
            shutdown: shutdown_rx,
        });
        let (drop_connections, drops) = watch::channel(0);
        let accept_task = tokio::spawn(accept_loop(
            listener,
            acceptor.clone(),
            shared.clone(),
            drops,
        ));
        Ok(FakeTango {
            addr,
            shared,
            shutdown,
            acceptor,
            accept_task: Mutex::new(Some(accept_task)),
            drop_connections,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://localhost:PORT` (the dev server certificate covers `localhost`).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().push_fault(fault);
    }

    pub fn received(&self) -> Vec<RecordedRequest> {
        self.shared.lock().received.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().received.len()
    }

    /// Forgets recorded requests and pending faults, token faults included (orders, tokens
    /// and counters are kept).
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.received.clear();
        state.faults.clear();
        if let Some(server) = state.oauth.as_mut() {
            server.clear_faults();
        }
    }

    pub fn orders_created(&self) -> usize {
        self.shared.lock().raas.orders_created()
    }

    /// `{url}/oauth/token`, the token endpoint (served only when OAuth is on).
    pub fn token_endpoint_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.url())
    }

    /// Requests that reached `/oauth/token` (after the ALB rule), whatever the outcome.
    pub fn token_requests(&self) -> usize {
        self.with_oauth(|server| server.token_requests())
            .unwrap_or(0)
    }

    pub fn tokens_issued(&self) -> usize {
        self.with_oauth(|server| server.tokens_issued())
            .unwrap_or(0)
    }

    /// Queues a fault for the next token requests (no effect without OAuth). API requests never
    /// take it.
    pub fn push_token_fault(&self, fault: TokenFault) {
        self.with_oauth(|server| server.push_fault(fault));
    }

    /// While down, every token request gets `503 {"error":"temporarily_unavailable"}`.
    pub fn set_token_endpoint_down(&self, down: bool) {
        self.with_oauth(|server| server.set_down(down));
    }

    /// While on, the fake behaves as if an intermediary between the client and the ALB
    /// appended the client's `ip:port` to `X-Forwarded-For` (what some egress proxies do): the
    /// ALB rule then refuses every request, token requests included, with its `403` page.
    /// Recorded requests show the header as the ALB saw it.
    pub fn set_port_appending_proxy(&self, on: bool) {
        self.shared
            .port_appending_proxy
            .store(on, Ordering::Relaxed);
    }

    /// Sets the fake's clock `seconds` ahead of the host's (negative: behind), as a Tango
    /// whose clock disagrees with the gateway's: its `Date` headers and the time it judges
    /// DPoP proofs (`iat` within ±60 s) and token expiry by move together.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.shared.clock_offset.store(seconds, Ordering::Relaxed);
    }

    /// Every token issued so far is refused by the API from now on (`401 invalid_token`).
    pub fn revoke_tokens(&self) {
        self.with_oauth(AuthServer::revoke);
    }

    /// While on, the API answers `401 invalid_token` to every request, tokens issued later
    /// included (a client disabled at Tango); token requests are still served and counted.
    pub fn set_refuse_all_tokens(&self, on: bool) {
        self.with_oauth(|server| server.set_refuse_all(on));
    }

    /// While on, the token endpoint answers `token_type: Bearer` with an unbound token even
    /// when DPoP is expected (a misconfigured authorization server), like
    /// [`OAuthServerOptions::bearer_only`](crate::fake::OAuthServerOptions::bearer_only)
    /// but switchable while the gateway runs.
    pub fn set_bearer_only(&self, on: bool) {
        self.with_oauth(|server| server.set_bearer_only(on));
    }

    /// A new server nonce for both endpoints; the old one is refused from now on.
    pub fn rotate_nonce(&self) {
        self.with_oauth(AuthServer::rotate_nonce);
    }

    /// The current server nonce (`None` without OAuth).
    pub fn current_nonce(&self) -> Option<String> {
        self.with_oauth(|server| server.nonce().to_owned())
    }

    /// `401`s the API side answered, for any reason (nonce challenges and Basic included).
    pub fn api_auth_failures(&self) -> usize {
        self.shared.lock().api_auth_failures
    }

    /// Why the token endpoint or the API last refused credentials, for test diagnostics
    /// (e.g. `"api: DPoP proof: the proof's htu does not match the request URI"`). Never holds
    /// a token, a proof or a secret.
    pub fn last_proof_error(&self) -> Option<String> {
        self.with_oauth(|server| server.last_rejection()).flatten()
    }

    fn with_oauth<T>(&self, f: impl FnOnce(&mut AuthServer) -> T) -> Option<T> {
        self.shared.lock().oauth.as_mut().map(f)
    }

    pub fn connections_accepted(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    pub fn failed_handshakes(&self) -> usize {
        self.shared.failed_handshakes.load(Ordering::Relaxed)
    }

    /// Stops accepting and ends every connection, hung or stalled ones included. Idempotent;
    /// needs no runtime, so it is safe from `Drop`.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        let task = self
            .accept_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.abort();
        }
    }
}

impl Drop for FakeTango {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for FakeTango {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTango")
            .field("addr", &self.addr)
            .finish()
    }
}

fn server_config(options: &FakeTangoOptions) -> io::Result<ServerConfig> {
    let invalid =
        |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    // An explicit provider, so the fake works whether or not the caller installed a default.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in &options.client_ca {
        roots.add(ca.clone()).map_err(|e| invalid(&e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = if options.require_client_cert {
        verifier.build()
    } else {
        verifier.allow_unauthenticated().build()
    }
    .map_err(|e| invalid(&e))?;
    let versions: &[&rustls::SupportedProtocolVersion] = if options.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| invalid(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(options.server_chain.clone(), options.server_key.clone_key())
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut drops: watch::Receiver<u64>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(serve(tcp, peer, acceptor.clone(), shared.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            // Told to end every open connection (an error: the fake is being dropped).
            Ok(()) = drops.changed() => connections.abort_all(),
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(tcp: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    match shared.take_connection_fault() {
        // Dropping the stream closes it before a byte of the handshake is answered.
        Some(ConnectionFault::CloseOnAccept) => return,
        Some(ConnectionFault::HandshakeFailure) => {
            super::chaos::refuse_handshake(tcp).await;
            shared.failed_handshakes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        None => {}
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(_)) | Err(_) => {
            shared.failed_handshakes.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let info = Arc::new(ConnInfo {
        peer,
        client_cn: tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| common_name(leaf)),
    });
    let service = service_fn(move |request| handler::handle(shared.clone(), info.clone(), request));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    // Errors here are client disconnects or our own ResetAfterRead fault: nothing to report.
    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
}

/// The subject CN of a DER certificate, if it parses and has one.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
