//! Response helpers: the one body type every handler returns, builders for
//! the common shapes, and the extension a handler uses to name its search in
//! the request's log line.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use uuid::Uuid;

/// The body of every response: a fixed buffer or an event stream. Unsync because
/// an event stream's state only ever lives in its connection's task.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Response extension naming the search a request was about, for the log line
/// [`crate::edge::routes`] writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchIdLog(pub Uuid);

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A response with `status`, `content_type` and `body`.
pub fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response. Serialised from a struct, fields keep their declared order
/// (`success` first), which a `serde_json::Value` would sort away.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let text = serde_json::to_vec(value).expect("response bodies always serialise");
    with_body(status, "application/json", text)
}

/// A response with no body, e.g. 204.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}
