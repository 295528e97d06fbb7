//! A route's `auth`: the string `none`, or exactly one of `basic` / `oauth2` (§3, §9).
//!
//! Invariants: secrets come from a value or a `_file`, never both, into `SecretString`; a DPoP
//! key file is a loadable P-256 PKCS#8 key; an ephemeral DPoP key is only allowed with the
//! memory token cache (a shared cache would hold tokens bound to a key other replicas lack).

use std::path::PathBuf;
use std::time::SystemTime;

use super::errors::{join, Problems};
use super::fields::{choice, duration, optional, required, secret};
use super::model::{
    AuthConfig, BasicAuthConfig, BasicFallback, ClientAuthMethod, DpopClock, DpopKeyConfig,
    OAuth2Config, OAuthGrant, ProxyConfig, TlsConfig, TokenCacheConfig, DEFAULT_FALLBACK_HOLD,
};
use super::net::parse_url;
use super::proxy::{proxy, RawProxy};
use super::raw::{RawAuth, RawBasic, RawDpop, RawOAuth2};
use super::tls::tls;

pub(crate) const DEFAULT_REFRESH_AT: f64 = 0.8;

/// Everything of the route that `auth` depends on.
pub(crate) struct AuthContext<'a> {
    pub upstream_tls: &'a TlsConfig,
    pub upstream_proxy: Option<&'a ProxyConfig>,
    pub allow_http: bool,
    pub token_cache: &'a TokenCacheConfig,
    pub now: SystemTime,
}

pub(crate) fn auth(
    p: &mut Problems,
    path: &str,
    raw: Option<&RawAuth>,
    ctx: &AuthContext<'_>,
) -> Option<AuthConfig> {
    const EXPECTED: &str = "must be `none`, or a map with exactly one of `basic` or `oauth2`";
    match raw {
        None => {
            p.add(path, format!("is required: {EXPECTED}"));
            None
        }
        Some(RawAuth::Word(w)) if w.trim() == "none" => Some(AuthConfig::None),
        Some(RawAuth::Word(_)) => {
            p.add(path, EXPECTED);
            None
        }
        Some(RawAuth::Map(m)) => match (&m.basic, &m.oauth2) {
            (Some(b), None) => basic(p, &join(path, "basic"), b).map(AuthConfig::Basic),
            (None, Some(o)) => {
                oauth2(p, &join(path, "oauth2"), o, ctx).map(|o| AuthConfig::OAuth2(Box::new(o)))
            }
            _ => {
                p.add(path, EXPECTED);
                None
            }
        },
    }
}

fn basic(p: &mut Problems, path: &str, raw: &RawBasic) -> Option<BasicAuthConfig> {
    let username = required(p, &join(path, "username"), &raw.username);
    let password = secret(p, path, "password", &raw.password, &raw.password_file, true);
    let fallback = fallback(p, path, raw);
    Some(BasicAuthConfig {
        username: username?.to_string(),
        password: password.flatten()?,
        fallback: fallback?,
    })
}

/// `fallback_password(_file)` and `fallback_hold` (§11): the hold means nothing without a
/// fallback key, so it is refused alone rather than silently ignored.
fn fallback(p: &mut Problems, path: &str, raw: &RawBasic) -> Option<Option<BasicFallback>> {
    let password = secret(
        p,
        path,
        "fallback_password",
        &raw.fallback_password,
        &raw.fallback_password_file,
        false,
    )?;
    let hold_key = join(path, "fallback_hold");
    let hold = duration(p, &hold_key, &raw.fallback_hold, DEFAULT_FALLBACK_HOLD)?;
    match password {
        Some(password) => Some(Some(BasicFallback { password, hold })),
        None if raw.fallback_hold.is_some() => {
            p.add(
                hold_key,
                "is only used with fallback_password (or fallback_password_file)",
            );
            None
        }
        None => Some(None),
    }
}

fn oauth2(
    p: &mut Problems,
    path: &str,
    raw: &RawOAuth2,
    ctx: &AuthContext<'_>,
) -> Option<OAuth2Config> {
    let before = p.len();
    let key = |k: &str| join(path, k);
    let token_url = required(p, &key("token_url"), &raw.token_url).and_then(|u| {
        parse_url(u, ctx.allow_http)
            .map_err(|e| p.add(key("token_url"), e))
            .ok()
    });
    let grant = choice(
        p,
        &key("grant"),
        &raw.grant,
        &[
            ("client_credentials", OAuthGrant::ClientCredentials),
            ("password", OAuthGrant::Password),
        ],
        OAuthGrant::ClientCredentials,
    );
    let client_id = required(p, &key("client_id"), &raw.client_id);
    let client_secret = secret(
        p,
        path,
        "client_secret",
        &raw.client_secret,
        &raw.client_secret_file,
        true,
    );
    let username = optional(p, &key("username"), &raw.username);
    let password = secret(
        p,
        path,
        "password",
        &raw.password,
        &raw.password_file,
        false,
    );
    match grant {
        Some(OAuthGrant::Password) => {
            if matches!(username, Some(None)) {
                p.add(key("username"), "is required with grant: password");
            }
            if matches!(password, Some(None)) {
                p.add(
                    key("password"),
                    "is required with grant: password (or password_file)",
                );
            }
        }
        Some(OAuthGrant::ClientCredentials)
            if raw.username.is_some() || raw.password.is_some() || raw.password_file.is_some() =>
        {
            p.add(
                key("username"),
                "username/password are only used with grant: password",
            );
        }
        Some(OAuthGrant::ClientCredentials) => {}
        None => {}
    }
    let audience = optional(p, &key("audience"), &raw.audience);
    let scope = optional(p, &key("scope"), &raw.scope);
    let client_auth = choice(
        p,
        &key("client_auth"),
        &raw.client_auth,
        &[
            ("post", ClientAuthMethod::Post),
            ("basic", ClientAuthMethod::Basic),
        ],
        ClientAuthMethod::Post,
    );
    let refresh_at = raw.refresh_at.unwrap_or(DEFAULT_REFRESH_AT);
    if !(refresh_at > 0.0 && refresh_at < 1.0) {
        p.add(
            key("refresh_at"),
            "must be strictly between 0 and 1 (e.g. 0.8)",
        );
    }
    let dpop = match &raw.dpop {
        None => Some(None),
        Some(d) => dpop(p, &key("dpop"), d, ctx.token_cache).map(Some),
    };
    let dpop_clock = raw.dpop.as_ref().map_or(Some(DpopClock::Local), |d| {
        choice(
            p,
            &join(&key("dpop"), "clock"),
            &d.clock,
            &[("local", DpopClock::Local), ("server", DpopClock::Server)],
            DpopClock::Local,
        )
    });
    let tls = match &raw.tls {
        None => Some(ctx.upstream_tls.clone()),
        Some(t) => tls(p, &key("tls"), t, ctx.now),
    };
    let proxy = match proxy(
        p,
        path,
        RawProxy {
            url: &raw.proxy,
            auth: &raw.proxy_auth,
            auth_file: &raw.proxy_auth_file,
        },
    ) {
        Some(None) => Some(ctx.upstream_proxy.cloned()),
        other => other,
    };
    if p.len() > before {
        return None;
    }
    Some(OAuth2Config {
        token_url: token_url?,
        grant: grant?,
        client_id: client_id?.to_string(),
        client_secret: client_secret.flatten()?,
        username: username?,
        password: password?,
        audience: audience?,
        scope: scope?,
        client_auth: client_auth?,
        refresh_at,
        dpop: dpop?,
        dpop_clock: dpop_clock?,
        tls: tls?,
        proxy: proxy?,
    })
}

fn dpop(
    p: &mut Problems,
    path: &str,
    raw: &RawDpop,
    cache: &TokenCacheConfig,
) -> Option<DpopKeyConfig> {
    let ephemeral = raw.ephemeral.unwrap_or(false);
    match (&raw.key_file, ephemeral) {
        (Some(_), true) => {
            p.add(path, "give either key_file or ephemeral: true, not both");
            None
        }
        (None, false) => {
            p.add(path, "needs key_file (P-256 PKCS#8 PEM) or ephemeral: true");
            None
        }
        (None, true) if *cache != TokenCacheConfig::Memory => {
            p.add(
                join(path, "ephemeral"),
                "an ephemeral DPoP key needs token_cache.store: memory (a shared cache would \
                 hold tokens bound to a key that dies with this process)",
            );
            None
        }
        (None, true) => Some(DpopKeyConfig::Ephemeral),
        (Some(f), false) => {
            let file = PathBuf::from(f.0.trim());
            match crate::certs::load_dpop_key(&file) {
                Ok(_) => Some(DpopKeyConfig::KeyFile(file)),
                Err(e) => {
                    p.add(join(path, "key_file"), e);
                    None
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
