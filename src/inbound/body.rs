//! Request body preparation (PRODUCT.md §4.3, §6): size limit, and buffering only when a
//! retry could need to send the body again.
//!
//! Invariants: no body larger than `max_body_bytes` reaches the upstream; a buffered body is
//! complete before the first attempt starts (and before the request takes a concurrency
//! permit: the limit layer sits below this one); no wait for a body chunk lasts longer than
//! `body_read_timeout` (408, nothing sent when the body was buffered).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::Request;
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tower::{Layer, Service};

use crate::body::{body_stalled, CallerStream, Payload, StreamFault};
use crate::error::{find_cause, BoxError, ErrorCode, GatewayError};

#[derive(Debug, Clone, Copy)]
pub struct PrepareBodyLayer {
    pub max_body_bytes: u64,
    /// The longest wait for each chunk of the body (`inbound.body_read_timeout`).
    pub body_read_timeout: Duration,
    /// True when the route may send a request more than once.
    pub buffer: bool,
}

impl<S> Layer<S> for PrepareBodyLayer {
    type Service = PrepareBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PrepareBody {
            inner,
            settings: *self,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PrepareBody<S> {
    inner: S,
    settings: PrepareBodyLayer,
}

fn too_large(limit: u64) -> BoxError {
    GatewayError::new(
        ErrorCode::BodyTooLarge,
        format!("request body larger than {limit} bytes"),
    )
    .into()
}

/// Reads a whole body into memory, waiting at most `stall_limit` for each chunk. Trailers
/// are read and dropped: a caller's trailers are never passed on.
async fn read_whole(
    body: Incoming,
    max_body_bytes: u64,
    stall_limit: Duration,
) -> Result<Bytes, BoxError> {
    let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    let mut body = Limited::new(body, limit);
    // Most bodies arrive as one chunk: kept as it is, copied only when a second one comes.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    loop {
        let frame = match tokio::time::timeout(stall_limit, body.frame()).await {
            Err(_) => return Err(body_stalled().into()),
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(err))) if find_cause::<LengthLimitError>(&*err).is_some() => {
                return Err(too_large(max_body_bytes))
            }
            Ok(Some(Err(_))) => {
                return Err(GatewayError::new(
                    ErrorCode::BadRequest,
                    "the request body could not be read",
                )
                .into())
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(earlier)) => {
                let mut both = BytesMut::with_capacity(earlier.len() + data.len());
                both.extend_from_slice(&earlier);
                both.extend_from_slice(&data);
                joined = Some(both);
            }
        }
    }
    Ok(match joined {
        Some(joined) => joined.freeze(),
        None => first.unwrap_or_default(),
    })
}

impl<S> Service<Request<Incoming>> for PrepareBody<S>
where
    S: Service<Request<Payload>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let settings = self.settings;
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let declared = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > settings.max_body_bytes) {
                return Err(too_large(settings.max_body_bytes));
            }
            let payload = if body.is_end_stream() {
                Payload::Empty
            } else if settings.buffer {
                Payload::buffered(
                    read_whole(body, settings.max_body_bytes, settings.body_read_timeout).await?,
                )
            } else {
                let limit = usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX);
                let fault = Arc::new(StreamFault::default());
                let payload = Payload::Streaming(Box::new(CallerStream::new(
                    Limited::new(body, limit),
                    settings.body_read_timeout,
                    fault.clone(),
                )));
                let result = inner.call(Request::from_parts(parts, payload)).await;
                if result.is_err() {
                    if let Some(fault) = fault.error(settings.max_body_bytes) {
                        return Err(fault.into());
                    }
                }
                return result;
            };
            inner.call(Request::from_parts(parts, payload)).await
        })
    }
}
