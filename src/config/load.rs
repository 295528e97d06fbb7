//! Reading the file: YAML via the `config` crate, `TANGO_GATEWAY__` overrides, `${VAR}`
//! interpolation, then the serde mirror with key paths on every parse error.
//!
//! Invariant: the raw config text and configured values never reach a message: the `config`
//! crate's parse error carries only a position, serde messages are redacted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use config::{Environment, File, FileFormat};

use super::errors::{redact_serde_message, ConfigErrors, Problems};
use super::interpolate::interpolate_value;
use super::model::Config;
use super::raw::RawConfig;
use super::validate::validate;

pub const ENV_PREFIX: &str = "TANGO_GATEWAY";

/// Keys whose `TANGO_GATEWAY__…` value is a comma-separated list (config's key form).
const ENV_LIST_KEYS: [&str; 2] = ["inbound.allow", "retry.retry_on"];

/// Loads and validates `path` with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let env: HashMap<String, String> = std::env::vars().collect();
    load_with_env(path, &env)
}

/// Loads and validates `path`; `env` supplies both `TANGO_GATEWAY__` overrides and `${VAR}`s.
pub fn load_with_env(path: &Path, env: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
    load_at(path, env, SystemTime::now())
}

pub(crate) fn load_at(
    path: &Path,
    env: &HashMap<String, String>,
    now: SystemTime,
) -> Result<Config, ConfigErrors> {
    let fail = |problems: Problems| ConfigErrors {
        file: path.to_path_buf(),
        problems: name_env_sources(problems.0, env),
    };
    let mut problems = Problems::default();
    let raw =
        read_raw(path, env, &mut problems).ok_or_else(|| fail(std::mem::take(&mut problems)))?;
    match validate(raw, path, now, &mut problems) {
        Some(config) if problems.len() == 0 => Ok(config),
        _ => Err(fail(problems)),
    }
}

/// Says which problems come from a `TANGO_GATEWAY__…` override rather than the file, naming
/// the variable: an override's mistake must not be blamed on the YAML.
fn name_env_sources(
    problems: Vec<super::ConfigProblem>,
    env: &HashMap<String, String>,
) -> Vec<super::ConfigProblem> {
    let prefix = format!("{ENV_PREFIX}__");
    let overrides: Vec<(&str, String)> = env
        .keys()
        .filter_map(|name| {
            let rest = name.strip_prefix(&prefix)?;
            let key = rest
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
                .join(".");
            (!key.is_empty()).then_some((name.as_str(), key))
        })
        .collect();
    problems
        .into_iter()
        .map(|mut problem| {
            let from_env = overrides.iter().find(|(_, key)| {
                let at_or_below = problem.path == *key
                    || problem
                        .path
                        .strip_prefix(key.as_str())
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['));
                // An unknown key is reported at its parent, naming the key in backticks.
                let unknown_key = key
                    .strip_prefix(problem.path.as_str())
                    .map(|rest| rest.strip_prefix('.').unwrap_or(rest))
                    .filter(|field| !field.is_empty() && !field.contains('.'))
                    .is_some_and(|field| problem.message.contains(&format!("`{field}`")));
                at_or_below || unknown_key
            });
            if let Some((name, _)) = from_env {
                problem.message = format!(
                    "{} (set by the environment variable {name})",
                    problem.message
                );
            }
            problem
        })
        .collect()
}

/// The configuration file and every file it references (secrets, certificates, keys), as
/// far as the file can be read: what a reload watches. A file that does not parse yields
/// itself alone.
pub fn watched_files(path: &Path, env: &HashMap<String, String>) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    let mut ignored = Problems::default();
    if let Some(raw) = read_raw(path, env, &mut ignored) {
        files.extend(raw.referenced_files().into_iter().map(PathBuf::from));
    }
    files
}

/// Every file of the configuration that holds a secret or a private key, with its key path
/// (for `check`'s permission warnings, §11). Empty when the file cannot be read.
pub fn secret_files(path: &Path, env: &HashMap<String, String>) -> Vec<(String, PathBuf)> {
    let mut ignored = Problems::default();
    read_raw(path, env, &mut ignored).map_or_else(Vec::new, |raw| {
        raw.secret_files()
            .into_iter()
            .map(|(key, file)| (key, PathBuf::from(file)))
            .collect()
    })
}

/// The file merged with env overrides and interpolated, as the serde mirror. `None` when it
/// cannot be read or parsed (the problems say why).
fn read_raw(
    path: &Path,
    env: &HashMap<String, String>,
    problems: &mut Problems,
) -> Option<RawConfig> {
    if let Err(e) = std::fs::metadata(path) {
        problems.add("", format!("cannot read the configuration file: {e}"));
        return None;
    }
    let mut environment = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .source(Some(
            env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ));
    for key in ENV_LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let merged = config::Config::builder()
        .add_source(File::from(path).format(FileFormat::Yaml))
        .add_source(environment)
        .build()
        .and_then(|c| c.try_deserialize::<serde_json::Value>());
    let mut value = match merged {
        Ok(v) => v,
        Err(config::ConfigError::FileParse { cause, .. }) => {
            problems.add(
                "",
                format!("invalid YAML: {}", redact_serde_message(&cause.to_string())),
            );
            return None;
        }
        Err(e) => {
            problems.add("", redact_serde_message(&e.to_string()));
            return None;
        }
    };
    interpolate_value(&mut value, "", env, problems);
    if problems.len() > 0 {
        return None;
    }
    match serde_path_to_error::deserialize::<_, RawConfig>(value) {
        Ok(raw) => Some(raw),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            problems.add(path, redact_serde_message(&e.inner().to_string()));
            None
        }
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
