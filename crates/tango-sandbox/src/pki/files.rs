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
/// Permissions of certificates and CSRs: public material.
pub const CERT_FILE_MODE: u32 = 0o644;

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
        let ca = self.ca.cert();
        let files = [
            NewFile::cert("ca.pem", ca.cert_pem.as_bytes()),
            NewFile::key("ca.key", ca.key_pem.expose_secret().as_bytes()),
            NewFile::cert("server.pem", self.server.cert_pem.as_bytes()),
            NewFile::key("server.key", self.server.key_pem.expose_secret().as_bytes()),
            NewFile::cert("client.pem", self.client.cert_pem.as_bytes()),
            NewFile::key("client.key", self.client.key_pem.expose_secret().as_bytes()),
        ];
        write_new_files(dir, &files, force)
    }
}

/// One file of a set written together by [`write_new_files`].
#[derive(Clone, Copy)]
pub struct NewFile<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    pub mode: u32,
}

impl<'a> NewFile<'a> {
    /// Public material (certificate, CSR): [`CERT_FILE_MODE`].
    pub fn cert(name: &'a str, data: &'a [u8]) -> Self {
        NewFile {
            name,
            data,
            mode: CERT_FILE_MODE,
        }
    }

    /// A private key: [`KEY_FILE_MODE`].
    pub fn key(name: &'a str, data: &'a [u8]) -> Self {
        NewFile {
            name,
            data,
            mode: KEY_FILE_MODE,
        }
    }
}

/// `Debug` names the file only: `data` may be a private key.
impl std::fmt::Debug for NewFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewFile")
            .field("name", &self.name)
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// Writes `files` into `dir` (which must exist); returns the paths written, in order.
///
/// Without `force`, nothing is written if any of the files already exists, so a failed run
/// never leaves a half-replaced set.
pub fn write_new_files(
    dir: &Path,
    files: &[NewFile<'_>],
    force: bool,
) -> Result<Vec<PathBuf>, PkiError> {
    if !force {
        for file in files {
            let path = dir.join(file.name);
            if path.symlink_metadata().is_ok() {
                return Err(PkiError::Exists { path });
            }
        }
    }
    let mut written = Vec::with_capacity(files.len());
    for file in files {
        let path = dir.join(file.name);
        write_new_file(&path, file.data, file.mode, force)?;
        written.push(path);
    }
    Ok(written)
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
