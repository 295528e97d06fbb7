//! Header rules as pure functions over `HeaderMap`s; the layers that call them stay thin.
pub mod browser;
pub mod forwarded;
pub mod hop_by_hop;

use http::header::{HeaderName, AUTHORIZATION, COOKIE, HOST, PROXY_AUTHORIZATION};
use http::HeaderMap;

/// The `DPoP` proof header (RFC 9449).
pub const DPOP: HeaderName = HeaderName::from_static("dpop");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Caller-supplied credentials: the gateway is the only source of credentials Tango sees.
pub const CALLER_CREDENTIALS: [HeaderName; 4] = [AUTHORIZATION, PROXY_AUTHORIZATION, DPOP, COOKIE];

/// Removes everything a caller may not pass to Tango: hop-by-hop headers (and those named in
/// `Connection`), credentials, `Host` (the upstream's authority is used) and forwarding headers
/// the gateway does not write (`Forwarded`, `X-Real-IP`).
pub fn clean_request_headers(headers: &mut HeaderMap) {
    hop_by_hop::remove(headers);
    for name in CALLER_CREDENTIALS {
        headers.remove(name);
    }
    headers.remove(HOST);
    headers.remove(FORWARDED);
    headers.remove(X_REAL_IP);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn caller_credentials_and_forwarding_headers_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("proxy-authorization", "Basic eA=="),
            ("dpop", "eyJhbGciOi"),
            ("cookie", "session=1"),
            ("host", "evil.example"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("accept", "application/json"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        clean_request_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));
    }
}
