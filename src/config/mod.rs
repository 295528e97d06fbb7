//! Configuration: the YAML schema of PRODUCT.md §3, loaded, interpolated and validated.
mod auth;
mod duration;
mod errors;
mod fields;
mod interpolate;
mod load;
mod log_level;
mod model;
mod net;
mod orders;
mod proxy;
mod raw;
mod retry;
mod route;
mod summary;
mod telemetry;
mod tls;
mod token_cache;
mod upstream_url;
mod validate;
mod warnings;

#[cfg(test)]
mod example_tests;
#[cfg(test)]
pub(crate) mod test_support;

pub use duration::parse_duration;
pub use errors::{ConfigErrors, ConfigProblem};
pub use interpolate::interpolate_str;
pub use load::{load, load_with_env, secret_files, watched_files, ENV_PREFIX};
pub use model::*;
pub use net::{normalise_prefix, parse_cidr, redact_userinfo};
pub use orders::{
    DEFAULT_DUPLICATE_WINDOW, DEFAULT_MAX_REFERENCES, MAX_AMOUNT as MAX_ORDER_AMOUNT, NO_CALLER,
};
pub use proxy::proxy_authorization;
pub use summary::summary;
pub use telemetry::{DEFAULT_SERVICE_NAME, OTEL_ENDPOINT_ENV};
pub use warnings::warnings;

/// The JSON Schema of the configuration file, pretty-printed: what `tango-gateway schema`
/// prints and `config/gateway.schema.json` holds. Derived from the serde mirror the loader
/// reads the file into, so it cannot drift from what is accepted.
pub fn schema_json() -> String {
    let mut schema = schemars::schema_for!(raw::RawConfig);
    schema.insert("title".into(), "tango-gateway configuration".into());
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
pub use token_cache::{DEFAULT_KEY_PREFIX, DEFAULT_LOCK_TIMEOUT};
pub use upstream_url::UpstreamUrl;
pub use validate::{DEFAULT_ADMIN_LISTEN, DEFAULT_ALLOW, DEFAULT_LISTEN};
