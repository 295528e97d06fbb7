//! Request body preparation (PRODUCT.md §4.3, §6): size limit, and buffering only when a
//! retry could need to send the body again.
//!
//! Invariant: no body larger than `max_body_bytes` reaches the upstream; a buffered body is
//! complete before the first attempt starts.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::CONTENT_LENGTH;
use http::Request;
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tower::{Layer, Service};

use crate::body::Payload;
use crate::error::{find_cause, BoxError, ErrorCode, GatewayError};
use crate::retry::policy::Deadline;

#[derive(Debug, Clone, Copy)]
pub struct PrepareBodyLayer {
    pub max_body_bytes: u64,
    /// True when the route may send a request more than once.
    pub buffer: bool,
    /// The route's total time budget for all attempts and waits.
    pub deadline: Option<Duration>,
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
            let (mut parts, body) = request.into_parts();
            let declared = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > settings.max_body_bytes) {
                return Err(too_large(settings.max_body_bytes));
            }
            // A deadline too far away to represent is no deadline (never a panic).
            if let Some(deadline) = settings
                .deadline
                .and_then(|deadline| Instant::now().checked_add(deadline))
            {
                parts.extensions.insert(Deadline(deadline));
            }
            let limit = usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX);
            let payload = if body.is_end_stream() {
                Payload::Empty
            } else if settings.buffer {
                match Limited::new(body, limit).collect().await {
                    Ok(collected) => Payload::buffered(collected.to_bytes()),
                    Err(err) if find_cause::<LengthLimitError>(&*err).is_some() => {
                        return Err(too_large(settings.max_body_bytes))
                    }
                    Err(_) => {
                        return Err(GatewayError::new(
                            ErrorCode::BadRequest,
                            "the request body could not be read",
                        )
                        .into())
                    }
                }
            } else {
                let overflow = Arc::new(AtomicBool::new(false));
                let payload = Payload::Streaming {
                    body: Limited::new(body, limit),
                    overflow: overflow.clone(),
                };
                let result = inner.call(Request::from_parts(parts, payload)).await;
                if result.is_err() && overflow.load(Ordering::Acquire) {
                    return Err(too_large(settings.max_body_bytes));
                }
                return result;
            };
            inner.call(Request::from_parts(parts, payload)).await
        })
    }
}
