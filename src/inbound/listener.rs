//! The inbound listener: accepts plain HTTP/1.1 and h2c connections on one port (under the
//! connection cap, [`super::accept`]) and hands each, tagged with its peer address, to a
//! serving worker ([`super::workers`]).
//!
//! Invariant: once shutdown starts no new connection is accepted; in-flight requests get
//! up to the grace period to finish.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;
use tokio::sync::watch;
use tower::ServiceExt;

use super::accept::Acceptor;
use super::workers::Workers;
use super::GatewayService;
use crate::context::RequestContext;

/// Accepts on `acceptor` until `shutdown` turns true, then lets the workers drain.
pub(crate) async fn serve(
    mut acceptor: Acceptor,
    workers: Workers,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            (stream, peer, slot) = acceptor.next() => {
                let _ = stream.set_nodelay(true);
                workers.hand_over(stream, peer, slot);
            }
            _ = stop_requested(&mut shutdown) => break,
        }
    }
    drop(acceptor);
    workers.drain().await;
}

/// The connection's service: every request starts with a context holding the peer address
/// (for admission and XFF).
pub(super) fn tagged(
    service: GatewayService,
    peer: SocketAddr,
) -> tower::util::MapRequest<
    GatewayService,
    impl FnMut(Request<Incoming>) -> Request<Incoming> + Clone + Send + Sync,
> {
    service.map_request(move |mut request: Request<Incoming>| {
        request
            .extensions_mut()
            .insert(Arc::new(RequestContext::from_peer(peer)));
        request
    })
}

/// Resolves once `stop` is true (or its sender is gone, which also means stop).
pub(crate) async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // `borrow_and_update` drops its guard before the await, keeping this future `Send`.
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}
