//! The AWS ALB rule Tango's edge applies to `X-Forwarded-For`, as a pure function.
//!
//! Invariant: a request passes only if every entry of every `X-Forwarded-For` line is a bare IP
//! address (IPv4, or IPv6 without brackets, zone or port); anything else gets the ALB's own
//! `403` HTML page with `Server: awselb/2.0`, before Tango's application sees the request.
//! Also the way that rule is broken in the field: an intermediary (a corporate egress proxy)
//! that appends its client's `ip:port` to the header.

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, SERVER};
use http::{Response, StatusCode};

/// The body AWS's load balancer sends with its own 403 (CRLF line ends as on the wire).
pub const ALB_FORBIDDEN_HTML: &str = "<html>\r\n<head><title>403 Forbidden</title></head>\r\n\
<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n</body>\r\n</html>\r\n";
/// The `Server` header the ALB sets on answers it makes itself.
pub const ALB_SERVER: &str = "awselb/2.0";
const XFF: &str = "x-forwarded-for";

/// True when `entry` (already trimmed) is a bare IPv4 or IPv6 address.
pub fn is_bare_ip(entry: &str) -> bool {
    // std's parser refuses ports, brackets, zone ids and leading-zero octets: what the ALB refuses.
    entry.parse::<IpAddr>().is_ok()
}

/// True when every `X-Forwarded-For` entry is acceptable (or there is none).
///
/// All header lines count, in order; each is split on commas and its entries trimmed. An empty
/// entry (`"1.2.3.4,"`) or a value that is not visible ASCII is refused.
pub fn xff_is_acceptable<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    values.into_iter().all(|value| match value.to_str() {
        Ok(text) => text.split(',').all(|entry| is_bare_ip(entry.trim())),
        Err(_) => false,
    })
}

/// Applies the rule to a request's headers: `Some(403 response)` when it refuses.
pub fn check<B: From<&'static str>>(headers: &HeaderMap) -> Option<Response<B>> {
    if xff_is_acceptable(headers.get_all(XFF)) {
        return None;
    }
    let mut response = Response::new(B::from(ALB_FORBIDDEN_HTML));
    *response.status_mut() = StatusCode::FORBIDDEN;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    headers.insert(SERVER, HeaderValue::from_static(ALB_SERVER));
    Some(response)
}

/// What a port-appending intermediary between the gateway and the ALB does to a request:
/// `client` (as `ip:port`, IPv6 bracketed) added as the last `X-Forwarded-For` entry, on the
/// last header line when there is one. The result never passes [`check`].
pub fn append_with_port(headers: &mut HeaderMap, client: SocketAddr) {
    let mut lines: Vec<HeaderValue> = headers.get_all(XFF).iter().cloned().collect();
    let entry = client.to_string();
    let value = match lines.pop() {
        Some(last) => match last.to_str() {
            Ok(text) => format!("{text}, {entry}"),
            // A line that is not text stays as it was; the entry goes on a line of its own.
            Err(_) => {
                lines.push(last);
                entry
            }
        },
        None => entry,
    };
    // Always valid header text: visible ASCII joined with an `ip:port`.
    if let Ok(value) = HeaderValue::try_from(value) {
        lines.push(value);
    }
    headers.remove(XFF);
    for line in lines {
        headers.append(XFF, line);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ok(values: &[&str]) -> bool {
        let hv: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        xff_is_acceptable(hv.iter())
    }

    #[test]
    fn accepts_bare_addresses() {
        assert!(ok(&[]));
        assert!(ok(&["1.2.3.4"]));
        assert!(ok(&["2001:db8::1"]));
        assert!(ok(&["1.2.3.4, 10.0.0.1 ,::1"]));
        assert!(ok(&["1.2.3.4", "2001:db8::1, 192.0.2.7"]));
    }

    #[test]
    fn refuses_ports_brackets_and_garbage() {
        for bad in [
            "203.0.113.42:54321",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "garbage",
            "",
            "1.2.3.4,",
            "1.2.3.4 5.6.7.8",
            "fe80::1%eth0",
            "unknown",
            "1.2.3",
        ] {
            assert!(!ok(&[bad]), "{bad:?} must be refused");
        }
        // One bad entry anywhere, on any line, spoils the request.
        assert!(!ok(&["1.2.3.4, 5.6.7.8:80"]));
        assert!(!ok(&["1.2.3.4", "garbage"]));
    }

    #[test]
    fn refuses_non_ascii_values() {
        let v = HeaderValue::from_bytes(b"1.2.3.4\xff").unwrap();
        assert!(!xff_is_acceptable([&v]));
    }

    proptest::proptest! {
        #[test]
        fn any_ip_passes_and_with_port_or_brackets_fails(v4: u32, v6: u128, port: u16) {
            let v4 = std::net::Ipv4Addr::from(v4);
            let v6 = std::net::Ipv6Addr::from(v6);
            let both = format!("{v4}, {v6}");
            let v4_port = format!("{v4}:{port}");
            let v6_port = format!("[{v6}]:{port}");
            let v6_brackets = format!("[{v6}]");
            proptest::prop_assert!(ok(&[&both]));
            proptest::prop_assert!(!ok(&[&v4_port]));
            proptest::prop_assert!(!ok(&[&v6_port]));
            proptest::prop_assert!(!ok(&[&v6_brackets]));
        }
    }

    #[test]
    fn a_port_appending_intermediary_breaks_the_rule() {
        let client: SocketAddr = "198.51.100.7:40522".parse().unwrap();
        let mut headers = HeaderMap::new();
        append_with_port(&mut headers, client);
        assert_eq!(headers["x-forwarded-for"], "198.51.100.7:40522");
        assert!(check::<String>(&headers).is_some());

        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("127.0.0.1"));
        append_with_port(&mut headers, "[2001:db8::1]:443".parse().unwrap());
        let lines: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(lines, ["10.0.0.1", "127.0.0.1, [2001:db8::1]:443"]);
        assert!(check::<String>(&headers).is_some());
    }

    #[test]
    fn check_builds_the_alb_page() {
        let mut headers = HeaderMap::new();
        assert!(check::<String>(&headers).is_none());
        headers.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4:80"));
        let response = check::<String>(&headers).unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[SERVER], ALB_SERVER);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html");
        assert!(response.body().contains("<h1>403 Forbidden</h1>"));
    }
}
