//! Human durations (`250ms`, `15s`, `5m`) as written in the config file.
//!
//! Invariant: a bare number is refused (the unit is never guessed).

use std::time::Duration;

/// Parses a humantime duration; the message never repeats the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration: write e.g. 250ms, 15s or 5m".into());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err("duration needs a unit, e.g. 250ms, 15s or 5m".into());
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("not a duration ({e}): write e.g. 250ms, 15s or 5m"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn common_forms() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration(" 5m ").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("fast").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn millis_round_trip(ms in 0u64..10_000_000) {
            prop_assert_eq!(parse_duration(&format!("{ms}ms")).unwrap(), Duration::from_millis(ms));
        }

        #[test]
        fn bare_numbers_refused(n in 0u64..u64::MAX) {
            prop_assert!(parse_duration(&n.to_string()).is_err());
        }
    }
}
