//! The audit file (PRODUCT.md §10, `audit.path`): order events appended as a hash chain, so an
//! edited, deleted, inserted or reordered line is detectable by `tango-gateway audit verify`.
//!
//! Invariant: every complete line in the file carries, in `prev`, the SHA-256 of the exact
//! bytes of the line before it; lines are written in order, by one thread, never rewritten.
//!
//! # Format
//!
//! - UTF-8, one JSON object per line, each line ended by `\n` (JSON escapes control
//!   characters inside strings, so an event can never span two lines).
//! - Every line has a `prev` field: the lower-case hex SHA-256 of the previous line's bytes,
//!   without its `\n`. The first line of a file has the genesis value, 64 zeros. `prev` is
//!   part of the line, so the next line's hash covers it too.
//! - The writer puts `prev` first, then the event's fields in the order serde_json writes them
//!   (sorted by key: the crate is built without serde_json's `preserve_order`). A `prev` the
//!   event itself carries is dropped: the field belongs to the chain. Nothing depends on that
//!   order: verification hashes the raw bytes and never re-serializes a line.
//!
//! Anyone can recompute the chain: `sha256(line 1) == line 2's prev`, and so on.
//!
//! # What verification proves, and what it cannot
//!
//! [`verify`] reads the file line by line and names the first line that is not a JSON object,
//! lacks a well-formed `prev`, has a `prev` that is not the previous line's hash (a line
//! before it was changed, or lines were deleted, inserted or reordered: the first line's
//! `prev` must be the genesis value, so removing the first lines shows too), or is not ended
//! by `\n` (a torn write).
//!
//! It cannot see what no later line covers. Removing the last lines leaves a shorter chain
//! that is intact, and the last line itself can be edited (keeping its `prev`) without a trace.
//! The chain has no key either: whoever can write the file can rewrite all of it with fresh
//! hashes. An operator who needs more ships the file off-host as it grows, or records the line
//! count and the last line's hash that `audit verify` prints, to compare with later.
//!
//! # Writing
//!
//! [`AuditFile::append`] only queues the event (an unbounded channel, so a request task never
//! waits for the disk); one writer thread renders, chains and writes each line with a single
//! `write_all`, in the order the events were queued. Durability: a written line is in the
//! kernel (the file has no user-space buffer) and survives a crash of the process; after each
//! batch of lines (whatever was queued while the last was written) the writer calls
//! `sync_data`, so a power loss costs at most the batch in flight. Syncing every line instead
//! would cap the writer at one disk flush per order for no stronger guarantee to the caller,
//! which never waits for the write anyway. Order events also go to the log (§10).
//!
//! # Opening an existing file
//!
//! The chain continues from the last line. A last line that is not ended by `\n`, or is not a
//! JSON object with a well-formed `prev`, is refused rather than repaired: cutting it off would
//! destroy what may be the only trace of an event, and appending after it would glue the next
//! line onto it. The operator runs `audit verify`, then moves the file aside; the gateway then
//! starts a new chain. Opening does not verify the whole file (its cost grows with the file).
//! The file is locked (`flock`) while open: a second writer, in this process or another,
//! would fork the chain, so it is refused.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

use aws_lc_rs::digest::{digest, SHA256};
use serde_json::{Map, Value};

/// An order event: a JSON object; the writer adds `prev`.
pub(crate) type Event = Map<String, Value>;

/// The `prev` of a file's first line.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The field that chains a line to the one before it.
const PREV: &str = "prev";
/// The only event field a write failure's log message repeats, to find the event in the log.
const REQUEST_ID: &str = "request_id";
/// Audit lines are a few hundred bytes; a longer "line" is not one of ours, and the bound keeps
/// a foreign file from being read whole into memory.
const MAX_LINE: usize = 1 << 20;
/// At most this many lines between two `sync_data` calls.
const MAX_BATCH: usize = 256;
const FILE_MODE: u32 = 0o600;

/// Why the audit file cannot be opened (the gateway does not start without it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditFileError {
    #[error("cannot create the audit file {path}: its directory does not exist")]
    NoDirectory { path: PathBuf },
    #[error("cannot open the audit file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the audit file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the audit file {path} is open by another writer (another gateway process, or this one \
         opened it twice); two writers would fork the chain"
    )]
    InUse { path: PathBuf },
    #[error(
        "the audit file {path} cannot be continued: its last line {fault}; run `tango-gateway \
         audit verify {path}`, then move the file aside to start a new chain"
    )]
    LastLine { path: PathBuf, fault: LineFault },
    #[error("cannot start the audit writer thread: {0}")]
    Spawn(#[source] io::Error),
}

/// The append side of the audit file: a handle on its writer thread.
///
/// Dropping it (or [`AuditFile::close`]) writes every queued event, then stops the writer.
#[derive(Debug)]
pub(crate) struct AuditFile {
    path: PathBuf,
    /// `None` only while closing.
    events: Option<Sender<Event>>,
    writer: Option<JoinHandle<()>>,
}

impl AuditFile {
    /// Opens `path` for appending, creating it with mode 0600 when absent, and starts its
    /// writer thread. Refuses a file whose last line is torn or not an audit line (module
    /// doc), and a file another writer holds.
    pub(crate) fn open(path: &Path) -> Result<AuditFile, AuditFileError> {
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // From the first byte: the events name accounts and amounts.
            options.mode(FILE_MODE);
        }
        let mut file = options.open(path).map_err(|source| {
            let parent_missing = path
                .parent()
                .is_some_and(|dir| !dir.as_os_str().is_empty() && !dir.is_dir());
            if source.kind() == io::ErrorKind::NotFound && parent_missing {
                AuditFileError::NoDirectory { path: path.into() }
            } else {
                AuditFileError::Open {
                    path: path.into(),
                    source,
                }
            }
        })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(AuditFileError::InUse { path: path.into() })
            }
            Err(TryLockError::Error(source)) => {
                return Err(AuditFileError::Open {
                    path: path.into(),
                    source,
                })
            }
        }
        let (prev, len) = match chain_head(&mut file) {
            Ok(head) => head,
            Err(Head::Io(source)) => {
                return Err(AuditFileError::Read {
                    path: path.into(),
                    source,
                })
            }
            Err(Head::Fault(fault)) => {
                return Err(AuditFileError::LastLine {
                    path: path.into(),
                    fault,
                })
            }
        };
        let writer = Writer {
            file,
            path: path.into(),
            prev,
            len,
        };
        let (events, queue) = mpsc::channel();
        let writer = thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(AuditFileError::Spawn)?;
        Ok(AuditFile {
            path: path.into(),
            events: Some(events),
            writer: Some(writer),
        })
    }

    /// Queues `event` for the file; never blocks on the disk. The writer adds `prev`.
    pub(crate) fn append(&self, event: Event) {
        let Some(events) = &self.events else { return };
        if let Err(mpsc::SendError(event)) = events.send(event) {
            // Only if the writer thread died, which it is written never to do.
            tracing::error!(
                path = %self.path.display(),
                request_id = request_id(&event),
                "the audit writer has stopped; the event is not in the audit file"
            );
        }
    }

    /// Writes every queued event, then stops the writer (what dropping does too).
    #[cfg(test)]
    pub(crate) fn close(self) {
        drop(self);
    }
}

impl Drop for AuditFile {
    /// Closing the channel ends the writer's loop once the queue is empty; joining waits for
    /// that, so no queued event is lost at shutdown. This blocks the dropping thread for as
    /// long as the queue takes to write: drop it at shutdown, not on a busy async worker.
    fn drop(&mut self) {
        drop(self.events.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.path.display(), "the audit writer thread panicked");
            }
        }
    }
}

/// The writer thread's state: the file and the head of its chain.
struct Writer {
    file: File,
    path: PathBuf,
    /// The hash the next line carries as `prev`.
    prev: String,
    /// The file's length up to the end of the last whole line (ours or found at open).
    len: u64,
}

impl Writer {
    fn run(mut self, queue: Receiver<Event>) {
        while let Ok(first) = queue.recv() {
            let mut wrote = self.write(first);
            // Group commit: what was queued meanwhile shares one sync.
            for event in queue.try_iter().take(MAX_BATCH - 1) {
                wrote |= self.write(event);
            }
            if wrote {
                if let Err(err) = self.file.sync_data() {
                    tracing::error!(
                        path = %self.path.display(),
                        error = %err,
                        "cannot sync the audit file; its last lines may be lost if the machine stops"
                    );
                }
            }
        }
    }

    /// Appends one line; `false` (logged) when the event could not be written.
    fn write(&mut self, mut event: Event) -> bool {
        let line = match render(&self.prev, &mut event) {
            // `line` ends with its newline, which the limit does not count.
            Ok(line) if line.len() <= MAX_LINE + 1 => line,
            Ok(_) => {
                tracing::error!(
                    path = %self.path.display(),
                    request_id = request_id(&event),
                    "an audit event is longer than 1 MiB; it is not in the audit file"
                );
                return false;
            }
            Err(err) => {
                tracing::error!(
                    path = %self.path.display(),
                    request_id = request_id(&event),
                    error = %err,
                    "cannot serialize an audit event; it is not in the audit file"
                );
                return false;
            }
        };
        match self.file.write_all(&line) {
            Ok(()) => {
                let content = line.strip_suffix(b"\n").unwrap_or(&line);
                self.prev = sha256_hex(content);
                self.len += line.len() as u64;
                true
            }
            Err(err) => {
                tracing::error!(
                    path = %self.path.display(),
                    request_id = request_id(&event),
                    error = %err,
                    "cannot write to the audit file; the event is not in it"
                );
                self.cut_partial_line(line.len() as u64);
                false
            }
        }
    }

    /// A failed write may have left part of its line (a full disk, say): cut the file back to
    /// the last whole line, so the next line starts on a line boundary and the chain, which
    /// still ends at that line, stays intact. Only when the extra bytes can be nothing but that
    /// partial line: whatever else grew the file is left alone.
    fn cut_partial_line(&mut self, attempted: u64) {
        let cut = match self.file.metadata() {
            Ok(meta) if meta.len() == self.len => return,
            Ok(meta) if meta.len() > self.len && meta.len() < self.len + attempted => {
                self.file.set_len(self.len)
            }
            Ok(_) => Err(io::Error::other(
                "the file's length is not what this writer wrote",
            )),
            Err(err) => Err(err),
        };
        if let Err(err) = cut {
            tracing::error!(
                path = %self.path.display(),
                error = %err,
                "cannot remove a partial line from the audit file; `audit verify` will report it"
            );
        }
    }
}

/// `{"prev":"<hex>",<the event's fields>}\n`: `prev` first, so a reader sees the chain link
/// before anything else, and the event's own `prev`, if any, dropped.
fn render(prev: &str, event: &mut Event) -> serde_json::Result<Vec<u8>> {
    event.remove(PREV);
    let fields = serde_json::to_vec(&*event)?;
    let mut line = Vec::with_capacity(fields.len() + PREV.len() + GENESIS.len() + 8);
    line.extend_from_slice(b"{\"prev\":\"");
    line.extend_from_slice(prev.as_bytes());
    line.push(b'"');
    // `fields` is `{}` or `{"k":v,...}`: keep what follows its `{`.
    match fields.get(1..) {
        Some(rest) if rest != b"}" => {
            line.push(b',');
            line.extend_from_slice(rest);
        }
        _ => line.push(b'}'),
    }
    line.push(b'\n');
    Ok(line)
}

fn request_id(event: &Event) -> &str {
    event.get(REQUEST_ID).and_then(Value::as_str).unwrap_or("")
}

/// Lower-case hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let hash = digest(&SHA256, bytes);
    hash.as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

enum Head {
    Io(io::Error),
    Fault(LineFault),
}

/// The `prev` the next line must carry and the file's length: genesis for an empty file, else
/// the hash of its last line, which must be a whole audit line.
fn chain_head(file: &mut File) -> Result<(String, u64), Head> {
    let len = file.metadata().map_err(Head::Io)?.len();
    if len == 0 {
        return Ok((GENESIS.to_owned(), 0));
    }
    // Read ever larger tails until one holds the newline before the last line.
    let mut want: u64 = 4096;
    loop {
        let start = len.saturating_sub(want);
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(start)).map_err(Head::Io)?;
        Read::take(&mut *file, len - start)
            .read_to_end(&mut tail)
            .map_err(Head::Io)?;
        let Some(content) = tail.strip_suffix(b"\n") else {
            return Err(Head::Fault(LineFault::Torn));
        };
        let line = match content.iter().rposition(|&b| b == b'\n') {
            Some(newline) => &content[newline + 1..],
            None if start == 0 => content,
            // The whole tail, longer than the limit, is one line.
            None if want > MAX_LINE as u64 => return Err(Head::Fault(LineFault::TooLong)),
            None => {
                want = (want * 4).min(MAX_LINE as u64 + 2);
                continue;
            }
        };
        if line.len() > MAX_LINE {
            return Err(Head::Fault(LineFault::TooLong));
        }
        line_prev(line).map_err(Head::Fault)?;
        return Ok((sha256_hex(line), len));
    }
}

/// The `prev` of one line (without its `\n`), if the line is an audit line.
fn line_prev(line: &[u8]) -> Result<String, LineFault> {
    let mut object: Event = serde_json::from_slice(line).map_err(|_| LineFault::NotObject)?;
    match object.remove(PREV) {
        None => Err(LineFault::MissingPrev),
        Some(Value::String(prev))
            if prev.len() == 64 && prev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(prev)
        }
        Some(_) => Err(LineFault::MalformedPrev),
    }
}

/// What `audit verify` found in an intact file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many lines the chain has.
    pub lines: usize,
    /// The SHA-256 of the last line (the genesis value for an empty file): recorded elsewhere,
    /// it lets a later check see the removal or edit of the lines after it.
    pub head: String,
}

/// Why a file's chain is not intact, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The first bad line, 1-based.
    #[error("line {line}: {fault}")]
    Line { line: usize, fault: LineFault },
}

/// What is wrong with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineFault {
    #[error("is not ended by a newline (a torn write)")]
    Torn,
    #[error("is longer than 1 MiB (not an audit line)")]
    TooLong,
    #[error("is not a JSON object")]
    NotObject,
    #[error("has no \"prev\" field")]
    MissingPrev,
    #[error("has a \"prev\" that is not 64 lower-case hex digits")]
    MalformedPrev,
    #[error(
        "has a \"prev\" that is not the genesis value (64 zeros) a first line carries: the lines \
         before it were removed, or it was edited"
    )]
    NotGenesis,
    #[error(
        "has a \"prev\" that is not the SHA-256 of the line before it: that line was edited, or \
         lines were deleted, inserted or reordered here"
    )]
    PrevMismatch,
}

/// Checks the whole chain of the audit file at `path` (module doc: what it proves, and what
/// it cannot). Hashes the raw bytes of each line; never re-serializes one.
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let unreadable = |source| VerifyError::Unreadable {
        path: path.into(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(unreadable)?);
    let mut expected = GENESIS.to_owned();
    let mut buffer = Vec::new();
    let mut lines = 0;
    loop {
        buffer.clear();
        // A line at the limit, with its newline, is one byte longer than the limit; a line
        // past the limit fills the take without one.
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(unreadable)?;
        if read == 0 {
            return Ok(VerifyReport {
                lines,
                head: expected,
            });
        }
        lines += 1;
        let fault = |fault| VerifyError::Line { line: lines, fault };
        let Some(line) = buffer.strip_suffix(b"\n") else {
            return Err(fault(if buffer.len() > MAX_LINE {
                LineFault::TooLong
            } else {
                LineFault::Torn
            }));
        };
        let prev = line_prev(line).map_err(fault)?;
        if prev != expected {
            return Err(fault(if lines == 1 {
                LineFault::NotGenesis
            } else {
                LineFault::PrevMismatch
            }));
        }
        expected = sha256_hex(line);
    }
}

#[cfg(test)]
#[path = "audit_file_tests.rs"]
mod tests;
