//! The running gateway: inbound and admin listeners started from one validated `Config`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, Readiness};
use crate::config::Config;
use crate::inbound::accept::{effective_max_connections, Acceptor, ConnectionLimit};
use crate::inbound::connection::ConnectionLimits;
use crate::inbound::listener;
use crate::inbound::workers::{ServeSettings, Workers};
use crate::metrics::metrics;
use crate::reload::{self, Generation, Live, LiveService, ReloadError, ReloadHandle};
use crate::rt;
use crate::stack::{self, BuildError, ProcessWide};
use crate::upstream::tls;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot start the serving worker threads: {0}")]
    Workers(std::io::Error),
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started gateway. Dropping it does not stop it; call `shutdown`.
pub struct Running {
    /// Where the inbound listener is bound (useful with port 0).
    pub listen_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    readiness: Arc<Readiness>,
    live: Arc<Live>,
    reloads: ReloadHandle,
    stop_reloader: watch::Sender<bool>,
    stop_inbound: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    reloader: JoinHandle<()>,
    inbound: JoinHandle<()>,
    admin: JoinHandle<()>,
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}

/// Builds the stack, starts both listeners and the reloader.
pub async fn start(config: Config) -> Result<Running, StartError> {
    tls::provider();
    let config = Arc::new(config);
    // The worker count and the concurrency limit outlive reloads: every generation's routes
    // share them.
    let process = ProcessWide::new(&config, rt::default_count());
    let routing = stack::build_routing(&config, None, &process)?;
    // The first token of each credential is fetched now; /readyz waits for it.
    let live = Arc::new(Live::new(Generation::start(1, config.clone(), routing)));
    metrics().set_client_certs(&config);
    metrics().config_generation.set(1);
    // The front (limits, logging, error mapping) stays; what is behind it is reloadable.
    let service = stack::front(LiveService::new(live.clone()));
    let settings = ServeSettings {
        limits: ConnectionLimits {
            header_read_timeout: config.inbound.header_read_timeout,
            idle_timeout: config.inbound.idle_timeout,
        },
        http2_max_concurrent_streams: config.inbound.http2_max_concurrent_streams,
        shutdown_grace: config.shutdown_grace,
    };
    let workers =
        Workers::start(process.workers, &service, settings).map_err(StartError::Workers)?;
    let inbound_listener = bind("listen", config.listen).await?;
    let admin_listener = bind("admin.listen", config.admin.listen).await?;
    let listen_addr = inbound_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            key: "listen",
            addr: config.listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            key: "admin.listen",
            addr: config.admin.listen,
            source,
        })?;
    let readiness = Arc::new(Readiness::new(live.clone()));
    // Under systemd (`run` only): READY=1 the first time `/readyz` would answer 200.
    let ready = readiness.clone();
    crate::systemd::ready_when(move || ready.reasons(std::time::SystemTime::now()).is_empty());
    let (stop_reloader, reloader_stopped) = watch::channel(false);
    let (reloads, reloader) =
        reload::spawn(live.clone(), config.clone(), process, reloader_stopped);
    let (stop_inbound, inbound_stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);
    let inbound_acceptor = Acceptor::new(
        inbound_listener,
        ConnectionLimit::new(effective_max_connections(
            "inbound.max_connections",
            config.inbound.max_connections,
        )),
        "listen",
    );
    let admin_acceptor = Acceptor::new(
        admin_listener,
        ConnectionLimit::new(admin::ADMIN_MAX_CONNECTIONS),
        "admin.listen",
    );
    let inbound = tokio::spawn(listener::serve(inbound_acceptor, workers, inbound_stopped));
    let admin = tokio::spawn(admin::serve(
        admin_acceptor,
        readiness.clone(),
        settings,
        admin_stopped,
    ));
    tracing::info!(
        listen = %listen_addr,
        admin = %admin_addr,
        routes = config.routes.len(),
        "tango-gateway serving"
    );
    Ok(Running {
        listen_addr,
        admin_addr,
        readiness,
        live,
        reloads,
        stop_reloader,
        stop_inbound,
        stop_admin,
        reloader,
        inbound,
        admin,
    })
}

impl Running {
    /// Stops accepting, turns `/readyz` to 503, lets in-flight requests finish (up to the
    /// grace period), then stops the admin listener.
    pub async fn shutdown(self) {
        self.readiness.begin_shutdown();
        crate::systemd::stopping();
        // No reload swaps the state under a draining listener.
        let _ = self.stop_reloader.send(true);
        let _ = self.reloader.await;
        let _ = self.stop_inbound.send(true);
        let _ = self.inbound.await;
        self.live.current().stop_refreshers();
        let _ = self.stop_admin.send(true);
        let _ = self.admin.await;
        tracing::info!("tango-gateway stopped");
    }

    /// Reloads the configuration file now, as `SIGHUP` does; returns the new generation.
    pub async fn reload(&self) -> Result<u64, ReloadError> {
        self.reloads.reload().await
    }

    /// The configuration generation in service (1 at start, +1 per reload).
    pub fn generation(&self) -> u64 {
        self.live.current().number
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
