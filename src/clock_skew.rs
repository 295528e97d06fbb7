//! Clock skew (§11): how far each upstream's and token endpoint's clock is from ours, read
//! from the `Date` header of their answers and kept per origin (`scheme://host:port`).
//!
//! Invariants: an answer costs a header lookup and a relaxed load and compare of its `Date`
//! against the last value read; parsing it, reading our clock, setting the gauge and logging
//! happen once per new `Date` value, so at most once a second per origin (a `Date` has 1 s
//! resolution); the warn line is written once per crossing of [`WARN_SKEW_MS`], never per
//! answer; an origin no answer has come from has no offset (not zero).
//!
//! What an offset is worth: a `Date` is the server's time truncated to the second, and it
//! reaches us one network trip after it was written. The offset is taken from the middle of
//! that second, so it is within ±0.5 s plus the answer's latency of the truth (and reads low
//! by the latency): an offset under [`NOISE_MS`] (about 2 s) says nothing about the clocks.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::header::DATE;
use http::{HeaderMap, Uri};

use crate::config::{AuthConfig, Config};
use crate::metrics::{metrics, OriginLabels};

/// Past this offset (either way) a warn line is logged and `/readyz` lists a warning: Tango
/// refuses DPoP proofs whose `iat` is more than 60 s from its clock, so half of that leaves
/// room to act before proofs fail.
pub(crate) const WARN_SKEW_MS: i64 = 30_000;
/// What a `Date`'s resolution and an answer's latency can account for: offsets smaller than
/// this are noise, and a proof whose offset differs from the latest by less is not resent.
pub(crate) const NOISE_MS: i64 = 2_000;
/// `offset_ms` before the first `Date` has been read.
const UNKNOWN: i64 = i64::MIN;

/// The clock of one origin as its answers tell it.
#[derive(Debug)]
pub(crate) struct OriginClock {
    origin: String,
    /// Fingerprint of the last `Date` value read ([`date_key`]); 0: none yet.
    last_date: AtomicU64,
    /// Server minus local, in milliseconds, or [`UNKNOWN`].
    offset_ms: AtomicI64,
    /// Whether |offset| is past [`WARN_SKEW_MS`]: what a crossing is detected against.
    skewed: AtomicBool,
}

impl OriginClock {
    fn new(origin: String) -> Self {
        OriginClock {
            origin,
            last_date: AtomicU64::new(0),
            offset_ms: AtomicI64::new(UNKNOWN),
            skewed: AtomicBool::new(false),
        }
    }

    /// Reads the `Date` of an answer from this origin. The usual answer repeats the `Date`
    /// already read (same second): a header lookup and a relaxed compare, nothing else.
    pub(crate) fn observe(&self, headers: &HeaderMap) {
        let Some(date) = headers.get(DATE) else {
            return;
        };
        let date = date.as_bytes();
        let key = date_key(date);
        // Of answers racing with the same new `Date`, one reads it (the swap's winner).
        if self.last_date.load(Ordering::Relaxed) == key
            || self.last_date.swap(key, Ordering::Relaxed) == key
        {
            return;
        }
        self.record(date, SystemTime::now());
    }

    /// Takes a new offset from `date` read at `local`: stored, gauged, and logged when it
    /// crosses [`WARN_SKEW_MS`]. `None` (and nothing changed) when `date` is not an HTTP-date.
    fn record(&self, date: &[u8], local: SystemTime) -> Option<i64> {
        let server = std::str::from_utf8(date)
            .ok()
            .and_then(|d| httpdate::parse_http_date(d.trim()).ok())?;
        // The server wrote `Date` somewhere in that second: take its middle.
        let offset = unix_ms(server)
            .saturating_add(500)
            .saturating_sub(unix_ms(local));
        self.offset_ms.store(offset, Ordering::Relaxed);
        metrics()
            .clock_skew
            .get_or_create(&OriginLabels {
                origin: self.origin.clone(),
            })
            .set(seconds(offset));
        let skewed = offset.saturating_abs() > WARN_SKEW_MS;
        if self.skewed.swap(skewed, Ordering::Relaxed) != skewed {
            if skewed {
                tracing::warn!(
                    origin = %self.origin,
                    offset_seconds = seconds(offset),
                    "this server's clock is more than 30 s from the gateway's (its Date \
                     headers): DPoP proofs are refused past 60 s; sync both clocks (NTP), \
                     or set dpop.clock: server"
                );
            } else {
                tracing::info!(
                    origin = %self.origin,
                    offset_seconds = seconds(offset),
                    "this server's clock is back within 30 s of the gateway's"
                );
            }
        }
        Some(offset)
    }

    /// Server minus local in milliseconds, once an answer has told it.
    pub(crate) fn offset_ms(&self) -> Option<i64> {
        Some(self.offset_ms.load(Ordering::Relaxed)).filter(|o| *o != UNKNOWN)
    }

    /// `local` moved by the measured offset (unchanged while none is known), and the offset
    /// applied, for [`Self::moved_since`].
    pub(crate) fn server_time(&self, local: SystemTime) -> (SystemTime, i64) {
        let offset = self.offset_ms().unwrap_or(0);
        let magnitude = Duration::from_millis(offset.unsigned_abs());
        let moved = if offset >= 0 {
            local.checked_add(magnitude)
        } else {
            local.checked_sub(magnitude)
        };
        (moved.unwrap_or(local), offset)
    }

    /// True when the offset now known differs from `applied` by more than the noise: a proof
    /// signed with `applied` that was refused may pass when signed again.
    pub(crate) fn moved_since(&self, applied: i64) -> bool {
        self.offset_ms()
            .is_some_and(|now| now.saturating_sub(applied).saturating_abs() > NOISE_MS)
    }
}

/// A fingerprint of a `Date` value that changes every second: the time of day of an
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, bytes 17..25), read as one integer; any
/// other form (obsolete, or not a date) is hashed whole. Never 0, the "none yet" value.
fn date_key(date: &[u8]) -> u64 {
    let key = match date.get(17..25).and_then(|t| <[u8; 8]>::try_from(t).ok()) {
        Some(time) if date.len() == 29 => u64::from_le_bytes(time),
        // FNV-1a.
        _ => date.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        }),
    };
    key.max(1)
}

fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

#[allow(clippy::cast_precision_loss)]
fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `scheme://host:port` of an absolute URI, the port written out even when it is the
/// scheme's default.
pub(crate) fn origin(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let port = authority
        .port_u16()
        .unwrap_or(if scheme == "http" { 80 } else { 443 });
    Some(format!("{scheme}://{}:{port}", authority.host()))
}

/// Every origin's clock, process-wide: offsets survive reloads, and the token client and the
/// routes of an origin share one.
#[derive(Debug, Default)]
pub(crate) struct ServerClocks {
    /// Read lock-free (a DPoP route with `dpop.clock: server` looks its origin up per
    /// attempt); written when a configuration is built.
    by_origin: ArcSwap<HashMap<String, Arc<OriginClock>>>,
    writer: Mutex<()>,
}

/// The process's clocks.
pub(crate) fn clocks() -> &'static ServerClocks {
    static CLOCKS: OnceLock<ServerClocks> = OnceLock::new();
    CLOCKS.get_or_init(ServerClocks::default)
}

impl ServerClocks {
    /// The clock of `uri`'s origin, made if it is new. `None` for a relative URI (never a
    /// validated upstream or token URL).
    pub(crate) fn register(&self, uri: &Uri) -> Option<Arc<OriginClock>> {
        let origin = origin(uri)?;
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.by_origin.load_full();
        if let Some(clock) = current.get(&origin) {
            return Some(clock.clone());
        }
        let clock = Arc::new(OriginClock::new(origin.clone()));
        let mut map = HashMap::clone(&current);
        map.insert(origin, clock.clone());
        self.by_origin.store(Arc::new(map));
        Some(clock)
    }

    /// The clock of `uri`'s origin, if one was registered.
    pub(crate) fn get(&self, uri: &Uri) -> Option<Arc<OriginClock>> {
        self.by_origin.load().get(&origin(uri)?).cloned()
    }

    /// `/readyz` warnings (it stays 200): each origin of `config` whose clock is past
    /// [`WARN_SKEW_MS`] from ours.
    pub(crate) fn readiness_warnings(&self, config: &Config) -> Vec<String> {
        let mut uris: Vec<&Uri> = Vec::new();
        for route in &config.routes {
            uris.push(route.upstream.url.uri());
            if let AuthConfig::OAuth2(oauth) = &route.auth {
                uris.push(&oauth.token_url);
            }
        }
        let origins: BTreeSet<String> = uris.into_iter().filter_map(origin).collect();
        let map = self.by_origin.load();
        origins
            .iter()
            .filter_map(|o| map.get(o))
            .filter_map(|clock| {
                let offset = clock.offset_ms()?;
                (offset.saturating_abs() > WARN_SKEW_MS).then(|| {
                    format!(
                        "clock skew: {} is {:+.0} s from this host's clock (DPoP proofs are \
                         refused past 60 s; sync the clocks, or set dpop.clock: server)",
                        clock.origin,
                        seconds(offset)
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn clock(name: &str) -> OriginClock {
        OriginClock::new(format!("https://{name}.clock-skew.test:443"))
    }

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn date(unix: u64) -> Vec<u8> {
        httpdate::fmt_http_date(at(unix)).into_bytes()
    }

    fn gauge(origin: &str) -> Option<f64> {
        metrics()
            .encode()
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!(
                    "tango_gateway_clock_skew_seconds{{origin=\"{origin}\"}} "
                ))
                .map(str::to_owned)
            })
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn every_http_date_form_is_read() {
        let clock = clock("forms");
        let local = at(784_111_777);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(clock.record(form.as_bytes(), local), Some(500), "{form}");
        }
        for garbage in ["", "yesterday", "Sun, 06 Nov 1994 25:49:37 GMT", "\u{ff}"] {
            assert_eq!(clock.record(garbage.as_bytes(), local), None, "{garbage}");
        }
        // A Date that cannot be read leaves the last offset in place.
        assert_eq!(clock.offset_ms(), Some(500));
    }

    #[test]
    fn the_offset_is_server_minus_local_from_the_middle_of_the_second() {
        let clock = clock("sign");
        assert_eq!(clock.offset_ms(), None);
        assert_eq!(clock.server_time(at(1_000)), (at(1_000), 0));
        // The server is 90 s ahead: its Date reads 90 s later than our clock.
        assert_eq!(clock.record(&date(1_090), at(1_000)), Some(90_500));
        assert_eq!(
            clock.server_time(at(2_000)),
            (at(2_090) + Duration::from_millis(500), 90_500)
        );
        // Behind.
        assert_eq!(clock.record(&date(1_000), at(1_090)), Some(-89_500));
        assert_eq!(
            clock.server_time(at(2_000)).0,
            at(1_910) + Duration::from_millis(500)
        );
        // In step: only the half second of the Date's resolution.
        assert_eq!(clock.record(&date(5_000), at(5_000)), Some(500));
        assert_eq!(gauge(&clock.origin), Some(0.5));
    }

    #[test]
    fn the_gauge_follows_each_new_offset() {
        let clock = clock("gauge");
        assert_eq!(gauge(&clock.origin), None, "no series before an answer");
        clock.record(&date(1_090), at(1_000));
        assert_eq!(gauge(&clock.origin), Some(90.5));
        clock.record(&date(1_000), at(1_120));
        assert_eq!(gauge(&clock.origin), Some(-119.5));
    }

    #[test]
    fn a_repeated_date_is_not_read_again() {
        let clock = clock("rate");
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut headers = HeaderMap::new();
        headers.insert(
            DATE,
            HeaderValue::from_str(&httpdate::fmt_http_date(at(secs + 100))).unwrap(),
        );
        clock.observe(&headers);
        let first = clock.offset_ms().unwrap();
        assert!((98_000..=101_000).contains(&first), "{first}");
        // Same Date again: not parsed (a planted offset stays untouched).
        clock.offset_ms.store(7, Ordering::Relaxed);
        for _ in 0..1000 {
            clock.observe(&headers);
        }
        assert_eq!(clock.offset_ms(), Some(7));
        // The next second's Date is read.
        headers.insert(
            DATE,
            HeaderValue::from_str(&httpdate::fmt_http_date(at(secs + 101))).unwrap(),
        );
        clock.observe(&headers);
        assert_ne!(clock.offset_ms(), Some(7));
        // No Date, or an unreadable one, changes nothing.
        let before = clock.offset_ms();
        clock.observe(&HeaderMap::new());
        headers.insert(DATE, HeaderValue::from_static("not a date"));
        clock.observe(&headers);
        assert_eq!(clock.offset_ms(), before);
    }

    #[test]
    fn date_keys_change_every_second_and_are_never_zero() {
        let keys: BTreeSet<u64> = (0..86_400).map(|s| date_key(&date(s))).collect();
        assert_eq!(keys.len(), 86_400);
        assert!(!keys.contains(&0));
        assert_ne!(date_key(b"a"), date_key(b"b"));
        assert_ne!(date_key(b""), 0);
    }

    #[test]
    fn the_threshold_is_crossed_once_each_way() {
        let clock = clock("crossing");
        let crossings = |clock: &OriginClock, offsets: &[i64]| {
            offsets
                .iter()
                .filter(|offset| {
                    let before = clock.skewed.load(Ordering::Relaxed);
                    let server = 10_000 + u64::try_from(1_000 + **offset).unwrap();
                    clock.record(&date(server), at(11_000));
                    clock.skewed.load(Ordering::Relaxed) != before
                })
                .count()
        };
        // Within, within, past, past, past: one crossing.
        assert_eq!(crossings(&clock, &[0, 29, 31, 90, 45]), 1);
        assert!(clock.skewed.load(Ordering::Relaxed));
        // Back, then back and forth.
        assert_eq!(crossings(&clock, &[1, 2, -40, -40, 0]), 3);
        // 29 s (29.5 with the half second) is within.
        assert_eq!(crossings(&clock, &[29]), 0);
        assert!(!clock.skewed.load(Ordering::Relaxed));
    }

    #[test]
    fn a_proof_is_signed_again_only_when_the_offset_moved_past_the_noise() {
        let clock = clock("moved");
        assert!(!clock.moved_since(0), "nothing known: nothing moved");
        clock.record(&date(1_001), at(1_000));
        assert!(!clock.moved_since(0));
        clock.record(&date(1_090), at(1_000));
        assert!(clock.moved_since(0));
        assert!(!clock.moved_since(90_000));
        assert!(clock.moved_since(-90_000));
    }

    #[test]
    fn origins_spell_out_the_port() {
        let origin_of = |s: &str| origin(&s.parse::<Uri>().unwrap());
        assert_eq!(
            origin_of("https://api.tangocard.com/raas/v2?x=1").as_deref(),
            Some("https://api.tangocard.com:443")
        );
        assert_eq!(
            origin_of("http://localhost:8080/oauth/token").as_deref(),
            Some("http://localhost:8080")
        );
        assert_eq!(
            origin_of("http://localhost/").as_deref(),
            Some("http://localhost:80")
        );
        assert_eq!(origin_of("/relative"), None);
    }

    #[test]
    fn the_registry_gives_one_clock_per_origin() {
        let clocks = ServerClocks::default();
        let a: Uri = "https://registry.clock-skew.test/oauth/token"
            .parse()
            .unwrap();
        let b: Uri = "https://registry.clock-skew.test:443/raas/v2"
            .parse()
            .unwrap();
        let c: Uri = "https://other.clock-skew.test/".parse().unwrap();
        let first = clocks.register(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &clocks.register(&b).unwrap()));
        assert!(Arc::ptr_eq(&first, &clocks.get(&b).unwrap()));
        assert!(clocks.get(&c).is_none());
        assert!(clocks.register(&"/x".parse().unwrap()).is_none());
    }
}
