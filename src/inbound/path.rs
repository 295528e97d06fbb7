//! Request path normalisation, done before route matching (PRODUCT.md §4.1 and §12).
//!
//! Invariant: the path matched against routes is exactly the path sent upstream, and no server
//! can read it as another path: it has no dot segments, no empty segments and no `;`, and every
//! segment, its escapes decoded, is valid UTF-8 without control characters. Escapes of
//! unreserved characters (letters, digits, `-._~`: RFC 3986 §6.2.2.2) are decoded, so
//! `/raas/v2/%6frders` is matched, and sent, as `/raas/v2/orders`, never as a path a narrower
//! route does not see; `%2e` is then resolved as a dot. `%2f`, `%5c`, `\`, `%00`, `%25`, `;` and
//! `%3b` are refused. Every other byte, non-ASCII UTF-8 and the other escapes included, is sent
//! exactly as the caller sent it.

use std::borrow::Cow;

/// Why a path is refused. The message goes to the caller: fixed text, never the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadPath {
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    #[error("the path contains an encoded slash, backslash, NUL or percent sign")]
    AmbiguousEncoding,
    /// Tomcat and Jetty read `;` as the start of path parameters and drop them:
    /// `/raas/v2/..;/..;/other/x` is `/other/x` to them, a `/raas/v2/` path to the gateway.
    #[error("the path contains a semicolon: path parameters are refused")]
    Semicolon,
    #[error("the path contains a malformed percent-encoding")]
    MalformedEncoding,
    /// Overlong forms (`%c0%ae` for `.`), surrogates, stray or missing continuation bytes: a
    /// lenient decoder reads them as characters the gateway never saw.
    #[error("the path's percent-encoding is not valid UTF-8")]
    InvalidUtf8,
    #[error("the path contains a control character")]
    ControlCharacter,
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// Normalises an origin-form path: collapses `//`, resolves `.` and `..` (also when written
/// `%2e`), keeps a trailing `/`, and refuses what cannot be normalised safely. A path that
/// is already normal (nearly every real one, escapes and non-ASCII text included) is returned
/// borrowed, without allocating.
pub(crate) fn normalise(raw: &str) -> Result<Cow<'_, str>, BadPath> {
    if is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    resolve(raw).map(Cow::Owned)
}

/// True when [`resolve`] would return `raw` unchanged: absolute, every segment valid and free
/// of `%2e`, no `.`/`..` segment and no empty segment except a trailing `/`. A refused path is
/// not normal: [`resolve`] then says why.
fn is_normal(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return false;
        }
        if scan_segment(segment) != Ok(Dots::None) {
            return false;
        }
    }
    true
}

/// The general case: check every segment, decode its dots, and resolve segments on a stack.
fn resolve(raw: &str) -> Result<String, BadPath> {
    let rest = raw.strip_prefix('/').ok_or(BadPath::NotAbsolute)?;
    let mut segments: Vec<Cow<'_, str>> = Vec::new();
    let mut trailing_slash = false;
    for raw_segment in rest.split('/') {
        let segment = match scan_segment(raw_segment)? {
            Dots::None => Cow::Borrowed(raw_segment),
            Dots::Encoded => Cow::Owned(decode_unreserved(raw_segment)),
        };
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

/// Whether a valid segment holds an escaped unreserved character, which [`decode_unreserved`]
/// must decode before the segment is matched or resolved (`%2e%2e` is `..`, `%6frders` is
/// `orders`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dots {
    None,
    Encoded,
}

/// Checks one segment (the text between two `/`) as a server that decodes it would read it:
/// its escapes decoded together with its literal bytes must be valid UTF-8 without control
/// characters, and no literal or decoded byte may change the path's structure.
///
/// Allocation-free: the decoded bytes are checked as they are produced, never stored.
fn scan_segment(segment: &str) -> Result<Dots, BadPath> {
    let bytes = segment.as_bytes();
    let mut utf8 = Utf8Check::default();
    let mut dots = Dots::None;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let decoded = match byte {
            b'%' => {
                let value = bytes
                    .get(i + 1..i + 3)
                    .and_then(hex_pair)
                    .ok_or(BadPath::MalformedEncoding)?;
                match value {
                    b'.' | b'-' | b'_' | b'~' => dots = Dots::Encoded,
                    _ if value.is_ascii_alphanumeric() => dots = Dots::Encoded,
                    b'/' | b'\\' | 0 | b'%' => return Err(BadPath::AmbiguousEncoding),
                    b';' => return Err(BadPath::Semicolon),
                    _ => {}
                }
                i += 3;
                value
            }
            b'\\' => return Err(BadPath::AmbiguousEncoding),
            b';' => return Err(BadPath::Semicolon),
            _ => {
                i += 1;
                byte
            }
        };
        utf8.push(decoded)?;
    }
    utf8.finish()?;
    Ok(dots)
}

/// Two hex digits. Not `u8::from_str_radix`, which also takes a sign (`%+5` would be 0x05).
fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |d: u8| char::from(d).to_digit(16);
    match pair {
        [high, low] => u8::try_from((digit(*high)? << 4) | digit(*low)?).ok(),
        _ => None,
    }
}

/// A streaming UTF-8 check (RFC 3629 §4, the well-formed byte sequences) that also refuses
/// control characters: C0, DEL and C1 (U+0080–U+009F, encoded `C2 80`–`C2 9F`).
#[derive(Debug, Default)]
struct Utf8Check {
    /// Continuation bytes still expected in the current character.
    needed: u8,
    /// Range of the next continuation byte: narrower than `80..=BF` right after `E0`, `ED`,
    /// `F0` and `F4`, which is what refuses overlong forms, surrogates and code points past
    /// U+10FFFF.
    low: u8,
    high: u8,
    /// The next byte completes a character `C2 xx`, a C1 control when `xx <= 9F`.
    after_c2: bool,
}

impl Utf8Check {
    fn push(&mut self, byte: u8) -> Result<(), BadPath> {
        if self.needed > 0 {
            if byte < self.low || byte > self.high {
                return Err(BadPath::InvalidUtf8);
            }
            if self.after_c2 && byte <= 0x9f {
                return Err(BadPath::ControlCharacter);
            }
            self.needed -= 1;
            (self.low, self.high, self.after_c2) = (0x80, 0xbf, false);
            return Ok(());
        }
        let (needed, low, high) = match byte {
            0x00..=0x1f | 0x7f => return Err(BadPath::ControlCharacter),
            0x20..=0x7e => return Ok(()),
            0xc2..=0xdf => (1, 0x80, 0xbf),
            0xe0 => (2, 0xa0, 0xbf),
            0xed => (2, 0x80, 0x9f),
            0xe1..=0xef => (2, 0x80, 0xbf),
            0xf0 => (3, 0x90, 0xbf),
            0xf1..=0xf3 => (3, 0x80, 0xbf),
            0xf4 => (3, 0x80, 0x8f),
            // 80–BF cannot start a character, C0/C1 only start overlong forms, F5–FF are
            // past U+10FFFF.
            _ => return Err(BadPath::InvalidUtf8),
        };
        *self = Utf8Check {
            needed,
            low,
            high,
            after_c2: byte == 0xc2,
        };
        Ok(())
    }

    /// The segment ended: a character cut short is invalid.
    fn finish(&self) -> Result<(), BadPath> {
        if self.needed == 0 {
            Ok(())
        } else {
            Err(BadPath::InvalidUtf8)
        }
    }
}

/// Decodes the escapes of unreserved characters in a segment [`scan_segment`] accepted, where
/// every `%` starts an escape. Everything else is copied as whole slices of the input, so
/// non-ASCII text and the other escapes stay byte for byte as the caller sent them.
fn decode_unreserved(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut pieces = segment.split('%');
    if let Some(first) = pieces.next() {
        out.push_str(first);
    }
    for piece in pieces {
        let unreserved = piece
            .get(..2)
            .and_then(|hex| hex_pair(hex.as_bytes()))
            .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b));
        match unreserved {
            Some(byte) => {
                out.push(char::from(byte));
                out.push_str(&piece[2..]);
            }
            None => {
                out.push('%');
                out.push_str(piece);
            }
        }
    }
    out
}

/// True when `path` lies under `prefix`, matching whole segments (`/raas/v2` matches
/// `/raas/v2` and `/raas/v2/orders`, never `/raas/v2x`). `prefix` is normalised without a
/// trailing slash, or is `/`.
pub(crate) fn has_prefix(path: &str, prefix: &str) -> bool {
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
    fn plain_paths_are_unchanged_and_borrowed() {
        for path in [
            "/",
            "/raas/v2/orders",
            "/raas/v2/orders/",
            "/raas/v2/catalogs%3Fx",
            "/raas/v2/a%20b",
            "/raas/v2/café",
            "/raas/v2/caf%c3%a9",
            "/raas/v2/caf%C3%A9",
            "/raas/v2/%e2%82%ac",
            "/raas/v2/%f0%9f%98%80",
            "/raas/v2/%c2%a0",
        ] {
            assert!(
                matches!(normalise(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}: {:?}",
                normalise(path)
            );
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
    fn non_ascii_text_and_other_escapes_are_kept_as_sent_when_the_path_is_rewritten() {
        let cases = [
            ("/raas//v2/café/%2e/x", "/raas/v2/café/x"),
            ("/raas/./v2/é%41", "/raas/v2/éA"),
            ("/raas/v2/caf%2e/é%c3%a9", "/raas/v2/caf./é%c3%a9"),
            ("/raas/v2/é%2e%41é/", "/raas/v2/é.Aé/"),
            ("/raas/v2/%6frders%20x%7e", "/raas/v2/orders%20x~"),
            ("/raas/v2/x/../%e2%82%ac", "/raas/v2/%e2%82%ac"),
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
        assert_eq!(normalise("/a%+5"), Err(BadPath::MalformedEncoding));
        assert_eq!(normalise("/a%é"), Err(BadPath::MalformedEncoding));
        assert_eq!(normalise("*"), Err(BadPath::NotAbsolute));
        assert_eq!(normalise(""), Err(BadPath::NotAbsolute));
    }

    #[test]
    fn semicolons_are_refused_literal_or_encoded() {
        for raw in [
            "/raas/v2/..;/..;/other/x",
            "/raas/v2/orders;jsessionid=1",
            "/raas;/v2",
            "/;",
            "/raas/v2/%3b",
            "/raas/v2/..%3B/x",
        ] {
            assert_eq!(normalise(raw), Err(BadPath::Semicolon), "{raw}");
        }
    }

    #[test]
    fn overlong_and_invalid_utf8_escapes_are_refused() {
        for raw in [
            "/raas/v2/%c0%ae",
            "/raas/v2/%c0%ae%c0%ae/x",
            "/raas/v2/%e0%80%ae",
            "/raas/v2/%f0%80%80%ae",
            "/raas/v2/%c0%af",
            "/raas/v2/%c1%bf",
            "/raas/v2/%ed%a0%80",
            "/raas/v2/%ED%BF%BF",
            "/raas/v2/%f4%90%80%80",
            "/raas/v2/%f5%80%80%80",
            "/raas/v2/%ff",
            "/raas/v2/%fe",
            "/raas/v2/%80",
            "/raas/v2/a%bf",
            "/raas/v2/%e2%82",
            "/raas/v2/%e2%82/%ac",
            "/raas/v2/%e2%82a",
            // Escapes and literal text are one byte sequence: C3 C3 A9, then C3 A9 A9.
            "/raas/v2/%c3é",
            "/raas/v2/é%a9",
        ] {
            assert_eq!(normalise(raw), Err(BadPath::InvalidUtf8), "{raw}");
        }
    }

    #[test]
    fn control_characters_are_refused() {
        for raw in [
            "/raas/v2/%0a",
            "/raas/v2/a%0D%0Ab",
            "/raas/v2/%09",
            "/raas/v2/%1f",
            "/raas/v2/%7f",
            "/raas/v2/%c2%80",
            "/raas/v2/%c2%85",
            "/raas/v2/%C2%9F",
            "/raas/v2/\u{85}",
            "/raas/v2/\n",
        ] {
            assert_eq!(normalise(raw), Err(BadPath::ControlCharacter), "{raw:?}");
        }
    }

    /// Every sequence of up to four bytes taken from the edges of each UTF-8 byte class,
    /// written as escapes, is accepted exactly when the standard library reads it as UTF-8
    /// without control characters (random bytes almost never hit `E0 80`, `ED A0` or `F4 90`).
    #[test]
    fn escaped_byte_sequences_agree_with_std_utf8() {
        const EDGES: [u8; 29] = [
            0x00, 0x1f, 0x20, 0x41, 0x7e, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1,
            0xc2, 0xc3, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5,
            0xff,
        ];
        let mut bytes = Vec::with_capacity(4);
        let mut segment = String::with_capacity(12);
        let mut checked = 0;
        for len in 1..=4u32 {
            for mut index in 0..EDGES.len().pow(len) {
                bytes.clear();
                segment.clear();
                for _ in 0..len {
                    let byte = EDGES[index % EDGES.len()];
                    index /= EDGES.len();
                    bytes.push(byte);
                    segment.push_str(&format!("%{byte:02x}"));
                }
                let want = std::str::from_utf8(&bytes)
                    .is_ok_and(|text| !text.chars().any(|c| c.is_control()));
                assert_eq!(scan_segment(&segment).is_ok(), want, "{segment}");
                checked += 1;
            }
        }
        assert_eq!(checked, 29 + 29 * 29 + 29 * 29 * 29 + 29 * 29 * 29 * 29);
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

    /// The pieces an attacker combines into a segment.
    fn piece() -> impl Strategy<Value = String> {
        let fixed = [
            "raas", "v2", "admin", ".", "..", "%2e", "%2E", "%2f", "%41", ";", "%3b", "%3B", "é",
            "%c3", "%a9", "%A9", "%e2", "%82", "%ac", "%c0", "%ae", "%ed", "%a0", "%80", "%ff",
            "%0a", "%7f", "%c2", "%85", "\u{85}", "\\",
        ];
        prop_oneof![
            proptest::sample::select(fixed.to_vec()).prop_map(str::to_owned),
            "[a-z0-9._~-]{1,6}",
        ]
    }

    /// Empty, or one to three pieces (so that escapes meet across pieces: `%c3` + `%a9`).
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            proptest::collection::vec(piece(), 1..4).prop_map(|pieces| pieces.concat()),
        ]
    }

    /// Reference model, written the obvious way with the standard library: decode every
    /// escape of a segment, refuse it unless the result is UTF-8 without control characters,
    /// `;`, `/`, `\` or `%`; then resolve dot segments on a stack, keeping escapes as sent
    /// except `%2e`.
    fn model(segments: &[String]) -> Option<Vec<String>> {
        let mut stack = Vec::new();
        for raw in segments {
            let mut decoded = Vec::new();
            let mut bytes = raw.bytes();
            while let Some(byte) = bytes.next() {
                if byte == b'%' {
                    let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                    let hex = String::from_utf8(hex).ok()?;
                    decoded.push(u8::from_str_radix(&hex, 16).ok()?);
                } else {
                    decoded.push(byte);
                }
            }
            let text = String::from_utf8(decoded).ok()?;
            if text.chars().any(|c| c.is_control() || "/\\%;".contains(c)) {
                return None;
            }
            match decode_unreserved_reference(raw).as_str() {
                "" | "." => {}
                ".." => {
                    stack.pop()?;
                }
                other => stack.push(other.to_owned()),
            }
        }
        Some(stack)
    }

    /// Written apart from the code under test: each `%XY` whose byte is an unreserved
    /// character becomes that character, everything else stays.
    fn decode_unreserved_reference(raw: &str) -> String {
        let mut out = String::new();
        let mut rest = raw;
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
            let byte = escape.get(1..).and_then(|h| u8::from_str_radix(h, 16).ok());
            match byte.map(char::from) {
                Some(c)
                    if escape.len() == 3 && (c.is_ascii_alphanumeric() || "-._~".contains(c)) =>
                {
                    out.push(c)
                }
                _ => out.push_str(escape),
            }
            rest = &rest[at + escape.len()..];
        }
        out.push_str(rest);
        out
    }

    /// Bytes a segment's escapes might decode to: whole characters, or any single byte.
    fn decoded_bytes() -> impl Strategy<Value = Vec<(Vec<u8>, bool)>> {
        let unit = prop_oneof![
            (any::<char>(), any::<bool>())
                .prop_map(|(c, literal)| (c.to_string().into_bytes(), literal)),
            any::<u8>().prop_map(|b| (vec![b], false)),
        ];
        proptest::collection::vec(unit, 0..6)
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

        /// Each unit is written as a literal character or as `%XX` escapes; the segment is
        /// accepted exactly when the standard library reads the bytes as UTF-8 without control
        /// characters or structural ones.
        #[test]
        fn segment_check_agrees_with_std_utf8(units in decoded_bytes()) {
            let mut segment = String::new();
            let mut bytes = Vec::new();
            for (unit, literal) in &units {
                match std::str::from_utf8(unit) {
                    Ok(text) if *literal && !text.contains(['%', '/']) => segment.push_str(text),
                    _ => {
                        for byte in unit {
                            segment.push_str(&format!("%{byte:02X}"));
                        }
                    }
                }
                bytes.extend_from_slice(unit);
            }
            let want = std::str::from_utf8(&bytes)
                .is_ok_and(|text| !text.chars().any(|c| c.is_control() || "/\\%;".contains(c)));
            prop_assert_eq!(scan_segment(&segment).is_ok(), want, "{}", segment);
        }

        #[test]
        fn the_borrowed_fast_path_agrees_with_the_general_one(
            raw in r"(/|/|a|bc|\.|\.\.|%2e|%2E|%41|%|\\|;|%3b|é|%c3|%a9|%c2|%85|\x{85}|%ff){0,12}"
        ) {
            prop_assert_eq!(
                normalise(&raw).map(Cow::into_owned),
                resolve(&raw),
                "{}", raw
            );
        }

        #[test]
        fn output_is_a_fixed_point_without_dot_segments(raw in "/[a-zA-Z0-9./%_~;é-]{0,40}") {
            if let Ok(path) = normalise(&raw) {
                let again = normalise(&path);
                prop_assert_eq!(again.as_ref(), Ok(&path));
                prop_assert!(!path.contains("//"));
                prop_assert!(!path.contains(';'));
                prop_assert!(!path.to_ascii_lowercase().contains("%2e"));
                for segment in path.split('/') {
                    prop_assert!(segment != "." && segment != "..");
                }
            }
        }
    }
}
