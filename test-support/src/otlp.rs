//! An OTLP/HTTP trace receiver for the trace suites: a real HTTP server on a
//! free port taking `POST /v1/traces` with protobuf bodies, as a collector
//! such as Jaeger or Tempo does, decoded with the `opentelemetry-proto` types.
//! The services export to it like to any collector; the suites wait on the
//! spans it has received.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One received span, its ids in lowercase hex.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The exporting process's `service.name`.
    pub service: String,
    /// The span name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    /// Attributes, each value as text.
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// The attribute `key`, if set.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The running receiver; stops when dropped.
pub struct OtlpReceiver {
    /// Where it listens.
    addr: SocketAddr,
    /// Every span received so far.
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// The accept loop.
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub async fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept(listener, spans.clone()));
        OtlpReceiver { addr, spans, task }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `done` holds for the spans received, then returns them.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        crate::eventually(what, limit, || {
            let spans = self.spans();
            std::future::ready(done(&spans).then_some(spans))
        })
        .await
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves each connection in a task of its own.
async fn accept(listener: TcpListener, spans: Arc<Mutex<Vec<ReceivedSpan>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let spans = spans.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| receive(req, spans.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers one request: 200 with an empty export response for a decodable
/// `POST /v1/traces`, 400 for an undecodable body, 404 for anything else.
async fn receive(
    req: Request<Incoming>,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != "/v1/traces" {
        return Ok(status(StatusCode::NOT_FOUND));
    }
    let Ok(body) = req.into_body().collect().await else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let received = decoded(export);
    spans
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(received);
    let mut response = status(StatusCode::OK);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(response)
}

/// An empty response with `code`.
fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

/// The spans of an export request.
fn decoded(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    spans
}

/// Key-values as text.
fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// Bytes as lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
