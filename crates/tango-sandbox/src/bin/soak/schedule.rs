//! The fault schedule: which fault runs when, proportional to the run's duration, and what
//! the contract (PRODUCT.md) lets a call that meets each fault end with.
//!
//! Invariant: every fault class appears at least once per cycle, and one cycle fits in a
//! 60 s run; longer runs repeat the cycle (stretched to fill the duration evenly), so an hour
//! meets every fault dozens of times.

use std::time::Duration;

/// One fault class. The windows of one kind never overlap each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    // Upstream (both fakes, API requests).
    ResetAfterRead,
    ResetBeforeRead,
    Hang,
    Storm503RetryAfter,
    Storm429,
    SlowBody,
    StallBody,
    TlsHandshake,
    ListenerGone,
    // The token endpoint (the DPoP fake).
    TokenDown,
    TokenSlow,
    Token5xx,
    TokenMalformed,
    InvalidClientThenFixed,
    // Redis.
    RedisKilledMidRefresh,
    RedisUnreachable,
    // The gateway.
    Sighup,
    RotateByRename,
    RotateBySymlinkSwap,
    ReplicaKilled,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::ResetAfterRead => "upstream reset after reading",
            Kind::ResetBeforeRead => "upstream reset before reading",
            Kind::Hang => "upstream hang > timeout",
            Kind::Storm503RetryAfter => "503 storm, Retry-After",
            Kind::Storm429 => "429 storm, no Retry-After",
            Kind::SlowBody => "slow response bodies",
            Kind::StallBody => "stalled response bodies",
            Kind::TlsHandshake => "TLS handshake failures",
            Kind::ListenerGone => "listener gone and back",
            Kind::TokenDown => "token endpoint down",
            Kind::TokenSlow => "token endpoint slow",
            Kind::Token5xx => "token endpoint 5xx",
            Kind::TokenMalformed => "token endpoint malformed 200",
            Kind::InvalidClientThenFixed => "invalid_client, then fixed",
            Kind::RedisKilledMidRefresh => "redis killed mid-refresh, restarted",
            Kind::RedisUnreachable => "redis unreachable (SIGSTOP)",
            Kind::Sighup => "SIGHUP reload",
            Kind::RotateByRename => "secrets rotated by rename",
            Kind::RotateBySymlinkSwap => "secrets rotated by ..data swap",
            Kind::ReplicaKilled => "replica 1 SIGKILLed, restarted",
        }
    }
}

/// A planned window: `kind` from `start` to `end` after the soak began.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned {
    pub(crate) kind: Kind,
    pub(crate) start: Duration,
    pub(crate) end: Duration,
}

/// One 60 s cycle, in seconds. Four tracks run side by side: upstream faults (both routes),
/// token-endpoint faults (they only touch background refreshes, so they overlap the
/// upstream ones; a token window is 6 s, one refresh period, so a refresh always meets it,
/// with room after each for the DPoP route to get a token back), Redis, and the gateway
/// itself (strict windows: every call must succeed, bar the replica that is killed); a
/// clean stretch opens and closes the cycle.
const CYCLE: [(Kind, f64, f64); 20] = [
    (Kind::ResetAfterRead, 4.0, 7.0),
    (Kind::ResetBeforeRead, 8.5, 11.5),
    (Kind::Hang, 13.0, 16.0),
    (Kind::Storm503RetryAfter, 17.5, 20.5),
    (Kind::Storm429, 22.0, 25.0),
    (Kind::SlowBody, 26.5, 29.5),
    (Kind::StallBody, 31.0, 34.0),
    (Kind::TlsHandshake, 35.5, 38.5),
    (Kind::ListenerGone, 40.0, 42.5),
    (Kind::InvalidClientThenFixed, 4.0, 12.0),
    (Kind::TokenDown, 13.0, 19.0),
    (Kind::Token5xx, 20.0, 26.0),
    (Kind::TokenSlow, 26.5, 32.5),
    (Kind::TokenMalformed, 33.0, 39.0),
    (Kind::RedisKilledMidRefresh, 43.5, 53.0),
    (Kind::RedisUnreachable, 53.0, 58.5),
    (Kind::Sighup, 44.0, 45.5),
    (Kind::RotateByRename, 46.0, 50.5),
    (Kind::RotateBySymlinkSwap, 51.0, 55.0),
    (Kind::ReplicaKilled, 55.5, 58.5),
];

/// The length of one cycle at scale 1.
const CYCLE_SECS: f64 = 60.0;

/// Windows for a run of `duration`: whole cycles, each stretched to `duration / cycles`.
pub(crate) fn plan(duration: Duration) -> Vec<Planned> {
    let total = duration.as_secs_f64().max(CYCLE_SECS);
    let cycles = (total / CYCLE_SECS).floor().max(1.0);
    let length = total / cycles;
    let scale = length / CYCLE_SECS;
    let mut windows = Vec::new();
    for cycle in 0..cycles as u32 {
        let offset = f64::from(cycle) * length;
        for (kind, start, end) in CYCLE {
            windows.push(Planned {
                kind,
                start: Duration::from_secs_f64(offset + start * scale),
                end: Duration::from_secs_f64(offset + end * scale),
            });
        }
    }
    windows.sort_by_key(|w| w.start);
    windows
}

/// How long into a token-endpoint window the token in use is certainly still usable: a
/// token lives 12 s and counts as expired 1.2 s early (§9: min(30 s, 10%)), and it was at
/// most one refresh period (6 s) old when the window began (the refresh before it
/// succeeded); 0.5 s of margin for the refresh's own round trip. Before this, a
/// `credentials_unavailable` means the gateway gave up a usable token.
pub(crate) const TOKEN_STILL_USABLE: Duration = Duration::from_millis(4300);

/// How long after a window ends its effects may still be seen: a call may have started
/// inside it, or met a connection pool or a token state it left behind.
pub(crate) fn settle(kind: Kind) -> Duration {
    match kind {
        // A token that expired while the endpoint failed is replaced at the refresh loop's
        // next try, which §5 lets back off (with jitter) while failures last: after one or
        // two failing windows in a row the next try can be 8 s or more away.
        Kind::TokenDown | Kind::Token5xx | Kind::TokenMalformed | Kind::InvalidClientThenFixed => {
            Duration::from_secs(10)
        }
        _ => Duration::from_millis(1500),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_holds_one_cycle_and_an_hour_sixty() {
        assert_eq!(plan(Duration::from_secs(60)).len(), CYCLE.len());
        assert_eq!(plan(Duration::from_secs(3600)).len(), 60 * CYCLE.len());
        let last = plan(Duration::from_secs(90));
        assert!(last
            .iter()
            .all(|w| w.end <= Duration::from_secs(90) && w.start < w.end));
    }

    #[test]
    fn windows_of_one_kind_never_overlap() {
        for (i, (kind, start, end)) in CYCLE.iter().enumerate() {
            assert!(start < end, "{kind:?}");
            for (other, s, e) in &CYCLE[i + 1..] {
                assert!(kind != other || e <= start || end <= s, "{kind:?}");
            }
        }
    }
}
