//! `tango-gateway audit verify FILE` as an operator runs it, on files written here by hand from
//! the documented format (not by the gateway's writer): each line a JSON object whose `prev`
//! is the lower-case hex SHA-256 of the previous line's bytes, 64 zeros on the first line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use aws_lc_rs::digest::{digest, SHA256};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn audit_verify(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tango-gateway"))
        .arg("audit")
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `n` chained order events, one per line, each ended by `\n`.
fn chain(n: usize) -> Vec<String> {
    let mut prev = GENESIS.to_owned();
    (0..n)
        .map(|i| {
            let line = format!(
                r#"{{"prev":"{prev}","request_id":"req-{i}","caller":"payouts","decision":"sent","amount":{i}.5,"externalRefID":"ref-{i}"}}"#
            );
            prev = sha256_hex(line.as_bytes());
            line
        })
        .collect()
}

fn write(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn an_intact_file_passes_with_its_line_count_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let lines = chain(4);
    write(&path, &lines);
    let file = path.to_str().unwrap();
    let run = audit_verify(&[file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains(&format!("audit: {file}: 4 lines, chain intact")),
        "{}",
        run.stdout
    );
    let head = sha256_hex(lines[3].as_bytes());
    assert!(run.stdout.contains(&head), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn an_empty_file_is_an_intact_chain_of_no_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    std::fs::write(&path, "").unwrap();
    let run = audit_verify(&[path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(": 0 lines, chain intact"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_edited_line_fails_naming_the_line_that_no_longer_chains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let mut lines = chain(5);
    lines[1] = lines[1].replace("\"amount\":1.5", "\"amount\":1000.5");
    write(&path, &lines);
    let file = path.to_str().unwrap();
    let run = audit_verify(&[file]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(&format!("audit: {file}: line 3: ")),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn a_deleted_line_fails_naming_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let mut lines = chain(5);
    lines.remove(2);
    write(&path, &lines);
    let file = path.to_str().unwrap();
    let run = audit_verify(&[file]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(&format!("audit: {file}: line 3: ")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_torn_last_line_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let lines = chain(3);
    std::fs::write(&path, format!("{}\n{}\n{}", lines[0], lines[1], lines[2])).unwrap();
    let file = path.to_str().unwrap();
    let run = audit_verify(&[file]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with(&format!("audit: {file}: line 3: ")) && run.stderr.contains("torn"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_file_is_a_runtime_failure_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.jsonl");
    let file = path.to_str().unwrap();
    let run = audit_verify(&[file]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains(file), "{}", run.stderr);
}

#[test]
fn no_file_is_a_usage_error() {
    let run = audit_verify(&[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}
