//! The `retry` block: defaults of the model, then the top-level block, then a route's block,
//! applied key by key.
//!
//! Invariant: a returned `RetryConfig` has `max_attempts ≥ 1`, `multiplier ≥ 1`,
//! `initial_backoff ≤ max_backoff`, `budget_ratio` in [0, 1] and `retry_on` statuses in 400–599.

use super::errors::{join, Problems};
use super::fields::{choice, duration};
use super::model::{Jitter, PostRequires, RetryConfig, RetryOn};
use super::raw::{RawRetry, Texts};

/// `base` overridden by whatever `raw` sets; problems are reported under `path` (`retry` or
/// `routes[i].retry`).
pub(crate) fn retry(
    p: &mut Problems,
    path: &str,
    base: &RetryConfig,
    raw: &RawRetry,
) -> Option<RetryConfig> {
    let before = p.len();
    let key = |k: &str| join(path, k);
    let max_attempts = raw.max_attempts.unwrap_or(base.max_attempts);
    if max_attempts < 1 {
        p.add(
            key("max_attempts"),
            "must be at least 1 (1 disables retries)",
        );
    }
    let initial_backoff = duration(
        p,
        &key("initial_backoff"),
        &raw.initial_backoff,
        base.initial_backoff,
    );
    let max_backoff = duration(p, &key("max_backoff"), &raw.max_backoff, base.max_backoff);
    if let (Some(i), Some(m)) = (initial_backoff, max_backoff) {
        if i > m {
            p.add(
                key("initial_backoff"),
                "must not be greater than max_backoff",
            );
        }
    }
    let multiplier = raw.multiplier.unwrap_or(base.multiplier);
    if !(multiplier.is_finite() && multiplier >= 1.0) {
        p.add(key("multiplier"), "must be a number ≥ 1");
    }
    let jitter = choice(
        p,
        &key("jitter"),
        &raw.jitter,
        &[("full", Jitter::Full), ("none", Jitter::None)],
        base.jitter,
    );
    let retry_on = match &raw.retry_on {
        None => Some(base.retry_on.clone()),
        Some(list) => retry_on(p, &key("retry_on"), list),
    };
    let budget_ratio = raw.budget_ratio.unwrap_or(base.budget_ratio);
    if !(0.0..=1.0).contains(&budget_ratio) {
        p.add(key("budget_ratio"), "must be between 0 and 1");
    }
    let post_requires = choice(
        p,
        &key("post_requires"),
        &raw.post_requires,
        &[
            ("external_ref_id", PostRequires::ExternalRefId),
            ("idempotency_key", PostRequires::IdempotencyKey),
            ("never", PostRequires::Never),
        ],
        base.post_requires,
    );
    if p.len() > before {
        return None;
    }
    Some(RetryConfig {
        max_attempts,
        initial_backoff: initial_backoff?,
        max_backoff: max_backoff?,
        multiplier,
        jitter: jitter?,
        retry_on: retry_on?,
        budget_ratio,
        budget_min_per_sec: raw.budget_min_per_sec.unwrap_or(base.budget_min_per_sec),
        post_requires: post_requires?,
    })
}

/// `connect_failure`, `timeout`, `reset`, or a status code 400–599; the list replaces the
/// inherited one as a whole.
fn retry_on(p: &mut Problems, path: &str, list: &Texts) -> Option<RetryOn> {
    let mut out = RetryOn::default();
    let mut ok = true;
    for (i, item) in list.0.iter().enumerate() {
        match item.0.trim() {
            "connect_failure" => out.connect_failure = true,
            "timeout" => out.timeout = true,
            "reset" => out.reset = true,
            s => match s.parse::<u16>() {
                Ok(code) if (400..=599).contains(&code) => {
                    if !out.statuses.contains(&code) {
                        out.statuses.push(code);
                    }
                }
                _ => {
                    p.add(
                        format!("{path}[{i}]"),
                        "must be connect_failure, timeout, reset or a status code 400-599",
                    );
                    ok = false;
                }
            },
        }
    }
    ok.then_some(out)
}
