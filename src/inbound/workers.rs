//! Serving workers: one thread per core, each with its own single-threaded runtime. The
//! acceptor hands every connection to the worker serving the fewest, and that worker serves
//! it to the end, together with the upstream connections its requests use
//! ([`crate::rt::PerWorker`]). A request never crosses threads: no futex wake-ups between scheduler
//! threads, no work stealing. This is nginx's model; `bench/run` measured tokio's
//! multi-thread scheduler on 2 cores at the same throughput as one thread, with 24 % more
//! CPU per request.
//!
//! Invariant: every accepted connection is served by exactly one worker; when the acceptor
//! stops, each worker finishes its connections (up to the grace period) before it ends.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{mpsc, oneshot, watch};

use super::accept::ConnectionSlot;
use super::connection::{self, ConnectionLimits};
use super::listener::tagged;
use super::GatewayService;

/// An accepted connection on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    /// Counts the connection in its worker's load until the connection ends.
    load: LoadGuard,
    /// Its place under the listener's connection cap, given back when it ends.
    slot: ConnectionSlot,
}

struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Lane {
    connections: mpsc::UnboundedSender<Accepted>,
    /// Connections handed to this worker and not yet ended.
    load: Arc<AtomicUsize>,
    /// Resolves when the worker has drained (true: every connection ended in the grace).
    done: oneshot::Receiver<bool>,
}

/// The running workers of one listener.
pub(crate) struct Workers {
    lanes: Vec<Lane>,
    grace: Duration,
}

/// What every worker's connections are served with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeSettings {
    pub limits: ConnectionLimits,
    pub http2_max_concurrent_streams: u32,
    pub shutdown_grace: Duration,
}

impl ServeSettings {
    /// The HTTP/1.1 + h2c connection builder every connection of a listener is served with.
    pub(crate) fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Head and idle limits are kept by `connection::serve`; hyper's own header timer
        // would also close idle keep-alive connections after it, so it is off.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_concurrent_streams);
        builder
    }
}

impl Workers {
    /// Starts `count` worker threads serving `service`.
    pub(crate) fn start(
        count: usize,
        service: &GatewayService,
        settings: ServeSettings,
    ) -> std::io::Result<Workers> {
        let mut lanes = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let (connections, incoming) = mpsc::unbounded_channel();
            let (drained, done) = oneshot::channel();
            let service = service.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("tango-gateway-worker-{index}"))
                .spawn(move || {
                    crate::rt::enter_worker(index);
                    let all_ended = runtime.block_on(serve_worker(incoming, service, settings));
                    // Connections still open after the grace period, idle upstream
                    // connections and their tasks end with the runtime, before `done`.
                    drop(runtime);
                    let _ = drained.send(all_ended);
                })?;
            lanes.push(Lane {
                connections,
                load: Arc::new(AtomicUsize::new(0)),
                done,
            });
        }
        Ok(Workers {
            lanes,
            grace: settings.shutdown_grace,
        })
    }

    /// Hands `stream` to the worker with the fewest connections.
    pub(crate) fn hand_over(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        slot: ConnectionSlot,
    ) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(peer = %peer, error = %err, "accepted connection unusable");
                return;
            }
        };
        let Some(lane) = self
            .lanes
            .iter()
            .min_by_key(|lane| lane.load.load(Ordering::Relaxed))
        else {
            return;
        };
        lane.load.fetch_add(1, Ordering::Relaxed);
        let load = LoadGuard(lane.load.clone());
        // A worker ends only once its sender is dropped (in `drain`), short of a bug.
        if lane
            .connections
            .send(Accepted {
                stream,
                peer,
                load,
                slot,
            })
            .is_err()
        {
            tracing::error!(peer = %peer, "serving worker gone; connection closed");
        }
    }

    /// Stops handing out connections and waits for every worker to drain (all at once, so
    /// the whole drain takes one grace period at most).
    pub(crate) async fn drain(self) {
        let done: Vec<_> = self
            .lanes
            .into_iter()
            .map(|Lane { done, .. }| done)
            .collect();
        let mut all_ended = true;
        for worker in done {
            // A worker that is gone has nothing left to drain.
            all_ended &= worker.await.unwrap_or(true);
        }
        if all_ended {
            tracing::info!("all inbound connections drained");
        } else {
            tracing::warn!(
                grace_s = self.grace.as_secs(),
                "shutdown grace period over; closing remaining connections"
            );
        }
    }
}

/// One worker: serves the connections it is handed until the acceptor is done, then asks
/// each to finish gracefully and waits for them (up to the grace period).
async fn serve_worker(
    mut incoming: mpsc::UnboundedReceiver<Accepted>,
    service: GatewayService,
    settings: ServeSettings,
) -> bool {
    let builder = Arc::new(settings.builder());
    let (stop, stopped) = watch::channel(false);
    // Every connection task holds a sender; `recv` returns `None` once all are gone.
    let (alive, mut all_ended) = mpsc::channel::<Infallible>(1);

    while let Some(Accepted {
        stream,
        peer,
        load,
        slot,
    }) = incoming.recv().await
    {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(peer = %peer, error = %err, "accepted connection unusable");
                continue;
            }
        };
        let service = tagged(service.clone(), peer);
        let builder = builder.clone();
        let stopped = stopped.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _held = (load, slot, alive);
            connection::serve(builder, stream, service, settings.limits, stopped, peer).await;
        });
    }
    let _ = stop.send(true);
    drop(alive);
    tokio::select! {
        _ = all_ended.recv() => true,
        _ = tokio::time::sleep(settings.shutdown_grace) => false,
    }
}
