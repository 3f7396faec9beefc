//! The answers every HTTP server of the workspace builds the same way: a body
//! with its content type, plain text, JSON, and the health answers that
//! orchestrators read from both services.
//!
//! `/healthz` and `/readyz` are built here and nowhere else, so main-service
//! and provider-service answer them in one shape and one probe configuration
//! fits both: `{"status":"ok"}`; `{"status":"ready"}`, or 503
//! `{"status":"not ready","reason":…}` with `Retry-After`; either way with
//! `warnings` when there are any.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// Content type of a JSON answer.
pub const JSON: &str = "application/json";

/// Content type of a plain-text answer.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// Seconds a client of a not-ready `/readyz` is asked to wait: Redis' link
/// and write state are re-checked every second.
const NOT_READY_RETRY_AFTER_SECS: &str = "2";

/// An answer with `status`, `content_type` and `body`.
pub fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_body(status, TEXT, body)
}

/// A JSON answer. Serialised from a struct, fields keep their declared order,
/// which a `serde_json::Value` would sort away.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).expect("answer bodies always serialise");
    with_body(status, JSON, body)
}

/// The `/healthz` answer: 200 `{"status":"ok"}` while the process runs.
pub fn alive() -> Response<Full<Bytes>> {
    json(StatusCode::OK, &Health::ok())
}

/// The `/readyz` answer: 200 `{"status":"ready"}` without a `reason`, else
/// 503 `{"status":"not ready","reason":…}` with `Retry-After`; `warnings`
/// (risks that do not make the service unready) are listed either way when
/// there are any.
pub fn readiness(reason: Option<&str>, warnings: &[String]) -> Response<Full<Bytes>> {
    let body = Health {
        status: if reason.is_some() {
            "not ready"
        } else {
            "ready"
        },
        reason,
        warnings,
    };
    match reason {
        None => json(StatusCode::OK, &body),
        Some(_) => {
            let mut response = json(StatusCode::SERVICE_UNAVAILABLE, &body);
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from_static(NOT_READY_RETRY_AFTER_SECS),
            );
            response
        }
    }
}

/// The body of `/healthz` and `/readyz`.
#[derive(Serialize)]
struct Health<'a> {
    /// `ok`, `ready` or `not ready`.
    status: &'static str,
    /// Why the service is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// What puts searches at risk without making the service unready.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

impl Health<'_> {
    /// The liveness body.
    fn ok() -> Health<'static> {
        Health {
            status: "ok",
            reason: None,
            warnings: &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// The answer's status, `Retry-After` and body as JSON.
    async fn read(
        response: Response<Full<Bytes>>,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let (head, body) = response.into_parts();
        assert_eq!(head.headers[CONTENT_TYPE], JSON);
        let bytes = body.collect().await.unwrap().to_bytes();
        let retry_after = head
            .headers
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        (
            head.status,
            retry_after,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn readiness_has_one_shape_ready_or_not() {
        let (status, retry, body) = read(readiness(None, &[])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(retry, None);
        assert_eq!(body, serde_json::json!({"status": "ready"}));

        let warnings = ["maxmemory-policy is allkeys-lru".to_owned()];
        let (status, retry, body) = read(readiness(Some("redis is unreachable"), &warnings)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("2"));
        assert_eq!(
            body,
            serde_json::json!({
                "status": "not ready",
                "reason": "redis is unreachable",
                "warnings": ["maxmemory-policy is allkeys-lru"],
            })
        );

        let (_, _, body) = read(readiness(None, &warnings)).await;
        assert_eq!(body["warnings"][0], "maxmemory-policy is allkeys-lru");
    }

    #[tokio::test]
    async fn liveness_is_ok() {
        let (status, retry, body) = read(alive()).await;
        assert_eq!((status, retry), (StatusCode::OK, None));
        assert_eq!(body, serde_json::json!({"status": "ok"}));
    }

    #[test]
    fn text_is_utf8_plain_text() {
        let response = text(StatusCode::NOT_FOUND, "not found\n");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], TEXT);
    }
}
