//! Records why Tango refused an attempt (PRODUCT.md §11): every non-2xx answer is classified
//! by [`super::rejection`], counted in `tango_gateway_upstream_rejections_total{route,cause}`
//! and its cause kept in the request's context for the access log's `upstream_cause`.
//!
//! Only a `403` can need its body (the ALB's HTML page, a JSON `403.001`), and only when its
//! headers do not settle it. Such an answer is held back until its first
//! [`BODY_PEEK_BYTES`] have arrived (or the body ended, failed, or sent
//! [`MAX_PEEK_FRAMES`] frames), then handed on with those bytes re-emitted in front of the
//! rest, unchanged: the caller gets every byte, frame error and trailer Tango sent. The wait
//! is that of a small error body, bounded per frame by the body stall guard and in all by
//! the attempt timeout (the peek happens inside the attempt). The chunks are kept as they
//! came (no copy), except that a verdict on several chunks copies at most
//! [`BODY_PEEK_BYTES`] into one buffer.
//!
//! Invariants: a 2xx answer never reaches this module (the caller checks its status first);
//! a body is never read beyond what the peek needs; nothing here logs any of it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::rejection::{classify, needs_body, Cause, BODY_PEEK_BYTES};
use crate::body::ResponseBody;
use crate::context::RequestContext;
use crate::error::BoxError;
use crate::metrics::{self, CauseLabels};

/// At most this many frames are read ahead: a body dribbling a byte at a time is judged on
/// what it sent so far rather than held back for long.
pub const MAX_PEEK_FRAMES: usize = 16;

/// A non-2xx answer, classified (and recorded) at once or after a peek at its body.
pub(crate) enum Observed {
    Done(Response<ResponseBody>),
    Peek(Peek),
}

/// Classifies a non-2xx answer: at once when its head is enough, else it must be peeked at.
pub(crate) fn observe(
    response: Response<ResponseBody>,
    context: Option<Arc<RequestContext>>,
) -> Observed {
    if needs_body(response.status(), response.headers()) {
        let (parts, body) = response.into_parts();
        return Observed::Peek(Peek {
            parts: Some(parts),
            body: Some(body),
            chunks: VecDeque::new(),
            peeked: 0,
            frames: 0,
            trailers: None,
            error: None,
            ended: false,
            context,
        });
    }
    let cause = classify(response.status(), response.headers(), &[]);
    record(cause, context.as_deref());
    Observed::Done(response)
}

/// Counts the cause and keeps it for the access log.
fn record(cause: Option<Cause>, context: Option<&RequestContext>) {
    if let Some(context) = context {
        context.set_upstream_cause(cause.map_or(0, Cause::code));
    }
    let Some(cause) = cause else {
        return;
    };
    let route = match context.and_then(RequestContext::route) {
        Some(route) => route.clone(),
        None => Arc::from("none"),
    };
    metrics::count_upstream_rejection(CauseLabels {
        route,
        cause: cause.as_str(),
    });
}

/// A `403` whose first bytes are being read ahead.
pub(crate) struct Peek {
    /// Taken when the peek is done.
    parts: Option<http::response::Parts>,
    body: Option<ResponseBody>,
    chunks: VecDeque<Bytes>,
    peeked: usize,
    frames: usize,
    trailers: Option<HeaderMap>,
    error: Option<BoxError>,
    ended: bool,
    context: Option<Arc<RequestContext>>,
}

impl Peek {
    /// Reads ahead until the verdict can be given, then hands back the whole answer.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Response<ResponseBody>> {
        while self.wants_more() {
            let Some(body) = self.body.as_mut() else {
                break;
            };
            if body.is_end_stream() {
                self.ended = true;
                break;
            }
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.ended = true,
                Poll::Ready(Some(Err(err))) => self.error = Some(err),
                Poll::Ready(Some(Ok(frame))) => {
                    self.frames += 1;
                    match frame.into_data() {
                        Ok(data) => {
                            self.peeked += data.len();
                            self.chunks.push_back(data);
                        }
                        Err(frame) => self.trailers = frame.into_trailers().ok(),
                    }
                }
            }
        }
        let Some(parts) = self.parts.take() else {
            // Polled again after it was done: nothing left to hand back.
            return Poll::Pending;
        };
        let cause = classify(parts.status, &parts.headers, &self.head());
        record(cause, self.context.as_deref());
        let finished = self.ended || self.error.is_some() || self.trailers.is_some();
        let rest = self.body.take().filter(|_| !finished);
        let replayed = Replayed {
            chunks: std::mem::take(&mut self.chunks),
            error: self.error.take(),
            trailers: self.trailers.take(),
            rest,
        };
        Poll::Ready(Response::from_parts(parts, replayed.boxed_unsync()))
    }

    fn wants_more(&self) -> bool {
        !self.ended
            && self.error.is_none()
            && self.trailers.is_none()
            && self.peeked < BODY_PEEK_BYTES
            && self.frames < MAX_PEEK_FRAMES
    }

    /// The first bytes read, in one piece: the first chunk as it is when it holds them all.
    fn head(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.chunks.front() {
            None => std::borrow::Cow::Borrowed(&[]),
            Some(first) if self.chunks.len() == 1 || first.len() >= BODY_PEEK_BYTES => {
                std::borrow::Cow::Borrowed(&first[..first.len().min(BODY_PEEK_BYTES)])
            }
            Some(_) => {
                let mut head = Vec::with_capacity(self.peeked.min(BODY_PEEK_BYTES));
                for chunk in &self.chunks {
                    let room = BODY_PEEK_BYTES - head.len();
                    head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                std::borrow::Cow::Owned(head)
            }
        }
    }
}

/// The peeked chunks again, then what the body did next (failed, sent trailers, or goes on).
struct Replayed {
    chunks: VecDeque<Bytes>,
    error: Option<BoxError>,
    trailers: Option<HeaderMap>,
    rest: Option<ResponseBody>,
}

impl Body for Replayed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(err) = self.error.take() {
            return Poll::Ready(Some(Err(err)));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
            && self.error.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let held: u64 = self.chunks.iter().map(|c| c.len() as u64).sum();
        let rest = match &self.rest {
            Some(rest) => rest.size_hint(),
            None => SizeHint::with_exact(0),
        };
        // Upper first: `set_lower` checks against the upper bound already set.
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint.set_lower(rest.lower().saturating_add(held));
        hint
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http::StatusCode;

    type Chunk = Result<Frame<Bytes>, BoxError>;

    fn answer(
        status: u16,
        content_type: Option<&str>,
        frames: Vec<Chunk>,
    ) -> Response<ResponseBody> {
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let mut response = Response::new(body.boxed_unsync());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(content_type) = content_type {
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        }
        response
    }

    fn data(bytes: &'static [u8]) -> Chunk {
        Ok(Frame::data(Bytes::from_static(bytes)))
    }

    /// The answer after the peek, and the cause the context was given.
    async fn peeked(response: Response<ResponseBody>) -> (Response<ResponseBody>, u8) {
        let context = Arc::new(RequestContext::default());
        context.set_upstream_status(response.status());
        let response = match observe(response, Some(context.clone())) {
            Observed::Done(response) => response,
            Observed::Peek(mut peek) => std::future::poll_fn(|cx| peek.poll(cx)).await,
        };
        (response, context.upstream_cause_code())
    }

    #[tokio::test]
    async fn a_403_is_classified_on_its_first_bytes_and_passed_on_whole() {
        let frames = vec![
            data(br#"{"httpCode":403,"#),
            data(br#""i18nKey":"403.001"}"#),
            Ok(Frame::trailers(HeaderMap::new())),
        ];
        let (response, code) = peeked(answer(403, Some("application/json"), frames)).await;
        assert_eq!(code, Cause::BrowserRefused.code());
        let collected = response.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_some());
        assert_eq!(
            collected.to_bytes(),
            Bytes::from_static(br#"{"httpCode":403,"i18nKey":"403.001"}"#)
        );
    }

    #[tokio::test]
    async fn the_peek_stops_at_its_limit_and_the_rest_still_streams() {
        static BIG: [u8; BODY_PEEK_BYTES] = [b' '; BODY_PEEK_BYTES];
        let frames = vec![data(b"{"), data(&BIG), data(b"\"403.001\"}")];
        let (response, code) = peeked(answer(403, None, frames)).await;
        // `403.001` lies beyond the peek: not seen, a plain client error.
        assert_eq!(code, Cause::ClientError.code());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 1 + BODY_PEEK_BYTES + 10);
    }

    #[tokio::test]
    async fn a_body_failing_during_the_peek_fails_for_the_caller_after_its_bytes() {
        let frames = vec![data(b"<html>"), Err("upstream reset".into())];
        let mut response = answer(403, None, frames);
        response
            .headers_mut()
            .insert(http::header::SERVER, "awselb/2.0".parse().unwrap());
        let (response, code) = peeked(response).await;
        assert_eq!(code, Cause::AlbXff.code());
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"<html>"));
        assert!(body.frame().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn the_replayed_body_keeps_an_exact_length() {
        let body = http_body_util::Full::new(Bytes::from_static(br#"{"code":"403.001"}"#));
        let mut response = Response::new(body.map_err(|never| match never {}).boxed_unsync());
        *response.status_mut() = StatusCode::FORBIDDEN;
        let (response, code) = peeked(response).await;
        assert_eq!(code, Cause::BrowserRefused.code());
        assert_eq!(response.body().size_hint().exact(), Some(18));
    }

    #[tokio::test]
    async fn an_answer_its_head_settles_is_not_peeked() {
        let frames = vec![data(b"{}")];
        let response = answer(503, Some("application/json"), frames);
        assert!(matches!(observe(response, None), Observed::Done(_)));
    }
}
