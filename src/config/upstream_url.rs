//! An upstream's URL, validated once at load (§3): an `https` origin (plain `http` only when
//! the upstream allows it) with a host that is a valid DNS name or IP address, an optional
//! base path, and no credentials, query or fragment.
//!
//! Invariant: every part the request path needs (scheme, authority, host and port to connect
//! to, TLS server name, `Host` header, base path) is computed here, so nothing downstream
//! parses the URL again or has an "invalid URL" case to handle.

use std::fmt;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use rustls_pki_types::ServerName;

use super::net::parse_url;

#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    uri: Uri,
    scheme: Scheme,
    authority: Authority,
    /// DNS name or IP literal, IPv6 without brackets: what to connect to and verify.
    host: String,
    port: u16,
    /// The name the server's certificate must cover.
    server_name: ServerName<'static>,
    /// The URL's path without its trailing `/` (empty for the usual origin-only URL).
    base_path: String,
    /// `Host` for HTTP/1.1: the host, with the port unless it is the scheme's default.
    host_header: HeaderValue,
}

impl UpstreamUrl {
    /// Validates `s` (`allow_http`: plain `http` accepted, from `allow_insecure_upstream`).
    pub fn parse(s: &str, allow_http: bool) -> Result<Self, String> {
        let uri = parse_url(s, allow_http)?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err("URL has no host".into());
        };
        let secure = scheme == Scheme::HTTPS;
        let default_port = if secure { 443 } else { 80 };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| "URL host is not a valid DNS name or IP address".to_string())?;
        let host_header = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host_header = HeaderValue::from_str(&host_header)
            .map_err(|_| "URL host cannot be sent as a Host header".to_string())?;
        Ok(UpstreamUrl {
            base_path: uri.path().trim_end_matches('/').to_owned(),
            port: authority.port_u16().unwrap_or(default_port),
            server_name,
            uri,
            scheme,
            authority,
            host,
            host_header,
        })
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// DNS name or IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The name the server's certificate must cover.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    /// The URL's path without its trailing `/`.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uri.fmt(f)
    }
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No credentials can be in it (refused at load).
        write!(f, "UpstreamUrl({})", self.uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> UpstreamUrl {
        match UpstreamUrl::parse(s, true) {
            Ok(url) => url,
            Err(why) => panic!("{s}: {why}"),
        }
    }

    #[test]
    fn parts_are_computed_once() {
        let url = parsed("https://integration-api.tangocard.com");
        assert_eq!(url.host(), "integration-api.tangocard.com");
        assert_eq!(url.port(), 443);
        assert!(url.is_https());
        assert_eq!(url.base_path(), "");
        assert_eq!(url.host_header(), "integration-api.tangocard.com");

        let url = parsed("https://[::1]:8443/base/");
        assert_eq!(url.host(), "::1");
        assert_eq!(url.port(), 8443);
        assert_eq!(url.base_path(), "/base");
        assert_eq!(url.host_header(), "[::1]:8443");

        let url = parsed("http://127.0.0.1:80");
        assert!(!url.is_https());
        assert_eq!(url.host_header(), "127.0.0.1");
    }

    #[test]
    fn what_validation_refuses() {
        for (s, allow_http) in [
            ("http://tango.example", false),
            ("https://user:pw@tango.example", true),
            ("https://tango.example/?q=1", true),
            ("https://tango.example/#f", true),
            ("ftp://tango.example", true),
        ] {
            assert!(UpstreamUrl::parse(s, allow_http).is_err(), "{s}");
        }
    }
}
