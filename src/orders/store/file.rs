//! `orders.store: file` (§10): the memory store's state, saved to a file after every change
//! and loaded at start, so a restart forgets neither a reference nor a spend window.
//!
//! Invariants: the file is mode 0600 and replaced atomically (a crash leaves the old state
//! or the new one); a claim or a reservation is on disk before the order it allows is sent
//! (concurrent changes share one write); when the file cannot be written, claims and
//! reservations are refused (`StoreDown`: fail closed) rather than sent unrecorded. An order
//! in flight when the process died counts as placed after the restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::memory::{MemoryStore, State};
use super::{
    Begin, Claim, Finish, Micros, OrderStore, ReservationId, Reserve, Settle, StoreDown,
    StoreFuture,
};
use crate::private_file::{is_too_open, write_atomically};

/// The file's format marker: a different one is refused rather than misread.
const FORMAT: &str = "tango-gateway orders v1";

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    format: String,
    state: State,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FileStoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an order ledger of this gateway (corrupt or another format); move it away to start afresh")]
    Corrupt { path: PathBuf },
    #[error("{path} is readable by other users: make it mode 0600")]
    TooOpen { path: PathBuf },
}

#[derive(Debug)]
pub(crate) struct FileStore {
    memory: MemoryStore,
    path: PathBuf,
    /// Bumped by every change; a save covers every change up to the value it read.
    changes: AtomicU64,
    /// The last change on disk; held while writing, so writes never overlap.
    saved: tokio::sync::Mutex<u64>,
}

impl FileStore {
    /// Loads the state from `path` (an absent file is an empty state).
    pub(crate) fn open(path: &Path, max_references: usize) -> Result<Self, FileStoreError> {
        let state = match std::fs::read(path) {
            Ok(_) if is_too_open(path) => {
                return Err(FileStoreError::TooOpen {
                    path: path.to_path_buf(),
                })
            }
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(saved) if saved.format == FORMAT => saved.state.restored(),
                // serde's message could quote the file; it is not repeated.
                _ => {
                    return Err(FileStoreError::Corrupt {
                        path: path.to_path_buf(),
                    })
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => {
                return Err(FileStoreError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(FileStore {
            memory: MemoryStore::from_state(state, max_references),
            path: path.to_path_buf(),
            changes: AtomicU64::new(0),
            saved: tokio::sync::Mutex::new(0),
        })
    }

    fn change<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        self.memory.with(|state| {
            let answer = f(state);
            self.changes.fetch_add(1, Ordering::SeqCst);
            answer
        })
    }

    /// Writes the state unless a write since the last change already covered it.
    async fn save(&self) -> Result<(), StoreDown> {
        let wanted = self.changes.load(Ordering::SeqCst);
        let mut saved = self.saved.lock().await;
        if *saved >= wanted {
            return Ok(());
        }
        let (covers, bytes) = self.memory.with(|state| {
            let covers = self.changes.load(Ordering::SeqCst);
            let saved = Saved {
                format: FORMAT.to_owned(),
                state: state.clone(),
            };
            (covers, serde_json::to_vec(&saved))
        });
        let bytes = bytes.map_err(|_| StoreDown)?;
        let path = self.path.clone();
        match tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await {
            Ok(Ok(())) => {
                *saved = covers;
                Ok(())
            }
            Ok(Err(err)) => {
                tracing::error!(path = %self.path.display(), error = %err, "cannot write the order ledger file; orders that need it are refused (503)");
                Err(StoreDown)
            }
            Err(_) => Err(StoreDown),
        }
    }
}

impl OrderStore for FileStore {
    fn begin<'a>(
        &'a self,
        claim: Claim<'a>,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Begin, StoreDown>> {
        Box::pin(async move {
            let max = self.memory.max_references();
            let (begin, evicted, references) = self.change(|state| {
                let (begin, evicted) = state.begin(&claim, now, max);
                (begin, evicted, state.references())
            });
            super::memory::count_ledger(evicted, references);
            if matches!(begin, Begin::New | Begin::Repeat) {
                // The claim lapses with its lease if it cannot be saved.
                self.save().await?;
            }
            Ok(begin)
        })
    }

    fn finish<'a>(
        &'a self,
        reference: &'a str,
        window: Duration,
        how: Finish,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<(), StoreDown>> {
        Box::pin(async move {
            let references = self.change(|state| {
                state.finish(reference, window, how, now);
                state.references()
            });
            super::memory::count_ledger(0, references);
            self.save().await
        })
    }

    fn reserve<'a>(
        &'a self,
        caller: &'a str,
        amount: Micros,
        limit: Micros,
        window: Duration,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Reserve, StoreDown>> {
        Box::pin(async move {
            let answer = self.change(|state| state.reserve(caller, amount, limit, window, now));
            if let Reserve::Granted { id, .. } = &answer {
                if self.save().await.is_err() {
                    // Not on disk, so not sent: give the amount back.
                    self.change(|state| state.settle(caller, id, Settle::Release, window, now));
                    return Err(StoreDown);
                }
            }
            Ok(answer)
        })
    }

    fn settle<'a>(
        &'a self,
        caller: &'a str,
        id: &'a ReservationId,
        how: Settle,
        window: Duration,
        now: SystemTime,
    ) -> StoreFuture<'a, Result<Micros, StoreDown>> {
        Box::pin(async move {
            let total = self.change(|state| state.settle(caller, id, how, window, now));
            self.save().await?;
            Ok(total)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::orders::store::tests::{ledger_conformance, spend_concurrency, spend_conformance};

    #[tokio::test]
    async fn the_file_store_keeps_every_rule_of_the_memory_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(&dir.path().join("orders.json"), 1_000).unwrap();
        ledger_conformance(&store, "").await;
        spend_conformance(&store, "svc").await;
        let store = Arc::new(FileStore::open(&dir.path().join("other.json"), 1_000).unwrap());
        spend_concurrency(store, "svc").await;
    }

    #[tokio::test]
    async fn a_restart_remembers_references_and_spend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.json");
        let now = SystemTime::now();
        let claim = Claim {
            reference: "ref-1",
            hash: "h1",
            caller: "svc",
            window: Duration::from_secs(3600),
            lease: Duration::from_secs(30),
        };
        {
            let store = FileStore::open(&path, 100).unwrap();
            assert_eq!(store.begin(claim, now).await, Ok(Begin::New));
            let granted = store
                .reserve("svc", 70, 100, Duration::from_secs(3600), now)
                .await
                .unwrap();
            assert!(matches!(granted, Reserve::Granted { .. }));
            // The process dies here: the order in flight and its reservation are on disk.
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let store = FileStore::open(&path, 100).unwrap();
        let other = Claim {
            hash: "h2",
            ..claim
        };
        assert_eq!(
            store.begin(other, now).await,
            Ok(Begin::Conflict(super::super::Conflict::OtherBody))
        );
        // In flight at the crash: counted as placed, so the same order repeats at once.
        assert_eq!(store.begin(claim, now).await, Ok(Begin::Repeat));
        assert_eq!(
            store
                .reserve("svc", 40, 100, Duration::from_secs(3600), now)
                .await,
            Ok(Reserve::Exceeded { window: 70 })
        );
    }

    #[test]
    fn a_corrupt_or_open_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.json");
        std::fs::write(&path, b"{not json").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = FileStore::open(&path, 10).unwrap_err().to_string();
        assert!(err.contains("orders.json"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = FileStore::open(&path, 10).unwrap_err().to_string();
            assert!(err.contains("0600"), "{err}");
        }
    }
}
