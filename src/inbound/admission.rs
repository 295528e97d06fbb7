//! Admission (PRODUCT.md §4.1–4.2): who may call, with what method and target, on which route.
//!
//! Invariant: a request leaves admission only with an allowed method, an origin-form target
//! whose path is normalised, a route whose sources admit the peer, and no browser marks.
//! It is not an open proxy: only origin-form targets pass (never absolute-form, `*` or
//! `CONNECT`).

use std::borrow::Cow;
use std::net::IpAddr;

use http::{Method, Request, Uri, Version};
use ipnet::IpNet;

use super::path::normalise;
use super::route::{is_allowed, RouteEntry, RouteTable, Selection};
use crate::context::RequestContext;
use crate::error::{ErrorCode, GatewayError};
use crate::headers::browser::is_browser_request;
use crate::orders::callers::CallerTable;

/// What admission decided for a request, handed straight to the next step: the route it
/// goes to (with its target) and the peer's canonical address.
#[derive(Debug)]
pub(crate) struct Admitted<'a, T> {
    pub route: &'a RouteEntry<T>,
    pub peer: IpAddr,
}

/// Who may call what; `T` is what each route's requests go to.
#[derive(Debug, Clone)]
pub(crate) struct AdmissionPolicy<T> {
    pub allow: Vec<IpNet>,
    pub routes: RouteTable<T>,
    pub reject_browser_requests: bool,
    /// Named callers (§10); when configured, every request must come from one.
    pub callers: CallerTable,
}

impl<T> AdmissionPolicy<T> {
    /// Admits the request or says why not; on success the request's target is rewritten to
    /// the normalised origin-form path (and its query), and its context names the route
    /// (for the access log and metrics).
    pub(crate) fn admit<B>(
        &self,
        request: &mut Request<B>,
    ) -> Result<Admitted<'_, T>, GatewayError> {
        let peer = RequestContext::get(request)
            .and_then(|context| context.peer())
            .map(|peer| peer.ip().to_canonical())
            .ok_or_else(|| GatewayError::new(ErrorCode::ForbiddenSource, "unknown peer"))?;
        check_method(request.method())?;
        check_target_form(request)?;
        if !is_allowed(&self.allow, peer) {
            return Err(forbidden_source());
        }
        let caller = if self.callers.is_configured() {
            match self.callers.identify(peer) {
                Some(caller) => Some(caller),
                None => {
                    return Err(GatewayError::new(
                        ErrorCode::CallerUnknown,
                        "this source address is none of the configured callers",
                    ))
                }
            }
        } else {
            None
        };
        let path = normalise(request.uri().path())
            .map_err(|why| GatewayError::new(ErrorCode::BadPath, why.to_string()))?;
        let caller_name = caller.map(|caller| &*caller.name);
        let route = match self.routes.select_for(&path, peer, caller_name) {
            Selection::Route(route) => route,
            Selection::ForbiddenSource => return Err(forbidden_source()),
            Selection::NoRoute => {
                return Err(GatewayError::new(
                    ErrorCode::NoRoute,
                    "no route for this path",
                ))
            }
        };
        if self.reject_browser_requests && is_browser_request(request.headers()) {
            return Err(GatewayError::new(
                ErrorCode::BrowserRequest,
                "browser-context calls are refused: call from a server",
            ));
        }
        // Rebuilt only when normalisation changed the path or the target is an h2 absolute
        // one (the common case keeps hyper's parsed URI, allocation-free).
        let uri = request.uri();
        let absolute = uri.scheme().is_some() || uri.authority().is_some();
        if absolute || matches!(path, Cow::Owned(_)) {
            *request.uri_mut() = origin_form(&path, request.uri().query())?;
        }
        let context = RequestContext::of(request);
        context.set_route(route.name().clone());
        if let Some(caller) = caller {
            context.set_caller(caller.clone());
        }
        Ok(Admitted { route, peer })
    }
}

fn forbidden_source() -> GatewayError {
    GatewayError::new(
        ErrorCode::ForbiddenSource,
        "this source address may not use this route",
    )
}

fn check_method(method: &Method) -> Result<(), GatewayError> {
    const ALLOWED: [Method; 7] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    if ALLOWED.contains(method) {
        Ok(())
    } else {
        Err(GatewayError::new(
            ErrorCode::MethodNotAllowed,
            "method not allowed (CONNECT, TRACE and extension methods are refused)",
        ))
    }
}

/// Only origin-form targets (`GET /path`, PRODUCT.md §9): absolute-form over HTTP/1 and the
/// asterisk form (`OPTIONS *`) are refused whatever they name. HTTP/2 always carries scheme
/// and authority pseudo-headers, which are ignored like `Host`; its `:path` must still be an
/// absolute path.
fn check_target_form<B>(request: &Request<B>) -> Result<(), GatewayError> {
    let uri = request.uri();
    let absolute = uri.scheme().is_some() || uri.authority().is_some();
    if absolute && request.version() != Version::HTTP_2 {
        return Err(GatewayError::new(
            ErrorCode::BadRequest,
            "absolute-form request targets are refused: this gateway is not a forward proxy",
        ));
    }
    if !uri.path().starts_with('/') {
        return Err(GatewayError::new(
            ErrorCode::BadRequest,
            "only origin-form request targets (an absolute path) are accepted",
        ));
    }
    Ok(())
}

fn origin_form(path: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    target
        .parse::<Uri>()
        .map_err(|_| GatewayError::new(ErrorCode::BadRequest, "malformed request target"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn policy() -> AdmissionPolicy<&'static str> {
        let net = |s: &str| s.parse::<IpNet>().unwrap_or_else(|_| IpNet::default());
        AdmissionPolicy {
            allow: vec![net("10.0.0.0/8"), net("127.0.0.0/8")],
            routes: RouteTable::from_entries([
                ("raas", "/raas/v2", None, "raas target"),
                (
                    "orders",
                    "/raas/v2/orders",
                    Some(vec![net("10.1.0.0/16")]),
                    "orders target",
                ),
                (
                    "admin",
                    "/admin",
                    Some(vec![net("10.9.0.0/16")]),
                    "admin target",
                ),
            ]),
            reject_browser_requests: true,
            callers: CallerTable::default(),
        }
    }

    fn request(method: Method, target: &str, peer: &str) -> Request<()> {
        let mut request = Request::builder()
            .method(method)
            .uri(target)
            .body(())
            .unwrap_or_default();
        let peer: SocketAddr = format!("{peer}:40000")
            .parse()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        request
            .extensions_mut()
            .insert(Arc::new(RequestContext::from_peer(peer)));
        request
    }

    fn code(result: Result<Admitted<'_, &str>, GatewayError>) -> Option<ErrorCode> {
        result.err().map(|e| e.code)
    }

    #[test]
    fn longest_prefix_wins_when_sources_admit() {
        let policy = policy();
        let mut req = request(Method::POST, "/raas/v2/orders?x=1", "10.1.2.3");
        let admitted = policy.admit(&mut req).map(|a| a.route.name().to_string());
        assert_eq!(admitted.as_deref(), Ok("orders"));
        assert_eq!(req.uri().to_string(), "/raas/v2/orders?x=1");
    }

    #[test]
    fn narrower_route_falls_back_to_wider_for_other_sources() {
        let mut req = request(Method::GET, "/raas/v2/orders", "10.2.0.1");
        let admitted = policy().admit(&mut req).map(|a| a.route.name().to_string());
        assert_eq!(admitted.as_deref(), Ok("raas"));
    }

    #[test]
    fn refusals() {
        let policy = policy();
        let cases = [
            (
                request(Method::GET, "/raas/v2/x", "192.168.1.1"),
                ErrorCode::ForbiddenSource,
            ),
            (
                request(Method::GET, "/admin/x", "10.1.1.1"),
                ErrorCode::ForbiddenSource,
            ),
            (
                request(Method::GET, "/nothing", "10.1.1.1"),
                ErrorCode::NoRoute,
            ),
            (
                request(Method::CONNECT, "/raas/v2", "10.1.1.1"),
                ErrorCode::MethodNotAllowed,
            ),
            (
                request(Method::TRACE, "/raas/v2", "10.1.1.1"),
                ErrorCode::MethodNotAllowed,
            ),
            (
                request(Method::GET, "http://evil.example/raas/v2", "10.1.1.1"),
                ErrorCode::BadRequest,
            ),
            (
                request(Method::GET, "/raas/v2/%2e%2e/%2e%2e/admin", "10.1.1.1"),
                ErrorCode::ForbiddenSource,
            ),
            (
                request(Method::GET, "/raas%2fv2", "10.1.1.1"),
                ErrorCode::BadPath,
            ),
            (
                request(Method::GET, "/raas/v2/..;/..;/admin/x", "10.1.1.1"),
                ErrorCode::BadPath,
            ),
            (
                request(Method::GET, "/raas/v2/%c0%ae%c0%ae/admin", "10.1.1.1"),
                ErrorCode::BadPath,
            ),
            (
                request(Method::GET, "/raas/v2/%0d%0a", "10.1.1.1"),
                ErrorCode::BadPath,
            ),
            (
                request(Method::OPTIONS, "*", "10.1.1.1"),
                ErrorCode::BadRequest,
            ),
            // The target form is judged before the source, like absolute-form targets.
            (
                request(Method::OPTIONS, "*", "192.168.1.1"),
                ErrorCode::BadRequest,
            ),
        ];
        for (mut req, want) in cases {
            let target = req.uri().to_string();
            assert_eq!(code(policy.admit(&mut req)), Some(want), "{target}");
        }
    }

    #[test]
    fn an_escaped_letter_selects_the_route_the_plain_path_selects() {
        // `%6f` is `o`: the origin reads `/raas/v2/orders`, so admission must too.
        for peer in ["10.1.2.3", "10.2.0.1"] {
            let mut plain = request(Method::GET, "/raas/v2/orders", peer);
            let mut escaped = request(Method::GET, "/raas/v2/%6frders", peer);
            let policy = policy();
            let want = policy.admit(&mut plain).map(|a| a.route.name().to_string());
            let got = policy
                .admit(&mut escaped)
                .map(|a| a.route.name().to_string());
            assert_eq!(got, want, "{peer}");
            assert_eq!(escaped.uri().path(), "/raas/v2/orders");
        }
    }

    #[test]
    fn traversal_cannot_reach_a_narrower_route() {
        // `/raas/v2/x/../orders` normalises to the orders route, which this peer may not use,
        // so it lands on the wider route exactly as the plain path would.
        let mut req = request(Method::GET, "/raas/v2/x/%2e%2e/orders", "10.2.0.1");
        let admitted = policy().admit(&mut req).map(|a| a.route.name().to_string());
        assert_eq!(admitted.as_deref(), Ok("raas"));
        assert_eq!(req.uri().path(), "/raas/v2/orders");
    }

    #[test]
    fn http2_targets_carry_scheme_and_authority_and_are_admitted_as_origin_form() {
        let mut req = request(
            Method::GET,
            "https://gateway.internal/raas/v2/./orders?x=1",
            "10.2.0.1",
        );
        *req.version_mut() = Version::HTTP_2;
        let admitted = policy().admit(&mut req).map(|a| a.route.name().to_string());
        assert_eq!(admitted.as_deref(), Ok("raas"));
        assert_eq!(req.uri().to_string(), "/raas/v2/orders?x=1");
    }

    #[test]
    fn non_ascii_paths_are_kept_as_sent() {
        for (target, want) in [
            ("/raas/v2/café", "/raas/v2/café"),
            ("/raas/v2/caf%c3%a9", "/raas/v2/caf%c3%a9"),
            // Only the unreserved escape is decoded.
            ("/raas/v2/./café%41", "/raas/v2/caféA"),
        ] {
            let mut req = request(Method::GET, target, "10.2.0.1");
            let admitted = policy().admit(&mut req).map(|a| a.route.name().to_string());
            assert_eq!(admitted.as_deref(), Ok("raas"), "{target}");
            assert_eq!(req.uri().path(), want, "{target}");
        }
    }

    #[test]
    fn browser_calls_are_refused() {
        let mut req = request(Method::POST, "/raas/v2/orders", "10.2.0.1");
        req.headers_mut().insert(
            "origin",
            http::HeaderValue::from_static("https://app.example"),
        );
        assert_eq!(
            code(policy().admit(&mut req)),
            Some(ErrorCode::BrowserRequest)
        );
    }
}
