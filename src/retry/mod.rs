//! Retries (PRODUCT.md §6): when a retry is safe, how long to wait, and the shared budget.
pub(crate) mod backoff;
pub(crate) mod idempotency;
pub(crate) mod policy;

pub(crate) use policy::{RetryPolicy, RouteRetry};
