//! Sending finished spans to the OTLP receiver without ever holding up a search.
//!
//! Ended spans go into a bounded queue ([`QUEUE_CAPACITY`]); one task takes
//! them out in batches and exports them. When the queue is full (the receiver
//! is slow or down) a span is dropped on the spot instead of waiting, and so
//! is every span of a batch the receiver did not take: both are counted in
//! `trace_spans_dropped_total`, which each service publishes. Our own queue
//! rather than the SDK's batch processor because the SDK does not count its
//! drops, and because its exporters need this process's Tokio runtime.

use std::sync::LazyLock;
use std::time::Duration;

// A failed export is not retried: its spans are dropped and counted, and the
// queue behind it keeps moving.
use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::traces::{Protocol, Sampling, TraceConfig};

/// Ended spans waiting for export, at most.
const QUEUE_CAPACITY: usize = 2048;
/// Spans per export call, at most.
const MAX_BATCH: usize = 512;
/// How long a batch waits to fill up after its first span.
const BATCH_DELAY: Duration = Duration::from_millis(200);
/// One export call, retries by the exporter included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the last batch.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Spans dropped because the queue was full or the export failed.
static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The counter of dropped spans, to register as `trace_spans_dropped`.
pub fn dropped_spans() -> Counter {
    DROPPED.clone()
}

/// The running export: the provider the tracing layer uses, and the task that
/// sends its spans.
pub struct Exporting {
    /// Makes the tracer; shut down at the end.
    pub provider: SdkTracerProvider,
    /// Tells the task to send what is queued and stop.
    stop: CancellationToken,
    /// The export task.
    task: JoinHandle<()>,
}

impl Exporting {
    /// Sends the spans still queued, waiting at most [`FLUSH_WAIT`].
    pub async fn shutdown(self) {
        // Ends the spans still open in the provider's view; they are queued.
        drop(self.provider.shutdown());
        self.stop.cancel();
        drop(tokio::time::timeout(FLUSH_WAIT, self.task).await);
    }
}

/// Builds the exporter `config` asks for and starts the export task. Must run
/// inside the Tokio runtime.
pub fn start(config: &TraceConfig) -> Result<Exporting, String> {
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attributes(
            config
                .resource
                .iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    let built = match config.protocol {
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", config.endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .with_retry_policy(RetryPolicy::disabled())
            .build(),
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_retry_policy(RetryPolicy::disabled())
            .build(),
    };
    let mut exporter = built.map_err(|error| {
        format!(
            "OTEL_EXPORTER_OTLP_ENDPOINT={} cannot be used: {error}",
            config.endpoint
        )
    })?;
    exporter.set_resource(&resource);
    let (spans, queued) = mpsc::channel(QUEUE_CAPACITY);
    let stop = CancellationToken::new();
    let task = tokio::spawn(export(exporter, queued, stop.clone()));
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler(config.sampling))
        .with_resource(resource)
        .with_span_processor(Queue { spans })
        .build();
    Ok(Exporting {
        provider,
        stop,
        task,
    })
}

/// The SDK sampler for `sampling`.
fn sampler(sampling: Sampling) -> Sampler {
    match sampling {
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
        Sampling::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Sampling::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Sampling::ParentBasedTraceIdRatio(ratio) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}

/// The span processor: ended, sampled spans into the bounded queue.
#[derive(Debug)]
struct Queue {
    /// The queue's sending side.
    spans: mpsc::Sender<SpanData>,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() && self.spans.try_send(span).is_err() {
            DROPPED.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export task: a batch as soon as a span is queued, filled for at most
/// [`BATCH_DELAY`]; on `stop`, whatever is queued, then the end.
async fn export(
    exporter: opentelemetry_otlp::SpanExporter,
    mut queued: mpsc::Receiver<SpanData>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            span = queued.recv() => span,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = vec![first];
        let filled_by = Instant::now() + BATCH_DELAY;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(filled_by, queued.recv()).await {
                Ok(Some(span)) => batch.push(span),
                _ => break,
            }
        }
        send(&exporter, batch).await;
    }
    let mut rest = Vec::new();
    while let Ok(span) = queued.try_recv() {
        rest.push(span);
    }
    if !rest.is_empty() {
        send(&exporter, rest).await;
    }
}

/// Exports `batch`; counts it as dropped if the receiver did not take it.
async fn send(exporter: &opentelemetry_otlp::SpanExporter, batch: Vec<SpanData>) {
    let spans = u64::try_from(batch.len()).unwrap_or(u64::MAX);
    let sent = tokio::time::timeout(EXPORT_TIMEOUT * 2, exporter.export(batch)).await;
    if !matches!(sent, Ok(Ok(()))) {
        DROPPED.inc_by(spans);
        tracing::debug!(spans, "span export failed; spans dropped");
    }
}
