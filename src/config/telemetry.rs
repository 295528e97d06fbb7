//! `telemetry.otlp` (§13): OpenTelemetry trace export, off unless an endpoint is given, in
//! the file or by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (which the file's key overrides).
//!
//! Invariant: an endpoint that passes is an `http(s)` base URL with a host and no userinfo,
//! query or fragment, so `<endpoint>/v1/traces` is a URL that carries no credential; a
//! `sample_ratio` that passes is within 0..=1.

use std::collections::HashMap;

use super::errors::Problems;
use super::fields::{optional, text};
use super::model::{OtlpConfig, TelemetryConfig};
use super::raw::{RawConfig, RawOtlp, RawTelemetry, Text};

/// The standard variable (OpenTelemetry's exporter spec) that also turns export on.
pub const OTEL_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `telemetry.otlp.service_name` when absent.
pub const DEFAULT_SERVICE_NAME: &str = "tango-gateway";
/// The OTLP/HTTP path of traces under the endpoint (OpenTelemetry's exporter spec).
const TRACES_PATH: &str = "/v1/traces";

/// When the file (with its `TANGO_GATEWAY__` overrides) names no endpoint, takes
/// `OTEL_EXPORTER_OTLP_ENDPOINT`'s, marked so a problem with it names the variable.
pub(super) fn apply_env(raw: &mut RawConfig, env: &HashMap<String, String>) {
    let Some(endpoint) = env.get(OTEL_ENDPOINT_ENV).filter(|v| !v.trim().is_empty()) else {
        return;
    };
    let otlp = raw
        .telemetry
        .get_or_insert_with(RawTelemetry::default)
        .otlp
        .get_or_insert_with(RawOtlp::default);
    if otlp.endpoint.is_none() {
        otlp.endpoint = Some(Text(endpoint.clone()));
        otlp.endpoint_from_env = true;
    }
}

pub(super) fn telemetry(p: &mut Problems, raw: Option<RawTelemetry>) -> Option<TelemetryConfig> {
    let Some(raw) = raw.and_then(|t| t.otlp) else {
        return Some(TelemetryConfig::default());
    };
    let key = |name: &str| format!("telemetry.otlp.{name}");
    let endpoint = match text(&raw.endpoint) {
        // The other keys are still checked: they wait, valid, for an endpoint.
        None => None,
        Some(value) => match parse_endpoint(value) {
            Ok(base) => Some(base),
            Err(why) if raw.endpoint_from_env => {
                p.add(
                    key("endpoint"),
                    format!("{why} (set by the environment variable {OTEL_ENDPOINT_ENV})"),
                );
                return None;
            }
            Err(why) => {
                p.add(key("endpoint"), why);
                return None;
            }
        },
    };
    let service_name = optional(p, &key("service_name"), &raw.service_name)?
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        p.add(key("sample_ratio"), "must be between 0 and 1");
        return None;
    }
    Some(TelemetryConfig {
        otlp: endpoint.map(|endpoint| OtlpConfig {
            traces_url: format!("{endpoint}{TRACES_PATH}"),
            endpoint,
            service_name,
            sample_ratio,
        }),
    })
}

/// An OTLP base URL such as `http://127.0.0.1:4318` or `https://collector:4318/otlp`, returned
/// without its trailing `/`.
fn parse_endpoint(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.contains('#') || value.contains('?') {
        return Err("must be a base URL without a query or fragment".into());
    }
    let uri: http::Uri = value
        .parse()
        .map_err(|_| "not a valid URL (write e.g. http://127.0.0.1:4318)".to_string())?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must start with http:// or https://".into());
    }
    let authority = uri
        .authority()
        .ok_or_else(|| "URL has no host".to_string())?;
    if authority.as_str().contains('@') {
        return Err("must not contain credentials (user@ or user:password@)".into());
    }
    if authority.host().is_empty() {
        return Err("URL has no host".into());
    }
    Ok(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(endpoint: Option<&str>, ratio: Option<f64>) -> Option<RawTelemetry> {
        Some(RawTelemetry {
            otlp: Some(RawOtlp {
                endpoint: endpoint.map(|e| Text(e.to_owned())),
                service_name: None,
                sample_ratio: ratio,
                endpoint_from_env: false,
            }),
        })
    }

    fn problems(raw: Option<RawTelemetry>) -> Vec<String> {
        let mut p = Problems::default();
        let _ = telemetry(&mut p, raw);
        p.0.iter()
            .map(|problem| format!("{}: {}", problem.path, problem.message))
            .collect()
    }

    #[test]
    fn absent_is_off() {
        let mut p = Problems::default();
        let config = telemetry(&mut p, None).unwrap();
        assert!(config.otlp.is_none());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn an_endpoint_turns_it_on_with_defaults_and_the_traces_path() {
        let mut p = Problems::default();
        let config = telemetry(&mut p, raw(Some("http://127.0.0.1:4318/"), None)).unwrap();
        let otlp = config.otlp.unwrap();
        assert_eq!(otlp.endpoint, "http://127.0.0.1:4318");
        assert_eq!(otlp.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(otlp.service_name, DEFAULT_SERVICE_NAME);
        assert_eq!(otlp.sample_ratio, 1.0);
        let base_path = telemetry(&mut p, raw(Some("https://c.example:4318/otlp"), Some(0.25)));
        let otlp = base_path.unwrap().otlp.unwrap();
        assert_eq!(otlp.traces_url, "https://c.example:4318/otlp/v1/traces");
        assert_eq!(otlp.sample_ratio, 0.25);
    }

    #[test]
    fn sample_ratio_out_of_range_is_refused_with_its_key() {
        for ratio in [-0.1, 1.5, f64::NAN] {
            let found = problems(raw(Some("http://127.0.0.1:4318"), Some(ratio)));
            assert_eq!(found.len(), 1, "{ratio}: {found:?}");
            assert!(
                found[0].starts_with("telemetry.otlp.sample_ratio:"),
                "{found:?}"
            );
        }
        // Checked even without an endpoint: it would fail the day one is set.
        assert_eq!(problems(raw(None, Some(2.0))).len(), 1);
    }

    #[test]
    fn bad_endpoints_are_refused_with_their_key() {
        for bad in [
            "127.0.0.1:4318",
            "ftp://collector:4318",
            "http://user:pw@collector:4318",
            "http://collector:4318/?token=x",
            "http://collector:4318/#x",
            "not a url",
        ] {
            let found = problems(raw(Some(bad), None));
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert!(
                found[0].starts_with("telemetry.otlp.endpoint:"),
                "{found:?}"
            );
            assert!(!found[0].contains("pw@"), "{found:?}");
        }
    }

    #[test]
    fn the_env_var_turns_it_on_unless_the_file_names_an_endpoint() {
        let env: HashMap<String, String> = [(
            OTEL_ENDPOINT_ENV.to_owned(),
            "http://127.0.0.1:4318".to_owned(),
        )]
        .into();
        let mut from_env = RawConfig::default();
        apply_env(&mut from_env, &env);
        let mut p = Problems::default();
        let otlp = telemetry(&mut p, from_env.telemetry).unwrap().otlp.unwrap();
        assert_eq!(otlp.traces_url, "http://127.0.0.1:4318/v1/traces");

        let mut in_file = RawConfig {
            telemetry: raw(Some("http://file:4318"), None),
            ..RawConfig::default()
        };
        apply_env(&mut in_file, &env);
        let otlp = telemetry(&mut p, in_file.telemetry).unwrap().otlp.unwrap();
        assert_eq!(otlp.endpoint, "http://file:4318");

        let mut off = RawConfig::default();
        apply_env(&mut off, &HashMap::new());
        assert!(off.telemetry.is_none());
    }

    #[test]
    fn a_bad_env_endpoint_names_the_variable() {
        let env: HashMap<String, String> =
            [(OTEL_ENDPOINT_ENV.to_owned(), "collector:4318".to_owned())].into();
        let mut raw_config = RawConfig::default();
        apply_env(&mut raw_config, &env);
        let found = problems(raw_config.telemetry);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("telemetry.otlp.endpoint:"),
            "{found:?}"
        );
        assert!(found[0].contains(OTEL_ENDPOINT_ENV), "{found:?}");
    }
}
