//! OpenTelemetry traces (§13), end to end: the real binary exports to an in-process OTLP/HTTP
//! receiver (protobuf decoded with opentelemetry-proto), in front of the fake Tango.
//!
//! Each test runs its own gateway process: the tracer is process-wide, set up at `run`.
//! Everything waits on observable events (a span arrives, a counter rises) with generous
//! deadlines; nothing asserts a duration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::process::Process;
use support::{OAuth, Setup};
use tango_sandbox::fake::Fault;
use tokio::net::TcpListener;
use tokio::time::Instant;

const PATH: &str = "/raas/v2/catalogs";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// Long enough for a loaded 2-core machine; the export runs every second.
const DEADLINE: Duration = Duration::from_secs(60);

/// What the receiver got: every request body as sent, and its spans decoded.
#[derive(Default)]
struct Received {
    bodies: Vec<Bytes>,
    spans: Vec<Span>,
    service_names: Vec<String>,
}

/// An OTLP/HTTP collector on 127.0.0.1:0: `POST /v1/traces` with a protobuf body.
struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let store = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let store = store.clone();
                        async move {
                            let ok = request.method() == http::Method::POST
                                && request.uri().path() == "/v1/traces";
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            if ok {
                                let export =
                                    ExportTraceServiceRequest::decode(body.clone()).unwrap();
                                let mut store = store.lock().unwrap();
                                for resource in export.resource_spans {
                                    for attr in resource.resource.iter().flat_map(|r| &r.attributes)
                                    {
                                        if attr.key == "service.name" {
                                            store.service_names.push(text(attr.value.as_ref()));
                                        }
                                    }
                                    for scope in resource.scope_spans {
                                        store.spans.extend(scope.spans);
                                    }
                                }
                                store.bodies.push(body);
                            }
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(if ok { 200 } else { 404 })
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector { addr, received }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Waits until the spans received satisfy `done`, then returns them.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let start = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {what} exported: {:#?}",
                spans.iter().map(summary).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| text(a.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn summary(span: &Span) -> String {
    format!(
        "{} kind={} trace={} span={} parent={} {:?}",
        span.name,
        span.kind,
        hex(&span.trace_id),
        hex(&span.span_id),
        hex(&span.parent_span_id),
        span.attributes
            .iter()
            .map(|a| format!("{}={}", a.key, text(a.value.as_ref())))
            .collect::<Vec<_>>()
    )
}

fn is_server(span: &Span) -> bool {
    span.kind == SpanKind::Server as i32
}

fn is_attempt(span: &Span) -> bool {
    span.kind == SpanKind::Client as i32 && attr(span, "tango_gateway.attempt").is_some()
}

fn is_token_fetch(span: &Span) -> bool {
    span.name == "oauth token"
}

fn with_telemetry(config: &Path, endpoint: &str) {
    let mut yaml = std::fs::read_to_string(config).unwrap();
    yaml += &format!(
        "telemetry:\n  otlp:\n    endpoint: \"{endpoint}\"\n    service_name: gateway-under-test\n"
    );
    std::fs::write(config, yaml).unwrap();
}

fn url(gateway: &Process, path: &str) -> String {
    format!("http://{}{}", gateway.listen, path)
}

/// GET with headers: the status (0 when the connection failed).
async fn get(url: &str, headers: &[(&str, &str)]) -> u16 {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}

async fn ready(gateway: &Process) {
    let start = Instant::now();
    while get(&format!("http://{}/readyz", gateway.admin), &[]).await != 200 {
        assert!(start.elapsed() < DEADLINE, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(gateway: &Process) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::get(format!("http://{}/metrics", gateway.admin))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn dropped_spans(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("tango_gateway_otel_spans_dropped_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test]
async fn the_callers_trace_is_continued_to_the_server_span_and_to_tango() {
    let collector = Collector::start().await;
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    with_telemetry(&staged.config_file, &collector.endpoint());
    let gateway = Process::start(&staged.config_file).await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let status = get(
        &url(&gateway, PATH),
        &[("traceparent", &traceparent), ("tracestate", "vendor=abc")],
    )
    .await;
    assert_eq!(status, 200);

    let spans = collector
        .wait_for("server and attempt spans", |spans| {
            spans.iter().any(is_server) && spans.iter().any(is_attempt)
        })
        .await;
    let server = spans.iter().find(|s| is_server(s)).unwrap();
    assert_eq!(hex(&server.trace_id), CALLER_TRACE, "{}", summary(server));
    assert_eq!(
        hex(&server.parent_span_id),
        CALLER_SPAN,
        "{}",
        summary(server)
    );
    assert_eq!(server.name, "GET raas");
    assert_eq!(attr(server, "tango_gateway.route").as_deref(), Some("raas"));
    assert_eq!(attr(server, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );

    let attempt = spans.iter().find(|s| is_attempt(s)).unwrap();
    assert_eq!(attempt.trace_id, server.trace_id);
    assert_eq!(
        attempt.parent_span_id,
        server.span_id,
        "{}",
        summary(attempt)
    );
    assert_eq!(attr(attempt, "tango_gateway.attempt").as_deref(), Some("1"));
    assert_eq!(
        attr(attempt, "tango_gateway.outcome").as_deref(),
        Some("2xx")
    );
    let fake: http::Uri = staged.fake.url().parse().unwrap();
    assert_eq!(attr(attempt, "server.address").as_deref(), fake.host());
    assert_eq!(
        attr(attempt, "server.port"),
        fake.port_u16().map(|p| p.to_string())
    );

    // Tango saw the attempt as its parent, in the caller's trace, with the caller's state.
    let upstream = staged.fake.received().pop().unwrap();
    let sent = upstream.headers["traceparent"].to_str().unwrap().to_owned();
    assert_eq!(
        sent,
        format!("00-{CALLER_TRACE}-{}-01", hex(&attempt.span_id))
    );
    assert_eq!(upstream.headers["tracestate"], "vendor=abc");
    assert_eq!(
        collector.received.lock().unwrap().service_names[0],
        "gateway-under-test"
    );
}

#[tokio::test]
async fn a_retried_call_has_two_attempt_spans_under_one_server_span() {
    let collector = Collector::start().await;
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    with_telemetry(&staged.config_file, &collector.endpoint());
    let gateway = Process::start(&staged.config_file).await;
    staged.fake.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
        times: 1,
    });
    assert_eq!(get(&url(&gateway, PATH), &[]).await, 200);

    let spans = collector
        .wait_for("two attempts", |spans| {
            spans.iter().any(is_server) && spans.iter().filter(|s| is_attempt(s)).count() == 2
        })
        .await;
    let server = spans.iter().find(|s| is_server(s)).unwrap();
    assert_eq!(attr(server, "tango_gateway.attempts").as_deref(), Some("2"));
    let mut attempts: Vec<&Span> = spans.iter().filter(|s| is_attempt(s)).collect();
    attempts.sort_by_key(|s| attr(s, "tango_gateway.attempt"));
    for attempt in &attempts {
        assert_eq!(attempt.trace_id, server.trace_id, "{}", summary(attempt));
        assert_eq!(
            attempt.parent_span_id,
            server.span_id,
            "{}",
            summary(attempt)
        );
    }
    assert_eq!(
        attr(attempts[0], "tango_gateway.attempt").as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(attempts[0], "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(
        attr(attempts[0], "tango_gateway.outcome").as_deref(),
        Some("5xx")
    );
    assert_eq!(
        attr(attempts[1], "tango_gateway.attempt").as_deref(),
        Some("2")
    );
    assert_eq!(
        attr(attempts[1], "http.request.resend_count").as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(attempts[1], "tango_gateway.outcome").as_deref(),
        Some("2xx")
    );
    // Each attempt told Tango its own span.
    let received = staged.fake.received();
    let sent: Vec<String> = received
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap().to_owned())
        .collect();
    for attempt in &attempts {
        let id = hex(&attempt.span_id);
        assert!(sent.iter().any(|tp| tp.contains(&id)), "{sent:?} {id}");
    }
    // The caller sent no traceparent: the access log names the trace the server span began.
    let trace = hex(&server.trace_id);
    let logged = |gateway: &Process| {
        gateway
            .output()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .any(|event| {
                event["target"] == "tango_gateway::access" && event["trace_id"] == trace.as_str()
            })
    };
    for _ in 0..200 {
        if logged(&gateway) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged(&gateway), "{trace}: {:#?}", gateway.output());
}

/// The OAuth route: the start-up fetch is a root span; a fetch a request waits for (after a
/// 401) is a child of that request's server span. No token, secret or proof anywhere, nor
/// the query string or a header value (§13).
#[tokio::test]
async fn token_fetches_have_spans_and_no_secret_is_exported() {
    let collector = Collector::start().await;
    let oauth = OAuth::default(); // client_credentials, DPoP with a key file
    let staged = Setup::new()
        .log("json", "info")
        .oauth(oauth)
        .stage_with(|_| {})
        .await;
    // The standard variable turns tracing on (no telemetry block in the file).
    let gateway = Process::start_with_env(
        &staged.config_file,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())],
    )
    .await;
    ready(&gateway).await;
    let startup = collector
        .wait_for("the start-up token fetch", |spans| {
            spans.iter().any(is_token_fetch)
        })
        .await;
    let first = startup.iter().find(|s| is_token_fetch(s)).unwrap();
    assert_eq!(
        attr(first, "tango_gateway.outcome").as_deref(),
        Some("success")
    );
    assert_eq!(
        attr(first, "tango_gateway.trigger").as_deref(),
        Some("refresh")
    );
    assert!(first.parent_span_id.is_empty(), "{}", summary(first));

    // Every token so far is refused: the request waits for a new one.
    staged.fake.revoke_tokens();
    let query_secret = "qv-6b1f0c";
    let header_secret = "hv-93d2aa";
    let status = get(
        &url(&gateway, &format!("{PATH}?secret_param={query_secret}")),
        &[
            ("x-custom-header", header_secret),
            ("authorization", "Bearer caller-supplied-credential"),
            (
                "traceparent",
                &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
            ),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let spans = collector
        .wait_for("the request's token fetch", |spans| {
            spans.iter().any(is_server)
                && spans
                    .iter()
                    .any(|s| is_token_fetch(s) && !s.parent_span_id.is_empty())
        })
        .await;
    let server = spans.iter().find(|s| is_server(s)).unwrap();
    let fetch = spans
        .iter()
        .find(|s| is_token_fetch(s) && !s.parent_span_id.is_empty())
        .unwrap();
    assert_eq!(fetch.parent_span_id, server.span_id, "{}", summary(fetch));
    assert_eq!(fetch.trace_id, server.trace_id);
    assert_eq!(
        attr(fetch, "tango_gateway.trigger").as_deref(),
        Some("request")
    );
    assert_eq!(
        attr(fetch, "tango_gateway.outcome").as_deref(),
        Some("success")
    );
    // The 401 and the resend: two attempts.
    let attempts = spans
        .iter()
        .filter(|s| is_attempt(s) && s.trace_id == server.trace_id)
        .count();
    assert_eq!(attempts, 2);

    // Nothing secret in any byte exported: names, attributes, events, resource.
    let mut secrets: Vec<String> = vec![
        staged.client_secret.clone(),
        query_secret.to_owned(),
        header_secret.to_owned(),
        "caller-supplied-credential".to_owned(),
        "secret_param".to_owned(),
    ];
    secrets.extend(staged.fake.issued_tokens());
    for request in staged.fake.received() {
        for name in ["dpop", "authorization"] {
            if let Some(value) = request.headers.get(name) {
                secrets.push(value.to_str().unwrap().to_owned());
            }
        }
    }
    assert!(secrets.len() >= 8, "{}", secrets.len());
    let bodies = collector.received.lock().unwrap().bodies.clone();
    for body in &bodies {
        for secret in &secrets {
            assert!(
                !body
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "an exported span holds a secret or caller value ({} bytes long)",
                secret.len()
            );
        }
    }
}

#[tokio::test]
async fn the_api_key_is_not_exported() {
    let collector = Collector::start().await;
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    with_telemetry(&staged.config_file, &collector.endpoint());
    let gateway = Process::start(&staged.config_file).await;
    assert_eq!(get(&url(&gateway, PATH), &[]).await, 200);
    collector
        .wait_for("an attempt", |spans| spans.iter().any(is_attempt))
        .await;
    let authorization = staged.fake.received()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    let bodies = collector.received.lock().unwrap().bodies.clone();
    for body in &bodies {
        for secret in [&staged.api_key, &authorization] {
            assert!(!body
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()));
        }
    }
}

/// A collector that is down costs requests nothing: they succeed, and the spans that could
/// not be delivered are counted.
#[tokio::test]
async fn with_the_collector_down_requests_succeed_and_drops_are_counted() {
    // A port that was just free: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    with_telemetry(&staged.config_file, &endpoint);
    let gateway = Process::start(&staged.config_file).await;
    for _ in 0..5 {
        assert_eq!(get(&url(&gateway, PATH), &[]).await, 200);
    }
    let start = Instant::now();
    loop {
        let text = metrics(&gateway).await;
        if dropped_spans(&text) > 0 {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no dropped span counted: {}",
            text.lines()
                .filter(|l| l.contains("otel"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Still serving while the exporter keeps failing.
    assert_eq!(get(&url(&gateway, PATH), &[]).await, 200);
}

/// A collector that accepts and never answers: requests are not held up either.
#[tokio::test]
async fn a_hanging_collector_does_not_hold_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            holder.lock().unwrap().push(stream);
        }
    });
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    with_telemetry(&staged.config_file, &endpoint);
    let gateway = Process::start(&staged.config_file).await;
    assert_eq!(get(&url(&gateway, PATH), &[]).await, 200);
    // The export is in flight (the collector holds its connection) ...
    let start = Instant::now();
    while held.lock().unwrap().is_empty() {
        assert!(start.elapsed() < DEADLINE, "no export attempted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and requests are answered all the same.
    for _ in 0..5 {
        assert_eq!(get(&url(&gateway, PATH), &[]).await, 200);
    }
}

/// Tracing off (the default): the caller's trace context goes to Tango exactly as sent, as
/// before tracing existed, and nothing is exported.
#[tokio::test]
async fn with_tracing_off_traceparent_passes_through_untouched() {
    let collector = Collector::start().await;
    let staged = Setup::new().log("json", "info").stage_with(|_| {}).await;
    let gateway = Process::start(&staged.config_file).await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let status = get(
        &url(&gateway, PATH),
        &[("traceparent", &traceparent), ("tracestate", "vendor=abc")],
    )
    .await;
    assert_eq!(status, 200);
    let upstream = staged.fake.received().pop().unwrap();
    assert_eq!(upstream.headers["traceparent"], traceparent.as_str());
    assert_eq!(upstream.headers["tracestate"], "vendor=abc");
    // Without one, none is made up.
    assert_eq!(get(&url(&gateway, PATH), &[]).await, 200);
    let upstream = staged.fake.received().pop().unwrap();
    assert!(upstream.headers.get("traceparent").is_none());
    assert!(metrics(&gateway)
        .await
        .contains("tango_gateway_otel_spans_dropped_total 0"));
    assert!(collector.spans().is_empty());
}
