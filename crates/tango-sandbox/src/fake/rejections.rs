//! Refusals as Tango's edge and API word them, for [`super::Fault::Answer`]: the ALB's own
//! `403` page, a browser refusal naming `403.001`, DPoP challenges, a plain `401`, a `429`.
//!
//! Invariant: each answer is what the gateway would see from the real thing (status, the
//! headers that tell the causes apart, and the body), so tests of the gateway's rejection
//! causes (PRODUCT.md §11) can inject any of them without breaking a rule on the way.

use super::alb::{ALB_FORBIDDEN_HTML, ALB_SERVER};

/// One answer the fake sends as it is (plus `x-fake-tango: 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannedAnswer {
    pub status: u16,
    /// Header names and values, in order (a name may repeat).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl CannedAnswer {
    pub fn new(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        CannedAnswer {
            status,
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            body: body.to_owned(),
        }
    }

    /// The ALB's `403` page (`Server: awselb/2.0`, HTML), as it refuses a port in
    /// `X-Forwarded-For`.
    pub fn alb_forbidden() -> Self {
        Self::new(
            403,
            &[("server", ALB_SERVER), ("content-type", "text/html")],
            ALB_FORBIDDEN_HTML,
        )
    }

    /// Another answer the ALB makes itself: `502` with its HTML page (no healthy target).
    pub fn alb_bad_gateway() -> Self {
        let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                    <center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n";
        Self::new(
            502,
            &[("server", ALB_SERVER), ("content-type", "text/html")],
            page,
        )
    }

    /// Tango refusing a call from a browser context: a JSON `403` naming `403.001`.
    pub fn browser_refused() -> Self {
        let body = serde_json::json!({
            "timestamp": "2026-01-01T00:00:00.000Z",
            "requestId": "4f0e2a9c-0000-4000-8000-000000000001",
            "httpCode": 403,
            "httpPhrase": "Forbidden",
            "i18nKey": "403.001",
            "message": "Browser-based API calls are not allowed.",
        });
        Self::new(
            403,
            &[("content-type", "application/json")],
            &body.to_string(),
        )
    }

    /// A `401` with no challenge: Basic credentials refused (a wrong or deactivated key).
    pub fn unauthorized() -> Self {
        Self::json_error(401, "Unauthorized", &[])
    }

    /// A `401` with `WWW-Authenticate: DPoP error="{error}"` (`use_dpop_nonce` also sends
    /// a `DPoP-Nonce`).
    pub fn dpop_challenge(error: &str) -> Self {
        let challenge = format!("DPoP error=\"{error}\"");
        let mut headers = vec![("www-authenticate", challenge.as_str())];
        if error == "use_dpop_nonce" {
            headers.push(("dpop-nonce", "canned-nonce"));
        }
        Self::json_error(401, "Unauthorized", &headers)
    }

    /// A `429` with `Retry-After`.
    pub fn rate_limited(retry_after_seconds: u32) -> Self {
        let seconds = retry_after_seconds.to_string();
        Self::json_error(
            429,
            "Too Many Requests",
            &[("retry-after", seconds.as_str())],
        )
    }

    /// A Tango-shaped JSON error with `status` and these extra headers.
    pub fn json_error(status: u16, phrase: &str, headers: &[(&str, &str)]) -> Self {
        let body = serde_json::json!({
            "timestamp": "2026-01-01T00:00:00.000Z",
            "requestId": "4f0e2a9c-0000-4000-8000-000000000002",
            "httpCode": status,
            "httpPhrase": phrase,
            "message": "Injected fault.",
        });
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        Self::new(status, &all, &body.to_string())
    }
}
