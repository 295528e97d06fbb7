//! The `check` summary: what each route will do, and each client certificate's identity and
//! expiry.
//!
//! Invariant: built only from non-secret fields; secrets are `SecretString` and never exposed
//! here, and a Redis URL is printed without its userinfo (it may carry a password).

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::model::{
    AuthConfig, ClientAuthMethod, Config, DpopClock, DpopKeyConfig, ForwardedForMode, Jitter,
    OAuthGrant, OrderStoreConfig, PostRequires, RetryConfig, TlsConfig, TokenCacheConfig,
};
use super::net::redact_userinfo;

/// Callers (§10), the ledger and the audit file.
fn write_order_safety(s: &mut String, c: &Config) -> std::fmt::Result {
    let list = |v: &Option<Vec<String>>| {
        v.as_ref()
            .map_or("any".to_string(), |ids| format!("[{}]", ids.join(", ")))
    };
    for caller in &c.callers {
        let sources: Vec<String> = caller.sources.iter().map(ToString::to_string).collect();
        let limit = caller.spend_limit.map_or("none".to_string(), |l| {
            format!("{} per {}", l.amount, humantime::format_duration(l.window))
        });
        writeln!(
            s,
            "caller {}: sources [{}], accounts {}, customers {}, spend limit {limit}",
            caller.name,
            sources.join(", "),
            list(&caller.accounts),
            list(&caller.customers),
        )?;
    }
    if let Some(orders) = &c.orders {
        let store = match &orders.store {
            OrderStoreConfig::Memory => "memory (forgotten on restart)".to_string(),
            OrderStoreConfig::File { path } => format!("file {}", path.display()),
            OrderStoreConfig::Redis { url, key_prefix } => {
                format!("redis {} (key prefix {key_prefix})", redact_userinfo(url))
            }
        };
        writeln!(
            s,
            "orders: externalRefID {}, duplicate window {}, store {store}, at most {} references",
            if orders.require_external_ref_id {
                "required"
            } else {
                "optional"
            },
            humantime::format_duration(orders.duplicate_window),
            orders.max_references,
        )?;
    }
    if let Some(path) = &c.audit.path {
        writeln!(s, "audit file: {}", path.display())?;
    }
    Ok(())
}

pub fn summary(config: &Config, now: SystemTime) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = write_summary(&mut s, config, now);
    s
}

fn write_summary(s: &mut String, c: &Config, now: SystemTime) -> std::fmt::Result {
    writeln!(s, "config: {}", c.source.display())?;
    writeln!(s, "listen: {}  admin: {}", c.listen, c.admin.listen)?;
    let allow: Vec<String> = c.inbound.allow.iter().map(ToString::to_string).collect();
    writeln!(s, "inbound allow: [{}]", allow.join(", "))?;
    let xff = match c.forwarded_for {
        ForwardedForMode::Peer => "peer".to_string(),
        ForwardedForMode::Append => "append".to_string(),
        ForwardedForMode::Static(ip) => format!("static {ip}"),
        ForwardedForMode::Remove => "remove".to_string(),
    };
    writeln!(s, "x-forwarded-for: {xff}")?;
    let cache = match &c.token_cache {
        TokenCacheConfig::Memory => "memory".to_string(),
        TokenCacheConfig::File { path } => format!("file {}", path.display()),
        TokenCacheConfig::Redis {
            url,
            key_prefix,
            lock_timeout,
        } => format!(
            "redis {} (key prefix {key_prefix}, lock timeout {})",
            redact_userinfo(url),
            humantime::format_duration(*lock_timeout)
        ),
    };
    writeln!(s, "token cache: {cache}")?;
    write_order_safety(s, c)?;
    // Only when on: an endpoint is a URL without credentials (checked at load).
    if let Some(otlp) = &c.telemetry.otlp {
        writeln!(
            s,
            "traces: OTLP HTTP/protobuf to {} (service {}, sample ratio {})",
            otlp.traces_url, otlp.service_name, otlp.sample_ratio
        )?;
    }
    for r in &c.routes {
        writeln!(s, "route {}:", r.name)?;
        let sources = r.sources.as_ref().map_or("inbound.allow".to_string(), |v| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        });
        writeln!(s, "  path prefix: {} (sources: {sources})", r.path_prefix)?;
        if let Some(callers) = &r.callers {
            writeln!(s, "  callers: {}", callers.join(", "))?;
        }
        writeln!(s, "  upstream: {}", r.upstream.url)?;
        if let Some(proxy) = &r.upstream.proxy {
            let auth = if proxy.auth.is_some() {
                ", with credentials"
            } else {
                ""
            };
            writeln!(s, "  proxy: CONNECT via http://{}{auth}", proxy.address())?;
        }
        let u = &r.upstream;
        writeln!(
            s,
            "  timeouts: connect {}, headers {}, body idle {}, deadline {}",
            human(u.connect_timeout),
            human(u.timeout),
            human(u.body_timeout),
            u.deadline.map_or("none".to_string(), human)
        )?;
        write_auth(s, &r.auth, now)?;
        writeln!(s, "  retry: {}", retry(&r.retry))?;
        write_tls(s, "upstream tls", &u.tls, now)?;
    }
    Ok(())
}

fn write_auth(s: &mut String, auth: &AuthConfig, now: SystemTime) -> std::fmt::Result {
    match auth {
        AuthConfig::None => writeln!(s, "  auth: none"),
        AuthConfig::Basic(b) => {
            writeln!(s, "  auth: basic (username {})", b.username)?;
            match &b.fallback {
                // That one is configured, never what it is.
                Some(fallback) => writeln!(
                    s,
                    "    fallback key: configured (used for {} after a 401 to the primary)",
                    human(fallback.hold)
                ),
                None => Ok(()),
            }
        }
        AuthConfig::OAuth2(o) => {
            let grant = match o.grant {
                OAuthGrant::ClientCredentials => "client_credentials",
                OAuthGrant::Password => "password",
            };
            let client_auth = match o.client_auth {
                ClientAuthMethod::Post => "post",
                ClientAuthMethod::Basic => "basic",
            };
            writeln!(s, "  auth: oauth2")?;
            writeln!(s, "    token url: {}", o.token_url)?;
            writeln!(
                s,
                "    grant: {grant}, client id: {}, client auth: {client_auth}",
                o.client_id
            )?;
            if let Some(u) = &o.username {
                writeln!(s, "    service account: {u}")?;
            }
            writeln!(
                s,
                "    audience: {}, scope: {}, refresh at: {}",
                o.audience.as_deref().unwrap_or("-"),
                o.scope.as_deref().unwrap_or("-"),
                o.refresh_at
            )?;
            let mut dpop = match &o.dpop {
                None => "off".to_string(),
                Some(DpopKeyConfig::Ephemeral) => {
                    "ephemeral (a new key each start; thumbprint in the log)".to_string()
                }
                Some(DpopKeyConfig::KeyFile(p)) => format!(
                    "key file {} (JWK thumbprint {})",
                    p.display(),
                    dpop_thumbprint(p)
                ),
            };
            if o.dpop.is_some() && o.dpop_clock == DpopClock::Server {
                dpop.push_str(", iat on the server's clock (measured from its Date headers)");
            }
            writeln!(s, "    dpop: {dpop}")?;
            write_tls(s, "  token endpoint tls", &o.tls, now)
        }
    }
}

/// The RFC 7638 thumbprint of a DPoP key file: public, and what Tango binds tokens to.
fn dpop_thumbprint(path: &std::path::Path) -> String {
    crate::certs::load_dpop_key(path)
        .ok()
        .and_then(|der| crate::auth::dpop::DpopKey::from_pkcs8_der(der.secret_der()).ok())
        .map_or_else(
            || "unavailable".to_string(),
            |key| key.thumbprint().to_owned(),
        )
}

fn write_tls(s: &mut String, label: &str, tls: &TlsConfig, now: SystemTime) -> std::fmt::Result {
    if let Some(ca) = &tls.ca_file {
        writeln!(
            s,
            "  {label}: extra CA file {} ({} certificates)",
            ca.display(),
            tls.extra_roots.len()
        )?;
    }
    if let Some(id) = &tls.client_identity {
        let c = &id.summary;
        writeln!(
            s,
            "  {label}: client certificate {}",
            id.cert_file.display()
        )?;
        writeln!(s, "    subject: {}", c.subject)?;
        writeln!(s, "    issuer: {}", c.issuer)?;
        writeln!(s, "    key: {} ({} bits)", c.key_type, c.key_bits)?;
        writeln!(
            s,
            "    not after: {} ({} days left)",
            humantime::format_rfc3339_seconds(c.not_after),
            c.days_left(now)
        )?;
    }
    Ok(())
}

fn retry(r: &RetryConfig) -> String {
    let mut on: Vec<String> = Vec::new();
    for (set, name) in [
        (r.retry_on.connect_failure, "connect_failure"),
        (r.retry_on.timeout, "timeout"),
        (r.retry_on.reset, "reset"),
    ] {
        if set {
            on.push(name.to_string());
        }
    }
    on.extend(r.retry_on.statuses.iter().map(ToString::to_string));
    let jitter = match r.jitter {
        Jitter::Full => "full",
        Jitter::None => "none",
    };
    let post = match r.post_requires {
        PostRequires::ExternalRefId => "external_ref_id",
        PostRequires::IdempotencyKey => "idempotency_key",
        PostRequires::Never => "never",
    };
    format!(
        "max {} attempts, backoff {}..{} x{} jitter {jitter}, on [{}], budget {} (min {}/s), POST requires {post}",
        r.max_attempts,
        human(r.initial_backoff),
        human(r.max_backoff),
        r.multiplier,
        on.join(", "),
        r.budget_ratio,
        r.budget_min_per_sec
    )
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
