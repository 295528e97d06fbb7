//! Header rules as pure functions over `HeaderMap`s; the layers that call them stay thin.
//!
//! Invariant: no header a caller may not pass reaches Tango under any spelling: a name that,
//! with `_` read as `-`, is one the gateway removes or writes itself is removed too (an
//! upstream that folds `_` into `-`, as CGI-style servers do, would otherwise read it).
pub(crate) mod browser;
pub(crate) mod forwarded;
pub(crate) mod hop_by_hop;

use http::header::{
    HeaderName, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, PROXY_AUTHORIZATION,
};
use http::HeaderMap;

/// The `DPoP` proof header (RFC 9449).
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(crate) const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The name `request_id` writes; spelled here too because this module is a leaf and may not
/// import a layer.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Caller-supplied credentials: the gateway is the only source of credentials Tango sees.
pub(crate) const CALLER_CREDENTIALS: [HeaderName; 4] =
    [AUTHORIZATION, PROXY_AUTHORIZATION, DPOP, COOKIE];

/// Headers a caller could use to steer a proxy or framework behind the gateway (PRODUCT.md
/// §12): the host, scheme, port and prefix it builds absolute links and redirects from, the
/// "original" URL some servers route by instead of the request line, and the method
/// overrides that turn a `POST` into a `DELETE`.
pub(crate) static CALLER_OVERRIDES: [HeaderName; 9] = [
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

// Statics, not consts, for the lists `remove_all` reads: a const list is rebuilt, then
// dropped, at every use (a `HeaderName` holds `Bytes`, so consts cannot be borrowed for good).
static CREDENTIALS: [HeaderName; 4] = CALLER_CREDENTIALS;
static NOT_WRITTEN: [HeaderName; 3] = [HOST, FORWARDED, X_REAL_IP];

/// Everything removed from a request by its exact name (24 names: `remove_all` takes 64).
static REQUEST_REMOVED: [&[HeaderName]; 4] = [
    &hop_by_hop::FIXED,
    &CREDENTIALS,
    &NOT_WRITTEN,
    &CALLER_OVERRIDES,
];

/// Names the gateway (or the HTTP client below it) writes on the upstream request itself. The
/// caller's copy under this exact name is replaced where it is written; a copy spelled with
/// `_` would travel beside it, so it is removed here.
static GATEWAY_WRITTEN: [HeaderName; 3] = [X_FORWARDED_FOR, X_REQUEST_ID, CONTENT_LENGTH];

/// Removes everything a caller may not pass to Tango: hop-by-hop headers (and those named in
/// `Connection`), credentials, `Host` (the upstream's authority is used), the forwarding
/// headers the gateway does not write (`Forwarded`, `X-Real-IP`), the proxy and method
/// overrides, and every `_` spelling of those and of the headers the gateway writes.
///
/// Runs before `X-Forwarded-For` is rewritten, which keeps the caller's `X-Forwarded-For`
/// (append mode reads it) but never an `X_Forwarded_For`.
pub(crate) fn clean_request_headers(headers: &mut HeaderMap) {
    hop_by_hop::remove_named_in_connection(headers);
    remove_all(
        headers,
        &REQUEST_REMOVED,
        Underscores::AsDashes {
            written: &GATEWAY_WRITTEN,
        },
    );
}

/// How [`remove_all`] treats a present name that is not listed exactly.
#[derive(Debug, Clone, Copy)]
enum Underscores<'a> {
    /// Kept: only the listed names go (responses, whose names are Tango's).
    Exact,
    /// Also removed when, with `_` read as `-`, it is listed, is one of `written`, or is named
    /// in `Connection` (either side may hold the `_`).
    AsDashes { written: &'a [HeaderName] },
}

/// Removes every header named in `lists` (at most 64 names in all) from `headers`, and with
/// [`Underscores::AsDashes`] their `_` spellings.
///
/// One pass over the names present, compared against the lists, then a removal only for
/// those found: a request carries a handful of headers, and a hashed `remove` per listed
/// name (24 per request, nearly all absent) costs more than the rest of the cleaning. A name
/// that holds a `_`, or a `Connection` token that does, is rare: only then is a name compared
/// spelling-insensitively, and only a name so found is kept aside (the one allocation).
fn remove_all(headers: &mut HeaderMap, lists: &[&[HeaderName]], underscores: Underscores<'_>) {
    let listed = || lists.iter().flat_map(|list| list.iter());
    debug_assert!(listed().count() <= 64);
    let mut present = 0u64;
    let mut connection = false;
    let mut respelled: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        connection |= name == CONNECTION;
        if let Some(index) = listed().position(|listed| listed == name) {
            present |= 1 << index;
            continue;
        }
        if let Underscores::AsDashes { written } = underscores {
            let spelling = name.as_str();
            if spelling.contains('_')
                && (listed()
                    .chain(written)
                    .any(|removed| same_as_dashes(removed.as_str(), spelling))
                    || hop_by_hop::connection_tokens(headers)
                        .any(|token| same_as_dashes(token, spelling)))
            {
                respelled.push(name.clone());
            }
        }
    }
    // A `Connection` token spelled with `_` names the header however the caller spelled it;
    // looked for only when there is such a token (no extra lookup in the common case).
    if connection
        && matches!(underscores, Underscores::AsDashes { .. })
        && hop_by_hop::connection_tokens(headers).any(|token| token.contains('_'))
    {
        for name in headers.keys() {
            if hop_by_hop::connection_tokens(headers)
                .any(|token| same_as_dashes(token, name.as_str()))
            {
                respelled.push(name.clone());
            }
        }
    }
    for (index, name) in listed().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    for name in respelled {
        headers.remove(name);
    }
}

/// Header names equal when case is ignored and `_` is read as `-`.
fn same_as_dashes(a: &str, b: &str) -> bool {
    let fold = |byte: u8| match byte {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(a, b)| fold(a) == fold(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::Strategy;

    fn map(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    /// The names left, sorted: a `HeaderMap` does not keep insertion order across removals.
    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn caller_credentials_and_forwarding_headers_are_removed() {
        let mut headers = map(&[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("proxy-authorization", "Basic eA=="),
            ("dpop", "eyJhbGciOi"),
            ("cookie", "session=1"),
            ("host", "evil.example"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("accept", "application/json"),
        ]);
        clean_request_headers(&mut headers);
        assert_eq!(names(&headers), ["accept"]);
    }

    /// Found by the `header_clean` fuzz target: a `Connection` that named itself was removed
    /// first, and the `_` spellings of the other headers it named were then forwarded.
    #[test]
    fn a_connection_naming_itself_still_removes_every_spelling_it_names() {
        let mut headers = map(&[
            ("connection", "connection, X_Secret, -"),
            ("x-secret", "1"),
            ("_", "2"),
            ("accept", "*/*"),
        ]);
        clean_request_headers(&mut headers);
        assert_eq!(names(&headers), ["accept"]);
    }

    #[test]
    fn proxy_and_method_overrides_are_removed() {
        let mut headers = map(&[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-port", "80"),
            ("x-forwarded-prefix", "/admin"),
            ("x-original-url", "/admin/users"),
            ("x-rewrite-url", "/admin/users"),
            ("x-http-method-override", "DELETE"),
            ("x-http-method", "DELETE"),
            ("x-method-override", "DELETE"),
            ("http2-settings", "AAMAAABk"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-custom", "1"),
        ]);
        clean_request_headers(&mut headers);
        // X-Forwarded-For is left to `forwarded::rewrite`, which reads it in append mode.
        assert_eq!(names(&headers), ["x-custom", "x-forwarded-for"]);
    }

    #[test]
    fn underscore_spellings_of_removed_and_written_headers_are_removed() {
        let mut headers = map(&[
            ("x_forwarded_for", "203.0.113.9"),
            ("x_real_ip", "203.0.113.9"),
            ("proxy_authorization", "Basic eA=="),
            ("transfer_encoding", "chunked"),
            ("content_length", "0"),
            ("x_request_id", "spoofed"),
            ("x_forwarded_host", "evil.example"),
            ("x-forwarded_proto", "http"),
            ("x_http_method_override", "DELETE"),
            ("keep_alive", "timeout=5"),
            ("http2_settings", "AAMAAABk"),
            ("x_custom", "kept"),
            ("user_agent", "kept"),
            ("x-request-id", "kept"),
        ]);
        clean_request_headers(&mut headers);
        assert_eq!(names(&headers), ["user_agent", "x-request-id", "x_custom"]);
    }

    #[test]
    fn names_in_connection_go_in_either_spelling() {
        let mut headers = map(&[
            ("connection", "X-Secret-Hop, other_hop"),
            ("x_secret_hop", "1"),
            ("x-secret-hop", "1"),
            ("other-hop", "1"),
            ("other_hop", "1"),
            ("x-kept", "1"),
        ]);
        clean_request_headers(&mut headers);
        assert_eq!(names(&headers), ["x-kept"]);
    }

    #[test]
    fn spellings_compare_whole_names() {
        assert!(same_as_dashes("x-forwarded-for", "x_forwarded_for"));
        assert!(same_as_dashes("X_Forwarded-For", "x-forwarded_for"));
        assert!(!same_as_dashes("x-forwarded-for", "x_forwarded_fo"));
        assert!(!same_as_dashes("x-forwarded-for", "x_forwarded_for_"));
        assert!(!same_as_dashes("x-forwarded-for", "x.forwarded.for"));
    }

    /// The straightforward form, written out by name: a name goes when it is listed, or when
    /// it has a `_` and, with `_` read as `-`, is listed or is one the gateway writes, or when
    /// `Connection` names it in either spelling.
    fn reference_clean(headers: &mut HeaderMap) {
        const REMOVED: [&str; 24] = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "http2-settings",
            "authorization",
            "proxy-authorization",
            "dpop",
            "cookie",
            "host",
            "forwarded",
            "x-real-ip",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-original-url",
            "x-rewrite-url",
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ];
        const WRITTEN: [&str; 3] = ["x-forwarded-for", "x-request-id", "content-length"];
        let dashes = |name: &str| name.to_ascii_lowercase().replace('_', "-");
        let named: Vec<String> = headers
            .get_all("connection")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|token| dashes(token.trim()))
            .collect();
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| {
                let name = name.as_str();
                let dashed = dashes(name);
                REMOVED.contains(&name)
                    || named.contains(&dashed)
                    || (name.contains('_')
                        && (REMOVED.contains(&dashed.as_str())
                            || WRITTEN.contains(&dashed.as_str())))
            })
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }

    const NAMES: [&str; 45] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
        "authorization",
        "proxy-authorization",
        "dpop",
        "cookie",
        "host",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "accept",
        "content-type",
        "x-forwarded-for",
        "x-request-id",
        "close",
        "x-custom",
        "proxy-authenticate",
        "x_forwarded_for",
        "x_real_ip",
        "proxy_authorization",
        "transfer_encoding",
        "http2_settings",
        "content_length",
        "x_request_id",
        "x_forwarded_host",
        "x-http_method",
        "keep_alive",
        "x_custom",
        "user_agent",
        "a_b",
        "a-b",
    ];

    fn header_lines() -> impl Strategy<Value = Vec<(usize, String)>> {
        proptest::collection::vec(
            (
                0..NAMES.len(),
                "(x-custom|x_custom|X-Custom|close|keep-alive|te|accept|a-b|A_B|[a-z_]{1,4})(, ?[a-z_-]{1,8}){0,2}",
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
        fn one_pass_cleaning_matches_the_reference(lines in header_lines()) {
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
            let named: Vec<String> = reference
                .get_all("connection")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .map(|token| token.trim().to_ascii_lowercase())
                .collect();
            for name in named {
                reference.remove(name.as_str());
            }
            for name in [
                "connection",
                "keep-alive",
                "proxy-connection",
                "te",
                "trailer",
                "transfer-encoding",
                "upgrade",
                "http2-settings",
                "proxy-authenticate",
            ] {
                reference.remove(name);
            }
            proptest::prop_assert_eq!(fast, reference);
        }
    }
}
