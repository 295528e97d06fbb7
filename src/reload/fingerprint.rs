//! What a reload watches: the content of the configuration file and of every file it
//! references, folded into one digest.
//!
//! Invariant: the digest changes whenever any watched file's bytes change, appear or
//! vanish; it is computed from content, not from modification times or inode events, so a
//! Kubernetes secret update (an atomic swap of a symlinked directory) is seen like an edit.

use std::path::PathBuf;

use aws_lc_rs::digest::{Context, SHA256};

/// A SHA-256 over (path, content) of each watched file; a file that cannot be read counts
/// as absent. The bytes stay in memory only for the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub(crate) fn of(files: &[PathBuf]) -> Fingerprint {
        let mut hash = Context::new(&SHA256);
        for file in files {
            let name = file.as_os_str().as_encoded_bytes();
            hash.update(&(name.len() as u64).to_be_bytes());
            hash.update(name);
            match std::fs::read(file) {
                Ok(content) => {
                    hash.update(&[1]);
                    hash.update(&(content.len() as u64).to_be_bytes());
                    hash.update(&content);
                }
                Err(_) => hash.update(&[0]),
            }
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(hash.finish().as_ref());
        Fingerprint(digest)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn changes_with_content_presence_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "one").unwrap();
        let files = vec![a.clone(), b.clone()];
        let first = Fingerprint::of(&files);
        assert_eq!(first, Fingerprint::of(&files), "stable");
        std::fs::write(&b, "").unwrap();
        let with_b = Fingerprint::of(&files);
        assert_ne!(first, with_b, "an empty file differs from a missing one");
        std::fs::write(&a, "two").unwrap();
        assert_ne!(with_b, Fingerprint::of(&files), "content change");
        assert_ne!(
            Fingerprint::of(&files),
            Fingerprint::of(&files[..1]),
            "list change"
        );
    }

    #[cfg(unix)]
    #[test]
    fn sees_a_symlink_swap_like_kubernetes_secret_updates() {
        // Kubernetes mounts `key -> ..data/key` and `..data -> ..2026_11_22_v1`; an update
        // writes a new timestamped directory and renames a new `..data` link over the old.
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("..v1");
        let v2 = dir.path().join("..v2");
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v1.join("key"), "old").unwrap();
        std::fs::write(v2.join("key"), "new").unwrap();
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink("..v1", &data).unwrap();
        let key = dir.path().join("key");
        std::os::unix::fs::symlink("..data/key", &key).unwrap();
        let files = vec![key];
        let before = Fingerprint::of(&files);
        let staged = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink("..v2", &staged).unwrap();
        std::fs::rename(&staged, &data).unwrap();
        assert_ne!(before, Fingerprint::of(&files));
    }
}
