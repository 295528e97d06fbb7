//! Build script: records the commit the binary is built from, for `--version` (§13). No
//! network: it asks the local git, or takes `TANGO_GATEWAY_COMMIT` from the environment (a
//! source tarball or a container build has no `.git`; `deploy/Dockerfile` passes it as a
//! build argument), else says `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TANGO_GATEWAY_COMMIT");
    // A new commit moves HEAD or the branch it points to: rebuild the version string then.
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(reference) = head.trim().strip_prefix("ref: ") {
            let path = Path::new(".git").join(reference);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            } else {
                println!("cargo:rerun-if-changed=.git/packed-refs");
            }
        }
    }
    let commit = std::env::var("TANGO_GATEWAY_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TANGO_GATEWAY_COMMIT={}", commit.trim());
}

fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let commit = String::from_utf8(output.stdout).ok()?;
    let commit = commit.trim();
    // Only a commit id goes into the binary, whatever git printed.
    (!commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit())).then(|| commit.to_owned())
}
