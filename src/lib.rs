//! tango-gateway: a secure outbound HTTP gateway in front of the Tango rewards API.
//!
//! The request path is assembled in [`stack`]; start with it.
//!
//! Public: what the binary, the integration tests and the benchmarks use (`app`, `config`,
//! `stack`, the tools behind the CLI, the credential types the fleet tests drive). The
//! pipeline's inner modules are `pub(crate)`, and `unreachable_pub` keeps their items so.
pub(crate) mod access_log;
pub(crate) mod admin;
pub mod app;
pub mod auth;
pub(crate) mod body;
pub mod certs;
pub(crate) mod clock_skew;
pub mod config;
pub(crate) mod context;
pub(crate) mod deadline;
pub mod demo;
pub mod doctor;
pub(crate) mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod headers;
pub(crate) mod inbound;
pub(crate) mod metrics;
pub(crate) mod orders;
pub(crate) mod private_file;
pub(crate) mod process_metrics;
pub(crate) mod random_id;
pub(crate) mod redis_link;
pub(crate) mod reload;
pub(crate) mod request_id;
pub(crate) mod rescue;
pub(crate) mod retry;
pub(crate) mod rt;
pub(crate) mod server_span;
pub mod stack;
pub mod systemd;
pub mod telemetry;
pub mod tools;
pub mod upstream;
