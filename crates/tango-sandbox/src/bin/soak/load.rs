//! The steady mixed load: concurrent callers sending GETs, orders with an `externalRefID`
//! and orders without one (each carrying a unique marker) to both routes of both replicas,
//! over plain HTTP, and recording how each call ended.
//!
//! Invariant: a caller never retries and never reuses an order body, so every duplicate the
//! fake sees was made by the gateway; each call is recorded exactly once, with its start and
//! end times.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tango_sandbox::fake::FAKE_TANGO_HEADER;

/// The header on every answer the gateway makes itself (PRODUCT.md §4).
pub(crate) const GATEWAY_ERROR_HEADER: &str = "x-tango-gateway-error";
/// A call still unanswered after this is a hang of the gateway: always unexpected.
const CALL_LIMIT: Duration = Duration::from_secs(30);
/// The `message` field of an order without `externalRefID` starts with this.
pub(crate) const MARKER_PREFIX: &str = "soak-marker-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Basic,
    Dpop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Get,
    OrderWithRef,
    OrderWithoutRef,
}

/// How a call ended, as the caller saw it.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// An answer: its status, the gateway's error code if it made the answer, whether the
    /// fake made it, and whether the body arrived whole.
    Answer {
        status: u16,
        gateway_code: Option<String>,
        from_fake: bool,
        complete: bool,
        body: String,
    },
    /// No connection (refused): the replica is not listening.
    ConnectError(String),
    /// The connection failed after it was made (reset, closed early).
    TransportError(String),
    /// No answer within [`CALL_LIMIT`].
    ClientTimeout,
}

#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) replica: usize,
    pub(crate) route: Route,
    pub(crate) kind: CallKind,
    pub(crate) start: Duration,
    pub(crate) end: Duration,
    pub(crate) outcome: Outcome,
}

impl Call {
    pub(crate) fn ok(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Answer {
                status: 200..=299,
                complete: true,
                ..
            }
        )
    }
}

/// The callers, running until [`Load::stop`].
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    pub(crate) calls: Arc<Mutex<Vec<Call>>>,
}

impl Load {
    /// `callers` tasks, each pausing `pause` between its calls, over `replicas`.
    pub(crate) fn start(
        replicas: Vec<SocketAddr>,
        callers: usize,
        pause: Duration,
        t0: Instant,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let sequence = Arc::new(AtomicU64::new(0));
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let workers = (0..callers)
            .map(|worker| {
                let caller = Caller {
                    client: client.clone(),
                    replicas: replicas.clone(),
                    sequence: sequence.clone(),
                    t0,
                };
                let (stop, calls) = (stop.clone(), calls.clone());
                tokio::spawn(async move {
                    let mut k = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let call = caller.one(worker, k).await;
                        calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
                        k += 1;
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            workers,
            calls,
        }
    }

    /// Stops the callers and waits for their last calls.
    pub(crate) async fn stop(self) -> Vec<Call> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            let _ = worker.await;
        }
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct Caller {
    client: Client<HttpConnector, Full<Bytes>>,
    replicas: Vec<SocketAddr>,
    sequence: Arc<AtomicU64>,
    t0: Instant,
}

impl Caller {
    /// Call number `k` of caller `worker`: each caller sticks to one replica and one route
    /// (the callers of a service), and cycles through the kinds of call.
    async fn one(&self, worker: usize, k: u64) -> Call {
        let replica = worker % self.replicas.len();
        let route = match (worker / self.replicas.len()) % 2 {
            0 => Route::Basic,
            _ => Route::Dpop,
        };
        let kind = match k % 5 {
            0 | 1 => CallKind::Get,
            2 | 3 => CallKind::OrderWithRef,
            _ => CallKind::OrderWithoutRef,
        };
        let prefix = match route {
            Route::Basic => "/basic",
            Route::Dpop => "/dpop",
        };
        let id = self.sequence.fetch_add(1, Ordering::Relaxed);
        let unique = format!("{}-{id}", uuid::Uuid::new_v4().simple());
        let (method, path, body) = match kind {
            CallKind::Get if id.is_multiple_of(2) => {
                (Method::GET, "/raas/v2/catalogs", String::new())
            }
            CallKind::Get => (Method::GET, "/raas/v2/accounts/demo-account", String::new()),
            CallKind::OrderWithRef => (Method::POST, "/raas/v2/orders", order(Some(&unique), None)),
            CallKind::OrderWithoutRef => (
                Method::POST,
                "/raas/v2/orders",
                order(None, Some(&format!("{MARKER_PREFIX}{unique}"))),
            ),
        };
        let addr = self.replicas[replica];
        let start = self.t0.elapsed();
        let outcome = match tokio::time::timeout(
            CALL_LIMIT,
            self.send(method, &format!("http://{addr}{prefix}{path}"), body),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Outcome::ClientTimeout,
        };
        Call {
            replica,
            route,
            kind,
            start,
            end: self.t0.elapsed(),
            outcome,
        }
    }

    async fn send(&self, method: Method, uri: &str, body: String) -> Outcome {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(request) => request,
            Err(e) => return Outcome::TransportError(format!("bad request: {e}")),
        };
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(e) if e.is_connect() => return Outcome::ConnectError(chain(&e)),
            Err(e) => return Outcome::TransportError(chain(&e)),
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let gateway_code = header(GATEWAY_ERROR_HEADER);
        let from_fake = header(FAKE_TANGO_HEADER).is_some();
        let (complete, body) = match response.into_body().collect().await {
            Ok(body) => (true, body.to_bytes()),
            Err(_) => (false, Bytes::new()),
        };
        // Only failed calls keep their body (for the report).
        let body = if (200..300).contains(&status) {
            String::new()
        } else {
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
        };
        Outcome::Answer {
            status,
            gateway_code,
            from_fake,
            complete,
            body,
        }
    }
}

/// An order body (RaaS v2 fields), with a reference or with a marker in `message`.
fn order(reference: Option<&str>, marker: Option<&str>) -> String {
    let mut order = serde_json::json!({
        "accountIdentifier": "demo-account",
        "customerIdentifier": "demo-customer",
        "amount": 10,
        "utid": "U000001",
        "sendEmail": false,
    });
    if let Some(reference) = reference {
        order["externalRefID"] = serde_json::json!(format!("soak-{reference}"));
    }
    if let Some(marker) = marker {
        order["message"] = serde_json::json!(marker);
    }
    order.to_string()
}

/// An error and its causes, one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
