//! Certificate expiry warnings (§7): one log event when a client certificate comes within 30,
//! 7 and 1 days of its not-after, and when it has expired.
//!
//! Invariant: each certificate is reported once per threshold it crosses, not on every check,
//! so a check every second costs a few comparisons and the log stays quiet.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::CertSummary;
use crate::config::{AuthConfig, Config};

const DAY: Duration = Duration::from_secs(86_400);

/// How close a certificate is to its end; ordered from harmless to expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExpiryLevel {
    Fine,
    Within30Days,
    Within7Days,
    Within1Day,
    Expired,
}

impl ExpiryLevel {
    pub fn of(not_after: SystemTime, now: SystemTime) -> ExpiryLevel {
        let Ok(left) = not_after.duration_since(now) else {
            return ExpiryLevel::Expired;
        };
        if left.is_zero() {
            ExpiryLevel::Expired
        } else if left <= DAY {
            ExpiryLevel::Within1Day
        } else if left <= 7 * DAY {
            ExpiryLevel::Within7Days
        } else if left <= 30 * DAY {
            ExpiryLevel::Within30Days
        } else {
            ExpiryLevel::Fine
        }
    }
}

/// Which certificate: the route and where in its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Subject {
    route: String,
    /// `upstream.tls` or `auth.oauth2.tls`.
    key: &'static str,
    subject: String,
    not_after: SystemTime,
}

/// Remembers what was already reported; survives reloads, so a reload that keeps a
/// certificate does not report it again, while a new certificate starts afresh.
#[derive(Debug, Default)]
pub struct ExpiryWarnings {
    reported: HashMap<Subject, ExpiryLevel>,
}

impl ExpiryWarnings {
    /// Logs every client certificate of `config` that crossed a threshold since the last
    /// check. Returns how many events were logged.
    pub fn check(&mut self, config: &Config, now: SystemTime) -> usize {
        let mut logged = 0;
        for (subject, summary) in client_certificates(config) {
            let level = ExpiryLevel::of(summary.not_after, now);
            let before = self
                .reported
                .insert(subject.clone(), level)
                .unwrap_or(ExpiryLevel::Fine);
            if level > before {
                log(&subject, summary, level, now);
                logged += 1;
            }
        }
        logged
    }
}

fn client_certificates(config: &Config) -> impl Iterator<Item = (Subject, &CertSummary)> {
    config.routes.iter().flat_map(|route| {
        let upstream = route
            .upstream
            .tls
            .client_identity
            .as_ref()
            .map(|identity| ("upstream.tls", identity));
        let token_endpoint = match &route.auth {
            AuthConfig::OAuth2(oauth) => oauth
                .tls
                .client_identity
                .as_ref()
                // When oauth2.tls is absent it is the route's own; report it once.
                .filter(|identity| {
                    route
                        .upstream
                        .tls
                        .client_identity
                        .as_ref()
                        .map(|u| &u.cert_file)
                        != Some(&identity.cert_file)
                })
                .map(|identity| ("auth.oauth2.tls", identity)),
            _ => None,
        };
        upstream
            .into_iter()
            .chain(token_endpoint)
            .map(|(key, identity)| {
                let summary = &identity.summary;
                let subject = Subject {
                    route: route.name.clone(),
                    key,
                    subject: summary.subject.clone(),
                    not_after: summary.not_after,
                };
                (subject, summary)
            })
    })
}

fn log(subject: &Subject, summary: &CertSummary, level: ExpiryLevel, now: SystemTime) {
    let days_left = summary.days_left(now);
    let not_after = humantime::format_rfc3339_seconds(summary.not_after);
    let route = subject.route.as_str();
    let key = subject.key;
    let cert_subject = summary.subject.as_str();
    match level {
        ExpiryLevel::Fine => {}
        ExpiryLevel::Within30Days | ExpiryLevel::Within7Days => tracing::warn!(
            route, key, subject = cert_subject, %not_after, days_left,
            "client certificate expires soon; rotate it (replace the files, the gateway reloads)"
        ),
        ExpiryLevel::Within1Day => tracing::error!(
            route, key, subject = cert_subject, %not_after, days_left,
            "client certificate expires within a day; Tango will refuse it once it has"
        ),
        ExpiryLevel::Expired => tracing::error!(
            route, key, subject = cert_subject, %not_after, days_left,
            "client certificate has expired; Tango refuses it and /readyz is 503"
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::test_support::{Fixture, ROUTE};

    #[test]
    fn each_threshold_is_reported_once() {
        let fx = Fixture::new();
        // Issued yesterday for 6 days: 5 days left.
        let (cert, key) = fx.identity("client", -1, 6);
        let ca = fx.identity("ca", -1, 300).0;
        let yaml = format!(
            "{ROUTE}    upstream:\n      url: https://integration-api.tangocard.com\n      tls:\n        ca_file: {ca}\n        client_cert_file: {cert}\n        client_key_file: {key}\n"
        );
        let yaml = yaml.replace(
            "    upstream: { url: \"https://integration-api.tangocard.com\" }\n",
            "",
        );
        let config = fx.ok(&yaml);
        let mut warnings = ExpiryWarnings::default();
        let now = SystemTime::now();
        assert_eq!(warnings.check(&config, now), 1, "within 7 days: reported");
        assert_eq!(warnings.check(&config, now), 0, "not again");
        assert_eq!(
            warnings.check(&config, now + 4 * DAY + DAY / 2),
            1,
            "within a day"
        );
        assert_eq!(warnings.check(&config, now + 6 * DAY), 1, "expired");
        assert_eq!(warnings.check(&config, now + 7 * DAY), 0);
    }

    #[test]
    fn levels_follow_the_thresholds() {
        let now = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let at = |days: f64| now + DAY.mul_f64(days);
        assert_eq!(ExpiryLevel::of(at(90.0), now), ExpiryLevel::Fine);
        assert_eq!(ExpiryLevel::of(at(30.5), now), ExpiryLevel::Fine);
        assert_eq!(ExpiryLevel::of(at(30.0), now), ExpiryLevel::Within30Days);
        assert_eq!(ExpiryLevel::of(at(7.5), now), ExpiryLevel::Within30Days);
        assert_eq!(ExpiryLevel::of(at(7.0), now), ExpiryLevel::Within7Days);
        assert_eq!(ExpiryLevel::of(at(1.5), now), ExpiryLevel::Within7Days);
        assert_eq!(ExpiryLevel::of(at(1.0), now), ExpiryLevel::Within1Day);
        assert_eq!(ExpiryLevel::of(at(0.01), now), ExpiryLevel::Within1Day);
        assert_eq!(ExpiryLevel::of(now, now), ExpiryLevel::Expired);
        assert_eq!(ExpiryLevel::of(now - DAY, now), ExpiryLevel::Expired);
    }
}
