//! Parsers for network values: CIDR lists, listen addresses, upstream URLs, route prefixes.
//!
//! Invariants: a parsed URL has no userinfo, query or fragment; a prefix is normalised (starts
//! with `/`, no trailing `/` except the root, no empty, `.` or `..` segment, no `%`). Messages
//! never repeat a URL (it could carry credentials).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// A CIDR (`10.0.0.0/8`) or a bare address (a single host). Host bits set are refused: in an
/// allowlist, `10.1.2.3/8` is more likely a typo for `/32` than a wish to admit a /8.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net: IpNet = t
        .parse()
        .map_err(|_| format!("`{t}` is not a CIDR network (e.g. 10.0.0.0/8) or IP address"))?;
    if net.trunc() != net {
        return Err(format!(
            "`{t}` has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

pub(super) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        "not a socket address: write IP:port, e.g. 127.0.0.1:8080 or [::1]:8080".into()
    })
}

/// An upstream or token URL: `https` (or `http` when `allow_http`), a host, no userinfo,
/// query or fragment; a path is allowed.
pub(super) fn parse_url(s: &str, allow_http: bool) -> Result<http::Uri, String> {
    let t = s.trim();
    if t.contains('#') {
        return Err("URL must not have a fragment".into());
    }
    let uri: http::Uri = t.parse().map_err(|_| "not a valid URL".to_string())?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_http => {}
        Some("http") => {
            return Err(
                "URL must be https (plain http only with allow_insecure_upstream: true)".into(),
            )
        }
        _ => return Err("URL must start with https://".into()),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| "URL has no host".to_string())?;
    if authority.as_str().contains('@') {
        return Err("URL must not contain credentials (user@ or user:password@)".into());
    }
    if authority.host().is_empty() {
        return Err("URL has no host".into());
    }
    if uri.query().is_some() {
        return Err("URL must not have a query string".into());
    }
    Ok(uri)
}

/// Normalises a route's `path_prefix`: `/raas/v2/` ≡ `/raas/v2`, `//` collapsed.
pub fn normalise_prefix(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err("must start with /".into());
    }
    if s.contains('%') {
        return Err("must not contain % (write the decoded path)".into());
    }
    if s.chars()
        .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
    {
        return Err("must be a plain path (no ?, #, spaces or control characters)".into());
    }
    let mut out = String::new();
    for seg in s.split('/').filter(|seg| !seg.is_empty()) {
        if seg == "." || seg == ".." {
            return Err("must not contain . or .. segments".into());
        }
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// `redis://user:pass@host/0` → `redis://***@host/0`, for printing a URL that may carry a
/// password.
pub fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(parse_cidr("::1/128").unwrap().to_string(), "::1/128");
        assert!(parse_cidr("10.1.2.3/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("banana").is_err());
    }

    #[test]
    fn urls() {
        assert!(parse_url("https://integration-api.tangocard.com", false).is_ok());
        assert!(parse_url("https://h:8443/base", false).is_ok());
        assert!(parse_url("http://h", false).is_err());
        assert!(parse_url("http://h", true).is_ok());
        assert!(parse_url("ftp://h", true).is_err());
        assert!(parse_url("https://u:p@h", false)
            .unwrap_err()
            .contains("credentials"));
        assert!(parse_url("https://h/?a=1", false).is_err());
        assert!(parse_url("https://h/#f", false).is_err());
        assert!(parse_url("/just/a/path", false).is_err());
        let e = parse_url("http://user:hunter2@h", false).unwrap_err();
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn prefixes() {
        assert_eq!(normalise_prefix("/raas/v2/").unwrap(), "/raas/v2");
        assert_eq!(normalise_prefix("/raas/v2").unwrap(), "/raas/v2");
        assert_eq!(normalise_prefix("//raas//v2").unwrap(), "/raas/v2");
        assert_eq!(normalise_prefix("/").unwrap(), "/");
        assert!(normalise_prefix("raas").is_err());
        assert!(normalise_prefix("/raas/../admin").is_err());
        assert!(normalise_prefix("/raas/./v2").is_err());
        assert!(normalise_prefix("/raas%2fv2").is_err());
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("redis://u:p@r:6379/0"),
            "redis://***@r:6379/0"
        );
        assert_eq!(redact_userinfo("redis://r:6379/0"), "redis://r:6379/0");
    }

    #[test]
    fn listen_addresses() {
        assert!(parse_listen("0.0.0.0:8080").is_ok());
        assert!(parse_listen("[::1]:9901").is_ok());
        assert!(parse_listen("localhost:80").is_err());
        assert!(parse_listen("8080").is_err());
    }

    proptest! {
        #[test]
        fn prefix_normalisation_is_idempotent_and_canonical(s in "/[a-z./%]{0,20}") {
            if let Ok(n) = normalise_prefix(&s) {
                prop_assert!(n.starts_with('/'));
                prop_assert!(n == "/" || !n.ends_with('/'));
                prop_assert!(!n.contains("//"));
                prop_assert!(!n.split('/').any(|seg| seg == "." || seg == ".."));
                prop_assert_eq!(normalise_prefix(&n).unwrap(), n.clone());
                prop_assert_eq!(normalise_prefix(&format!("{n}/")).unwrap(), n);
            }
        }

        #[test]
        fn prefix_never_panics(s in "\\PC*") {
            let _ = normalise_prefix(&s);
        }

        #[test]
        fn cidr_round_trips(a in any::<u32>(), len in 0u8..=32) {
            let net = ipnet::Ipv4Net::new(a.into(), len).unwrap().trunc();
            prop_assert_eq!(parse_cidr(&net.to_string()).unwrap(), IpNet::V4(net));
        }

        #[test]
        fn cidr_never_panics(s in "\\PC*") {
            let _ = parse_cidr(&s);
        }
    }
}
