//! Hop-by-hop headers (RFC 9110 §7.6.1): meaningful for one connection only, never forwarded.
//!
//! Invariant: the headers named in `Connection` are read before `Connection` itself is removed
//! (a classic proxy bug deletes `Connection` first and forwards what it named).

use http::header::{
    HeaderName, CONNECTION, PROXY_AUTHENTICATE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::HeaderMap;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// The h2c upgrade's settings (RFC 7540 §3.2.1): connection-specific, like `Upgrade` itself.
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
/// A field literally named `close` (reserved, RFC 9110 §16.3.2) when `Connection` names it.
const CLOSE: HeaderName = HeaderName::from_static("close");

/// Always hop-by-hop, whether or not `Connection` names them. A static, not a const: a const
/// list is rebuilt, then dropped, at every use.
pub(crate) static FIXED: [HeaderName; 8] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    HTTP2_SETTINGS,
];

/// The tokens of every `Connection` line, trimmed, in their original case. A line that is not
/// visible ASCII cannot name a header we would forward, so it is skipped rather than trusted.
pub(super) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(','))
        .map(str::trim)
}

/// Removes the headers that `Connection` names. Call it before `Connection` itself goes.
pub(crate) fn remove_named_in_connection(headers: &mut HeaderMap) {
    if !headers.contains_key(CONNECTION) {
        return;
    }
    // Header names are case-insensitive tokens; a token that is not one is skipped. The usual
    // values, `keep-alive` (in the fixed set) and `close`, are matched without parsing them
    // into a `HeaderName`, which allocates for a non-standard name: the common case allocates
    // nothing.
    let mut close = false;
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|token| {
            if token.eq_ignore_ascii_case("close") {
                close = true;
                return false;
            }
            // `Connection` itself goes with the fixed list, after the later removals have read
            // its tokens: removed here (`Connection: connection, x_secret`), the `_` spellings
            // of what it names were kept.
            !token.eq_ignore_ascii_case("keep-alive") && !token.eq_ignore_ascii_case("connection")
        })
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    if close {
        headers.remove(CLOSE);
    }
}

/// Removes hop-by-hop headers (the fixed set and those `Connection` names): the rule on its
/// own, for the tests; requests and responses use [`super::clean_request_headers`] and
/// [`remove_from_response`], which apply it with their other removals in one pass.
#[cfg(test)]
fn remove(headers: &mut HeaderMap) {
    remove_named_in_connection(headers);
    super::remove_all(headers, &[&FIXED], super::Underscores::Exact);
}

/// What a response loses by exact name: `Proxy-Authenticate` addresses the gateway, not the
/// caller.
static RESPONSE_REMOVED: [&[HeaderName]; 2] = [&FIXED, &PROXY_AUTHENTICATE_ONLY];
static PROXY_AUTHENTICATE_ONLY: [HeaderName; 1] = [PROXY_AUTHENTICATE];

/// Cleans a response: hop-by-hop headers and `Proxy-Authenticate`. Names are matched exactly:
/// the names are Tango's, not a caller's attempt at smuggling.
pub(crate) fn remove_from_response(headers: &mut HeaderMap) {
    remove_named_in_connection(headers);
    super::remove_all(headers, &RESPONSE_REMOVED, super::Underscores::Exact);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn headers_named_in_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop , close"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("close", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        remove(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("accept"));
    }

    #[test]
    fn http2_settings_is_hop_by_hop_without_being_named() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAoAAAAAIAAAAA"),
        );
        headers.insert("upgrade", HeaderValue::from_static("h2c"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        remove(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("accept"));
    }

    #[test]
    fn responses_lose_http2_settings_and_proxy_authenticate_only() {
        let mut headers = HeaderMap::new();
        headers.insert("http2-settings", HeaderValue::from_static("AAMAAABk"));
        headers.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
        // A name Tango chose, spelled with `_`, is Tango's own: passed through.
        headers.insert("x_tango_trace", HeaderValue::from_static("1"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        remove_from_response(&mut headers);
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert!(headers.contains_key("x_tango_trace"));
        assert!(headers.contains_key("content-type"));
    }

    #[test]
    fn non_ascii_connection_value_does_not_panic() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_bytes(b"\xff\xfe").unwrap_or(HeaderValue::from_static("x")),
        );
        headers.insert("x-keep", HeaderValue::from_static("1"));
        remove(&mut headers);
        assert!(headers.contains_key("x-keep"));
        assert!(!headers.contains_key(CONNECTION));
    }
}
