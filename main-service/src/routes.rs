//! Request routing, with one log line and one metrics sample per request.
//!
//! | method | path | answer |
//! |---|---|---|
//! | `POST` | `/api/flights/search` | 202, the search is queued ([`crate::submit`]) |
//! | `GET` | `/` | the demo page |
//! | `GET` | `/healthz` | 200 while the process runs |
//! | `GET` | `/readyz` | 200 while Redis answers, else 503 |
//! | `GET` | `/metrics` | Prometheus exposition |
//!
//! Any other method on these paths is 405 with `Allow`, `HEAD` included. Any
//! other path is 404.

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::app::App;
use crate::metrics::{self, RequestLabels};
use crate::response::{self, Body};
use crate::submit;

/// The demo page.
const INDEX_HTML: &str = include_str!("../static/index.html");

/// Route pattern of the search submission.
const SEARCH: &str = "/api/flights/search";
/// Route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// Response extension naming the search a request was about, for the log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchIdLog(pub Uuid);

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    /// `GET /`.
    Index,
    /// `GET /healthz`.
    Health,
    /// `GET /readyz`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// `POST /api/flights/search`.
    Submit,
    /// Answered with an error without a handler.
    Refuse(ApiError),
}

/// Matches a method and path to a route pattern (the metrics label) and an
/// endpoint.
fn route(method: &Method, path: &str) -> (&'static str, Endpoint) {
    let get = |endpoint| {
        if method == Method::GET {
            endpoint
        } else {
            Endpoint::Refuse(ApiError::MethodNotAllowed { allow: "GET" })
        }
    };
    match path {
        "/" => ("/", get(Endpoint::Index)),
        "/healthz" => ("/healthz", get(Endpoint::Health)),
        "/readyz" => ("/readyz", get(Endpoint::Ready)),
        "/metrics" => ("/metrics", get(Endpoint::Metrics)),
        SEARCH if method == Method::POST => (SEARCH, Endpoint::Submit),
        SEARCH => (
            SEARCH,
            Endpoint::Refuse(ApiError::MethodNotAllowed { allow: "POST" }),
        ),
        _ => (UNMATCHED, Endpoint::Refuse(ApiError::NoRoute)),
    }
}

/// A bounded label value for a method.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Answers one request.
pub(crate) async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (pattern, endpoint) = route(&method, &path);
    let response = match endpoint {
        Endpoint::Index => {
            response::with_body(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)
        }
        Endpoint::Health => response::json(StatusCode::OK, &json!({"status": "ok"})),
        Endpoint::Ready if app.redis.is_ready() => {
            response::json(StatusCode::OK, &json!({"status": "ready"}))
        }
        Endpoint::Ready => ApiError::Unavailable.into_response(),
        Endpoint::Metrics => {
            app.metrics.redis_up.set(i64::from(app.redis.is_ready()));
            response::with_body(StatusCode::OK, metrics::CONTENT_TYPE, app.metrics.encode())
        }
        // Boxed: hyper keeps the allocation of a connection's request future for
        // the connection's whole life, so the large state of the submission
        // (body reading, a Redis round trip) must not be inlined into it.
        Endpoint::Submit => Box::pin(submit::submit(&app, req)).await,
        Endpoint::Refuse(error) => error.into_response(),
    };
    let took = started.elapsed();
    let status = response.status();
    app.metrics.request(
        RequestLabels {
            route: pattern,
            method: method_label(&method),
            status: status.as_u16(),
        },
        took,
    );
    let search_id = response.extensions().get::<SearchIdLog>().map(|s| s.0);
    tracing::info!(
        method = %method,
        path,
        status = status.as_u16(),
        latency_ms = took.as_micros() as f64 / 1000.0,
        search_id = search_id.map(tracing::field::display),
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_route_to_their_endpoints() {
        assert_eq!(route(&Method::GET, "/"), ("/", Endpoint::Index));
        assert_eq!(
            route(&Method::GET, "/healthz"),
            ("/healthz", Endpoint::Health)
        );
        assert_eq!(route(&Method::GET, "/readyz"), ("/readyz", Endpoint::Ready));
        assert_eq!(
            route(&Method::GET, "/metrics"),
            ("/metrics", Endpoint::Metrics)
        );
        assert_eq!(route(&Method::POST, SEARCH), (SEARCH, Endpoint::Submit));
    }

    #[test]
    fn wrong_methods_are_405_with_allow() {
        let refused = |allow| Endpoint::Refuse(ApiError::MethodNotAllowed { allow });
        assert_eq!(route(&Method::GET, SEARCH), (SEARCH, refused("POST")));
        assert_eq!(
            route(&Method::DELETE, "/healthz"),
            ("/healthz", refused("GET"))
        );
        assert_eq!(route(&Method::HEAD, "/"), ("/", refused("GET")));
    }

    #[test]
    fn other_paths_are_404_under_one_label() {
        for path in ["/api/nothing-here", "/api/flights/search/", "/healthz/"] {
            assert_eq!(
                route(&Method::GET, path),
                (UNMATCHED, Endpoint::Refuse(ApiError::NoRoute)),
                "{path}"
            );
        }
    }

    #[test]
    fn unusual_methods_share_a_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
