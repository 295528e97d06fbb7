//! The serde mirror of the YAML file (PRODUCT.md §3), before any validation.
//!
//! Invariants: every struct denies unknown keys, so a typo is an error naming its key path;
//! almost every field is optional here so that a missing key becomes a validation problem
//! (reported with all the others) rather than a parse error that stops at the first one.
//! Nothing here is `Debug`-printed into a message: secrets are still plain strings at this stage.

use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A scalar read as text. YAML and `try_parsing` env overrides turn `12345` or `true` into
/// numbers and booleans; a string field accepts them as their text.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of scalars; a single scalar counts as a one-item list (an env override such as
/// `TANGO_GATEWAY__RETRY__RETRY_ON=429` arrives as a number, not a list).
#[derive(Clone, PartialEq, Eq, Default)]
pub(super) struct Texts(pub Vec<Text>);

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Texts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts, A::Error> {
                let mut out = Vec::new();
                while let Some(t) = seq.next_element::<Text>()? {
                    out.push(t);
                }
                Ok(Texts(out))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Texts, E> {
                Ok(Texts(vec![Text(v.to_string())]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Texts, E> {
                Ok(Texts(vec![Text(v.to_string())]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Texts, E> {
                Ok(Texts(vec![Text(v.to_string())]))
            }
        }
        d.deserialize_any(V)
    }
}

// The schema of the hand-written deserialisers above, said by hand: what each accepts.
impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A scalar read as text (numbers and booleans count as their text).",
            "type": ["string", "number", "boolean"]
        })
    }
}

impl JsonSchema for Texts {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Texts".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let item = generator.subschema_for::<Text>();
        json_schema!({
            "description": "A list of scalars; a single scalar counts as a one-item list.",
            "anyOf": [
                { "type": "array", "items": item },
                { "type": ["string", "number"] }
            ]
        })
    }
}

impl JsonSchema for RawAuth {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Auth".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let map = generator.subschema_for::<RawAuthMap>();
        json_schema!({
            "description": "`none` (the string), or a map with `basic` or `oauth2`.",
            "oneOf": [ { "const": "none" }, map ]
        })
    }
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<Text>,
    pub admin: Option<RawAdmin>,
    pub log: Option<RawLog>,
    pub telemetry: Option<RawTelemetry>,
    pub inbound: Option<RawInbound>,
    pub forwarded_for: Option<RawForwardedFor>,
    pub retry: Option<RawRetry>,
    pub token_cache: Option<RawTokenCache>,
    pub shutdown_grace: Option<Text>,
    pub callers: Option<Vec<RawCaller>>,
    pub orders: Option<RawOrders>,
    pub audit: Option<RawAudit>,
    pub routes: Option<Vec<RawRoute>>,
}

impl RawConfig {
    /// Every file the configuration reads besides itself (secrets, certificates, keys), in
    /// file order: what a reload watches. The token store file is not among them: the
    /// gateway writes it.
    pub(super) fn referenced_files(&self) -> Vec<String> {
        fn tls_files(tls: Option<&RawTls>) -> [Option<&Text>; 3] {
            tls.map_or([None; 3], |t| {
                [
                    t.ca_file.as_ref(),
                    t.client_cert_file.as_ref(),
                    t.client_key_file.as_ref(),
                ]
            })
        }
        let mut files: Vec<Option<&Text>> = Vec::new();
        for route in self.routes.iter().flatten() {
            let tls = route.upstream.as_ref().and_then(|u| u.tls.as_ref());
            files.extend(tls_files(tls));
            files.push(
                route
                    .upstream
                    .as_ref()
                    .and_then(|u| u.proxy_auth_file.as_ref()),
            );
            if let Some(RawAuth::Map(auth)) = &route.auth {
                if let Some(basic) = &auth.basic {
                    files.push(basic.password_file.as_ref());
                    files.push(basic.fallback_password_file.as_ref());
                }
                if let Some(oauth) = &auth.oauth2 {
                    files.extend(tls_files(oauth.tls.as_ref()));
                    files.push(oauth.client_secret_file.as_ref());
                    files.push(oauth.proxy_auth_file.as_ref());
                    files.push(oauth.password_file.as_ref());
                    files.push(oauth.dpop.as_ref().and_then(|d| d.key_file.as_ref()));
                }
            }
        }
        files.push(self.token_cache.as_ref().and_then(|c| c.url_file.as_ref()));
        files.push(self.orders.as_ref().and_then(|o| o.url_file.as_ref()));
        files
            .into_iter()
            .flatten()
            .map(|Text(path)| path.trim().to_owned())
            .filter(|path| !path.is_empty())
            .collect()
    }
}

impl RawConfig {
    /// Every file that holds a secret or a private key, with its key path: the files that
    /// must not be readable by group or others (`check` warns, §11).
    pub(super) fn secret_files(&self) -> Vec<(String, String)> {
        let mut files: Vec<(String, Option<&Text>)> = Vec::new();
        for (i, route) in self.routes.iter().flatten().enumerate() {
            let base = format!("routes[{i}]");
            if let Some(upstream) = &route.upstream {
                files.push((
                    format!("{base}.upstream.proxy_auth_file"),
                    upstream.proxy_auth_file.as_ref(),
                ));
            }
            if let Some(tls) = route.upstream.as_ref().and_then(|u| u.tls.as_ref()) {
                files.push((
                    format!("{base}.upstream.tls.client_key_file"),
                    tls.client_key_file.as_ref(),
                ));
            }
            if let Some(RawAuth::Map(auth)) = &route.auth {
                if let Some(basic) = &auth.basic {
                    files.push((
                        format!("{base}.auth.basic.password_file"),
                        basic.password_file.as_ref(),
                    ));
                }
                if let Some(oauth) = &auth.oauth2 {
                    let key = |k: &str| format!("{base}.auth.oauth2.{k}");
                    files.push((key("client_secret_file"), oauth.client_secret_file.as_ref()));
                    files.push((key("proxy_auth_file"), oauth.proxy_auth_file.as_ref()));
                    files.push((key("password_file"), oauth.password_file.as_ref()));
                    files.push((
                        key("dpop.key_file"),
                        oauth.dpop.as_ref().and_then(|d| d.key_file.as_ref()),
                    ));
                    files.push((
                        key("tls.client_key_file"),
                        oauth.tls.as_ref().and_then(|t| t.client_key_file.as_ref()),
                    ));
                }
            }
        }
        files.push((
            "token_cache.url_file".to_owned(),
            self.token_cache.as_ref().and_then(|c| c.url_file.as_ref()),
        ));
        files.push((
            "orders.url_file".to_owned(),
            self.orders.as_ref().and_then(|o| o.url_file.as_ref()),
        ));
        files
            .into_iter()
            .filter_map(|(key, file)| file.map(|Text(path)| (key, path.trim().to_owned())))
            .filter(|(_, path)| !path.is_empty())
            .collect()
    }
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<Text>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<Text>,
    pub level: Option<Text>,
}

/// OpenTelemetry (§13).
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    /// Trace export over OTLP HTTP/protobuf; off when no endpoint is given (here or by
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp: Option<RawOtlp>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtlp {
    /// The collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g.
    /// `http://127.0.0.1:4318`); spans are posted to `<endpoint>/v1/traces`.
    pub endpoint: Option<Text>,
    /// `service.name` of the exported spans (default `tango-gateway`).
    pub service_name: Option<Text>,
    /// The share of new traces recorded, 0 to 1 (default 1); a caller's sampled
    /// `traceparent` is always honoured.
    pub sample_ratio: Option<f64>,
    /// The endpoint came from `OTEL_EXPORTER_OTLP_ENDPOINT`, not the file (for messages).
    #[serde(skip)]
    #[schemars(skip)]
    pub endpoint_from_env: bool,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInbound {
    pub allow: Option<Texts>,
    pub max_body_bytes: Option<u64>,
    pub header_read_timeout: Option<Text>,
    pub body_read_timeout: Option<Text>,
    pub idle_timeout: Option<Text>,
    pub max_connections: Option<usize>,
    pub http2_max_concurrent_streams: Option<u32>,
    pub max_concurrent_requests: Option<usize>,
    pub reject_browser_requests: Option<bool>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwardedFor {
    pub mode: Option<Text>,
    pub static_ip: Option<Text>,
}

#[derive(Deserialize, Default, Clone, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub max_attempts: Option<u32>,
    pub initial_backoff: Option<Text>,
    pub max_backoff: Option<Text>,
    pub multiplier: Option<f64>,
    pub jitter: Option<Text>,
    pub retry_on: Option<Texts>,
    pub budget_ratio: Option<f32>,
    pub budget_min_per_sec: Option<u32>,
    pub post_requires: Option<Text>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenCache {
    pub store: Option<Text>,
    pub path: Option<Text>,
    pub url: Option<Text>,
    /// The Redis URL read from a file (it may hold a password).
    pub url_file: Option<Text>,
    pub key_prefix: Option<Text>,
    pub lock_timeout: Option<Text>,
}

/// One entry of `callers` (§10): a named caller, matched on the TCP peer.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCaller {
    pub name: Option<Text>,
    pub sources: Option<Texts>,
    /// The `accountIdentifier`s it may use (absent: any).
    pub accounts: Option<Texts>,
    /// The `customerIdentifier`s it may use (absent: any).
    pub customers: Option<Texts>,
    pub spend_limit: Option<RawSpendLimit>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpendLimit {
    /// In the account's currency units, as in the order's `amount`.
    pub amount: Option<Text>,
    pub window: Option<Text>,
}

/// `orders` (§10): the `externalRefID` ledger, on whenever the block is present.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrders {
    pub require_external_ref_id: Option<bool>,
    pub duplicate_window: Option<Text>,
    pub store: Option<Text>,
    pub path: Option<Text>,
    pub url: Option<Text>,
    /// The Redis URL read from a file (it may hold a password).
    pub url_file: Option<Text>,
    pub key_prefix: Option<Text>,
    /// The most references the memory and file ledgers keep (oldest evicted first).
    pub max_references: Option<usize>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    /// The hash-chained audit file (optional; order events also go to the log).
    pub path: Option<Text>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: Option<Text>,
    #[serde(rename = "match")]
    pub matches: Option<RawMatch>,
    pub strip_prefix: Option<bool>,
    pub upstream: Option<RawUpstream>,
    pub auth: Option<RawAuth>,
    pub retry: Option<RawRetry>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub path_prefix: Option<Text>,
    pub sources: Option<Texts>,
    /// Names from `callers`: only their requests may use the route.
    pub callers: Option<Texts>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub url: Option<Text>,
    pub timeout: Option<Text>,
    pub connect_timeout: Option<Text>,
    pub body_timeout: Option<Text>,
    pub deadline: Option<Text>,
    pub allow_insecure_upstream: Option<bool>,
    pub tls: Option<RawTls>,
    /// An `http://` forward proxy reached with CONNECT.
    pub proxy: Option<Text>,
    /// `user:password` for the proxy (Basic `Proxy-Authorization` on the CONNECT).
    pub proxy_auth: Option<Text>,
    pub proxy_auth_file: Option<Text>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub ca_file: Option<Text>,
    pub client_cert_file: Option<Text>,
    pub client_key_file: Option<Text>,
    pub allow_long_validity: Option<bool>,
}

/// `auth: none` (a string) or a map with `basic` or `oauth2` (§9).
pub(super) enum RawAuth {
    /// The string, kept to check it is exactly `none`.
    Word(String),
    Map(Box<RawAuthMap>),
}

impl<'de> Deserialize<'de> for RawAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAuth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the string `none`, or a map with `basic` or `oauth2`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAuth, E> {
                Ok(RawAuth::Word(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAuth, A::Error> {
                // Goes through the same MapAccess, so unknown keys keep their full key path.
                RawAuthMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|m| RawAuth::Map(Box::new(m)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthMap {
    pub basic: Option<RawBasic>,
    pub oauth2: Option<RawOAuth2>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasic {
    pub username: Option<Text>,
    pub password: Option<Text>,
    pub password_file: Option<Text>,
    /// A second active API key (§11), sent once after a `401` to the primary.
    pub fallback_password: Option<Text>,
    pub fallback_password_file: Option<Text>,
    /// How long an accepted fallback stays in use before the primary is tried again.
    pub fallback_hold: Option<Text>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth2 {
    pub token_url: Option<Text>,
    pub grant: Option<Text>,
    pub client_id: Option<Text>,
    pub client_secret: Option<Text>,
    pub client_secret_file: Option<Text>,
    pub username: Option<Text>,
    pub password: Option<Text>,
    pub password_file: Option<Text>,
    pub audience: Option<Text>,
    pub scope: Option<Text>,
    pub client_auth: Option<Text>,
    pub refresh_at: Option<f64>,
    pub dpop: Option<RawDpop>,
    pub tls: Option<RawTls>,
    /// The token endpoint's proxy; the route's `upstream.proxy` when absent.
    pub proxy: Option<Text>,
    pub proxy_auth: Option<Text>,
    pub proxy_auth_file: Option<Text>,
}

#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDpop {
    pub key_file: Option<Text>,
    pub ephemeral: Option<bool>,
    /// `local` (default) or `server`: sign `iat` with the measured offset of the server's clock.
    pub clock: Option<Text>,
}
