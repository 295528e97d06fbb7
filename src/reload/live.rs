//! The configuration generation in service, swapped atomically by a reload.
//!
//! Invariants: a request reads the current generation once, when it arrives, and keeps that
//! generation (its routes, credentials and token refreshers) alive until its answer is ready,
//! so in-flight requests finish on the state they started on; reading is lock-free.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use tower::{Service, ServiceExt};

use crate::auth::oauth::{Refreshers, TokenSources};
use crate::body::ResponseBody;
use crate::config::Config;
use crate::error::BoxError;
use crate::stack::{Routing, RoutingService};

/// One loaded configuration and everything built from it.
pub(crate) struct Generation {
    /// 1 at start-up, then +1 per successful reload.
    pub number: u64,
    pub config: Arc<Config>,
    pub tokens: Arc<TokenSources>,
    routing: RoutingService,
    /// Aborted when the last request of this generation is done (or at shutdown).
    refreshers: Refreshers,
}

impl Generation {
    /// Wraps a built configuration; its token refreshers are started here.
    pub(crate) fn start(number: u64, config: Arc<Config>, routing: Routing) -> Generation {
        let refreshers = routing.tokens.start();
        Generation {
            number,
            config,
            tokens: routing.tokens,
            routing: routing.service,
            refreshers,
        }
    }

    /// Stops the token refreshers now (shutdown), not when the generation is dropped.
    pub(crate) fn stop_refreshers(&self) {
        self.refreshers.abort_all();
    }
}

/// The generation new requests go to.
pub(crate) struct Live {
    current: ArcSwap<Generation>,
}

impl Live {
    pub(crate) fn new(first: Generation) -> Live {
        Live {
            current: ArcSwap::from_pointee(first),
        }
    }

    pub(crate) fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Puts `next` in service; the previous generation lives on while requests hold it.
    pub(crate) fn replace(&self, next: Generation) -> Arc<Generation> {
        self.current.swap(Arc::new(next))
    }
}

/// The inbound service's innermost part: hands each request to the current generation.
#[derive(Clone)]
pub(crate) struct LiveService {
    live: Arc<Live>,
}

impl LiveService {
    pub(crate) fn new(live: Arc<Live>) -> LiveService {
        LiveService { live }
    }
}

type Answer = Result<Response<ResponseBody>, BoxError>;

impl Service<Request<Incoming>> for LiveService {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each generation's routing is always ready (its limits sit in front of it).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let generation = self.live.current();
        let routing = generation.routing.clone();
        Box::pin(async move {
            let answer = routing.oneshot(request).await;
            // Held until here: the generation's credentials serve this request to its end.
            drop(generation);
            answer
        })
    }
}
