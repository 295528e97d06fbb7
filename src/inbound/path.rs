//! Request path normalisation, done before route matching (PRODUCT.md §4.1).
//!
//! Invariant: the path matched against routes is exactly the path sent upstream, and it has
//! no dot segments, no empty segments and no encoding that a server could decode into one
//! (`%2e` is decoded and resolved; `%2f`, `%5c`, `\`, `%00` and `%25` are refused). So no
//! encoding can reach a route the caller is not allowed on.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    #[error("the path contains an encoded slash, backslash, NUL or percent sign")]
    AmbiguousEncoding,
    #[error("the path contains a malformed percent-encoding")]
    MalformedEncoding,
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// Normalises an origin-form path: collapses `//`, resolves `.` and `..` (also when written
/// `%2e`), keeps a trailing `/`, and refuses what cannot be normalised safely. A path that
/// is already normal (nearly every real one) is returned borrowed, without allocating.
pub fn normalise(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    if is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    resolve(raw).map(Cow::Owned)
}

/// True when [`resolve`] would return `raw` unchanged: absolute, no escape or backslash, no
/// `.`/`..` segment and no empty segment except a trailing `/`.
fn is_normal(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    if raw.bytes().any(|b| b == b'%' || b == b'\\') {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// The general case: decode dots and resolve segments on a stack.
fn resolve(raw: &str) -> Result<String, BadPath> {
    if !raw.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    let mut segments: Vec<Cow<'_, str>> = Vec::new();
    let mut trailing_slash = false;
    for raw_segment in raw[1..].split('/') {
        let segment = decode_dots(raw_segment)?;
        match &*segment {
            "" | "." => trailing_slash = true,
            ".." => {
                segments.pop().ok_or(BadPath::AboveRoot)?;
                trailing_slash = true;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(raw.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        path.push('/');
    }
    Ok(path)
}

/// Decodes `%2e` to `.` and checks every other escape, refusing the ones that could change
/// the path's structure when a server decodes them.
fn decode_dots(segment: &str) -> Result<Cow<'_, str>, BadPath> {
    if segment.contains('\\') {
        return Err(BadPath::AmbiguousEncoding);
    }
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // Only ASCII reaches here: hyper accepts URI characters only.
            out.push(char::from(bytes[i]));
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(BadPath::MalformedEncoding)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(BadPath::MalformedEncoding)?;
        match value {
            b'.' => out.push('.'),
            b'/' | b'\\' | 0 | b'%' => return Err(BadPath::AmbiguousEncoding),
            _ => {
                out.push('%');
                out.push_str(&segment[i + 1..i + 3]);
            }
        }
        i += 3;
    }
    Ok(Cow::Owned(out))
}

/// True when `path` lies under `prefix`, matching whole segments (`/raas/v2` matches
/// `/raas/v2` and `/raas/v2/orders`, never `/raas/v2x`). `prefix` is normalised without a
/// trailing slash, or is `/`.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_paths_are_unchanged() {
        for path in [
            "/",
            "/raas/v2/orders",
            "/raas/v2/orders/",
            "/raas/v2/catalogs%3Fx",
        ] {
            assert_eq!(normalise(path).as_deref(), Ok(path));
        }
    }

    #[test]
    fn dot_segments_and_double_slashes_are_resolved() {
        let cases = [
            ("//raas//v2/", "/raas/v2/"),
            ("/raas/./v2/orders", "/raas/v2/orders"),
            ("/admin/../raas/v2", "/raas/v2"),
            ("/raas/v2/%2e%2e/v1", "/raas/v1"),
            ("/raas/v2/%2E%2e/%2e/x", "/raas/x"),
            ("/raas/v2/..", "/raas/"),
            ("/a/b/.", "/a/b/"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalise(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(normalise("/../etc"), Err(BadPath::AboveRoot));
        assert_eq!(normalise("/raas/%2e%2e/%2e%2e/x"), Err(BadPath::AboveRoot));
        assert_eq!(normalise("/raas%2fv2"), Err(BadPath::AmbiguousEncoding));
        assert_eq!(normalise("/raas%5cv2"), Err(BadPath::AmbiguousEncoding));
        assert_eq!(normalise("/raas\\v2"), Err(BadPath::AmbiguousEncoding));
        assert_eq!(normalise("/a%00"), Err(BadPath::AmbiguousEncoding));
        assert_eq!(normalise("/%252e%252e/x"), Err(BadPath::AmbiguousEncoding));
        assert_eq!(normalise("/a%2"), Err(BadPath::MalformedEncoding));
        assert_eq!(normalise("/a%zz"), Err(BadPath::MalformedEncoding));
        assert_eq!(normalise("*"), Err(BadPath::NotAbsolute));
        assert_eq!(normalise(""), Err(BadPath::NotAbsolute));
    }

    #[test]
    fn prefix_matches_whole_segments() {
        assert!(has_prefix("/raas/v2", "/raas/v2"));
        assert!(has_prefix("/raas/v2/", "/raas/v2"));
        assert!(has_prefix("/raas/v2/orders", "/raas/v2"));
        assert!(!has_prefix("/raas/v2x", "/raas/v2"));
        assert!(!has_prefix("/raas", "/raas/v2"));
        assert!(has_prefix("/anything", "/"));
    }

    /// Segments built from the pieces an attacker combines.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("raas".to_owned()),
            Just("v2".to_owned()),
            Just("admin".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E%2e".to_owned()),
            Just(".%2e".to_owned()),
            Just("".to_owned()),
            Just("%2f".to_owned()),
            Just("%41".to_owned()),
            "[a-z0-9._~-]{1,6}",
        ]
    }

    /// Reference model: decode dots, then resolve segments on a stack.
    fn model(segments: &[String]) -> Option<Vec<String>> {
        let mut stack = Vec::new();
        for raw in segments {
            if raw.to_ascii_lowercase().contains("%2f") {
                return None;
            }
            let decoded = raw.replace("%2e", ".").replace("%2E", ".");
            match decoded.as_str() {
                "" | "." => {}
                ".." => {
                    stack.pop()?;
                }
                other => stack.push(other.to_owned()),
            }
        }
        Some(stack)
    }

    proptest! {
        #[test]
        fn matches_the_reference_model(segments in proptest::collection::vec(segment(), 0..8)) {
            let raw = format!("/{}", segments.join("/"));
            match (normalise(&raw), model(&segments)) {
                (Ok(path), Some(stack)) => {
                    let body = path.trim_end_matches('/');
                    let got: Vec<&str> = body.split('/').skip(1).collect();
                    let want: Vec<&str> = stack.iter().map(String::as_str).collect();
                    prop_assert_eq!(got, want);
                }
                (Err(_), None) => {}
                (got, want) => prop_assert!(false, "{raw}: got {got:?}, model {want:?}"),
            }
        }

        #[test]
        fn the_borrowed_fast_path_agrees_with_the_general_one(raw in r"(/|/|a|bc|\.|\.\.|%2e|%2E|%41|%|\\){0,12}") {
            prop_assert_eq!(
                normalise(&raw).map(Cow::into_owned),
                resolve(&raw),
                "{}", raw
            );
        }

        #[test]
        fn output_is_a_fixed_point_without_dot_segments(raw in "/[a-zA-Z0-9./%_~-]{0,40}") {
            if let Ok(path) = normalise(&raw) {
                let again = normalise(&path);
                prop_assert_eq!(again.as_ref(), Ok(&path));
                prop_assert!(!path.contains("//"));
                prop_assert!(!path.to_ascii_lowercase().contains("%2e"));
                for segment in path.split('/') {
                    prop_assert!(segment != "." && segment != "..");
                }
            }
        }
    }
}
