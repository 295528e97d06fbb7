//! The inbound listener: plain HTTP/1.1 and h2c on one port, each connection tagged with its
//! peer address, drained gracefully on shutdown.
//!
//! Invariant: once shutdown starts no new connection is accepted; in-flight requests get
//! up to the grace period to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::context::PeerAddr;
use crate::stack::GatewayService;

#[derive(Debug, Clone, Copy)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// A pause after an accept error (e.g. out of file descriptors) so the loop cannot spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `service` on `listener` until `shutdown` turns true, then drains.
pub async fn serve(
    listener: TcpListener,
    service: GatewayService,
    settings: ServeSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = tagged(service.clone(), peer);
                    let builder = builder.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        if let Err(err) = watcher.watch(connection).await {
                            tracing::debug!(peer = %peer, error = %err, "inbound connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            _ = stop_requested(&mut shutdown) => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all inbound connections drained"),
        _ = tokio::time::sleep(settings.shutdown_grace) => {
            tracing::warn!(grace_s = settings.shutdown_grace.as_secs(), "shutdown grace period over; closing remaining connections");
        }
    }
}

/// The connection's service: every request carries the peer address for admission and XFF.
fn tagged(
    service: GatewayService,
    peer: SocketAddr,
) -> TowerToHyperService<
    tower::util::MapRequest<
        GatewayService,
        impl FnMut(Request<Incoming>) -> Request<Incoming> + Clone + Send + Sync,
    >,
> {
    TowerToHyperService::new(service.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(PeerAddr(peer));
        request
    }))
}

/// Resolves once `stop` is true (or its sender is gone, which also means stop).
pub async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // `borrow_and_update` drops its guard before the await, keeping this future `Send`.
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}
