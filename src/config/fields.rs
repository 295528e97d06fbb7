//! Small field validators shared by the section validators: each reads one optional raw value,
//! applies the default, and on failure records a problem at that key path.
//!
//! Invariant: a returned `None` always comes with at least one recorded problem; secret values
//! and secret file contents never appear in a message.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::duration::parse_duration;
use super::errors::{join, Problems};
use super::raw::Text;

pub(crate) fn text(v: &Option<Text>) -> Option<&str> {
    v.as_ref().map(|t| t.0.as_str())
}

/// A required, non-empty string.
pub(crate) fn required<'a>(p: &mut Problems, path: &str, v: &'a Option<Text>) -> Option<&'a str> {
    match text(v).map(str::trim) {
        Some(s) if !s.is_empty() => Some(s),
        Some(_) => {
            p.add(path, "must not be empty");
            None
        }
        None => {
            p.add(path, "is required");
            None
        }
    }
}

/// An optional, non-empty string (`Ok(None)` when absent).
pub(crate) fn optional(p: &mut Problems, path: &str, v: &Option<Text>) -> Option<Option<String>> {
    match v {
        None => Some(None),
        Some(_) => required(p, path, v).map(|s| Some(s.to_string())),
    }
}

pub(crate) fn duration(
    p: &mut Problems,
    path: &str,
    v: &Option<Text>,
    default: Duration,
) -> Option<Duration> {
    match text(v) {
        None => Some(default),
        Some(s) => match parse_duration(s) {
            Ok(d) if d.is_zero() => {
                p.add(path, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                p.add(path, e);
                None
            }
        },
    }
}

/// One of a fixed set of words.
pub(crate) fn choice<T: Copy>(
    p: &mut Problems,
    path: &str,
    v: &Option<Text>,
    options: &[(&str, T)],
    default: T,
) -> Option<T> {
    let Some(s) = text(v) else {
        return Some(default);
    };
    if let Some((_, t)) = options.iter().find(|(name, _)| *name == s.trim()) {
        return Some(*t);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    p.add(path, format!("must be one of: {}", names.join(", ")));
    None
}

pub(crate) fn file_path(p: &mut Problems, path: &str, v: &Option<Text>) -> Option<Option<PathBuf>> {
    optional(p, path, v).map(|o| o.map(PathBuf::from))
}

/// A secret given as `<name>: value` or `<name>_file: /path` (read now, whitespace trimmed),
/// exactly one of the two. `Some(None)` when neither is given and the secret is optional.
pub(crate) fn secret(
    p: &mut Problems,
    base: &str,
    name: &str,
    value: &Option<Text>,
    file: &Option<Text>,
    required: bool,
) -> Option<Option<SecretString>> {
    let file_key = format!("{name}_file");
    match (value, file) {
        (Some(_), Some(_)) => {
            p.add(
                join(base, name),
                format!("give either {name} or {file_key}, not both"),
            );
            None
        }
        (None, None) if required => {
            p.add(join(base, name), format!("is required (or {file_key})"));
            None
        }
        (None, None) => Some(None),
        (Some(v), None) => {
            let s = v.0.trim();
            if s.is_empty() {
                p.add(join(base, name), "must not be empty");
                return None;
            }
            Some(Some(SecretString::from(s.to_string())))
        }
        (None, Some(f)) => {
            let path = join(base, &file_key);
            let file_name = f.0.trim();
            match std::fs::read_to_string(file_name) {
                Ok(content) if content.trim().is_empty() => {
                    p.add(path, format!("secret file {file_name} is empty"));
                    None
                }
                Ok(content) => Some(Some(SecretString::from(content.trim().to_string()))),
                Err(e) => {
                    // The io error names the failure kind only, never the content.
                    p.add(path, format!("cannot read secret file {file_name}: {e}"));
                    None
                }
            }
        }
    }
}
