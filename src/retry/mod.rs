//! Retries (PRODUCT.md §6): when a retry is safe, how long to wait, and the shared budget.
pub mod backoff;
pub mod idempotency;
pub mod policy;

pub use policy::{RetryPolicy, RouteRetry};
