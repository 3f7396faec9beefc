//! OpenTelemetry traces of a search, collected by a real OTLP/HTTP receiver
//! from both services, with the provider calling the real `mock-suppliers`
//! over HTTP: one trace from the POST to the stream's deletion with each step
//! under the expected parent, a client's `traceparent` continued to the
//! supplier calls, and a collector that is down costing spans (counted) but no
//! search.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use test_support::documents::{self, Schema};
use test_support::mock_suppliers::MockSuppliers;
use test_support::otlp::{OtlpReceiver, ReceivedSpan};
use test_support::stack::Stack;
use test_support::{eventually, free_port, http, search_body};
use tokio::task::JoinHandle;
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(30);
const SUPPLIERS: &[&str] = &["GA", "JT"];

/// A local stack exporting traces to `endpoint`, its provider calling
/// [`SUPPLIERS`] on `mock` with the answer cache on and logging at info.
async fn traced_stack(mock: &MockSuppliers, endpoint: &str) -> Stack {
    traced_stack_calling(&mock.urls(SUPPLIERS), endpoint).await
}

/// [`traced_stack`] with `SUPPLIER_URLS` set to `suppliers`.
async fn traced_stack_calling(suppliers: &str, endpoint: &str) -> Stack {
    Stack::builder()
        .local_only()
        .main_env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .provider_env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .provider_env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .provider_env("SUPPLIER_URLS", suppliers)
        .provider_env("SUPPLIER_CACHE_TTL_SECS", "30")
        // "search started" is logged at info, inside the attempt's span.
        .provider_env("RUST_LOG", "info")
        .start()
        .await
}

/// POSTs a search with extra `headers`; returns its id.
async fn submit(stack: &Stack, headers: &[(&str, &str)]) -> Uuid {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let response = http::request(
        Method::POST,
        &stack.url("/api/flights/search"),
        &all,
        search_body("CGK", "DPS", 9, 1),
    )
    .await
    .expect("POST search");
    assert_eq!(response.status, 202);
    response.json()["data"]["search_id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .expect("a search id")
}

/// The one span named `name` among `spans`.
fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let named: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(named.len(), 1, "one {name} span in {spans:#?}");
    named[0]
}

/// The spans of the trace whose POST span carries `search_id`, once `done`
/// holds for them.
async fn trace_of(
    receiver: &OtlpReceiver,
    search_id: Uuid,
    done: impl Fn(&[ReceivedSpan]) -> bool,
) -> Vec<ReceivedSpan> {
    let id = search_id.to_string();
    let in_trace = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        let Some(post) = spans
            .iter()
            .find(|s| s.name == "search.submit" && s.attribute("search_id") == Some(&id))
        else {
            return Vec::new();
        };
        spans
            .iter()
            .filter(|s| s.trace_id == post.trace_id)
            .cloned()
            .collect()
    };
    let spans = receiver
        .wait_for("the search's spans", LIMIT, |spans| done(&in_trace(spans)))
        .await;
    in_trace(&spans)
}

#[tokio::test]
async fn one_search_is_one_trace_from_the_post_to_the_deletion_of_its_stream() {
    let receiver = OtlpReceiver::start().await;
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    let mut stack = traced_stack(&mock, &receiver.endpoint()).await;
    let search_id = submit(&stack, &[]).await;
    let events = stack.events(search_id).await;
    assert_eq!(events.last().unwrap().status(), "completed");

    // The stream's reader detaches (and deletes the stream) once the client
    // has closed its connection, which `events` did.
    let spans = trace_of(&receiver, search_id, |spans| {
        spans.iter().any(|s| s.name == "sse.detach")
            && spans.iter().filter(|s| s.name == "supplier.call").count() == SUPPLIERS.len()
            && spans.iter().any(|s| s.name == "search.queued")
    })
    .await;
    let post = one(&spans, "search.submit");
    assert_eq!(post.service, "main-service");
    assert_eq!(
        post.parent_span_id, "",
        "a POST without traceparent starts the trace"
    );
    assert_eq!(post.attribute("http.response.status_code"), Some("202"));
    let child_of = |span: &ReceivedSpan, parent: &ReceivedSpan| {
        assert_eq!(
            span.parent_span_id, parent.span_id,
            "{} must be a child of {}",
            span.name, parent.name
        );
    };
    child_of(one(&spans, "search.queued"), post);
    let attempt = one(&spans, "provider.attempt");
    assert_eq!(attempt.service, "provider-service");
    assert_eq!(attempt.attribute("delivery_count"), Some("1"));
    child_of(attempt, post);
    for call in spans.iter().filter(|s| s.name == "supplier.call") {
        child_of(call, attempt);
        assert_eq!(call.attribute("style"), Some("http"));
        assert_eq!(call.attribute("outcome"), Some("answered"));
        assert_eq!(call.attribute("http.response.status_code"), Some("200"));
        assert_eq!(call.attribute("cache_hit"), Some("false"));
        assert!(SUPPLIERS.contains(&call.attribute("supplier").unwrap_or("")));
    }
    let appends: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "results.append")
        .collect();
    assert!(!appends.is_empty());
    appends.iter().for_each(|append| child_of(append, attempt));
    assert!(
        appends
            .iter()
            .any(|a| a.attribute("terminal") == Some("true"))
    );
    let stream = one(&spans, "sse.stream");
    child_of(stream, post);
    for step in [
        "sse.attach",
        "sse.first_event",
        "sse.terminal",
        "sse.detach",
    ] {
        child_of(one(&spans, step), stream);
    }
    assert_eq!(one(&spans, "sse.detach").attribute("deleted"), Some("true"));

    // The queue entry, as the AsyncAPI document describes it, carried the
    // POST span on to the provider.
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(contract::keys::REQUESTS_STREAM)
        .arg("-")
        .arg("+")
        .query_async(&mut stack.redis().await)
        .await
        .expect("read the queue");
    let fields = &entries.last().expect("the queued search").1;
    documents::assert_matches(Schema::QueuedSearch, &documents::fields_object(fields));
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("search_id"), Some(search_id.to_string().as_str()));
    let expected = format!("00-{}-{}-01", post.trace_id, post.span_id);
    assert_eq!(field("traceparent"), Some(expected.as_str()));

    // Log lines written inside a span name it.
    let provider = stack.local().providers[0].output();
    assert!(
        provider.contains(&format!("trace_id={}", attempt.trace_id)),
        "no provider log line carries the trace id: {provider}"
    );
}

/// A supplier that records the `traceparent` header of each call and
/// answers 501 (a failure the provider does not retry); stops when dropped.
struct HeaderRecorder {
    /// Its base URL.
    url: String,
    /// The header of each call, empty when absent.
    seen: Arc<Mutex<Vec<String>>>,
    /// The accept loop.
    task: JoinHandle<()>,
}

impl HeaderRecorder {
    async fn start() -> HeaderRecorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let header = req.headers().get("traceparent");
                        let value = header.and_then(|v| v.to_str().ok()).unwrap_or("");
                        record.lock().unwrap().push(value.to_owned());
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = StatusCode::NOT_IMPLEMENTED;
                        std::future::ready(Ok::<_, Infallible>(response))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HeaderRecorder { url, seen, task }
    }
}

impl Drop for HeaderRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued_up_to_the_supplier_calls() {
    let receiver = OtlpReceiver::start().await;
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    let recorder = HeaderRecorder::start().await;
    let suppliers = format!("{},JT={}/jt", mock.urls(&["GA"]), recorder.url);
    let stack = traced_stack_calling(&suppliers, &receiver.endpoint()).await;
    let trace_id = format!("{:032x}", Uuid::new_v4().as_u128());
    let parent_id = format!("{:016x}", Uuid::new_v4().as_u64_pair().0 | 1);
    let traceparent = format!("00-{trace_id}-{parent_id}-01");
    let search_id = submit(&stack, &[("traceparent", &traceparent)]).await;
    let spans = trace_of(&receiver, search_id, |spans| {
        spans.iter().filter(|s| s.name == "supplier.call").count() == 2
    })
    .await;
    let post = one(&spans, "search.submit");
    assert_eq!(post.trace_id, trace_id);
    assert_eq!(post.parent_span_id, parent_id);
    assert_eq!(one(&spans, "provider.attempt").parent_span_id, post.span_id);
    // The supplier got the trace context of the span of its call.
    let call = spans
        .iter()
        .find(|s| s.name == "supplier.call" && s.attribute("supplier") == Some("JT"))
        .expect("JT's call span");
    assert_eq!(call.attribute("outcome"), Some("error"));
    assert_eq!(call.attribute("http.response.status_code"), Some("501"));
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen, [format!("00-{trace_id}-{}-01", call.span_id)]);
}

#[tokio::test]
async fn searches_complete_while_the_collector_is_down_and_the_lost_spans_are_counted() {
    let mock = MockSuppliers::start(&[("MOCK_LATENCY_MS", "0-50")]).await;
    // Nothing listens there: every export fails.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let stack = traced_stack(&mock, &closed).await;
    for _ in 0..3 {
        let search_id = submit(&stack, &[]).await;
        let events = stack.events(search_id).await;
        assert_eq!(events.last().unwrap().status(), "completed");
    }
    eventually("dropped spans counted by main-service", LIMIT, || async {
        let metrics = stack.metrics().await;
        dropped(&metrics).filter(|n| *n > 0).map(|_| ())
    })
    .await;
}

/// The value of `flight_search_trace_spans_dropped_total`.
fn dropped(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("flight_search_trace_spans_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
}
