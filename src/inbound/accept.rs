//! Accept loops that a caller cannot turn against the process (PRODUCT.md §12): a cap on open
//! connections (beyond it a new connection is accepted and closed at once, never left in the
//! kernel's backlog) and a back-off when accepting fails, e.g. with no file descriptor left.
//!
//! Invariants: an accept loop never spins (every failure waits, longer while failures go
//! on); it logs at most one line per second whatever the rate of failures or refusals; a
//! connection counts against the cap from accept until its [`ConnectionSlot`] is dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::process_metrics::open_file_limit;

/// The first pause after a failed accept; doubled while failures go on.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// The longest pause: once descriptors free up the listener serves again within this.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// At most one log line per this interval per listener (failures and refusals are counted
/// in between and reported with the next line).
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// How many connections a listener may have open at once.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimit {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One open connection's place under its listener's [`ConnectionLimit`].
#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionLimit {
    pub(crate) fn new(max: usize) -> Self {
        ConnectionLimit {
            open: Arc::new(AtomicUsize::new(0)),
            max: max.max(1),
        }
    }

    /// A slot for one more connection, or `None` when `max` are open.
    pub(crate) fn try_take(&self) -> Option<ConnectionSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(self.open.clone()))
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

/// The connection cap a listener can really keep: `configured`, but at most half the
/// process's open-file limit, so that a flood of inbound connections cannot take the
/// descriptors that upstream connections, the admin listener and files need. Logs a warning
/// once when it lowers the configured value.
pub(crate) fn effective_max_connections(key: &str, configured: usize) -> usize {
    match open_file_limit() {
        Some(limit) => {
            let usable = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
            if configured > usable {
                tracing::warn!(
                    key,
                    configured,
                    open_file_limit = limit,
                    using = usable,
                    "the open-file limit is too low for this many connections; raise it \
                     (LimitNOFILE=, ulimit -n) to allow more"
                );
                usable
            } else {
                configured
            }
        }
        None => configured,
    }
}

/// Accepts connections for one listener under its cap, backing off on failures.
pub(crate) struct Acceptor {
    listener: TcpListener,
    limit: ConnectionLimit,
    /// Names the listener in log lines (`listen`, `admin.listen`).
    name: &'static str,
    backoff: Duration,
    log: RateLimitedLog,
}

impl Acceptor {
    pub(crate) fn new(listener: TcpListener, limit: ConnectionLimit, name: &'static str) -> Self {
        Acceptor {
            listener,
            limit,
            name,
            backoff: FIRST_BACKOFF,
            log: RateLimitedLog::new(LOG_INTERVAL),
        }
    }

    /// The next connection to serve, with its slot. Connections over the cap are closed
    /// here, at once; failures are waited out. Cancel-safe: nothing is lost when the caller
    /// stops waiting (a connection not yet accepted stays in the backlog).
    pub(crate) async fn next(&mut self) -> (TcpStream, SocketAddr, ConnectionSlot) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = FIRST_BACKOFF;
                    match self.limit.try_take() {
                        Some(slot) => return (stream, peer, slot),
                        None => {
                            crate::metrics::metrics().count_refused_connection(self.name);
                            if let Some(refused) = self.log.ready() {
                                tracing::warn!(
                                    listener = self.name,
                                    max_connections = self.limit.max(),
                                    refused,
                                    "connection limit reached; new connections are closed"
                                );
                            }
                            // Dropping the stream closes it: the caller sees the connection
                            // end at once instead of waiting in the backlog.
                            drop(stream);
                        }
                    }
                }
                Err(err) => {
                    if let Some(failures) = self.log.ready() {
                        tracing::warn!(
                            listener = self.name,
                            error = %err,
                            failures,
                            pause_ms = u64::try_from(self.backoff.as_millis()).unwrap_or(u64::MAX),
                            "accepting connections failed (out of file descriptors?); backing off"
                        );
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Lets one log line through per interval and counts the events in between.
#[derive(Debug)]
struct RateLimitedLog {
    interval: Duration,
    last: Option<Instant>,
    events: u64,
}

impl RateLimitedLog {
    fn new(interval: Duration) -> Self {
        RateLimitedLog {
            interval,
            last: None,
            events: 0,
        }
    }

    /// Records one event; returns how many events the line to log now covers, or `None`
    /// when the last line was less than an interval ago.
    fn ready(&mut self) -> Option<u64> {
        self.events += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_come_back() {
        let limit = ConnectionLimit::new(2);
        let a = limit.try_take();
        let b = limit.try_take();
        assert!(a.is_some() && b.is_some());
        assert!(
            limit.try_take().is_none(),
            "a third connection is over the cap"
        );
        assert_eq!(limit.open(), 2);
        drop(a);
        assert_eq!(limit.open(), 1);
        assert!(limit.try_take().is_some());
    }

    #[test]
    fn the_cap_never_exceeds_half_the_open_file_limit() {
        let max = effective_max_connections("inbound.max_connections", usize::MAX);
        match open_file_limit() {
            Some(limit) => assert_eq!(max as u64, (limit / 2).max(1)),
            None => assert_eq!(max, usize::MAX),
        }
        assert_eq!(effective_max_connections("inbound.max_connections", 1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_log_line_per_interval_counts_what_it_covers() {
        let mut log = RateLimitedLog::new(Duration::from_secs(1));
        assert_eq!(log.ready(), Some(1));
        assert_eq!(log.ready(), None);
        assert_eq!(log.ready(), None);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(
            log.ready(),
            Some(3),
            "the two suppressed events and this one"
        );
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_at_once() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut acceptor = Acceptor::new(listener, ConnectionLimit::new(1), "test");
        let _first_client = TcpStream::connect(addr).await.expect("connect");
        let (_first, _, _slot) = acceptor.next().await;
        let mut second = TcpStream::connect(addr).await.expect("connect");
        // The acceptor takes the second connection and closes it; its next accept waits.
        let accepting = tokio::spawn(async move {
            let _ = acceptor.next().await;
        });
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
            .await
            .expect("closed at once, not left waiting");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        accepting.abort();
    }
}
