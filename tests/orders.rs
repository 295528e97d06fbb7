//! Order safety end to end (PRODUCT.md §10, codes in §4): named callers, account scoping,
//! spend limits, the `externalRefID` ledger, the stores (memory, file across a restart,
//! Redis for a fleet), audit events and the gauges, all through real sockets against the
//! real binary (`tango-gateway run`) in front of the fake Tango.
//!
//! Callers are told apart by the TCP peer: every test client binds its socket to a loopback
//! address before connecting (127.0.0.1 `payouts`: scoped to `A-PAY`/`C-PAY`, limit 100;
//! 127.0.0.2 `reports`: unscoped, no limit; 127.0.0.3: in `inbound.allow` but no caller's).
//! Nothing here asserts an upper bound on time: tests wait on observable events (the fake's
//! records, log lines), with generous guards only against a hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use support::process::{Process, BIN};
use support::redis::RedisServer;
use support::{Answer, Setup, Staged};
use tango_sandbox::fake::Fault;
use tokio::time::Instant;

/// `payouts`: scoped to `A-PAY` / `C-PAY`, with a spend limit.
const PAYOUTS: &str = "127.0.0.1";
/// `reports`: no account lists, no limit.
const REPORTS: &str = "127.0.0.2";
/// In `inbound.allow` (127.0.0.0/8) but in no caller's sources.
const STRANGER: &str = "127.0.0.3";

const ORDERS: &str = "/raas/v2/orders";
const GATEWAY_ERROR: &str = "x-tango-gateway-error";
/// Guard against a hang only (never a timing assertion).
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Configuration and harness
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
enum Store {
    Memory,
    /// `store: file` at `orders-ledger.json` in the test directory.
    File,
    Redis {
        url: String,
        prefix: String,
    },
}

/// The §10 part of the gateway's YAML.
#[derive(Clone)]
struct Policy {
    /// `payouts`' `spend_limit.amount` (window 24h).
    limit: Option<u32>,
    /// The `orders` block (`None`: no ledger).
    store: Option<Store>,
    require_external_ref_id: bool,
    /// `match.callers` of the route `raas`.
    route_callers: Option<&'static str>,
    /// Top-level `retry.max_attempts` (every route's default).
    max_attempts: Option<u32>,
    /// `audit.path` at `audit.jsonl` in the test directory.
    audit_file: bool,
    /// A second route, `catalogs` (`/raas/v2/catalogs`), with no `match.callers`.
    catalogs_route: bool,
    /// A third caller, `batch`, on `127.0.0.0/28` (around `payouts`' and `reports`' /32s).
    batch_caller: bool,
    /// `orders.duplicate_window`.
    duplicate_window: &'static str,
    /// `payouts`' `spend_limit.window`.
    spend_window: &'static str,
    /// Keys of every route's `upstream` block (`timeout`, `deadline`).
    upstream: &'static [(&'static str, &'static str)],
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            limit: Some(100),
            store: Some(Store::Memory),
            require_external_ref_id: false,
            route_callers: None,
            max_attempts: None,
            audit_file: false,
            catalogs_route: false,
            batch_caller: false,
            duplicate_window: "24h",
            spend_window: "24h",
            upstream: &[],
        }
    }
}

impl Policy {
    fn yaml(&self, dir: &Path) -> String {
        let mut y = String::from("callers:\n");
        y += &format!("  - name: payouts\n    sources: [\"{PAYOUTS}/32\"]\n");
        y += "    accounts: [\"A-PAY\"]\n    customers: [\"C-PAY\"]\n";
        if let Some(limit) = self.limit {
            y += &format!(
                "    spend_limit: {{amount: {limit}, window: {}}}\n",
                self.spend_window
            );
        }
        y += &format!("  - name: reports\n    sources: [\"{REPORTS}/32\"]\n");
        if self.batch_caller {
            y += "  - name: batch\n    sources: [\"127.0.0.0/28\"]\n";
        }
        if let Some(store) = &self.store {
            y += "orders:\n";
            y += &format!(
                "  require_external_ref_id: {}\n  duplicate_window: {}\n  max_references: 1000000\n",
                self.require_external_ref_id, self.duplicate_window
            );
            match store {
                Store::Memory => y += "  store: memory\n",
                Store::File => {
                    y += &format!(
                        "  store: file\n  path: \"{}\"\n",
                        dir.join("orders-ledger.json").display()
                    )
                }
                Store::Redis { url, prefix } => {
                    y += &format!("  store: redis\n  url: \"{url}\"\n  key_prefix: {prefix}\n")
                }
            }
        }
        if self.audit_file {
            y += &format!(
                "audit:\n  path: \"{}\"\n",
                dir.join("audit.jsonl").display()
            );
        }
        y
    }
}

/// Stages the harness (fake Tango, PKI, key, YAML) and adds the §10 blocks to its YAML.
async fn stage(policy: &Policy) -> Staged {
    let mut setup = Setup::new().log("json", "info");
    if let Some(n) = policy.max_attempts {
        setup = setup.retry("max_attempts", &n.to_string());
    }
    for (key, value) in policy.upstream {
        setup = setup.upstream(key, value);
    }
    if policy.catalogs_route {
        setup = setup.extra_route("catalogs", "/raas/v2/catalogs", None);
    }
    let staged = setup.stage_with(|_| {}).await;
    let mut yaml = std::fs::read_to_string(&staged.config_file).unwrap();
    if let Some(callers) = policy.route_callers {
        let prefix = "      path_prefix: /raas/v2/\n";
        assert!(yaml.contains(prefix), "the harness YAML changed:\n{yaml}");
        yaml = yaml.replacen(prefix, &format!("{prefix}      callers: {callers}\n"), 1);
    }
    yaml += &policy.yaml(staged.dir.path());
    std::fs::write(&staged.config_file, yaml).unwrap();
    staged
}

/// A client whose connections come from `from` (a loopback address).
fn client_from(from: &str) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(from.parse::<IpAddr>().unwrap()));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// One request from `from` to `addr`, read completely.
async fn call(addr: SocketAddr, from: &str, method: Method, path: &str, body: &str) -> Answer {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let exchange = async {
        let response = client_from(from)
            .request(request)
            .await
            .expect("the gateway answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the answer body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to {path} from {from} within {PATIENCE:?}"))
}

/// The gateway binary and its fake Tango.
struct Rig {
    staged: Staged,
    gateway: Process,
}

impl Rig {
    async fn start(policy: Policy) -> Rig {
        let staged = stage(&policy).await;
        let gateway = Process::start(&staged.config_file).await;
        Rig { staged, gateway }
    }

    async fn call(&self, from: &str, method: Method, path: &str, body: &str) -> Answer {
        call(self.gateway.listen, from, method, path, body).await
    }

    async fn get(&self, from: &str, path: &str) -> Answer {
        self.call(from, Method::GET, path, "").await
    }

    async fn order(&self, from: &str, body: &str) -> Answer {
        self.call(from, Method::POST, ORDERS, body).await
    }

    async fn metrics(&self) -> String {
        metrics_of(self.gateway.admin).await
    }

    /// A graceful restart (SIGTERM, exit, start again from the same file).
    async fn restart(&mut self) {
        self.gateway.signal("TERM");
        let status = self.gateway.wait_exit(PATIENCE).await;
        assert!(status.success(), "the gateway exited with {status}");
        self.gateway = Process::start(&self.staged.config_file).await;
    }

    fn fake(&self) -> &tango_sandbox::fake::FakeTango {
        &self.staged.fake
    }
}

async fn metrics_of(admin: SocketAddr) -> String {
    let answer = call(admin, "127.0.0.1", Method::GET, "/metrics", "").await;
    assert_eq!(answer.status, 200);
    String::from_utf8(answer.body.to_vec()).unwrap()
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn window_of(text: &str, caller: &str) -> f64 {
    metric(
        text,
        &format!("tango_gateway_spend_window_amount{{caller=\"{caller}\"}}"),
    )
    .unwrap_or(0.0)
}

/// An order body (RaaS v2 field names).
fn order(reference: Option<&str>, account: &str, customer: &str, amount: f64) -> String {
    let mut body = json!({
        "accountIdentifier": account,
        "customerIdentifier": customer,
        "amount": amount,
        "utid": "U000001",
        "sendEmail": false,
    });
    if let Some(reference) = reference {
        body["externalRefID"] = reference.into();
    }
    body.to_string()
}

/// An order of `payouts` for its own account and customer.
fn pay(reference: &str, amount: f64) -> String {
    order(Some(reference), "A-PAY", "C-PAY", amount)
}

fn json_of(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or_else(|_| {
        panic!(
            "not JSON ({}): {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
    })
}

/// Tango's own 2xx answer to an order; its `referenceOrderID`.
fn placed(answer: &Answer) -> String {
    assert!(
        answer.status.is_success(),
        "expected the order placed, got {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    assert!(answer.is_from_fake(), "a placed order is Tango's answer");
    json_of(answer)["referenceOrderID"]
        .as_str()
        .expect("a referenceOrderID")
        .to_owned()
}

/// Passed through to the fake (whatever Tango answered).
fn passed(answer: &Answer, what: &str) {
    assert!(
        answer.is_from_fake() && answer.header(GATEWAY_ERROR).is_none(),
        "{what}: expected Tango's answer, got {} {:?}: {}",
        answer.status,
        answer.header(GATEWAY_ERROR),
        String::from_utf8_lossy(&answer.body)
    );
}

/// Polls `check` every 50 ms for up to 30 s (a guard against a hang, not a timing check).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every audit event the process logged (target `tango_gateway::audit`, field `audit`).
fn audit_events(output: &[String]) -> Vec<Value> {
    output
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "tango_gateway::audit")
        .map(|line| match &line["audit"] {
            Value::String(text) => serde_json::from_str(text)
                .unwrap_or_else(|_| panic!("the audit field is not JSON: {text}")),
            Value::Object(_) => line["audit"].clone(),
            _ => panic!("an audit line without an `audit` field: {line}"),
        })
        .collect()
}

/// Every access-log event the process logged.
fn access_events(output: &[String]) -> Vec<Value> {
    output
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "tango_gateway::access")
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Callers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_peer_in_no_callers_sources_is_caller_unknown_and_nothing_is_sent() {
    let rig = Rig::start(Policy::default()).await;
    let get = rig.get(STRANGER, "/raas/v2/catalogs").await;
    get.assert_gateway_error(403, "gateway.caller_unknown");
    let post = rig.order(STRANGER, &pay("stranger-1", 1.0)).await;
    post.assert_gateway_error(403, "gateway.caller_unknown");
    assert_eq!(rig.fake().request_count(), 0, "nothing reached Tango");
    // A known caller from the same network is served.
    passed(&rig.get(REPORTS, "/raas/v2/catalogs").await, "reports");
    assert_eq!(rig.fake().request_count(), 1);
}

#[tokio::test]
async fn the_most_specific_source_prefix_decides_who_calls() {
    let rig = Rig::start(Policy {
        batch_caller: true,
        ..Policy::default()
    })
    .await;
    // 127.0.0.1 is in both `batch` (/28) and `payouts` (/32): it is `payouts`, scoped.
    rig.get(PAYOUTS, "/raas/v2/accounts/A-OTHER")
        .await
        .assert_gateway_error(403, "gateway.account_forbidden");
    // 127.0.0.3 is only in `batch`: known, unscoped.
    passed(
        &rig.get(STRANGER, "/raas/v2/accounts/A-OTHER").await,
        "batch",
    );
    let gateway = &rig.gateway;
    eventually("the access events", || {
        let n = access_events(&gateway.output()).len();
        async move { n >= 2 }
    })
    .await;
    let mut callers: Vec<String> = access_events(&rig.gateway.output())
        .iter()
        .map(|e| e["caller"].as_str().unwrap_or_default().to_owned())
        .collect();
    callers.sort();
    assert_eq!(
        callers,
        ["batch", "payouts"],
        "the access log names the caller"
    );
}

#[tokio::test]
async fn match_callers_restricts_a_route_to_the_callers_it_names() {
    let rig = Rig::start(Policy {
        route_callers: Some("[payouts]"),
        catalogs_route: true,
        ..Policy::default()
    })
    .await;
    let refused = rig.get(REPORTS, "/raas/v2/accounts/A-PAY").await;
    refused.assert_gateway_error(403, "gateway.forbidden_source");
    let refused = rig
        .order(REPORTS, &order(Some("r-1"), "A-R", "C-R", 1.0))
        .await;
    refused.assert_gateway_error(403, "gateway.forbidden_source");
    assert_eq!(rig.fake().request_count(), 0, "nothing reached Tango");
    // The route without match.callers still serves it; the named caller is served.
    let catalogs = rig.get(REPORTS, "/raas/v2/catalogs").await;
    assert_eq!(catalogs.status, 200);
    passed(&catalogs, "reports on the catalogs route");
    passed(
        &rig.get(PAYOUTS, "/raas/v2/accounts/A-PAY").await,
        "payouts",
    );
    assert_eq!(rig.fake().request_count(), 2);
}

// ---------------------------------------------------------------------------------------------
// Account scoping
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_scoped_callers_order_must_name_its_own_account_and_customer() {
    let rig = Rig::start(Policy::default()).await;
    let cases = [
        (
            "another account",
            order(Some("s-1"), "A-OTHER", "C-PAY", 1.0),
        ),
        (
            "another customer",
            order(Some("s-2"), "A-PAY", "C-OTHER", 1.0),
        ),
        (
            "no account",
            json!({"customerIdentifier": "C-PAY", "amount": 1, "utid": "U000001",
                   "externalRefID": "s-3"})
            .to_string(),
        ),
        (
            "no customer",
            json!({"accountIdentifier": "A-PAY", "amount": 1, "utid": "U000001",
                   "externalRefID": "s-4"})
            .to_string(),
        ),
        (
            "an account differing only in case",
            order(Some("s-5"), "a-pay", "C-PAY", 1.0),
        ),
    ];
    for (what, body) in &cases {
        let answer = rig.order(PAYOUTS, body).await;
        assert_eq!(answer.status, 403, "{what}");
        answer.assert_gateway_error(403, "gateway.account_forbidden");
    }
    assert_eq!(rig.fake().request_count(), 0, "nothing reached Tango");
    placed(&rig.order(PAYOUTS, &pay("s-ok", 1.0)).await);
    assert_eq!(rig.fake().orders_created(), 1);
}

#[tokio::test]
async fn an_unscoped_caller_may_order_for_any_account() {
    let rig = Rig::start(Policy::default()).await;
    placed(
        &rig.order(REPORTS, &order(Some("u-1"), "A-OTHER", "C-OTHER", 5.0))
            .await,
    );
    placed(&rig.order(REPORTS, &pay("u-2", 5.0)).await);
    assert_eq!(rig.fake().orders_created(), 2);
}

#[tokio::test]
async fn a_scoped_callers_path_segments_are_checked_for_every_method() {
    let rig = Rig::start(Policy::default()).await;
    let refused = [
        (Method::GET, "/raas/v2/accounts/A-OTHER"),
        (Method::GET, "/raas/v2/accounts/A%2DOTHER"),
        (Method::GET, "/raas/v2/customers/C-OTHER"),
        (Method::GET, "/raas/v2/customers/C-OTHER/accounts/A-PAY"),
        (Method::GET, "/raas/v2/customers/C-PAY/accounts/A-OTHER"),
        (Method::DELETE, "/raas/v2/accounts/A-OTHER"),
        (Method::PUT, "/raas/v2/accounts/A-OTHER"),
        (Method::POST, "/raas/v2/customers/C-OTHER/accounts"),
    ];
    for (method, path) in refused {
        let answer = rig.call(PAYOUTS, method.clone(), path, "").await;
        assert_eq!(answer.status, 403, "{method} {path}");
        answer.assert_gateway_error(403, "gateway.account_forbidden");
    }
    assert_eq!(rig.fake().request_count(), 0, "nothing reached Tango");
    for path in [
        "/raas/v2/accounts/A-PAY",
        "/raas/v2/customers/C-PAY",
        "/raas/v2/customers/C-PAY/accounts/A-PAY",
        "/raas/v2/customers/C-PAY/accounts",
    ] {
        passed(&rig.get(PAYOUTS, path).await, path);
    }
    // The unscoped caller is not checked.
    passed(
        &rig.get(REPORTS, "/raas/v2/accounts/A-OTHER").await,
        "reports",
    );
}

#[tokio::test]
async fn a_scoped_callers_query_identifiers_are_checked() {
    let rig = Rig::start(Policy::default()).await;
    for path in [
        "/raas/v2/orders?accountIdentifier=A-OTHER",
        "/raas/v2/orders?customerIdentifier=C-OTHER",
        "/raas/v2/orders?accountIdentifier=A-PAY&accountIdentifier=A-OTHER",
        "/raas/v2/orders?customerIdentifier=C-PAY&accountIdentifier=A%2DOTHER",
        "/raas/v2/catalogs?accountIdentifier=A-OTHER",
    ] {
        let answer = rig.get(PAYOUTS, path).await;
        assert_eq!(answer.status, 403, "{path}");
        answer.assert_gateway_error(403, "gateway.account_forbidden");
    }
    assert_eq!(rig.fake().request_count(), 0, "nothing reached Tango");
    for path in [
        "/raas/v2/orders?accountIdentifier=A-PAY",
        "/raas/v2/orders?customerIdentifier=C-PAY&accountIdentifier=A-PAY",
        "/raas/v2/catalogs?verbose=true",
    ] {
        passed(&rig.get(PAYOUTS, path).await, path);
    }
    passed(
        &rig.get(REPORTS, "/raas/v2/orders?accountIdentifier=A-OTHER")
            .await,
        "reports",
    );
}

#[tokio::test]
async fn a_scoped_callers_listing_that_names_no_identifier_is_refused() {
    let rig = Rig::start(Policy::default()).await;
    for path in [
        "/raas/v2/orders",
        "/raas/v2/accounts",
        "/raas/v2/customers",
        "/raas/v2/customers/",
        "/raas/v2/orders?elementsPerBlock=100",
    ] {
        let answer = rig.get(PAYOUTS, path).await;
        assert_eq!(answer.status, 403, "{path}");
        answer.assert_gateway_error(403, "gateway.account_forbidden");
    }
    assert_eq!(rig.fake().request_count(), 0, "nothing reached Tango");
    // Scoping absent: the same listings pass.
    for path in ["/raas/v2/orders", "/raas/v2/accounts", "/raas/v2/customers"] {
        passed(&rig.get(REPORTS, path).await, path);
    }
    let customers = rig.get(REPORTS, "/raas/v2/customers").await;
    assert_eq!(customers.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Bad order bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_order_body_that_is_not_an_object_or_has_a_bad_amount_is_bad_request() {
    let rig = Rig::start(Policy::default()).await;
    let bodies = [
        "not json",
        "[1,2]",
        "\"an order\"",
        "42",
        "null",
        "",
        r#"{"accountIdentifier":"A-PAY","customerIdentifier":"C-PAY","amount":"10","externalRefID":"b-1"}"#,
        r#"{"accountIdentifier":"A-PAY","customerIdentifier":"C-PAY","amount":-1,"externalRefID":"b-2"}"#,
        r#"{"accountIdentifier":"A-PAY","customerIdentifier":"C-PAY","amount":[10],"externalRefID":"b-3"}"#,
        r#"{"accountIdentifier":"A-PAY","customerIdentifier":"C-PAY","amount":1e999,"externalRefID":"b-4"}"#,
    ];
    for from in [PAYOUTS, REPORTS] {
        for body in bodies {
            let answer = rig.order(from, body).await;
            assert_eq!(answer.status, 400, "from {from}: {body:?}");
            answer.assert_gateway_error(400, "gateway.bad_request");
        }
    }
    assert_eq!(rig.fake().request_count(), 0, "nothing reached Tango");
}

#[tokio::test]
async fn a_caller_with_a_spend_limit_must_give_the_amount() {
    let rig = Rig::start(Policy::default()).await;
    let without = json!({"accountIdentifier": "A-PAY", "customerIdentifier": "C-PAY",
                         "utid": "U000001", "externalRefID": "n-1"})
    .to_string();
    rig.order(PAYOUTS, &without)
        .await
        .assert_gateway_error(400, "gateway.bad_request");
    assert_eq!(rig.fake().request_count(), 0);
    // A caller with no limit may leave it to Tango.
    passed(&rig.order(REPORTS, &without).await, "reports");
}

#[tokio::test]
async fn a_caller_with_nothing_enforced_sends_its_orders_untouched() {
    // No `orders` block: the ledger is off; `reports` has no lists and no limit.
    let rig = Rig::start(Policy {
        store: None,
        ..Policy::default()
    })
    .await;
    let answer = rig.order(REPORTS, "not json").await;
    passed(&answer, "reports' malformed order");
    assert_eq!(answer.status, 400, "Tango's own refusal");
    // `payouts` is scoped: its orders are read.
    rig.order(PAYOUTS, "not json")
        .await
        .assert_gateway_error(400, "gateway.bad_request");
    assert_eq!(rig.fake().request_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Spend limits
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_simultaneous_orders_of_10_against_a_limit_of_100_place_exactly_ten() {
    let rig = Rig::start(Policy::default()).await;
    let addr = rig.gateway.listen;
    let calls = (0..20).map(|i| {
        tokio::spawn(async move {
            let body = pay(&format!("burst-{i}"), 10.0);
            call(addr, PAYOUTS, Method::POST, ORDERS, &body).await
        })
    });
    let answers: Vec<Answer> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok = answers.iter().filter(|a| a.status.is_success()).count();
    let refused: Vec<&Answer> = answers.iter().filter(|a| !a.status.is_success()).collect();
    for answer in &refused {
        answer.assert_gateway_error(403, "gateway.spend_limit_exceeded");
    }
    assert_eq!(ok, 10, "exactly the limit's worth was placed");
    assert_eq!(refused.len(), 10);
    assert_eq!(rig.fake().orders_created(), 10);
    assert_eq!(
        rig.fake().request_count(),
        10,
        "refused orders are never sent"
    );
    assert_eq!(window_of(&rig.metrics().await, "payouts"), 100.0);
}

#[tokio::test]
async fn reaching_the_limit_exactly_is_allowed_and_passing_it_is_not() {
    let rig = Rig::start(Policy::default()).await;
    placed(&rig.order(PAYOUTS, &pay("e-1", 60.0)).await);
    placed(&rig.order(PAYOUTS, &pay("e-2", 40.0)).await);
    rig.order(PAYOUTS, &pay("e-3", 0.01))
        .await
        .assert_gateway_error(403, "gateway.spend_limit_exceeded");
    // An order of nothing still fits.
    placed(&rig.order(PAYOUTS, &pay("e-4", 0.0)).await);
    // An order that alone is over the limit never goes.
    let rig = Rig::start(Policy::default()).await;
    rig.order(PAYOUTS, &pay("e-5", 100.5))
        .await
        .assert_gateway_error(403, "gateway.spend_limit_exceeded");
    assert_eq!(rig.fake().request_count(), 0);
}

#[tokio::test]
async fn a_4xx_from_tango_releases_the_reservation() {
    let rig = Rig::start(Policy {
        max_attempts: Some(1),
        ..Policy::default()
    })
    .await;
    rig.fake().push_fault(Fault::Status {
        status: 400,
        retry_after: None,
        times: 1,
    });
    let refused = rig.order(PAYOUTS, &pay("r-1", 100.0)).await;
    assert_eq!(refused.status, 400);
    passed(&refused, "Tango's 400");
    assert_eq!(window_of(&rig.metrics().await, "payouts"), 0.0);
    // Nothing was spent: the whole limit is still there.
    placed(&rig.order(PAYOUTS, &pay("r-2", 100.0)).await);
    assert_eq!(rig.fake().orders_created(), 1);
}

#[tokio::test]
async fn a_503_from_tango_keeps_the_reservation_counted() {
    // One attempt: the 503 is the outcome (a POST with externalRefID is retried otherwise).
    let rig = Rig::start(Policy {
        max_attempts: Some(1),
        ..Policy::default()
    })
    .await;
    rig.fake().push_fault(Fault::Status {
        status: 503,
        retry_after: None,
        times: 1,
    });
    let unknown = rig.order(PAYOUTS, &pay("k-1", 60.0)).await;
    assert_eq!(unknown.status, 503);
    passed(&unknown, "Tango's 503");
    assert_eq!(window_of(&rig.metrics().await, "payouts"), 60.0);
    // The order may exist: 60 stays counted.
    rig.order(PAYOUTS, &pay("k-2", 50.0))
        .await
        .assert_gateway_error(403, "gateway.spend_limit_exceeded");
    placed(&rig.order(PAYOUTS, &pay("k-3", 40.0)).await);
    assert_eq!(rig.fake().request_count(), 2);
}

#[tokio::test]
async fn a_reset_connection_keeps_the_reservation_counted() {
    let rig = Rig::start(Policy {
        max_attempts: Some(1),
        ..Policy::default()
    })
    .await;
    rig.fake().push_fault(Fault::ResetAfterRead);
    let unknown = rig.order(PAYOUTS, &pay("t-1", 60.0)).await;
    unknown.assert_gateway_error(502, "gateway.upstream_unreachable");
    rig.order(PAYOUTS, &pay("t-2", 50.0))
        .await
        .assert_gateway_error(403, "gateway.spend_limit_exceeded");
    placed(&rig.order(PAYOUTS, &pay("t-3", 40.0)).await);
    assert_eq!(rig.fake().request_count(), 2);
}

#[tokio::test]
async fn an_upstream_timeout_keeps_the_reservation_counted() {
    let rig = Rig::start(Policy {
        max_attempts: Some(1),
        upstream: &[("timeout", "1s")],
        ..Policy::default()
    })
    .await;
    rig.fake().push_fault(Fault::Hang);
    let unknown = rig.order(PAYOUTS, &pay("h-1", 60.0)).await;
    unknown.assert_gateway_error(504, "gateway.upstream_timeout");
    rig.order(PAYOUTS, &pay("h-2", 50.0))
        .await
        .assert_gateway_error(403, "gateway.spend_limit_exceeded");
    placed(&rig.order(PAYOUTS, &pay("h-3", 40.0)).await);
    assert_eq!(rig.fake().request_count(), 2);
}

#[tokio::test]
async fn the_spend_window_slides() {
    let rig = Rig::start(Policy {
        spend_window: "2s",
        ..Policy::default()
    })
    .await;
    placed(&rig.order(PAYOUTS, &pay("w-1", 100.0)).await);
    rig.order(PAYOUTS, &pay("w-2", 1.0))
        .await
        .assert_gateway_error(403, "gateway.spend_limit_exceeded");
    // Once the window has passed, the spend is out of it (a lower bound: never too early).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    placed(&rig.order(PAYOUTS, &pay("w-3", 100.0)).await);
}

// ---------------------------------------------------------------------------------------------
// The externalRefID ledger
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_same_reference_with_another_body_is_a_conflict_and_nothing_is_sent() {
    let rig = Rig::start(Policy::default()).await;
    let first = placed(
        &rig.order(REPORTS, &order(Some("c-1"), "A-R", "C-R", 10.0))
            .await,
    );
    let conflict = rig
        .order(REPORTS, &order(Some("c-1"), "A-R", "C-R", 20.0))
        .await;
    conflict.assert_gateway_error(409, "gateway.external_ref_conflict");
    let conflict = rig
        .order(REPORTS, &order(Some("c-1"), "A-OTHER", "C-R", 10.0))
        .await;
    conflict.assert_gateway_error(409, "gateway.external_ref_conflict");
    assert_eq!(rig.fake().request_count(), 1, "conflicts are never sent");
    // The same order written with other key order and whitespace is the same order.
    let same = "{ \"utid\" : \"U000001\",\n \"sendEmail\": false, \"externalRefID\": \"c-1\",\
                \"amount\": 10.0, \"customerIdentifier\": \"C-R\", \"accountIdentifier\": \"A-R\" }";
    assert_eq!(placed(&rig.order(REPORTS, same).await), first);
    assert_eq!(rig.fake().orders_created(), 1);
}

#[tokio::test]
async fn the_same_reference_from_another_caller_is_a_conflict() {
    let rig = Rig::start(Policy::default()).await;
    let body = pay("x-1", 10.0);
    placed(&rig.order(PAYOUTS, &body).await);
    rig.order(REPORTS, &body)
        .await
        .assert_gateway_error(409, "gateway.external_ref_conflict");
    rig.order(REPORTS, &pay("x-1", 11.0))
        .await
        .assert_gateway_error(409, "gateway.external_ref_conflict");
    assert_eq!(rig.fake().request_count(), 1);
    assert_eq!(rig.fake().orders_created(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_identical_orders_at_once_are_serialised_and_both_get_the_one_order() {
    let rig = Rig::start(Policy::default()).await;
    // The first is held at Tango for a while; 60 + 60 would pass the limit of 100 if the
    // repeat reserved anything.
    rig.fake()
        .push_fault(Fault::Delay(Duration::from_millis(2_000)));
    let addr = rig.gateway.listen;
    let body = pay("same-1", 60.0);
    let first = {
        let body = body.clone();
        tokio::spawn(async move { call(addr, PAYOUTS, Method::POST, ORDERS, &body).await })
    };
    let fake = rig.fake();
    eventually("the first order at Tango", || async move {
        fake.request_count() == 1
    })
    .await;
    assert!(!first.is_finished(), "the first order is still in flight");
    let second = {
        let body = body.clone();
        tokio::spawn(async move { call(addr, PAYOUTS, Method::POST, ORDERS, &body).await })
    };
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    let (a, b) = (placed(&first), placed(&second));
    assert_eq!(a, b, "both callers get the one order");
    assert_eq!(rig.fake().orders_created(), 1);
    assert_eq!(
        rig.fake().request_count(),
        2,
        "the second was forwarded after the first"
    );
    assert!(
        rig.fake().overlapping_orders().is_empty(),
        "Tango saw two requests for one reference at once: {:?}",
        rig.fake().overlapping_orders()
    );
    assert_eq!(
        window_of(&rig.metrics().await, "payouts"),
        60.0,
        "the repeat reserved nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_identical_orders_at_once_reach_tango_one_at_a_time() {
    let rig = Rig::start(Policy::default()).await;
    rig.fake()
        .push_fault(Fault::Delay(Duration::from_millis(500)));
    let addr = rig.gateway.listen;
    let calls = (0..8).map(|_| {
        tokio::spawn(async move {
            call(
                addr,
                REPORTS,
                Method::POST,
                ORDERS,
                &order(Some("many-1"), "A-R", "C-R", 5.0),
            )
            .await
        })
    });
    let answers = futures_util::future::join_all(calls).await;
    let ids: Vec<String> = answers
        .iter()
        .map(|a| placed(a.as_ref().unwrap()))
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(rig.fake().orders_created(), 1);
    assert!(
        rig.fake().overlapping_orders().is_empty(),
        "Tango saw concurrent requests for one reference: {:?}",
        rig.fake().overlapping_orders()
    );
}

#[tokio::test]
async fn a_repeat_after_completion_is_forwarded_and_reserves_no_spend() {
    let rig = Rig::start(Policy::default()).await;
    let body = pay("again-1", 100.0);
    let first = placed(&rig.order(PAYOUTS, &body).await);
    let repeat = rig.order(PAYOUTS, &body).await;
    assert_eq!(
        placed(&repeat),
        first,
        "Tango answers with the original order"
    );
    assert_eq!(rig.fake().request_count(), 2, "the repeat is forwarded");
    assert_eq!(rig.fake().orders_created(), 1);
    assert_eq!(window_of(&rig.metrics().await, "payouts"), 100.0);
    // The limit is still full.
    rig.order(PAYOUTS, &pay("again-2", 1.0))
        .await
        .assert_gateway_error(403, "gateway.spend_limit_exceeded");
}

#[tokio::test]
async fn a_4xx_forgets_the_reference_so_a_corrected_order_may_reuse_it() {
    let rig = Rig::start(Policy {
        max_attempts: Some(1),
        ..Policy::default()
    })
    .await;
    rig.fake().push_fault(Fault::Status {
        status: 400,
        retry_after: None,
        times: 1,
    });
    let refused = rig.order(PAYOUTS, &pay("fix-1", 90.0)).await;
    assert_eq!(refused.status, 400);
    passed(&refused, "Tango's 400");
    // A corrected body under the same reference is a new order, not a conflict; the 90 was
    // released, so 95 fits.
    placed(&rig.order(PAYOUTS, &pay("fix-1", 95.0)).await);
    assert_eq!(rig.fake().orders_created(), 1);
    assert_eq!(window_of(&rig.metrics().await, "payouts"), 95.0);
}

#[tokio::test]
async fn a_reference_is_forgotten_after_the_duplicate_window() {
    // An order holds its reference at least as long as it may be in flight (its route's
    // deadline, else all its attempts' timeouts): a 1 s deadline keeps that under the window.
    let rig = Rig::start(Policy {
        duplicate_window: "2s",
        upstream: &[("deadline", "1s")],
        ..Policy::default()
    })
    .await;
    placed(
        &rig.order(REPORTS, &order(Some("dw-1"), "A-R", "C-R", 1.0))
            .await,
    );
    rig.order(REPORTS, &order(Some("dw-1"), "A-R", "C-R", 2.0))
        .await
        .assert_gateway_error(409, "gateway.external_ref_conflict");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // No longer remembered: forwarded (Tango decides what a reused reference means).
    passed(
        &rig.order(REPORTS, &order(Some("dw-1"), "A-R", "C-R", 2.0))
            .await,
        "after the window",
    );
    assert_eq!(rig.fake().request_count(), 2);
}

#[tokio::test]
async fn require_external_ref_id_refuses_orders_without_one() {
    let rig = Rig::start(Policy {
        require_external_ref_id: true,
        ..Policy::default()
    })
    .await;
    let bodies = [
        order(None, "A-PAY", "C-PAY", 1.0),
        json!({"accountIdentifier": "A-PAY", "customerIdentifier": "C-PAY", "amount": 1,
               "externalRefID": ""})
        .to_string(),
        json!({"accountIdentifier": "A-PAY", "customerIdentifier": "C-PAY", "amount": 1,
               "externalRefID": 12345})
        .to_string(),
        json!({"accountIdentifier": "A-PAY", "customerIdentifier": "C-PAY", "amount": 1,
               "externalRefID": null})
        .to_string(),
    ];
    for from in [PAYOUTS, REPORTS] {
        for body in &bodies {
            let answer = rig.order(from, body).await;
            assert_eq!(answer.status, 400, "from {from}: {body}");
            answer.assert_gateway_error(400, "gateway.external_ref_required");
        }
    }
    assert_eq!(rig.fake().request_count(), 0);
    placed(&rig.order(PAYOUTS, &pay("req-1", 1.0)).await);
    // Not an order: untouched.
    passed(&rig.get(REPORTS, "/raas/v2/catalogs").await, "a GET");
}

// ---------------------------------------------------------------------------------------------
// The file store
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_file_store_remembers_references_and_spend_across_a_restart() {
    let mut rig = Rig::start(Policy {
        store: Some(Store::File),
        ..Policy::default()
    })
    .await;
    let body = pay("f-1", 60.0);
    let first = placed(&rig.order(PAYOUTS, &body).await);
    let path = rig.staged.dir.path().join("orders-ledger.json");
    assert!(path.exists(), "the file store is at {}", path.display());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the file store is private");
    let contents = std::fs::read_to_string(&path).unwrap();
    assert!(
        !contents.contains("sendEmail"),
        "the body itself is never stored: {contents}"
    );

    rig.restart().await;
    rig.order(PAYOUTS, &pay("f-1", 61.0))
        .await
        .assert_gateway_error(409, "gateway.external_ref_conflict");
    rig.order(PAYOUTS, &pay("f-2", 50.0))
        .await
        .assert_gateway_error(403, "gateway.spend_limit_exceeded");
    assert_eq!(
        rig.fake().request_count(),
        1,
        "nothing sent after the restart yet"
    );
    assert_eq!(window_of(&rig.metrics().await, "payouts"), 60.0);
    assert_eq!(placed(&rig.order(PAYOUTS, &body).await), first, "a repeat");
    placed(&rig.order(PAYOUTS, &pay("f-3", 40.0)).await);
    assert_eq!(rig.fake().orders_created(), 2);
}

// ---------------------------------------------------------------------------------------------
// Non-orders
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_that_are_not_orders_are_untouched() {
    let rig = Rig::start(Policy::default()).await;
    // A scoped caller's GET naming no identifier and not a listing.
    let catalogs = rig.get(PAYOUTS, "/raas/v2/catalogs").await;
    assert_eq!(catalogs.status, 200);
    passed(&catalogs, "catalogs");
    let direct = wire_direct(&rig, "/raas/v2/catalogs").await;
    assert_eq!(catalogs.body, direct.body, "passed through byte for byte");
    // POSTs elsewhere, whatever their body, are not read.
    for path in [
        "/raas/v2/customers",
        "/raas/v2/orders/RA1/resend",
        "/raas/v2/ordersx",
    ] {
        let answer = rig.call(REPORTS, Method::POST, path, "not json").await;
        passed(&answer, path);
    }
    // A GET of the orders path is not an order.
    passed(&rig.get(REPORTS, "/raas/v2/orders").await, "GET orders");
    let metrics = rig.metrics().await;
    assert_eq!(window_of(&metrics, "payouts"), 0.0);
    assert_eq!(
        metric(&metrics, "tango_gateway_order_ledger_references").unwrap_or(0.0),
        0.0
    );
    assert_eq!(rig.fake().orders_created(), 0);
    let output = rig.gateway.output();
    assert!(
        audit_events(&output).is_empty(),
        "no audit event for non-orders: {:#?}",
        audit_events(&output)
    );
    // The access log says who called and that the gateway did nothing of its own.
    let catalogs_event = |output: &[String]| {
        access_events(output)
            .into_iter()
            .find(|e| e["path"] == "/raas/v2/catalogs")
    };
    let gateway = &rig.gateway;
    eventually("the GET's access event", || {
        let found = catalogs_event(&gateway.output()).is_some();
        async move { found }
    })
    .await;
    let get = catalogs_event(&rig.gateway.output()).unwrap();
    assert_eq!(get["status"], 200);
    assert_eq!(get["caller"], "payouts");
    assert_eq!(get["gateway_error"], "-");
}

async fn wire_direct(rig: &Rig, path: &str) -> Answer {
    support::wire::direct_get(&rig.staged.fake, &rig.staged.pki, &rig.staged.api_key, path).await
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

const EMAIL: &str = "alice.recipient@example.com";
const MESSAGE: &str = "Happy birthday from the payouts team, secret-message-7f3a";
const SENDER: &str = "Bob Sender-e41c";

fn order_with_recipient(reference: &str, account: &str, amount: f64) -> String {
    json!({
        "accountIdentifier": account,
        "customerIdentifier": "C-PAY",
        "amount": amount,
        "utid": "U000001",
        "externalRefID": reference,
        "sendEmail": true,
        "recipient": {"email": EMAIL, "firstName": "Alice", "lastName": "Recipient"},
        "sender": {"email": "bob@example.com", "firstName": SENDER},
        "message": MESSAGE,
        "emailSubject": "A reward for you",
    })
    .to_string()
}

async fn wait_for_audit(rig: &Rig, count: usize) -> Vec<Value> {
    eventually(&format!("{count} audit events"), || async move {
        audit_events(&rig.gateway.output()).len() >= count
    })
    .await;
    audit_events(&rig.gateway.output())
}

#[tokio::test]
async fn audit_events_record_each_decision_and_never_the_recipient_or_the_reward() {
    let rig = Rig::start(Policy::default()).await;
    let sent = rig
        .order(PAYOUTS, &order_with_recipient("a-1", "A-PAY", 60.0))
        .await;
    let reference = placed(&sent);
    let answer_text = String::from_utf8_lossy(&sent.body).into_owned();
    assert!(
        answer_text.contains("sandbox.example/redeem"),
        "the caller gets the reward: {answer_text}"
    );
    let forbidden = rig
        .order(PAYOUTS, &order_with_recipient("a-2", "A-OTHER", 1.0))
        .await;
    forbidden.assert_gateway_error(403, "gateway.account_forbidden");
    let over = rig
        .order(PAYOUTS, &order_with_recipient("a-3", "A-PAY", 50.0))
        .await;
    over.assert_gateway_error(403, "gateway.spend_limit_exceeded");
    let conflict = rig
        .order(PAYOUTS, &order_with_recipient("a-1", "A-PAY", 61.0))
        .await;
    conflict.assert_gateway_error(409, "gateway.external_ref_conflict");

    let events = wait_for_audit(&rig, 4).await;
    let by_decision = |decision: &str| {
        events
            .iter()
            .find(|e| e["decision"] == decision)
            .unwrap_or_else(|| panic!("no audit event with decision {decision}: {events:#?}"))
            .clone()
    };
    let event = by_decision("sent");
    assert_eq!(event["event"].as_str().map(|s| !s.is_empty()), Some(true));
    assert!(
        event["time"].as_str().is_some_and(|t| !t.is_empty()),
        "{event}"
    );
    assert_eq!(
        event["request_id"].as_str(),
        sent.header("x-request-id"),
        "{event}"
    );
    assert_eq!(event["caller"], "payouts");
    assert_eq!(event["peer"], PAYOUTS);
    assert_eq!(event["route"], "raas");
    assert_eq!(event["accountIdentifier"], "A-PAY");
    assert_eq!(event["customerIdentifier"], "C-PAY");
    assert_eq!(event["amount"].as_f64(), Some(60.0));
    assert_eq!(event["utid"], "U000001");
    assert_eq!(event["externalRefID"], "a-1");
    assert_eq!(event["upstream_status"], 201);
    assert_eq!(event["referenceOrderID"], reference.as_str());
    assert_eq!(event["attempts"], 1);

    let event = by_decision("gateway.account_forbidden");
    assert_eq!(event["accountIdentifier"], "A-OTHER");
    assert_eq!(event["externalRefID"], "a-2");
    assert!(event["upstream_status"].is_null(), "{event}");
    let event = by_decision("gateway.spend_limit_exceeded");
    assert_eq!(event["amount"].as_f64(), Some(50.0));
    assert_eq!(event["externalRefID"], "a-3");
    let event = by_decision("gateway.external_ref_conflict");
    assert_eq!(event["externalRefID"], "a-1");
    assert_eq!(rig.fake().request_count(), 1);

    // Nothing of the recipient, the message or the reward anywhere in the output.
    let output = rig.gateway.output();
    for line in &output {
        for secret in [
            EMAIL,
            "bob@example.com",
            MESSAGE,
            SENDER,
            "sandbox.example/redeem",
            "Redemption URL",
            "redemptionInstructions",
        ] {
            assert!(!line.contains(secret), "{secret:?} in the output: {line}");
        }
    }
}

#[tokio::test]
async fn the_audit_file_is_hash_chained_and_verifiable() {
    let rig = Rig::start(Policy {
        audit_file: true,
        ..Policy::default()
    })
    .await;
    placed(
        &rig.order(PAYOUTS, &order_with_recipient("h-1", "A-PAY", 10.0))
            .await,
    );
    rig.order(PAYOUTS, &order_with_recipient("h-2", "A-OTHER", 10.0))
        .await
        .assert_gateway_error(403, "gateway.account_forbidden");
    placed(
        &rig.order(PAYOUTS, &order_with_recipient("h-3", "A-PAY", 10.0))
            .await,
    );
    let path = rig.staged.dir.path().join("audit.jsonl");
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    eventually("three events in the audit file", || {
        let lines = read().lines().count();
        async move { lines >= 3 }
    })
    .await;
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let decision_of = |reference: &str| {
        events
            .iter()
            .find(|e| e["externalRefID"] == reference)
            .map(|e| e["decision"].clone())
    };
    assert_eq!(decision_of("h-1"), Some(json!("sent")));
    assert_eq!(decision_of("h-2"), Some(json!("gateway.account_forbidden")));
    assert_eq!(decision_of("h-3"), Some(json!("sent")));
    for (i, pair) in lines.windows(2).enumerate() {
        let prev = events[i + 1]["prev"].as_str().unwrap_or_default();
        assert!(
            is_sha256_of(prev, pair[0]),
            "line {} carries `prev` = the SHA-256 of line {}: {prev:?}",
            i + 2,
            i + 1
        );
    }
    for secret in [EMAIL, MESSAGE, SENDER, "sandbox.example/redeem"] {
        assert!(!text.contains(secret), "{secret:?} in the audit file");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o002, 0, "the audit file is not world-writable");

    let verify = |file: &Path| {
        std::process::Command::new(BIN)
            .args(["audit", "verify"])
            .arg(file)
            .output()
            .unwrap()
    };
    let good = verify(&path);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    // An edited line breaks the chain.
    let tampered: PathBuf = rig.staged.dir.path().join("tampered.jsonl");
    let edited = text.replacen("\"h-1\"", "\"h-9\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&tampered, edited).unwrap();
    let bad = verify(&tampered);
    assert_eq!(bad.status.code(), Some(1), "an edited line is detected");
    assert!(
        !bad.stdout.is_empty() || !bad.stderr.is_empty(),
        "verify names the first bad line"
    );
    // So does a deleted one.
    let deleted: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&tampered, deleted).unwrap();
    assert_eq!(
        verify(&tampered).status.code(),
        Some(1),
        "a deleted line is detected"
    );
}

/// `prev` is the SHA-256 of `line` (hex, or base64 / base64url; the spec names no encoding).
fn is_sha256_of(prev: &str, line: &str) -> bool {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, line.as_bytes());
    let bytes = digest.as_ref();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let prev = prev.strip_prefix("sha256:").unwrap_or(prev);
    prev.eq_ignore_ascii_case(&hex) || engines.iter().any(|e| e.encode(bytes) == prev)
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_spend_and_ledger_gauges_follow_the_orders() {
    let rig = Rig::start(Policy {
        max_attempts: Some(1),
        ..Policy::default()
    })
    .await;
    let metrics = rig.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"tango_gateway_spend_limit_amount{caller="payouts"}"#
        ),
        Some(100.0),
        "{metrics}"
    );
    assert_eq!(window_of(&metrics, "payouts"), 0.0);
    placed(&rig.order(PAYOUTS, &pay("m-1", 30.0)).await);
    placed(&rig.order(PAYOUTS, &pay("m-2", 20.5)).await);
    let metrics = rig.metrics().await;
    assert_eq!(window_of(&metrics, "payouts"), 50.5, "{metrics}");
    assert_eq!(
        metric(&metrics, "tango_gateway_order_ledger_references"),
        Some(2.0),
        "{metrics}"
    );
    // A refused order (4xx from Tango) is released and its reference forgotten.
    rig.fake().push_fault(Fault::Status {
        status: 422,
        retry_after: None,
        times: 1,
    });
    assert_eq!(rig.order(PAYOUTS, &pay("m-3", 10.0)).await.status, 422);
    let metrics = rig.metrics().await;
    assert_eq!(window_of(&metrics, "payouts"), 50.5, "{metrics}");
    assert_eq!(
        metric(&metrics, "tango_gateway_order_ledger_references"),
        Some(2.0),
        "{metrics}"
    );
    // The caller label on the request counter.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tango_gateway_requests_total{")
                && l.contains("caller=\"payouts\"")),
        "{metrics}"
    );
}

// ---------------------------------------------------------------------------------------------
// Redis: a fleet sharing limits and the ledger (store: redis on a real redis-server)
// ---------------------------------------------------------------------------------------------

fn redis_policy(redis: &RedisServer) -> Policy {
    Policy {
        store: Some(Store::Redis {
            url: redis.url(),
            prefix: format!("orders-test-{}", uuid::Uuid::new_v4().simple()),
        }),
        ..Policy::default()
    }
}

/// Two replicas of one config (one fake Tango, one Redis).
struct Fleet {
    staged: Staged,
    a: Process,
    b: Process,
}

impl Fleet {
    async fn start(policy: Policy) -> Fleet {
        let staged = stage(&policy).await;
        let a = Process::start(&staged.config_file).await;
        let b = Process::start(&staged.config_file).await;
        Fleet { staged, a, b }
    }
}

#[tokio::test]
async fn check_accepts_the_redis_order_store() {
    let redis = RedisServer::start().await;
    let staged = stage(&redis_policy(&redis)).await;
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&staged.config_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check refused store: redis:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_redis_share_the_spend_limit() {
    let redis = RedisServer::start().await;
    let fleet = Fleet::start(redis_policy(&redis)).await;
    let addrs = [fleet.a.listen, fleet.b.listen];
    let calls = (0..20).map(|i| {
        let addr = addrs[i % 2];
        tokio::spawn(async move {
            call(
                addr,
                PAYOUTS,
                Method::POST,
                ORDERS,
                &pay(&format!("fleet-{i}"), 10.0),
            )
            .await
        })
    });
    let answers: Vec<Answer> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok = answers.iter().filter(|a| a.status.is_success()).count();
    for answer in answers.iter().filter(|a| !a.status.is_success()) {
        answer.assert_gateway_error(403, "gateway.spend_limit_exceeded");
    }
    assert_eq!(ok, 10, "the fleet never overshoots the limit");
    assert_eq!(fleet.staged.fake.orders_created(), 10);
    assert_eq!(fleet.staged.fake.request_count(), 10);
    // Either replica refuses the next one: the window is the fleet's.
    for (i, addr) in addrs.into_iter().enumerate() {
        let body = pay(&format!("fleet-x{i}"), 1.0);
        call(addr, PAYOUTS, Method::POST, ORDERS, &body)
            .await
            .assert_gateway_error(403, "gateway.spend_limit_exceeded");
    }
    assert_eq!(fleet.staged.fake.request_count(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_redis_share_the_ledger() {
    let redis = RedisServer::start().await;
    let fleet = Fleet::start(redis_policy(&redis)).await;
    let body = order(Some("shared-1"), "A-R", "C-R", 10.0);
    let first = placed(&call(fleet.a.listen, REPORTS, Method::POST, ORDERS, &body).await);
    let conflict = call(
        fleet.b.listen,
        REPORTS,
        Method::POST,
        ORDERS,
        &order(Some("shared-1"), "A-R", "C-R", 11.0),
    )
    .await;
    conflict.assert_gateway_error(409, "gateway.external_ref_conflict");
    // Another caller on the other replica.
    call(
        fleet.b.listen,
        PAYOUTS,
        Method::POST,
        ORDERS,
        &pay("shared-1", 10.0),
    )
    .await
    .assert_gateway_error(409, "gateway.external_ref_conflict");
    assert_eq!(fleet.staged.fake.request_count(), 1);
    let repeat = call(fleet.b.listen, REPORTS, Method::POST, ORDERS, &body).await;
    assert_eq!(placed(&repeat), first);
    assert_eq!(fleet.staged.fake.orders_created(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_orders_on_two_replicas_at_once_are_serialised() {
    let redis = RedisServer::start().await;
    let fleet = Fleet::start(redis_policy(&redis)).await;
    fleet
        .staged
        .fake
        .push_fault(Fault::Delay(Duration::from_millis(2_000)));
    let body = pay("both-1", 60.0);
    let (a, b) = (fleet.a.listen, fleet.b.listen);
    let first = {
        let body = body.clone();
        tokio::spawn(async move { call(a, PAYOUTS, Method::POST, ORDERS, &body).await })
    };
    let fake = &fleet.staged.fake;
    eventually("the first order at Tango", || async move {
        fake.request_count() == 1
    })
    .await;
    assert!(!first.is_finished(), "the first order is still in flight");
    let second = {
        let body = body.clone();
        tokio::spawn(async move { call(b, PAYOUTS, Method::POST, ORDERS, &body).await })
    };
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(placed(&first), placed(&second));
    assert_eq!(fleet.staged.fake.orders_created(), 1);
    assert!(
        fleet.staged.fake.overlapping_orders().is_empty(),
        "Tango saw two requests for one reference at once: {:?}",
        fleet.staged.fake.overlapping_orders()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_stopped_orders_that_need_it_are_refused_and_the_rest_keeps_working() {
    let mut redis = RedisServer::start().await;
    let fleet = Fleet::start(redis_policy(&redis)).await;
    let gateway = fleet.a.listen;
    placed(&call(gateway, PAYOUTS, Method::POST, ORDERS, &pay("down-0", 10.0)).await);
    redis.stop();
    let sent_before = fleet.staged.fake.request_count();

    // A caller with a limit (with or without a reference), and any order with a reference.
    let limited = call(
        gateway,
        PAYOUTS,
        Method::POST,
        ORDERS,
        &order(None, "A-PAY", "C-PAY", 1.0),
    )
    .await;
    limited.assert_gateway_error(503, "gateway.overloaded");
    let limited = call(gateway, PAYOUTS, Method::POST, ORDERS, &pay("down-1", 1.0)).await;
    limited.assert_gateway_error(503, "gateway.overloaded");
    let referenced = call(
        fleet.b.listen,
        REPORTS,
        Method::POST,
        ORDERS,
        &order(Some("down-2"), "A-R", "C-R", 1.0),
    )
    .await;
    referenced.assert_gateway_error(503, "gateway.overloaded");
    let message = json_of(&referenced)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!message.is_empty(), "the refusal gives a reason");
    assert_eq!(
        fleet.staged.fake.request_count(),
        sent_before,
        "nothing was sent unchecked"
    );

    // Everything else keeps working: a GET, and an order that needs neither.
    let get = call(gateway, PAYOUTS, Method::GET, "/raas/v2/catalogs", "").await;
    assert_eq!(get.status, 200);
    passed(&get, "a GET with Redis down");
    placed(
        &call(
            gateway,
            REPORTS,
            Method::POST,
            ORDERS,
            &order(None, "A-R", "C-R", 1.0),
        )
        .await,
    );

    // Redis back: orders work again.
    redis.restart().await;
    let mut n = 0;
    eventually("an order placed after Redis restarted", || {
        n += 1;
        let body = pay(&format!("up-{n}"), 1.0);
        async move {
            call(gateway, PAYOUTS, Method::POST, ORDERS, &body)
                .await
                .status
                .is_success()
        }
    })
    .await;
    placed(
        &call(
            fleet.b.listen,
            REPORTS,
            Method::POST,
            ORDERS,
            &order(Some("up-r"), "A-R", "C-R", 1.0),
        )
        .await,
    );
}
