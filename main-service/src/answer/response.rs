//! Response helpers: the one body type every handler returns, the common
//! shapes of [`service_runtime::http_answer`] in that body type, and the
//! extension a handler uses to name its search in the request's log line.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use service_runtime::http_answer;
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

/// One of the answers every server of the workspace builds alike, as this
/// service's [`Body`].
pub fn boxed(response: Response<Full<Bytes>>) -> Response<Body> {
    response.map(BodyExt::boxed_unsync)
}

/// A response with `status`, `content_type` and `body`.
pub fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    boxed(http_answer::with_body(status, content_type, body))
}

/// A JSON response. Serialised from a struct, fields keep their declared order
/// (`success` first), which a `serde_json::Value` would sort away.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    boxed(http_answer::json(status, value))
}

/// A response with no body, e.g. 204.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = status;
    response
}
