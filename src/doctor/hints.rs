//! What a failed step most likely means and what to do about it: one variant per diagnosis,
//! one sentence each, naming the configuration keys to look at.
//!
//! Invariant: hint texts are fixed strings (plus a gateway error code); they never quote
//! anything a server sent or anything from a secret.

use std::fmt;

/// The diagnosis of a failed step. Tests match on the variant; users read its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// The upstream host does not resolve.
    DnsFailed,
    /// No address accepted a TCP connection.
    TcpFailed,
    /// The server's chain does not lead to a trusted CA.
    UnknownServerCa,
    /// The server's certificate does not cover the host of `upstream.url`.
    HostnameMismatch,
    /// The server's certificate is expired or not yet valid.
    ServerCertNotValidNow,
    /// Any other handshake failure.
    TlsHandshake,
    /// The server demands a client certificate and none is configured.
    ClientCertMissing,
    /// The server refused the configured client certificate.
    ClientCertRefused,
    /// The server closed the connection without an answer or an alert.
    ClientCertUnconfirmed,
    /// The server took the connection but sent no answer in time.
    NoAnswer,
    /// The token endpoint refused the OAuth client (`invalid_client`, `unauthorized_client`).
    OAuthClientRefused,
    /// The token endpoint refused the service account (`invalid_grant`).
    OAuthGrantRefused,
    /// The token endpoint refused the request itself (audience, scope, grant type).
    OAuthRequestRefused,
    /// The token endpoint answered `403`.
    TokenEndpointForbidden,
    /// TLS with the token endpoint failed.
    TokenEndpointTls,
    /// Timeouts, connection failures, 5xx, 429, malformed answers.
    TokenEndpointDown,
    /// The token is DPoP-bound but no DPoP key is configured, or a proof cannot be made.
    DpopKey,
    /// The token endpoint issues Bearer tokens to a client configured for DPoP.
    DpopNotIssued,
    /// Tango's ALB refused `X-Forwarded-For` (cause `alb_xff`).
    XffRejected,
    /// Any other answer the ALB made itself (cause `alb_other`).
    AlbRefused,
    /// `403.001`: Tango took the call for a browser's (cause `browser_refused`).
    BrowserRefused,
    /// `401` from the API (cause `unauthorized`).
    CredentialsRefused,
    /// `401` asking for a DPoP nonce even after the nonce round trip (cause `dpop_nonce`).
    DpopNonce,
    /// `401` refusing the DPoP proof or its token (cause `dpop_invalid`).
    DpopInvalid,
    /// `403` from the API itself (not the ALB).
    Forbidden,
    /// `404` from the API.
    PathNotFound,
    /// `429` from the API.
    RateLimited,
    /// `5xx` from the API.
    UpstreamError,
    /// Any other status from the API.
    UnexpectedStatus,
    /// The gateway answered the call itself with this `gateway.*` code.
    Gateway(String),
    /// No source address is admitted on the route, so no caller could use it.
    NoAdmittedSource,
    /// The route's TLS client, credentials or stack cannot be built.
    Setup,
    /// The egress proxy answered the CONNECT with `407`.
    ProxyAuth,
    /// The egress proxy refused or failed to open the tunnel.
    ProxyTunnel,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Hint::DnsFailed => {
                "check the host name in upstream.url and this machine's DNS resolver (in \
                 Kubernetes, the pod's egress NetworkPolicy must allow DNS)"
            }
            Hint::TcpFailed => {
                "nothing accepted the connection: check the port in upstream.url, egress \
                 firewall rules or NetworkPolicy, and whether this network requires an HTTP proxy"
            }
            Hint::UnknownServerCa => {
                "the server's certificate does not chain to a trusted CA: set \
                 upstream.tls.ca_file to the CA that issued it, or check that no TLS-inspecting \
                 proxy intercepts the connection"
            }
            Hint::HostnameMismatch => {
                "the server's certificate does not cover the host of upstream.url: use the host \
                 name Tango documents, not an IP address or an alias"
            }
            Hint::ServerCertNotValidNow => {
                "the server's certificate is expired or not yet valid: check this machine's \
                 clock; if it is right, tell Tango"
            }
            Hint::TlsHandshake => {
                "check that upstream.url points at Tango's HTTPS endpoint (scheme and port), and \
                 that nothing in between terminates TLS"
            }
            Hint::ClientCertMissing => {
                "configure upstream.tls.client_cert_file/client_key_file; Tango's mTLS endpoint \
                 requires a certificate"
            }
            Hint::ClientCertRefused => {
                "the server refused the configured client certificate: it must be the one \
                 registered with Tango for mTLS, unexpired, with its chain in client_cert_file \
                 (`tango-gateway check` prints its subject, issuer and expiry)"
            }
            Hint::ClientCertUnconfirmed => {
                "the server closed the connection without answering: it may have refused the \
                 client certificate; compare upstream.tls.client_cert_file with the certificate \
                 registered with Tango"
            }
            Hint::NoAnswer => {
                "the server accepted the connection but did not answer within upstream.timeout: \
                 check that upstream.url is Tango's API endpoint, and Tango's status"
            }
            Hint::OAuthClientRefused => {
                "the token endpoint refused the client: check oauth2.client_id and \
                 oauth2.client_secret (or client_secret_file), and oauth2.client_auth (post or basic)"
            }
            Hint::OAuthGrantRefused => {
                "the token endpoint refused the grant: with grant: password check oauth2.username \
                 and oauth2.password (or password_file) of the service account"
            }
            Hint::OAuthRequestRefused => {
                "the token endpoint refused the request: check oauth2.grant, audience and scope \
                 against what Tango issued to this client"
            }
            Hint::TokenEndpointForbidden => {
                "the token endpoint answered 403: if a proxy between the gateway and Tango \
                 appends ip:port to X-Forwarded-For, Tango's ALB refuses every request; \
                 otherwise this client may not use oauth2.token_url"
            }
            Hint::ProxyAuth => {
                "the egress proxy wants other credentials: check upstream.proxy_auth (or \
                 proxy_auth_file), user:password"
            }
            Hint::ProxyTunnel => {
                "the egress proxy did not open a tunnel to the upstream: check that it allows \
                 CONNECT to this host and port (an allowlist on the proxy), and upstream.proxy"
            }
            Hint::TokenEndpointTls => {
                "TLS with the token endpoint failed: check oauth2.tls (or upstream.tls when it is \
                 absent): ca_file, and the client certificate if the endpoint requires one"
            }
            Hint::TokenEndpointDown => {
                "token endpoint down or unreachable: check oauth2.token_url, egress to its host, \
                 and Tango's status; a running gateway keeps retrying with backoff"
            }
            Hint::DpopKey => {
                "check oauth2.dpop: Tango binds tokens to a DPoP key, so a key_file (P-256 \
                 PKCS#8, `tango-gateway dpop keygen`) or ephemeral: true is required"
            }
            Hint::DpopNotIssued => {
                "the authorization server must issue DPoP-bound tokens (token_type DPoP) to this \
                 client: enable DPoP for it there, or remove oauth2.dpop if this API takes \
                 Bearer tokens; a Bearer token is never used on a DPoP route"
            }
            Hint::XffRejected => {
                "Tango's AWS ALB refused X-Forwarded-For: it must hold bare IPs, no ports; check \
                 forwarded_for and any proxy between the gateway and Tango — this is not a \
                 credentials problem"
            }
            Hint::AlbRefused => {
                "Tango's load balancer answered, not its API: for a 403 check forwarded_for and \
                 any proxy that rewrites X-Forwarded-For; for a 502/503/504 Tango's service \
                 behind it is unavailable: retry later, check Tango's status"
            }
            Hint::BrowserRefused => {
                "Tango refuses calls from a browser context: remove Origin and \
                 Sec-Fetch-* headers from what is sent (inbound.reject_browser_requests refuses \
                 such callers at the gateway)"
            }
            Hint::CredentialsRefused => {
                "credentials refused: check the platform name and API key (basic.username, \
                 basic.password_file) — the key may have been deactivated or rotated in the \
                 Tango portal — or the OAuth client and its token"
            }
            Hint::DpopNonce => {
                "Tango kept asking for a DPoP nonce: a proxy may strip the DPoP-Nonce header \
                 from answers, or replicas behind Tango disagree on nonces; retry, then tell Tango"
            }
            Hint::DpopInvalid => {
                "Tango refused the DPoP proof: check this machine's clock (proofs are refused \
                 outside ±60 s; NTP), the DPoP key (oauth2.dpop) registered with Tango, and that \
                 the token is DPoP-bound"
            }
            Hint::Forbidden => {
                "Tango's API (not its load balancer) refused this call: the platform or client \
                 may lack permission for this path; try --path with an endpoint it may use"
            }
            Hint::PathNotFound => {
                "Tango has no such path: check --path, the path of upstream.url and the route's \
                 strip_prefix"
            }
            Hint::RateLimited => {
                "Tango is rate-limiting these credentials: wait, and look for other callers \
                 sharing them"
            }
            Hint::UpstreamError => "Tango answered with a server error: retry later, check Tango's status",
            Hint::UnexpectedStatus => {
                "an unexpected answer for a harmless GET: try --path with another read-only \
                 endpoint of this route"
            }
            Hint::Gateway(code) => return f.write_str(gateway_hint(code)),
            Hint::NoAdmittedSource => {
                "no caller can use this route: inbound.allow and the route's match.sources admit \
                 no address in common (an empty list denies everyone)"
            }
            Hint::Setup => "run `tango-gateway check` on this file and fix what it reports",
        };
        f.write_str(text)
    }
}

/// What a gateway-made answer to doctor's own call means.
fn gateway_hint(code: &str) -> &'static str {
    match code {
        "gateway.upstream_tls" => {
            "the gateway's TLS with Tango failed: see the TLS handshake and client certificate \
             steps"
        }
        "gateway.upstream_unreachable" => {
            "the gateway could not reach Tango: see the DNS and TCP steps, and egress rules"
        }
        "gateway.upstream_timeout" => {
            "Tango did not answer within upstream.timeout: retry later, check Tango's status"
        }
        "gateway.credentials_unavailable" => {
            "the gateway has no usable OAuth token: see the token fetch step"
        }
        "gateway.no_route"
        | "gateway.bad_path"
        | "gateway.bad_request"
        | "gateway.forbidden_source"
        | "gateway.method_not_allowed" => {
            "the gateway refused doctor's own call: check --path (it must lie under the route's \
             path_prefix)"
        }
        _ => "the gateway refused the call itself; PRODUCT.md §4 lists what each code means",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xff_hint_says_it_is_not_about_credentials() {
        let text = Hint::XffRejected.to_string();
        assert!(text.contains("bare IPs, no ports"));
        assert!(text.contains("not a credentials problem"));
    }

    #[test]
    fn the_dpop_and_browser_hints_name_their_fix() {
        assert!(Hint::DpopInvalid.to_string().contains("clock"));
        assert!(Hint::BrowserRefused.to_string().contains("Origin"));
        assert!(Hint::CredentialsRefused.to_string().contains("deactivated"));
    }

    #[test]
    fn gateway_codes_get_their_own_hint() {
        let tls = Hint::Gateway("gateway.upstream_tls".to_owned()).to_string();
        assert!(tls.contains("TLS"));
        let other = Hint::Gateway("gateway.something_new".to_owned()).to_string();
        assert!(other.contains("PRODUCT.md"));
    }
}
