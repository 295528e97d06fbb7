//! The inbound side: admission of callers, path normalisation, route selection, listener,
//! serving workers.
pub(crate) mod accept;
pub(crate) mod admission;
pub(crate) mod body;
pub(crate) mod connection;
pub(crate) mod limit;
pub(crate) mod listener;
pub(crate) mod path;
pub(crate) mod route;
pub(crate) mod workers;

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use tower::util::BoxCloneService;

use crate::body::ResponseBody;

/// The whole inbound service a listener serves: never fails, every error is already an
/// answer. Built by [`crate::stack`]; defined here, where it is served.
pub type GatewayService = BoxCloneService<Request<Incoming>, Response<ResponseBody>, Infallible>;
