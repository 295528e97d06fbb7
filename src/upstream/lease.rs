//! Gives an HTTP/1.1 connection back to its pool when the response it carried has been
//! read to the end.
//!
//! Why the body carries the connection back, rather than a task per response awaiting the
//! connection's readiness (hyper-util's way): that task is an allocation and a scheduling
//! round per request, while by the time a body reports its end, hyper's connection task has
//! almost always gone idle already, so the connection goes back inline. The task remains
//! only as the fall-back for when it has not.
//!
//! Invariant: a connection returns only after its response body ended (HTTP/1.1 cannot
//! carry the next request before); a body dropped or failed before its end never returns
//! its connection, which hyper then closes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::pool::Pool;
use crate::body::Payload;

/// An HTTP/1.1 connection lent to one response until its body ends.
pub(super) struct Lease {
    pool: Arc<Pool>,
    send: http1::SendRequest<Payload>,
}

impl Lease {
    pub(super) fn new(pool: Arc<Pool>, send: http1::SendRequest<Payload>) -> Self {
        Lease { pool, send }
    }

    /// The response is complete: the connection goes back once hyper's connection task has
    /// seen the end, which has usually happened by the time the body reports it (the task
    /// ran first). If not, a small task waits for it, on this worker's runtime.
    pub(super) fn release(self) {
        if self.send.is_ready() {
            self.pool.put(self.send);
            return;
        }
        if self.send.is_closed() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Lease { pool, mut send } = self;
        let patience = pool.idle_timeout();
        runtime.spawn(async move {
            // Bounded: a connection whose request body is still being sent (an early answer
            // to an upload the caller stalled) may never become ready.
            if let Ok(Ok(())) = tokio::time::timeout(patience, send.ready()).await {
                pool.put(send);
            }
        });
    }
}

/// An upstream response body. Over HTTP/1.1 it holds the connection's [`Lease`]: at the
/// body's end the connection returns to the pool; a body dropped before its end (caller
/// gone, stall guard) drops the lease, and hyper closes a connection whose response was
/// not read to the end.
pub struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl PooledBody {
    pub(super) fn new(inner: Incoming, lease: Option<Lease>) -> Self {
        PooledBody { inner, lease }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let ended = match &frame {
            None => true,
            // A body of known length ends with its last frame: the server writing the
            // caller's answer may never poll again.
            Some(Ok(_)) => self.inner.is_end_stream(),
            Some(Err(_)) => {
                self.lease = None;
                false
            }
        };
        if ended {
            if let Some(lease) = self.lease.take() {
                lease.release();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
