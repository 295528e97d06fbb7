//! `tango-gateway demo`: the whole pipeline on this machine with no setup.
//!
//! Certificates are made at start; two in-process fake Tangos enforce client certificates and
//! the ALB's `X-Forwarded-For` rule, one with Basic credentials and one with an OAuth token
//! endpoint issuing DPoP-bound tokens (nonces required on both its endpoints); the gateway is
//! started from a YAML file written next to that material and loaded through the same code as
//! `run`. Then sample calls are made and explained step by step.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use tokio::time::Instant;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tango_sandbox::fake::{
    FakeTango, FakeTangoOptions, Fault, OAuthServerOptions, RecordedRequest, FAKE_TANGO_HEADER,
};
use tango_sandbox::pki::{write_new_file, DevPki, KEY_FILE_MODE};

use crate::app::{self, Running};
use crate::body::Payload;
use crate::config::{self, LogFormat};
use crate::telemetry;
use crate::upstream::client::{build_client, HttpsClient};

const PLATFORM_NAME: &str = "demo-platform";
const OAUTH_CLIENT_ID: &str = "demo-client";
/// Concurrent calls made on the OAuth route to show that they share one token.
const CONCURRENT_CALLS: usize = 20;
/// Fixed ports for `--serve`, so the printed curl commands work as written.
const SERVE_LISTEN: &str = "127.0.0.1:8080";
const SERVE_ADMIN: &str = "127.0.0.1:9901";

/// A private working directory, removed when the demo ends.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "tango-gateway-demo-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Demo {
    dir: WorkDir,
    /// The Basic API key the gateway starts with (step 10 rotates it).
    api_key: String,
    /// The second active API key, the route's fallback (step 11 needs it).
    fallback_key: String,
    fake: FakeTango,
    /// The second Tango: OAuth 2.0 with DPoP, behind the route `/dpop/`.
    oauth_fake: FakeTango,
    gateway: Running,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    /// A second internal service, calling from 127.0.0.2 (the caller `marketing`, §10).
    marketing: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    /// The gateway's own mTLS client, used once to show what Tango's edge does without it.
    direct: HttpsClient,
}

pub async fn run(serve: bool) -> anyhow::Result<()> {
    let _log = telemetry::init(LogFormat::Pretty, "warn");
    let demo = Demo::start(serve).await?;
    let outcome = if serve {
        demo.serve().await
    } else {
        demo.tour().await
    };
    demo.gateway.shutdown().await;
    demo.fake.shutdown();
    demo.oauth_fake.shutdown();
    outcome
}

impl Demo {
    async fn start(serve: bool) -> anyhow::Result<Demo> {
        let dir = WorkDir::create()?;
        step("Making a throwaway PKI (CA, Tango's server certificate, our client certificate)");
        let pki = DevPki::generate().context("generating certificates")?;
        pki.write_to(&dir.0, false)
            .context("writing certificates")?;
        let api_key = format!("demo-key-{}", uuid::Uuid::new_v4().simple());
        let key_file = dir.0.join("tango-api-key");
        write_new_file(&key_file, api_key.as_bytes(), KEY_FILE_MODE, false)
            .context("writing the demo API key")?;
        let fallback_key = format!("demo-key-{}", uuid::Uuid::new_v4().simple());
        write_new_file(
            &dir.0.join("tango-api-key-fallback"),
            fallback_key.as_bytes(),
            KEY_FILE_MODE,
            false,
        )
        .context("writing the demo fallback API key")?;

        let fake = FakeTango::start(
            FakeTangoOptions::from_dev_pki(&pki).with_basic_auth(PLATFORM_NAME, &api_key),
        )
        .await
        .context("starting the fake Tango")?;
        // Tango allows two active API keys: the gateway knows the second as its fallback.
        fake.accept_basic(PLATFORM_NAME, &fallback_key);
        detail(&format!(
            "fake Tango on {} (requires a client certificate from the dev CA, Basic auth with two active keys, IP-only X-Forwarded-For)",
            fake.url()
        ));
        let client_secret = format!("demo-secret-{}", uuid::Uuid::new_v4().simple());
        write_new_file(
            &dir.0.join("client-secret"),
            client_secret.as_bytes(),
            KEY_FILE_MODE,
            false,
        )
        .context("writing the demo client secret")?;
        let dpop_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("making the DPoP key")?;
        write_new_file(
            &dir.0.join("dpop.key"),
            dpop_key.serialize_pem().as_bytes(),
            KEY_FILE_MODE,
            false,
        )
        .context("writing the DPoP key")?;
        let oauth_fake = FakeTango::start(
            FakeTangoOptions::from_dev_pki(&pki).with_oauth(
                OAuthServerOptions::new(OAUTH_CLIENT_ID, &client_secret)
                    .token_nonce()
                    .api_nonce(),
            ),
        )
        .await
        .context("starting the OAuth fake Tango")?;
        detail(&format!(
            "fake Tango with OAuth on {} (token endpoint {}, DPoP-bound tokens, DPoP nonces required)",
            oauth_fake.url(),
            oauth_fake.token_endpoint_url()
        ));

        let config_file = dir.0.join("gateway.yaml");
        let (listen, admin) = if serve {
            (SERVE_LISTEN, SERVE_ADMIN)
        } else {
            ("127.0.0.1:0", "127.0.0.1:0")
        };
        std::fs::write(
            &config_file,
            gateway_yaml(&dir.0, &fake.url(), &oauth_fake.url(), listen, admin),
        )
        .context("writing the gateway config")?;
        let config = config::load(&config_file).map_err(|errors| anyhow!("{errors}"))?;
        let direct = config
            .routes
            .first()
            .map(|route| build_client(&route.upstream))
            .ok_or_else(|| anyhow!("the demo config has no route"))??;
        let gateway = app::start(config).await.context("starting the gateway")?;
        step(&format!(
            "Gateway listening on http://{} (admin http://{}), config {}",
            gateway.listen_addr,
            gateway.admin_addr,
            config_file.display()
        ));
        let client = Client::builder(TokioExecutor::new()).build_http();
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_local_address(Some(std::net::Ipv4Addr::new(127, 0, 0, 2).into()));
        let marketing = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Demo {
            marketing,
            dir,
            api_key,
            fallback_key,
            fake,
            oauth_fake,
            gateway,
            client,
            direct,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<(StatusCode, http::HeaderMap, String)> {
        self.call_as(&self.client, method, path, headers, body)
            .await
    }

    /// An order placed by the `marketing` service (from 127.0.0.2).
    async fn marketing_order(
        &self,
        body: &str,
    ) -> anyhow::Result<(StatusCode, http::HeaderMap, String)> {
        let headers = [("content-type", "application/json")];
        self.call_as(
            &self.marketing,
            Method::POST,
            "/raas/v2/orders",
            &headers,
            body,
        )
        .await
    }

    async fn call_as(
        &self,
        client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<(StatusCode, http::HeaderMap, String)> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.gateway.listen_addr, path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::from(body.to_owned())))?;
        let response = client.request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }

    async fn tour(&self) -> anyhow::Result<()> {
        step("1. A normal call. The caller sends its own Authorization header; it never reaches Tango.");
        self.fake.clear();
        let (status, headers, body) = self
            .call(
                Method::GET,
                "/raas/v2/catalogs",
                &[("authorization", "Basic Y2FsbGVyOmd1ZXNz")],
                "",
            )
            .await?;
        answer(status, &headers, &body);
        let seen = self.fake.received();
        let first = seen
            .first()
            .ok_or_else(|| anyhow!("the fake Tango saw no request"))?;
        expect(status == StatusCode::OK, "the call should succeed")?;
        detail(&format!(
            "Tango saw: client certificate CN={}, Authorization: Basic <{PLATFORM_NAME}:API key> (the caller's value was dropped), HTTP {:?}",
            first.client_cn.as_deref().unwrap_or("none"),
            first.version
        ));

        step("2. X-Forwarded-For with a port: Tango's ALB answers 403 to `ip:port`; the gateway sends IPs only.");
        let direct = Request::get(format!("{}/raas/v2/customers", self.fake.url()))
            .header("x-forwarded-for", "203.0.113.42:54321")
            .body(Payload::Empty)?;
        let response = self.direct.request(direct).await?;
        let server = response
            .headers()
            .get("server")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        detail(&format!(
            "sent straight to Tango's edge with that header: {} from `Server: {server}` (an HTML page, not a credentials error)",
            response.status()
        ));
        self.fake.clear();
        let (status, headers, body) = self
            .call(
                Method::GET,
                "/raas/v2/customers",
                &[("x-forwarded-for", "203.0.113.42:54321")],
                "",
            )
            .await?;
        answer(status, &headers, &body);
        let xff = self
            .fake
            .received()
            .first()
            .and_then(|r| r.header("x-forwarded-for").map(str::to_owned))
            .unwrap_or_default();
        expect(status == StatusCode::OK, "the call should succeed")?;
        detail(&format!(
            "caller sent `203.0.113.42:54321`; Tango received `{xff}`"
        ));

        step("3. Tango answers 503 (Retry-After: 1) twice; the gateway waits and retries the GET.");
        self.fake.clear();
        self.fake.push_fault(Fault::Status {
            status: 503,
            retry_after: Some("1".to_owned()),
            times: 2,
        });
        let started = Instant::now();
        let (status, headers, body) = self.call(Method::GET, "/raas/v2/catalogs", &[], "").await?;
        answer(status, &headers, &body);
        expect(status == StatusCode::OK, "the retried call should succeed")?;
        detail(&format!(
            "{} attempts reached Tango; answered after {:.1} s",
            self.fake.request_count(),
            started.elapsed().as_secs_f64()
        ));

        step("4. An order whose connection is reset after Tango read it: retried only because it carries externalRefID.");
        self.fake.clear();
        self.fake.push_fault(Fault::ResetAfterRead);
        let order = r#"{"externalRefID":"demo-order-1","customerIdentifier":"c1","accountIdentifier":"a1","amount":10,"utid":"U000001","sendEmail":false}"#;
        let (status, headers, body) = self
            .call(
                Method::POST,
                "/raas/v2/orders",
                &[("content-type", "application/json")],
                order,
            )
            .await?;
        answer(status, &headers, &body);
        detail(&format!(
            "{} requests reached Tango, {} order created (Tango treats externalRefID as the idempotency key)",
            self.fake.request_count(),
            self.fake.orders_created()
        ));
        self.fake.clear();
        self.fake.push_fault(Fault::ResetAfterRead);
        let (status, headers, body) = self
            .call(
                Method::POST,
                "/raas/v2/orders",
                &[("content-type", "application/json")],
                r#"{"customerIdentifier":"c1","accountIdentifier":"a1","amount":10,"utid":"U000001"}"#,
            )
            .await?;
        answer(status, &headers, &body);
        expect(
            self.fake.request_count() == 1,
            "a POST without externalRefID must not be resent",
        )?;
        detail("without externalRefID the same failure is not retried: the order may exist, so it is never sent twice");

        step("5. A browser-context call (Origin header) is refused before it reaches Tango.");
        self.fake.clear();
        let (status, headers, body) = self
            .call(
                Method::POST,
                "/raas/v2/orders",
                &[("origin", "https://shop.example")],
                "{}",
            )
            .await?;
        answer(status, &headers, &body);
        expect(
            status == StatusCode::FORBIDDEN && self.fake.request_count() == 0,
            "browser calls are refused",
        )?;

        self.order_safety_tour().await?;
        self.oauth_tour().await?;
        let primary = self.rotation_tour().await?;
        self.fallback_tour(&primary).await?;

        step("Done: every call above went through the same pipeline `tango-gateway run` uses.");
        Ok(())
    }

    /// Order safety (§10): two internal services, `ops` (127.0.0.1, any account) and
    /// `marketing` (127.0.0.2, its own account only, 25 per day).
    async fn order_safety_tour(&self) -> anyhow::Result<()> {
        step("6. Order safety: `marketing` (127.0.0.2) orders on the `ops` account. Refused before Tango sees it.");
        self.fake.clear();
        let (status, headers, body) = self
            .marketing_order(r#"{"externalRefID":"mkt-1","accountIdentifier":"a1","customerIdentifier":"c1","amount":10,"utid":"U000001"}"#)
            .await?;
        answer(status, &headers, &body);
        expect(
            status == StatusCode::FORBIDDEN && self.fake.request_count() == 0,
            "an order for another caller's account is refused, nothing sent",
        )?;
        step("   `marketing` may spend 25 a day: two orders of 10 pass, the third is refused.");
        let before = self.fake.orders_created();
        for n in 1..=3 {
            let order = format!(
                r#"{{"externalRefID":"mkt-{n}","accountIdentifier":"{MARKETING_ACCOUNT}","customerIdentifier":"c1","amount":10,"utid":"U000001"}}"#
            );
            let (status, headers, body) = self.marketing_order(&order).await?;
            answer(status, &headers, &body);
        }
        expect(
            self.fake.orders_created() == before + 2,
            "the spend limit stops the third order",
        )?;
        step("   The same externalRefID with a different amount: 409, Tango would have answered with the first order.");
        let (status, headers, body) = self
            .marketing_order(&format!(
                r#"{{"externalRefID":"mkt-1","accountIdentifier":"{MARKETING_ACCOUNT}","customerIdentifier":"c1","amount":5,"utid":"U000001"}}"#
            ))
            .await?;
        answer(status, &headers, &body);
        expect(
            status == StatusCode::CONFLICT && self.fake.orders_created() == before + 2,
            "a reused externalRefID with another body is refused",
        )?;
        Ok(())
    }

    async fn oauth_tour(&self) -> anyhow::Result<()> {
        let fake = &self.oauth_fake;
        step(&format!(
            "7. OAuth 2.0 + DPoP on the route /dpop/: {CONCURRENT_CALLS} concurrent calls share one token."
        ));
        self.wait_ready().await?;
        detail(&format!(
            "at start-up the gateway fetched the token: {} token requests (the first answered `use_dpop_nonce`, the second carried the nonce), {} token issued",
            fake.token_requests(),
            fake.tokens_issued()
        ));
        let calls = (0..CONCURRENT_CALLS)
            .map(|_| self.call(Method::GET, "/dpop/raas/v2/catalogs?verbose=true", &[], ""));
        let answers = futures_util::future::join_all(calls).await;
        let ok = answers
            .iter()
            .filter(|a| matches!(a, Ok((status, _, _)) if *status == StatusCode::OK))
            .count();
        detail(&format!(
            "{ok} of {CONCURRENT_CALLS} calls answered 200; token requests still {}",
            fake.token_requests()
        ));
        expect(ok == CONCURRENT_CALLS, "every OAuth call should succeed")?;
        expect(fake.tokens_issued() == 1, "one token for every call")?;
        if let Some(request) = fake
            .received()
            .iter()
            .rev()
            .find(|r| r.path_and_query.starts_with("/raas/"))
        {
            describe_proof(request);
        }

        step("8. Tango rotates its DPoP nonce: 401 `use_dpop_nonce`, the gateway signs a new proof with it, same token.");
        fake.rotate_nonce();
        fake.clear();
        let (status, headers, body) = self
            .call(Method::GET, "/dpop/raas/v2/catalogs", &[], "")
            .await?;
        answer(status, &headers, &body);
        expect(
            status == StatusCode::OK,
            "the nonce round trip should succeed",
        )?;
        detail(&format!(
            "Tango saw {} requests: refused for the nonce, then accepted; tokens issued still {}",
            fake.request_count(),
            fake.tokens_issued()
        ));

        step("9. Tango revokes the token: 401, the gateway drops it, fetches one new token and resends once.");
        fake.revoke_tokens();
        fake.clear();
        let (status, headers, body) = self
            .call(Method::GET, "/dpop/raas/v2/catalogs", &[], "")
            .await?;
        answer(status, &headers, &body);
        expect(
            status == StatusCode::OK,
            "the call after a refresh should succeed",
        )?;
        detail(&format!(
            "tokens issued now {}; the caller saw only the 200",
            fake.tokens_issued()
        ));
        Ok(())
    }

    /// Rotates the primary API key; returns the new one.
    async fn rotation_tour(&self) -> anyhow::Result<String> {
        step("10. The API key is rotated live: Tango accepts a new key, its file is replaced, the gateway reloads by itself (no restart), the old key is revoked.");
        let new_key = format!("demo-key-{}", uuid::Uuid::new_v4().simple());
        self.fake.accept_basic(PLATFORM_NAME, &new_key);
        let key_file = self.dir.0.join("tango-api-key");
        let aside = self.dir.0.join("tango-api-key.new");
        write_new_file(&aside, new_key.as_bytes(), KEY_FILE_MODE, true)
            .context("writing the new API key")?;
        std::fs::rename(&aside, &key_file).context("replacing the API key file")?;
        let started = Instant::now();
        while self.gateway.generation() < 2 {
            if started.elapsed() > std::time::Duration::from_secs(10) {
                return Err(anyhow!("the gateway did not reload the new key"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        detail(&format!(
            "configuration generation 2 in service {} ms after the file changed",
            started.elapsed().as_millis()
        ));
        self.fake.revoke_basic(&self.api_key);
        self.fake.clear();
        let (status, headers, body) = self.call(Method::GET, "/raas/v2/catalogs", &[], "").await?;
        answer(status, &headers, &body);
        let sent_new = self.fake.received().iter().any(|r| {
            r.header("authorization")
                .is_some_and(|v| v == basic_value(PLATFORM_NAME, &new_key))
        });
        expect(
            status == StatusCode::OK && sent_new,
            "the call after the rotation uses the new key",
        )?;
        detail("Tango saw the new key (the old one is refused now); the caller changed nothing");
        Ok(new_key)
    }

    /// Two active API keys (§11): the primary deactivated at Tango, the fallback takes over.
    async fn fallback_tour(&self, primary: &str) -> anyhow::Result<()> {
        step("11. Tango deactivates the primary API key: the first call gets 401 and is resent once with the fallback key; the next calls use the fallback (no restart, no reload).");
        self.fake.revoke_basic(primary);
        self.fake.clear();
        let mut ok = 0;
        for _ in 0..3 {
            let (status, headers, body) =
                self.call(Method::GET, "/raas/v2/catalogs", &[], "").await?;
            answer(status, &headers, &body);
            ok += usize::from(status == StatusCode::OK);
        }
        let keys: Vec<&str> = self
            .fake
            .received()
            .iter()
            .map(|r| match r.header("authorization") {
                Some(v) if v == basic_value(PLATFORM_NAME, primary) => "primary (401)",
                Some(v) if v == basic_value(PLATFORM_NAME, &self.fallback_key) => "fallback",
                _ => "other",
            })
            .collect();
        detail(&format!("Tango saw, in order: {}", keys.join(", ")));
        expect(
            ok == 3 && keys.first() == Some(&"primary (401)") && keys.len() == 4,
            "every call succeeds on the fallback after one 401",
        )?;
        let metrics = self.admin_text("/metrics").await?;
        for line in metrics
            .lines()
            .filter(|l| l.starts_with("tango_gateway_basic_key_"))
        {
            detail(line);
        }
        let readyz = self.admin_text("/readyz").await?;
        detail(&format!("/readyz: {readyz}"));
        detail("(the warn line above is the gateway's log of the switch; it names the route, never a key)");
        Ok(())
    }

    /// GET on the admin listener: the body as text.
    async fn admin_text(&self, path: &str) -> anyhow::Result<String> {
        let uri = format!("http://{}{path}", self.gateway.admin_addr);
        let request = Request::get(uri.as_str()).body(Full::new(Bytes::new()))?;
        let body = self.client.request(request).await?.into_body();
        Ok(String::from_utf8_lossy(&body.collect().await?.to_bytes()).into_owned())
    }

    /// Polls `/readyz` until the first OAuth token is in (at most 10 s).
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let uri = format!("http://{}/readyz", self.gateway.admin_addr);
        for _ in 0..200 {
            let request = Request::get(uri.as_str()).body(Full::new(Bytes::new()))?;
            if self.client.request(request).await?.status() == StatusCode::OK {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(anyhow!("the gateway did not become ready (no OAuth token)"))
    }

    async fn serve(&self) -> anyhow::Result<()> {
        let base = format!("http://{}", self.gateway.listen_addr);
        step("Serving until Ctrl-C. Try:");
        println!("    curl -i {base}/raas/v2/catalogs");
        println!("    curl -i -H 'X-Forwarded-For: 203.0.113.42:54321' {base}/raas/v2/customers");
        println!("    curl -i -X POST -H 'Content-Type: application/json' -d '{{\"externalRefID\":\"x1\",\"amount\":5}}' {base}/raas/v2/orders");
        println!("    curl -i -H 'Origin: https://shop.example' {base}/raas/v2/catalogs");
        println!("    curl -i {base}/dpop/raas/v2/catalogs      # OAuth 2.0 + DPoP route");
        println!("    curl -i http://{}/readyz", self.gateway.admin_addr);
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        Ok(())
    }
}

/// What Tango received on the OAuth route: the proof's claims (never the token itself).
fn describe_proof(request: &RecordedRequest) {
    use base64::Engine as _;
    let scheme = request
        .header("authorization")
        .and_then(|v| v.split_once(' '))
        .map_or("none", |(scheme, _)| scheme);
    let claims = request
        .header("dpop")
        .and_then(|proof| proof.split('.').nth(1))
        .and_then(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .unwrap_or_default();
    let short = |v: &serde_json::Value| {
        let text = v.as_str().unwrap_or("-");
        format!("{}…", text.chars().take(12).collect::<String>())
    };
    detail(&format!(
        "one of them as Tango saw it: `Authorization: {scheme} <token>` and a DPoP proof with htm={} htu={} jti={} ath={} nonce={}",
        claims["htm"].as_str().unwrap_or("-"),
        claims["htu"].as_str().unwrap_or("-"),
        claims["jti"].as_str().unwrap_or("-"),
        short(&claims["ath"]),
        short(&claims["nonce"]),
    ));
    detail("(the htu has no query string although the call had one; the fake verified signature, key binding (cnf.jkt), ath, iat and jti replay)");
}

fn gateway_yaml(
    dir: &Path,
    upstream: &str,
    oauth_upstream: &str,
    listen: &str,
    admin: &str,
) -> String {
    let file = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"# Written by `tango-gateway demo`: the same schema as config/gateway.example.yaml.
listen: "{listen}"
admin:
  listen: "{admin}"
log:
  format: pretty
  level: warn
inbound:
  allow: ["127.0.0.0/8", "::1/128"]
forwarded_for:
  mode: append
retry:
  initial_backoff: 100ms
  max_backoff: 2s
# Order safety (§10): who may order for which account, how much, never one reference twice.
callers:
  - name: ops
    sources: ["127.0.0.1/32", "::1/128"]
  - name: marketing
    sources: ["127.0.0.2/32"]
    accounts: ["{MARKETING_ACCOUNT}"]
    spend_limit: {{amount: 25, window: 24h}}
orders:
  duplicate_window: 24h
  store: memory
routes:
  - name: raas
    match:
      path_prefix: /raas/v2/
    upstream:
      url: "{upstream}"
      timeout: 15s
      tls:
        ca_file: "{ca}"
        client_cert_file: "{cert}"
        client_key_file: "{key}"
    auth:
      basic:
        username: "{PLATFORM_NAME}"
        password_file: "{api_key}"
        # Tango's second active key (§11): used after a 401 to the primary, for fallback_hold.
        fallback_password_file: "{fallback_key}"
        fallback_hold: 5m
  - name: raas-dpop
    match:
      path_prefix: /dpop/
    strip_prefix: true
    upstream:
      url: "{oauth_upstream}"
      tls:
        ca_file: "{ca}"
        client_cert_file: "{cert}"
        client_key_file: "{key}"
    auth:
      oauth2:
        token_url: "{oauth_upstream}/oauth/token"
        grant: client_credentials
        client_id: "{OAUTH_CLIENT_ID}"
        client_secret_file: "{client_secret}"
        audience: "https://api.tangocard.com/"
        scope: raas.all
        dpop:
          key_file: "{dpop_key}"
"#,
        client_secret = file("client-secret"),
        dpop_key = file("dpop.key"),
        ca = file("ca.pem"),
        cert = file("client.pem"),
        key = file("client.key"),
        api_key = file("tango-api-key"),
        fallback_key = file("tango-api-key-fallback"),
    )
}

/// The account the demo's `marketing` caller may order on.
const MARKETING_ACCOUNT: &str = "a-marketing";

/// `Basic base64(user:password)`, to recognise what Tango received.
fn basic_value(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn detail(text: &str) {
    println!("    {text}");
}

fn answer(status: StatusCode, headers: &http::HeaderMap, body: &str) {
    let origin = if headers.contains_key(FAKE_TANGO_HEADER) {
        "Tango".to_owned()
    } else if let Some(code) = headers
        .get(crate::error::ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        format!("the gateway ({code})")
    } else {
        "the gateway".to_owned()
    };
    let mut shown: String = body.chars().take(160).collect();
    if body.chars().count() > 160 {
        shown.push('…');
    }
    println!("    <- {status} from {origin}: {shown}");
}

fn expect(condition: bool, what: &str) -> anyhow::Result<()> {
    if condition {
        Ok(())
    } else {
        Err(anyhow!("demo expectation failed: {what}"))
    }
}
