//! RFC 3339 UTC timestamps with microseconds (`2026-11-22T11:12:42.660723Z`), the form
//! tracing-subscriber writes, for the JSON log lines.
//!
//! Written here because it is on every access-log line: tracing-subscriber's timer formats
//! the whole date through `core::fmt` each time (about 2,000 instructions a line under
//! callgrind). Here the `YYYY-MM-DDTHH:MM:SS` part is computed once per second per thread
//! and only the microseconds are written per line. The calendar arithmetic is Howard
//! Hinnant's `civil_from_days`, checked against `httpdate`'s independent formatting.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS`.
const PREFIX_LEN: usize = 19;

thread_local! {
    /// The last second formatted on this thread and its prefix.
    static LAST_SECOND: Cell<(u64, [u8; PREFIX_LEN])> = const { Cell::new((u64::MAX, [0; PREFIX_LEN])) };
}

/// Appends the current time.
pub(super) fn push_now(line: &mut String) {
    // Before 1970 only with a broken clock; written as the epoch rather than failing a log line.
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    push(line, since_epoch.as_secs(), since_epoch.subsec_micros());
}

fn push(line: &mut String, seconds: u64, micros: u32) {
    let prefix = LAST_SECOND.with(|last| {
        let (cached_second, cached_prefix) = last.get();
        if cached_second == seconds {
            return cached_prefix;
        }
        let prefix = prefix_of(seconds);
        last.set((seconds, prefix));
        prefix
    });
    // The prefix is ASCII digits and separators by construction.
    line.push_str(std::str::from_utf8(&prefix).unwrap_or("1970-01-01T00:00:00"));
    line.push('.');
    let mut digits = [b'0'; 6];
    let mut rest = micros.min(999_999);
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    line.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
    line.push('Z');
}

fn prefix_of(seconds: u64) -> [u8; PREFIX_LEN] {
    let days = (seconds / 86_400) as i64;
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00";
    put(&mut out[0..4], year.clamp(0, 9999) as u64);
    put(&mut out[5..7], u64::from(month));
    put(&mut out[8..10], u64::from(day));
    put(&mut out[11..13], in_day / 3600);
    put(&mut out[14..16], in_day / 60 % 60);
    put(&mut out[17..19], in_day % 60);
    out
}

/// Writes `value` into `slot` as zero-padded decimal digits.
fn put(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn formatted(seconds: u64, micros: u32) -> String {
        let mut line = String::new();
        push(&mut line, seconds, micros);
        line
    }

    /// The same instant as `httpdate` writes it (`Sun, 22 Nov 2026 11:12:42 GMT`), rewritten
    /// as RFC 3339: an independent implementation of the calendar.
    fn via_httpdate(seconds: u64) -> String {
        let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(seconds));
        let parts: Vec<&str> = text.split([' ', ',']).filter(|p| !p.is_empty()).collect();
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = months
            .iter()
            .position(|m| Some(m) == parts.get(2))
            .unwrap_or(99)
            + 1;
        format!(
            "{}-{:02}-{}T{}",
            parts.get(3).unwrap_or(&""),
            month,
            parts.get(1).unwrap_or(&""),
            parts.get(4).unwrap_or(&"")
        )
    }

    #[test]
    fn known_instants() {
        assert_eq!(formatted(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            formatted(1_795_345_962, 660_723),
            "2026-11-22T11:12:42.660723Z"
        );
        assert_eq!(formatted(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(
            formatted(4_107_542_399, 999_999),
            "2100-02-28T23:59:59.999999Z"
        );
    }

    #[test]
    fn the_cached_second_is_reused_and_replaced() {
        assert_eq!(formatted(86_399, 1), "1970-01-01T23:59:59.000001Z");
        assert_eq!(formatted(86_399, 2), "1970-01-01T23:59:59.000002Z");
        assert_eq!(formatted(86_400, 3), "1970-01-02T00:00:00.000003Z");
    }

    proptest! {
        #[test]
        fn agrees_with_httpdate(seconds in 0u64..253_402_300_799) {
            let ours = formatted(seconds, 0);
            prop_assert_eq!(&ours[..PREFIX_LEN], via_httpdate(seconds));
        }
    }
}
