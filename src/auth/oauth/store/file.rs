//! `token_cache.store: file` (§5): tokens outlive the process in one JSON file.
//!
//! Invariants: only tokens are stored, never a client secret, password or key; the file is
//! mode 0600 and replaced atomically (write a temporary file, fsync, rename), so a crash
//! never leaves half a file; a corrupt, foreign or too-open file is ignored with a warning
//! and overwritten by the next save.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::entry::{from_stored, to_stored, unix_secs, StoredToken};
use super::{StoreFuture, TokenStore};
use crate::auth::oauth::token::AccessToken;

/// The file's format version; a file with another version is somebody else's.
const FORMAT: &str = "tango-gateway-tokens/1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    format: String,
    tokens: BTreeMap<String, StoredToken>,
}

/// `store: file`: one JSON file holding every credential's token.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    /// Read-modify-write of the file is serialised within the process.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl FileStore {
    pub fn new(path: PathBuf) -> Self {
        FileStore {
            path,
            lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

impl TokenStore for FileStore {
    fn load<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<AccessToken>> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            let path = self.path.clone();
            let file = tokio::task::spawn_blocking(move || read_file(&path))
                .await
                .ok()
                .flatten()?;
            let stored = file.tokens.get(id)?;
            from_stored(stored)
        })
    }

    fn save<'a>(&'a self, id: &'a str, token: &'a AccessToken) -> StoreFuture<'a, ()> {
        let stored = to_stored(token);
        let id = id.to_owned();
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            let path = self.path.clone();
            let result = tokio::task::spawn_blocking(move || {
                let mut file = read_file(&path).unwrap_or_else(|| TokenFile {
                    format: FORMAT.to_owned(),
                    tokens: BTreeMap::new(),
                });
                let now = unix_secs(SystemTime::now());
                // Expired entries (of credentials since removed, say) are not kept forever.
                file.tokens.retain(|_, t| t.expires_at > now);
                file.tokens.insert(id, stored);
                write_atomically(&path, &file)
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(
                    path = %self.path.display(),
                    error = %err,
                    "cannot write the token file; tokens stay in memory only"
                ),
                Err(_) => tracing::warn!("the token file writer stopped unexpectedly"),
            }
        })
    }
}

/// Reads the file; `None` (with a warning) when it is missing, unreadable, too open,
/// corrupt or foreign.
fn read_file(path: &Path) -> Option<TokenFile> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot read the token file; ignoring it");
            return None;
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the token file is readable by other users; ignoring it (it will be replaced with mode 0600)"
                );
                return None;
            }
        }
    }
    // serde's message could quote file content (a token); it is not logged.
    match serde_json::from_slice::<TokenFile>(&bytes) {
        Ok(file) if file.format == FORMAT => Some(file),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the token file has another format; ignoring it");
            None
        }
        Err(_) => {
            tracing::warn!(path = %path.display(), "the token file is corrupt; ignoring it");
            None
        }
    }
}

fn write_atomically(path: &Path, file: &TokenFile) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    crate::private_file::write_atomically(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oauth::token::TokenKind;
    use secrecy::{ExposeSecret, SecretString};
    use std::time::Duration;

    fn token(value: &str, lifetime: Duration) -> AccessToken {
        let now = SystemTime::now();
        AccessToken::new(
            SecretString::from(value.to_owned()),
            TokenKind::Dpop,
            now,
            now + lifetime,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_saved_token_is_loaded_by_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        FileStore::new(path.clone())
            .save("k1", &token("tok-1", Duration::from_secs(600)))
            .await;
        let loaded = FileStore::new(path.clone()).load("k1").await.unwrap();
        assert_eq!(loaded.secret().expose_secret(), "tok-1");
        assert_eq!(loaded.kind(), TokenKind::Dpop);
        assert!(FileStore::new(path).load("other").await.is_none());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        FileStore::new(path.clone())
            .save("k1", &token("tok-1", Duration::from_secs(600)))
            .await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Only the file itself remains: the temporary was renamed over it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn corrupt_and_foreign_files_are_ignored_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        for content in [
            &b"{not json"[..],
            br#"{"format":"someone-else/9","tokens":{}}"#,
        ] {
            std::fs::write(&path, content).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            let store = FileStore::new(path.clone());
            assert!(store.load("k1").await.is_none());
            store
                .save("k1", &token("tok-2", Duration::from_secs(600)))
                .await;
            assert!(store.load("k1").await.is_some());
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_world_readable_file_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let store = FileStore::new(path.clone());
        store
            .save("k1", &token("tok-1", Duration::from_secs(600)))
            .await;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(store.load("k1").await.is_none());
    }

    #[tokio::test]
    async fn expired_entries_are_pruned_on_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let store = FileStore::new(path.clone());
        let past = SystemTime::now() - Duration::from_secs(3600);
        let expired = AccessToken::new(
            SecretString::from("old".to_owned()),
            TokenKind::Bearer,
            past,
            past + Duration::from_secs(60),
        )
        .unwrap();
        store.save("old", &expired).await;
        store
            .save("new", &token("tok", Duration::from_secs(600)))
            .await;
        assert!(store.load("old").await.is_none());
        assert!(store.load("new").await.is_some());
    }
}
