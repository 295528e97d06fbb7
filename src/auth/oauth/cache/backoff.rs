//! After a failed token request: how long the refresher waits before the next one, and what
//! it tells the operator.
//!
//! Invariant: the wait is never zero and never above its cap, so a failing token endpoint is
//! neither hammered nor given up on; a refusal of the credential itself (`invalid_client`),
//! or a token it must not use (Bearer where DPoP is configured), is retried slowly and
//! logged as an error.

use std::time::Duration;

use rand::Rng;

use super::TokenSource;
use crate::auth::oauth::client::FetchError;

/// Backoff between failed fetches: transient failures start at 1 s and reach 60 s...
const TRANSIENT_BACKOFF_FIRST: Duration = Duration::from_secs(1);
const TRANSIENT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// ... a refusal of the credential itself is retried slowly (it needs a config change, and
/// hammering the endpoint can get the client rate-limited or locked).
const PERMANENT_BACKOFF_FIRST: Duration = Duration::from_secs(60);
const PERMANENT_BACKOFF_MAX: Duration = Duration::from_secs(600);

impl TokenSource {
    pub(super) fn log_failure(&self, err: &FetchError, failures: u32, delay: Duration) {
        let usable = self.usable(self.clock.now()).is_some();
        let retry_in = humantime::format_duration(Duration::from_secs(delay.as_secs().max(1)));
        if let FetchError::Unusable(_) = err {
            tracing::error!(
                credential = %self.key,
                error = %err,
                failures,
                retry_in = %retry_in,
                still_serving_current_token = usable,
                "the token endpoint issued a token this route never uses; the client must \
                 be set up for DPoP-bound tokens at the authorization server"
            );
        } else if err.is_permanent() {
            tracing::error!(
                credential = %self.key,
                error = %err,
                failures,
                retry_in = %retry_in,
                "the token endpoint refuses this credential; check client id, secret and grant"
            );
        } else {
            tracing::warn!(
                credential = %self.key,
                error = %err,
                failures,
                retry_in = %retry_in,
                still_serving_current_token = usable,
                "token request failed"
            );
        }
    }
}

/// Exponential backoff with "equal jitter": half the step fixed, half random, so retries
/// from a fleet spread out but never come back immediately.
pub(super) fn backoff(failures: u32, permanent: bool, rng: &mut impl Rng) -> Duration {
    let (first, max) = if permanent {
        (PERMANENT_BACKOFF_FIRST, PERMANENT_BACKOFF_MAX)
    } else {
        (TRANSIENT_BACKOFF_FIRST, TRANSIENT_BACKOFF_MAX)
    };
    let exponent = failures.saturating_sub(1).min(16);
    let step = first.saturating_mul(1u32 << exponent).min(max);
    let half = step / 2;
    half + half.mul_f64(rng.random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_bounds() {
        let mut rng = rand::rng();
        for failures in 1..20 {
            let d = backoff(failures, false, &mut rng);
            assert!(d <= TRANSIENT_BACKOFF_MAX);
            assert!(d >= TRANSIENT_BACKOFF_FIRST / 2);
        }
        assert!(backoff(1, false, &mut rng) <= Duration::from_secs(1));
        assert!(backoff(8, false, &mut rng) >= Duration::from_secs(30));
        assert!(backoff(1, true, &mut rng) >= Duration::from_secs(30));
        assert!(backoff(30, true, &mut rng) <= PERMANENT_BACKOFF_MAX);
    }
}
