//! Prometheus metrics (§7), served as text on the admin listener's `/metrics`.
//!
//! Invariants: label values come from a closed set (route names from the config, methods,
//! status codes, outcome words, credential names) — never a path, header or caller-chosen
//! text, so a caller cannot blow up the series count; one process-wide registry, so the
//! counters survive a configuration reload.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::process_metrics::ProcessCollector;

/// Seconds; from 5 ms (a refusal) to 60 s (a deadline with retries).
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
];

// The per-request label sets hold shared or static values: looking a series up on every
// request must not allocate (the route name is an `Arc` shared with the route's stack).

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub route: Arc<str>,
    pub method: &'static str,
    pub status: u16,
    /// The caller's name (§10), or `none`: a closed set.
    pub caller: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub route: Arc<str>,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CauseLabels {
    pub route: Arc<str>,
    /// A rejection cause (`upstream::rejection::Cause`): a closed set.
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub route: Arc<str>,
    pub reason: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectedLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TokenLabels {
    pub credential: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BuildLabels {
    pub(crate) version: &'static str,
    pub(crate) commit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ListenerLabels {
    /// The listener's config key: `listen` or `admin.listen`.
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallerLabels {
    pub caller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CredentialLabels {
    pub credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OriginLabels {
    /// `scheme://host:port` of an upstream or token endpoint from the config.
    pub origin: String,
}

/// Every metric the gateway exports.
pub(crate) struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram>,
    pub upstream_attempts: Family<OutcomeLabels, Counter>,
    pub upstream_rejections: Family<CauseLabels, Counter>,
    pub retries: Family<ReasonLabels, Counter>,
    pub rejected: Family<RejectedLabels, Counter>,
    pub token_requests: Family<TokenLabels, Counter>,
    pub token_expiry: Family<CredentialLabels, Gauge<f64, AtomicU64>>,
    pub client_cert_expiry: Family<RouteLabels, Gauge<f64, AtomicU64>>,
    pub upstream_stale_resends: Family<RouteLabels, Counter>,
    pub basic_keys: BasicKeyMetrics,
    pub inflight: Gauge,
    pub config_reloads: Family<ReloadLabels, Counter>,
    pub config_generation: Gauge,
    /// 1 while `/readyz` would answer 200, else 0 (set at each scrape).
    pub ready: Gauge,
    pub token_store_up: Family<StoreLabels, Gauge>,
    pub token_store_errors: Family<StoreOperationLabels, Counter>,
    pub connections_refused: Family<ListenerLabels, Counter>,
    /// Order safety (§10): each caller's accepted-plus-reserved amount and its limit.
    pub spend_window: Family<CallerLabels, Gauge<f64, AtomicU64>>,
    pub spend_limit: Family<CallerLabels, Gauge<f64, AtomicU64>>,
    pub ledger_references: Gauge,
    pub ledger_evictions: Counter,
    pub order_store_up: Gauge,
    /// Server clock minus ours, per origin, from `Date` headers (§11).
    pub clock_skew: Family<OriginLabels, Gauge<f64, AtomicU64>>,
    /// Finished spans never delivered to the OTLP collector (§13): the export queue was
    /// full, or the export failed or timed out.
    pub otel_spans_dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The process's metrics.
pub(crate) fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("tango_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route, method and status",
            requests.clone(),
        );
        let request_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(|| -> Histogram {
                Histogram::new(DURATION_BUCKETS)
            });
        registry.register(
            "request_duration_seconds",
            "Time to the response headers, by route",
            request_duration.clone(),
        );
        let upstream_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "upstream_attempts",
            "Upstream attempts by route and outcome (status class or failure kind)",
            upstream_attempts.clone(),
        );
        let upstream_rejections = Family::<CauseLabels, Counter>::default();
        registry.register(
            "upstream_rejections",
            "Non-2xx upstream answers by route and cause (PRODUCT.md §11), one per attempt",
            upstream_rejections.clone(),
        );
        let retries = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "retries",
            "Retries by route and reason (status code or failure kind)",
            retries.clone(),
        );
        let rejected = Family::<RejectedLabels, Counter>::default();
        registry.register(
            "rejected",
            "Requests refused by the gateway itself, by error code",
            rejected.clone(),
        );
        let token_requests = Family::<TokenLabels, Counter>::default();
        registry.register(
            "token_requests",
            "OAuth token requests by credential and outcome",
            token_requests.clone(),
        );
        let token_expiry = Family::<CredentialLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "token_expiry_timestamp_seconds",
            "When the current OAuth token of a credential expires (Unix time)",
            token_expiry.clone(),
        );
        let client_cert_expiry = Family::<RouteLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "client_cert_expiry_timestamp_seconds",
            "When a route's mTLS client certificate expires (Unix time)",
            client_cert_expiry.clone(),
        );
        let upstream_stale_resends = Family::<RouteLabels, Counter>::default();
        registry.register(
            "upstream_stale_resends",
            "Requests sent again on a new connection because the idle upstream connection \
             they were given had closed before taking them (the upstream closes idle \
             connections sooner than the gateway expects)",
            upstream_stale_resends.clone(),
        );
        let basic_keys = BasicKeyMetrics::register(registry);
        let inflight = Gauge::default();
        registry.register(
            "inflight_requests",
            "Requests being answered now",
            inflight.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by outcome (success, refused)",
            config_reloads.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the labels name the version and the commit of the running binary",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("TANGO_GATEWAY_COMMIT"),
            })
            .set(1);
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when /readyz answers 200 (ready to serve), 0 when it answers 503",
            ready.clone(),
        );
        let config_generation = Gauge::default();
        registry.register(
            "config_generation",
            "The configuration generation in service: 1 at start, +1 per reload",
            config_generation.clone(),
        );
        let token_store_up = Family::<StoreLabels, Gauge>::default();
        registry.register(
            "token_store_up",
            "Whether the shared token store answers (1) or tokens are cached in memory only (0)",
            token_store_up.clone(),
        );
        let token_store_errors = Family::<StoreOperationLabels, Counter>::default();
        registry.register(
            "token_store_errors",
            "Token store operations that failed or timed out, by store and operation",
            token_store_errors.clone(),
        );
        let connections_refused = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at accept because the listener had max_connections open",
            connections_refused.clone(),
        );
        let spend_window = Family::<CallerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "spend_window_amount",
            "Order amount accepted or reserved in each caller's spend window (the fleet's, with store: redis)",
            spend_window.clone(),
        );
        let spend_limit = Family::<CallerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "spend_limit_amount",
            "Each caller's spend limit (callers[].spend_limit.amount)",
            spend_limit.clone(),
        );
        let ledger_references = Gauge::default();
        registry.register(
            "order_ledger_references",
            "externalRefIDs the order ledger of this process remembers (memory and file stores)",
            ledger_references.clone(),
        );
        let ledger_evictions = Counter::default();
        registry.register(
            "order_ledger_evictions",
            "externalRefIDs forgotten before their duplicate_window ended because the ledger held orders.max_references",
            ledger_evictions.clone(),
        );
        let order_store_up = Gauge::default();
        registry.register(
            "order_store_up",
            "1 while the order store answers (always 1 for memory and file), 0 while Redis does not",
            order_store_up.clone(),
        );
        let clock_skew = Family::<OriginLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "clock_skew_seconds",
            "Server clock minus the gateway's, per upstream or token endpoint origin, from the \
             Date header of its answers (1 s resolution: under about 2 s is noise)",
            clock_skew.clone(),
        );
        let otel_spans_dropped = Counter::default();
        registry.register(
            "otel_spans_dropped",
            "Finished trace spans dropped instead of exported (telemetry.otlp): the export \
             queue was full, or the collector failed, refused or did not answer in time",
            otel_spans_dropped.clone(),
        );
        // The standard `process_*` names, outside the gateway's prefix.
        root.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry: root,
            requests,
            request_duration,
            upstream_attempts,
            upstream_rejections,
            retries,
            rejected,
            token_requests,
            token_expiry,
            client_cert_expiry,
            upstream_stale_resends,
            basic_keys,
            inflight,
            config_reloads,
            config_generation,
            ready,
            token_store_up,
            token_store_errors,
            connections_refused,
            spend_window,
            spend_limit,
            ledger_references,
            ledger_evictions,
            order_store_up,
            clock_skew,
            otel_spans_dropped,
        }
    }

    /// The Prometheus/OpenMetrics text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    pub(crate) fn set_token_expiry(&self, credential: &str, expires_at: SystemTime) {
        self.token_expiry
            .get_or_create(&CredentialLabels {
                credential: credential.to_owned(),
            })
            .set(unix_seconds(expires_at));
    }

    /// The client certificate gauges of the configuration in service; routes a reload
    /// removed lose their series.
    pub(crate) fn set_client_certs(&self, config: &crate::config::Config) {
        self.client_cert_expiry.clear();
        for route in &config.routes {
            if let Some(identity) = &route.upstream.tls.client_identity {
                self.client_cert_expiry
                    .get_or_create(&RouteLabels {
                        route: Arc::from(route.name.as_str()),
                    })
                    .set(unix_seconds(identity.summary.not_after));
            }
        }
    }

    pub(crate) fn count_reload(&self, outcome: &str) {
        self.config_reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a connection closed at accept for being over its listener's cap.
    pub(crate) fn count_refused_connection(&self, listener: &'static str) {
        self.connections_refused
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    pub(crate) fn count_token_request(&self, credential: &str, outcome: &str) {
        self.token_requests
            .get_or_create(&TokenLabels {
                credential: credential.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Counts references the order ledger evicted to stay within `orders.max_references`.
pub(crate) fn count_ledger_evictions(evicted: u64) {
    if evicted > 0 {
        metrics().ledger_evictions.inc_by(evicted);
    }
}

/// Counts an answered request (`tango_gateway_requests_total`).
pub(crate) fn count_request(labels: RequestLabels) {
    REQUESTS.with_borrow_mut(|series| series.get(&metrics().requests, labels).inc());
}

/// Records the time to an answer's headers (`tango_gateway_request_duration_seconds`).
pub(crate) fn observe_request_duration(labels: RouteLabels, seconds: f64) {
    DURATIONS.with_borrow_mut(|series| {
        series
            .get(&metrics().request_duration, labels)
            .observe(seconds)
    });
}

/// Counts an upstream attempt (`tango_gateway_upstream_attempts_total`).
pub(crate) fn count_upstream_attempt(labels: OutcomeLabels) {
    ATTEMPTS.with_borrow_mut(|series| series.get(&metrics().upstream_attempts, labels).inc());
}

/// Counts a non-2xx upstream answer (`tango_gateway_upstream_rejections_total`). Rare
/// enough for the family's own lookup.
pub(crate) fn count_upstream_rejection(labels: CauseLabels) {
    metrics().upstream_rejections.get_or_create(&labels).inc();
}

thread_local! {
    static REQUESTS: RefCell<SeriesHandles<RequestLabels, Counter>> = RefCell::default();
    static DURATIONS: RefCell<SeriesHandles<RouteLabels, Histogram>> = RefCell::default();
    static ATTEMPTS: RefCell<SeriesHandles<OutcomeLabels, Counter>> = RefCell::default();
}

/// At most this many handles per thread and metric; past it the memo starts over (a
/// config reload that renames routes leaves old label sets behind).
const MAX_HANDLES: usize = 256;

/// A thread's handles on the series of one per-request metric, by label set.
///
/// `Family::get_or_create` takes the family's read lock and hashes the label set with
/// SipHash: three lookups per request cost about 4 % of a proxied request's instructions
/// (callgrind). The handles share their values with the family (an `Arc` each), so a
/// handle found here by a short linear scan (a few routes × methods × statuses; route names
/// compare by pointer first) counts into the same series `/metrics` reads.
struct SeriesHandles<L, M> {
    entries: Vec<(L, M)>,
}

impl<L, M> Default for SeriesHandles<L, M> {
    fn default() -> Self {
        SeriesHandles {
            entries: Vec::new(),
        }
    }
}

impl<L, M> SeriesHandles<L, M>
where
    L: Clone + Eq + std::hash::Hash,
    M: Clone,
{
    fn get<C>(&mut self, family: &Family<L, M, C>, labels: L) -> &M
    where
        C: prometheus_client::metrics::family::MetricConstructor<M>,
    {
        let found = self.entries.iter().position(|(known, _)| *known == labels);
        let index = match found {
            Some(index) => index,
            None => {
                if self.entries.len() >= MAX_HANDLES {
                    self.entries.clear();
                }
                let handle = family.get_or_create(&labels).clone();
                self.entries.push((labels, handle));
                self.entries.len() - 1
            }
        };
        &self.entries[index].1
    }
}

pub(crate) fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The content type of [`Metrics::encode`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StoreLabels {
    pub store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StoreOperationLabels {
    pub store: String,
    pub operation: String,
}

/// The token store's health (`store` and `operation` are fixed words, never keys).
impl Metrics {
    pub(crate) fn set_token_store_up(&self, store: &str, up: bool) {
        self.token_store_up
            .get_or_create(&StoreLabels {
                store: store.to_owned(),
            })
            .set(i64::from(up));
    }

    pub(crate) fn count_token_store_error(&self, store: &str, operation: &str) {
        self.token_store_errors
            .get_or_create(&StoreOperationLabels {
                store: store.to_owned(),
                operation: operation.to_owned(),
            })
            .inc();
    }
}

/// Two active API keys (§11): switches to a route's fallback key, and the key in use.
pub(crate) struct BasicKeyMetrics {
    pub fallbacks: Family<RouteLabels, Counter>,
    /// 0 while the primary key is in use, 1 while the fallback is.
    pub in_use: Family<RouteLabels, Gauge>,
}

impl BasicKeyMetrics {
    fn register(registry: &mut Registry) -> Self {
        let fallbacks = Family::<RouteLabels, Counter>::default();
        registry.register(
            "basic_key_fallbacks",
            "Switches to a route's fallback API key after Tango refused the primary (401)",
            fallbacks.clone(),
        );
        let in_use = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "basic_key_in_use",
            "The API key a Basic route with a fallback uses: 0 the primary, 1 the fallback",
            in_use.clone(),
        );
        BasicKeyMetrics { fallbacks, in_use }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family with one series, so the encoding names them all.
    fn populated() -> Metrics {
        let m = Metrics::new();
        let route = || RouteLabels {
            route: "raas".into(),
        };
        m.requests
            .get_or_create(&RequestLabels {
                route: "raas".into(),
                method: "GET",
                status: 200,
                caller: "none".into(),
            })
            .inc();
        m.request_duration.get_or_create(&route()).observe(0.02);
        m.upstream_attempts
            .get_or_create(&OutcomeLabels {
                route: "raas".into(),
                outcome: "2xx",
            })
            .inc();
        m.retries
            .get_or_create(&ReasonLabels {
                route: "raas".into(),
                reason: "503".into(),
            })
            .inc();
        m.rejected
            .get_or_create(&RejectedLabels {
                reason: "gateway.forbidden_source".into(),
            })
            .inc();
        m.count_token_request("cid@aud", "success");
        m.set_token_expiry("cid@aud", UNIX_EPOCH + std::time::Duration::from_secs(100));
        m.client_cert_expiry.get_or_create(&route()).set(5.0);
        m.upstream_stale_resends.get_or_create(&route()).inc();
        m.count_reload("success");
        m.count_refused_connection("listen");
        m.token_store_up
            .get_or_create(&StoreLabels {
                store: "redis".into(),
            })
            .set(1);
        m.token_store_errors
            .get_or_create(&StoreOperationLabels {
                store: "redis".into(),
                operation: "load".into(),
            })
            .inc();
        let caller = || CallerLabels {
            caller: "payouts".into(),
        };
        m.spend_window.get_or_create(&caller()).set(1.0);
        m.spend_limit.get_or_create(&caller()).set(2.0);
        m.upstream_rejections
            .get_or_create(&CauseLabels {
                route: "raas".into(),
                cause: "alb_xff",
            })
            .inc();
        m.basic_keys.fallbacks.get_or_create(&route()).inc();
        m.basic_keys.in_use.get_or_create(&route()).set(1);
        m.clock_skew
            .get_or_create(&OriginLabels {
                origin: "https://api.tangocard.com:443".into(),
            })
            .set(1.0);
        m
    }

    /// The dashboard and the alert rules name only series the gateway exports (CI runs this:
    /// a renamed metric cannot leave an empty panel or a silent alert behind).
    #[test]
    fn every_series_the_dashboard_and_the_alerts_name_is_exported() {
        let dashboard = include_str!("../deploy/grafana/tango-gateway.json");
        let parsed: serde_json::Value =
            serde_json::from_str(dashboard).expect("the dashboard is JSON");
        assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
        let text = populated().encode();
        let exported: std::collections::HashSet<&str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .collect();
        for (file, source) in [
            (
                "deploy/grafana/tango-gateway.json",
                include_str!("../deploy/grafana/tango-gateway.json"),
            ),
            (
                "deploy/prometheus/alerts.yaml",
                include_str!("../deploy/prometheus/alerts.yaml"),
            ),
        ] {
            let mut named = 0;
            for word in source.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("tango_gateway_") || word.starts_with("process_") {
                    named += 1;
                    // A histogram's own name (in prose) stands for its `_bucket` series.
                    let known = exported.contains(word)
                        || exported.contains(format!("{word}_bucket").as_str());
                    assert!(known, "{file} names {word}, which is not exported");
                }
            }
            assert!(named > 5, "{file} names only {named} series");
        }
    }

    #[test]
    fn every_section_7_name_is_exported() {
        let m = Metrics::new();
        let route = || RouteLabels {
            route: "raas".into(),
        };
        m.requests
            .get_or_create(&RequestLabels {
                route: "raas".into(),
                method: "GET",
                status: 200,
                caller: "none".into(),
            })
            .inc();
        m.request_duration.get_or_create(&route()).observe(0.02);
        m.upstream_attempts
            .get_or_create(&OutcomeLabels {
                route: "raas".into(),
                outcome: "2xx",
            })
            .inc();
        m.retries
            .get_or_create(&ReasonLabels {
                route: "raas".into(),
                reason: "503".into(),
            })
            .inc();
        m.rejected
            .get_or_create(&RejectedLabels {
                reason: "gateway.forbidden_source".into(),
            })
            .inc();
        m.count_token_request("cid@aud", "success");
        m.set_token_expiry("cid@aud", UNIX_EPOCH + std::time::Duration::from_secs(100));
        m.client_cert_expiry.get_or_create(&route()).set(5.0);
        m.inflight.inc();
        let text = m.encode();
        for name in [
            r#"tango_gateway_requests_total{route="raas",method="GET",status="200",caller="none"} 1"#,
            r#"tango_gateway_request_duration_seconds_bucket{le="0.025",route="raas"} 1"#,
            r#"tango_gateway_upstream_attempts_total{route="raas",outcome="2xx"} 1"#,
            r#"tango_gateway_retries_total{route="raas",reason="503"} 1"#,
            r#"tango_gateway_rejected_total{reason="gateway.forbidden_source"} 1"#,
            r#"tango_gateway_token_requests_total{credential="cid@aud",outcome="success"} 1"#,
            r#"tango_gateway_token_expiry_timestamp_seconds{credential="cid@aud"} 100.0"#,
            r#"tango_gateway_client_cert_expiry_timestamp_seconds{route="raas"} 5.0"#,
            "tango_gateway_inflight_requests 1",
        ] {
            assert!(text.contains(name), "missing {name} in:\n{text}");
        }
    }

    #[test]
    fn handles_count_into_the_familys_series_even_after_the_memo_starts_over() {
        let family = Family::<RequestLabels, Counter>::default();
        let mut handles = SeriesHandles::default();
        let raas: Arc<str> = "raas".into();
        let labels = |status| RequestLabels {
            route: raas.clone(),
            method: "GET",
            status,
            caller: "none".into(),
        };
        handles.get(&family, labels(200)).inc();
        handles.get(&family, labels(200)).inc();
        // The same name from another allocation (a reloaded route) is the same series.
        handles
            .get(
                &family,
                RequestLabels {
                    route: "raas".into(),
                    method: "GET",
                    status: 200,
                    caller: "none".into(),
                },
            )
            .inc();
        assert_eq!(handles.entries.len(), 1);
        for status in 0..=MAX_HANDLES as u16 {
            handles.get(&family, labels(1000 + status)).inc();
        }
        assert!(handles.entries.len() <= MAX_HANDLES);
        handles.get(&family, labels(200)).inc();
        assert_eq!(family.get_or_create(&labels(200)).get(), 4);
        assert_eq!(family.get_or_create(&labels(1000)).get(), 1);
        assert_eq!(
            family
                .get_or_create(&labels(1000 + MAX_HANDLES as u16))
                .get(),
            1
        );
    }
}
