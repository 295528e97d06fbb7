//! The commands that make keys and certificates for an operator (PRODUCT.md §2, §9):
//! `certs client`, `certs dev` and `dpop keygen`; and `audit verify` (§10), which checks an
//! order audit file. `cli.rs` parses the arguments and prints what these functions return.
//!
//! Invariants: what a command returns for printing never contains a private key; a key file
//! is created 0600 from its first byte; no existing file is replaced without `force`, and
//! arguments are checked before anything is written.

pub mod certs;
pub mod dpop_keygen;

use std::path::{Path, PathBuf};

use tango_sandbox::pki::{KeyKind, PkiError, SubjectError};

use crate::auth::dpop::DpopError;

pub use certs::{client, dev, ClientOutcome, ClientRequest, DevOutcome, MAX_CLIENT_DAYS};
pub use dpop_keygen::{keygen, DpopKeygenOutcome};

/// `audit verify`: the audit file's chain check lives beside its writer (the format is
/// documented there, in `orders::audit_file`), so the two cannot drift.
pub mod audit {
    pub use crate::orders::audit_file::{verify, LineFault, VerifyError, VerifyReport};
}

/// Why a command failed; [`ToolError::is_usage`] tells the caller's mistakes (exit 2) from
/// failures of the machine (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "--days {days}: Tango accepts client certificates valid for at most {MAX_CLIENT_DAYS} \
         days; use --days {MAX_CLIENT_DAYS} or less"
    )]
    TooLong { days: u32 },
    #[error("--days must be at least 1")]
    NoDays,
    #[error("--subject {given:?}: {reason}")]
    Subject {
        given: String,
        #[source]
        reason: SubjectError,
    },
    #[error("{path}: is a directory; --out names the key file to write")]
    IsDirectory { path: PathBuf },
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("the new DPoP key cannot be used: {0}")]
    Dpop(#[from] DpopError),
}

impl ToolError {
    /// A usage error: the command line asked for something refused (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ToolError::TooLong { .. }
                | ToolError::NoDays
                | ToolError::Subject { .. }
                | ToolError::IsDirectory { .. }
                | ToolError::Pki(PkiError::Exists { .. })
        )
    }
}

/// Creates `dir` and its parents when missing.
fn create_out_dir(dir: &Path) -> Result<(), ToolError> {
    std::fs::create_dir_all(dir).map_err(|source| ToolError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// How a key kind is named in what the commands print.
fn key_label(key: KeyKind) -> &'static str {
    match key {
        KeyKind::EcdsaP256 => "ECDSA P-256",
        KeyKind::Rsa2048 => "RSA 2048",
    }
}
