//! Request header cleaning (`headers::clean_request_headers`, PRODUCT.md §4.3, §12).
//!
//! Invariant: nothing removable survives, under any spelling, and nothing else is touched.
//! Removable, compared with case ignored and `_` read as `-`: the hop-by-hop headers, every
//! header a `Connection` token names, the caller's credentials (`Authorization`,
//! `Proxy-Authorization`, `DPoP`, `Cookie`), `Host`, `Forwarded`, `X-Real-IP`, the proxy and
//! method overrides; and the `_` spellings of the headers the gateway writes itself
//! (`X-Forwarded-For`, `X-Request-Id`, `Content-Length`; their exact names are rewritten
//! later, not here). Every other header keeps all its values, in order.
//!
//! Input: one `name: value` per line; lines whose name or value is not a valid header are
//! skipped.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tango_gateway::fuzzing::clean_request_headers;

/// Written from PRODUCT.md and RFC 9110 §7.6.1, not from the gateway's lists.
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

fn folded(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            other => char::from(other.to_ascii_lowercase()),
        })
        .collect()
}

fn removable(name: &str, tokens: &[String]) -> bool {
    let name_folded = folded(name);
    REMOVED.contains(&name_folded.as_str())
        || (name.contains('_') && WRITTEN.contains(&name_folded.as_str()))
        || tokens.iter().any(|token| folded(token) == name_folded)
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    // `Connection` tokens as RFC 9110 §7.6.1 reads them: comma-separated, whitespace trimmed;
    // a line that is not visible ASCII names nothing.
    let tokens: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|token| token.trim_matches([' ', '\t']).to_owned())
        .filter(|token| !token.is_empty())
        .collect();
    let before = headers.clone();
    clean_request_headers(&mut headers);

    for name in headers.keys() {
        assert!(
            !removable(name.as_str(), &tokens),
            "{name} survived (Connection tokens {tokens:?})"
        );
    }
    for name in before.keys() {
        if removable(name.as_str(), &tokens) {
            continue;
        }
        let kept: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
        let sent: Vec<&HeaderValue> = before.get_all(name).iter().collect();
        assert_eq!(
            kept, sent,
            "{name} was changed (Connection tokens {tokens:?})"
        );
    }
});
