//! Sends one attempt to the upstream over a pooled, verified connection and hands back its
//! answer with hop-by-hop headers removed and a stall guard on the body. Also the
//! general-purpose HTTPS client (hyper-util's) that the token client and the demo use.
//!
//! Invariant: the request goes to the route's configured authority only, whatever the
//! caller's `Host`; the answer's status, headers and bytes are Tango's own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use secrecy::ExposeSecret;
// On tokio's clock, as the access log's own duration.
use tokio::time::Instant;
use tower::Service;

use rustls::ClientConfig;

use super::connect::{alpn_protocols, Destination, TCP_KEEPALIVE};
use super::pool::{Pool, PoolSettings, ResponseFuture, POOL_IDLE_TIMEOUT};
use super::rejection_record::{observe, Observed, Peek};
use super::stall::StallGuard;
use super::tls::{client_config, TlsSetupError};
use crate::body::{Payload, ResponseBody};
use crate::config::{ProxyConfig, TlsConfig, UpstreamConfig, UpstreamUrl};
use crate::context::RequestContext;
use crate::error::{BoxError, ErrorCode, GatewayError};
use crate::headers::hop_by_hop;
use crate::metrics::{metrics, RouteLabels};
use crate::rt::PerWorker;

pub type HttpsClient = Client<HttpsConnector<EgressConnector>, Payload>;

/// The TCP connector of the general-purpose client: straight to the host, or through a
/// forward proxy's CONNECT tunnel (`oauth2.proxy`, `upstream.proxy`), hyper-util's `Tunnel`.
#[derive(Clone)]
pub enum EgressConnector {
    Direct(HttpConnector),
    Tunnel(Tunnel<HttpConnector>),
}

impl Service<Uri> for EgressConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            EgressConnector::Direct(http) => http.poll_ready(cx).map_err(Into::into),
            EgressConnector::Tunnel(tunnel) => tunnel.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        match self {
            EgressConnector::Direct(http) => {
                let connecting = http.call(destination);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            EgressConnector::Tunnel(tunnel) => {
                let connecting = tunnel.call(destination);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
        }
    }
}

/// Builds the pooled client of one upstream: keep-alive, ALPN h2/http1.1, verified TLS.
pub fn build_client(upstream: &UpstreamConfig) -> Result<HttpsClient, TlsSetupError> {
    build_https_client(
        &upstream.tls,
        upstream.connect_timeout,
        upstream.allow_insecure_upstream,
        upstream.proxy.as_ref(),
    )
}

/// One connection pool per serving worker for a route's upstream, sharing one TLS
/// configuration and its session cache: see [`PerWorker`].
pub fn build_worker_clients(
    route: &str,
    upstream: &UpstreamConfig,
    workers: usize,
) -> Result<PerWorker<Arc<Pool>>, TlsSetupError> {
    let mut tls = client_config(&upstream.tls)?;
    tls.alpn_protocols = alpn_protocols();
    let destination = Arc::new(Destination::new(upstream, Arc::new(tls)));
    // Every worker's pool counts into the route's one series.
    let stale_resends = metrics()
        .upstream_stale_resends
        .get_or_create(&RouteLabels {
            route: Arc::from(route),
        })
        .clone();
    PerWorker::try_new(workers, || {
        Ok(Arc::new(Pool::new(
            destination.clone(),
            PoolSettings::default(),
            stale_resends.clone(),
        )))
    })
}

/// The same client for any HTTPS endpoint (the token endpoint uses it too): plain `http`
/// only when `allow_insecure` says so.
pub fn build_https_client(
    tls: &TlsConfig,
    connect_timeout: Duration,
    allow_insecure: bool,
    proxy: Option<&ProxyConfig>,
) -> Result<HttpsClient, TlsSetupError> {
    Ok(https_client(
        client_config(tls)?,
        connect_timeout,
        allow_insecure,
        proxy,
    ))
}

fn https_client(
    tls: ClientConfig,
    connect_timeout: Duration,
    allow_insecure: bool,
    proxy: Option<&ProxyConfig>,
) -> HttpsClient {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(TCP_KEEPALIVE));
    let http = match proxy {
        None => EgressConnector::Direct(tcp),
        Some(proxy) => {
            let mut tunnel = Tunnel::new(proxy.url.clone(), tcp);
            if let Some(auth) = &proxy.auth {
                let value = crate::config::proxy_authorization(auth);
                if let Ok(mut value) = http::HeaderValue::from_str(value.expose_secret()) {
                    value.set_sensitive(true);
                    tunnel = tunnel.with_auth(value);
                }
            }
            EgressConnector::Tunnel(tunnel)
        }
    };
    let schemes = HttpsConnectorBuilder::new().with_tls_config(tls);
    let https = if allow_insecure {
        schemes
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http)
    } else {
        schemes
            .https_only()
            .enable_all_versions()
            .wrap_connector(http)
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

/// Where a route's requests go: scheme, authority and an optional base path.
#[derive(Debug, Clone)]
pub struct Target {
    scheme: Scheme,
    authority: Authority,
    /// The upstream URL's path without trailing `/` (empty for `https://host`).
    base_path: String,
    /// The route prefix removed from the path when `strip_prefix` is set.
    strip_prefix: Option<String>,
}

impl Target {
    pub fn new(url: &UpstreamUrl, strip_prefix: Option<&str>) -> Self {
        Target {
            scheme: url.scheme().clone(),
            authority: url.authority().clone(),
            base_path: url.base_path().to_owned(),
            strip_prefix: strip_prefix.filter(|p| *p != "/").map(str::to_owned),
        }
    }

    /// The absolute upstream URI for an admitted origin-form request target.
    pub fn uri_for(&self, origin: &Uri) -> Result<Uri, GatewayError> {
        // The usual route (no base path, nothing stripped) sends the caller's path and query
        // as they are: sharing hyper's parsed bytes saves a copy and a second parse.
        if self.base_path.is_empty() && self.strip_prefix.is_none() {
            if let Some(path_and_query) = origin.path_and_query() {
                if path_and_query.path().starts_with('/') {
                    return self.with_path_and_query(path_and_query.clone());
                }
            }
        }
        self.joined_uri_for(origin)
    }

    /// The general case of [`Target::uri_for`]: base path, then the path (less the stripped
    /// prefix), then the query.
    fn joined_uri_for(&self, origin: &Uri) -> Result<Uri, GatewayError> {
        let mut path = origin.path();
        if let Some(prefix) = &self.strip_prefix {
            path = path.strip_prefix(prefix.as_str()).unwrap_or(path);
        }
        let path = if path.is_empty() { "/" } else { path };
        let mut target = String::with_capacity(self.base_path.len() + path.len() + 32);
        target.push_str(&self.base_path);
        target.push_str(path);
        if let Some(query) = origin.query() {
            target.push('?');
            target.push_str(query);
        }
        let path_and_query = PathAndQuery::try_from(target)
            .map_err(|_| GatewayError::new(ErrorCode::BadRequest, "malformed request target"))?;
        self.with_path_and_query(path_and_query)
    }

    fn with_path_and_query(&self, path_and_query: PathAndQuery) -> Result<Uri, GatewayError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| GatewayError::new(ErrorCode::BadRequest, "malformed request target"))
    }

    /// Points an admitted request at the upstream (done once, before retry, so every layer
    /// per attempt sees the URI that is sent, which a DPoP proof's `htu` must match).
    pub fn retarget<B>(&self, mut request: Request<B>) -> Result<Request<B>, GatewayError> {
        let uri = self.uri_for(request.uri())?;
        *request.uri_mut() = uri;
        Ok(request)
    }
}

/// The innermost service of a route: one attempt, one upstream exchange. The request's URI
/// is already absolute ([`Target::retarget`]).
#[derive(Clone)]
pub struct Upstream {
    pools: PerWorker<Arc<Pool>>,
    body_timeout: Duration,
}

impl Upstream {
    pub fn new(pools: PerWorker<Arc<Pool>>, body_timeout: Duration) -> Self {
        Upstream {
            pools,
            body_timeout,
        }
    }
}

impl Service<Request<Payload>> for Upstream {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = UpstreamFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Payload>) -> Self::Future {
        // The pool picks HTTP/1.1 or h2 per connection (ALPN); an inbound h2 request must
        // not force h2 on an HTTP/1.1 upstream.
        *request.version_mut() = Version::HTTP_11;
        let clock = AttemptClock {
            context: RequestContext::get(&request).cloned(),
            started: Instant::now(),
        };
        // The serving worker's own pool: its connections' tasks run on this thread.
        UpstreamFuture {
            sent: self.pools.get().send(request),
            clock,
            body_timeout: self.body_timeout,
            peek: None,
        }
    }
}

/// One attempt's request context and start. Its time is added to the request's upstream
/// time (the access log's `upstream_ms`) when the answer's headers arrive or the exchange
/// fails, or, when the attempt is abandoned (attempt timeout, caller gone), on drop.
struct AttemptClock {
    context: Option<Arc<RequestContext>>,
    started: Instant,
}

impl AttemptClock {
    /// Records the attempt's time (once) and hands its context on.
    fn stop(&mut self) -> Option<Arc<RequestContext>> {
        let context = self.context.take();
        if let Some(context) = &context {
            context.add_upstream_time(self.started.elapsed());
        }
        context
    }
}

impl Drop for AttemptClock {
    fn drop(&mut self) {
        self.stop();
    }
}

pin_project_lite::pin_project! {
    /// The upstream's answer, as the caller will get it (a named future: no allocation per
    /// attempt beyond the pool's one boxed exchange).
    pub struct UpstreamFuture {
        sent: ResponseFuture,
        clock: AttemptClock,
        body_timeout: Duration,
        // A non-2xx answer whose cause needs its first bytes (§11).
        peek: Option<Peek>,
    }
}

impl Future for UpstreamFuture {
    type Output = Result<Response<ResponseBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(peek) = this.peek.as_mut() {
            return peek.poll(cx).map(Ok);
        }
        let response = ready!(this.sent.as_mut().poll(cx));
        let context = this.clock.stop();
        let response = response?;
        if let Some(context) = &context {
            context.set_upstream_status(response.status());
        }
        let (mut parts, body) = response.into_parts();
        hop_by_hop::remove_from_response(&mut parts.headers);
        // A body that stalls mid-stream ends with an error, which makes the server abort
        // the caller's response: a truncated body, never a clean end (§9).
        let body = StallGuard::new(body, *this.body_timeout).boxed_unsync();
        let response = Response::from_parts(parts, body);
        // The 2xx path ends here: one status check is all it pays for §11.
        if response.status().is_success() {
            return Poll::Ready(Ok(response));
        }
        match observe(response, context) {
            Observed::Done(response) => Poll::Ready(Ok(response)),
            Observed::Peek(mut peek) => {
                let polled = peek.poll(cx);
                if polled.is_pending() {
                    *this.peek = Some(peek);
                }
                polled.map(Ok)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, strip: Option<&str>) -> Option<Target> {
        Some(Target::new(&UpstreamUrl::parse(url, true).ok()?, strip))
    }

    fn uri_for(target: &Option<Target>, origin: &str) -> Option<String> {
        let origin: Uri = origin.parse().ok()?;
        target
            .as_ref()?
            .uri_for(&origin)
            .ok()
            .map(|u| u.to_string())
    }

    #[test]
    fn authority_comes_from_the_upstream_url() {
        let t = target("https://integration-api.tangocard.com", None);
        assert_eq!(
            uri_for(&t, "/raas/v2/catalogs?verbose=true").as_deref(),
            Some("https://integration-api.tangocard.com/raas/v2/catalogs?verbose=true")
        );
    }

    #[test]
    fn base_path_and_strip_prefix() {
        let t = target("https://api.example/base/", Some("/tango"));
        assert_eq!(
            uri_for(&t, "/tango/raas/v2").as_deref(),
            Some("https://api.example/base/raas/v2")
        );
        assert_eq!(
            uri_for(&t, "/tango").as_deref(),
            Some("https://api.example/base/")
        );
    }

    proptest::proptest! {
        /// The shared-bytes path of the usual route gives the URI the general path builds.
        #[test]
        fn sharing_the_callers_target_equals_joining_it(
            path in "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,12}){1,4}",
            query in proptest::option::of("[a-zA-Z0-9._~%!$&'()*+,;=:@/?-]{0,16}"),
        ) {
            let t = target("https://integration-api.tangocard.com", None);
            let Some(t) = t else { return Err(proptest::test_runner::TestCaseError::fail("target")) };
            let origin = match &query {
                Some(query) => format!("{path}?{query}"),
                None => path.clone(),
            };
            let origin: Uri = origin.parse().map_err(|_| {
                proptest::test_runner::TestCaseError::reject("not a request target")
            })?;
            let shared = t.uri_for(&origin).ok();
            let joined = t.joined_uri_for(&origin).ok();
            proptest::prop_assert!(shared.is_some());
            proptest::prop_assert_eq!(shared, joined);
        }
    }
}
