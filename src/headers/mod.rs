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
/// `Connection`), credentials, `Host` (the upstream's authority is used) and the forwarding
/// headers the gateway does not write (`Forwarded`, `X-Real-IP`).
pub fn clean_request_headers(headers: &mut HeaderMap) {
    hop_by_hop::remove_named_in_connection(headers);
    remove_all(
        headers,
        &[
            &hop_by_hop::FIXED,
            &CALLER_CREDENTIALS,
            &[HOST, FORWARDED, X_REAL_IP],
        ],
    );
}

/// Removes every header named in `lists` (at most 32 names in all) from `headers`.
///
/// One pass over the names present, compared against the lists, then a removal only for
/// those found: a request carries a handful of headers, and a hashed `remove` per listed
/// name (14 per request, nearly all absent) cost more than the rest of the cleaning.
fn remove_all(headers: &mut HeaderMap, lists: &[&[HeaderName]]) {
    let listed = || lists.iter().flat_map(|list| list.iter());
    debug_assert!(listed().count() <= 32);
    let mut present = 0u32;
    for name in headers.keys() {
        if let Some(index) = listed().position(|listed| listed == name) {
            present |= 1 << index;
        }
    }
    for (index, name) in listed().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::Strategy;

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

    /// The straightforward form, written out by name: one `remove` per name, after the ones
    /// `Connection` names.
    fn reference_clean(headers: &mut HeaderMap) {
        hop_by_hop::remove_named_in_connection(headers);
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "authorization",
            "proxy-authorization",
            "dpop",
            "cookie",
            "host",
            "forwarded",
            "x-real-ip",
        ] {
            headers.remove(name);
        }
    }

    const NAMES: [&str; 20] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "authorization",
        "proxy-authorization",
        "dpop",
        "cookie",
        "host",
        "forwarded",
        "x-real-ip",
        "accept",
        "content-type",
        "x-forwarded-for",
        "close",
        "x-custom",
        "proxy-authenticate",
    ];

    fn header_lines() -> impl Strategy<Value = Vec<(usize, String)>> {
        proptest::collection::vec(
            (
                0..NAMES.len(),
                "(x-custom|close|keep-alive|te|accept|[a-z]{1,4})(, ?[a-z-]{1,8}){0,2}",
            ),
            0..12,
        )
    }

    fn map_of(lines: &[(usize, String)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.append(HeaderName::from_static(NAMES[*name]), value);
            }
        }
        headers
    }

    proptest::proptest! {
        #[test]
        fn one_pass_cleaning_matches_one_removal_per_name(lines in header_lines()) {
            let mut fast = map_of(&lines);
            let mut reference = fast.clone();
            clean_request_headers(&mut fast);
            reference_clean(&mut reference);
            proptest::prop_assert_eq!(fast, reference);
        }

        #[test]
        fn responses_lose_the_hop_by_hop_set_and_proxy_authenticate(lines in header_lines()) {
            let mut fast = map_of(&lines);
            let mut reference = fast.clone();
            hop_by_hop::remove_from_response(&mut fast);
            hop_by_hop::remove_named_in_connection(&mut reference);
            for name in hop_by_hop::FIXED {
                reference.remove(name);
            }
            reference.remove(http::header::PROXY_AUTHENTICATE);
            proptest::prop_assert_eq!(fast, reference);
        }
    }
}
