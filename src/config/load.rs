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
    let (mut raw, removed) =
        read_raw(path, env, &mut problems).ok_or_else(|| fail(std::mem::take(&mut problems)))?;
    // `OTEL_EXPORTER_OTLP_ENDPOINT` turns tracing on when the file names no endpoint (§13).
    super::telemetry::apply_env(&mut raw, env);
    let shape_problems = problems.len();
    match validate(raw, path, now, &mut problems) {
        Some(config) if problems.len() == 0 => Ok(config),
        _ => {
            // A key removed for its wrong shape was already reported: validation's "is
            // required" for it (or below it) would say the same thing twice.
            let mut index = 0;
            problems.0.retain(|problem| {
                index += 1;
                index <= shape_problems
                    || !removed.iter().any(|key| {
                        problem.path == *key
                            || problem.path.starts_with(&format!("{key}."))
                            || problem.path.starts_with(&format!("{key}["))
                    })
            });
            Err(fail(problems))
        }
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
    if let Some((raw, _)) = read_raw(path, env, &mut ignored) {
        files.extend(raw.referenced_files().into_iter().map(PathBuf::from));
    }
    files
}

/// Every file of the configuration that holds a secret or a private key, with its key path
/// (for `check`'s permission warnings, §11). Empty when the file cannot be read.
pub fn secret_files(path: &Path, env: &HashMap<String, String>) -> Vec<(String, PathBuf)> {
    let mut ignored = Problems::default();
    read_raw(path, env, &mut ignored).map_or_else(Vec::new, |(raw, _)| {
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
) -> Option<(RawConfig, Vec<String>)> {
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
    deserialize_reporting_all(value, problems)
}

/// The most problems of shape (unknown keys, wrong types) reported for one file.
const MAX_SHAPE_PROBLEMS: usize = 100;

/// Deserialises the file's value, reporting every unknown key and every value of the wrong
/// type, not only the first: each one is recorded, removed from the value, and the rest read
/// again, so validation still runs on everything else (a typo never hides the other
/// problems). Returns the keys removed beside the mirror.
fn deserialize_reporting_all(
    mut value: serde_json::Value,
    problems: &mut Problems,
) -> Option<(RawConfig, Vec<String>)> {
    let mut removed = Vec::new();
    for _ in 0..MAX_SHAPE_PROBLEMS {
        match serde_path_to_error::deserialize::<_, RawConfig>(value.clone()) {
            Ok(raw) => return Some((raw, removed)),
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let message = e.inner().to_string();
                problems.add(path.clone(), redact_serde_message(&message));
                // An unknown key's path may stop at its parent (the key then only named in
                // the message) or include it.
                let target = match unknown_field(&message) {
                    Some(field) if path == field || path.ends_with(&format!(".{field}")) => path,
                    Some(field) if path.is_empty() => field.to_owned(),
                    Some(field) => format!("{path}.{field}"),
                    None => path,
                };
                if target.is_empty() || !remove_at(&mut value, &target) {
                    return None;
                }
                removed.push(target);
            }
        }
    }
    None
}

/// The key named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")?
        .split('`')
        .next()
        .filter(|field| !field.is_empty())
}

/// Removes the value at a key path such as `routes[0].upstream.timeout`; false when the
/// path does not lead anywhere.
fn remove_at(value: &mut serde_json::Value, path: &str) -> bool {
    let mut steps: Vec<PathStep> = Vec::new();
    for segment in path.split('.') {
        let (key, mut rest) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            steps.push(PathStep::Key(key.to_owned()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else {
                return false;
            };
            let Ok(index) = inner[..end].parse::<usize>() else {
                return false;
            };
            steps.push(PathStep::Index(index));
            rest = &inner[end + 1..];
        }
    }
    let Some(last) = steps.pop() else {
        return false;
    };
    let mut node = value;
    for step in &steps {
        let next = match (step, node) {
            (PathStep::Key(key), serde_json::Value::Object(map)) => map.get_mut(key),
            (PathStep::Index(i), serde_json::Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match (last, node) {
        (PathStep::Key(key), serde_json::Value::Object(map)) => map.remove(&key).is_some(),
        (PathStep::Index(i), serde_json::Value::Array(items)) if i < items.len() => {
            // Keeps the other items' indexes: the item becomes empty, not gone.
            items[i] = serde_json::Value::Null;
            true
        }
        _ => false,
    }
}

enum PathStep {
    Key(String),
    Index(usize),
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
