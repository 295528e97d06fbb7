//! The fake's `/oauth/token` route (only when OAuth is on): the endpoint being down or a
//! pending token fault first, then the authorization server.
//!
//! Invariant: only token requests reach this route, so token faults are never taken by API
//! requests; every answer is JSON with `Cache-Control: no-store` (a hang answers nothing).

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};

use super::api_auth::request_view;
use super::body::FakeBody;
use super::fake_tango::Shared;
use super::handler::{json, DropConnection};
use super::oauth::{Reply, TokenStep};
use super::{raas, TOKEN_PATH};

pub(super) async fn serve(
    shared: Arc<Shared>,
    parts: &Parts,
    body: &Bytes,
    too_large: bool,
    step: TokenStep,
) -> Result<Response<FakeBody>, DropConnection> {
    match step {
        TokenStep::Reply(reply) => return Ok(response(reply)),
        TokenStep::Hang => {
            shared.shut_down().await;
            return Err(DropConnection);
        }
        TokenStep::Delay(delay) => tokio::time::sleep(delay).await,
        TokenStep::Serve => {}
    }
    if too_large {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        let message = "Request body too large.";
        return Ok(json(status, &raas::error_body(status, TOKEN_PATH, message)));
    }
    // Read the clock after any delay: proofs are judged when the answer is made.
    let view = request_view(parts, body, shared.now());
    let reply = match shared.lock().oauth.as_mut() {
        Some(server) => server.token(&view),
        // Not reachable (the route exists only with OAuth on), but never a panic.
        None => {
            let status = StatusCode::NOT_FOUND;
            let body = raas::error_body(status, TOKEN_PATH, "No handler found.");
            return Ok(json(status, &body));
        }
    };
    Ok(response(reply))
}

fn response(reply: Reply) -> Response<FakeBody> {
    let mut response = json(reply.status, &reply.body);
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value);
    }
    response
}
