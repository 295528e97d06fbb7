//! `X-Forwarded-For` rewriting (`headers::forwarded::rewrite`, PRODUCT.md §4.4), every mode.
//!
//! Invariant: after the rewrite the request carries at most one `X-Forwarded-For`; none in
//! `remove` mode; exactly the (canonical) peer in `peer` mode, the configured address in
//! `static` mode; in `append` mode the caller's entries that are addresses (ports and
//! brackets stripped, IPv4-mapped read as IPv4), then the peer, the rightmost 30 kept. Every
//! entry sent is a bare IP in its canonical text: no port, no brackets.
//!
//! Input: line 1 the mode (`remove`, `peer`, `append`, `static <ip>`; anything else picks one
//! by length), line 2 the peer, then one caller `X-Forwarded-For` line per line.
#![no_main]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tango_gateway::fuzzing::{rewrite_forwarded, ForwardedForMode};

const XFF: &str = "x-forwarded-for";

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One caller entry, read independently of the gateway's parser.
fn entry(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|ip| canonical(IpAddr::V6(ip)))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mode_line = lines.next().unwrap_or("").trim();
    let mode = match mode_line {
        "remove" => ForwardedForMode::Remove,
        "peer" => ForwardedForMode::Peer,
        "append" => ForwardedForMode::Append,
        other => match other
            .strip_prefix("static ")
            .map(|ip| ip.trim().parse::<IpAddr>())
        {
            Some(Ok(ip)) => ForwardedForMode::Static(ip),
            _ => match data.len() % 4 {
                0 => ForwardedForMode::Remove,
                1 => ForwardedForMode::Peer,
                2 => ForwardedForMode::Append,
                _ => ForwardedForMode::Static("::ffff:203.0.113.7".parse().unwrap()),
            },
        },
    };
    let peer: IpAddr = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| "10.0.0.9".parse().unwrap());

    let mut headers = HeaderMap::new();
    let mut expected_chain = Vec::new();
    for line in lines {
        let Ok(value) = HeaderValue::from_bytes(line.as_bytes()) else {
            continue;
        };
        if let Ok(visible) = value.to_str() {
            expected_chain.extend(visible.split(',').filter_map(entry));
        }
        headers.append(XFF, value);
    }
    // Obsolete line folding or other bytes the gateway cannot read as text: skipped by both.
    rewrite_forwarded(&mut headers, mode, peer);

    let sent: Vec<&HeaderValue> = headers.get_all(XFF).iter().collect();
    assert!(sent.len() <= 1, "{} X-Forwarded-For lines", sent.len());
    let value = sent.first().map(|v| v.to_str().expect("visible ASCII"));
    let expected = match mode {
        ForwardedForMode::Remove => None,
        ForwardedForMode::Peer => Some(canonical(peer).to_string()),
        ForwardedForMode::Static(ip) => Some(canonical(ip).to_string()),
        ForwardedForMode::Append => {
            expected_chain.push(canonical(peer));
            let keep = expected_chain.len().saturating_sub(30);
            Some(
                expected_chain[keep..]
                    .iter()
                    .map(IpAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        }
    };
    assert_eq!(value, expected.as_deref(), "mode {mode:?}, peer {peer}");
    if let Some(value) = value {
        let entries: Vec<&str> = value.split(", ").collect();
        assert!(!entries.is_empty() && entries.len() <= 30);
        for entry in entries {
            let ip: IpAddr = entry
                .parse()
                .unwrap_or_else(|_| panic!("not a bare IP: {entry:?}"));
            assert_eq!(ip, canonical(ip), "not canonical: {entry:?}");
            assert_eq!(ip.to_string(), entry);
            assert!(!entry.contains('[') && !entry.contains(']'));
        }
    }
});
