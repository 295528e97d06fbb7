//! Entry points for the fuzz targets in `fuzz/` (`cargo +nightly fuzz list`): thin wrappers
//! over the `pub(crate)` functions they exercise, so no module has to be made public for them.
//!
//! Compiled only with the cargo feature `fuzzing` (off by default; `fuzz/Cargo.toml` turns it
//! on), and hidden from the documentation: the shipped library's surface does not grow. Each
//! wrapper adds nothing to what it wraps but the conversion of its types to plain ones; the
//! invariants are asserted by the targets themselves, against their own reference rules.
#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

pub use crate::config::ForwardedForMode;
use crate::inbound::route::{RouteTable, Selection};

/// `inbound::path::normalise`: the path matched against routes and sent upstream, or why it
/// is refused (the refusal's text, which goes to the caller).
pub fn normalise_path(raw: &str) -> Result<String, String> {
    crate::inbound::path::normalise(raw)
        .map(std::borrow::Cow::into_owned)
        .map_err(|bad| bad.to_string())
}

/// `inbound::path::has_prefix`: whole-segment prefix match.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    crate::inbound::path::has_prefix(path, prefix)
}

/// One route of [`ROUTES`]: a normalised prefix and the source networks it admits (`None`:
/// every peer).
#[derive(Debug, Clone, Copy)]
pub struct FuzzRoute {
    pub name: &'static str,
    pub prefix: &'static str,
    pub sources: Option<&'static [&'static str]>,
}

/// The fixed table [`select_route`] selects from, in file order: nested prefixes, equal
/// prefixes with different sources (file order decides), the root, IPv4 and IPv6 sources.
pub const ROUTES: &[FuzzRoute] = &[
    FuzzRoute {
        name: "orders-internal",
        prefix: "/raas/v2/orders",
        sources: Some(&["10.0.0.0/8", "fd00::/8"]),
    },
    FuzzRoute {
        name: "orders-office",
        prefix: "/raas/v2/orders",
        sources: Some(&["192.168.0.0/16"]),
    },
    FuzzRoute {
        name: "raas",
        prefix: "/raas/v2",
        sources: None,
    },
    FuzzRoute {
        name: "catalogs",
        prefix: "/raas/v2/catalogs",
        sources: Some(&["127.0.0.0/8", "::1/128"]),
    },
    FuzzRoute {
        name: "raas-v1",
        prefix: "/raas/v1",
        sources: Some(&[]),
    },
    FuzzRoute {
        name: "admin-ish",
        prefix: "/a",
        sources: Some(&["0.0.0.0/0"]),
    },
];

/// What [`select_route`] chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChoice {
    /// The name of the chosen route in [`ROUTES`].
    Route(String),
    ForbiddenSource,
    NoRoute,
}

fn route_table() -> &'static RouteTable<()> {
    static TABLE: std::sync::OnceLock<RouteTable<()>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        RouteTable::from_entries(ROUTES.iter().map(|route| {
            let sources = route.sources.map(|nets| {
                nets.iter()
                    .filter_map(|net| net.parse::<IpNet>().ok())
                    .collect::<Vec<_>>()
            });
            (route.name, route.prefix, sources, ())
        }))
    })
}

/// `RouteTable::select` over [`ROUTES`], for a normalised path and a peer.
pub fn select_route(path: &str, peer: IpAddr) -> RouteChoice {
    match route_table().select_for(path, peer, None) {
        Selection::Route(entry) => RouteChoice::Route(entry.name().to_string()),
        Selection::ForbiddenSource => RouteChoice::ForbiddenSource,
        Selection::NoRoute => RouteChoice::NoRoute,
    }
}

/// `headers::forwarded::rewrite`: `X-Forwarded-For` rewritten in place for `mode` and `peer`.
pub fn rewrite_forwarded(headers: &mut HeaderMap, mode: ForwardedForMode, peer: IpAddr) {
    crate::headers::forwarded::rewrite(headers, mode, peer);
}

/// `headers::clean_request_headers`: what a caller may not pass to Tango, removed in place.
pub fn clean_request_headers(headers: &mut HeaderMap) {
    crate::headers::clean_request_headers(headers);
}

/// `retry::idempotency::has_external_ref_id`: a top-level non-empty string `externalRefID`.
pub fn has_external_ref_id(body: &[u8]) -> bool {
    crate::retry::idempotency::has_external_ref_id(body)
}

/// `retry::backoff::parse_retry_after`: the wait a `Retry-After` value asks for at `now`.
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    crate::retry::backoff::parse_retry_after(value, now)
}

/// A configuration problem as `(key path, message)`.
pub type Problem = (String, String);

/// The YAML config loader (`config::load_with_env`) over one file per process, rewritten on
/// every call, with a fixed environment: `TANGO_PLATFORM_NAME` set and `KEY_FILE` naming a
/// secret file whose content is [`ConfigLoader::SECRET`].
#[derive(Debug)]
pub struct ConfigLoader {
    dir: PathBuf,
    file: PathBuf,
    env: HashMap<String, String>,
}

impl ConfigLoader {
    /// The content of the secret file `${KEY_FILE}` names: no message may quote it.
    pub const SECRET: &'static str = "fuzz-secret-value-do-not-log";

    /// A loader writing into a new directory under the system temp directory.
    pub fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "tango-gateway-fuzz-config-{}-{}",
            std::process::id(),
            crate::random_id::uuid_v4()
        ));
        std::fs::create_dir_all(&dir)?;
        let secret = dir.join("api-key");
        std::fs::write(&secret, format!("  {}\n", Self::SECRET))?;
        let mut env = HashMap::new();
        env.insert("TANGO_PLATFORM_NAME".to_owned(), "acme".to_owned());
        env.insert("KEY_FILE".to_owned(), secret.display().to_string());
        Ok(ConfigLoader {
            file: dir.join("gateway.yaml"),
            dir,
            env,
        })
    }

    /// The path of the configuration file (what a whole-file problem names).
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// Loads `yaml`: `Ok` for a valid configuration, else every problem, and the errors'
    /// `Display` (one line per problem).
    pub fn load(&self, yaml: &[u8]) -> std::io::Result<Result<(), (Vec<Problem>, String)>> {
        std::fs::write(&self.file, yaml)?;
        Ok(match crate::config::load_with_env(&self.file, &self.env) {
            Ok(_) => Ok(()),
            Err(errors) => {
                let shown = errors.to_string();
                let problems = errors
                    .problems
                    .into_iter()
                    .map(|p| (p.path, p.message))
                    .collect();
                Err((problems, shown))
            }
        })
    }
}

impl Drop for ConfigLoader {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The token answer parser (`TokenClient::parse_token`, private to its module), reached
/// through its only caller, `TokenClient::fetch`: a loopback token endpoint answers every
/// request `200` with the body given to [`TokenAnswers::parse`].
pub struct TokenAnswers {
    runtime: tokio::runtime::Runtime,
    client: crate::auth::oauth::client::TokenClient,
    body: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl std::fmt::Debug for TokenAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswers").finish_non_exhaustive()
    }
}

/// What [`TokenAnswers::parse`] made of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOutcome {
    /// A token of this kind (`"Bearer"` or `"DPoP"`), its secret and lifetime.
    Token {
        kind: &'static str,
        secret: String,
        lifetime: Duration,
    },
    /// Refused: the error's text and whether it is permanent.
    Refused { message: String, permanent: bool },
}

impl TokenAnswers {
    /// A credential that is DPoP-bound when `dpop` is true, against a loopback endpoint.
    pub fn new(dpop: bool) -> Result<Self, String> {
        use crate::auth::dpop::DpopKey;
        use crate::config::{ClientAuthMethod, OAuth2Config, OAuthGrant, TlsConfig};
        use secrecy::SecretString;
        use std::io::{Read, Write};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let body: Arc<std::sync::Mutex<Vec<u8>>> = Arc::default();
        let served = Arc::clone(&body);
        // The endpoint: HTTP/1.1 keep-alive, one answer per request; the request's body is
        // read by its Content-Length and ignored.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let served = Arc::clone(&served);
                std::thread::spawn(move || {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let head_end = loop {
                            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                                break at + 4;
                            }
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                            }
                        };
                        let head = String::from_utf8_lossy(buffer.get(..head_end).unwrap_or(&[]))
                            .to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        while buffer.len() < head_end + length {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                            }
                        }
                        buffer.drain(..head_end + length);
                        let answer = served.lock().map(|b| b.clone()).unwrap_or_default();
                        let mut response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            answer.len()
                        )
                        .into_bytes();
                        response.extend_from_slice(&answer);
                        if stream.write_all(&response).is_err() {
                            return;
                        }
                    }
                });
            }
        });

        let ca = tango_sandbox::pki::Ca::new("fuzz CA").map_err(|e| e.to_string())?;
        let config = OAuth2Config {
            token_url: format!("http://127.0.0.1:{port}/oauth/token")
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?,
            grant: OAuthGrant::ClientCredentials,
            client_id: "client".to_owned(),
            client_secret: SecretString::from("client-secret-do-not-log".to_owned()),
            username: None,
            password: None,
            audience: None,
            scope: None,
            client_auth: ClientAuthMethod::Post,
            refresh_at: 0.8,
            dpop: None,
            dpop_clock: Default::default(),
            tls: TlsConfig {
                extra_roots: vec![ca.cert().cert_der.clone()],
                ..TlsConfig::default()
            },
            proxy: None,
        };
        let key = if dpop {
            Some(Arc::new(DpopKey::generate().map_err(|e| e.to_string())?))
        } else {
            None
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // The HTTPS client is built inside the runtime (hyper-util's pool needs one).
        let client = runtime.block_on(async {
            crate::auth::oauth::client::TokenClient::new(Arc::new(config), key, Arc::default())
                .map_err(|e| e.to_string())
        })?;
        Ok(TokenAnswers {
            runtime,
            client,
            body,
        })
    }

    /// True when the credential is DPoP-bound.
    pub fn is_dpop(&self) -> bool {
        self.client.token_kind() == crate::auth::oauth::token::TokenKind::Dpop
    }

    /// The token endpoint answers `200` with `answer`; what the credential makes of it.
    pub fn parse(&self, answer: &[u8]) -> TokenOutcome {
        use secrecy::ExposeSecret;
        if let Ok(mut body) = self.body.lock() {
            body.clear();
            body.extend_from_slice(answer);
        }
        match self.runtime.block_on(self.client.fetch()) {
            Ok(token) => TokenOutcome::Token {
                kind: token.kind().as_str(),
                secret: token.secret().expose_secret().to_owned(),
                lifetime: token
                    .expires_at()
                    .duration_since(token.obtained_at())
                    .unwrap_or_default(),
            },
            Err(err) => TokenOutcome::Refused {
                permanent: err.is_permanent(),
                message: err.to_string(),
            },
        }
    }
}
