//! The order guard: one layer in each route's stack, after the body is in and before the
//! request takes a concurrency permit, that applies §10 to what passes: account scoping on
//! every request of a scoped caller; on orders, the body's fields, the `externalRefID`
//! ledger and the caller's spend limit, then the settlement of both from the outcome, and the
//! audit event.
//!
//! Invariants: a refused request sends nothing upstream; a claimed reference and a spend
//! reservation are always settled, even when the caller goes away mid-flight (then as "may
//! have been placed"); a request that is not an order pays two comparisons, and one more for
//! a scoped caller's path and query.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::Either;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};

use super::audit::{reference_order_id, OrderEvent};
use super::callers::{from_micros, to_micros, Caller};
use super::order::{self, is_order};
use super::scope;
use super::store::{Begin, Claim, Conflict, Finish, ReservationId, Reserve, Settle};
use super::OrderSafety;
use crate::body::{Payload, ResponseBody};
use crate::context::RequestContext;
use crate::deadline::Deadline;
use crate::error::{BoxError, ErrorCode, GatewayError};
use crate::metrics::{metrics, CallerLabels};
use crate::rescue::to_gateway_error;

/// The guard for one route.
#[derive(Debug, Clone)]
pub(crate) struct OrderGuardLayer {
    pub safety: Arc<OrderSafety>,
    pub route: Arc<str>,
    /// The longest one order of this route may hold its reference: all its attempts and
    /// backoffs (the route's deadline when it has one).
    pub lease: Duration,
}

impl<S> Layer<S> for OrderGuardLayer {
    type Service = OrderGuard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OrderGuard {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct OrderGuard<S> {
    inner: S,
    layer: Arc<OrderGuardLayer>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>;

impl<S> Service<Request<Payload>> for OrderGuard<S>
where
    S: Service<Request<Payload>, Response = Response<ResponseBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Either<
        Either<std::future::Ready<Result<Response<ResponseBody>, BoxError>>, S::Future>,
        BoxFuture,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Payload>) -> Self::Future {
        let caller = RequestContext::get(&request).and_then(|c| c.caller().cloned());
        if let Some(caller) = caller.as_deref().filter(|c| c.is_scoped()) {
            let uri = request.uri();
            if let Err(why) = scope::check_target(caller, request.method(), uri.path(), uri.query())
            {
                let refused = GatewayError::new(ErrorCode::AccountForbidden, why.0);
                return Either::Left(Either::Left(std::future::ready(Err(refused.into()))));
            }
        }
        let enforced = self.layer.safety.ledger.is_some()
            || caller
                .as_deref()
                .is_some_and(|c| c.is_scoped() || c.spend_limit.is_some());
        if !enforced || !is_order(request.method(), request.uri().path()) {
            return Either::Left(Either::Right(self.inner.call(request)));
        }
        // The order path waits on the store before sending: it takes a fresh clone, and its
        // concurrency permit only when it is ready to send.
        let inner = self.inner.clone();
        let layer = self.layer.clone();
        Either::Right(Box::pin(guard_order(layer, caller, inner, request)))
    }
}

fn refused(code: ErrorCode, message: impl Into<String>) -> GatewayError {
    GatewayError::new(code, message)
}

/// What became of an order that was sent (or may have been).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 2xx.
    Placed,
    /// 4xx, or the gateway refused it before sending (over capacity, no credentials).
    NotPlaced,
    /// Anything else: 5xx, timeout, reset, cancelled.
    Unknown,
}

impl Outcome {
    fn of_status(status: StatusCode) -> Self {
        if status.is_success() {
            Outcome::Placed
        } else if status.is_client_error() {
            Outcome::NotPlaced
        } else {
            Outcome::Unknown
        }
    }

    fn of_error(err: &BoxError) -> Self {
        match to_gateway_error(&**err).code {
            ErrorCode::Overloaded | ErrorCode::CredentialsUnavailable => Outcome::NotPlaced,
            _ => Outcome::Unknown,
        }
    }
}

async fn guard_order<S>(
    layer: Arc<OrderGuardLayer>,
    caller: Option<Arc<Caller>>,
    inner: S,
    request: Request<Payload>,
) -> Result<Response<ResponseBody>, BoxError>
where
    S: Service<Request<Payload>, Response = Response<ResponseBody>, Error = BoxError>,
{
    let safety = &layer.safety;
    let context = RequestContext::get(&request).cloned();
    let parsed = order::parse(request.body().as_bytes().map_or(&[][..], |b| &b[..]));
    let mut event = OrderEvent::of(parsed.as_ref().ok(), layer.route.clone());
    event.caller = caller.as_ref().map(|c| c.name.clone());
    event.request_id = context
        .as_ref()
        .and_then(|c| c.request_id().map(str::to_owned));
    event.peer = context
        .as_ref()
        .and_then(|c| c.peer())
        .map(|p| p.ip().to_canonical());
    let refuse =
        |event: &mut OrderEvent, error: GatewayError| -> Result<Response<ResponseBody>, BoxError> {
            event.decision = error.code.as_str();
            safety.audit.record(event);
            Err(error.into())
        };
    let order = match parsed {
        Ok(order) => order,
        Err(why) => return refuse(&mut event, refused(ErrorCode::BadRequest, why)),
    };
    if let Some(caller) = caller.as_deref() {
        if let Err(why) = scope::check_order(caller, &order) {
            return refuse(&mut event, refused(ErrorCode::AccountForbidden, why.0));
        }
    }
    let ledger = safety.ledger.as_ref();
    if ledger.is_some_and(|l| l.require_external_ref_id) && order.external_ref.is_none() {
        return refuse(
            &mut event,
            refused(
                ErrorCode::ExternalRefRequired,
                "orders must carry an externalRefID (a non-empty string)",
            ),
        );
    }
    let limit = caller
        .as_ref()
        .and_then(|c| c.spend_limit.map(|l| (c.clone(), l)));
    if limit.is_some() && order.amount.is_none() {
        return refuse(
            &mut event,
            refused(
                ErrorCode::BadRequest,
                "an order of a caller with a spend limit must carry its amount",
            ),
        );
    }
    let mut pending = Pending::new(safety.clone());
    // The ledger first: a repeat of a completed order reserves nothing (Tango answers with
    // the original order, nothing more is spent).
    let mut repeat = false;
    if let (Some(ledger), Some(reference)) = (ledger, order.external_ref.as_deref()) {
        let caller_name = caller
            .as_ref()
            .map_or(crate::config::NO_CALLER, |c| &*c.name);
        let claim = Claim {
            reference,
            hash: &order.hash,
            caller: caller_name,
            window: ledger.window,
            lease: layer.lease,
        };
        let wait_until =
            Deadline::of(&request).unwrap_or_else(|| tokio::time::Instant::now() + layer.lease);
        match claim_reference(safety, claim, wait_until).await {
            Ok(Begin::New) => {}
            Ok(Begin::Repeat) => repeat = true,
            Ok(Begin::Conflict(Conflict::OtherBody)) => {
                return refuse(
                    &mut event,
                    refused(
                        ErrorCode::ExternalRefConflict,
                        "this externalRefID was already used for a different order",
                    ),
                )
            }
            Ok(Begin::Conflict(Conflict::OtherCaller)) => {
                return refuse(
                    &mut event,
                    refused(
                        ErrorCode::ExternalRefConflict,
                        "this externalRefID was already used by another caller",
                    ),
                )
            }
            Ok(Begin::InFlight) => {
                return refuse(
                    &mut event,
                    refused(
                        ErrorCode::Overloaded,
                        "an order with this externalRefID is still in flight: try again later",
                    ),
                )
            }
            Err(down) => return refuse(&mut event, store_down(down)),
        }
        pending.reference = Some((reference.to_owned(), ledger.window));
    }
    if let (Some((caller, limit)), false) = (&limit, repeat) {
        let amount = to_micros(order.amount.unwrap_or_default());
        let now = SystemTime::now();
        match safety
            .store
            .reserve(&caller.name, amount, limit.amount, limit.window, now)
            .await
        {
            Ok(Reserve::Granted { id, window }) => {
                set_window_gauge(&caller.name, window);
                pending.reservation = Some((caller.clone(), id, limit.window));
            }
            Ok(Reserve::Exceeded { window }) => {
                set_window_gauge(&caller.name, window);
                pending.settle(Outcome::NotPlaced).await;
                return refuse(
                    &mut event,
                    refused(
                        ErrorCode::SpendLimitExceeded,
                        format!(
                            "this order would take the caller past its spend limit of {} per {}",
                            from_micros(limit.amount),
                            humantime::format_duration(limit.window)
                        ),
                    ),
                );
            }
            Err(down) => {
                pending.settle(Outcome::NotPlaced).await;
                return refuse(&mut event, store_down(down));
            }
        }
    }
    let result = inner.oneshot(request).await;
    event.attempts = context.as_ref().map_or(0, |c| c.attempts());
    match result {
        Ok(response) => {
            let status = response.status();
            pending.settle(Outcome::of_status(status)).await;
            event.upstream_status = context.as_ref().and_then(|c| c.upstream_status());
            Ok(audit_on_body_end(response, safety.clone(), event))
        }
        Err(err) => {
            pending.settle(Outcome::of_error(&err)).await;
            event.upstream_status = context.as_ref().and_then(|c| c.upstream_status());
            safety.audit.record(&event);
            Err(err)
        }
    }
}

/// Claims the reference, waiting while the same order is in flight elsewhere (polling the
/// store: the holder may be another replica) until `wait_until`.
async fn claim_reference(
    safety: &OrderSafety,
    claim: Claim<'_>,
    wait_until: tokio::time::Instant,
) -> Result<Begin, super::store::StoreDown> {
    let mut pause = Duration::from_millis(10);
    loop {
        let begin = safety.store.begin(claim, SystemTime::now()).await?;
        if begin != Begin::InFlight || tokio::time::Instant::now() + pause > wait_until {
            return Ok(begin);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

fn store_down(_: super::store::StoreDown) -> GatewayError {
    GatewayError::new(
        ErrorCode::Overloaded,
        "the order store is unreachable: orders that need it are refused until it answers",
    )
}

fn set_window_gauge(caller: &str, total: super::store::Micros) {
    metrics()
        .spend_window
        .get_or_create(&CallerLabels {
            caller: caller.to_owned(),
        })
        .set(from_micros(total));
}

/// A claimed reference and a spend reservation, settled exactly once: by `settle`, or when
/// dropped unsettled (the caller went away) as "may have been placed".
struct Pending {
    safety: Arc<OrderSafety>,
    reference: Option<(String, Duration)>,
    reservation: Option<(Arc<Caller>, ReservationId, Duration)>,
}

impl Pending {
    fn new(safety: Arc<OrderSafety>) -> Self {
        Pending {
            safety,
            reference: None,
            reservation: None,
        }
    }

    async fn settle(&mut self, outcome: Outcome) {
        let reference = self.reference.take();
        let reservation = self.reservation.take();
        settle(&self.safety, reference, reservation, outcome).await;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let reference = self.reference.take();
        let reservation = self.reservation.take();
        if reference.is_none() && reservation.is_none() {
            return;
        }
        let safety = self.safety.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                settle(&safety, reference, reservation, Outcome::Unknown).await
            });
        }
    }
}

async fn settle(
    safety: &OrderSafety,
    reference: Option<(String, Duration)>,
    reservation: Option<(Arc<Caller>, ReservationId, Duration)>,
    outcome: Outcome,
) {
    let now = SystemTime::now();
    if let Some((reference, window)) = reference {
        let how = match outcome {
            Outcome::NotPlaced => Finish::Forgotten,
            Outcome::Placed | Outcome::Unknown => Finish::Kept,
        };
        if safety
            .store
            .finish(&reference, window, how, now)
            .await
            .is_err()
        {
            // The claim lapses with its lease; until then the same order waits.
            tracing::warn!("the order store did not record an order's end; its externalRefID stays held until its lease ends");
        }
    }
    if let Some((caller, id, window)) = reservation {
        let how = match outcome {
            Outcome::Placed => Settle::Commit,
            Outcome::NotPlaced => Settle::Release,
            Outcome::Unknown => Settle::Keep,
        };
        match safety
            .store
            .settle(&caller.name, &id, how, window, now)
            .await
        {
            Ok(total) => set_window_gauge(&caller.name, total),
            Err(_) => tracing::warn!(
                caller = %caller.name,
                "the order store did not record a spend settlement; the reservation stays counted"
            ),
        }
    }
}

/// Passes the answer through, reading at most [`AUDIT_READ_LIMIT`] bytes of it for its
/// `referenceOrderID`; the audit event is written when the body ends (or is dropped).
fn audit_on_body_end(
    response: Response<ResponseBody>,
    safety: Arc<OrderSafety>,
    event: OrderEvent,
) -> Response<ResponseBody> {
    response.map(|body| {
        AuditedBody {
            inner: body,
            seen: Vec::new(),
            audit: Some((safety, event)),
        }
        .boxed_unsync()
    })
}

/// Order answers are small JSON objects; a larger one is passed on unread.
const AUDIT_READ_LIMIT: usize = 64 * 1024;

pin_project_lite::pin_project! {
    struct AuditedBody {
        #[pin]
        inner: ResponseBody,
        seen: Vec<u8>,
        audit: Option<(Arc<OrderSafety>, OrderEvent)>,
    }

    impl PinnedDrop for AuditedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            write_event(this.audit, this.seen);
        }
    }
}

fn write_event(audit: &mut Option<(Arc<OrderSafety>, OrderEvent)>, seen: &[u8]) {
    if let Some((safety, mut event)) = audit.take() {
        if seen.len() <= AUDIT_READ_LIMIT {
            event.reference_order_id = reference_order_id(seen);
        }
        safety.audit.record(&event);
    }
}

impl Body for AuditedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if this.seen.len() <= AUDIT_READ_LIMIT {
                        this.seen.extend_from_slice(data);
                    }
                }
            }
            Some(Err(_)) | None => write_event(this.audit, this.seen),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
