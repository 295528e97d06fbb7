//! One entry of `routes[]`: match, upstream, auth and retry, each checked under its key path.
//!
//! Invariant: a returned `RouteConfig` has a normalised prefix, a valid upstream URL (https
//! unless explicitly allowed), non-zero timeouts, loaded TLS material and resolved retry policy.

use std::time::SystemTime;

use ipnet::IpNet;

use super::auth::{auth, AuthContext};
use super::errors::{join, Problems};
use super::fields::{duration, required, text};
use super::model::{
    RetryConfig, RouteConfig, TlsConfig, TokenCacheConfig, UpstreamConfig, DEFAULT_BODY_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_UPSTREAM_TIMEOUT,
};
use super::net::{normalise_prefix, parse_cidr};
use super::proxy::{proxy, RawProxy};
use super::raw::{RawRoute, RawUpstream, Texts};
use super::retry::retry;
use super::tls::tls;
use super::upstream_url::UpstreamUrl;

/// What every route inherits from the top level.
pub(crate) struct Inherited<'a> {
    pub retry: &'a RetryConfig,
    pub token_cache: &'a TokenCacheConfig,
    pub now: SystemTime,
}

/// Each entry parsed as a CIDR; every bad entry is reported at `path[i]`.
pub(crate) fn cidr_list(p: &mut Problems, path: &str, list: &Texts) -> Option<Vec<IpNet>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, t) in list.0.iter().enumerate() {
        match parse_cidr(&t.0) {
            Ok(n) => out.push(n),
            Err(e) => {
                p.add(format!("{path}[{i}]"), e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

pub(crate) fn route(
    p: &mut Problems,
    path: &str,
    raw: &RawRoute,
    inherited: &Inherited<'_>,
) -> Option<RouteConfig> {
    let before = p.len();
    let name = required(p, &join(path, "name"), &raw.name).map(str::to_string);
    let match_path = join(path, "match");
    let (path_prefix, sources, callers) = match &raw.matches {
        None => {
            p.add(&match_path, "is required (with path_prefix)");
            (None, None, None)
        }
        Some(m) => {
            let prefix_key = join(&match_path, "path_prefix");
            let prefix = required(p, &prefix_key, &m.path_prefix)
                .and_then(|s| normalise_prefix(s).map_err(|e| p.add(&prefix_key, e)).ok());
            let sources = match &m.sources {
                None => Some(None),
                Some(list) => cidr_list(p, &join(&match_path, "sources"), list).map(Some),
            };
            // Names only here: that each names a caller is checked with the callers block.
            let callers = m.callers.as_ref().map(|names| {
                names
                    .0
                    .iter()
                    .map(|name| name.0.trim().to_owned())
                    .collect::<Vec<_>>()
            });
            (prefix, sources, Some(callers))
        }
    };
    let upstream_path = join(path, "upstream");
    let upstream = match &raw.upstream {
        None => {
            p.add(&upstream_path, "is required (with url)");
            None
        }
        Some(u) => upstream(p, &upstream_path, u, inherited.now),
    };
    let fallback_tls = TlsConfig::default();
    let ctx = AuthContext {
        upstream_tls: upstream.as_ref().map_or(&fallback_tls, |u| &u.tls),
        upstream_proxy: upstream.as_ref().and_then(|u| u.proxy.as_ref()),
        allow_http: raw
            .upstream
            .as_ref()
            .and_then(|u| u.allow_insecure_upstream)
            .unwrap_or(false),
        token_cache: inherited.token_cache,
        now: inherited.now,
    };
    let auth = auth(p, &join(path, "auth"), raw.auth.as_ref(), &ctx);
    let retry = match &raw.retry {
        None => Some(inherited.retry.clone()),
        Some(r) => retry(p, &join(path, "retry"), inherited.retry, r),
    };
    if p.len() > before {
        return None;
    }
    Some(RouteConfig {
        name: name?,
        path_prefix: path_prefix?,
        sources: sources?,
        callers: callers?,
        strip_prefix: raw.strip_prefix.unwrap_or(false),
        upstream: upstream?,
        auth: auth?,
        retry: retry?,
    })
}

fn upstream(
    p: &mut Problems,
    path: &str,
    raw: &RawUpstream,
    now: SystemTime,
) -> Option<UpstreamConfig> {
    let before = p.len();
    let key = |k: &str| join(path, k);
    let allow_insecure_upstream = raw.allow_insecure_upstream.unwrap_or(false);
    let url = required(p, &key("url"), &raw.url).and_then(|u| {
        UpstreamUrl::parse(u, allow_insecure_upstream)
            .map_err(|e| p.add(key("url"), e))
            .ok()
    });
    let timeout = duration(p, &key("timeout"), &raw.timeout, DEFAULT_UPSTREAM_TIMEOUT);
    let connect_timeout = duration(
        p,
        &key("connect_timeout"),
        &raw.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    );
    let body_timeout = duration(
        p,
        &key("body_timeout"),
        &raw.body_timeout,
        DEFAULT_BODY_TIMEOUT,
    );
    let deadline = match text(&raw.deadline) {
        None => Some(None),
        Some(_) => duration(p, &key("deadline"), &raw.deadline, DEFAULT_UPSTREAM_TIMEOUT).map(Some),
    };
    let tls = match &raw.tls {
        None => Some(TlsConfig::default()),
        Some(t) => tls(p, &key("tls"), t, now),
    };
    let proxy = proxy(
        p,
        path,
        RawProxy {
            url: &raw.proxy,
            auth: &raw.proxy_auth,
            auth_file: &raw.proxy_auth_file,
        },
    );
    if p.len() > before {
        return None;
    }
    Some(UpstreamConfig {
        url: url?,
        timeout: timeout?,
        connect_timeout: connect_timeout?,
        body_timeout: body_timeout?,
        deadline: deadline?,
        allow_insecure_upstream,
        tls: tls?,
        proxy: proxy?,
    })
}
