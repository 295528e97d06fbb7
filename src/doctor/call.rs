//! Step 6: one real GET through the gateway's own stack (`stack::build`, token refreshers
//! started), handed in-process to the service over an in-memory connection as if an admitted
//! caller had sent it, and the verdict on Tango's answer.
//!
//! Invariants: the call takes exactly the path a caller's request takes (admission, hygiene,
//! X-Forwarded-For, credentials, retry, TLS); doctor never touches the shared token store (the
//! stack is built with a memory cache), and only the answer's status, `Server` and its cause
//! (the gateway's own classifier, on the first bytes a `403` needs) are kept: never its body,
//! never a credential.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, SERVER, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
// The call's limit is a tokio timer: the reported duration is on the same clock.
use tokio::time::Instant;
use tower::ServiceExt;

use super::hints::Hint;
use super::network::seconds;
use super::report::{Step, StepResult};
use super::DOCTOR_USER_AGENT;
use crate::auth::oauth::client::TOKEN_REQUEST_TIMEOUT;
use crate::config::{Config, RouteConfig, TokenCacheConfig};
use crate::context::RequestContext;
use crate::error::{BoxError, ERROR_HEADER};
use crate::inbound::route::is_allowed;
use crate::stack::{self, GatewayService};
use crate::upstream::rejection::{self, Cause, BODY_PEEK_BYTES};
/// Room for the in-memory connection's buffers (requests and heads are small).
const PIPE_BYTES: usize = 64 * 1024;

/// What doctor keeps of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    /// `x-tango-gateway-error`: the gateway answered itself.
    pub gateway_error: Option<String>,
    pub server: Option<String>,
    /// Why Tango refused (§11), by the classifier the gateway's metrics and log use.
    pub cause: Option<Cause>,
}

/// Step 6 for `route` of `config`, calling `path` (origin-form, under the route's prefix).
pub async fn call(config: &Config, route: &RouteConfig, path: &str) -> StepResult {
    let Some(peer) = synthetic_peer(&config.inbound.allow, route.sources.as_deref()) else {
        let detail = "no source address may call this route".to_owned();
        return StepResult::fail(Step::Call, detail, Hint::NoAdmittedSource);
    };
    // This route alone, so the path cannot land on a longer-prefix route; tokens in memory, so
    // a running gateway's token file or Redis entry is never touched.
    let mut single = config.clone();
    single.routes = vec![route.clone()];
    single.token_cache = TokenCacheConfig::Memory;
    let gateway = match stack::build(&single) {
        Ok(gateway) => gateway,
        Err(err) => return StepResult::fail(Step::Call, err.to_string(), Hint::Setup),
    };
    let _refreshers = gateway.tokens.start();
    let started = Instant::now();
    let limit = call_limit(route);
    let target = format!("GET {path}");
    match tokio::time::timeout(limit, exchange(gateway.service, peer, path)).await {
        Err(_) => StepResult::fail(
            Step::Call,
            format!("{target}: no answer within {}", seconds(limit)),
            Hint::Gateway("gateway.upstream_timeout".to_owned()),
        ),
        Ok(Err(err)) => StepResult::fail(
            Step::Call,
            format!("{target}: the gateway's stack failed: {err}"),
            Hint::Setup,
        ),
        Ok(Ok(answer)) => {
            let elapsed = started.elapsed().as_millis();
            verdict(&answer, &format!("{target} (as {peer}, {elapsed} ms)"))
        }
    }
}

/// Tango's answer (or the gateway's own) judged.
pub fn verdict(answer: &Answer, target: &str) -> StepResult {
    let status = answer.status;
    if let Some(code) = &answer.gateway_error {
        let detail = format!("{target} → {status}, answered by the gateway itself: {code}");
        return StepResult::fail(Step::Call, detail, Hint::Gateway(code.clone()));
    }
    if status.is_success() {
        return StepResult::pass(Step::Call, format!("{target} → {status}"));
    }
    let Some(cause) = answer.cause else {
        let detail = format!("{target} → {status}: unexpected for a harmless GET");
        return StepResult::fail(Step::Call, detail, Hint::UnexpectedStatus);
    };
    let server = answer.server.as_deref().unwrap_or("no Server header");
    let (detail, hint) = match cause {
        Cause::AlbXff => (
            format!("an HTML page from the load balancer ({server})"),
            Hint::XffRejected,
        ),
        Cause::AlbOther => (
            format!("an answer the load balancer made itself ({server}), not Tango's API"),
            Hint::AlbRefused,
        ),
        Cause::BrowserRefused => (
            "Tango took the call for a browser's (403.001)".to_owned(),
            Hint::BrowserRefused,
        ),
        Cause::Unauthorized => (
            "Tango refused the credentials".to_owned(),
            Hint::CredentialsRefused,
        ),
        Cause::DpopNonce => (
            "Tango still asked for a DPoP nonce after the gateway's nonce round trip".to_owned(),
            Hint::DpopNonce,
        ),
        Cause::DpopInvalid => (
            "Tango refused the DPoP proof or the token bound to it".to_owned(),
            Hint::DpopInvalid,
        ),
        Cause::RateLimited => ("rate-limited".to_owned(), Hint::RateLimited),
        Cause::ClientError => match status.as_u16() {
            403 => ("Tango's API refused the call".to_owned(), Hint::Forbidden),
            404 => ("Tango has no such path".to_owned(), Hint::PathNotFound),
            _ => (
                "unexpected for a harmless GET".to_owned(),
                Hint::UnexpectedStatus,
            ),
        },
        Cause::ServerError => ("a server error from Tango".to_owned(), Hint::UpstreamError),
    };
    let detail = format!("{target} → {status}: {cause}: {detail}");
    StepResult::fail(Step::Call, detail, hint)
}

/// A caller address the route admits: loopback when allowed (the gateway's usual sidecar
/// caller), else the first address of the first network that both lists admit.
pub fn synthetic_peer(allow: &[IpNet], sources: Option<&[IpNet]>) -> Option<IpAddr> {
    let admitted =
        |ip: IpAddr| is_allowed(allow, ip) && sources.is_none_or(|sources| is_allowed(sources, ip));
    let loopback = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let listed = sources.unwrap_or_default().iter().chain(allow);
    let first_hosts = listed.map(|net| net.hosts().next().unwrap_or_else(|| net.network()));
    loopback
        .into_iter()
        .chain(first_hosts)
        .find(|ip| admitted(*ip))
}

/// How long the call may take at most: every attempt's connect and answer time, backoffs
/// between them, and the wait for a first token. The stack bounds each part itself; this is
/// only a guard so doctor can never hang.
fn call_limit(route: &RouteConfig) -> Duration {
    let attempts = route.retry.max_attempts.max(1);
    let upstream = &route.upstream;
    let per_attempt = upstream.connect_timeout + upstream.timeout + route.retry.max_backoff;
    let all = upstream
        .deadline
        .unwrap_or_else(|| per_attempt.saturating_mul(attempts));
    all + TOKEN_REQUEST_TIMEOUT.saturating_mul(2) + Duration::from_secs(5)
}

/// Serves one connection of `service` on an in-memory pipe and sends the GET through it,
/// tagged with `peer` as the listener tags every inbound request.
async fn exchange(service: GatewayService, peer: IpAddr, path: &str) -> Result<Answer, BoxError> {
    let (client_io, server_io) = tokio::io::duplex(PIPE_BYTES);
    let tagged = service.map_request(move |mut request: Request<Incoming>| {
        request
            .extensions_mut()
            .insert(Arc::new(RequestContext::from_peer(SocketAddr::new(
                peer, 0,
            ))));
        request
    });
    let mut server = hyper::server::conn::http1::Builder::new();
    server.timer(TokioTimer::new());
    let serving =
        server.serve_connection(TokioIo::new(server_io), TowerToHyperService::new(tagged));
    let server_task = tokio::spawn(serving);
    let result = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(client_io)).await?;
        let client_task = tokio::spawn(connection);
        let request = Request::get(path)
            .header(HOST, "localhost")
            .header(USER_AGENT, DOCTOR_USER_AGENT)
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let head = read_head(body).await;
        client_task.abort();
        let text = |v: &http::HeaderValue| v.to_str().ok().map(str::to_owned);
        Ok::<_, BoxError>(Answer {
            status: parts.status,
            gateway_error: parts.headers.get(ERROR_HEADER).and_then(text),
            server: parts.headers.get(SERVER).and_then(text),
            cause: rejection::classify(parts.status, &parts.headers, &head),
        })
    }
    .await;
    server_task.abort();
    result
}

/// The first bytes of the body (at most [`BODY_PEEK_BYTES`]): what the classifier may read.
async fn read_head(body: Incoming) -> Bytes {
    let mut head = Vec::new();
    let mut body = body;
    while head.len() < BODY_PEEK_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    head.extend_from_slice(data);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    head.truncate(BODY_PEEK_BYTES);
    Bytes::from(head)
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
