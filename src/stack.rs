//! THE request stack: every layer a request passes, in order, built in one place.
//!
//! Read top to bottom. Everything below `retry` happens once per attempt, so each attempt
//! gets fresh credentials and its own timeout.

use std::future::Ready;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use http::{Request, Response};
use hyper::body::Incoming;
use tower::util::{BoxCloneService, BoxCloneSyncService, Oneshot};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use crate::access_log::AccessLogLayer;
use crate::auth::oauth::TokenSources;
use crate::auth::{AuthorizeLayer, Credentials, CredentialsSetupError};
use crate::body::ResponseBody;
use crate::config::{Config, ForwardedForMode, InboundConfig, RouteConfig};
use crate::deadline::SetDeadlineLayer;
use crate::error::BoxError;
use crate::headers::{clean_request_headers, forwarded, CALLER_CREDENTIALS};
use crate::inbound::admission::AdmissionPolicy;
use crate::inbound::body::PrepareBodyLayer;
use crate::inbound::limit::InFlightLimitLayer;
use crate::inbound::route::RouteTable;
use crate::orders::callers::CallerTable;
use crate::orders::guard::OrderGuardLayer;
use crate::orders::{OrderSafety, OrderSetupError, OrderStores};
use crate::request_id::RequestIdLayer;
use crate::rescue::RescueLayer;
use crate::retry::{RetryPolicy, RouteRetry};
use crate::server_span::ServerSpanLayer;
use crate::upstream::attempt_metrics::AttemptMetricsLayer;
use crate::upstream::attempt_span::AttemptSpanLayer;
use crate::upstream::client::{build_worker_clients, Target, Upstream};
use crate::upstream::timeout::AttemptTimeoutLayer;
use crate::upstream::tls::TlsSetupError;

pub use crate::inbound::GatewayService;
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
    #[error("{0}")]
    Orders(#[from] OrderSetupError),
}

/// One configuration, built, for a single use (`check`, `doctor`): the whole inbound service
/// and the OAuth credentials it uses (whose refreshers the caller starts).
pub struct Gateway {
    pub service: GatewayService,
    pub tokens: Arc<TokenSources>,
}

/// Builds the service that answers every inbound request of one configuration.
pub fn build(config: &Config) -> Result<Gateway, BuildError> {
    let process = ProcessWide {
        orders: Arc::new(OrderStores::checking()),
        ..ProcessWide::new(config, crate::rt::default_count())
    };
    let routing = build_routing(config, None, &process)?;
    Ok(Gateway {
        service: front(routing.service),
        tokens: routing.tokens,
    })
}

/// The part of the stack a reload replaces: admission, hygiene and every route. Requests
/// reach it through [`front`], which stays in place across reloads.
pub type RoutingService = BoxCloneSyncService<Request<Incoming>, Response<ResponseBody>, BoxError>;

/// What every configuration generation shares, fixed for the life of the process: set up
/// once at start-up and handed to each build, so a reload can never disagree with it.
#[derive(Clone)]
pub struct ProcessWide {
    /// The concurrency limit (§12): every route of every generation takes its permits here.
    pub capacity: InFlightLimitLayer,
    /// Serving workers: each route gets one connection pool per worker.
    pub workers: usize,
    /// The order store and audit file (§10): a reload keeps every reference and window.
    pub orders: Arc<OrderStores>,
}

impl ProcessWide {
    pub fn new(config: &Config, workers: usize) -> Self {
        ProcessWide {
            capacity: InFlightLimitLayer::new(config.inbound.max_concurrent_requests),
            workers,
            orders: Arc::new(OrderStores::default()),
        }
    }
}

/// One configuration's routing and the OAuth credentials its routes use.
pub struct Routing {
    pub service: RoutingService,
    pub tokens: Arc<TokenSources>,
}

/// Builds the reloadable part of the stack. `previous` (on reload) lends its tokens, DPoP
/// nonces and ephemeral DPoP keys to credentials that did not change, so a reload costs no
/// token request.
pub fn build_routing(
    config: &Config,
    previous: Option<&TokenSources>,
    process: &ProcessWide,
) -> Result<Routing, BuildError> {
    let mut tokens = TokenSources::new(&config.token_cache, previous);
    let safety = process.orders.safety_for(config)?;
    let routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(index, route)| {
            route_stack(
                index,
                route,
                &config.inbound,
                process,
                &mut tokens,
                safety.as_ref(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    tokens.forget_previous();
    let service = Router {
        // Behind an Arc: the routing service is cloned for every request.
        policy: Arc::new(AdmissionPolicy {
            allow: config.inbound.allow.clone(),
            routes: RouteTable::new(&config.routes, routes),
            reject_browser_requests: config.inbound.reject_browser_requests,
            callers: CallerTable::new(&config.callers),
        }),
        forwarded_for: config.forwarded_for,
    };
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
        // With tracing on, the request's server span (the caller's trace continued); it
        // sees the final status, like the access log.
        .layer(ServerSpanLayer)
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
    process: &ProcessWide,
    tokens: &mut TokenSources,
    safety: Option<&Arc<OrderSafety>>,
) -> Result<RouteService, BuildError> {
    let name = route.name.clone();
    let upstream = &route.upstream;
    let clients = build_worker_clients(&name, upstream, process.workers).map_err(|source| {
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
    let replayable = route.retry.max_attempts > 1 || credentials.needs_replayable_body();
    let strip = route.strip_prefix.then_some(route.path_prefix.as_str());
    // Behind an Arc: the route's stack is cloned for every request.
    let target = Arc::new(Target::new(&upstream.url, strip));
    let retry = Arc::new(RouteRetry::new(
        Arc::from(name.as_str()),
        route.retry.clone(),
    ));
    // The upstream's clock as its answers tell it (§11); shared with its token endpoint's
    // if they are one origin.
    let server_clock = crate::clock_skew::clocks().register(upstream.url.uri());
    let guard = safety.map(|safety| OrderGuardLayer {
        safety: safety.clone(),
        route: Arc::from(name.as_str()),
        lease: order_lease(route),
    });
    let service = ServiceBuilder::new()
        // The route's total time budget, fixed before anything else waits (the body, the
        // attempts and the backoff between them all keep to it).
        .layer(SetDeadlineLayer {
            budget: upstream.deadline,
        })
        // Size limit and per-chunk read timeout; the body is kept in memory only if a retry
        // could resend it.
        .layer(PrepareBodyLayer {
            max_body_bytes: inbound.max_body_bytes,
            body_read_timeout: inbound.body_read_timeout,
            buffer: replayable,
            buffer_posts: guard.is_some(),
        })
        // Order safety (§10), when configured: scoping, then for orders the ledger and the
        // spend limit, all before a permit is taken (a wait on an order in flight holds none).
        .option_layer(guard)
        // Beyond max_concurrent_requests answer 503 at once instead of queueing. Below the
        // body: a request whose buffered body has not arrived holds no permit, so stalled
        // uploads cannot take capacity from other callers (a streamed body takes its permit
        // as it starts to flow, each chunk bounded by body_read_timeout).
        .layer(process.capacity.clone())
        // The absolute upstream URI, fixed before any attempt (a DPoP `htu` must match it).
        .filter(move |request| target.retarget(request))
        .retry(RetryPolicy::new(retry))
        // ── per attempt below ──
        .layer(AuthorizeLayer::new(credentials))
        .layer(AttemptMetricsLayer::new(Arc::from(name.as_str())))
        // With tracing on, each attempt's client span and its `traceparent` for Tango.
        .layer(AttemptSpanLayer::new(Arc::from(name.as_str())))
        // Every answer's `Date`, below the credentials so a DPoP proof resent after a
        // refusal is signed with the offset that refusal just told.
        .map_response(move |response: Response<ResponseBody>| {
            if let Some(clock) = &server_clock {
                clock.observe(response.headers());
            }
            response
        })
        .layer(AttemptTimeoutLayer::new(upstream.timeout))
        .service(Upstream::new(clients, upstream.body_timeout));
    Ok(BoxCloneSyncService::new(service))
}

/// The longest one order of `route` may hold its `externalRefID`: its deadline, or every
/// attempt's connect and answer timeouts and the backoffs between them, with a margin.
fn order_lease(route: &RouteConfig) -> Duration {
    let upstream = &route.upstream;
    upstream.deadline.unwrap_or_else(|| {
        let attempts = route.retry.max_attempts.max(1);
        (upstream.connect_timeout + upstream.timeout) * attempts
            + route.retry.max_backoff * (attempts - 1)
            + Duration::from_secs(5)
    })
}

/// Admission, hygiene, then the admitted route's own stack: admission's decision (the
/// route and the peer) is used right here, never read back from the request.
#[derive(Clone)]
struct Router {
    policy: Arc<AdmissionPolicy<RouteService>>,
    forwarded_for: ForwardedForMode,
}

impl Service<Request<Incoming>> for Router {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Either<
        Ready<Result<Response<ResponseBody>, BoxError>>,
        Oneshot<RouteService, Request<Incoming>>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        // Who may call what: method, target form, path, source allowlist, route, browser.
        let admitted = match self.policy.admit(&mut request) {
            Ok(admitted) => admitted,
            Err(refused) => return Either::Left(std::future::ready(Err(refused.into()))),
        };
        // Nothing of the caller's that Tango must not see; X-Forwarded-For IP-only.
        let headers = request.headers_mut();
        clean_request_headers(headers);
        forwarded::rewrite(headers, self.forwarded_for, admitted.peer);
        Either::Right(admitted.route.target().clone().oneshot(request))
    }
}
