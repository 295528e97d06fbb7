//! Configuration problems: each names the key path it concerns; all are collected and shown
//! together, one per line, as `<file>: <key path>: <message>`.
//!
//! Invariant: a message never carries a configured value that could be secret: serde's own
//! messages quote the offending value, so they pass through [`redact_serde_message`].

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path such as `routes[0].upstream.tls.client_key_file`; empty for whole-file problems.
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.path.is_empty() {
                write!(f, "{}: {}", self.file.display(), p.message)?;
            } else {
                write!(f, "{}: {}: {}", self.file.display(), p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// True when some problem sits at exactly this key path (handy in tests and for tooling).
    pub fn has(&self, path: &str) -> bool {
        self.problems.iter().any(|p| p.path == path)
    }
}

/// Collects problems while validation carries on, so every one is reported.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<ConfigProblem>);

impl Problems {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// `base.key`, or `key` at the top level. A key named "" (YAML allows one) is written `""`:
/// its path must still name it, not read as the whole file's.
pub(crate) fn join(base: &str, key: &str) -> String {
    let key = if key.is_empty() { "\"\"" } else { key };
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// Removes the quoted values serde puts in its messages (`invalid type: string "…"`,
/// `unknown variant `…``), keeping the shape of the message. Field names stay: they are keys,
/// not values, and naming the unknown key is the point of the message.
pub(crate) fn redact_serde_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    const MARKERS: [(&str, char, &str); 5] = [
        ("string \"", '"', "a string"),
        ("unknown variant `", '`', "unknown variant"),
        ("integer `", '`', "an integer"),
        ("floating point `", '`', "a number"),
        ("character `", '`', "a character"),
    ];
    'outer: while !rest.is_empty() {
        for (marker, close, replacement) in MARKERS {
            if let Some(tail) = rest.strip_prefix(marker) {
                if let Some(end) = closing(tail, close) {
                    out.push_str(replacement);
                    rest = &tail[end + close.len_utf8()..];
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    in_user_words(&out)
}

/// serde's Rust type names in its `expected …` phrases, said as a user writing YAML would.
fn in_user_words(message: &str) -> String {
    const WORDS: [(&str, &str); 14] = [
        ("expected u8", "expected a whole number (0 to 255)"),
        ("expected u16", "expected a whole number (0 to 65535)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping of keys to values"),
        ("invalid type: a sequence", "invalid type: a list"),
        ("invalid type: a map", "invalid type: a mapping"),
    ];
    let mut out = message.to_owned();
    for (serde, user) in WORDS {
        // Whole words only: `expected u32` must not touch `expected u32s` (no such phrase
        // today, but a prefix match would silently mangle one).
        let mut searched = 0;
        while let Some(found) = out[searched..].find(serde) {
            let start = searched + found;
            let end = start + serde.len();
            let next = out[end..].chars().next();
            if next.is_none_or(|c| !c.is_ascii_alphanumeric()) {
                out.replace_range(start..end, user);
                searched = start + user.len();
            } else {
                searched = end;
            }
        }
    }
    out
}

/// Byte index of the first unescaped `close` in `s`.
fn closing(s: &str, close: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            c if c == close && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_values_are_redacted_but_keys_kept() {
        let m = redact_serde_message(r#"invalid type: string "s3cr\"et", expected u64"#);
        assert_eq!(
            m,
            "invalid type: a string, expected a whole number (0 or more)"
        );
        let m = redact_serde_message("unknown variant `hunter2`, expected `a` or `b`");
        assert_eq!(m, "unknown variant, expected `a` or `b`");
        let m = redact_serde_message("unknown field `lisen`, expected one of `listen`");
        assert!(m.contains("lisen"));
        let m = redact_serde_message("invalid type: integer `123456`, expected a string");
        assert!(!m.contains("123456"));
    }

    #[test]
    fn rust_type_names_become_the_users_words() {
        let m = redact_serde_message("invalid type: a sequence, expected usize");
        assert_eq!(
            m,
            "invalid type: a list, expected a whole number (0 or more)"
        );
        assert_eq!(
            redact_serde_message("invalid type: map, expected a boolean"),
            "invalid type: map, expected true or false"
        );
        assert_eq!(
            redact_serde_message("expected f64 or expected u32"),
            "expected a number or expected a whole number (0 or more)"
        );
    }

    #[test]
    fn display_is_one_problem_per_line() {
        let e = ConfigErrors {
            file: PathBuf::from("gw.yaml"),
            problems: vec![
                ConfigProblem {
                    path: "listen".into(),
                    message: "bad".into(),
                },
                ConfigProblem {
                    path: String::new(),
                    message: "whole".into(),
                },
            ],
        };
        assert_eq!(e.to_string(), "gw.yaml: listen: bad\ngw.yaml: whole");
    }
}
