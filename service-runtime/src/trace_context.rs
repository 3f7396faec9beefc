//! A search's trace across processes: spans of the search, and the W3C
//! `traceparent` that links them from the POST to the queue entry, the
//! provider and the supplier calls.
//!
//! Search spans are made with [`search_span!`](crate::search_span), under the
//! target [`TARGET`], which the log filter turns off entirely while tracing is
//! off: such a span is then a disabled callsite, costing one cached check, and
//! the helpers here return at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use contract::TraceParent;
use hyper::header::{HeaderMap, HeaderValue};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every search span.
pub const TARGET: &str = "search_trace";

/// The W3C header carrying the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Set once traces are exported.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// A span of a search: an info span under [`TARGET`]. Takes what
/// `tracing::info_span!` takes after the target.
#[macro_export]
macro_rules! search_span {
    ($($arg:tt)*) => {
        ::tracing::info_span!(target: "search_trace", $($arg)*)
    };
}

/// Whether traces are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Marks traces as exported; [`crate::telemetry::init`] calls it.
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The `traceparent` a client or a caller sent, if valid.
pub fn from_headers(headers: &HeaderMap) -> Option<TraceParent> {
    headers
        .get(TRACEPARENT)?
        .to_str()
        .ok()
        .and_then(TraceParent::parse)
}

/// Makes `span` a child of the remote span `parent`. Call before the span is
/// first entered.
pub fn continue_trace(span: &tracing::Span, parent: Option<TraceParent>) {
    if let Some(parent) = parent.filter(|_| enabled()) {
        // Fails only for a span that is disabled or already started: it then
        // keeps the parent it has.
        drop(span.set_parent(remote(parent)));
    }
}

/// `span`'s own trace context, to hand on.
pub fn of_span(span: &tracing::Span) -> Option<TraceParent> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    let context = span.context();
    traceparent(context.span().span_context())
}

/// Adds the `traceparent` of the current span to `headers` (an outgoing call).
pub fn inject(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let current = Context::map_current(|cx| traceparent(cx.span().span_context()));
    if let Some(parent) = current {
        let value = HeaderValue::from_str(&parent.to_string()).expect("hex digits and dashes");
        headers.insert(TRACEPARENT, value);
    }
}

/// Records `search.queued`, the time a search waited in the queue, from
/// `since` until now, as a child of the POST span `parent`.
pub fn record_queued(parent: TraceParent, since: SystemTime, search_id: uuid::Uuid) {
    if !enabled() {
        return;
    }
    let tracer = opentelemetry::global::tracer("flight-search");
    let mut span = tracer
        .span_builder("search.queued")
        .with_start_time(since)
        .with_attributes([KeyValue::new("search_id", search_id.to_string())])
        .start_with_context(&tracer, &remote(parent));
    opentelemetry::trace::Span::end(&mut span);
}

/// A context whose span is the remote `parent`.
fn remote(parent: TraceParent) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(parent.trace_id),
        SpanId::from(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        TraceState::NONE,
    ))
}

/// `context` as a `traceparent`, if it is a valid one.
fn traceparent(context: &SpanContext) -> Option<TraceParent> {
    context.is_valid().then(|| TraceParent {
        trace_id: u128::from_be_bytes(context.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(context.span_id().to_bytes()),
        flags: context.trace_flags().to_u8(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_parent_round_trips() {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let context = remote(parent);
        assert_eq!(traceparent(context.span().span_context()), Some(parent));
    }

    #[test]
    fn only_a_valid_header_is_taken() {
        let mut headers = HeaderMap::new();
        assert_eq!(from_headers(&headers), None);
        headers.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        assert_eq!(from_headers(&headers), None);
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        headers.insert(TRACEPARENT, HeaderValue::from_static(valid));
        assert_eq!(
            from_headers(&headers).map(|p| p.to_string()).as_deref(),
            Some(valid)
        );
    }
}
