//! Route selection (`inbound::route::RouteTable::select`, PRODUCT.md §9) over a fixed table
//! (`tango_gateway::fuzzing::ROUTES`), after path normalisation.
//!
//! Invariant: the route chosen for a normalised path is the one a reference reading of §9
//! chooses: among the routes whose prefix matches whole segments, the longest prefix first,
//! then file order, the first whose sources admit the peer (IPv4-mapped peers read as IPv4);
//! `ForbiddenSource` when some route matches but none admits the peer; `NoRoute` otherwise.
//! The chosen route's prefix is a whole-segment prefix of the path sent upstream.
//!
//! Input: `<peer IP>\n<path>`; without a first line that is an IP, the whole input is the
//! path and the peer is picked from a fixed list.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use tango_gateway::fuzzing::{normalise_path, select_route, RouteChoice, ROUTES};

const PEERS: [&str; 6] = [
    "10.1.2.3",
    "192.168.7.7",
    "127.0.0.1",
    "::1",
    "::ffff:10.0.0.5",
    "203.0.113.9",
];

fn segment_prefix(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

fn admits(sources: Option<&[&str]>, peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    let Some(sources) = sources else {
        return true;
    };
    sources.iter().any(|net| {
        let (addr, len) = net.split_once('/').unwrap();
        let len: u32 = len.parse().unwrap();
        match (addr.parse::<IpAddr>().unwrap(), peer) {
            (IpAddr::V4(net), IpAddr::V4(peer)) => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(net) & mask == u32::from(peer) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(peer)) => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                u128::from(net) & mask == u128::from(peer) & mask
            }
            _ => false,
        }
    })
}

fn reference(path: &str, peer: IpAddr) -> RouteChoice {
    let mut matching: Vec<_> = ROUTES
        .iter()
        .filter(|route| segment_prefix(path, route.prefix))
        .collect();
    // Stable: file order among equal lengths.
    matching.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
    match matching.iter().find(|route| admits(route.sources, peer)) {
        Some(route) => RouteChoice::Route(route.name.to_owned()),
        None if matching.is_empty() => RouteChoice::NoRoute,
        None => RouteChoice::ForbiddenSource,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (peer, raw) = match text.split_once('\n') {
        Some((first, rest)) if first.trim().parse::<IpAddr>().is_ok() => {
            (first.trim().parse::<IpAddr>().unwrap(), rest)
        }
        _ => (PEERS[data.len() % PEERS.len()].parse().unwrap(), &*text),
    };
    let Ok(path) = normalise_path(raw) else {
        return;
    };
    let chosen = select_route(&path, peer);
    assert_eq!(
        chosen,
        reference(&path, peer),
        "{raw:?} -> {path:?} from {peer}"
    );
    if let RouteChoice::Route(name) = &chosen {
        let route = ROUTES.iter().find(|r| r.name == name).unwrap();
        assert!(tango_gateway::fuzzing::has_prefix(&path, route.prefix));
        assert!(segment_prefix(&path, route.prefix));
    }
});
