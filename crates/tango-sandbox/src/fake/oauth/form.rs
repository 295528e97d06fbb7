//! Reading a token request: the `application/x-www-form-urlencoded` body and HTTP Basic client
//! authentication (RFC 6749 §2.3.1, §4.4.2), as pure functions.
//!
//! Invariant: anything malformed (a bad `%XX`, bytes that are not UTF-8, a parameter given
//! twice) is an error, never a guess and never a panic.

use std::collections::HashMap;

use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;

/// The media type a token request body must have.
pub(super) const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// Why a token request could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormError {
    #[error("the body is not application/x-www-form-urlencoded")]
    WrongContentType,
    #[error("the form is not validly encoded")]
    BadEncoding,
    #[error("a form parameter is given more than once")]
    Repeated,
    #[error("the Authorization header is not valid Basic client authentication")]
    BadBasic,
}

/// True when `Content-Type` is the form media type (parameters such as `charset` allowed).
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(FORM_TYPE))
}

/// Parses a form body into its parameters. Empty pairs (`a=1&&b=2`) are skipped; a name with
/// no `=` has the empty value; a parameter may appear only once (RFC 6749 §3.2).
pub(super) fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, FormError> {
    let text = std::str::from_utf8(body).map_err(|_| FormError::BadEncoding)?;
    let mut params = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if params.insert(decode(name)?, decode(value)?).is_some() {
            return Err(FormError::Repeated);
        }
    }
    Ok(params)
}

/// Form-decodes one name or value: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub(super) fn decode(encoded: &str) -> Result<String, FormError> {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut input = encoded.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = input.next().and_then(hex).ok_or(FormError::BadEncoding)?;
                let low = input.next().and_then(hex).ok_or(FormError::BadEncoding)?;
                bytes.push(high << 4 | low);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| FormError::BadEncoding)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The `(client_id, client_secret)` of `Authorization: Basic`, each form-decoded as RFC 6749
/// §2.3.1 requires. `Ok(None)` when there is no `Authorization` header or it is another scheme.
pub(super) fn basic_client(headers: &HeaderMap) -> Result<Option<(String, String)>, FormError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| FormError::BadBasic)?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| FormError::BadBasic)?;
    let text = String::from_utf8(decoded).map_err(|_| FormError::BadBasic)?;
    let (id, secret) = text.split_once(':').ok_or(FormError::BadBasic)?;
    let id = decode(id).map_err(|_| FormError::BadBasic)?;
    let secret = decode(secret).map_err(|_| FormError::BadBasic)?;
    Ok(Some((id, secret)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http::HeaderValue;

    #[test]
    fn decodes_plus_and_percent_escapes() {
        assert_eq!(decode("a+b%20c%2B%3d").unwrap(), "a b c+=");
        assert_eq!(decode("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode("").unwrap(), "");
        for bad in ["%", "%4", "%zz", "%C3", "%FF"] {
            assert_eq!(decode(bad), Err(FormError::BadEncoding), "{bad}");
        }
    }

    #[test]
    fn parses_a_token_request() {
        let form = parse_form(
            b"grant_type=client_credentials&client_id=c1&client_secret=s%26x&&scope=a+b&empty",
        )
        .unwrap();
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_secret"], "s&x");
        assert_eq!(form["scope"], "a b");
        assert_eq!(form["empty"], "");
        assert_eq!(parse_form(b"a=1&a=2"), Err(FormError::Repeated));
        assert_eq!(parse_form(b"a=\xff"), Err(FormError::BadEncoding));
        assert!(parse_form(b"").unwrap().is_empty());
    }

    #[test]
    fn content_type_is_checked_by_essence() {
        let mut headers = HeaderMap::new();
        assert!(!is_form(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
        );
        assert!(is_form(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_form(&headers));
    }

    #[test]
    fn basic_client_auth_is_decoded() {
        let mut headers = HeaderMap::new();
        assert_eq!(basic_client(&headers), Ok(None));
        // base64("my%20client:p%3Ass")
        let encoded = base64::engine::general_purpose::STANDARD.encode("my%20client:p%3Ass");
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        assert_eq!(
            basic_client(&headers),
            Ok(Some(("my client".into(), "p:ss".into())))
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(basic_client(&headers), Ok(None));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_client(&headers), Err(FormError::BadBasic));
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {no_colon}")).unwrap(),
        );
        assert_eq!(basic_client(&headers), Err(FormError::BadBasic));
    }
}
