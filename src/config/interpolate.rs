//! `${VAR}` substitution in every string value of the merged configuration.
//!
//! Invariants: text without `${` comes back unchanged; an unset variable is always an error;
//! `$${` is a literal `${`; messages name the variable, never its value or the string.

use std::collections::HashMap;

use serde_json::Value;

use super::errors::{join, Problems};

/// Replaces each `${NAME}` in `s` with `env[NAME]`.
pub fn interpolate_str(s: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated ${ (write $${ for a literal ${)".to_string())?;
            let name = &after[..end];
            if !is_var_name(name) {
                return Err("invalid variable name in ${...}: use letters, digits and _".into());
            }
            let value = env
                .get(name)
                .ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Walks a JSON tree, interpolating strings in place; each failure is a problem at its key path.
pub(crate) fn interpolate_value(
    v: &mut Value,
    path: &str,
    env: &HashMap<String, String>,
    problems: &mut Problems,
) {
    match v {
        Value::String(s) => match interpolate_str(s, env) {
            Ok(new) => *s = new,
            Err(e) => problems.add(path, e),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{path}[{i}]"), env, problems);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                interpolate_value(item, &join(path, k), env, problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_and_escapes() {
        let e = env(&[("A", "x"), ("B_2", "y")]);
        assert_eq!(interpolate_str("${A}-${B_2}", &e).unwrap(), "x-y");
        assert_eq!(
            interpolate_str("$${A} costs $5", &e).unwrap(),
            "${A} costs $5"
        );
        assert!(interpolate_str("${MISSING}", &e)
            .unwrap_err()
            .contains("MISSING"));
        assert!(interpolate_str("${A", &e).is_err());
        assert!(interpolate_str("${}", &e).is_err());
        assert!(interpolate_str("${A B}", &e).is_err());
    }

    /// Found by the `config_load` fuzz target: a top-level key named "" gave its problem
    /// the empty path, which reads as a problem with the whole file.
    #[test]
    fn a_key_named_empty_still_has_a_path() {
        let mut v = serde_json::json!({"": "${a-b}", "x": {"": "${NOPE}"}});
        let mut problems = Problems::default();
        interpolate_value(&mut v, "", &env(&[]), &mut problems);
        let mut paths: Vec<&str> = problems.0.iter().map(|p| p.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["\"\"", "x.\"\""]);
    }

    #[test]
    fn tree_problems_name_the_key_path() {
        let mut v = serde_json::json!({"routes": [{"auth": {"basic": {"username": "${NOPE}"}}}]});
        let mut p = Problems::default();
        interpolate_value(&mut v, "", &env(&[]), &mut p);
        assert_eq!(p.0.len(), 1);
        assert_eq!(p.0[0].path, "routes[0].auth.basic.username");
    }

    #[test]
    fn value_of_a_variable_is_never_in_a_message() {
        let e = env(&[("SECRET", "hunter2")]);
        let err = interpolate_str("${SECRET}${OTHER}", &e).unwrap_err();
        assert!(!err.contains("hunter2"));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*", v in "\\PC*") {
            let _ = interpolate_str(&s, &env(&[("V", &v)]));
        }

        #[test]
        fn text_without_dollar_brace_is_unchanged(s in "\\PC*") {
            prop_assume!(!s.contains("${"));
            prop_assert_eq!(interpolate_str(&s, &env(&[])).unwrap(), s);
        }

        #[test]
        fn unset_variable_is_always_an_error(pre in "[a-z ]*", name in "[A-Z_][A-Z0-9_]{0,10}") {
            let s = format!("{pre}${{{name}}}");
            prop_assert!(interpolate_str(&s, &env(&[])).is_err());
        }

        #[test]
        fn set_variable_is_substituted(pre in "[a-z ]*", val in "\\PC*") {
            let s = format!("{pre}${{V}}");
            prop_assert_eq!(interpolate_str(&s, &env(&[("V", &val)])).unwrap(), format!("{pre}{val}"));
        }
    }
}
