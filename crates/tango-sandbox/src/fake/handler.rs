//! One request through the fake: the port-appending proxy when on, record it, apply the ALB rule, then either the token route
//! (`/oauth/token` when OAuth is on) or a pending API fault, credentials (an OAuth token, else
//! Basic) and the canned RaaS answer.
//!
//! Invariant: every request that completed the handshake is recorded, whatever happens next,
//! and every answer the fake makes carries `x-fake-tango: 1`; API faults are taken only by API
//! requests and token faults only by token requests; input never causes a panic.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, DATE, RETRY_AFTER};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::api_auth::authenticate;
use super::body::FakeBody;
use super::fake_tango::Shared;
use super::inflight;
use super::oauth::{AuthServer, TokenStep};
use super::raas::{self, Raas};
use super::token_route;
use super::{alb, Fault, RecordedRequest, FAKE_TANGO_HEADER, TOKEN_PATH};

/// Larger request bodies are refused; nothing Tango accepts comes close.
const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// What the fake knows about a connection.
#[derive(Debug)]
pub(super) struct ConnInfo {
    pub(super) peer: SocketAddr,
    pub(super) client_cn: Option<String>,
}

/// Mutable state behind the fake's lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) received: Vec<RecordedRequest>,
    /// Pending faults with how many more requests each applies to.
    pub(super) faults: VecDeque<(Fault, usize)>,
    pub(super) raas: Raas,
    /// The authorization server, when OAuth is on.
    pub(super) oauth: Option<AuthServer>,
    /// `401`s the API side answered, whatever the reason.
    pub(super) api_auth_failures: usize,
    /// Orders with an `externalRefID` being acted on, and those that met another.
    pub(super) orders_in_flight: inflight::OrdersInFlight,
}

/// Where a request goes after the ALB rule.
enum Route {
    /// `/oauth/token` with OAuth on, and what its fault queue decided.
    Token(TokenStep),
    /// Anything else, with the API fault it takes.
    Api(Option<Fault>),
}

impl State {
    pub(super) fn push_fault(&mut self, fault: Fault) {
        let times = match fault {
            Fault::Status { times, .. } | Fault::Answer { times, .. } => times,
            _ => 1,
        };
        // `times: 0` would apply to no request: nothing to queue.
        if times > 0 {
            self.faults.push_back((fault, times));
        }
    }

    /// Routes a request and takes the fault of its queue (token or API) for it.
    fn route(&mut self, path: &str) -> Route {
        if path == TOKEN_PATH {
            if let Some(server) = self.oauth.as_mut() {
                return Route::Token(server.begin_token_request());
            }
        }
        Route::Api(self.next_fault())
    }

    fn next_fault(&mut self) -> Option<Fault> {
        let (fault, remaining) = self.faults.front_mut()?;
        let fault = fault.clone();
        *remaining -= 1;
        if *remaining == 0 {
            self.faults.pop_front();
        }
        Some(fault)
    }
}

/// Returned to hyper to drop the connection without an answer (the `ResetAfterRead` fault).
#[derive(Debug, thiserror::Error)]
#[error("fake tango: connection dropped on purpose")]
pub(super) struct DropConnection;

/// One request, answered with a `Date` on the fake's clock (hyper would add the host's).
pub(super) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    request: Request<Incoming>,
) -> Result<Response<FakeBody>, DropConnection> {
    let mut response = route_request(shared.clone(), conn, request).await?;
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(shared.now())) {
        response.headers_mut().insert(DATE, date);
    }
    Ok(response)
}

async fn route_request(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    request: Request<Incoming>,
) -> Result<Response<FakeBody>, DropConnection> {
    let (mut parts, body) = request.into_parts();
    if shared.port_appending_proxy.load(Ordering::Relaxed) {
        alb::append_with_port(&mut parts.headers, conn.peer);
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let (body, trailers, too_large) = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            (collected.to_bytes(), trailers, false)
        }
        Err(_) => (Bytes::new(), None, true),
    };
    let route = {
        let mut state = shared.lock();
        state.received.push(RecordedRequest {
            method: parts.method.clone(),
            path_and_query: path.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            body: body.clone(),
            trailers,
            client_cn: conn.client_cn.clone(),
            peer: conn.peer,
        });
        if let Some(refused) = alb::check::<FakeBody>(&parts.headers) {
            return Ok(mark(refused));
        }
        state.route(parts.uri.path())
    };
    match route {
        Route::Token(step) => token_route::serve(shared, &parts, &body, too_large, step).await,
        Route::Api(fault) => api(shared, &parts, &path, &body, too_large, fault).await,
    }
}

/// An API request after the ALB rule: its fault, then credentials, then the RaaS answer.
async fn api(
    shared: Arc<Shared>,
    parts: &Parts,
    path: &str,
    body: &Bytes,
    too_large: bool,
    fault: Option<Fault>,
) -> Result<Response<FakeBody>, DropConnection> {
    // A request that will be acted on (no fault, or one that only delays or slows the
    // answer) is in flight from here until its answer is made.
    let acts = matches!(
        fault,
        None | Some(Fault::Delay(_) | Fault::StallBody { .. } | Fault::SlowBody { .. })
    );
    let _in_flight = acts
        .then(|| inflight::OrderInFlight::begin(&shared, &parts.method, path, body))
        .flatten();
    let mut stall_after = None;
    let mut slow = None;
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            ..
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = json(status, &raas::error_body(status, path, "Injected fault."));
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            return Ok(response);
        }
        Some(Fault::Answer { answer, .. }) => return Ok(canned(answer)),
        Some(Fault::Hang) => {
            shared.shut_down().await;
            return Err(DropConnection);
        }
        Some(Fault::ResetAfterRead) => return Err(DropConnection),
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::StallBody { after_bytes }) => stall_after = Some(after_bytes),
        Some(Fault::SlowBody { chunk, pause }) => slow = Some((chunk, pause)),
        None => {}
    }
    let response = if too_large {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        json(
            status,
            &raas::error_body(status, path, "Request body too large."),
        )
    } else if let Some(refused) = authenticate(&shared, parts, path) {
        refused
    } else {
        let answer = shared.lock().raas.answer(&parts.method, path, body);
        json(answer.status, &answer.body)
    };
    Ok(match (stall_after, slow) {
        (Some(after_bytes), _) => stall(response, after_bytes, shared),
        (None, Some((chunk, pause))) => slow_down(response, chunk, pause),
        (None, None) => response,
    })
}

/// Re-sends `response` with its body slowed down to `chunk` bytes per `pause`.
fn slow_down(response: Response<FakeBody>, chunk: usize, pause: Duration) -> Response<FakeBody> {
    let (parts, body) = response.into_parts();
    let bytes = body.into_full().unwrap_or_default();
    Response::from_parts(parts, FakeBody::slow(bytes, chunk, pause))
}

pub(super) fn json(status: StatusCode, body: &serde_json::Value) -> Response<FakeBody> {
    let mut response = Response::new(FakeBody::full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    mark(response)
}

/// A canned answer as it is; a header that is not valid is left out.
fn canned(answer: super::rejections::CannedAnswer) -> Response<FakeBody> {
    let mut response = Response::new(FakeBody::full(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &answer.headers {
        let name = http::header::HeaderName::from_bytes(name.as_bytes());
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(value)) {
            response.headers_mut().append(name, value);
        }
    }
    mark(response)
}

pub(super) fn mark(mut response: Response<FakeBody>) -> Response<FakeBody> {
    response
        .headers_mut()
        .insert(FAKE_TANGO_HEADER, HeaderValue::from_static("1"));
    response
}

/// Re-sends `response` with only `after_bytes` of its body, then a stall. The body is padded
/// with JSON whitespace so there is always something left that never arrives.
fn stall(
    response: Response<FakeBody>,
    after_bytes: usize,
    shared: Arc<Shared>,
) -> Response<FakeBody> {
    let (mut parts, body) = response.into_parts();
    let mut bytes = match body.into_full() {
        Some(bytes) => bytes.to_vec(),
        None => Vec::new(),
    };
    if bytes.len() <= after_bytes {
        bytes.resize(after_bytes + 1, b' ');
    }
    let total = bytes.len() as u64;
    bytes.truncate(after_bytes);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(total));
    let until = Box::pin(async move { shared.shut_down().await });
    Response::from_parts(parts, FakeBody::stalling(Bytes::from(bytes), total, until))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::StatusCode;

    use super::super::tests::{client_config, get, send};
    use super::super::{FakeTango, FakeTangoOptions};
    use crate::pki::DevPki;

    #[tokio::test]
    async fn a_port_appending_proxy_makes_the_alb_refuse_every_request() {
        let pki = DevPki::generate().unwrap();
        let fake = FakeTango::start(FakeTangoOptions::from_dev_pki(&pki))
            .await
            .unwrap();
        let config = || client_config(&pki, Some(&pki.client), false);
        fake.set_port_appending_proxy(true);
        let refused = send(&fake, config(), get("/raas/v2/catalogs"))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(refused.headers()["server"], super::alb::ALB_SERVER);
        let seen = fake.received();
        let xff = seen[0].header("x-forwarded-for").unwrap();
        assert!(xff.starts_with("127.0.0.1:"), "{xff}");

        fake.set_port_appending_proxy(false);
        let passed = send(&fake, config(), get("/raas/v2/catalogs"))
            .await
            .unwrap();
        assert_eq!(passed.status(), StatusCode::OK);
    }
}
