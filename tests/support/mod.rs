//! Shared harness: a dev PKI and an API key in a temporary directory, a fake Tango in front of
//! them, and a gateway started from a YAML file through `config::load_with_env`, as `run` does.
//!
//! Invariant: everything is per test (port 0, fresh certificates, fresh key), so tests are
//! hermetic and can run in parallel.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;
use tango_gateway::app::{self, Running};
use tango_sandbox::fake::{
    FakeTango, FakeTangoOptions, OAuthServerOptions, RecordedRequest, TokenFault, FAKE_TANGO_HEADER,
};
use tango_sandbox::pki::{write_new_file, Ca, ClientSpec, DevPki, KEY_FILE_MODE};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub(crate) mod process;
pub(crate) mod redis;
pub(crate) mod wire;

pub(crate) const PLATFORM: &str = "test-platform";
pub(crate) const ERROR_HEADER: &str = "x-tango-gateway-error";

/// Which TLS material the gateway's route is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tls {
    /// The dev CA as trust anchor and the dev client certificate: what the fake accepts.
    Mtls,
    /// The dev CA, no client certificate.
    NoClientCert,
    /// The dev CA, a client certificate issued by another CA.
    ForeignClientCert,
    /// Another CA as trust anchor (the fake's server certificate is unknown), dev client cert.
    ForeignServerCa,
}

pub(crate) const CLIENT_ID: &str = "test-client";
pub(crate) const SERVICE_ACCOUNT: &str = "svc-account";
pub(crate) const AUDIENCE: &str = "https://api.tangocard.com/";

/// How the route's OAuth 2.0 credentials and the fake's token endpoint are set up.
#[derive(Debug, Clone)]
pub(crate) struct OAuth {
    /// `client_credentials` or `password`.
    pub grant: &'static str,
    /// `post` or `basic`.
    pub client_auth: &'static str,
    /// DPoP key: `None` (Bearer), `Some(false)` key file, `Some(true)` ephemeral.
    pub dpop: Option<bool>,
    pub token_lifetime: Duration,
    pub refresh_at: Option<f64>,
    /// `token_cache.store: file` in the test directory.
    pub file_store: bool,
    /// The fake's token endpoint demands a DPoP nonce.
    pub token_nonce: bool,
    /// The fake's API demands a DPoP nonce.
    pub api_nonce: bool,
    /// The fake answers Bearer tokens although a proof was sent.
    pub bearer_only: bool,
    /// The gateway is configured with a client secret the fake does not accept.
    pub wrong_secret: bool,
    /// Before the gateway starts: the token endpoint answers 503 to everything.
    pub token_endpoint_down: bool,
    /// Before the gateway starts: the first token request is answered after this delay.
    pub first_token_delay: Option<Duration>,
    /// A whole `token_cache:` block (e.g. a Redis store), instead of `file_store`'s.
    pub token_cache: Option<String>,
    /// `dpop.clock` (`local` or `server`); absent when `None`.
    pub dpop_clock: Option<&'static str>,
}

impl Default for OAuth {
    fn default() -> Self {
        OAuth {
            grant: "client_credentials",
            client_auth: "post",
            dpop: Some(false),
            token_lifetime: Duration::from_secs(86_400),
            refresh_at: None,
            file_store: false,
            token_nonce: false,
            api_nonce: false,
            bearer_only: false,
            wrong_secret: false,
            token_endpoint_down: false,
            first_token_delay: None,
            token_cache: None,
            dpop_clock: None,
        }
    }
}

/// The knobs of the gateway YAML; defaults are a working mTLS + Basic route `raas`.
pub(crate) struct Setup {
    xff_mode: String,
    xff_static_ip: Option<String>,
    allow: Vec<String>,
    sources: Option<Vec<String>>,
    extra_routes: Vec<(String, String, Option<Vec<String>>)>,
    retry: BTreeMap<String, String>,
    upstream: BTreeMap<String, String>,
    tls: Tls,
    max_body_bytes: Option<u64>,
    max_concurrent_requests: Option<usize>,
    /// Further `inbound` keys, written as given.
    inbound: BTreeMap<String, String>,
    wrong_key: bool,
    fake_tls12_only: bool,
    oauth: Option<OAuth>,
    log: (&'static str, &'static str),
}

/// Everything of a harness but the gateway: for tests that run the binary themselves.
pub(crate) struct Staged {
    pub dir: TempDir,
    pub pki: DevPki,
    pub api_key: String,
    pub client_secret: String,
    pub service_password: String,
    pub config_file: PathBuf,
    pub fake: FakeTango,
}

impl Staged {
    /// Starts a gateway from the staged config file (which the test may have edited).
    pub(crate) async fn start(self) -> Harness {
        let gateway = start_gateway(&self.config_file).await;
        Harness {
            dir: self.dir,
            pki: self.pki,
            api_key: self.api_key,
            client_secret: self.client_secret,
            service_password: self.service_password,
            config_file: self.config_file,
            fake: self.fake,
            gateway,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Setup {
    pub(crate) fn new() -> Setup {
        // Fast backoff by default so retry tests take milliseconds, not seconds.
        let retry = [("initial_backoff", "5ms"), ("max_backoff", "2s")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        Setup {
            xff_mode: "peer".to_owned(),
            xff_static_ip: None,
            allow: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            sources: None,
            extra_routes: Vec::new(),
            retry: retry.into_iter().collect(),
            upstream: BTreeMap::new(),
            tls: Tls::Mtls,
            max_body_bytes: None,
            max_concurrent_requests: None,
            inbound: BTreeMap::new(),
            wrong_key: false,
            fake_tls12_only: false,
            oauth: None,
            log: ("pretty", "warn"),
        }
    }
    /// `log.format` and `log.level` (default `pretty`, `warn`).
    pub(crate) fn log(mut self, format: &'static str, level: &'static str) -> Self {
        self.log = (format, level);
        self
    }
    /// Every route authenticates with OAuth 2.0 against the fake's token endpoint.
    pub(crate) fn oauth(mut self, oauth: OAuth) -> Self {
        self.oauth = Some(oauth);
        self
    }
    pub(crate) fn forwarded_for(mut self, mode: &str, static_ip: Option<&str>) -> Self {
        self.xff_mode = mode.to_owned();
        self.xff_static_ip = static_ip.map(str::to_owned);
        self
    }
    pub(crate) fn allow(mut self, cidrs: &[&str]) -> Self {
        self.allow = cidrs.iter().map(|c| c.to_string()).collect();
        self
    }
    /// `match.sources` of the main route `raas`.
    pub(crate) fn sources(mut self, cidrs: &[&str]) -> Self {
        self.sources = Some(cidrs.iter().map(|c| c.to_string()).collect());
        self
    }
    /// Another route to the same fake, with the same TLS and credentials.
    pub(crate) fn extra_route(
        mut self,
        name: &str,
        prefix: &str,
        sources: Option<&[&str]>,
    ) -> Self {
        let sources = sources.map(|s| s.iter().map(|c| c.to_string()).collect());
        self.extra_routes
            .push((name.to_owned(), prefix.to_owned(), sources));
        self
    }
    /// A key of the top-level `retry` block (overrides the harness default).
    pub(crate) fn retry(mut self, key: &str, value: &str) -> Self {
        self.retry.insert(key.to_owned(), value.to_owned());
        self
    }
    /// A key of every route's `upstream` block (`timeout`, `deadline`, `url`, ...).
    pub(crate) fn upstream(mut self, key: &str, value: &str) -> Self {
        self.upstream.insert(key.to_owned(), value.to_owned());
        self
    }
    pub(crate) fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }
    pub(crate) fn max_concurrent_requests(mut self, max: usize) -> Self {
        self.max_concurrent_requests = Some(max);
        self
    }
    /// Sets `inbound.<key>` (e.g. `body_read_timeout`, `"500ms"`).
    pub(crate) fn inbound(mut self, key: &str, value: &str) -> Self {
        self.inbound.insert(key.to_owned(), value.to_owned());
        self
    }

    pub(crate) fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = Some(bytes);
        self
    }
    /// The fake speaks TLS 1.2 only.
    pub(crate) fn fake_tls12_only(mut self) -> Self {
        self.fake_tls12_only = true;
        self
    }
    /// The gateway is configured with a key the fake does not accept.
    pub(crate) fn wrong_key(mut self) -> Self {
        self.wrong_key = true;
        self
    }

    pub(crate) async fn start(self) -> Harness {
        self.start_with(|_| {}).await
    }

    /// Starts, calling `prepare` on the fake before the gateway starts (to queue faults the
    /// gateway's first token request meets).
    pub(crate) async fn start_with(self, prepare: impl FnOnce(&FakeTango)) -> Harness {
        let staged = self.stage_with(prepare).await;
        let gateway = start_gateway(&staged.config_file).await;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Harness {
            dir: staged.dir,
            pki: staged.pki,
            api_key: staged.api_key,
            client_secret: staged.client_secret,
            service_password: staged.service_password,
            config_file: staged.config_file,
            fake: staged.fake,
            gateway,
            client,
        }
    }

    /// The PKI, secrets, fake and config file, without starting a gateway.
    pub(crate) async fn stage_with(self, prepare: impl FnOnce(&FakeTango)) -> Staged {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::generate().unwrap();
        pki.write_to(dir.path(), false).unwrap();
        let api_key = format!("key-{}", uuid::Uuid::new_v4().simple());
        let configured = if self.wrong_key {
            "not-the-key".to_owned()
        } else {
            api_key.clone()
        };
        let key_file = dir.path().join("tango-api-key");
        write_new_file(&key_file, configured.as_bytes(), KEY_FILE_MODE, false).unwrap();
        let other = Ca::new("another CA").unwrap();
        let foreign = other
            .issue_client(&ClientSpec::new("foreign-client"))
            .unwrap();
        write_pem(dir.path(), "other-ca.pem", &other.cert().cert_pem, false);
        write_pem(dir.path(), "foreign-client.pem", &foreign.cert_pem, false);
        write_pem(
            dir.path(),
            "foreign-client.key",
            foreign.key_pem.expose_secret(),
            true,
        );

        let client_secret = format!("cs-{}", uuid::Uuid::new_v4().simple());
        let service_password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let mut options = FakeTangoOptions::from_dev_pki(&pki);
        if self.fake_tls12_only {
            options = options.tls12_only();
        }
        options = match &self.oauth {
            None => options.with_basic_auth(PLATFORM, &api_key),
            Some(oauth) => {
                let mut server = OAuthServerOptions::new(CLIENT_ID, &client_secret)
                    .with_service_account(SERVICE_ACCOUNT, &service_password)
                    .token_lifetime(oauth.token_lifetime);
                if oauth.dpop.is_none() {
                    server = server.without_dpop();
                }
                if oauth.token_nonce {
                    server = server.token_nonce();
                }
                if oauth.api_nonce {
                    server = server.api_nonce();
                }
                if oauth.bearer_only {
                    server = server.bearer_only();
                }
                let configured = if oauth.wrong_secret {
                    "not-the-secret"
                } else {
                    client_secret.as_str()
                };
                write_new_file(
                    &dir.path().join("client-secret"),
                    configured.as_bytes(),
                    KEY_FILE_MODE,
                    false,
                )
                .unwrap();
                write_new_file(
                    &dir.path().join("service-password"),
                    service_password.as_bytes(),
                    KEY_FILE_MODE,
                    false,
                )
                .unwrap();
                let dpop_key =
                    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                write_pem(dir.path(), "dpop.key", &dpop_key.serialize_pem(), true);
                options.with_oauth(server)
            }
        };
        let fake = FakeTango::start(options).await.unwrap();
        if let Some(oauth) = &self.oauth {
            fake.set_token_endpoint_down(oauth.token_endpoint_down);
            if let Some(delay) = oauth.first_token_delay {
                fake.push_token_fault(TokenFault::Delay(delay));
            }
        }
        prepare(&fake);
        let config_file = dir.path().join("gateway.yaml");
        std::fs::write(&config_file, self.yaml(dir.path(), &fake.url(), &key_file)).unwrap();
        Staged {
            dir,
            pki,
            api_key,
            client_secret,
            service_password,
            config_file,
            fake,
        }
    }

    fn yaml(&self, dir: &Path, fake_url: &str, key_file: &Path) -> String {
        let file = |name: &str| dir.join(name).display().to_string();
        let list = |v: &[String]| {
            format!(
                "[{}]",
                v.iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut y = String::from("listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n");
        y += &format!("log:\n  format: {}\n  level: {}\n", self.log.0, self.log.1);
        y += &format!("inbound:\n  allow: {}\n", list(&self.allow));
        if let Some(max) = self.max_body_bytes {
            y += &format!("  max_body_bytes: {max}\n");
        }
        if let Some(max) = self.max_concurrent_requests {
            y += &format!("  max_concurrent_requests: {max}\n");
        }
        for (k, v) in &self.inbound {
            y += &format!("  {k}: {v}\n");
        }
        y += &format!("forwarded_for:\n  mode: {}\n", self.xff_mode);
        if let Some(ip) = &self.xff_static_ip {
            y += &format!("  static_ip: \"{ip}\"\n");
        }
        y += "retry:\n";
        for (k, v) in &self.retry {
            y += &format!("  {k}: {v}\n");
        }
        let (ca, cert) = match self.tls {
            Tls::Mtls => ("ca.pem", Some(("client.pem", "client.key"))),
            Tls::NoClientCert => ("ca.pem", None),
            Tls::ForeignClientCert => {
                ("ca.pem", Some(("foreign-client.pem", "foreign-client.key")))
            }
            Tls::ForeignServerCa => ("other-ca.pem", Some(("client.pem", "client.key"))),
        };
        let mut upstream = self.upstream.clone();
        upstream
            .entry("url".to_owned())
            .or_insert_with(|| format!("\"{fake_url}\""));
        let mut routes = vec![(
            "raas".to_owned(),
            "/raas/v2/".to_owned(),
            self.sources.clone(),
        )];
        routes.extend(self.extra_routes.iter().cloned());
        y += "routes:\n";
        for (name, prefix, sources) in routes {
            y += &format!("  - name: {name}\n    match:\n      path_prefix: {prefix}\n");
            if let Some(sources) = sources {
                y += &format!("      sources: {}\n", list(&sources));
            }
            y += "    upstream:\n";
            for (k, v) in &upstream {
                y += &format!("      {k}: {v}\n");
            }
            y += &format!("      tls:\n        ca_file: \"{}\"\n", file(ca));
            if let Some((cert, key)) = cert {
                y += &format!("        client_cert_file: \"{}\"\n", file(cert));
                y += &format!("        client_key_file: \"{}\"\n", file(key));
            }
            match &self.oauth {
                None => {
                    y += &format!(
                        "    auth:\n      basic:\n        username: \"{PLATFORM}\"\n        password_file: \"{}\"\n",
                        key_file.display()
                    );
                }
                Some(oauth) => y += &oauth_yaml(oauth, dir, fake_url),
            }
        }
        if let Some(oauth) = &self.oauth {
            if oauth.file_store {
                y += &format!(
                    "token_cache:\n  store: file\n  path: \"{}\"\n",
                    file("tokens.json")
                );
            } else if let Some(block) = &oauth.token_cache {
                y += block;
            }
        }
        y
    }
}

fn oauth_yaml(oauth: &OAuth, dir: &Path, fake_url: &str) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    let mut y = String::from("    auth:\n      oauth2:\n");
    y += &format!("        token_url: \"{fake_url}/oauth/token\"\n");
    y += &format!("        grant: {}\n", oauth.grant);
    y += &format!("        client_id: {CLIENT_ID}\n");
    y += &format!(
        "        client_secret_file: \"{}\"\n",
        file("client-secret")
    );
    if oauth.grant == "password" {
        y += &format!("        username: {SERVICE_ACCOUNT}\n");
        y += &format!("        password_file: \"{}\"\n", file("service-password"));
    }
    y += &format!("        audience: \"{AUDIENCE}\"\n        scope: raas.all\n");
    y += &format!("        client_auth: {}\n", oauth.client_auth);
    if let Some(refresh_at) = oauth.refresh_at {
        y += &format!("        refresh_at: {refresh_at}\n");
    }
    match oauth.dpop {
        None => {}
        Some(false) => {
            y += &format!(
                "        dpop:\n          key_file: \"{}\"\n",
                file("dpop.key")
            )
        }
        Some(true) => y += "        dpop:\n          ephemeral: true\n",
    }
    if let (Some(_), Some(clock)) = (oauth.dpop, oauth.dpop_clock) {
        y += &format!("          clock: {clock}\n");
    }
    y
}

/// Loads `config_file` as `run` does and starts a gateway from it.
pub(crate) async fn start_gateway(config_file: &Path) -> Running {
    let config = tango_gateway::config::load_with_env(config_file, &HashMap::new())
        .unwrap_or_else(|e| panic!("harness config refused:\n{e}"));
    app::start(config).await.unwrap()
}

fn write_pem(dir: &Path, name: &str, pem: &str, secret: bool) -> PathBuf {
    let path = dir.join(name);
    let mode = if secret { KEY_FILE_MODE } else { 0o644 };
    write_new_file(&path, pem.as_bytes(), mode, false).unwrap();
    path
}

/// An answer read completely: status, headers, body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// `error.code` of a gateway-made JSON error.
    pub(crate) fn error_code(&self) -> Option<String> {
        let json: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        json["error"]["code"].as_str().map(str::to_owned)
    }
    pub(crate) fn is_from_fake(&self) -> bool {
        self.headers.contains_key(FAKE_TANGO_HEADER)
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts a gateway-made error: status, JSON code, error header, not from the fake.
    pub(crate) fn assert_gateway_error(&self, status: u16, code: &str) {
        let body = String::from_utf8_lossy(&self.body);
        assert_eq!(self.status.as_u16(), status, "status; body: {body}");
        assert_eq!(self.error_code().as_deref(), Some(code), "body: {body}");
        assert_eq!(self.header(ERROR_HEADER), Some(code));
        assert!(
            !self.is_from_fake(),
            "a gateway error must not come from the fake"
        );
    }
}

pub(crate) struct Harness {
    pub dir: TempDir,
    pub pki: DevPki,
    pub api_key: String,
    /// The OAuth client secret and service-account password the fake accepts.
    pub client_secret: String,
    pub service_password: String,
    pub config_file: PathBuf,
    pub fake: FakeTango,
    pub gateway: Running,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Harness {
    pub(crate) async fn start() -> Harness {
        Setup::new().start().await
    }

    /// Stops the gateway and starts a new one from the same config file (same fake).
    pub(crate) async fn restart_gateway(&mut self) {
        let fresh = start_gateway(&self.config_file).await;
        let old = std::mem::replace(&mut self.gateway, fresh);
        old.shutdown().await;
    }

    /// GET on the admin listener: (status, body).
    pub(crate) async fn admin_get(&self, path: &str) -> (StatusCode, serde_json::Value) {
        let uri = format!("http://{}{}", self.gateway.admin_addr, path);
        let response = self
            .client
            .request(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("the admin listener answers");
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    /// GET on the admin listener: the body as text (for `/metrics`).
    pub(crate) async fn admin_text(&self, path: &str) -> String {
        let uri = format!("http://{}{}", self.gateway.admin_addr, path);
        let response = self
            .client
            .request(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("the admin listener answers");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Polls `/readyz` until it answers 200 (panics after 10 s).
    pub(crate) async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.admin_get("/readyz").await.0 == StatusCode::OK {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the gateway did not become ready: {:?}",
            self.admin_get("/readyz").await
        );
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gateway.listen_addr, path)
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, &[], "").await
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut builder = Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = self
            .send(builder.body(Full::new(body.into())).unwrap())
            .await;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .expect("reading the answer body")
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Sends a request and returns the response with its body unread.
    pub(crate) async fn send(&self, request: Request<Full<Bytes>>) -> Response<Incoming> {
        self.client
            .request(request)
            .await
            .expect("the gateway answers")
    }

    /// The one request the fake recorded (fails if it saw none or several).
    pub(crate) fn only_request(&self) -> RecordedRequest {
        let seen = self.fake.received();
        assert_eq!(
            seen.len(),
            1,
            "the fake should have seen exactly one request: {seen:#?}"
        );
        seen.into_iter().next().unwrap()
    }

    /// Writes `request` verbatim on a new TCP connection; returns the status and whole answer.
    pub(crate) async fn raw(&self, request: &str) -> (u16, String) {
        let mut tcp = TcpStream::connect(self.gateway.listen_addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(10), wire::read_one_answer(&mut tcp));
        let text = read.await.expect("the gateway answers within 10 s");
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    /// GET `path` straight from the fake (mTLS, Basic), bypassing the gateway.
    pub(crate) async fn direct(&self, path: &str) -> Answer {
        wire::direct_get(&self.fake, &self.pki, &self.api_key, path).await
    }
}
