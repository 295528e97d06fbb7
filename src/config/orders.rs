//! `callers`, `orders` and `audit` (§10): who is calling, what they may order, and where the
//! ledger lives; and each route's `match.callers`.
//!
//! Invariants: caller names are unique, non-empty and never `none` (the metric label of a
//! request from no caller); no two callers list the same source prefix (the most specific
//! prefix decides who calls, so an identical one would make the answer depend on file
//! order); every name in a route's `match.callers` is a caller; a limit is a positive,
//! finite amount; a Redis URL is never repeated in a problem.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::errors::{join, Problems};
use super::fields::{choice, duration, file_path, optional, required, secret, text};
use super::model::{
    AuditConfig, CallerConfig, OrderStoreConfig, OrdersConfig, RouteConfig, SpendLimit,
};
use super::raw::{RawAudit, RawCaller, RawOrders, RawSpendLimit, Texts};
use super::route::cidr_list;
use super::token_cache::{redis_url, DEFAULT_KEY_PREFIX};

/// How long an `externalRefID` is remembered when `duplicate_window` is not set.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The most references the memory and file ledgers keep when `max_references` is not set.
pub const DEFAULT_MAX_REFERENCES: usize = 1_000_000;
/// The largest limit or order amount: its millionths must fit the stores' 64-bit integers.
pub const MAX_AMOUNT: f64 = 1e12;
/// The metric label of a request from no configured caller.
pub const NO_CALLER: &str = "none";

pub(crate) fn callers(p: &mut Problems, raw: Option<Vec<RawCaller>>) -> Option<Vec<CallerConfig>> {
    let before = p.len();
    let raw = raw.unwrap_or_default();
    let parsed: Vec<Option<CallerConfig>> = raw
        .iter()
        .enumerate()
        .map(|(i, c)| caller(p, &format!("callers[{i}]"), c))
        .collect();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut sources: HashMap<ipnet::IpNet, usize> = HashMap::new();
    for (i, c) in parsed.iter().enumerate() {
        let Some(c) = c else { continue };
        if let Some(first) = names.insert(c.name.as_str(), i) {
            p.add(
                format!("callers[{i}].name"),
                format!("duplicate caller name (also callers[{first}])"),
            );
        }
        for (j, net) in c.sources.iter().enumerate() {
            match sources.get(&net.trunc()) {
                Some(&other) if other != i => p.add(
                    format!("callers[{i}].sources[{j}]"),
                    format!("{net} is also a source of callers[{other}]: who calls would depend on file order"),
                ),
                Some(_) => {}
                None => {
                    sources.insert(net.trunc(), i);
                }
            }
        }
    }
    (p.len() == before).then(|| parsed.into_iter().flatten().collect())
}

fn caller(p: &mut Problems, path: &str, raw: &RawCaller) -> Option<CallerConfig> {
    let before = p.len();
    let name = required(p, &join(path, "name"), &raw.name).map(str::to_owned);
    if name.as_deref() == Some(NO_CALLER) {
        p.add(
            join(path, "name"),
            "`none` is reserved (it labels requests from no caller)",
        );
    }
    let sources_key = join(path, "sources");
    let sources = match &raw.sources {
        None => {
            p.add(
                &sources_key,
                "is required (the caller's source addresses, as CIDRs)",
            );
            None
        }
        Some(list) if list.0.is_empty() => {
            p.add(&sources_key, "must list at least one source");
            None
        }
        Some(list) => cidr_list(p, &sources_key, list),
    };
    let accounts = identifiers(p, &join(path, "accounts"), raw.accounts.as_ref());
    let customers = identifiers(p, &join(path, "customers"), raw.customers.as_ref());
    let spend_limit = match &raw.spend_limit {
        None => Some(None),
        Some(limit) => spend_limit(p, &join(path, "spend_limit"), limit).map(Some),
    };
    if p.len() > before {
        return None;
    }
    Some(CallerConfig {
        name: name?,
        sources: sources?,
        accounts: accounts?,
        customers: customers?,
        spend_limit: spend_limit?,
    })
}

/// A list of identifiers (absent: any); each entry a non-empty string.
fn identifiers(p: &mut Problems, path: &str, raw: Option<&Texts>) -> Option<Option<Vec<String>>> {
    let Some(list) = raw else {
        return Some(None);
    };
    let before = p.len();
    let mut out = Vec::with_capacity(list.0.len());
    for (i, entry) in list.0.iter().enumerate() {
        let id = entry.0.trim();
        if id.is_empty() {
            p.add(format!("{path}[{i}]"), "must not be empty");
        } else {
            out.push(id.to_owned());
        }
    }
    (p.len() == before).then_some(Some(out))
}

fn spend_limit(p: &mut Problems, path: &str, raw: &RawSpendLimit) -> Option<SpendLimit> {
    let amount_key = join(path, "amount");
    let amount = match text(&raw.amount).map(|a| a.trim().parse::<f64>()) {
        None => {
            p.add(
                &amount_key,
                "is required (the most the caller may order in the window)",
            );
            None
        }
        Some(Ok(a)) if a.is_finite() && a > 0.0 && a <= MAX_AMOUNT => Some(a),
        Some(Ok(_)) => {
            p.add(
                &amount_key,
                format!("must be a positive amount, at most {MAX_AMOUNT}"),
            );
            None
        }
        Some(Err(_)) => {
            p.add(&amount_key, "must be a number (e.g. 5000 or 250.50)");
            None
        }
    };
    let window_key = join(path, "window");
    let window = match &raw.window {
        None => {
            p.add(&window_key, "is required (e.g. 24h)");
            None
        }
        Some(_) => duration(p, &window_key, &raw.window, Duration::ZERO),
    };
    Some(SpendLimit {
        amount: amount?,
        window: window?,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Store {
    Memory,
    File,
    Redis,
}

pub(crate) fn orders(p: &mut Problems, raw: Option<RawOrders>) -> Option<Option<OrdersConfig>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let before = p.len();
    let stores = [
        ("memory", Store::Memory),
        ("file", Store::File),
        ("redis", Store::Redis),
    ];
    let store = choice(p, "orders.store", &raw.store, &stores, Store::Memory);
    let duplicate_window = duration(
        p,
        "orders.duplicate_window",
        &raw.duplicate_window,
        DEFAULT_DUPLICATE_WINDOW,
    );
    let max_references = raw.max_references.unwrap_or(DEFAULT_MAX_REFERENCES);
    if max_references == 0 {
        p.add("orders.max_references", "must be greater than zero");
    }
    let path = file_path(p, "orders.path", &raw.path);
    let url = secret(p, "orders", "url", &raw.url, &raw.url_file, false);
    let key_prefix = optional(p, "orders.key_prefix", &raw.key_prefix);
    let store = store?;
    let unused = |p: &mut Problems, key: &str, set: bool, store: &str| {
        if set {
            p.add(
                join("orders", key),
                format!("is only used with store: {store}"),
            );
        }
    };
    if store != Store::File {
        unused(p, "path", raw.path.is_some(), "file");
    }
    if store != Store::Redis {
        unused(p, "url", raw.url.is_some(), "redis");
        unused(p, "url_file", raw.url_file.is_some(), "redis");
        unused(p, "key_prefix", raw.key_prefix.is_some(), "redis");
    }
    let store = match store {
        Store::Memory => Some(OrderStoreConfig::Memory),
        Store::File => match path? {
            Some(path) => Some(OrderStoreConfig::File { path }),
            None => {
                p.add("orders.path", "is required with store: file");
                None
            }
        },
        Store::Redis => match url? {
            Some(url) => {
                let url = url.expose_secret().to_owned();
                let key = if raw.url_file.is_some() {
                    "orders.url_file"
                } else {
                    "orders.url"
                };
                redis_url(p, key, &url);
                Some(OrderStoreConfig::Redis {
                    url,
                    key_prefix: key_prefix?.unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned()),
                })
            }
            None => {
                p.add("orders.url", "is required with store: redis (or url_file)");
                None
            }
        },
    };
    if p.len() > before {
        return None;
    }
    Some(Some(OrdersConfig {
        require_external_ref_id: raw.require_external_ref_id.unwrap_or(false),
        duplicate_window: duplicate_window?,
        store: store?,
        max_references,
    }))
}

pub(crate) fn audit(p: &mut Problems, raw: Option<RawAudit>) -> Option<AuditConfig> {
    let raw = raw.unwrap_or_default();
    let path: Option<PathBuf> = file_path(p, "audit.path", &raw.path)?;
    Some(AuditConfig { path })
}

/// Every name in a route's `match.callers` must be a configured caller.
pub(crate) fn check_route_callers(
    p: &mut Problems,
    callers: Option<&[String]>,
    routes: &[Option<RouteConfig>],
) {
    for (i, route) in routes.iter().enumerate() {
        let Some(names) = route.as_ref().and_then(|r| r.callers.as_ref()) else {
            continue;
        };
        let key = format!("routes[{i}].match.callers");
        if names.is_empty() {
            p.add(&key, "must name at least one caller (or be left out)");
        }
        for (j, name) in names.iter().enumerate() {
            let known = callers.unwrap_or_default();
            if !known.contains(name) {
                let why = if callers.is_none() {
                    format!("`{name}` is not a caller: there is no callers block")
                } else {
                    format!("`{name}` is not a caller (callers: {})", known.join(", "))
                };
                p.add(format!("{key}[{j}]"), why);
            }
        }
    }
}
