//! Route selection (PRODUCT.md §9): whole-segment prefixes, longest prefix first, then file
//! order; a path some route matches but whose sources refuse the peer is `403`, not `404`.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::path::has_prefix;
use crate::config::RouteConfig;

#[derive(Debug, Clone)]
struct RouteEntry {
    name: Arc<str>,
    prefix: String,
    sources: Option<Vec<IpNet>>,
}

/// The routes of one configuration, in the order selection tries them.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Indexes into the configuration's routes, longest prefix first (stable: file order kept).
    order: Vec<usize>,
    entries: Vec<RouteEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Index of the chosen route in the configuration, and its name.
    Route(usize, Arc<str>),
    /// Some route matches the path, but none admits this peer.
    ForbiddenSource,
    NoRoute,
}

impl RouteTable {
    pub fn new(routes: &[RouteConfig]) -> Self {
        Self::from_entries(routes.iter().map(|route| {
            (
                route.name.as_str(),
                route.path_prefix.as_str(),
                route.sources.clone(),
            )
        }))
    }

    /// Builds the table from `(name, normalised prefix, sources)` in file order.
    pub fn from_entries<'a>(
        routes: impl IntoIterator<Item = (&'a str, &'a str, Option<Vec<IpNet>>)>,
    ) -> Self {
        let entries: Vec<RouteEntry> = routes
            .into_iter()
            .map(|(name, prefix, sources)| RouteEntry {
                name: Arc::from(name),
                prefix: prefix.to_owned(),
                sources,
            })
            .collect();
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(entries[i].prefix.len()));
        RouteTable { order, entries }
    }

    /// Picks the route for a normalised path and an inbound peer.
    pub fn select(&self, path: &str, peer: IpAddr) -> Selection {
        let peer = peer.to_canonical();
        let mut path_matched = false;
        for &index in &self.order {
            let entry = &self.entries[index];
            if !has_prefix(path, &entry.prefix) {
                continue;
            }
            path_matched = true;
            let admitted = entry
                .sources
                .as_ref()
                .is_none_or(|sources| sources.iter().any(|net| net.contains(&peer)));
            if admitted {
                return Selection::Route(index, entry.name.clone());
            }
        }
        if path_matched {
            Selection::ForbiddenSource
        } else {
            Selection::NoRoute
        }
    }
}

/// True when `peer` lies in one of `allow` (an empty list denies everyone).
pub fn is_allowed(allow: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    allow.iter().any(|net| net.contains(&peer))
}
