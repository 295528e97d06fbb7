//! `check`'s warnings (§11): what is valid but will fail against Tango, or is unsafe to leave
//! as it is. Printed on stderr, prefixed `warning:`; the exit code does not change. Nothing
//! here touches the network.
//!
//! Invariant: a warning names hosts, key paths and file paths, never a secret (credentials
//! are compared by their SHA-256, which is not printed either).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;

use super::model::{AuthConfig, Config, RouteConfig};

/// Tango's standard API hosts: once mTLS is enabled for a platform, they refuse it.
const STANDARD_HOSTS: [&str; 2] = ["api.tangocard.com", "integration-api.tangocard.com"];
/// Tango's sandbox hosts (standard and mTLS).
const SANDBOX_HOSTS: [&str; 3] = [
    "integration-api.tangocard.com",
    "mtls.sandbox-tango-api.bhn.com",
    "sandbox.tangocard.com",
];
/// Tango's production hosts (standard and mTLS).
const PRODUCTION_HOSTS: [&str; 2] = ["api.tangocard.com", "mtls.tango-api.bhn.com"];
/// A client certificate this close to its not-after is worth a warning at every `check`.
const CERT_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Environment {
    Sandbox,
    Production,
}

fn environment(host: &str) -> Option<Environment> {
    let host = host.to_ascii_lowercase();
    if SANDBOX_HOSTS.contains(&host.as_str()) {
        Some(Environment::Sandbox)
    } else if PRODUCTION_HOSTS.contains(&host.as_str()) {
        Some(Environment::Production)
    } else {
        None
    }
}

/// Every warning for `config`; `secret_files` are the key and secret files with their key
/// paths ([`super::secret_files`]).
pub fn warnings(
    config: &Config,
    secret_files: &[(String, PathBuf)],
    now: SystemTime,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        endpoint_warnings(&mut out, i, route);
        expiry_warnings(&mut out, i, route, now);
    }
    shared_credential_warnings(&mut out, config);
    for (key, file) in secret_files {
        if let Some(mode) = open_mode(file) {
            out.push(format!(
                "{key}: {} is readable by group or others (mode {mode:04o}): chmod 600 it",
                file.display()
            ));
        }
    }
    out
}

fn endpoint_warnings(out: &mut Vec<String>, i: usize, route: &RouteConfig) {
    let host = route.upstream.url.host().to_ascii_lowercase();
    let has_cert = route.upstream.tls.client_identity.is_some();
    if has_cert && STANDARD_HOSTS.contains(&host.as_str()) {
        out.push(format!(
            "routes[{i}].upstream.url: {host} is Tango's standard endpoint, but the route presents a client certificate: once mTLS is enabled for your platform Tango refuses the standard endpoints; use the mTLS endpoint ({})",
            if host.starts_with("integration") {
                "mtls.sandbox-tango-api.bhn.com"
            } else {
                "mtls.tango-api.bhn.com"
            }
        ));
    }
    if !has_cert && host.starts_with("mtls.") {
        out.push(format!(
            "routes[{i}].upstream.url: {host} is an mTLS endpoint, but the route has no client certificate (upstream.tls.client_cert_file and client_key_file): its handshakes will fail"
        ));
    }
}

fn expiry_warnings(out: &mut Vec<String>, i: usize, route: &RouteConfig, now: SystemTime) {
    let mut identities = vec![("upstream.tls", route.upstream.tls.client_identity.as_ref())];
    if let AuthConfig::OAuth2(oauth) = &route.auth {
        identities.push(("auth.oauth2.tls", oauth.tls.client_identity.as_ref()));
    }
    let mut seen = Vec::new();
    for (key, identity) in identities {
        let Some(identity) = identity else { continue };
        let not_after = identity.summary.not_after;
        if seen.contains(&not_after) {
            continue; // oauth2.tls inherited from the route: the same certificate
        }
        seen.push(not_after);
        let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
        if left < CERT_WARNING {
            out.push(format!(
                "routes[{i}].{key}: the client certificate ({}) expires in {} days ({}): renew it and have Tango trust the new one before then",
                identity.summary.subject,
                left.as_secs() / 86_400,
                humantime::format_rfc3339_seconds(not_after)
            ));
        }
    }
}

/// One credential used against both sandbox and production hosts: a sandbox key in
/// production (or the reverse) fails, and a production key in a test setup is a leak risk.
fn shared_credential_warnings(out: &mut Vec<String>, config: &Config) {
    let mut by_credential: HashMap<String, Vec<(usize, Environment)>> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let Some(env) = environment(route.upstream.url.host()) else {
            continue;
        };
        if let Some(id) = credential_id(&route.auth) {
            by_credential.entry(id).or_default().push((i, env));
        }
    }
    let mut pairs: Vec<(usize, usize)> = by_credential
        .values()
        .filter_map(|uses| {
            let sandbox = uses.iter().find(|(_, e)| *e == Environment::Sandbox)?;
            let production = uses.iter().find(|(_, e)| *e == Environment::Production)?;
            Some((sandbox.0, production.0))
        })
        .collect();
    pairs.sort_unstable();
    for (sandbox, production) in pairs {
        out.push(format!(
            "routes[{sandbox}].auth and routes[{production}].auth: the same credential is used for Tango's sandbox and production hosts: each environment has its own platform credentials"
        ));
    }
}

/// A digest naming a credential without holding it.
fn credential_id(auth: &AuthConfig) -> Option<String> {
    let text = match auth {
        AuthConfig::None => return None,
        AuthConfig::Basic(basic) => format!(
            "basic\0{}\0{}",
            basic.username,
            basic.password.expose_secret()
        ),
        AuthConfig::OAuth2(oauth) => format!(
            "oauth2\0{}\0{}",
            oauth.client_id,
            oauth.client_secret.expose_secret()
        ),
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    Some(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The file's mode when group or others may read or write it.
fn open_mode(file: &std::path::Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o7777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_sorted_into_environments() {
        assert_eq!(
            environment("integration-api.tangocard.com"),
            Some(Environment::Sandbox)
        );
        assert_eq!(
            environment("MTLS.TANGO-API.BHN.COM"),
            Some(Environment::Production)
        );
        assert_eq!(
            environment("api.tangocard.com"),
            Some(Environment::Production)
        );
        assert_eq!(environment("example.com"), None);
    }

    #[cfg(unix)]
    #[test]
    fn an_open_file_is_named_with_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(open_mode(&file), Some(0o640));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(open_mode(&file), None);
    }
}
