//! `tango-gateway doctor` (PRODUCT.md §2): checks a real deployment route by route, step by
//! step — DNS, TCP, TLS handshake and server chain, client certificate accepted, token fetch,
//! one authenticated call — each PASS, FAIL with a hint, or SKIP.
//!
//! Pieces: [`network`] (DNS, TCP), [`tls`] (handshake, chain), [`client_cert`] (the first read
//! after the handshake), [`token`] (one token through the gateway's client), [`call`] (one GET
//! through the gateway's own stack), [`report`] (results and their printing), [`hints`] (what
//! a failure means).
//!
//! Invariants: steps run in order and a step whose prerequisite failed is skipped, naming it;
//! steps 2 to 4 share one connection, so what is reported is what one connection saw; nothing
//! printed holds a secret, token, proof or key.

pub mod call;
pub mod client_cert;
pub mod hints;
pub mod network;
pub mod report;
pub mod tls;
pub mod token;

use http::uri::PathAndQuery;
use http::Uri;

use crate::config::{Config, RouteConfig};
use crate::inbound::path::{has_prefix, normalise};
use crate::upstream::client::Target;
pub use hints::Hint;
use network::Endpoint;
pub use report::{Outcome, Report, RouteReport, Step, StepResult};

/// Sent on doctor's own requests, so they can be told apart in Tango's logs.
pub const DOCTOR_USER_AGENT: &str = concat!("tango-gateway-doctor/", env!("CARGO_PKG_VERSION"));
/// Appended to a route's prefix for the default call: a read-only RaaS v2 endpoint.
const DEFAULT_ENDPOINT: &str = "catalogs";

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// One route by name; every route, in file order, when `None`.
    pub route: Option<String>,
    /// The path of the authenticated call (a harmless GET under the route's prefix); default:
    /// the route's `path_prefix` joined with `catalogs`.
    pub path: Option<String>,
}

/// The options do not fit the configuration (a usage error: exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DoctorError {
    #[error("--route {name}: no such route (routes: {known})")]
    UnknownRoute { name: String, known: String },
    #[error("--path {path}: {why}")]
    BadPath { path: String, why: String },
}

/// Reported as the run goes, for a command that prints while it works.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A route starts (its steps are still empty).
    Route(&'a RouteReport),
    Step(&'a StepResult),
}

/// Runs every step for the chosen routes.
pub async fn run(config: &Config, options: &Options) -> Result<Report, DoctorError> {
    run_with(config, options, |_| {}).await
}

/// [`run`], telling `progress` about each route and step as soon as it is known.
pub async fn run_with(
    config: &Config,
    options: &Options,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Report, DoctorError> {
    let routes = chosen_routes(config, options.route.as_deref())?;
    // Every path is checked before anything goes on the network.
    let paths = routes
        .iter()
        .map(|route| call_path(route, options.path.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = Report::default();
    for (route, path) in routes.into_iter().zip(paths) {
        report
            .routes
            .push(diagnose(config, route, path.as_str(), &mut progress).await);
    }
    Ok(report)
}

fn chosen_routes<'a>(
    config: &'a Config,
    name: Option<&str>,
) -> Result<Vec<&'a RouteConfig>, DoctorError> {
    let Some(name) = name else {
        return Ok(config.routes.iter().collect());
    };
    match config.routes.iter().find(|route| route.name == name) {
        Some(route) => Ok(vec![route]),
        None => Err(DoctorError::UnknownRoute {
            name: name.to_owned(),
            known: config
                .routes
                .iter()
                .map(|route| route.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The call's origin-form target: `--path`, which must lie under the route's prefix (the
/// stack would answer `no_route` otherwise), or the default.
pub fn call_path(route: &RouteConfig, path: Option<&str>) -> Result<PathAndQuery, DoctorError> {
    let Some(path) = path else {
        let prefix = route.path_prefix.trim_end_matches('/');
        // A catch-all route `/` usually fronts the whole API: use the RaaS v2 path then.
        let prefix = if prefix.is_empty() {
            "/raas/v2"
        } else {
            prefix
        };
        let default = format!("{prefix}/{DEFAULT_ENDPOINT}");
        return PathAndQuery::try_from(default.as_str()).map_err(|err| DoctorError::BadPath {
            path: default.clone(),
            why: err.to_string(),
        });
    };
    let bad = |why: String| DoctorError::BadPath {
        path: path.to_owned(),
        why,
    };
    if !path.starts_with('/') {
        return Err(bad("must start with `/`".to_owned()));
    }
    let parsed = PathAndQuery::try_from(path).map_err(|err| bad(err.to_string()))?;
    let normalised = normalise(parsed.path()).map_err(|err| bad(err.to_string()))?;
    if !has_prefix(&normalised, &route.path_prefix) {
        return Err(bad(format!(
            "not under route {}'s path_prefix {} (pick the route with --route)",
            route.name, route.path_prefix
        )));
    }
    Ok(parsed)
}

/// The path the gateway sends upstream for `path` (the upstream URL's base path added, the
/// route's prefix removed with `strip_prefix`), for the probe that goes there directly.
fn upstream_target(route: &RouteConfig, path: &str) -> String {
    let strip = route.strip_prefix.then_some(route.path_prefix.as_str());
    let target = Target::new(&route.upstream.url, strip);
    path.parse::<Uri>()
        .ok()
        .and_then(|origin| target.uri_for(&origin).ok())
        .and_then(|uri| uri.path_and_query().map(ToString::to_string))
        .unwrap_or_else(|| path.to_owned())
}

/// The steps of one route, in order.
async fn diagnose(
    config: &Config,
    route: &RouteConfig,
    path: &str,
    progress: &mut impl FnMut(Progress<'_>),
) -> RouteReport {
    let mut run = RouteRun {
        report: RouteReport {
            route: route.name.clone(),
            upstream: route.upstream.url.to_string(),
            auth: route.auth.kind(),
            steps: Vec::new(),
        },
        failed: None,
    };
    progress(Progress::Route(&run.report));
    let upstream = &route.upstream;
    let endpoint = Endpoint::of(upstream.url.uri());
    // With a proxy, DNS and TCP are the proxy's; the tunnel step then reaches the upstream.
    let dialled = match &upstream.proxy {
        Some(proxy) => Endpoint::of(&proxy.url),
        None => endpoint.clone(),
    };

    let addrs = match &dialled {
        Some(endpoint) => run.record(network::resolve(endpoint).await, progress),
        None => {
            run.push(
                StepResult::fail(Step::Dns, "upstream.url has no host", Hint::Setup),
                progress,
            );
            None
        }
    };
    let tcp = match &addrs {
        Some(addrs) => run.record(
            network::connect(addrs, upstream.connect_timeout).await,
            progress,
        ),
        None => {
            run.skip(Step::Tcp, progress);
            None
        }
    };
    let tcp = match (tcp, &upstream.proxy, &endpoint) {
        (Some(tcp), Some(proxy), Some(endpoint)) => run.record(
            network::tunnel(tcp, endpoint, proxy, upstream.connect_timeout).await,
            progress,
        ),
        (None, Some(_), _) => {
            run.skip(Step::Proxy, progress);
            None
        }
        (tcp, _, _) => tcp,
    };
    let stream = match (tcp, &endpoint) {
        (Some(tcp), Some(endpoint)) if endpoint.tls => {
            run.record(tls::handshake(tcp, endpoint, &upstream.tls).await, progress)
        }
        (Some(_), _) => {
            run.not_tls(Step::Tls, progress);
            None
        }
        (None, _) => {
            run.skip(Step::Tls, progress);
            None
        }
    };
    match (stream, &endpoint) {
        (Some(stream), Some(endpoint)) => {
            let identity = upstream.tls.client_identity.as_ref();
            let target = upstream_target(route, path);
            let result =
                client_cert::probe(stream, endpoint, &target, identity, upstream.timeout).await;
            run.push(result, progress);
        }
        _ if run.failed.is_none() => run.not_tls(Step::ClientCert, progress),
        _ => run.skip(Step::ClientCert, progress),
    }
    // The token endpoint may be another host: its step does not depend on the upstream's.
    run.push(token::fetch(&route.auth).await, progress);
    match run.failed {
        Some(_) => run.skip(Step::Call, progress),
        None => run.push(call::call(config, route, path).await, progress),
    }
    run.report
}

/// One route's results so far, and the first step that failed.
struct RouteRun {
    report: RouteReport,
    failed: Option<Step>,
}

impl RouteRun {
    fn push(&mut self, result: StepResult, progress: &mut impl FnMut(Progress<'_>)) {
        if result.outcome == Outcome::Fail && self.failed.is_none() {
            self.failed = Some(result.step);
        }
        progress(Progress::Step(&result));
        self.report.steps.push(result);
    }

    /// Keeps a step's result and hands on what the next step needs.
    fn record<T>(
        &mut self,
        (result, next): (StepResult, Option<T>),
        progress: &mut impl FnMut(Progress<'_>),
    ) -> Option<T> {
        self.push(result, progress);
        next
    }

    /// SKIP, naming the first step that failed.
    fn skip(&mut self, step: Step, progress: &mut impl FnMut(Progress<'_>)) {
        let result = match self.failed {
            Some(failed) => StepResult::skip_after(step, failed),
            None => StepResult::skip(step, "not applicable"),
        };
        self.push(result, progress);
    }

    /// SKIP for a plain-http upstream, which has no TLS to check.
    fn not_tls(&mut self, step: Step, progress: &mut impl FnMut(Progress<'_>)) {
        let result = StepResult::skip(step, "plain http upstream (allow_insecure_upstream)");
        self.push(result, progress);
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
