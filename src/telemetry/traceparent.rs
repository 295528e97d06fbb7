//! The trace id of a W3C `traceparent` header (Trace Context, level 1, §3.2), for the access
//! log's `trace_id`: reading it is all the log needs, so it is read here by hand rather than
//! through a propagator that would build a whole span context per request.
//!
//! `traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`: version, trace id
//! (32 lowercase hex digits, not all zero), parent id (16, not all zero), flags (2). Version
//! `ff` is invalid; a later version may append fields after a `-`, version `00` may not.

/// The trace id of `traceparent`, or `None` when the value is not a valid one (then the
/// caller's trace is not continued and the log says `-`).
pub fn trace_id(traceparent: &[u8]) -> Option<&str> {
    const LEN_00: usize = 55;
    if traceparent.len() < LEN_00 {
        return None;
    }
    let (version, rest) = traceparent.split_at(2);
    let fields = &rest[..LEN_00 - 2];
    let tail = &rest[LEN_00 - 2..];
    let well_formed = is_hex(version)
        && version != b"ff"
        && fields[0] == b'-'
        && fields[33] == b'-'
        && fields[50] == b'-'
        && is_hex(&fields[1..33])
        && is_hex(&fields[34..50])
        && is_hex(&fields[51..53])
        && !all_zero(&fields[1..33])
        && !all_zero(&fields[34..50]);
    let tail_allowed = match version {
        b"00" => tail.is_empty(),
        _ => tail.is_empty() || tail[0] == b'-',
    };
    if !(well_formed && tail_allowed) {
        return None;
    }
    std::str::from_utf8(&fields[1..33]).ok()
}

fn is_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_gives_its_trace_id() {
        assert_eq!(
            trace_id(VALID.as_bytes()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
    }

    #[test]
    fn malformed_values_give_none() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_later_version_may_append_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(
            trace_id(later.as_bytes()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        let glued = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(trace_id(glued.as_bytes()), None);
    }

    proptest! {
        #[test]
        fn any_bytes_give_none_or_32_lowercase_hex_digits(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(id) = trace_id(&bytes) {
                prop_assert_eq!(id.len(), 32);
                prop_assert!(is_hex(id.as_bytes()));
            }
        }

        #[test]
        fn every_well_formed_value_gives_its_trace_id(
            trace in "[0-9a-f]{31}[1-9a-f]",
            parent in "[1-9a-f][0-9a-f]{15}",
            flags in "[0-9a-f]{2}",
        ) {
            let value = format!("00-{trace}-{parent}-{flags}");
            prop_assert_eq!(trace_id(value.as_bytes()), Some(trace.as_str()));
        }
    }
}
