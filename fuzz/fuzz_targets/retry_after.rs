//! `Retry-After` parsing (`retry::backoff::parse_retry_after`, RFC 9110 §10.2.3).
//!
//! Invariant: never panics, and never waits longer than the value says: delta-seconds give
//! exactly that many seconds, an HTTP-date the time from `now` to that date (zero when it is
//! past), anything else no wait at all (`None`, the backoff applies). Checked at three clocks:
//! the epoch, a fixed present and the far future.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tango_gateway::fuzzing::parse_retry_after;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let clocks = [
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        UNIX_EPOCH + Duration::from_secs(253_402_300_799), // 9999-12-31T23:59:59Z
    ];
    for now in clocks {
        let wait = parse_retry_after(&value, now);
        let text = value.to_str().ok().map(str::trim);
        let seconds = text.and_then(|t| t.parse::<u64>().ok());
        let date = text.and_then(|t| httpdate::parse_http_date(t).ok());
        match (wait, seconds, date) {
            (Some(wait), Some(seconds), _) => assert_eq!(wait, Duration::from_secs(seconds)),
            (Some(wait), None, Some(date)) => {
                let until = date.duration_since(now).unwrap_or(Duration::ZERO);
                assert!(wait <= until, "{text:?} at {now:?}: {wait:?} > {until:?}");
                assert_eq!(wait, until);
            }
            (Some(wait), None, None) => panic!("{text:?}: waits {wait:?} for no value"),
            (None, None, None) => {}
            (None, _, _) => panic!("{text:?}: a valid Retry-After ignored"),
        }
    }
});
