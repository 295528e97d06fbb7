//! How an upstream attempt failed, as far as retrying and answering are concerned: every
//! error an attempt can end with is named here, beside the transport that raises it.
//!
//! Invariant: only failures this module recognises are upstream failures; anything else is
//! [`AttemptFailure::Unknown`] (a bug of ours): never retried, answered 500.

use std::error::Error as StdError;

use crate::error::{find_cause, GatewayError};

/// The per-attempt timeout passed before the upstream sent response headers.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("upstream did not answer within the attempt timeout")]
pub struct AttemptTimedOut;

/// How an upstream attempt failed, as far as retrying and answering are concerned.
///
/// The unclassified case is a variant here, not a separate type: every `match` on an
/// attempt's failure (the retry policy, the attempt metrics, the answer) must then say what
/// it does with one, and the compiler points at each; a separate type would leave the
/// four upstream kinds looking exhaustive to code that forgot it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// Never reached the upstream (refused, DNS, connect timeout): always safe to retry.
    ConnectFailure,
    /// TLS handshake failure, alert, unknown CA, hostname mismatch: never retried.
    Tls,
    /// No response headers within the attempt timeout: the upstream may have acted.
    Timeout,
    /// Connection lost after the request may have been sent: a transport failure the
    /// classifier recognises (see [`classify_attempt_error`]).
    Reset,
    /// None of the above: a failure the gateway cannot classify, so a bug of ours rather
    /// than a fact about the upstream. Never retried, answered `500 gateway.internal`,
    /// logged at warn with its cause chain.
    Unknown,
}

impl AttemptFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptFailure::ConnectFailure => "connect_failure",
            AttemptFailure::Tls => "tls",
            AttemptFailure::Timeout => "timeout",
            AttemptFailure::Reset => "reset",
            // The error code's name: the metric points at the same log lines.
            AttemptFailure::Unknown => "internal",
        }
    }
}

/// True when the transport failed in TLS. Over HTTP/1.1 the `rustls::Error` itself is in the
/// chain; over h2 only its text and I/O kind survive, and in this transport (TCP + rustls)
/// only rustls reports `InvalidData` (tokio-rustls maps every rustls error to it). A TLS 1.3
/// server refusing our client certificate is seen this way: its alert arrives after the
/// handshake, on the first read.
fn is_tls_failure(err: &(dyn StdError + 'static)) -> bool {
    find_cause::<rustls::Error>(err).is_some()
        || find_cause::<std::io::Error>(err)
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
}

/// Classifies an upstream attempt error; `None` when it is not an upstream failure at all
/// (e.g. a gateway error raised below the retry layer).
///
/// Each kind is recognised by what produces it; what nothing here recognises is
/// [`AttemptFailure::Unknown`], never a guess: a failure we cannot name must not be resent.
pub fn classify_attempt_error(err: &(dyn StdError + 'static)) -> Option<AttemptFailure> {
    if find_cause::<GatewayError>(err).is_some()
        || find_cause::<http_body_util::LengthLimitError>(err).is_some()
    {
        return None;
    }
    if is_tls_failure(err) {
        return Some(AttemptFailure::Tls);
    }
    // A stalled answer body only ever fails after the retry layer has handed the answer on
    // (it is never resent, §6); named here so that it is never mistaken for a bug.
    if find_cause::<AttemptTimedOut>(err).is_some()
        || find_cause::<crate::upstream::stall::BodyStalled>(err).is_some()
    {
        return Some(AttemptFailure::Timeout);
    }
    // The route pool's connect errors; hyper-util's client (the token client, the demo) marks
    // its own with `is_connect`.
    if find_cause::<crate::upstream::connect::ConnectError>(err).is_some() {
        return Some(AttemptFailure::ConnectFailure);
    }
    if let Some(client_err) = find_cause::<hyper_util::client::legacy::Error>(err) {
        if client_err.is_connect() {
            return Some(AttemptFailure::ConnectFailure);
        }
    }
    Some(transport_verdict(err))
}

/// `Reset` when the transport says the connection was lost after the request may have been
/// sent, else `Unknown`. The first error down the chain that decides wins, so a cause deep
/// inside an error of our own making (a caller's reset inside the request body we failed
/// to send) never passes for an upstream reset.
fn transport_verdict(err: &(dyn StdError + 'static)) -> AttemptFailure {
    let mut current = Some(err);
    while let Some(e) = current {
        let verdict = if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            hyper_verdict(hyper)
        } else if let Some(h2) = e.downcast_ref::<h2::Error>() {
            h2_verdict(h2)
        } else if let Some(io) = e.downcast_ref::<std::io::Error>() {
            is_connection_lost(io.kind()).then_some(AttemptFailure::Reset)
        } else {
            None
        };
        if let Some(verdict) = verdict {
            return verdict;
        }
        current = cause_of(e);
    }
    AttemptFailure::Unknown
}

/// What hyper's own error kind says; `None` for the kinds it gives no predicate for (I/O,
/// body read or write, h2), where the cause decides.
fn hyper_verdict(err: &hyper::Error) -> Option<AttemptFailure> {
    // In order: the upstream closed before its answer was complete; the connection went
    // away before or while taking the request; its task had already ended; the answer was
    // not HTTP (a client parses nothing else); closing the connection failed; an h2
    // keep-alive PING went unanswered.
    let lost = err.is_incomplete_message()
        || err.is_canceled()
        || err.is_closed()
        || err.is_parse()
        || err.is_shutdown()
        || err.is_timeout();
    if lost {
        Some(AttemptFailure::Reset)
    } else if err.is_user() {
        // Our side of the exchange failed: the request body we were sending returned an
        // error (one already classified, a size limit or a gateway error, was found above),
        // or ended before its own `content-length` (`is_body_write_aborted`), or hyper's
        // connection task was dropped (`dispatch gone`). Resending repeats it.
        Some(AttemptFailure::Unknown)
    } else {
        None
    }
}

/// What an h2 error says; `None` for an I/O error, whose kind decides.
fn h2_verdict(err: &h2::Error) -> Option<AttemptFailure> {
    if err.is_io() {
        None
    } else if err.is_remote() || err.is_library() {
        // RST_STREAM or GOAWAY from the upstream, or one h2 sent because the upstream broke
        // the protocol.
        Some(AttemptFailure::Reset)
    } else if err.reason().is_some() && !err.is_reset() && !err.is_go_away() {
        // A bare reason: hyper makes these from the RST_STREAM the upstream sent while the
        // request body was still being written.
        Some(AttemptFailure::Reset)
    } else {
        // A reset we sent ourselves (hyper does, when the request body fails) or a misuse of
        // the h2 API: nothing the upstream did.
        Some(AttemptFailure::Unknown)
    }
}

/// I/O kinds a socket (or rustls over it) reports once an established connection is lost:
/// reset or closed by the peer (`UnexpectedEof`: a TLS close without `close_notify`), given
/// up by the kernel (keep-alive probes unanswered, an ICMP unreachable), or a write that
/// made no progress. `InvalidData` is not one: in this transport only rustls reports it
/// (TLS, above).
fn is_connection_lost(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionReset
            | ConnectionAborted
            | BrokenPipe
            | UnexpectedEof
            | NotConnected
            | WriteZero
            | TimedOut
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

/// The next error down the chain, looking inside `io::Error`s and `h2::Error`s as
/// [`find_cause`] does.
fn cause_of<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return io.get_ref().map(|inner| inner as &(dyn StdError + 'static));
    }
    if let Some(h2) = err.downcast_ref::<h2::Error>() {
        return h2.get_io().map(|io| io as &(dyn StdError + 'static));
    }
    err.source()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::BoxError;

    #[test]
    fn tls_alert_kept_only_as_io_kind_is_still_tls() {
        // What h2 keeps after a TLS 1.3 server refuses the client certificate: the kind and
        // the text (`h2::Error` itself cannot be built outside h2; tests/mtls.rs covers it).
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        let boxed: BoxError = Box::new(io);
        assert_eq!(classify_attempt_error(&*boxed), Some(AttemptFailure::Tls));
    }

    #[test]
    fn connection_reset_is_not_tls() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let boxed: BoxError = Box::new(io);
        assert_eq!(classify_attempt_error(&*boxed), Some(AttemptFailure::Reset));
    }

    /// A failure none of the classifier's kinds describes: what a bug of ours looks like
    /// from where the classifier stands.
    #[derive(Debug, thiserror::Error)]
    #[error("something the gateway did not expect")]
    struct Unexpected;

    /// An error of ours that names its cause, as a wrapper around a transport error would.
    #[derive(Debug, thiserror::Error)]
    #[error("an exchange of ours failed")]
    struct Wrapped(#[source] std::io::Error);

    fn classify(err: impl Into<BoxError>) -> Option<AttemptFailure> {
        let boxed: BoxError = err.into();
        classify_attempt_error(&*boxed)
    }

    #[test]
    fn io_kinds_of_a_lost_connection_are_resets() {
        use std::io::ErrorKind::*;
        for kind in [
            ConnectionReset,
            ConnectionAborted,
            BrokenPipe,
            UnexpectedEof,
            NotConnected,
            WriteZero,
            TimedOut,
            HostUnreachable,
            NetworkUnreachable,
            NetworkDown,
        ] {
            let io = std::io::Error::from(kind);
            assert_eq!(classify(io), Some(AttemptFailure::Reset), "{kind:?}");
        }
    }

    #[test]
    fn other_io_kinds_are_unknown() {
        use std::io::ErrorKind::*;
        for kind in [
            Other,
            PermissionDenied,
            InvalidInput,
            OutOfMemory,
            Unsupported,
        ] {
            let io = std::io::Error::from(kind);
            assert_eq!(classify(io), Some(AttemptFailure::Unknown), "{kind:?}");
        }
    }

    #[test]
    fn a_lost_connection_under_other_errors_is_still_a_reset() {
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let inside_io = std::io::Error::other(reset());
        assert_eq!(classify(inside_io), Some(AttemptFailure::Reset));
        assert_eq!(classify(Wrapped(reset())), Some(AttemptFailure::Reset));
    }

    #[test]
    fn the_pools_connect_errors_are_connect_failures() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        use crate::upstream::connect::ConnectError;
        for err in [
            ConnectError::InsecureRefused,
            ConnectError::Resolve(io()),
            ConnectError::NoAddress,
            ConnectError::Tcp(io()),
            ConnectError::Timeout,
            ConnectError::TlsHandshake(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            ConnectError::TlsTimeout,
            // Given back unsent by a new connection: a reset inside does not make it one.
            ConnectError::ClosedBeforeSend(
                std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
            ),
        ] {
            let text = err.to_string();
            assert_eq!(
                classify(err),
                Some(AttemptFailure::ConnectFailure),
                "{text}"
            );
        }
    }

    #[test]
    fn a_stalled_answer_body_is_a_timeout_not_a_bug() {
        let stalled = crate::upstream::stall::BodyStalled;
        assert_eq!(classify(stalled), Some(AttemptFailure::Timeout));
    }

    #[test]
    fn an_h2_reason_is_a_reset() {
        // What hyper makes of the RST_STREAM an upstream sent while the body was going out.
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert_eq!(classify(refused), Some(AttemptFailure::Reset));
    }

    /// Real hyper errors, from hyper's clients over in-memory connections to upstreams that
    /// misbehave on purpose (hyper's errors cannot be built any other way).
    mod transport {
        use super::*;
        use bytes::Bytes;
        use http::Request;
        use http_body_util::{Empty, StreamBody};
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

        type Chunk = Result<http_body::Frame<Bytes>, BoxError>;

        /// A request body that sends `chunks`, of unknown length unless a test says.
        fn body(
            chunks: Vec<Chunk>,
        ) -> StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Chunk>>> {
            StreamBody::new(futures_util::stream::iter(chunks))
        }

        fn post<B>(body: B) -> Request<B> {
            let mut request = Request::new(body);
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = http::Uri::from_static("http://tango.test/raas/v2/orders");
            request
        }

        /// An HTTP/1.1 upstream that reads the request head, writes `answer` if there is one
        /// and hangs up; with none it reads on until the gateway hangs up.
        fn h1_upstream(mut upstream: DuplexStream, answer: Option<&'static [u8]>) {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = upstream.read(&mut buffer).await;
                match answer {
                    Some(answer) => {
                        let _ = upstream.write_all(answer).await;
                    }
                    None => while upstream.read(&mut buffer).await.is_ok_and(|n| n > 0) {},
                }
            });
        }

        /// What hyper's HTTP/1.1 client reports for `request` against [`h1_upstream`].
        async fn h1_failure<B>(request: Request<B>, answer: Option<&'static [u8]>) -> BoxError
        where
            B: http_body::Body + Send + 'static,
            B::Data: Send,
            B::Error: Into<BoxError>,
        {
            let (gateway, upstream) = tokio::io::duplex(64 * 1024);
            h1_upstream(upstream, answer);
            let (mut send, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(gateway))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let sent = send.send_request(request).await;
            sent.map(drop).expect_err("the exchange fails").into()
        }

        #[tokio::test]
        async fn an_upstream_closing_before_its_answer_is_a_reset() {
            let err = h1_failure(post(Empty::<Bytes>::new()), Some(b"")).await;
            let hyper = find_cause::<hyper::Error>(&*err).unwrap();
            assert!(hyper.is_incomplete_message(), "{err}");
            assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Reset));
        }

        #[tokio::test]
        async fn an_answer_that_is_not_http_is_a_reset() {
            let err = h1_failure(
                post(Empty::<Bytes>::new()),
                Some(b"SSH-2.0-OpenSSH\r\n\r\n"),
            )
            .await;
            assert!(
                find_cause::<hyper::Error>(&*err).unwrap().is_parse(),
                "{err}"
            );
            assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Reset));
        }

        #[tokio::test]
        async fn a_connection_whose_task_ended_is_a_reset() {
            let (gateway, _upstream) = tokio::io::duplex(1024);
            let (mut send, connection) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(gateway))
                    .await
                    .unwrap();
            drop(connection);
            let closed: BoxError = send.ready().await.expect_err("no connection").into();
            assert!(
                find_cause::<hyper::Error>(&*closed).unwrap().is_closed(),
                "{closed}"
            );
            assert_eq!(
                classify_attempt_error(&*closed),
                Some(AttemptFailure::Reset)
            );
            let sent = send.send_request(post(Empty::new())).await;
            let canceled: BoxError = sent.map(drop).expect_err("no connection").into();
            assert!(
                find_cause::<hyper::Error>(&*canceled)
                    .unwrap()
                    .is_canceled(),
                "{canceled}"
            );
            assert_eq!(
                classify_attempt_error(&*canceled),
                Some(AttemptFailure::Reset)
            );
        }

        #[tokio::test]
        async fn a_request_body_failing_of_its_own_is_unknown_over_http1() {
            let err = h1_failure(post(body(vec![Err(Unexpected.into())])), None).await;
            assert!(
                find_cause::<hyper::Error>(&*err).unwrap().is_user(),
                "{err}"
            );
            assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Unknown));
        }

        #[tokio::test]
        async fn a_caller_reset_inside_a_failed_request_body_is_not_an_upstream_reset() {
            // The reset is the request body's cause, under hyper's user error: not the
            // upstream's connection.
            let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
            let err = h1_failure(post(body(vec![Err(reset.into())])), None).await;
            assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Unknown));
        }

        #[tokio::test]
        async fn a_request_body_shorter_than_its_length_is_unknown() {
            let chunks = vec![Ok(http_body::Frame::data(Bytes::from_static(b"abc")))];
            let mut request = post(body(chunks));
            request.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from_static("10"),
            );
            let err = h1_failure(request, None).await;
            let hyper = find_cause::<hyper::Error>(&*err).unwrap();
            assert!(hyper.is_body_write_aborted(), "{err}");
            assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Unknown));
        }

        /// What hyper's h2 client reports for `request` when the upstream (h2's own server)
        /// does `upstream` with the connection and the request's stream once it has the
        /// request; the stream is kept open until the gateway hangs up.
        async fn h2_failure<B, F>(request: Request<B>, upstream: F) -> BoxError
        where
            B: http_body::Body + Send + Unpin + 'static,
            B::Data: Send,
            B::Error: Into<BoxError>,
            F: FnOnce(
                    &mut h2::server::Connection<DuplexStream, Bytes>,
                    &mut h2::server::SendResponse<Bytes>,
                ) + Send
                + 'static,
        {
            let (gateway, upstream_io) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let mut connection = h2::server::handshake(upstream_io).await.unwrap();
                let Some(Ok((_request, mut respond))) = connection.accept().await else {
                    return;
                };
                upstream(&mut connection, &mut respond);
                // Drives the connection: what the upstream did goes out.
                while let Some(Ok(_)) = connection.accept().await {}
            });
            let (mut send, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(gateway))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let sent = send.send_request(request).await;
            sent.map(drop).expect_err("the exchange fails").into()
        }

        #[tokio::test]
        async fn a_stream_reset_by_the_upstream_is_a_reset() {
            let err = h2_failure(post(Empty::<Bytes>::new()), |_, respond| {
                respond.send_reset(h2::Reason::REFUSED_STREAM)
            })
            .await;
            let h2 = find_cause::<h2::Error>(&*err).unwrap();
            assert!(h2.is_reset() && h2.is_remote(), "{err}");
            assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Reset));
        }

        /// An h2 upstream, written frame by frame: it answers the request's HEADERS with a
        /// GOAWAY naming no stream (it refuses the request unread), then waits for the
        /// gateway to hang up. h2's own server cannot: it counts the stream as processed.
        async fn goaway_upstream(mut upstream: DuplexStream) -> std::io::Result<()> {
            const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
            const SETTINGS_ACK: [u8; 9] = [0, 0, 0, 4, 1, 0, 0, 0, 0];
            // Last stream 0, error ENHANCE_YOUR_CALM (0xb).
            const GOAWAY: [u8; 17] = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb];
            let mut preface = [0u8; 24];
            upstream.read_exact(&mut preface).await?;
            upstream.write_all(&SETTINGS).await?;
            loop {
                let mut head = [0u8; 9];
                upstream.read_exact(&mut head).await?;
                let length =
                    usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
                let mut payload = vec![0u8; length];
                upstream.read_exact(&mut payload).await?;
                match (head[3], head[4] & 1) {
                    (4, 0) => upstream.write_all(&SETTINGS_ACK).await?,
                    (1, _) => upstream.write_all(&GOAWAY).await?,
                    _ => {}
                }
            }
        }

        #[tokio::test]
        async fn a_goaway_from_the_upstream_is_a_reset() {
            let (gateway, upstream) = tokio::io::duplex(64 * 1024);
            tokio::spawn(goaway_upstream(upstream));
            let (mut send, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(gateway))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let sent = send.send_request(post(Empty::<Bytes>::new())).await;
            let err: BoxError = sent.map(drop).expect_err("refused").into();
            let h2 = find_cause::<h2::Error>(&*err).unwrap_or_else(|| panic!("{err:?}"));
            assert!(h2.is_go_away() && h2.is_remote(), "{err}");
            assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Reset));
        }

        #[tokio::test]
        async fn a_connection_lost_under_an_open_h2_stream_is_a_reset() {
            // GOAWAY naming the request's stream, then the connection ends under it.
            let err = h2_failure(post(Empty::<Bytes>::new()), |connection, _| {
                connection.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM)
            })
            .await;
            assert!(find_cause::<std::io::Error>(&*err).is_some(), "{err:?}");
            assert_eq!(classify_attempt_error(&*err), Some(AttemptFailure::Reset));
        }

        #[tokio::test]
        async fn a_request_body_failing_of_its_own_is_unknown_over_h2() {
            // hyper resets the stream itself: nothing the upstream did.
            let err = h2_failure(post(body(vec![Err(Unexpected.into())])), |_, _| {}).await;
            let h2 = find_cause::<h2::Error>(&*err).unwrap();
            assert!(
                h2.is_reset() && !h2.is_remote() && !h2.is_library(),
                "{err:?}"
            );
            assert_eq!(
                classify_attempt_error(&*err),
                Some(AttemptFailure::Unknown),
                "{err}"
            );
        }
    }
}
