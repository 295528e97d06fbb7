//! Why Tango refused (PRODUCT.md §11): the one classifier of a non-2xx upstream answer, used
//! by the rejection counter, the access log's `upstream_cause` and `doctor`.
//!
//! Pure: from the status, three headers (`Server`, `WWW-Authenticate`, `Content-Type`) and,
//! for a `403` only, the first bytes of the body. Invariant: [`classify`] looks at the body
//! only when [`needs_body`] says so, never panics on what a server sends, and gives `None`
//! for every 2xx answer.

use http::header::{CONTENT_TYPE, SERVER, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};

/// How much of a `403`'s body the classifier may look at: enough for the ALB's page and for
/// a Tango JSON error naming `403.001`, and small enough to hold in memory per answer.
pub const BODY_PEEK_BYTES: usize = 4096;

/// Tango's error code for a call made from a browser context.
const BROWSER_REFUSAL_CODE: &[u8] = b"403.001";
/// The `Server` of answers AWS's Application Load Balancer makes itself (`awselb/2.0`).
const ALB_SERVER_PREFIX: &[u8] = b"awselb/";
/// RFC 9449 §9: the resource server wants a proof carrying its nonce.
const USE_DPOP_NONCE: &[u8] = b"use_dpop_nonce";

/// The cause of a non-2xx upstream answer: a closed set, each a metric label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cause {
    /// `403` from `Server: awselb/*` with an HTML body: the ALB refused `X-Forwarded-For`.
    AlbXff = 1,
    /// Any other non-2xx answer the load balancer made itself.
    AlbOther,
    /// `403` whose JSON names `403.001`: Tango saw a browser context.
    BrowserRefused,
    /// `401` without a DPoP error: platform name, key, client or token refused.
    Unauthorized,
    /// `401` with `WWW-Authenticate: DPoP error="use_dpop_nonce"`.
    DpopNonce,
    /// `401` with a `WWW-Authenticate: DPoP` error other than `use_dpop_nonce`.
    DpopInvalid,
    /// `429`.
    RateLimited,
    /// Any other 4xx.
    ClientError,
    /// 5xx.
    ServerError,
}

impl Cause {
    /// Every cause, in code order.
    pub const ALL: [Cause; 9] = [
        Cause::AlbXff,
        Cause::AlbOther,
        Cause::BrowserRefused,
        Cause::Unauthorized,
        Cause::DpopNonce,
        Cause::DpopInvalid,
        Cause::RateLimited,
        Cause::ClientError,
        Cause::ServerError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::AlbXff => "alb_xff",
            Cause::AlbOther => "alb_other",
            Cause::BrowserRefused => "browser_refused",
            Cause::Unauthorized => "unauthorized",
            Cause::DpopNonce => "dpop_nonce",
            Cause::DpopInvalid => "dpop_invalid",
            Cause::RateLimited => "rate_limited",
            Cause::ClientError => "client_error",
            Cause::ServerError => "server_error",
        }
    }

    /// A non-zero code, for a cause kept in an atomic (0 means none).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The cause of a [`Cause::code`]; `None` for 0 (and any other code), in one branch: the
    /// access log asks for every request.
    pub fn from_code(code: u8) -> Option<Cause> {
        let index = usize::from(code).checked_sub(1)?;
        Cause::ALL.get(index).copied()
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True when [`classify`] needs the first bytes of the body: a `403` whose headers do not
/// settle it (the ALB's page without `Content-Type: text/html`, or a JSON or untyped answer
/// that may name `403.001`). Every other answer is classified from its head alone.
pub fn needs_body(status: StatusCode, headers: &HeaderMap) -> bool {
    if status != StatusCode::FORBIDDEN {
        return false;
    }
    let media = media_type(headers);
    if from_alb(headers) {
        !media.is_some_and(is_html_type)
    } else {
        media.is_none_or(is_json_type)
    }
}

/// The cause of an upstream answer, `None` for 1xx, 2xx and 3xx answers not made by the load
/// balancer. `body_head` is the first bytes of the body (at most [`BODY_PEEK_BYTES`] are
/// read), used only when [`needs_body`] is true; pass `&[]` otherwise.
pub fn classify(status: StatusCode, headers: &HeaderMap, body_head: &[u8]) -> Option<Cause> {
    if status.is_success() {
        return None;
    }
    let body_head = &body_head[..body_head.len().min(BODY_PEEK_BYTES)];
    let media = media_type(headers);
    if from_alb(headers) {
        let html = media.is_some_and(is_html_type) || looks_like_html(body_head);
        return Some(if status == StatusCode::FORBIDDEN && html {
            Cause::AlbXff
        } else {
            Cause::AlbOther
        });
    }
    match status.as_u16() {
        401 => Some(unauthorized_cause(headers)),
        403 => {
            let json = match media {
                Some(media) => is_json_type(media),
                None => looks_like_json(body_head),
            };
            Some(if json && names_browser_refusal(body_head) {
                Cause::BrowserRefused
            } else {
                Cause::ClientError
            })
        }
        429 => Some(Cause::RateLimited),
        400..=499 => Some(Cause::ClientError),
        500.. => Some(Cause::ServerError),
        _ => None,
    }
}

fn from_alb(headers: &HeaderMap) -> bool {
    headers.get(SERVER).is_some_and(|server| {
        let server = trim(server.as_bytes());
        server.len() >= ALB_SERVER_PREFIX.len()
            && server[..ALB_SERVER_PREFIX.len()].eq_ignore_ascii_case(ALB_SERVER_PREFIX)
    })
}

/// The media type of `Content-Type`, without parameters or surrounding spaces.
fn media_type(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(CONTENT_TYPE)?.as_bytes();
    let media = value.split(|b| *b == b';').next().unwrap_or_default();
    Some(trim(media))
}

fn is_html_type(media: &[u8]) -> bool {
    media.eq_ignore_ascii_case(b"text/html")
}

/// `application/json` and any `+json` type (`application/problem+json`).
fn is_json_type(media: &[u8]) -> bool {
    media.eq_ignore_ascii_case(b"application/json")
        || (media.len() > 5 && media[media.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

fn looks_like_html(head: &[u8]) -> bool {
    let head = trim(head);
    starts_with_ignore_case(head, b"<html") || starts_with_ignore_case(head, b"<!doctype html")
}

fn looks_like_json(head: &[u8]) -> bool {
    matches!(trim(head).first(), Some(b'{' | b'['))
}

/// `403.001` as a code of its own, not inside a longer number (`1403.0011`).
fn names_browser_refusal(head: &[u8]) -> bool {
    let code = BROWSER_REFUSAL_CODE;
    head.windows(code.len()).enumerate().any(|(at, window)| {
        let before = at.checked_sub(1).and_then(|i| head.get(i));
        let after = head.get(at + code.len());
        window == code
            && !before.is_some_and(|b| b.is_ascii_digit() || *b == b'.')
            && !after.is_some_and(u8::is_ascii_digit)
    })
}

/// A `401`: a DPoP challenge's error decides; anything else is plain `unauthorized`.
fn unauthorized_cause(headers: &HeaderMap) -> Cause {
    let mut cause = Cause::Unauthorized;
    for value in headers.get_all(WWW_AUTHENTICATE) {
        for error in dpop_errors(value.as_bytes()) {
            if error == USE_DPOP_NONCE {
                return Cause::DpopNonce;
            }
            cause = Cause::DpopInvalid;
        }
    }
    cause
}

/// The `error` parameter of every `DPoP` challenge in one `WWW-Authenticate` value
/// (RFC 9110 §11.6.1: challenges and their parameters are all separated by commas; a
/// challenge starts with a scheme not followed by `=`).
fn dpop_errors(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut in_dpop = false;
    split_list(value).filter_map(move |element| {
        let element = trim(element);
        if element.is_empty() {
            // Lists may hold empty elements (RFC 9110 §5.6.1): not a new challenge.
            return None;
        }
        let (param, is_param) = match first_token(element) {
            (token, rest) if trim_start(rest).first() == Some(&b'=') => {
                ((token, &trim_start(rest)[1..]), true)
            }
            (scheme, rest) => {
                in_dpop = scheme.eq_ignore_ascii_case(b"dpop");
                // The challenge's first parameter, on the same element as its scheme.
                let rest = trim_start(rest);
                let (token, after) = first_token(rest);
                let after = trim_start(after);
                match after.first() {
                    Some(b'=') if !token.is_empty() => ((token, &after[1..]), true),
                    _ => ((&b""[..], &b""[..]), false),
                }
            }
        };
        let (name, value) = param;
        (is_param && in_dpop && name.eq_ignore_ascii_case(b"error")).then(|| unquote(trim(value)))
    })
}

/// The elements of a comma-separated header list, commas inside quoted strings kept.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let value = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (at, byte) in value.iter().enumerate() {
            match byte {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    rest = Some(&value[at + 1..]);
                    return Some(&value[..at]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(value)
    })
}

/// A leading token (up to a space, tab or `=`) and what follows it.
fn first_token(text: &[u8]) -> (&[u8], &[u8]) {
    let end = text
        .iter()
        .position(|b| matches!(b, b' ' | b'\t' | b'='))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// A quoted-string's content (escapes kept: error codes have none), or a token as it is.
fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let bytes = trim_start(bytes);
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |at| at + 1);
    &bytes[..end]
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
#[path = "rejection_tests.rs"]
mod tests;
