//! Network-level faults and bulk observation, for long fault-injection runs (`bench/soak`):
//! a listener that disappears and comes back, open connections cut at once, new connections
//! closed or refused at the TLS handshake; records drained instead of kept, fault queues
//! cleared one at a time, the tokens issued and the orders that overlapped.
//!
//! Invariant: while the listener is down nothing listens on the fake's port (a connection is
//! refused) and no connection of the fake is open; when it comes back it is on the same port.

use std::io;
use std::sync::PoisonError;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::fake_tango::accept_loop;
use super::{ConnectionFault, FakeTango, RecordedRequest};

/// A TLS record: fatal alert `handshake_failure` (RFC 8446 §6: type 21, legacy version 3.3,
/// length 2, level 2 = fatal, description 40).
const HANDSHAKE_FAILURE_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];

/// How long [`FakeTango::resume_listening`] keeps trying to bind its port again.
const REBIND_FOR: Duration = Duration::from_secs(5);

impl FakeTango {
    /// The requests recorded so far, forgotten by the fake (a long run keeps memory bounded).
    pub fn take_received(&self) -> Vec<RecordedRequest> {
        std::mem::take(&mut self.shared.lock().received)
    }

    /// Forgets pending API faults (token faults and records are kept).
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Forgets pending token faults (API faults and records are kept).
    pub fn clear_token_faults(&self) {
        if let Some(server) = self.shared.lock().oauth.as_mut() {
            server.clear_faults();
        }
    }

    /// Every access token issued so far, in order (empty without OAuth).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared
            .lock()
            .oauth
            .as_ref()
            .map(|server| server.issued().to_vec())
            .unwrap_or_default()
    }

    /// The `externalRefID`s for which an order request began while another one for the same
    /// reference was being acted on (one entry per overlap): what could place the same order
    /// twice at a Tango whose deduplication races.
    pub fn overlapping_orders(&self) -> Vec<String> {
        self.shared.lock().orders_in_flight.overlapping().to_vec()
    }

    /// The next `times` new connections meet `fault`; `times: 0` cancels a pending one.
    pub fn set_connection_fault(&self, fault: ConnectionFault, times: usize) {
        let mut pending = self
            .shared
            .connection_fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *pending = (times > 0).then_some((fault, times));
    }

    /// Ends every open connection at once, requests in flight included (as a restarted
    /// load balancer would); the listener keeps accepting.
    pub fn drop_connections(&self) {
        self.drop_connections
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Closes the listener and every open connection: connections are refused until
    /// [`FakeTango::resume_listening`]. Idempotent.
    pub async fn stop_listening(&self) {
        let task = self
            .accept_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            // Wait until the task is gone, so the port is closed when this returns.
            let _ = task.await;
        }
    }

    /// Listens again on the same port (no effect when listening). Fails when the port
    /// cannot be bound again within a few seconds (taken by another socket meanwhile).
    pub async fn resume_listening(&self) -> io::Result<()> {
        if self
            .accept_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            return Ok(());
        }
        let started = tokio::time::Instant::now();
        let listener = loop {
            match TcpListener::bind(self.addr()).await {
                Ok(listener) => break listener,
                Err(err) if started.elapsed() >= REBIND_FOR => return Err(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let task = tokio::spawn(accept_loop(
            listener,
            self.acceptor.clone(),
            self.shared.clone(),
            self.drop_connections.subscribe(),
        ));
        *self
            .accept_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(())
    }

    /// True while the listener is up.
    pub fn is_listening(&self) -> bool {
        self.accept_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// Reads the client's first flight (its ClientHello), answers a fatal `handshake_failure`
/// alert and closes: the client sees a TLS handshake failure, not a network error.
pub(super) async fn refuse_handshake(mut tcp: TcpStream) {
    let mut hello = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut hello)).await;
    if matches!(read, Ok(Ok(n)) if n > 0) {
        let _ = tcp.write_all(&HANDSHAKE_FAILURE_ALERT).await;
        let _ = tcp.shutdown().await;
    }
}
