//! `X-Forwarded-For` as Tango's AWS ALB accepts it (PRODUCT.md §4.4).
//!
//! Invariant: the value sent upstream is absent or a comma-separated list of bare IP addresses
//! (IPv6 without brackets), with no port anywhere; the ALB answers 403 to `ip:port` entries.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue};

use super::X_FORWARDED_FOR;
use crate::config::ForwardedForMode;

/// The AWS ALB keeps at most this many `X-Forwarded-For` entries.
pub(crate) const MAX_ENTRIES: usize = 30;

/// Rewrites `X-Forwarded-For` in place for the given mode and inbound peer.
pub(crate) fn rewrite(headers: &mut HeaderMap, mode: ForwardedForMode, peer: IpAddr) {
    let value = match mode {
        ForwardedForMode::Remove => None,
        ForwardedForMode::Peer => single(canonical(peer)),
        ForwardedForMode::Static(ip) => single(canonical(ip)),
        ForwardedForMode::Append => {
            let mut chain = parse_chain(headers.get_all(X_FORWARDED_FOR).iter());
            chain.push(canonical(peer));
            let keep_from = chain.len().saturating_sub(MAX_ENTRIES);
            HeaderValue::from_str(&join(&chain[keep_from..])).ok()
        }
    };
    // `insert` replaces every caller line. A list of formatted IP addresses is always a
    // valid header value; the `None` arm of a failed format only keeps the code free of a
    // panic path, and drops the header like `Remove`.
    match value {
        Some(value) => {
            headers.insert(X_FORWARDED_FOR, value);
        }
        None => {
            headers.remove(X_FORWARDED_FOR);
        }
    }
}

/// One address as a header value, formatted on the stack: the header value's own copy is
/// the only allocation (this runs on every request).
fn single(ip: IpAddr) -> Option<HeaderValue> {
    use std::io::Write;
    // The longest IPv6 text form is 45 bytes (`ffff:…:255.255.255.255`).
    let mut buffer = [0u8; 45];
    let written = {
        let mut free = &mut buffer[..];
        write!(free, "{ip}").ok()?;
        45 - free.len()
    };
    HeaderValue::from_bytes(&buffer[..written]).ok()
}

/// Reads every `X-Forwarded-For` line in order as one list, keeping only the entries that
/// are IP addresses once a port and/or brackets are stripped.
pub(crate) fn parse_chain<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Vec<IpAddr> {
    values
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','))
        .filter_map(parse_entry)
        .collect()
}

/// One entry: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`.
pub(crate) fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    let unbracketed = entry.strip_prefix('[')?.strip_suffix(']')?;
    unbracketed
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| canonical(IpAddr::V6(ip)))
}

/// IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`, seen on dual-stack listeners) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn join(chain: &[IpAddr]) -> String {
    chain
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn xff_after(mode: ForwardedForMode, lines: &[&str], peer: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        for line in lines {
            if let Ok(value) = HeaderValue::from_str(line) {
                headers.append(X_FORWARDED_FOR, value);
            }
        }
        let peer: IpAddr = peer.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
        rewrite(&mut headers, mode, peer);
        assert!(headers.get_all(X_FORWARDED_FOR).iter().count() <= 1);
        headers
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[test]
    fn a_single_address_of_any_length_is_written_whole() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db8::1",
        ] {
            let parsed: IpAddr = ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let written = single(parsed);
            assert_eq!(written.as_ref().and_then(|v| v.to_str().ok()), Some(ip));
        }
    }

    #[test]
    fn peer_mode_ignores_the_callers_chain() {
        let value = xff_after(ForwardedForMode::Peer, &["203.0.113.42:54321"], "10.1.2.3");
        assert_eq!(value.as_deref(), Some("10.1.2.3"));
    }

    #[test]
    fn append_strips_ports_and_brackets() {
        let value = xff_after(
            ForwardedForMode::Append,
            &[
                "203.0.113.42:54321, [2001:db8::1]:443",
                "[2001:db8::2], junk, 198.51.100.7",
            ],
            "10.0.0.9",
        );
        assert_eq!(
            value.as_deref(),
            Some("203.0.113.42, 2001:db8::1, 2001:db8::2, 198.51.100.7, 10.0.0.9")
        );
    }

    #[test]
    fn append_keeps_the_rightmost_thirty() {
        let long: Vec<String> = (0..40).map(|i| format!("10.0.0.{i}")).collect();
        let line = long.join(",");
        let value = xff_after(ForwardedForMode::Append, &[&line], "192.0.2.1").unwrap_or_default();
        let entries: Vec<&str> = value.split(", ").collect();
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert_eq!(entries.first().copied(), Some("10.0.0.11"));
        assert_eq!(entries.last().copied(), Some("192.0.2.1"));
    }

    #[test]
    fn static_and_remove() {
        let static_ip =
            ForwardedForMode::Static("203.0.113.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(
            xff_after(static_ip, &["1.1.1.1:1"], "10.0.0.1").as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            xff_after(ForwardedForMode::Remove, &["1.1.1.1"], "10.0.0.1"),
            None
        );
    }

    #[test]
    fn mapped_ipv4_peer_is_written_as_ipv4() {
        assert_eq!(
            xff_after(ForwardedForMode::Peer, &[], "::ffff:10.0.0.5").as_deref(),
            Some("10.0.0.5")
        );
    }

    fn any_mode() -> impl Strategy<Value = ForwardedForMode> {
        prop_oneof![
            Just(ForwardedForMode::Peer),
            Just(ForwardedForMode::Append),
            Just(ForwardedForMode::Remove),
            any::<std::net::Ipv6Addr>().prop_map(|ip| ForwardedForMode::Static(IpAddr::V6(ip))),
        ]
    }

    /// Entries a caller might send: real addresses with and without ports and brackets, and
    /// arbitrary junk.
    fn any_entry() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
            (any::<std::net::Ipv4Addr>(), any::<u16>()).prop_map(|(ip, p)| format!("{ip}:{p}")),
            any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
            any::<std::net::Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
            (any::<std::net::Ipv6Addr>(), any::<u16>()).prop_map(|(ip, p)| format!("[{ip}]:{p}")),
            "[ -~]{0,40}",
        ]
    }

    proptest! {
        #[test]
        fn value_sent_is_absent_or_bare_ips(
            mode in any_mode(),
            lines in proptest::collection::vec(proptest::collection::vec(any_entry(), 0..8), 0..4),
            peer in any::<IpAddr>(),
        ) {
            let mut headers = HeaderMap::new();
            for line in &lines {
                if let Ok(value) = HeaderValue::from_str(&line.join(",")) {
                    headers.append(X_FORWARDED_FOR, value);
                }
            }
            rewrite(&mut headers, mode, peer);
            let sent: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
            prop_assert!(sent.len() <= 1);
            if let Some(value) = sent.first() {
                let text = value.to_str().map_err(|e| TestCaseError::fail(e.to_string()))?;
                let entries: Vec<&str> = text.split(", ").collect();
                prop_assert!(!entries.is_empty() && entries.len() <= MAX_ENTRIES);
                for entry in entries {
                    // Bare IP only: parses as an address, no brackets, and no IPv4 port.
                    prop_assert!(entry.parse::<IpAddr>().is_ok(), "not a bare IP: {entry:?}");
                    prop_assert!(!entry.contains('[') && !entry.contains(']'));
                }
            }
            if mode == ForwardedForMode::Remove {
                prop_assert!(sent.is_empty());
            }
        }

        #[test]
        fn parse_entry_never_panics_and_yields_canonical_ips(entry in "\\PC{0,60}") {
            if let Some(ip) = parse_entry(&entry) {
                prop_assert_eq!(ip, ip.to_canonical());
            }
        }
    }
}
