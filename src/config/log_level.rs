//! `log.level` (§3, §13): a `RUST_LOG`-style filter, checked at load so a typo cannot pass
//! `check` and then silence the gateway.
//!
//! Invariant: a value that passes names only real levels. `tracing_subscriber`'s own parser
//! is not enough: it reads a bare word such as `infoo` as a *target* (enable everything under
//! a module called `infoo`), so the gateway would log nothing at all.

use tracing_subscriber::EnvFilter;

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a filter such as `info`, `warn,tango_gateway=debug` or `tango_gateway::access=off`.
pub(crate) fn check_log_level(value: &str) -> Result<(), String> {
    let hint = "use one of trace, debug, info, warn, error, off, or target=level pairs \
                separated by commas (e.g. warn,tango_gateway=debug)";
    for directive in value.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err(format!("an empty directive: {hint}"));
        }
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level.trim(),
            Some(_) => return Err(format!("a directive without a target: {hint}")),
            None => directive,
        };
        if !LEVELS.iter().any(|known| known.eq_ignore_ascii_case(level)) {
            // Not echoed in full: a filter is no secret, but keep messages short and fixed.
            return Err(format!("not a log level: {hint}"));
        }
    }
    EnvFilter::try_new(value)
        .map(|_| ())
        .map_err(|_| format!("not a valid log filter: {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_target_pairs_pass() {
        for ok in [
            "info",
            "WARN",
            "off",
            "warn,tango_gateway=debug",
            "tango_gateway::access=off, info",
            "hyper=error,tango_gateway=trace",
        ] {
            assert_eq!(check_log_level(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn typos_and_bare_targets_are_refused() {
        for bad in [
            "infoo",
            "",
            "info,",
            "tango_gateway=verbose",
            "=debug",
            "debug,nonsense",
            "tango_gateway",
        ] {
            assert!(check_log_level(bad).is_err(), "{bad:?} passed");
        }
    }
}
