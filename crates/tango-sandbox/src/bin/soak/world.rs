//! What the soak stands up: a work directory, the dev PKI, two fake Tangos (a Basic route and
//! an OAuth + DPoP route), the secret files in a Kubernetes-style projected directory, Redis
//! and two gateway replicas sharing tokens through it; and the secret rotations (by rename
//! inside the directory, and by swapping its `..data` symlink).
//!
//! Invariant: every secret value the soak ever hands a process is remembered in
//! [`World::secrets`], so the output scan can look for all of them.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use secrecy::ExposeSecret;
use tango_sandbox::fake::{FakeTango, FakeTangoOptions, OAuthServerOptions};
use tango_sandbox::pki::{CertifiedMaterial, ClientSpec, DevPki};

use crate::procs::{free_port, Gateway, Redis};
use crate::Result;

pub(crate) const PLATFORM: &str = "soak-platform";
pub(crate) const CLIENT_ID: &str = "soak-client";
/// Tokens live 12 s and are refreshed at half-life: a refresh every 6 s, so every token
/// fault window meets one.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(12);
pub(crate) const REFRESH_AT: f64 = 0.5;
pub(crate) const REPLICAS: usize = 2;

/// The secret files the gateway reads, all inside the projected directory `secrets/`.
const SECRET_FILES: [&str; 5] = [
    "tango-api-key",
    "client-secret",
    "client.pem",
    "client.key",
    "redis-url",
];

/// One set of secret values (a generation of the projected directory).
#[derive(Clone)]
pub(crate) struct SecretSet {
    pub(crate) api_key: String,
    pub(crate) client_secret: String,
    pub(crate) client: (String, String),
    pub(crate) client_cn: String,
}

/// Shared by the fault windows, which run side by side: the fakes take `&self`, the child
/// processes and the secret state sit behind locks held only briefly.
pub(crate) struct World {
    pub(crate) dir: PathBuf,
    pub(crate) logs: PathBuf,
    pki: DevPki,
    pub(crate) basic: FakeTango,
    pub(crate) dpop: FakeTango,
    pub(crate) redis: tokio::sync::Mutex<Redis>,
    pub(crate) gateways: Vec<tokio::sync::Mutex<Gateway>>,
    /// The replicas' listen addresses (fixed: a restarted replica keeps its port).
    pub(crate) listens: Vec<SocketAddr>,
    state: Mutex<SecretState>,
    redis_url: String,
    redis_password: String,
    dpop_key_pem: String,
}

/// The secret values in use and every one handed out so far.
struct SecretState {
    current: SecretSet,
    /// Every secret value handed out so far (old generations included), for the scan.
    all: Vec<(&'static str, String)>,
    generation: usize,
    rotations: usize,
}

impl World {
    pub(crate) async fn start(gateway_bin: &Path, log_level: &str) -> Result<World> {
        let dir = std::env::temp_dir().join(format!("tango-soak-{}", std::process::id()));
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        std::fs::create_dir_all(dir.join("secrets"))?;
        let pki = DevPki::generate()?;
        std::fs::write(dir.join("ca.pem"), &pki.ca.cert().cert_pem)?;
        let current = new_secret_set(&pki, 0)?;
        let basic = FakeTango::start(
            FakeTangoOptions::from_dev_pki(&pki).with_basic_auth(PLATFORM, &current.api_key),
        )
        .await?;
        let oauth = OAuthServerOptions::new(CLIENT_ID, &current.client_secret)
            .token_lifetime(TOKEN_LIFETIME);
        let dpop = FakeTango::start(FakeTangoOptions::from_dev_pki(&pki).with_oauth(oauth)).await?;
        let redis_password = format!("rp-{}", uuid::Uuid::new_v4().simple());
        let redis = Redis::start(free_port()?, &redis_password, &logs).await?;
        let dpop_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let dpop_key_pem = dpop_key.serialize_pem();
        write_secret(&dir.join("dpop.key"), &dpop_key_pem)?;
        let mut world = World {
            logs,
            pki,
            basic,
            dpop,
            redis_url: redis.url(),
            redis: tokio::sync::Mutex::new(redis),
            gateways: Vec::new(),
            listens: Vec::new(),
            state: Mutex::new(SecretState {
                current: current.clone(),
                all: Vec::new(),
                generation: 0,
                rotations: 0,
            }),
            redis_password,
            dpop_key_pem,
            dir,
        };
        world.remember(&current);
        world.project(&current)?;
        for index in 0..REPLICAS {
            let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let config = world.dir.join(format!("replica-{index}.yaml"));
            std::fs::write(&config, world.yaml(listen, admin, log_level))?;
            let mut gateway = Gateway::new(index, listen, admin, gateway_bin, &config, &world.logs);
            gateway.start().await?;
            world.listens.push(listen);
            world.gateways.push(tokio::sync::Mutex::new(gateway));
        }
        Ok(world)
    }

    fn lock(&self) -> MutexGuard<'_, SecretState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every secret value handed out so far, with what it is.
    pub(crate) fn secrets(&self) -> Vec<(&'static str, String)> {
        self.lock().all.clone()
    }

    /// The secrets in use now.
    pub(crate) fn current(&self) -> SecretSet {
        self.lock().current.clone()
    }

    fn remember(&self, set: &SecretSet) {
        let mut state = self.lock();
        state.all.extend([
            ("API key", set.api_key.clone()),
            ("client secret", set.client_secret.clone()),
            ("Redis password", self.redis_password.clone()),
        ]);
        for key in [&set.client.1, &self.dpop_key_pem] {
            // Each base64 line of a private key's PEM body is itself a secret fragment.
            for line in key
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            {
                state.all.push(("private key (PEM line)", line.to_owned()));
            }
        }
        let basic = base64_basic(PLATFORM, &set.api_key);
        state.all.push(("Basic credentials (base64)", basic));
    }

    /// Writes `set` as a new timestamped directory and points `..data` at it (Kubernetes'
    /// atomic projected-volume update); the first time, also creates the per-file symlinks.
    fn project(&self, set: &SecretSet) -> Result<()> {
        let generation = {
            let mut state = self.lock();
            state.generation += 1;
            state.generation
        };
        let secrets = self.dir.join("secrets");
        let name = format!("..2026_01_01_00_00_{:02}.{generation:09}", generation % 60);
        let target = secrets.join(&name);
        std::fs::create_dir(&target)?;
        let redis_url = self.redis_url.clone();
        for (file, content) in [
            ("tango-api-key", set.api_key.as_str()),
            ("client-secret", set.client_secret.as_str()),
            ("client.pem", set.client.0.as_str()),
            ("client.key", set.client.1.as_str()),
            ("redis-url", redis_url.as_str()),
        ] {
            write_secret(&target.join(file), content)?;
        }
        let data = secrets.join("..data");
        let previous = std::fs::read_link(&data).ok();
        let staged = secrets.join("..data_tmp");
        let _ = std::fs::remove_file(&staged);
        std::os::unix::fs::symlink(&name, &staged)?;
        std::fs::rename(&staged, &data)?;
        for file in SECRET_FILES {
            let link = secrets.join(file);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(file), &link)?;
            }
        }
        if let Some(previous) = previous {
            std::fs::remove_dir_all(secrets.join(previous))?;
        }
        Ok(())
    }

    /// A new API key, client secret and client certificate; Tango accepts the new ones beside
    /// the old (a rotation's overlap). Returns the old set, to revoke once the fleet moved.
    fn next_set(&self) -> Result<(SecretSet, SecretSet)> {
        let rotation = {
            let mut state = self.lock();
            state.rotations += 1;
            state.rotations
        };
        let next = new_secret_set(&self.pki, rotation)?;
        self.basic.accept_basic(PLATFORM, &next.api_key);
        self.dpop
            .accept_client_secret(CLIENT_ID, &next.client_secret);
        self.remember(&next);
        let old = std::mem::replace(&mut self.lock().current, next.clone());
        Ok((old, next))
    }

    /// Rotates every secret by symlink swap (one atomic `..data` rename).
    pub(crate) fn rotate_by_symlink_swap(&self) -> Result<SecretSet> {
        let (old, next) = self.next_set()?;
        self.project(&next)?;
        Ok(old)
    }

    /// Rotates every secret by renaming a new file over each one, inside the directory
    /// `..data` points at (key before certificate, as an orchestrator writing files one by
    /// one would: the gateway may see the mismatched pair in between and must refuse it).
    pub(crate) fn rotate_by_rename(&self) -> Result<SecretSet> {
        let (old, next) = self.next_set()?;
        let data = self.dir.join("secrets").join("..data");
        for (file, content) in [
            ("tango-api-key", next.api_key.as_str()),
            ("client-secret", next.client_secret.as_str()),
            ("client.key", next.client.1.as_str()),
            ("client.pem", next.client.0.as_str()),
        ] {
            let aside = data.join(format!("{file}.new"));
            write_secret(&aside, content)?;
            std::fs::rename(&aside, data.join(file))?;
        }
        Ok(old)
    }

    /// Revokes an old set at Tango (its API key and client secret stop working).
    pub(crate) fn revoke(&self, old: &SecretSet) {
        self.basic.revoke_basic(&old.api_key);
        self.dpop.revoke_client_secret(&old.client_secret);
    }

    /// The fix of an `invalid_client` incident: a new client secret written by rename (the
    /// fake already accepts it; see [`World::break_client_secret`]).
    pub(crate) fn write_client_secret(&self, secret: &str) -> Result<()> {
        let data = self.dir.join("secrets").join("..data");
        let aside = data.join("client-secret.new");
        write_secret(&aside, secret)?;
        std::fs::rename(&aside, data.join("client-secret"))?;
        Ok(())
    }

    /// Tango stops accepting the current client secret and accepts a new one the gateway does
    /// not know yet: its next token request meets `invalid_client`. Returns the new secret.
    pub(crate) fn break_client_secret(&self) -> String {
        let new = format!("cs-fixed-{}", uuid::Uuid::new_v4().simple());
        self.dpop.accept_client_secret(CLIENT_ID, &new);
        let mut state = self.lock();
        self.dpop.revoke_client_secret(&state.current.client_secret);
        state.all.push(("client secret", new.clone()));
        state.current.client_secret = new.clone();
        new
    }

    /// Appends a comment to every replica's configuration (a reload that changes nothing).
    pub(crate) fn touch_configs(&self, note: &str) -> Result<()> {
        for index in 0..self.listens.len() {
            let path = self.dir.join(format!("replica-{index}.yaml"));
            let mut text = std::fs::read_to_string(&path)?;
            text.push_str(&format!("# {note}\n"));
            let aside = path.with_extension("new");
            std::fs::write(&aside, text)?;
            std::fs::rename(&aside, &path)?;
        }
        Ok(())
    }

    fn yaml(&self, listen: SocketAddr, admin: SocketAddr, log_level: &str) -> String {
        let dir = self.dir.display();
        let tls = format!(
            "      tls:\n        ca_file: \"{dir}/ca.pem\"\n        client_cert_file: \"{dir}/secrets/client.pem\"\n        client_key_file: \"{dir}/secrets/client.key\"\n"
        );
        // Short timeouts make hangs and stalls cheap: the soak is about what happens, not how
        // long the defaults wait.
        let upstream = |url: &str| {
            format!(
                "    upstream:\n      url: \"{url}\"\n      timeout: 1s\n      connect_timeout: 1s\n      body_timeout: 1s\n{tls}"
            )
        };
        format!(
            "listen: \"{listen}\"
admin:
  listen: \"{admin}\"
log:
  format: json
  level: {log_level}
inbound:
  allow: [\"127.0.0.0/8\"]
retry:
  max_attempts: 3
  initial_backoff: 50ms
  max_backoff: 1s
token_cache:
  store: redis
  url_file: \"{dir}/secrets/redis-url\"
  key_prefix: soak
shutdown_grace: 1s
routes:
  - name: basic
    match:
      path_prefix: /basic
    strip_prefix: true
{basic_upstream}    auth:
      basic:
        username: {PLATFORM}
        password_file: \"{dir}/secrets/tango-api-key\"
  - name: dpop
    match:
      path_prefix: /dpop
    strip_prefix: true
{dpop_upstream}    auth:
      oauth2:
        token_url: \"{token_url}\"
        grant: client_credentials
        client_id: {CLIENT_ID}
        client_secret_file: \"{dir}/secrets/client-secret\"
        audience: \"https://api.tangocard.com/\"
        scope: raas.all
        client_auth: post
        refresh_at: {REFRESH_AT}
        dpop:
          key_file: \"{dir}/dpop.key\"
",
            basic_upstream = upstream(&self.basic.url()),
            dpop_upstream = upstream(&self.dpop.url()),
            token_url = self.dpop.token_endpoint_url(),
        )
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Children first (their Drop kills them), then the fakes' listeners.
        self.gateways.clear();
        self.redis.get_mut().kill();
        self.basic.shutdown();
        self.dpop.shutdown();
    }
}

fn new_secret_set(pki: &DevPki, generation: usize) -> Result<SecretSet> {
    let client_cn = format!("soak-client-{generation}");
    let client: CertifiedMaterial = pki.ca.issue_client(&ClientSpec::new(client_cn.as_str()))?;
    Ok(SecretSet {
        api_key: format!("key-{}", uuid::Uuid::new_v4().simple()),
        client_secret: format!("cs-{}", uuid::Uuid::new_v4().simple()),
        client: (
            client.cert_pem.clone(),
            client.key_pem.expose_secret().to_owned(),
        ),
        client_cn,
    })
}

/// Writes a file readable by its owner only (as a mounted secret would be).
fn write_secret(path: &Path, content: &str) -> Result<()> {
    std::fs::write(path, content)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

pub(crate) fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}
