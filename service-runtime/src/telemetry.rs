//! Log setup: `tracing` events to stdout, as text for people or JSON lines for
//! collectors (`LOG_FORMAT`). The level filter comes from `RUST_LOG` (default `info`).
//! Text is coloured only when stdout is a terminal: escape codes in a file or a
//! log collector are noise that breaks grep.
//!
//! The redis crate's cluster client logs a warning on every reconnect attempt,
//! many a second while a node is down, where this project logs one line per
//! change of a connection's state. Unless `RUST_LOG` names the `redis` target,
//! only its errors are shown.
//!
//! With traces exported ([`TraceConfig`]), search spans (target
//! [`trace_context::TARGET`]) go to an OpenTelemetry layer as well, and every
//! log line written inside one carries its `trace_id` and `span_id`. Without,
//! the filter turns those spans off, so they cost nothing.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use opentelemetry::trace::{TraceContextExt, TracerProvider};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::trace_context;
use crate::trace_export::{self, Exporting};
use crate::traces::TraceConfig;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".to_owned()),
        }
    }
}

/// What logging and tracing hold until the process ends.
pub struct Telemetry {
    /// The span export, when traces are on.
    exporting: Option<Exporting>,
}

impl Telemetry {
    /// Sends the spans still queued (bounded wait); call as the service ends.
    pub async fn shutdown(self) {
        if let Some(exporting) = self.exporting {
            exporting.shutdown().await;
        }
    }
}

/// Installs the global subscriber and, with `traces`, the span export. Call
/// once, first thing in `main`, inside the Tokio runtime.
pub fn init(format: LogFormat, traces: Option<&TraceConfig>) -> Result<Telemetry, String> {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let spec = with_search_spans(&with_quiet_redis(&spec), traces.is_some());
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| {
        EnvFilter::new(with_search_spans(
            &with_quiet_redis("info"),
            traces.is_some(),
        ))
    });
    let ansi = std::io::stdout().is_terminal();
    let Some(config) = traces else {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(ansi);
        match format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .init(),
        }
        return Ok(Telemetry { exporting: None });
    };
    let exporting = trace_export::start(config)?;
    let tracer = exporting.provider.tracer("flight-search");
    opentelemetry::global::set_tracer_provider(exporting.provider.clone());
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target(trace_context::TARGET, tracing::Level::INFO));
    let lines = traced_lines(format, ansi, std::io::stdout);
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(spans)
        .init();
    trace_context::enable();
    Ok(Telemetry {
        exporting: Some(exporting),
    })
}

/// The log line layer while traces are exported: lines to `writer`, with
/// the current span's ids.
fn traced_lines<S, W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => lines
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format().with_target(false),
            ))
            .boxed(),
        LogFormat::Json => lines
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_target(false),
            ))
            .boxed(),
    }
}

/// A log line format that adds the current span's `trace_id` and `span_id`:
/// in front of a text line, as the first fields of a JSON object.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The OpenTelemetry layer makes an entered span's context current.
        let ids = opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let context = span.span_context();
            context
                .is_valid()
                .then(|| (context.trace_id(), context.span_id()))
        });
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(fields) => write!(
                writer,
                r#"{{"trace_id":"{trace_id}","span_id":"{span_id}",{fields}"#
            ),
            None => write!(writer, "trace_id={trace_id} span_id={span_id} {line}"),
        }
    }
}

/// `spec` with search spans off, or on when traces are exported, unless the
/// spec names their target itself.
fn with_search_spans(spec: &str, traced: bool) -> String {
    let target = trace_context::TARGET;
    if spec.split(',').any(|d| d.trim().starts_with(target)) {
        return spec.to_owned();
    }
    let level = if traced { "info" } else { "off" };
    format!("{spec},{target}={level}")
}

/// `spec` plus `redis=error`, unless a directive of `spec` is about the
/// `redis` target already.
fn with_quiet_redis(spec: &str) -> String {
    let names_redis = spec.split(',').any(|directive| {
        directive.trim() == "redis"
            || directive.trim().starts_with("redis=")
            || directive.trim().starts_with("redis::")
    });
    if names_redis {
        spec.to_owned()
    } else {
        format!("{spec},redis=error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_crate_is_quiet_unless_asked_for() {
        assert_eq!(with_quiet_redis("info"), "info,redis=error");
        assert_eq!(
            with_quiet_redis("warn,service_runtime::redis_link=debug"),
            "warn,service_runtime::redis_link=debug,redis=error"
        );
        assert_eq!(with_quiet_redis("info,redis=debug"), "info,redis=debug");
    }

    /// Log lines written into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The line `format` writes for an event inside a traced span, and the
    /// span's trace id.
    fn line_in_a_span(format: LogFormat) -> (String, String) {
        let captured = Captured::default();
        let writer = captured.clone();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(traced_lines(format, false, move || writer.clone()))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("search.submit");
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
            opentelemetry::Context::map_current(|cx| cx.span().span_context().trace_id())
        });
        let line = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (line, trace_id.to_string())
    }

    #[test]
    fn json_lines_inside_a_span_start_with_its_ids() {
        let (line, trace_id) = line_in_a_span(LogFormat::Json);
        assert!(
            line.starts_with(&format!(r#"{{"trace_id":"{trace_id}","span_id":""#)),
            "{line}"
        );
        assert!(line.contains(r#""message":"inside""#), "{line}");
        assert!(line.contains(r#""answer":42"#), "{line}");
        assert!(line.ends_with("}\n") && line.lines().count() == 1, "{line}");
    }

    #[test]
    fn text_lines_inside_a_span_start_with_its_ids() {
        let (line, trace_id) = line_in_a_span(LogFormat::Text);
        assert!(
            line.starts_with(&format!("trace_id={trace_id} span_id=")),
            "{line}"
        );
        assert!(
            line.contains("inside") && line.contains("answer=42"),
            "{line}"
        );
    }

    #[test]
    fn search_spans_are_off_unless_traces_are_exported() {
        assert_eq!(with_search_spans("info", false), "info,search_trace=off");
        assert_eq!(with_search_spans("trace", true), "trace,search_trace=info");
        assert_eq!(
            with_search_spans("info,search_trace=debug", false),
            "info,search_trace=debug"
        );
    }
}
