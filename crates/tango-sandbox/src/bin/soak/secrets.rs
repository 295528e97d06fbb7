//! The secret scan: every line any child process wrote (gateway replicas, every run of
//! each, and Redis) is searched for the secret values the soak handed out, for private key
//! material, and for JWT-shaped strings that are access tokens the fake issued or DPoP
//! proofs it received (§7: no secret, token, proof or key in any output).
//!
//! Invariant: a finding names the file, the line and the kind of secret, never the value.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::observe::fingerprint;
use crate::Result;

/// One secret found in the output.
pub(crate) struct Finding {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) what: &'static str,
}

/// Scans every file in `logs` for `fixed` values, PEM private key markers and JWT-shaped
/// strings whose fingerprint is in `credentials`. Also returns how many JWT-shaped strings
/// matched nothing the fake knows (reported, not counted: nothing proves they are secrets).
pub(crate) fn scan(
    logs: &Path,
    fixed: &[(&'static str, String)],
    credentials: &HashSet<u64>,
) -> Result<(Vec<Finding>, usize, usize)> {
    let mut findings = Vec::new();
    let mut unknown_jwts = 0;
    let mut lines_scanned = 0;
    let mut files: Vec<_> = std::fs::read_dir(logs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let reader = BufReader::new(File::open(&path)?);
        for (index, line) in reader.split(b'\n').enumerate() {
            let line = String::from_utf8_lossy(&line?).into_owned();
            lines_scanned += 1;
            let mut found = |what| {
                findings.push(Finding {
                    file: name.clone(),
                    line: index + 1,
                    what,
                })
            };
            for (what, value) in fixed {
                if !value.is_empty() && line.contains(value.as_str()) {
                    found(what);
                }
            }
            if line.contains("PRIVATE KEY") {
                found("private key PEM marker");
            }
            for jwt in jwt_like(&line) {
                if credentials.contains(&fingerprint(jwt)) {
                    found("access token or DPoP proof");
                } else {
                    unknown_jwts += 1;
                }
            }
        }
    }
    Ok((findings, unknown_jwts, lines_scanned))
}

/// Substrings that look like a compact JWS: `eyJ` then base64url with exactly two dots.
fn jwt_like(line: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("eyJ") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(tail.len());
        let candidate = tail[..len].trim_end_matches('.');
        if candidate.matches('.').count() == 2 {
            found.push(candidate);
        }
        rest = &tail[len.max(3)..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_jwts_inside_text() {
        let line = r#"{"auth":"DPoP eyJhbGc.eyJzdWI.c2ln","x":"eyJonly"} eyJa.b.c."#;
        assert_eq!(jwt_like(line), vec!["eyJhbGc.eyJzdWI.c2ln", "eyJa.b.c"]);
    }
}
