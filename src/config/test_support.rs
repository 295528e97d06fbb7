//! Test helpers: write a config to a temp dir, load it with a given env, make certificates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, KeyPair};
use tempfile::TempDir;

use super::{load_with_env, Config, ConfigErrors};

/// A minimal valid route, to append other keys to.
pub(crate) const ROUTE: &str = r#"
routes:
  - name: raas
    match: { path_prefix: /raas/v2/ }
    upstream: { url: "https://integration-api.tangocard.com" }
    auth: none
"#;

pub(crate) struct Fixture {
    pub dir: TempDir,
    pub env: HashMap<String, String>,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        Fixture {
            dir: TempDir::new().unwrap(),
            env: HashMap::new(),
        }
    }

    pub(crate) fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.to_string(), v.to_string());
        self
    }

    /// Writes a file in the temp dir and returns its path as a string for YAML.
    pub(crate) fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    pub(crate) fn load(&self, yaml: &str) -> Result<Config, ConfigErrors> {
        let p: PathBuf = self.dir.path().join("gateway.yaml");
        std::fs::write(&p, yaml).unwrap();
        load_with_env(&p, &self.env)
    }

    pub(crate) fn ok(&self, yaml: &str) -> Config {
        match self.load(yaml) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    pub(crate) fn err(&self, yaml: &str) -> ConfigErrors {
        match self.load(yaml) {
            Ok(_) => panic!("expected problems, config was accepted"),
            Err(e) => e,
        }
    }

    /// Asserts a problem is reported at exactly `path`, returns its message.
    pub(crate) fn problem_at(&self, yaml: &str, path: &str) -> String {
        let e = self.err(yaml);
        match e.problems.iter().find(|p| p.path == path) {
            Some(p) => p.message.clone(),
            None => panic!("no problem at {path}; got:\n{e}"),
        }
    }

    /// A certificate valid from `start_days` (relative to now) for `days`, and its key;
    /// returns (cert path, key path) under `name`.
    pub(crate) fn identity(&self, name: &str, start_days: i64, days: u64) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = cert_pem(&key, start_days, days);
        (
            self.file(&format!("{name}.pem"), &cert),
            self.file(&format!("{name}-key.pem"), &key.serialize_pem()),
        )
    }
}

pub(crate) fn cert_pem(key: &KeyPair, start_days: i64, days: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = u64::try_from(now + start_days * 86_400).unwrap();
    let mut params = CertificateParams::new(vec!["client.example".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gw-client");
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(start);
    params.not_after = params.not_before + Duration::from_secs(days * 86_400);
    params.self_signed(key).unwrap().pem()
}
