//! THE request stack: every layer a request passes, in order, built in one place.
//!
//! Read top to bottom. Everything below `retry` happens once per attempt, so each attempt
//! gets fresh credentials and its own timeout.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use tower::util::{BoxCloneService, BoxCloneSyncService};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::access_log::AccessLogLayer;
use crate::auth::oauth::TokenSources;
use crate::auth::{AuthorizeLayer, Credentials, CredentialsSetupError};
use crate::body::ResponseBody;
use crate::config::{Config, ForwardedForMode, InboundConfig, RouteConfig};
use crate::context::RequestContext;
use crate::error::{BoxError, ErrorCode, GatewayError};
use crate::headers::{clean_request_headers, forwarded, CALLER_CREDENTIALS};
use crate::inbound::admission::AdmissionPolicy;
use crate::inbound::body::PrepareBodyLayer;
use crate::inbound::limit::InFlightLimitLayer;
use crate::inbound::route::RouteTable;
use crate::inbound::workers;
use crate::request_id::RequestIdLayer;
use crate::rescue::RescueLayer;
use crate::retry::{RetryPolicy, RouteRetry};
use crate::upstream::attempt_metrics::AttemptMetricsLayer;
use crate::upstream::client::{build_worker_clients, Target, Upstream};
use crate::upstream::timeout::AttemptTimeoutLayer;
use crate::upstream::tls::TlsSetupError;

/// The whole inbound service: never fails, every error is already an answer.
pub type GatewayService = BoxCloneService<Request<Incoming>, Response<ResponseBody>, Infallible>;
/// One route's part of the stack, from body preparation down to the upstream.
type RouteService = BoxCloneSyncService<Request<Incoming>, Response<ResponseBody>, BoxError>;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("routes[{index}] ({route}): upstream TLS: {source}")]
    Tls {
        index: usize,
        route: String,
        source: TlsSetupError,
    },
    #[error("routes[{index}] ({route}): auth: {source}")]
    Credentials {
        index: usize,
        route: String,
        source: CredentialsSetupError,
    },
    #[error("routes[{index}] ({route}): upstream.url: {source}")]
    Target {
        index: usize,
        route: String,
        source: GatewayError,
    },
}

/// One configuration, built, for a single use (`check`, `doctor`): the whole inbound service
/// and the OAuth credentials it uses (whose refreshers the caller starts).
pub struct Gateway {
    pub service: GatewayService,
    pub tokens: Arc<TokenSources>,
}

/// Builds the service that answers every inbound request of one configuration.
pub fn build(config: &Config) -> Result<Gateway, BuildError> {
    let capacity = InFlightLimitLayer::new(config.inbound.max_concurrent_requests);
    let routing = build_routing(config, None, &capacity)?;
    Ok(Gateway {
        service: front(routing.service),
        tokens: routing.tokens,
    })
}

/// The part of the stack a reload replaces: admission, hygiene and every route. Requests
/// reach it through [`front`], which stays in place across reloads.
pub type RoutingService = BoxCloneSyncService<Request<Incoming>, Response<ResponseBody>, BoxError>;

/// One configuration's routing and the OAuth credentials its routes use.
pub struct Routing {
    pub service: RoutingService,
    pub tokens: Arc<TokenSources>,
}

/// Builds the reloadable part of the stack. `previous` (on reload) lends its tokens, DPoP
/// nonces and ephemeral DPoP keys to credentials that did not change, so a reload costs no
/// token request. `capacity` is the process-wide concurrency limit, shared by every route
/// of every generation.
pub fn build_routing(
    config: &Config,
    previous: Option<&TokenSources>,
    capacity: &InFlightLimitLayer,
) -> Result<Routing, BuildError> {
    let mut tokens = TokenSources::new(&config.token_cache, previous);
    let routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(index, route)| route_stack(index, route, &config.inbound, capacity, &mut tokens))
        .collect::<Result<Vec<_>, _>>()?;
    tokens.forget_previous();
    // Behind an Arc: the stack (and so this filter) is cloned for every request.
    let admission = Arc::new(AdmissionPolicy {
        allow: config.inbound.allow.clone(),
        routes: RouteTable::new(&config.routes),
        reject_browser_requests: config.inbound.reject_browser_requests,
    });
    let forwarded_for = config.forwarded_for;
    let service = ServiceBuilder::new()
        // Who may call what: method, target form, path, source allowlist, route, browser.
        .filter(move |mut request: Request<Incoming>| {
            admission.admit(&mut request).map(|_| request)
        })
        // Nothing of the caller's that Tango must not see; X-Forwarded-For IP-only.
        .map_request(move |request| hygiene(request, forwarded_for))
        .service(Dispatch {
            routes: Arc::new(routes),
        });
    Ok(Routing {
        service: BoxCloneSyncService::new(service),
        tokens: Arc::new(tokens),
    })
}

/// The outer layers every request passes whatever the configuration generation.
pub fn front<S>(routing: S) -> GatewayService
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let service = ServiceBuilder::new()
        // Caller credentials are marked sensitive before anything could record a header.
        .layer(SetSensitiveRequestHeadersLayer::new(CALLER_CREDENTIALS))
        // x-request-id in and out, so even refusals can be correlated.
        .layer(RequestIdLayer)
        // One event per request, after the error mapping so it sees the final status.
        .layer(AccessLogLayer)
        // The only place errors become answers.
        .layer(RescueLayer)
        .service(routing);
    BoxCloneService::new(service)
}

/// A route's stack: body, target, then retry; below retry, per attempt: credentials,
/// timeout, send.
fn route_stack(
    index: usize,
    route: &RouteConfig,
    inbound: &InboundConfig,
    capacity: &InFlightLimitLayer,
    tokens: &mut TokenSources,
) -> Result<RouteService, BuildError> {
    let name = route.name.clone();
    let upstream = &route.upstream;
    let clients =
        build_worker_clients(&name, upstream, workers::default_count()).map_err(|source| {
            BuildError::Tls {
                index,
                route: name.clone(),
                source,
            }
        })?;
    let credentials = Credentials::from_config(&name, &route.auth, tokens).map_err(|source| {
        BuildError::Credentials {
            index,
            route: name.clone(),
            source,
        }
    })?;
    // A 401 answered with a new token resends the request, so OAuth bodies are kept too.
    let replayable = route.retry.max_attempts > 1 || matches!(credentials, Credentials::OAuth2(_));
    let strip = route.strip_prefix.then_some(route.path_prefix.as_str());
    // Behind an Arc: the route's stack is cloned for every request.
    let target =
        Arc::new(
            Target::new(&upstream.url, strip).map_err(|source| BuildError::Target {
                index,
                route: name.clone(),
                source,
            })?,
        );
    let retry = Arc::new(RouteRetry::new(
        Arc::from(name.as_str()),
        route.retry.clone(),
    ));
    let service = ServiceBuilder::new()
        // Size limit and per-chunk read timeout; the body is kept in memory only if a retry
        // could resend it.
        .layer(PrepareBodyLayer {
            max_body_bytes: inbound.max_body_bytes,
            body_read_timeout: inbound.body_read_timeout,
            buffer: replayable,
            deadline: upstream.deadline,
        })
        // Beyond max_concurrent_requests answer 503 at once instead of queueing. Below the
        // body: a request whose buffered body has not arrived holds no permit, so stalled
        // uploads cannot take capacity from other callers (a streamed body takes its permit
        // as it starts to flow, each chunk bounded by body_read_timeout).
        .layer(capacity.clone())
        // The absolute upstream URI, fixed before any attempt (a DPoP `htu` must match it).
        .filter(move |request| target.retarget(request))
        .retry(RetryPolicy::new(retry))
        // ── per attempt below ──
        .layer(AuthorizeLayer::new(credentials))
        .layer(AttemptMetricsLayer::new(Arc::from(name.as_str())))
        .layer(AttemptTimeoutLayer::new(upstream.timeout))
        .service(Upstream::new(clients, upstream.body_timeout));
    Ok(BoxCloneSyncService::new(service))
}

/// Header hygiene after admission: strip what callers may not send, write X-Forwarded-For.
fn hygiene(mut request: Request<Incoming>, mode: ForwardedForMode) -> Request<Incoming> {
    let peer = RequestContext::get(&request)
        .and_then(|context| context.admitted())
        .map(|a| a.peer);
    let headers = request.headers_mut();
    clean_request_headers(headers);
    match peer {
        Some(peer) => forwarded::rewrite(headers, mode, peer),
        // Unreachable after admission; fail safe by sending no forwarding header at all.
        None => forwarded::rewrite(
            headers,
            ForwardedForMode::Remove,
            std::net::IpAddr::from([0, 0, 0, 0]),
        ),
    }
    request
}

/// Hands an admitted request to its route's stack.
#[derive(Clone)]
struct Dispatch {
    routes: Arc<Vec<RouteService>>,
}

impl Service<Request<Incoming>> for Dispatch {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = tower::util::Oneshot<RouteService, Request<Incoming>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let index = RequestContext::get(&request)
            .and_then(|context| context.admitted())
            .map(|a| a.route_index)
            .unwrap_or(usize::MAX);
        match self.routes.get(index) {
            Some(route) => route.clone().oneshot(request),
            // Admission always sets a valid index; answer rather than panic if it did not.
            None => BoxCloneSyncService::new(tower::service_fn(|_| async {
                Err::<Response<ResponseBody>, BoxError>(
                    GatewayError::new(ErrorCode::NoRoute, "no route for this path").into(),
                )
            }))
            .oneshot(request),
        }
    }
}
