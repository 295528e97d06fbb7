//! `upstream.proxy` and `oauth2.proxy` (§13): an `http://` forward proxy reached with
//! `CONNECT` (corporate egress), its credentials a secret beside it (`proxy_auth` or
//! `proxy_auth_file`, `user:password`).
//!
//! Invariants: a proxy URL is `http://host[:port]` and nothing more (credentials in the URL
//! would be printed wherever the URL is: they go in `proxy_auth`); `proxy_auth` is never
//! repeated in a problem; it is refused without a proxy (a typo must not pass silently).

use http::Uri;
use secrecy::{ExposeSecret, SecretString};

use super::errors::{join, Problems};
use super::fields::{secret, text};
use super::model::ProxyConfig;
use super::raw::Text;

/// The three keys of one proxy, as read.
pub(crate) struct RawProxy<'a> {
    pub url: &'a Option<Text>,
    pub auth: &'a Option<Text>,
    pub auth_file: &'a Option<Text>,
}

/// `Some(None)`: no proxy; `None`: a problem was recorded.
pub(crate) fn proxy(
    p: &mut Problems,
    base: &str,
    raw: RawProxy<'_>,
) -> Option<Option<ProxyConfig>> {
    let before = p.len();
    let auth = secret(p, base, "proxy_auth", raw.auth, raw.auth_file, false);
    let Some(url) = text(raw.url) else {
        if raw.auth.is_some() || raw.auth_file.is_some() {
            p.add(join(base, "proxy_auth"), "is only used with proxy");
        }
        return (p.len() == before).then_some(None);
    };
    let key = join(base, "proxy");
    let url = match parse_proxy_url(url.trim()) {
        Ok(url) => Some(url),
        Err(why) => {
            p.add(&key, why);
            None
        }
    };
    let auth = auth?;
    if let Some(auth) = &auth {
        if !auth.expose_secret().contains(':') {
            let key = if raw.auth_file.is_some() {
                "proxy_auth_file"
            } else {
                "proxy_auth"
            };
            p.add(join(base, key), "must be user:password");
        }
    }
    if p.len() > before {
        return None;
    }
    Some(Some(ProxyConfig { url: url?, auth }))
}

fn parse_proxy_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|_| "is not a URL (e.g. http://proxy.internal:3128)".to_string())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(
            "must be an http:// proxy (reached with CONNECT; TLS to Tango runs inside the tunnel)"
                .into(),
        ),
        None => return Err("must start with http:// (e.g. http://proxy.internal:3128)".into()),
    }
    let Some(authority) = uri.authority() else {
        return Err("has no host".into());
    };
    if authority.as_str().contains('@') {
        return Err(
            "must not carry credentials: put user:password in proxy_auth or proxy_auth_file".into(),
        );
    }
    if uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str() != "/" && !pq.as_str().is_empty())
    {
        return Err("must be http://host[:port] with no path or query".into());
    }
    // The port defaults to 80, as for any http:// URL.
    let port = authority.port_u16().unwrap_or(80);
    format!("http://{}:{port}", authority.host())
        .parse()
        .map_err(|_| "is not a URL (e.g. http://proxy.internal:3128)".to_string())
}

/// `Basic base64(user:password)` for `Proxy-Authorization`.
pub fn proxy_authorization(auth: &SecretString) -> SecretString {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(auth.expose_secret());
    SecretString::from(format!("Basic {encoded}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_url_is_http_host_and_port_only() {
        assert_eq!(
            parse_proxy_url("http://proxy:3128").unwrap().to_string(),
            "http://proxy:3128/"
        );
        assert_eq!(
            parse_proxy_url("http://proxy").unwrap().port_u16(),
            Some(80)
        );
        assert!(parse_proxy_url("https://proxy:3128").is_err());
        assert!(parse_proxy_url("proxy:3128").is_err());
        assert!(parse_proxy_url("http://user:pw@proxy:3128")
            .unwrap_err()
            .contains("proxy_auth"));
        assert!(parse_proxy_url("http://proxy:3128/path").is_err());
    }

    #[test]
    fn the_authorization_is_basic() {
        let value = proxy_authorization(&SecretString::from("u:p".to_owned()));
        assert_eq!(value.expose_secret(), "Basic dTpw");
    }
}
