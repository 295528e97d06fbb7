//! Classifying calls: which failures the contract (PRODUCT.md) allows for the fault a call
//! met, and the per-window and total counts.
//!
//! Invariant: a call that is not a whole 2xx answer is expected only when a window it
//! overlapped (its start to its end, the window stretched by its settle time) allows exactly
//! that outcome for that call's route, kind and replica; everything else is unexpected.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::faults::Actual;
use crate::load::{Call, CallKind, Outcome, Route};
use crate::schedule::{settle, Kind, TOKEN_STILL_USABLE};

/// Whether the contract lets `call` end with its (failed) outcome while `window` runs.
fn allowed(window: &Actual, call: &Call) -> bool {
    let kind = window.kind;
    let (status, code, from_fake, complete) = match &call.outcome {
        Outcome::Answer {
            status,
            gateway_code,
            from_fake,
            complete,
            ..
        } => (*status, gateway_code.as_deref(), *from_fake, *complete),
        // A killed replica refuses connections and drops the ones it had (its callers only).
        Outcome::ConnectError(_) | Outcome::TransportError(_) => {
            return kind == Kind::ReplicaKilled && call.replica == 1
        }
        // The gateway never leaves a caller waiting this long (§6: attempts, backoff and
        // `Retry-After` are all bounded).
        Outcome::ClientTimeout => return false,
    };
    let gateway =
        |expected: &[&str]| !from_fake && complete && code.is_some_and(|c| expected.contains(&c));
    match kind {
        // §6: a reset after sending is retried only when idempotent (GET, POST with
        // externalRefID); a POST without one is answered 502 at once, and retries of the
        // others can run out (max_attempts, the retry budget) and end 502 too.
        Kind::ResetAfterRead => status == 502 && gateway(&["gateway.upstream_unreachable"]),
        // The connection is closed before a byte is read: never reached the upstream, so
        // always retried (§6) — but cut connections also reset requests in flight (as
        // above), and an attempt can run out. A close during the TLS handshake may be
        // reported as a TLS failure (§9: not retried).
        Kind::ResetBeforeRead => {
            status == 502 && gateway(&["gateway.upstream_unreachable", "gateway.upstream_tls"])
        }
        // §6: no headers within `timeout` is a timeout: retried when idempotent, 504 when
        // not (or when attempts run out).
        Kind::Hang => status == 504 && gateway(&["gateway.upstream_timeout"]),
        // §6: retried when idempotent, honouring Retry-After within max_backoff; "the final
        // answer after retries is the last upstream answer", passed through untouched (§4).
        Kind::Storm503RetryAfter => status == 503 && from_fake && complete,
        Kind::Storm429 => status == 429 && from_fake && complete,
        // §9: a body that stalls is ended abruptly after body_timeout (the caller sees a
        // truncated body), never retried.
        Kind::StallBody => from_fake && !complete,
        // §9: TLS failures are 502 upstream_tls, not retried; connections cut to force new
        // handshakes reset requests in flight (502 upstream_unreachable, as above).
        Kind::TlsHandshake => {
            status == 502 && gateway(&["gateway.upstream_tls", "gateway.upstream_unreachable"])
        }
        // Refused connections are connect failures (retried, then 502); requests on the
        // connections that were closed are resets.
        Kind::ListenerGone => status == 502 && gateway(&["gateway.upstream_unreachable"]),
        // §5: the current token is used until it expires; with no usable token (expired
        // while the endpoint failed), 503 credentials_unavailable at once. Not before the
        // token can have expired, and never on the Basic route, which needs no token.
        Kind::TokenDown | Kind::Token5xx | Kind::TokenMalformed | Kind::InvalidClientThenFixed => {
            call.route == Route::Dpop
                && call.end >= window.start + TOKEN_STILL_USABLE
                && status == 503
                && gateway(&["gateway.credentials_unavailable"])
        }
        // Strict windows: slow bodies arrive whole (body_timeout is between chunks); a slow
        // token endpoint delays a background refresh only (§5); Redis going away falls back to
        // memory (§9); reloads and rotations drop no request (§7).
        Kind::SlowBody
        | Kind::TokenSlow
        | Kind::RedisKilledMidRefresh
        | Kind::RedisUnreachable
        | Kind::Sighup
        | Kind::RotateByRename
        | Kind::RotateBySymlinkSwap => false,
        // The killed replica's callers fail at the transport (above), never with an answer.
        Kind::ReplicaKilled => false,
    }
}

/// Counts for one window (or for the whole run).
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) calls: usize,
    pub(crate) ok: usize,
    /// Failed outcomes by label (`gateway 502 upstream_unreachable`, `fake 503`, ...).
    pub(crate) outcomes: BTreeMap<String, usize>,
    pub(crate) unexpected: usize,
}

impl Counts {
    /// A call that started in the window (its failure may belong to another window).
    fn started(&mut self, call: &Call) {
        self.calls += 1;
        if call.ok() {
            self.ok += 1;
        }
    }

    /// A failure attributed to the window.
    fn failed(&mut self, call: &Call, unexpected: bool) {
        *self.outcomes.entry(label(&call.outcome)).or_insert(0) += 1;
        if unexpected {
            self.unexpected += 1;
        }
    }

    fn add(&mut self, call: &Call, unexpected: bool) {
        self.calls += 1;
        if call.ok() {
            self.ok += 1;
            return;
        }
        *self.outcomes.entry(label(&call.outcome)).or_insert(0) += 1;
        if unexpected {
            self.unexpected += 1;
        }
    }

    pub(crate) fn line(&self) -> String {
        let mut line = format!("calls {:5}  2xx {:5}", self.calls, self.ok);
        for (label, n) in &self.outcomes {
            let _ = write!(line, "  {label} x{n}");
        }
        let _ = write!(line, "  unexpected {}", self.unexpected);
        line
    }
}

/// A short label for a failed outcome.
fn label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Answer {
            status,
            gateway_code,
            from_fake,
            complete,
            ..
        } => {
            let by = match (gateway_code, from_fake) {
                (Some(code), _) => code.trim_start_matches("gateway.").to_owned(),
                (None, true) => "tango".to_owned(),
                (None, false) => "unmarked".to_owned(),
            };
            let cut = if *complete { "" } else { " truncated" };
            format!("{status} {by}{cut}")
        }
        Outcome::ConnectError(_) => "connect error".to_owned(),
        Outcome::TransportError(_) => "transport error".to_owned(),
        Outcome::ClientTimeout => "client timeout".to_owned(),
    }
}

/// The classified run.
pub(crate) struct Tally {
    pub(crate) total: Counts,
    /// Per window (in start order): the window and the calls that started in it or in its
    /// settle time.
    pub(crate) windows: Vec<(Actual, Counts)>,
    /// Calls that started outside every window and its settle time.
    pub(crate) clean: Counts,
    /// The unexpected calls, for the report.
    pub(crate) unexpected: Vec<Call>,
}

pub(crate) fn classify(calls: &[Call], windows: &[Actual]) -> Tally {
    let mut windows: Vec<(Actual, Counts)> = windows
        .iter()
        .cloned()
        .map(|w| (w, Counts::default()))
        .collect();
    windows.sort_by_key(|(w, _)| w.start);
    let mut tally = Tally {
        total: Counts::default(),
        windows: Vec::new(),
        clean: Counts::default(),
        unexpected: Vec::new(),
    };
    for call in calls {
        let overlaps = |w: &Actual| call.start <= w.end + settle(w.kind) && w.start <= call.end;
        // A failure belongs to the first window that allows it; an unexpected one to every
        // window it overlapped (or to none: the clean time).
        let excused_by = (!call.ok())
            .then(|| {
                windows
                    .iter()
                    .position(|(w, _)| overlaps(w) && allowed(w, call))
            })
            .flatten();
        let unexpected = !call.ok() && excused_by.is_none();
        tally.total.add(call, unexpected);
        if unexpected {
            tally.unexpected.push(call.clone());
        }
        let mut counted = false;
        for (index, (w, counts)) in windows.iter_mut().enumerate() {
            let started_in = w.start <= call.start && call.start <= w.end;
            if started_in {
                counts.started(call);
            }
            let failed_here = excused_by == Some(index) || (unexpected && overlaps(w));
            if failed_here {
                counts.failed(call, unexpected);
            }
            counted |= started_in || failed_here;
        }
        if !counted {
            tally.clean.add(call, unexpected);
        }
    }
    tally.windows = windows;
    tally
}

/// One line describing an unexpected call.
pub(crate) fn describe(call: &Call) -> String {
    let kind = match call.kind {
        CallKind::Get => "GET",
        CallKind::OrderWithRef => "POST order with externalRefID",
        CallKind::OrderWithoutRef => "POST order without externalRefID",
    };
    let route = match call.route {
        Route::Basic => "basic",
        Route::Dpop => "dpop",
    };
    let detail = match &call.outcome {
        Outcome::Answer { body, .. } => body.clone(),
        Outcome::ConnectError(e) | Outcome::TransportError(e) => e.clone(),
        Outcome::ClientTimeout => String::new(),
    };
    format!(
        "{:7.2}-{:7.2}s replica {} {route} {kind}: {} {detail}",
        secs(call.start),
        secs(call.end),
        call.replica,
        label(&call.outcome)
    )
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
