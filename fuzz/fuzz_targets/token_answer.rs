//! The token answer parser (`TokenClient::parse_token`, §5), through `TokenClient::fetch`
//! against a loopback endpoint answering `200` with the input, for a DPoP-bound credential
//! and a Bearer one.
//!
//! Invariant: never panics; a DPoP credential never accepts a Bearer answer (nor any answer
//! whose `token_type` is not `DPoP`) and refuses a Bearer one permanently; a Bearer
//! credential accepts only `Bearer`. A token accepted is the answer's non-empty string
//! `access_token` with its positive integer `expires_in`. A refusal is one of the fixed
//! messages: it never quotes the answer (token, type or anything else).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tango_gateway::fuzzing::{TokenAnswers, TokenOutcome};

const MALFORMED: &str = "the token endpoint's 200 answer is malformed: ";
const FIXED: [&str; 3] = [
    "the token endpoint answered token_type Bearer; this route requires DPoP-bound tokens",
    "the token endpoint answered an unknown token_type; this route requires DPoP-bound tokens",
    "the token endpoint issued a DPoP-bound token but no dpop key is configured",
];
const MALFORMED_WHAT: [&str; 6] = [
    "not JSON",
    "no access_token string",
    "no token_type string",
    "no positive integer expires_in",
    "unknown token_type",
    "access_token is not valid header text",
];

fn check(answers: &TokenAnswers, body: &[u8]) {
    let dpop = answers.is_dpop();
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| answer.as_ref().and_then(|a| a.get(name));
    let token_type = field("token_type").and_then(Value::as_str);
    match answers.parse(body) {
        TokenOutcome::Token {
            kind,
            secret,
            lifetime,
        } => {
            let token_type = token_type.expect("accepted without a token_type");
            if dpop {
                assert_eq!(kind, "DPoP");
                assert!(
                    token_type.eq_ignore_ascii_case("dpop"),
                    "DPoP took {token_type:?}"
                );
            } else {
                assert_eq!(kind, "Bearer");
                assert!(
                    token_type.eq_ignore_ascii_case("bearer"),
                    "Bearer took {token_type:?}"
                );
            }
            assert!(!secret.is_empty());
            assert_eq!(
                Some(secret.as_str()),
                field("access_token").and_then(Value::as_str)
            );
            let expires_in = field("expires_in")
                .and_then(Value::as_u64)
                .expect("expires_in");
            assert!(expires_in > 0);
            assert_eq!(lifetime, Duration::from_secs(expires_in));
        }
        TokenOutcome::Refused { message, permanent } => {
            let known = FIXED.contains(&message.as_str())
                || message
                    .strip_prefix(MALFORMED)
                    .is_some_and(|what| MALFORMED_WHAT.contains(&what));
            assert!(known, "an unexpected refusal: {message:?}");
            if dpop && token_type.is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
                // Only once the answer is otherwise a token: a malformed one is transient.
                if message == FIXED[0] {
                    assert!(permanent);
                }
            }
            if message == FIXED[0] || message == FIXED[1] {
                assert!(dpop && permanent);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    static DPOP: OnceLock<TokenAnswers> = OnceLock::new();
    static BEARER: OnceLock<TokenAnswers> = OnceLock::new();
    check(
        DPOP.get_or_init(|| TokenAnswers::new(true).expect("endpoint")),
        data,
    );
    check(
        BEARER.get_or_init(|| TokenAnswers::new(false).expect("endpoint")),
        data,
    );
});
