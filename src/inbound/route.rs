//! Route selection (PRODUCT.md §9): whole-segment prefixes, longest prefix first, then file
//! order; a path some route matches but whose sources refuse the peer is `403`, not `404`.
//!
//! Invariant: a selected route is one of the table's own entries, with its target: nothing
//! downstream looks a route up again by index or name.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::path::has_prefix;
use crate::config::RouteConfig;

/// One route as selection sees it, carrying `T`: what a request selected for it goes to.
#[derive(Debug, Clone)]
pub(crate) struct RouteEntry<T> {
    name: Arc<str>,
    prefix: String,
    sources: Option<Vec<IpNet>>,
    /// `match.callers`: the only callers admitted; `None` = any.
    callers: Option<Vec<Arc<str>>>,
    target: T,
}

impl<T> RouteEntry<T> {
    /// The route's name (logs and metrics).
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// What a request selected for this route goes to.
    pub(crate) fn target(&self) -> &T {
        &self.target
    }
}

/// The routes of one configuration, in the order selection tries them, each with its `T`.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable<T> {
    /// Indexes into `entries`, longest prefix first (stable: file order kept).
    order: Vec<usize>,
    entries: Vec<RouteEntry<T>>,
}

#[derive(Debug)]
pub(crate) enum Selection<'a, T> {
    /// The chosen route.
    Route(&'a RouteEntry<T>),
    /// Some route matches the path, but none admits this peer.
    ForbiddenSource,
    NoRoute,
}

impl<T> RouteTable<T> {
    /// The table of `routes`, each paired (in order) with its target.
    pub(crate) fn new(routes: &[RouteConfig], targets: impl IntoIterator<Item = T>) -> Self {
        let mut table = Self::from_entries(routes.iter().zip(targets).map(|(route, target)| {
            (
                route.name.as_str(),
                route.path_prefix.as_str(),
                route.sources.clone(),
                target,
            )
        }));
        for (entry, route) in table.entries.iter_mut().zip(routes) {
            entry.callers = route
                .callers
                .as_ref()
                .map(|names| names.iter().map(|name| Arc::from(name.as_str())).collect());
        }
        table
    }

    /// Builds the table from `(name, normalised prefix, sources, target)` in file order.
    pub(crate) fn from_entries<'a>(
        routes: impl IntoIterator<Item = (&'a str, &'a str, Option<Vec<IpNet>>, T)>,
    ) -> Self {
        let entries: Vec<RouteEntry<T>> = routes
            .into_iter()
            .map(|(name, prefix, sources, target)| RouteEntry {
                name: Arc::from(name),
                prefix: prefix.to_owned(),
                sources,
                callers: None,
                target,
            })
            .collect();
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(entries[i].prefix.len()));
        RouteTable { order, entries }
    }

    /// Picks the route for a normalised path, an inbound peer and the caller it belongs to:
    /// a route with `match.callers` admits only those callers (as well as its sources).
    pub(crate) fn select_for(
        &self,
        path: &str,
        peer: IpAddr,
        caller: Option<&str>,
    ) -> Selection<'_, T> {
        let peer = peer.to_canonical();
        let mut path_matched = false;
        for entry in self
            .order
            .iter()
            .filter_map(|&index| self.entries.get(index))
        {
            if !has_prefix(path, &entry.prefix) {
                continue;
            }
            path_matched = true;
            let admitted = entry
                .sources
                .as_ref()
                .is_none_or(|sources| sources.iter().any(|net| net.contains(&peer)))
                && entry.callers.as_ref().is_none_or(|names| {
                    caller.is_some_and(|caller| names.iter().any(|name| &**name == caller))
                });
            if admitted {
                return Selection::Route(entry);
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
pub(crate) fn is_allowed(allow: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    allow.iter().any(|net| net.contains(&peer))
}
