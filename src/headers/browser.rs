//! Browser-context detection: Tango refuses browser calls (403.001), so the gateway refuses
//! them first and never lends a browser its credentials.

use http::{HeaderMap, HeaderName};

/// A `HeaderName`, not a `&str`: looking a `&str` up parses it into a name on every request.
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// `Sec-Fetch-Mode` values a browser sends for cross-origin and navigation requests.
const BROWSER_FETCH_MODES: [&str; 3] = ["cors", "navigate", "no-cors"];

/// True when the request carries the marks of a browser context: an `Origin` header, or a
/// `Sec-Fetch-Mode` of `cors`, `navigate` or `no-cors`.
pub(crate) fn is_browser_request(headers: &HeaderMap) -> bool {
    if headers.contains_key(http::header::ORIGIN) {
        return true;
    }
    headers.get_all(SEC_FETCH_MODE).iter().any(|value| {
        value.to_str().is_ok_and(|mode| {
            BROWSER_FETCH_MODES
                .iter()
                .any(|browser_mode| mode.trim().eq_ignore_ascii_case(browser_mode))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn origin_marks_a_browser() {
        assert!(is_browser_request(&with("origin", "https://app.example")));
        assert!(is_browser_request(&with("origin", "null")));
    }

    #[test]
    fn fetch_modes() {
        for mode in ["cors", "navigate", "no-cors", "CORS"] {
            let mut headers = HeaderMap::new();
            headers.insert(
                "sec-fetch-mode",
                HeaderValue::from_str(mode).unwrap_or(HeaderValue::from_static("x")),
            );
            assert!(is_browser_request(&headers), "{mode}");
        }
        assert!(!is_browser_request(&with("sec-fetch-mode", "same-origin")));
        assert!(!is_browser_request(&HeaderMap::new()));
    }
}
