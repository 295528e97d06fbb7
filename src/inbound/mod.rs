//! The inbound side: admission of callers, path normalisation, route selection, listener,
//! serving workers.
pub mod accept;
pub mod admission;
pub mod body;
pub mod connection;
pub mod limit;
pub mod listener;
pub mod path;
pub mod route;
pub mod workers;

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::util::BoxCloneService;

use crate::body::ResponseBody;

/// The whole inbound service a listener serves: never fails, every error is already an
/// answer. Built by [`crate::stack`]; defined here, where it is served.
pub type GatewayService = BoxCloneService<Request<Incoming>, Response<ResponseBody>, Infallible>;
