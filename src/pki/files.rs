//! Writing certificate material to disk.
//!
//! Invariant: a key file is created with mode 0600 from its first byte (never world-readable,
//! not even between create and chmod), and no existing file is overwritten unless forced.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::{DevPki, PkiError};

/// Permissions of every private key file written here.
pub const KEY_FILE_MODE: u32 = 0o600;
const CERT_FILE_MODE: u32 = 0o644;

/// The files `certs dev` writes, in order.
pub const DEV_FILE_NAMES: [&str; 6] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
];

impl DevPki {
    /// Writes [`DEV_FILE_NAMES`] into `dir` (which must exist); returns the paths written.
    ///
    /// Without `force`, nothing is written if any of the files already exists, so a failed
    /// run never leaves a half-replaced set.
    pub fn write_to(&self, dir: &Path, force: bool) -> Result<Vec<PathBuf>, PkiError> {
        let contents: [(&str, &str, u32); 6] = [
            ("ca.pem", &self.ca.cert().cert_pem, CERT_FILE_MODE),
            (
                "ca.key",
                self.ca.cert().key_pem.expose_secret(),
                KEY_FILE_MODE,
            ),
            ("server.pem", &self.server.cert_pem, CERT_FILE_MODE),
            (
                "server.key",
                self.server.key_pem.expose_secret(),
                KEY_FILE_MODE,
            ),
            ("client.pem", &self.client.cert_pem, CERT_FILE_MODE),
            (
                "client.key",
                self.client.key_pem.expose_secret(),
                KEY_FILE_MODE,
            ),
        ];
        if !force {
            for (name, _, _) in &contents {
                let path = dir.join(name);
                if path.symlink_metadata().is_ok() {
                    return Err(PkiError::Exists { path });
                }
            }
        }
        let mut written = Vec::with_capacity(contents.len());
        for (name, text, mode) in contents {
            let path = dir.join(name);
            write_new_file(&path, text.as_bytes(), mode, force)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Creates `path` with `mode` and writes `data`. With `force`, an existing file is removed
/// first rather than truncated: truncating would keep its old (possibly wider) permissions.
pub fn write_new_file(path: &Path, data: &[u8], mode: u32, force: bool) -> Result<(), PkiError> {
    let io_err = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(e)
            }
        })?;
    file.write_all(data).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}
