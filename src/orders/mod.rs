//! Order safety (PRODUCT.md §10): the platform's duties Tango leaves to it — which caller may
//! order for which account, how much, and never the same `externalRefID` for two orders.
//!
//! Pieces: `callers` (who is calling, from the peer), `order` (what an order is, its fields
//! and body hash), `scope` (account scoping), `store` (the ledger and spend windows: memory,
//! file, Redis), `guard` (the layer in each route's stack), `audit` (order events) and `audit_file` (the
//! hash-chained file of `audit.path`, and its check behind `audit verify`).
//! [`OrderStores`] keeps the stores and the audit file for the life of the process, so a
//! reload keeps every reference and spend window.
//!
//! Everything here is off unless configured, and a configuration without it adds no layer.

pub(crate) mod audit;
pub(crate) mod audit_file;
pub(crate) mod callers;
pub(crate) mod guard;
pub(crate) mod order;
pub(crate) mod scope;
pub(crate) mod store;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit::{AuditSink, Auditor};
use audit_file::AuditFile;
use store::{FileStore, MemoryStore, OrderStore, RedisOrderStore};

use crate::config::{Config, OrderStoreConfig, DEFAULT_MAX_REFERENCES};
use crate::metrics::{metrics, CallerLabels};

/// What the guards of one configuration share.
#[derive(Debug)]
pub(crate) struct OrderSafety {
    pub store: Arc<dyn OrderStore>,
    /// The `externalRefID` ledger, when `orders` is configured.
    pub ledger: Option<LedgerRules>,
    pub audit: Auditor,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LedgerRules {
    pub require_external_ref_id: bool,
    pub window: Duration,
}

/// Why order safety could not be set up (a reload keeps the running configuration).
#[derive(Debug, thiserror::Error)]
pub enum OrderSetupError {
    #[error("orders.path: {0}")]
    File(String),
    #[error("orders.url: not a usable Redis URL")]
    RedisUrl,
    #[error("audit.path: {0}")]
    Audit(String),
}

/// True when the configuration asks for anything of §10 beyond naming callers.
pub(crate) fn is_configured(config: &Config) -> bool {
    config.orders.is_some()
        || config
            .callers
            .iter()
            .any(|c| c.is_scoped() || c.spend_limit.is_some())
}

/// The order store and audit file of the process, reused by every configuration that asks
/// for the same ones.
#[derive(Debug, Default)]
pub struct OrderStores {
    store: Mutex<Option<(OrderStoreConfig, Arc<dyn OrderStore>)>>,
    audit: Mutex<Option<(PathBuf, Arc<dyn AuditSink>)>>,
    /// For `check` and `doctor`: the audit file is checked, not opened (a running gateway
    /// holds it locked, and `check` writes nothing).
    checking: bool,
}

impl OrderStores {
    /// Stores for a single use that must not take the running gateway's files.
    pub fn checking() -> Self {
        OrderStores {
            checking: true,
            ..OrderStores::default()
        }
    }

    /// The order safety of `config`, or `None` when it configures none.
    pub(crate) fn safety_for(
        &self,
        config: &Config,
    ) -> Result<Option<Arc<OrderSafety>>, OrderSetupError> {
        set_limit_gauges(config);
        if !is_configured(config) {
            return Ok(None);
        }
        let (store_config, max_references) = match &config.orders {
            Some(orders) => (orders.store.clone(), orders.max_references),
            None => (OrderStoreConfig::Memory, DEFAULT_MAX_REFERENCES),
        };
        let store = self.store(&store_config, max_references, config)?;
        let audit = Auditor::new(self.audit_file(config.audit.path.as_deref())?);
        Ok(Some(Arc::new(OrderSafety {
            store,
            ledger: config.orders.as_ref().map(|o| LedgerRules {
                require_external_ref_id: o.require_external_ref_id,
                window: o.duplicate_window,
            }),
            audit,
        })))
    }

    fn store(
        &self,
        wanted: &OrderStoreConfig,
        max_references: usize,
        config: &Config,
    ) -> Result<Arc<dyn OrderStore>, OrderSetupError> {
        let mut slot = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((current, store)) = slot.as_ref() {
            if current == wanted {
                return Ok(store.clone());
            }
        }
        let store: Arc<dyn OrderStore> = match wanted {
            OrderStoreConfig::Memory => {
                if config.callers.iter().any(|c| c.spend_limit.is_some()) {
                    tracing::warn!("spend limits are kept in memory (orders.store: memory): a restart forgets what was spent; use store: file or redis to keep them");
                }
                Arc::new(MemoryStore::new(max_references))
            }
            OrderStoreConfig::File { path } => Arc::new(
                FileStore::open(path, max_references)
                    .map_err(|err| OrderSetupError::File(err.to_string()))?,
            ),
            OrderStoreConfig::Redis { url, key_prefix } => {
                let store = Arc::new(
                    RedisOrderStore::new(url, key_prefix).map_err(|_| OrderSetupError::RedisUrl)?,
                );
                // One PING in the background: the health gauge and the outage log line are
                // right before the first order (building never waits for Redis).
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let probe = store.clone();
                    runtime.spawn(async move {
                        let _ = probe.probe().await;
                    });
                }
                store
            }
        };
        if !matches!(wanted, OrderStoreConfig::Redis { .. }) {
            metrics().order_store_up.set(1);
        }
        *slot = Some((wanted.clone(), store.clone()));
        Ok(store)
    }

    fn audit_file(
        &self,
        path: Option<&std::path::Path>,
    ) -> Result<Option<Arc<dyn AuditSink>>, OrderSetupError> {
        let Some(path) = path else {
            return Ok(None);
        };
        if self.checking {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            return match dir {
                Some(dir) if !dir.is_dir() => Err(OrderSetupError::Audit(format!(
                    "{}: its directory does not exist",
                    path.display()
                ))),
                _ => Ok(None),
            };
        }
        let mut slot = self
            .audit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((current, file)) = slot.as_ref() {
            if current == path {
                return Ok(Some(file.clone()));
            }
        }
        // A new path: the old file is closed when the last generation using it is dropped.
        let file: Arc<dyn AuditSink> =
            Arc::new(AuditFile::open(path).map_err(|err| OrderSetupError::Audit(err.to_string()))?);
        *slot = Some((path.to_path_buf(), file.clone()));
        Ok(Some(file))
    }
}

/// `tango_gateway_spend_limit_amount{caller}` for the callers of `config`.
fn set_limit_gauges(config: &Config) {
    let metrics = metrics();
    metrics.spend_limit.clear();
    for caller in &config.callers {
        if let Some(limit) = caller.spend_limit {
            metrics
                .spend_limit
                .get_or_create(&CallerLabels {
                    caller: caller.name.clone(),
                })
                .set(limit.amount);
        }
    }
}
