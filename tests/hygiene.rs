//! Hygiene end to end (PRODUCT.md §9 and §12): paths a server behind the gateway could read as
//! another path are refused before anything reaches Tango, non-ASCII paths pass byte for byte,
//! and no caller header the gateway removes or writes itself reaches Tango under any spelling,
//! over HTTP/1.1 or h2c, while ordinary headers still do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{Harness, Setup};
use tango_sandbox::fake::RecordedRequest;

/// After a refusal the gateway still answers a normal call.
async fn assert_still_serving(h: &Harness) {
    h.fake.clear();
    let answer = h.get("/raas/v2/catalogs").await;
    assert_eq!(answer.status, 200, "the gateway stopped serving");
    assert_eq!(h.fake.request_count(), 1);
}

/// A raw HTTP/1.1 GET of `target` with extra header lines (each ending in `\r\n`).
fn raw_get(target: &str, extra_headers: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}Connection: close\r\n\r\n")
}

/// Asserts a raw answer is the gateway's own `status` error with `code`.
fn assert_raw_error(answer: &(u16, String), status: u16, code: &str, what: &str) {
    let (got, text) = answer;
    assert_eq!(*got, status, "{what}: {text}");
    assert!(
        text.to_ascii_lowercase()
            .contains(&format!("x-tango-gateway-error: {code}")),
        "{what}: {text}"
    );
    assert!(text.contains(&format!("\"{code}\"")), "{what}: {text}");
}

/// Paths that some server behind the gateway reads as another path, or as characters the
/// gateway never matched: path parameters (Tomcat and Jetty drop `;...`, so `..;` is `..` to
/// them), overlong and otherwise invalid UTF-8 escapes, and escaped control characters.
const BAD_PATHS: [&str; 20] = [
    "/raas/v2/..;/..;/other/x",
    "/raas/v2/catalogs;jsessionid=0123",
    "/raas/v2;/catalogs",
    "/raas/v2/%3b/catalogs",
    "/raas/v2/..%3B/..%3B/other/x",
    "/raas/v2/%c0%ae%c0%ae/%c0%ae%c0%ae/other/x",
    "/raas/v2/%e0%80%ae%e0%80%ae/other",
    "/raas/v2/catalogs%c0%af..%c0%afother",
    "/raas/v2/%ed%a0%80",
    "/raas/v2/catalogs%ff",
    "/raas/v2/catalogs%80",
    "/raas/v2/catalogs%e2%82",
    "/raas/v2/catalogs%c3%c3%a9",
    "/raas/v2/catalogs%0d%0aX-Injected:%201",
    "/raas/v2/catalogs%0a",
    "/raas/v2/catalogs%09",
    "/raas/v2/catalogs%7f",
    "/raas/v2/catalogs%c2%85",
    "/raas/v2/catalogs%C2%9F",
    // A raw C1 control (NEL), sent as the UTF-8 bytes C2 85.
    "/raas/v2/catalogs\u{85}",
];

#[tokio::test]
async fn paths_a_server_could_read_otherwise_are_bad_path_and_never_forwarded() {
    let h = Harness::start().await;
    for path in BAD_PATHS {
        let answer = h.raw(&raw_get(path, "")).await;
        assert_raw_error(&answer, 400, "gateway.bad_path", &format!("{path:?}"));
        assert_eq!(h.fake.request_count(), 0, "{path:?} reached the fake");
    }
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn the_asterisk_form_is_a_bad_request() {
    let h = Harness::start().await;
    let answer = h
        .raw("OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_raw_error(&answer, 400, "gateway.bad_request", "OPTIONS *");
    assert_eq!(h.fake.request_count(), 0);
    assert_still_serving(&h).await;
}

#[tokio::test]
async fn non_ascii_paths_are_forwarded_byte_for_byte() {
    let h = Harness::start().await;
    let cases = [
        ("/raas/v2/catalogs/café", "/raas/v2/catalogs/café"),
        ("/raas/v2/catalogs/caf%c3%a9", "/raas/v2/catalogs/caf%c3%a9"),
        ("/raas/v2/catalogs/CAF%C3%89", "/raas/v2/catalogs/CAF%C3%89"),
        (
            "/raas/v2/catalogs/%e2%82%ac?q=%c3%a9",
            "/raas/v2/catalogs/%e2%82%ac?q=%c3%a9",
        ),
        // Rewritten (a `.` segment): the rest is copied, never re-encoded (`é` is not `Ã©`);
        // only an escaped unreserved character is decoded (what the origin would read).
        ("/raas/v2/./catalogs/é%41", "/raas/v2/catalogs/éA"),
        ("/raas/v2/%63atalogs/%7e", "/raas/v2/catalogs/~"),
        (
            "/raas/v2/%2e/catalogs//café%c3%a9/",
            "/raas/v2/catalogs/café%c3%a9/",
        ),
    ];
    for (sent, forwarded) in cases {
        h.fake.clear();
        let (status, text) = h.raw(&raw_get(sent, "")).await;
        assert!(
            !text.to_ascii_lowercase().contains("x-tango-gateway-error"),
            "{sent}: refused by the gateway: {text}"
        );
        assert_ne!(status, 0, "{sent}: {text}");
        assert_eq!(h.only_request().path_and_query, forwarded, "{sent}");
    }
}

/// Caller headers that must never reach Tango, in names any HTTP version can carry.
const REMOVED: [(&str, &str); 10] = [
    ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-port", "8080"),
    ("x-forwarded-prefix", "/admin"),
    ("x-original-url", "/admin/users"),
    ("x-rewrite-url", "/admin/users"),
    ("x-http-method-override", "DELETE"),
    ("x-http-method", "DELETE"),
    ("x-method-override", "DELETE"),
];

/// Ordinary caller headers that must still arrive.
const KEPT: [(&str, &str); 2] = [("accept", "application/json"), ("x-custom", "kept")];

/// Asserts that the fake saw none of `removed` (compared with `_` read as `-`, so no spelling
/// slips through) and every one of `kept`, with its value.
fn assert_cleaned(seen: &RecordedRequest, removed: &[&str], kept: &[(&str, &str)]) {
    let dashes = |name: &str| name.to_ascii_lowercase().replace('_', "-");
    for name in seen.headers.keys() {
        let name = name.as_str();
        assert!(
            !removed
                .iter()
                .any(|removed| dashes(removed) == dashes(name)),
            "{name} reached the fake: {:?}",
            seen.headers
        );
    }
    for (name, value) in kept {
        assert_eq!(
            seen.header(name),
            Some(*value),
            "{name}: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.method, Method::GET, "a method override took effect");
}

#[tokio::test]
async fn override_and_h2c_settings_headers_never_reach_tango_over_http1() {
    let h = Harness::start().await;
    let headers: Vec<(&str, &str)> = REMOVED.iter().chain(&KEPT).copied().collect();
    let answer = h.call(Method::GET, "/raas/v2/catalogs", &headers, "").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let names: Vec<&str> = REMOVED.iter().map(|(name, _)| *name).collect();
    assert_cleaned(&h.only_request(), &names, &KEPT);
}

#[tokio::test]
async fn override_and_h2c_settings_headers_never_reach_tango_over_h2c() {
    let h = Harness::start().await;
    // Prior knowledge: HTTP/2 from the first byte on a plain TCP connection.
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut request = Request::get(h.url("/raas/v2/catalogs"));
    for (name, value) in REMOVED.iter().chain(&KEPT) {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::default()).unwrap())
        .await
        .expect("the gateway answers over h2c");
    assert_eq!(response.version(), Version::HTTP_2);
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{body:?}");
    let names: Vec<&str> = REMOVED.iter().map(|(name, _)| *name).collect();
    assert_cleaned(&h.only_request(), &names, &KEPT);
}

/// Underscore spellings (only HTTP/1.1 raw bytes carry them as written) of headers the gateway
/// removes or writes itself, and of a header `Connection` names.
const UNDERSCORED: &str = "X_Forwarded_For: 198.51.100.66\r\n\
    X_Real_IP: 198.51.100.66\r\n\
    Proxy_Authorization: Basic ZXZpbDpldmls\r\n\
    Transfer_Encoding: chunked\r\n\
    Content_Length: 999\r\n\
    Keep_Alive: timeout=600\r\n\
    HTTP2_Settings: AAMAAABk\r\n\
    X_Forwarded_Host: evil.example\r\n\
    X_Forwarded_Proto: http\r\n\
    X_Original_URL: /admin/users\r\n\
    X_HTTP_Method_Override: DELETE\r\n\
    X_Request_ID: spoofed-id\r\n\
    X_Secret_Hop: 1\r\n\
    Connection: X-Secret-Hop\r\n\
    Accept: application/json\r\n\
    X-Custom: kept\r\n\
    X_Other_Custom: kept-too\r\n";

const UNDERSCORED_NAMES: [&str; 13] = [
    "x_forwarded_for",
    "x_real_ip",
    "proxy_authorization",
    "transfer_encoding",
    "content_length",
    "keep_alive",
    "http2_settings",
    "x_forwarded_host",
    "x_forwarded_proto",
    "x_original_url",
    "x_http_method_override",
    "x_request_id",
    "x_secret_hop",
];

/// Sends the underscore spellings through a gateway in `mode`; returns what the fake saw.
async fn underscored_seen(setup: Setup) -> RecordedRequest {
    let h = setup.start().await;
    let (status, text) = h.raw(&raw_get("/raas/v2/catalogs", UNDERSCORED)).await;
    assert_eq!(status, 200, "{text}");
    let seen = h.only_request();
    // `x-forwarded-for` and `x-request-id` are the gateway's own (checked below); every
    // underscore spelling, and the header `Connection` named, must be gone.
    let spelled: Vec<&str> = seen
        .headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.contains('_') && *name != "x_other_custom")
        .collect();
    assert!(spelled.is_empty(), "reached the fake: {spelled:?}");
    let others: Vec<&str> = UNDERSCORED_NAMES
        .iter()
        .copied()
        .filter(|name| !["x_forwarded_for", "x_request_id", "content_length"].contains(name))
        .collect();
    assert_cleaned(
        &seen,
        &others,
        &[
            ("accept", "application/json"),
            ("x-custom", "kept"),
            ("x_other_custom", "kept-too"),
        ],
    );
    assert_ne!(seen.header("x-request-id"), Some("spoofed-id"));
    for line in seen.header_all("x-forwarded-for") {
        assert!(!line.contains("198.51.100.66"), "{line}");
    }
    seen
}

#[tokio::test]
async fn underscore_spellings_never_reach_tango_in_peer_mode() {
    let seen = underscored_seen(Setup::new().forwarded_for("peer", None)).await;
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test]
async fn underscore_spellings_never_reach_tango_in_append_mode() {
    let seen = underscored_seen(Setup::new().forwarded_for("append", None)).await;
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test]
async fn underscore_spellings_never_reach_tango_in_static_mode() {
    let seen = underscored_seen(Setup::new().forwarded_for("static", Some("203.0.113.7"))).await;
    assert_eq!(seen.header_all("x-forwarded-for"), ["203.0.113.7"]);
}

#[tokio::test]
async fn underscore_spellings_never_reach_tango_in_remove_mode() {
    let seen = underscored_seen(Setup::new().forwarded_for("remove", None)).await;
    assert!(seen.header_all("x-forwarded-for").is_empty());
}

/// Sends a POST over h2c whose body ends with trailer fields carrying credentials and a
/// forwarding header; returns what the fake received.
async fn post_with_trailers(setup: Setup) -> RecordedRequest {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use hyper_util::rt::TokioIo;

    let h = setup.start().await;
    let tcp = tokio::net::TcpStream::connect(h.gateway.listen_addr)
        .await
        .unwrap();
    let (mut send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut trailers = http::HeaderMap::new();
    for (name, value) in [
        ("authorization", "Bearer caller-token"),
        ("dpop", "caller.proof"),
        ("cookie", "session=caller"),
        ("x-forwarded-for", "203.0.113.9:4444"),
        ("x-custom-trailer", "1"),
    ] {
        trailers.insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        );
    }
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(
            b"{\"externalRefID\":\"t-1\"}",
        ))),
        Ok(Frame::trailers(trailers)),
    ];
    let request = Request::post(format!("http://{}/raas/v2/orders", h.gateway.listen_addr))
        .header("content-type", "application/json")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let seen = h.only_request();
    assert_eq!(&seen.body[..], b"{\"externalRefID\":\"t-1\"}");
    seen
}

#[tokio::test]
async fn caller_trailers_never_reach_tango_on_a_streamed_body() {
    // One attempt: the body streams to Tango's h2 endpoint as it arrives.
    let seen = post_with_trailers(Setup::new().retry("max_attempts", "1")).await;
    assert_eq!(
        seen.version,
        Version::HTTP_2,
        "the fake speaks h2 to the gateway"
    );
    assert!(seen.trailers.is_none(), "{:?}", seen.trailers);
}

#[tokio::test]
async fn caller_trailers_never_reach_tango_on_a_buffered_body() {
    let seen = post_with_trailers(Setup::new()).await;
    assert!(seen.trailers.is_none(), "{:?}", seen.trailers);
}
