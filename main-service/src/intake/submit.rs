//! `POST /api/flights/search`: check a search request and queue it.
//!
//! Checks run in this order: the client's rate limit (429, before the body is
//! even read), then the contract's size (413), content type (415) and body
//! (400), then admission control (503 when the queue is full). Only a request
//! that passes all of them writes to Redis, so a rejected request writes
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use contract::{QueuedSearch, RequestError, SearchRequest};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use service_runtime::search_span;
use service_runtime::trace_context;
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use crate::answer::api_error::ApiError;
use crate::answer::response::{self, Body, SearchIdLog};
use crate::app::App;
use crate::intake::admission::Verdict;
use crate::intake::rate_limit::{self, Peer};

/// Largest accepted request body.
const MAX_BODY: usize = 16 * 1024;

/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The 202 body.
#[derive(Serialize)]
struct Accepted {
    /// Always true.
    success: bool,
    /// Fixed by the contract.
    message: &'static str,
    /// The new search.
    data: AcceptedSearch,
}

/// The `data` of the 202 body.
#[derive(Serialize)]
struct AcceptedSearch {
    /// Where the client follows the search (`/api/flights/search/{id}/stream`).
    search_id: Uuid,
    /// Always `processing`: the search is queued.
    status: &'static str,
}

impl Accepted {
    fn new(search_id: Uuid) -> Accepted {
        Accepted {
            success: true,
            message: "Search request submitted",
            data: AcceptedSearch {
                search_id,
                status: "processing",
            },
        }
    }
}

/// Answers a submission, in the search's first span (`search.submit`), which
/// continues the client's `traceparent` if it sent one.
pub(crate) async fn submit(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let span = search_span!(
        "search.submit",
        otel.kind = "server",
        search_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    trace_context::continue_trace(&span, trace_context::from_headers(req.headers()));
    let response = answer(app, req).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// The response to a submission.
async fn answer(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    match try_submit(app, req).await {
        Ok(search_id) => {
            let mut response = response::json(StatusCode::ACCEPTED, &Accepted::new(search_id));
            let location = format!("/api/flights/search/{search_id}/stream");
            response.headers_mut().insert(
                LOCATION,
                HeaderValue::from_str(&location).expect("a path of ASCII characters"),
            );
            response.extensions_mut().insert(SearchIdLog(search_id));
            response
        }
        Err(error) => error.into_response(),
    }
}

/// Checks and queues the request; returns the new search's id.
async fn try_submit(app: &App, req: Request<Incoming>) -> Result<Uuid, ApiError> {
    if let (Some(limiter), Some(Peer(peer))) = (&app.limiter, req.extensions().get::<Peer>()) {
        let client = rate_limit::client_of(peer.ip(), req.headers(), &app.config.trusted_proxies);
        if let Err(retry_after_secs) = limiter.check(client) {
            app.metrics.rejected("rate_limited");
            return Err(ApiError::RateLimited { retry_after_secs });
        }
    }
    let too_large = ApiError::PayloadTooLarge { limit: MAX_BODY };
    if declared_length(req.headers()).is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large);
    }
    let is_json = is_json(req.headers().get(CONTENT_TYPE));
    // Read before the content type is judged: a body that turns out too large
    // is a 413 whatever it claims to be.
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Err(_) => return Err(ApiError::BodyTimeout),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large);
        }
        Ok(Err(_)) => {
            return Err(ApiError::BadRequest {
                message: "request body could not be read".to_owned(),
                errors: Vec::new(),
            });
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let request = parse(&body)?;
    let verdict = app
        .admission
        .check()
        .await
        .map_err(|error| app.redis_failed("backlog", None, &error))?;
    let reservation = match verdict {
        Verdict::Admit(reservation) => reservation,
        Verdict::Full(backlog) => {
            app.metrics.rejected("queue_full");
            tracing::debug!(backlog, "search queue full; submission refused");
            return Err(ApiError::QueueFull);
        }
    };
    let post = tracing::Span::current();
    let queued = QueuedSearch {
        search_id: Uuid::new_v4(),
        request,
        requested_at_ms: Some(crate::unix_ms()),
        traceparent: trace_context::of_span(&post),
    };
    post.record("search_id", tracing::field::display(queued.search_id));
    app.queue.enqueue(&queued).await.map_err(|error| {
        app.health.note_write_failure(&error);
        app.redis_failed("submit", Some(queued.search_id), &error)
    })?;
    reservation.accepted();
    if let Some(traceparent) = queued.traceparent {
        app.traces.remember(queued.search_id, traceparent);
    }
    app.metrics.searches_submitted.inc();
    Ok(queued.search_id)
}

/// The body as a search request, or the 400 describing what is wrong with it.
fn parse(body: &Bytes) -> Result<SearchRequest, ApiError> {
    let today = OffsetDateTime::now_utc().date();
    SearchRequest::from_json(body, today).map_err(|error| {
        let errors = match &error {
            RequestError::MalformedJson => Vec::new(),
            RequestError::NotAnObject => vec![contract::FieldError {
                field: "body".to_owned(),
                message: "must be a JSON object".to_owned(),
            }],
            RequestError::Invalid(errors) => errors.clone(),
        };
        ApiError::BadRequest {
            message: error.to_string(),
            errors,
        }
    })
}

/// The `Content-Length` the client declared, if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// True if and only if the content type is `application/json`, parameters such
/// as `charset` allowed, in any case. A missing type is not JSON.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(err: &ApiError) -> serde_json::Value {
        serde_json::to_value(err.envelope()).unwrap()
    }

    #[test]
    fn the_202_body_follows_the_contract() {
        let id = Uuid::new_v4();
        let text = serde_json::to_string(&Accepted::new(id)).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"success":true,"message":"Search request submitted","data":{{"search_id":"{id}","status":"processing"}}}}"#
            )
        );
    }

    fn json_type(value: &str) -> bool {
        is_json(Some(&HeaderValue::from_str(value).unwrap()))
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(json_type("application/json"));
        assert!(json_type("application/json; charset=utf-8"));
        assert!(json_type("Application/JSON;charset=UTF-8"));
        assert!(json_type("  application/json  ; foo=bar"));
    }

    #[test]
    fn anything_else_is_not_json() {
        assert!(!is_json(None));
        for value in [
            "",
            "text/plain",
            "application/jsonx",
            "application/problem+json",
            "application/x-www-form-urlencoded",
            "json",
        ] {
            assert!(!json_type(value), "{value}");
        }
    }

    #[test]
    fn declared_lengths_are_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(declared_length(&headers), None);
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("17000"));
        assert_eq!(declared_length(&headers), Some(17000));
    }

    #[test]
    fn bad_bodies_are_400_with_field_errors_where_a_field_is_at_fault() {
        let garbage = parse(&Bytes::from_static(b"{\"from\":")).unwrap_err();
        assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
        assert!(envelope(&garbage).get("errors").is_none());

        let array = parse(&Bytes::from_static(b"[1,2]")).unwrap_err();
        assert_eq!(envelope(&array)["errors"][0]["field"], "body");

        let invalid = parse(&Bytes::from_static(
            br#"{"from":"CGK","to":"cgk","passengers":0}"#,
        ))
        .unwrap_err();
        let fields = envelope(&invalid);
        let named: Vec<&str> = fields["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, ["to", "date", "passengers"]);
    }
}
