//! The validated configuration: what the rest of the gateway reads.
//!
//! Invariant: a `Config` value only exists after every check of PRODUCT.md §3 passed. Secrets
//! are `SecretString` (redacted `Debug`, zeroized on drop), never plain `String`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;

use crate::certs::ClientIdentity;

/// Default per-attempt timeout until response headers: Tango recommends holding 15 s.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence allowed between two chunks of a response body (§9).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;
/// The longest wait for each chunk of a request body (§12): a stalled upload is answered 408.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keep-alive or h2 connection with no request in flight stays open (§12).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Inbound connections open at once; beyond, new ones are closed at once (§12).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Concurrent streams one h2c connection may open (§12).
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file was read from (for reload and messages).
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub inbound: InboundConfig,
    pub forwarded_for: ForwardedForMode,
    pub token_cache: TokenCacheConfig,
    pub shutdown_grace: Duration,
    /// Named callers (§10); empty = callers are not identified.
    pub callers: Vec<CallerConfig>,
    /// The `externalRefID` ledger (§10), on when the block is present.
    pub orders: Option<OrdersConfig>,
    pub audit: AuditConfig,
    pub routes: Vec<RouteConfig>,
}

/// One named caller (§10).
#[derive(Debug, Clone, PartialEq)]
pub struct CallerConfig {
    pub name: String,
    pub sources: Vec<IpNet>,
    /// The `accountIdentifier`s it may use; `None` = any.
    pub accounts: Option<Vec<String>>,
    /// The `customerIdentifier`s it may use; `None` = any.
    pub customers: Option<Vec<String>>,
    pub spend_limit: Option<SpendLimit>,
}

impl CallerConfig {
    /// True when its requests are checked against account or customer lists.
    pub fn is_scoped(&self) -> bool {
        self.accounts.is_some() || self.customers.is_some()
    }
}

/// A caller's spend limit: total order amount Tango accepted in a sliding window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendLimit {
    /// As written, in the account's currency units.
    pub amount: f64,
    pub window: Duration,
}

/// `orders` (§10).
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersConfig {
    pub require_external_ref_id: bool,
    pub duplicate_window: Duration,
    pub store: OrderStoreConfig,
    pub max_references: usize,
}

/// Where the ledger and spend windows live. `Debug` by hand: a Redis URL may hold a password.
#[derive(Clone, PartialEq, Eq)]
pub enum OrderStoreConfig {
    Memory,
    File { path: PathBuf },
    Redis { url: String, key_prefix: String },
}

impl std::fmt::Debug for OrderStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderStoreConfig::Memory => f.write_str("Memory"),
            OrderStoreConfig::File { path } => f.debug_struct("File").field("path", path).finish(),
            OrderStoreConfig::Redis { url, key_prefix } => f
                .debug_struct("Redis")
                .field("url", &super::net::redact_userinfo(url))
                .field("key_prefix", key_prefix)
                .finish(),
        }
    }
}

/// `audit` (§10).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditConfig {
    /// The hash-chained audit file, when configured.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `info` or `tango_gateway=debug`.
    pub level: String,
}

/// OpenTelemetry (§13); `otlp` is `None` (the default) when tracing is off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    pub otlp: Option<OtlpConfig>,
}

/// Trace export over OTLP HTTP/protobuf.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The collector's base URL, without a trailing `/` (no credential in it).
    pub endpoint: String,
    /// `<endpoint>/v1/traces`: where spans are posted.
    pub traces_url: String,
    pub service_name: String,
    /// The share of new root traces sampled (0..=1); a caller's decision is followed.
    pub sample_ratio: f64,
}

#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// Peers admitted at all; empty = deny all. A route's `sources` narrows this further.
    pub allow: Vec<IpNet>,
    pub max_body_bytes: u64,
    /// From accept to a complete request head, protocol detection included; then for each
    /// later request head from its first byte.
    pub header_read_timeout: Duration,
    /// The longest wait for each chunk of a request body.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
    pub max_concurrent_requests: usize,
    pub reject_browser_requests: bool,
}

/// How `X-Forwarded-For` is written upstream (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedForMode {
    Peer,
    Append,
    Static(IpAddr),
    Remove,
}

/// `Debug` is written by hand: a Redis URL may carry a password in its userinfo.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenCacheConfig {
    Memory,
    File {
        path: PathBuf,
    },
    Redis {
        url: String,
        key_prefix: String,
        /// How long the refresh lock lives: the longest a replica that died holding it can
        /// keep the fleet from refreshing.
        lock_timeout: Duration,
    },
}

impl std::fmt::Debug for TokenCacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenCacheConfig::Memory => f.write_str("Memory"),
            TokenCacheConfig::File { path } => f.debug_struct("File").field("path", path).finish(),
            TokenCacheConfig::Redis {
                url,
                key_prefix,
                lock_timeout,
            } => f
                .debug_struct("Redis")
                .field("url", &super::net::redact_userinfo(url))
                .field("key_prefix", key_prefix)
                .field("lock_timeout", lock_timeout)
                .finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    /// Normalised: starts with `/`, no trailing `/` (except the root route `/`).
    pub path_prefix: String,
    /// The route's own `match.sources`; `None` = `inbound.allow` alone decides.
    pub sources: Option<Vec<IpNet>>,
    /// The route's `match.callers` (names from `callers`); `None` = any caller.
    pub callers: Option<Vec<String>>,
    pub strip_prefix: bool,
    pub upstream: UpstreamConfig,
    pub auth: AuthConfig,
    /// The default `retry` block with this route's overrides applied key by key.
    pub retry: RetryConfig,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `https://host[:port]` (plain `http` only with `allow_insecure_upstream`); path prefix allowed.
    pub url: super::UpstreamUrl,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub body_timeout: Duration,
    pub deadline: Option<Duration>,
    pub allow_insecure_upstream: bool,
    pub tls: TlsConfig,
    /// `upstream.proxy`: reached with CONNECT; TLS to the upstream runs inside the tunnel.
    pub proxy: Option<ProxyConfig>,
}

/// An `http://` forward proxy (§13). `Debug` shows the URL only.
#[derive(Clone)]
pub struct ProxyConfig {
    /// `http://host:port` (the port made explicit).
    pub url: http::Uri,
    /// `user:password`, sent as Basic `Proxy-Authorization` on the CONNECT only.
    pub auth: Option<SecretString>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("url", &self.url.to_string())
            .field("auth", &self.auth.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ProxyConfig {
    /// `host:port`, for logs.
    pub fn address(&self) -> String {
        self.url
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_owned())
    }
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    /// Parsed contents of `ca_file`, added to the system roots.
    pub extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Loaded and checked client certificate chain and key (mTLS).
    pub client_identity: Option<ClientIdentity>,
    pub allow_long_validity: bool,
}

#[derive(Debug, Clone)]
pub enum AuthConfig {
    None,
    Basic(BasicAuthConfig),
    OAuth2(Box<OAuth2Config>),
}

impl AuthConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            AuthConfig::None => "none",
            AuthConfig::Basic(_) => "basic",
            AuthConfig::OAuth2(_) => "oauth2",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BasicAuthConfig {
    /// Tango platform name.
    pub username: String,
    /// Tango API key.
    pub password: SecretString,
    /// A second active API key, for a rotation (§11).
    pub fallback: Option<BasicFallback>,
}

/// The second API key of a Basic route and how long it stays in use once accepted.
#[derive(Debug, Clone)]
pub struct BasicFallback {
    pub password: SecretString,
    pub hold: Duration,
}

/// `auth.basic.fallback_hold` when not given.
pub const DEFAULT_FALLBACK_HOLD: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthGrant {
    ClientCredentials,
    Password,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    Post,
    Basic,
}

#[derive(Debug, Clone)]
pub enum DpopKeyConfig {
    /// P-256 PKCS#8 PEM file (read and checked at load).
    KeyFile(PathBuf),
    Ephemeral,
}

/// The clock a DPoP proof's `iat` is read on (`dpop.clock`, §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpopClock {
    /// The gateway's own clock.
    #[default]
    Local,
    /// The gateway's clock plus the offset measured from the server's `Date` headers.
    Server,
}

#[derive(Debug, Clone)]
pub struct OAuth2Config {
    pub token_url: http::Uri,
    pub grant: OAuthGrant,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Service account, `grant: password` only.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub audience: Option<String>,
    pub scope: Option<String>,
    pub client_auth: ClientAuthMethod,
    /// Fraction of the token lifetime after which a background refresh starts (0 < x < 1).
    pub refresh_at: f64,
    pub dpop: Option<DpopKeyConfig>,
    /// `dpop.clock`; `Local` without DPoP.
    pub dpop_clock: DpopClock,
    /// `oauth2.tls`, or the route's `upstream.tls` when absent (§9).
    pub tls: TlsConfig,
    /// `oauth2.proxy`, or the route's `upstream.proxy` when absent (the same egress path).
    pub proxy: Option<ProxyConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    Full,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostRequires {
    ExternalRefId,
    IdempotencyKey,
    Never,
}

/// What counts as a retryable outcome (`retry.retry_on`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryOn {
    pub connect_failure: bool,
    pub timeout: bool,
    pub reset: bool,
    pub statuses: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Total tries, the first included; 1 disables retries.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
    pub jitter: Jitter,
    pub retry_on: RetryOn,
    pub budget_ratio: f32,
    pub budget_min_per_sec: u32,
    pub post_requires: PostRequires,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: Jitter::Full,
            retry_on: RetryOn {
                connect_failure: true,
                timeout: true,
                reset: true,
                statuses: vec![429, 502, 503, 504],
            },
            budget_ratio: 0.2,
            budget_min_per_sec: 10,
            post_requires: PostRequires::ExternalRefId,
        }
    }
}
