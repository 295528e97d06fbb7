//! How long to wait before the next attempt.
//!
//! Exponential backoff with "full jitter" (uniform in `[0, ceiling]`), as in AWS's analysis of
//! backoff strategies. Hand-written because it is a few lines and must combine with
//! `Retry-After` and the route deadline; `backon` and tower's `ExponentialBackoff` offer only
//! proportional jitter and hide the ceiling.

use std::time::{Duration, SystemTime};

use http::HeaderValue;
use rand::Rng;

use crate::config::{Jitter, RetryConfig};

/// The largest wait before retry number `retry` (1 = the first retry):
/// `initial_backoff * multiplier^(retry-1)`, capped at `max_backoff`.
pub(crate) fn ceiling(config: &RetryConfig, retry: u32) -> Duration {
    let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
    let factor = config.multiplier.powi(exponent);
    let seconds = config.initial_backoff.as_secs_f64() * factor;
    if !seconds.is_finite() || seconds >= config.max_backoff.as_secs_f64() {
        config.max_backoff
    } else {
        Duration::from_secs_f64(seconds.max(0.0))
    }
}

/// The wait before retry number `retry`, jittered as configured.
pub(crate) fn delay(config: &RetryConfig, retry: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = ceiling(config, retry);
    match config.jitter {
        Jitter::None => ceiling,
        Jitter::Full => ceiling.mul_f64(rng.random::<f64>()),
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date (a date in the past means now).
pub(crate) fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn config() -> RetryConfig {
        RetryConfig::default()
    }

    #[test]
    fn ceiling_grows_then_caps() {
        let config = config();
        assert_eq!(ceiling(&config, 1), Duration::from_millis(250));
        assert_eq!(ceiling(&config, 2), Duration::from_millis(500));
        assert_eq!(ceiling(&config, 3), Duration::from_secs(1));
        assert_eq!(ceiling(&config, 6), Duration::from_secs(5));
        assert_eq!(ceiling(&config, u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn no_jitter_waits_the_ceiling() {
        let config = RetryConfig {
            jitter: Jitter::None,
            ..config()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(delay(&config, 2, &mut rng), Duration::from_millis(500));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let header = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            parse_retry_after(&header("3"), now),
            Some(Duration::from_secs(3))
        );
        let in_ten = httpdate::fmt_http_date(now + Duration::from_secs(10));
        let value = HeaderValue::from_str(&in_ten).unwrap_or(header("x"));
        assert_eq!(
            parse_retry_after(&value, now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after(&header("Wed, 21 Oct 2015 07:28:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&header("soon"), now), None);
        assert_eq!(parse_retry_after(&header("-1"), now), None);
    }

    proptest! {
        #[test]
        fn full_jitter_stays_within_the_ceiling(retry in 1u32..50, seed in any::<u64>()) {
            let config = config();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let wait = delay(&config, retry, &mut rng);
            prop_assert!(wait <= ceiling(&config, retry));
            prop_assert!(wait <= config.max_backoff);
        }
    }
}
