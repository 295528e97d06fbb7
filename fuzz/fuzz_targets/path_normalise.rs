//! Path normalisation (`inbound::path::normalise`, PRODUCT.md §4.1, §12).
//!
//! Invariant: a path that is accepted comes back absolute, with no empty segment (but a
//! trailing `/`), no `.` or `..` segment (literal or `%2e`-encoded), no `;` (literal or
//! `%3b`), no backslash, no control character, and as a fixed point: normalising it again
//! returns it unchanged. A path with a `;` or a backslash is always refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tango_gateway::fuzzing::normalise_path;

/// The segment as a server that decodes only the dots would read it.
fn dots_decoded(segment: &str) -> String {
    segment.replace("%2e", ".").replace("%2E", ".")
}

/// Every escape decoded (an accepted path has only well-formed ones).
fn percent_decoded(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("well-formed escape");
            out.push(u8::from_str_radix(hex, 16).expect("well-formed escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn check(raw: &str) {
    let Ok(path) = normalise_path(raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}: not absolute");
    assert!(!path.contains(';'), "{raw:?} -> {path:?}: semicolon");
    assert!(!path.contains('\\'), "{raw:?} -> {path:?}: backslash");
    let lower = path.to_ascii_lowercase();
    for encoded in ["%3b", "%2f", "%5c", "%00", "%25"] {
        assert!(!lower.contains(encoded), "{raw:?} -> {path:?}: {encoded}");
    }
    assert!(
        !path.chars().any(char::is_control),
        "{raw:?} -> {path:?}: control character"
    );
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        assert!(
            !segment.is_empty() || i == last,
            "{raw:?} -> {path:?}: empty segment"
        );
        let bytes = percent_decoded(segment);
        let text = std::str::from_utf8(&bytes)
            .unwrap_or_else(|_| panic!("{raw:?} -> {path:?}: decodes to invalid UTF-8"));
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() || matches!(c, '/' | '\\' | ';' | '%')),
            "{raw:?} -> {path:?}: decodes to {text:?}"
        );
        let decoded = dots_decoded(segment);
        assert!(
            decoded != "." && decoded != "..",
            "{raw:?} -> {path:?}: dot segment"
        );
    }
    assert_eq!(
        normalise_path(&path).as_deref(),
        Ok(path.as_str()),
        "{raw:?} -> {path:?}: not a fixed point"
    );
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if raw.contains(';') || raw.contains('\\') {
        assert!(normalise_path(&raw).is_err(), "{raw:?} accepted");
    }
    check(&raw);
    // The same path as it arrives: through `http::Uri`'s own parsing.
    if let Ok(uri) = format!("http://gateway.local{raw}").parse::<http::Uri>() {
        check(uri.path());
    }
});
