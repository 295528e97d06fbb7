//! Trace export: OTLP HTTP/protobuf to `<endpoint>/v1/traces`, batched on the SDK's own
//! thread, sent by a hyper client on the gateway's control runtime.
//!
//! Why our own `HttpClient`: opentelemetry-otlp's ready-made clients are reqwest (a second
//! HTTP stack, and its rustls feature brings ring as a second crypto provider) or a hyper
//! client that speaks plain http only. Ours is the hyper-util client the gateway already
//! has, with hyper-rustls on the process's one provider (aws-lc-rs) and the system roots,
//! so an `https` collector is verified like any upstream.
//!
//! Invariants: a request never waits on export (spans go to a bounded queue; the batch
//! processor's thread encodes and sends); every span that does not reach the collector is
//! counted in `tango_gateway_otel_spans_dropped_total`, whether the queue was full or the
//! export failed or timed out; shutdown flushes within a bound.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor, OTEL_BSP_SCHEDULE_DELAY,
};
use opentelemetry_sdk::Resource;
use tokio::runtime::Handle;

use crate::config::OtlpConfig;
use crate::metrics::metrics;

/// How soon a finished span is sent: short, so traces show up promptly (the SDK's default
/// is 5 s); `OTEL_BSP_SCHEDULE_DELAY` (ms) overrides it.
const SCHEDULE_DELAY: Duration = Duration::from_secs(1);
/// Finished spans waiting for export; past this they are dropped and counted (the SDK's
/// default, fixed here so the count below is exact).
const MAX_QUEUED_SPANS: usize = 2_048;
/// One export request, connection included: a collector that hangs costs the export
/// thread this long, never a request.
const EXPORT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A collector's answer is a small protobuf; anything larger is not read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OtelSetupError {
    #[error("telemetry.otlp: the exporter cannot be built: {0}")]
    Exporter(String),
}

/// Keeps the tracer provider; [`OtelGuard::shutdown`] flushes what is queued.
#[must_use = "dropping the guard without shutdown loses the last spans"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// Exports what is queued and stops the batch thread, waiting at most `limit` (a dead
    /// collector must not hold up the process's exit). Blocking: run it off the runtime.
    pub fn shutdown(self, limit: Duration) {
        if let Err(err) = self.provider.shutdown_with_timeout(limit) {
            tracing::warn!(error = %err, "trace export did not finish before exit");
        }
    }
}

/// Turns tracing on for the process: the exporter, the batch processor, the sampler
/// (parent-based: a caller's decision is followed, `sample_ratio` decides new roots) and
/// the global tracer. `runtime` runs the export requests; `tls` verifies https collectors.
/// `Ok(None)` when tracing was already on (tests, demo): the first setup stays.
pub fn init(
    config: &OtlpConfig,
    runtime: Handle,
    tls: rustls::ClientConfig,
) -> Result<Option<OtelGuard>, OtelSetupError> {
    if super::tracer().is_some() {
        return Ok(None);
    }
    let client = ExportClient::new(runtime, tls);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.traces_url.clone())
        .with_http_client(client)
        .build()
        .map_err(|err| OtelSetupError::Exporter(err.to_string()))?;
    let pending = Arc::new(AtomicUsize::new(0));
    let mut batch = BatchConfigBuilder::default().with_max_queue_size(MAX_QUEUED_SPANS);
    if std::env::var_os(OTEL_BSP_SCHEDULE_DELAY).is_none() {
        batch = batch.with_scheduled_delay(SCHEDULE_DELAY);
    }
    let processor = BatchSpanProcessor::builder(CountingExporter {
        inner: exporter,
        pending: pending.clone(),
    })
    .with_batch_config(batch.build())
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(QueueGate {
            inner: processor,
            pending,
        })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    super::install(provider.tracer("tango-gateway"));
    tracing::info!(
        endpoint = %config.endpoint,
        service_name = %config.service_name,
        sample_ratio = config.sample_ratio,
        "trace export on (OTLP HTTP/protobuf)"
    );
    Ok(Some(OtelGuard { provider }))
}

/// Counts spans from the moment they are handed to the batch processor until their export
/// ends, and drops (counting them) those that would not fit its queue. The processor's own
/// queue-full drops are not observable from outside; with this gate in front of it at the
/// same bound, it never has to drop one.
#[derive(Debug)]
struct QueueGate {
    inner: BatchSpanProcessor,
    /// Spans queued or being exported (shared with [`CountingExporter`]).
    pending: Arc<AtomicUsize>,
}

impl SpanProcessor for QueueGate {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // The batch processor exports sampled spans only; others are not counted either.
        if !span.span_context.is_sampled() {
            return;
        }
        if self.pending.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED_SPANS {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            metrics().otel_spans_dropped.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what it could not deliver.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(spans, Ordering::AcqRel);
        if result.is_err() {
            metrics().otel_spans_dropped.inc_by(spans as u64);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Sends export requests on the gateway's runtime (the batch thread has none) through the
/// hyper-util client, http or https (rustls, aws-lc-rs, system roots).
struct ExportClient {
    runtime: Handle,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportClient").finish_non_exhaustive()
    }
}

impl ExportClient {
    fn new(runtime: Handle, tls: rustls::ClientConfig) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_REQUEST_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        ExportClient { runtime, client }
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        // The timer is made inside the task: the batch thread has no runtime to make it on.
        let sent = self
            .runtime
            .spawn(async move { tokio::time::timeout(EXPORT_REQUEST_TIMEOUT, exchange).await });
        match sent.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_elapsed)) => Err("the collector did not answer in time".into()),
            Err(err) => Err(Box::new(OTelSdkError::InternalFailure(err.to_string()))),
        }
    }
}
