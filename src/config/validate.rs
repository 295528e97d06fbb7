//! From the serde mirror to the validated `Config`: defaults applied, every rule of §3 checked,
//! every problem recorded with its key path (validation carries on after a failure).
//!
//! Invariant: `Some(Config)` is returned only when no problem was recorded.

use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use ipnet::IpNet;

use super::errors::Problems;
use super::fields::{choice, duration, optional, text};
use super::log_level::check_log_level;
use super::model::{
    AdminConfig, Config, ForwardedForMode, InboundConfig, LogConfig, LogFormat, RetryConfig,
    RouteConfig, TokenCacheConfig, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE,
};
use super::net::parse_listen;
use super::orders::{audit, callers, check_route_callers, orders};
use super::raw::{RawConfig, RawForwardedFor, RawInbound};
use super::retry::retry;
use super::route::{cidr_list, route, Inherited};
use super::telemetry::telemetry;
use super::token_cache::token_cache;

/// Loopback by default: a gateway that injects credentials must not be reachable from the
/// network until someone says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
pub(super) const DEFAULT_LOG_LEVEL: &str = "info";
/// `inbound.allow` when absent: this host only (an empty list, when written, denies all).
pub const DEFAULT_ALLOW: [&str; 2] = ["127.0.0.0/8", "::1/128"];

pub(crate) fn validate(
    raw: RawConfig,
    source: &Path,
    now: SystemTime,
    p: &mut Problems,
) -> Option<Config> {
    let listen = socket(p, "listen", text(&raw.listen), DEFAULT_LISTEN);
    let admin = raw.admin.unwrap_or_default();
    let admin_listen = socket(p, "admin.listen", text(&admin.listen), DEFAULT_ADMIN_LISTEN);
    let log = raw.log.unwrap_or_default();
    let format = choice(
        p,
        "log.format",
        &log.format,
        &[("json", LogFormat::Json), ("pretty", LogFormat::Pretty)],
        LogFormat::Json,
    );
    let level = optional(p, "log.level", &log.level)
        .map(|l| l.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string()))
        .and_then(|level| match check_log_level(&level) {
            Ok(()) => Some(level),
            Err(why) => {
                p.add("log.level", why);
                None
            }
        });
    let telemetry = telemetry(p, raw.telemetry);
    let inbound = inbound(p, raw.inbound.unwrap_or_default());
    let forwarded_for = forwarded_for(p, raw.forwarded_for.unwrap_or_default());
    let token_cache = token_cache(p, raw.token_cache.unwrap_or_default());
    let shutdown_grace = duration(
        p,
        "shutdown_grace",
        &raw.shutdown_grace,
        DEFAULT_SHUTDOWN_GRACE,
    );
    let default_retry = match &raw.retry {
        None => Some(RetryConfig::default()),
        Some(r) => retry(p, "retry", &RetryConfig::default(), r),
    };
    // Routes are still checked when a top-level block failed, so every problem shows at once.
    let fallback_retry = RetryConfig::default();
    let inherited = Inherited {
        retry: default_retry.as_ref().unwrap_or(&fallback_retry),
        token_cache: token_cache.as_ref().unwrap_or(&TokenCacheConfig::Memory),
        now,
    };
    let raw_routes = raw.routes.unwrap_or_default();
    if raw_routes.is_empty() {
        p.add("routes", "at least one route is required");
    }
    let routes: Vec<Option<RouteConfig>> = raw_routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(p, &format!("routes[{i}]"), r, &inherited))
        .collect();
    check_duplicates(p, &routes);
    // Route names are checked against every caller written, valid or not, so a caller with
    // a problem of its own does not also make each route naming it fail.
    let caller_names: Option<Vec<String>> = raw.callers.as_ref().map(|list| {
        list.iter()
            .filter_map(|c| text(&c.name).map(|name| name.trim().to_owned()))
            .collect()
    });
    check_route_callers(p, caller_names.as_deref(), &routes);
    let callers = callers(p, raw.callers);
    let orders = orders(p, raw.orders);
    let audit = audit(p, raw.audit);
    if p.len() > 0 {
        return None;
    }
    Some(Config {
        source: source.to_path_buf(),
        listen: listen?,
        admin: AdminConfig {
            listen: admin_listen?,
        },
        log: LogConfig {
            format: format?,
            level: level?,
        },
        telemetry: telemetry?,
        inbound: inbound?,
        forwarded_for: forwarded_for?,
        token_cache: token_cache?,
        shutdown_grace: shutdown_grace?,
        callers: callers?,
        orders: orders?,
        audit: audit?,
        routes: routes.into_iter().collect::<Option<Vec<_>>>()?,
    })
}

fn socket(
    p: &mut Problems,
    path: &str,
    v: Option<&str>,
    default: &str,
) -> Option<std::net::SocketAddr> {
    parse_listen(v.unwrap_or(default))
        .map_err(|e| p.add(path, e))
        .ok()
}

fn inbound(p: &mut Problems, raw: RawInbound) -> Option<InboundConfig> {
    let allow = match &raw.allow {
        Some(list) => cidr_list(p, "inbound.allow", list),
        None => DEFAULT_ALLOW
            .iter()
            .map(|s| s.parse::<IpNet>().ok())
            .collect(),
    };
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        p.add("inbound.max_body_bytes", "must be greater than zero");
    }
    let max_concurrent_requests = raw
        .max_concurrent_requests
        .unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS);
    if max_concurrent_requests == 0 {
        p.add(
            "inbound.max_concurrent_requests",
            "must be greater than zero",
        );
    }
    let header_read_timeout = duration(
        p,
        "inbound.header_read_timeout",
        &raw.header_read_timeout,
        DEFAULT_HEADER_READ_TIMEOUT,
    );
    let body_read_timeout = duration(
        p,
        "inbound.body_read_timeout",
        &raw.body_read_timeout,
        DEFAULT_BODY_READ_TIMEOUT,
    );
    let idle_timeout = duration(
        p,
        "inbound.idle_timeout",
        &raw.idle_timeout,
        DEFAULT_IDLE_TIMEOUT,
    );
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        p.add("inbound.max_connections", "must be greater than zero");
    }
    let http2_max_concurrent_streams = raw
        .http2_max_concurrent_streams
        .unwrap_or(DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS);
    if http2_max_concurrent_streams == 0 {
        p.add(
            "inbound.http2_max_concurrent_streams",
            "must be greater than zero",
        );
    }
    (max_body_bytes > 0
        && max_concurrent_requests > 0
        && max_connections > 0
        && http2_max_concurrent_streams > 0)
        .then_some(())?;
    Some(InboundConfig {
        allow: allow?,
        max_body_bytes,
        header_read_timeout: header_read_timeout?,
        body_read_timeout: body_read_timeout?,
        idle_timeout: idle_timeout?,
        max_connections,
        http2_max_concurrent_streams,
        max_concurrent_requests,
        reject_browser_requests: raw.reject_browser_requests.unwrap_or(true),
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Peer,
    Append,
    Static,
    Remove,
}

fn forwarded_for(p: &mut Problems, raw: RawForwardedFor) -> Option<ForwardedForMode> {
    let modes = [
        ("peer", Mode::Peer),
        ("append", Mode::Append),
        ("static", Mode::Static),
        ("remove", Mode::Remove),
    ];
    let mode = choice(p, "forwarded_for.mode", &raw.mode, &modes, Mode::Peer)?;
    match (mode, text(&raw.static_ip)) {
        (Mode::Static, None) => {
            p.add("forwarded_for.static_ip", "is required with mode: static");
            None
        }
        (Mode::Static, Some(ip)) => match ip.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ForwardedForMode::Static(ip)),
            Err(_) => {
                p.add(
                    "forwarded_for.static_ip",
                    "must be a bare IP address (no port)",
                );
                None
            }
        },
        (_, Some(_)) => {
            p.add("forwarded_for.static_ip", "is only used with mode: static");
            None
        }
        (Mode::Peer, None) => Some(ForwardedForMode::Peer),
        (Mode::Append, None) => Some(ForwardedForMode::Append),
        (Mode::Remove, None) => Some(ForwardedForMode::Remove),
    }
}

/// Duplicate names; and two routes with the same prefix and the same sources (the second could
/// never be chosen, so it is surely a mistake).
fn check_duplicates(p: &mut Problems, routes: &[Option<RouteConfig>]) {
    let valid: Vec<(usize, &RouteConfig)> = routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
        .collect();
    for (n, (j, b)) in valid.iter().enumerate() {
        for (i, a) in &valid[..n] {
            if a.name == b.name {
                p.add(
                    format!("routes[{j}].name"),
                    format!("duplicate route name (also routes[{i}])"),
                );
            }
            if a.path_prefix == b.path_prefix && sorted(&a.sources) == sorted(&b.sources) {
                p.add(
                    format!("routes[{j}].match.path_prefix"),
                    format!("routes[{i}] already has the same path prefix and sources"),
                );
            }
        }
    }
}

fn sorted(s: &Option<Vec<IpNet>>) -> Option<Vec<IpNet>> {
    s.as_ref().map(|v| {
        let mut v = v.clone();
        v.sort();
        v.dedup();
        v
    })
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
