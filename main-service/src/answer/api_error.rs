//! Why a request was refused, and how each reason is answered: a status code and
//! the JSON error envelope `{"success":false,"message":…,"errors":[…]}`.
//!
//! Messages are written for API users; internal errors (Redis, I/O) are logged
//! where they happen and reach clients only as a generic 503.

use contract::FieldError;
use hyper::header::{ALLOW, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::answer::response::{self, Body};

/// Seconds a client should wait before retrying while Redis is unavailable.
const RETRY_AFTER_SECS: &str = "2";

/// Seconds a client should wait before retrying when the queue is full: long
/// enough for providers to clear part of the backlog, so retries do not
/// arrive as a second wave at once.
const QUEUE_FULL_RETRY_AFTER_SECS: &str = "5";

/// The JSON body of every error answer.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    /// Always false; lets clients tell errors from successes by one field.
    success: bool,
    /// What went wrong, for people.
    message: String,
    /// The fields at fault; omitted when none is.
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

/// A request that gets an error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed; `errors` names the fields at fault, if any.
    #[error("{message}")]
    BadRequest {
        /// What is wrong overall.
        message: String,
        /// The fields at fault.
        errors: Vec<FieldError>,
    },
    /// 404: no route has this path.
    #[error("no such endpoint")]
    NoRoute,
    /// 404: the search id is well formed but was never submitted (or expired).
    #[error("search not found")]
    UnknownSearch,
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// 408: the request body did not arrive in time.
    #[error("request body not received in time")]
    BodyTimeout,
    /// 410: the search finished and its events were deleted.
    #[error("search finished and its results are gone")]
    SearchGone,
    /// 413: the request body is over the limit.
    #[error("request body must be at most {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// 415: the body is not declared as JSON.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// 503: Redis cannot be reached; the request had no effect.
    #[error("service temporarily unavailable, retry shortly")]
    Unavailable,
    /// 503: the search queue's backlog is at `QUEUE_MAX_BACKLOG`; nothing was queued.
    #[error("the search queue is full, retry later")]
    QueueFull,
    /// 429: the client is over `RATE_LIMIT_PER_CLIENT`; nothing was queued.
    #[error("too many searches from this client, retry later")]
    RateLimited {
        /// Whole seconds until the client's next search is allowed.
        retry_after_secs: u64,
    },
}

impl ApiError {
    /// A 400 about one field.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::BadRequest {
            message: format!("invalid {field}"),
            errors: vec![FieldError {
                field: field.to_owned(),
                message,
            }],
        }
    }

    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NoRoute | ApiError::UnknownSearch => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::SearchGone => StatusCode::GONE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable | ApiError::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The error envelope; `errors` appears only when fields are at fault.
    pub fn envelope(&self) -> Envelope<'_> {
        Envelope {
            success: false,
            message: self.to_string(),
            errors: match self {
                ApiError::BadRequest { errors, .. } => errors,
                _ => &[],
            },
        }
    }

    /// The complete response, with `Allow` or `Retry-After` where they apply.
    pub fn into_response(self) -> Response<Body> {
        let mut response = response::json(self.status(), &self.envelope());
        let headers = response.headers_mut();
        match self {
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Unavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            ApiError::QueueFull => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from_static(QUEUE_FULL_RETRY_AFTER_SECS),
                );
            }
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn envelope(err: &ApiError) -> Value {
        serde_json::to_value(err.envelope()).unwrap()
    }

    #[test]
    fn field_errors_appear_in_the_envelope() {
        let err = ApiError::field("search_id", "must be a UUID");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            envelope(&err),
            json!({"success": false, "message": "invalid search_id",
                   "errors": [{"field": "search_id", "message": "must be a UUID"}]})
        );
    }

    #[test]
    fn errors_without_fields_carry_only_a_message() {
        let body = envelope(&ApiError::UnknownSearch);
        assert_eq!(
            body,
            json!({"success": false, "message": "search not found"})
        );
        let bad = ApiError::BadRequest {
            message: "request body is not valid JSON".into(),
            errors: vec![],
        };
        assert!(envelope(&bad).get("errors").is_none());
        let text = String::from_utf8(serde_json::to_vec(&bad.envelope()).unwrap()).unwrap();
        assert!(text.starts_with(r#"{"success":false,"message":"#), "{text}");
    }

    #[test]
    fn headers_follow_the_status() {
        let r = ApiError::MethodNotAllowed { allow: "POST" }.into_response();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ALLOW], "POST");
        let r = ApiError::Unavailable.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "2");
        assert_eq!(r.headers()["content-type"], "application/json");
        let r = ApiError::QueueFull.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
        let r = ApiError::RateLimited {
            retry_after_secs: 3,
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[RETRY_AFTER], "3");
        assert_eq!(
            ApiError::PayloadTooLarge { limit: 16384 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
