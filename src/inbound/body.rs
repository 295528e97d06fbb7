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
pub(crate) struct PrepareBodyLayer {
    pub max_body_bytes: u64,
    /// The longest wait for each chunk of the body (`inbound.body_read_timeout`).
    pub body_read_timeout: Duration,
    /// True when the route may send a request more than once.
    pub buffer: bool,
    /// True when the route's order guard reads POST bodies (§10).
    pub buffer_posts: bool,
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
pub(crate) struct PrepareBody<S> {
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
            } else if settings.buffer
                || (settings.buffer_posts && parts.method == http::Method::POST)
            {
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

#[cfg(test)]
mod tests {
    //! Through hyper over an in-memory connection (a real `Incoming` body), under paused
    //! time: the caller's side sends chunks, stops or ends; the answer's status is what the
    //! error would become.

    use std::convert::Infallible;
    use std::sync::Mutex;

    use http::{Response, StatusCode};
    use http_body_util::{Empty, StreamBody};
    use hyper::body::Frame;
    use hyper_util::rt::TokioIo;
    use tokio::time::Instant;
    use tower::ServiceExt;

    use super::*;

    const LIMIT: u64 = 10;
    const READ_TIMEOUT: Duration = Duration::from_secs(5);

    fn settings(buffer: bool) -> PrepareBodyLayer {
        PrepareBodyLayer {
            max_body_bytes: LIMIT,
            body_read_timeout: READ_TIMEOUT,
            buffer,
            buffer_posts: false,
        }
    }

    /// What the caller sends: chunks, each after a wait; then the body ends, or stalls.
    struct Upload {
        declared: Option<u64>,
        chunks: Vec<(Duration, &'static [u8])>,
        ends: bool,
    }

    impl Upload {
        fn chunks(chunks: &[&'static [u8]], ends: bool) -> Self {
            Upload {
                declared: None,
                chunks: chunks.iter().map(|c| (Duration::ZERO, *c)).collect(),
                ends,
            }
        }
    }

    /// What came of it: the status, how long the answer took, what the upstream got.
    #[derive(Debug)]
    struct Outcome {
        status: StatusCode,
        took: Duration,
        upstream_got: Option<Bytes>,
    }

    async fn exchange(settings: PrepareBodyLayer, upload: Upload) -> Outcome {
        let got: Arc<Mutex<Option<Bytes>>> = Arc::default();
        let seen = got.clone();
        // The next step reads the whole payload, as the upstream client would.
        let upstream = tower::service_fn(move |request: Request<Payload>| {
            let seen = seen.clone();
            async move {
                let bytes = request.into_body().collect().await?.to_bytes();
                *seen.lock().unwrap() = Some(bytes);
                Ok::<_, BoxError>(())
            }
        });
        let prepare = settings.layer(upstream);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let prepare = prepare.clone();
            async move {
                let status = match prepare.oneshot(request).await {
                    Ok(()) => StatusCode::OK,
                    Err(err) => find_cause::<GatewayError>(&*err)
                        .map_or(StatusCode::INTERNAL_SERVER_ERROR, |e| e.code.status()),
                };
                let mut response = Response::new(Empty::<Bytes>::new());
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        });
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        // Driven in this task, beside the request (not spawned: the layer's boxed error type
        // trips the compiler's `'static` check on a spawned future).
        let server = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server_io), service);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(client_io))
                .await
                .unwrap();
        tokio::spawn(connection);

        let (chunks, mut receiver) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| {
            receiver.poll_recv(cx)
        }));
        tokio::spawn(async move {
            for (wait, chunk) in upload.chunks {
                tokio::time::sleep(wait).await;
                if chunks
                    .send(Ok(Frame::data(Bytes::from_static(chunk))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if !upload.ends {
                // A caller that keeps the connection open and sends nothing more.
                std::future::pending::<()>().await;
            }
        });
        let mut request = Request::post("http://gateway.test/raas/v2/orders");
        if let Some(length) = upload.declared {
            request = request.header(CONTENT_LENGTH, length);
        }
        let start = Instant::now();
        let exchange = sender.send_request(request.body(body).unwrap());
        tokio::pin!(exchange);
        let response = tokio::select! {
            response = &mut exchange => response,
            // A refused upload closes the connection after the answer: the answer is read
            // from the pipe all the same.
            _ = server => exchange.await,
        };
        let took = start.elapsed();
        let response = response.unwrap();
        let upstream_got = got.lock().unwrap().clone();
        Outcome {
            status: response.status(),
            took,
            upstream_got,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_within_the_limit_reaches_the_upstream_whole() {
        for buffer in [true, false] {
            let upload = Upload::chunks(&[b"0123", b"456789"], true);
            let outcome = exchange(settings(buffer), upload).await;
            assert_eq!(outcome.status, StatusCode::OK, "buffer {buffer}");
            assert_eq!(
                outcome.upstream_got.as_deref(),
                Some(&b"0123456789"[..]),
                "buffer {buffer}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_declared_length_over_the_limit_is_refused_before_any_body_is_read() {
        for buffer in [true, false] {
            let upload = Upload {
                declared: Some(LIMIT + 1),
                chunks: Vec::new(),
                ends: false,
            };
            let outcome = exchange(settings(buffer), upload).await;
            assert_eq!(
                outcome.status,
                StatusCode::PAYLOAD_TOO_LARGE,
                "buffer {buffer}"
            );
            assert_eq!(outcome.took, Duration::ZERO, "no wait for a body");
            assert_eq!(outcome.upstream_got, None, "nothing was sent");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_streaming_past_the_limit_is_refused() {
        for buffer in [true, false] {
            // No Content-Length (chunked): the limit is found while reading.
            let upload = Upload::chunks(&[b"012345", b"6789ab"], false);
            let outcome = exchange(settings(buffer), upload).await;
            assert_eq!(
                outcome.status,
                StatusCode::PAYLOAD_TOO_LARGE,
                "buffer {buffer}"
            );
            assert_eq!(
                outcome.took,
                Duration::ZERO,
                "refused when the limit is passed"
            );
            assert_eq!(outcome.upstream_got, None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_answered_408_exactly_after_body_read_timeout() {
        for buffer in [true, false] {
            let upload = Upload {
                declared: Some(LIMIT),
                chunks: vec![(Duration::ZERO, b"0123")],
                ends: false,
            };
            let outcome = exchange(settings(buffer), upload).await;
            assert_eq!(
                outcome.status,
                StatusCode::REQUEST_TIMEOUT,
                "buffer {buffer}"
            );
            assert_eq!(outcome.took, READ_TIMEOUT, "buffer {buffer}");
            assert_eq!(
                outcome.upstream_got, None,
                "a partial body is never complete"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_chunk_resets_the_read_timeout() {
        for buffer in [true, false] {
            // Three chunks 4 s apart: each gap within the 5 s limit, the whole upload not.
            let gap = READ_TIMEOUT - Duration::from_secs(1);
            let upload = Upload {
                declared: None,
                chunks: vec![(Duration::ZERO, b"012"), (gap, b"345"), (gap, b"6789")],
                ends: true,
            };
            let outcome = exchange(settings(buffer), upload).await;
            assert_eq!(outcome.status, StatusCode::OK, "buffer {buffer}");
            assert_eq!(outcome.took, gap * 2, "buffer {buffer}");
            assert_eq!(outcome.upstream_got.as_deref(), Some(&b"0123456789"[..]));
        }
    }
}
