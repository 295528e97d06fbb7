//! The admin listener: `/healthz` (alive), `/readyz` (ready to serve, with reasons and
//! warnings) and `/metrics` (Prometheus text).
//!
//! Invariants: answers carry no configuration detail beyond route names, reasons and
//! warnings; only reasons make `/readyz` 503 — a warning (a degraded shared token store,
//! §9) is listed while the answer stays 200.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::body::{full, ResponseBody};
use crate::inbound::accept::Acceptor;
use crate::inbound::connection;
use crate::inbound::listener::stop_requested;
use crate::inbound::workers::ServeSettings;
use crate::reload::Live;

/// What `/readyz` looks at.
pub(crate) struct Readiness {
    /// The configuration in service: readiness follows reloads.
    live: Arc<Live>,
    shutting_down: AtomicBool,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl Readiness {
    pub(crate) fn new(live: Arc<Live>) -> Self {
        Readiness {
            live,
            shutting_down: AtomicBool::new(false),
        }
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Reasons the gateway is not ready; empty when ready.
    pub(crate) fn reasons(&self, now: SystemTime) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.shutting_down.load(Ordering::SeqCst) {
            reasons.push("shutting down".to_owned());
        }
        let generation = self.live.current();
        for route in &generation.config.routes {
            if let Some(identity) = &route.upstream.tls.client_identity {
                if identity.summary.not_after <= now {
                    reasons.push(format!(
                        "route {}: client certificate has expired",
                        route.name
                    ));
                }
            }
        }
        reasons.extend(generation.tokens.readiness_problems(now));
        reasons
    }

    /// What is degraded without making the gateway unready (listed by `/readyz`).
    pub(crate) fn warnings(&self) -> Vec<String> {
        let generation = self.live.current();
        let mut warnings = generation.tokens.readiness_warnings();
        // A server clock far from ours (§11): DPoP proofs are about to be refused.
        warnings.extend(crate::clock_skew::clocks().readiness_warnings(&generation.config));
        warnings
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response<ResponseBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn route<B>(request: &Request<B>, readiness: &Readiness) -> Response<ResponseBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"status": "method not allowed"}),
        );
    }
    match request.uri().path() {
        "/healthz" => answer(StatusCode::OK, serde_json::json!({"status": "ok"})),
        "/metrics" => {
            // Readiness as a series too, so the not-ready alert needs no kube-state-metrics
            // (systemd, sidecars): the same reasons `/readyz` answers with.
            let ready = readiness.reasons(SystemTime::now()).is_empty();
            crate::metrics::metrics().ready.set(i64::from(ready));
            let mut response = Response::new(full(crate::metrics::metrics().encode()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        "/readyz" => {
            let reasons = readiness.reasons(SystemTime::now());
            let warnings = readiness.warnings();
            let (status, mut body) = if reasons.is_empty() {
                (StatusCode::OK, serde_json::json!({"status": "ready"}))
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"status": "not ready", "reasons": reasons}),
                )
            };
            if !warnings.is_empty() {
                body["warnings"] = serde_json::json!(warnings);
            }
            answer(status, body)
        }
        _ => answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({"status": "not found"}),
        ),
    }
}

/// Connections the admin listener serves at once: probes and scrapes need a handful, and
/// a flood on the admin port must not take the descriptors the inbound side needs.
pub(crate) const ADMIN_MAX_CONNECTIONS: usize = 256;

/// Serves the admin endpoints until `shutdown` turns true (after the inbound side drained,
/// so `/readyz` answers 503 throughout the drain). Connections get the inbound side's head
/// and idle limits, and the same accept loop (cap, back-off when out of descriptors).
pub(crate) async fn serve(
    mut acceptor: Acceptor,
    readiness: Arc<Readiness>,
    settings: ServeSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(settings.builder());
    loop {
        tokio::select! {
            (stream, peer, slot) = acceptor.next() => {
                let readiness = readiness.clone();
                let builder = builder.clone();
                let stopped = shutdown.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let service = tower::service_fn(move |request: Request<Incoming>| {
                        std::future::ready(Ok::<_, Infallible>(route(&request, &readiness)))
                    });
                    connection::serve(builder, stream, service, settings.limits, stopped, peer)
                        .await;
                });
            }
            _ = stop_requested(&mut shutdown) => break,
        }
    }
}
