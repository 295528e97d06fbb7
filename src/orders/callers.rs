//! Who is calling (§10): named callers matched on the TCP peer, the most specific source
//! prefix winning across callers.
//!
//! Invariant: a peer matches at most one caller (config refuses identical prefixes in two
//! callers, and among nested ones the longest decides).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::store::Micros;
use crate::config::{CallerConfig, SpendLimit};

/// One configured caller, as the request path uses it.
#[derive(Debug)]
pub(crate) struct Caller {
    pub name: Arc<str>,
    /// The `accountIdentifier`s it may use; `None` = any.
    pub accounts: Option<Vec<String>>,
    /// The `customerIdentifier`s it may use; `None` = any.
    pub customers: Option<Vec<String>>,
    pub spend_limit: Option<Limit>,
}

/// A spend limit in the stores' unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub amount: Micros,
    pub window: std::time::Duration,
}

impl Caller {
    pub(crate) fn from_config(config: &CallerConfig) -> Self {
        Caller {
            name: Arc::from(config.name.as_str()),
            accounts: config.accounts.clone(),
            customers: config.customers.clone(),
            spend_limit: config.spend_limit.map(Limit::from_config),
        }
    }

    /// True when account or customer lists restrict its requests.
    pub(crate) fn is_scoped(&self) -> bool {
        self.accounts.is_some() || self.customers.is_some()
    }
}

impl Limit {
    fn from_config(limit: SpendLimit) -> Self {
        Limit {
            amount: to_micros(limit.amount),
            window: limit.window,
        }
    }
}

/// An amount in currency units as millionths (the config caps amounts so this cannot
/// overflow; rounding keeps `0.1 + 0.2` exact in the stores).
pub(crate) fn to_micros(amount: f64) -> Micros {
    // The cast saturates; amounts are checked to be finite, non-negative and bounded first.
    #[allow(clippy::cast_possible_truncation)]
    let micros = (amount * 1_000_000.0).round() as Micros;
    micros
}

/// Millionths back to currency units (metrics, audit).
pub(crate) fn from_micros(micros: Micros) -> f64 {
    micros as f64 / 1_000_000.0
}

/// Every caller of one configuration and the prefixes that identify them.
#[derive(Debug, Default, Clone)]
pub(crate) struct CallerTable {
    /// Every source prefix with its caller, most specific first.
    prefixes: Vec<(IpNet, Arc<Caller>)>,
    callers: Vec<Arc<Caller>>,
}

impl CallerTable {
    pub(crate) fn new(configs: &[CallerConfig]) -> Self {
        let callers: Vec<Arc<Caller>> = configs
            .iter()
            .map(|c| Arc::new(Caller::from_config(c)))
            .collect();
        let mut prefixes: Vec<(IpNet, Arc<Caller>)> = configs
            .iter()
            .zip(&callers)
            .flat_map(|(config, caller)| {
                config
                    .sources
                    .iter()
                    .map(|net| (net.trunc(), caller.clone()))
            })
            .collect();
        prefixes.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        CallerTable { prefixes, callers }
    }

    /// True when callers are configured (then every request must come from one).
    pub(crate) fn is_configured(&self) -> bool {
        !self.callers.is_empty()
    }

    /// The caller `peer` belongs to, by its most specific prefix.
    pub(crate) fn identify(&self, peer: IpAddr) -> Option<&Arc<Caller>> {
        let peer = peer.to_canonical();
        self.prefixes
            .iter()
            .find(|(net, _)| net.contains(&peer))
            .map(|(_, caller)| caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str, sources: &[&str]) -> CallerConfig {
        CallerConfig {
            name: name.to_owned(),
            sources: sources.iter().map(|s| s.parse().unwrap()).collect(),
            accounts: None,
            customers: None,
            spend_limit: None,
        }
    }

    #[test]
    fn the_most_specific_prefix_wins_whatever_the_file_order() {
        let table = CallerTable::new(&[
            caller("wide", &["10.0.0.0/8"]),
            caller("narrow", &["10.1.2.0/24"]),
            caller("v6", &["2001:db8::/32"]),
        ]);
        let name = |ip: &str| {
            table
                .identify(ip.parse().unwrap())
                .map(|c| c.name.to_string())
        };
        assert_eq!(name("10.1.2.3").as_deref(), Some("narrow"));
        assert_eq!(name("10.9.9.9").as_deref(), Some("wide"));
        assert_eq!(name("2001:db8::1").as_deref(), Some("v6"));
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        assert_eq!(name("::ffff:10.1.2.3").as_deref(), Some("narrow"));
        assert_eq!(name("192.0.2.1"), None);
    }

    #[test]
    fn amounts_are_exact_millionths() {
        assert_eq!(to_micros(0.1) + to_micros(0.2), to_micros(0.3));
        assert_eq!(to_micros(5000.0), 5_000_000_000);
        assert_eq!(from_micros(12_500_000), 12.5);
    }
}
