//! Request routing, with one log line and one metrics sample per request.
//!
//! | method | path | answer |
//! |---|---|---|
//! | `POST` | `/api/flights/search` | 202, the search is queued ([`crate::intake::submit`]) |
//! | `GET` | `/api/flights/search/{search_id}/stream` | 200 event stream ([`crate::delivery::stream`]) |
//! | `GET` | `/` | the demo page |
//! | `GET` | `/demo.js`, `/demo.css` | the demo page's script and style |
//! | `GET` | `/healthz` | 200 while the process runs |
//! | `GET` | `/readyz` | 200 while Redis answers and accepts writes, else 503 with the reason |
//! | `GET` | `/metrics` | Prometheus exposition |
//! | `GET` | `/openapi.yaml` | the OpenAPI document of this API |
//!
//! `HEAD` works wherever `GET` does and answers the same status and headers
//! without a body; on a stream it only looks the search up
//! ([`crate::delivery::stream::head`]), so a probe never attaches a reader. Any other
//! method on these paths is 405 with `Allow`. Any other path is 404. The
//! exception is a CORS preflight (`OPTIONS`) on the two API routes from an
//! allowed origin: 204 ([`crate::edge::cors`]). Every response leaves through
//! [`crate::edge::cors::Cors::apply`] and [`crate::edge::browser_policy::apply`].
//!
//! A request whose head is ambiguous (no, several or a malformed `Host`,
//! several `Content-Type`) is 400 whatever its path ([`crate::edge::request_head`]).

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use service_runtime::http_answer;
use service_runtime::http_server::OPENMETRICS_CONTENT_TYPE;

use crate::answer::api_error::ApiError;
use crate::answer::response::{self, Body, SearchIdLog};
use crate::app::App;
use crate::delivery::connection::Connection;
use crate::delivery::stream;
use crate::edge::{browser_policy, request_head};
use crate::intake::submit;
use crate::metrics::RequestLabels;

/// The demo page.
const INDEX_HTML: &str = include_str!("../../static/index.html");

/// The demo page's script: a file of its own, because the page's
/// Content-Security-Policy runs no inline script ([`crate::edge::browser_policy`]).
const DEMO_JS: &str = include_str!("../../static/demo.js");

/// The demo page's style, a file of its own for the same reason.
const DEMO_CSS: &str = include_str!("../../static/demo.css");

/// The OpenAPI document, embedded at build time so the served bytes are the
/// repository's file and cannot drift from the binary that serves them.
const OPENAPI_YAML: &[u8] = include_bytes!("../../../openapi.yaml");

/// Route pattern of the search submission.
const SEARCH: &str = "/api/flights/search";
/// Route pattern of a search's event stream.
const STREAM: &str = "/api/flights/search/{search_id}/stream";
/// Route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// The icon browsers ask for at `/favicon.ico`: an SVG, which every current
/// browser shows whatever the file name says; answering it saves a 404 in the
/// logs and the console on every page load.
const FAVICON_SVG: &str = include_str!("../../static/favicon.svg");

/// Route, method and status of each route's normal answer: the request
/// counters that exist from start.
pub(crate) const SUCCESSES: &[(&str, &str, u16)] = &[
    ("/", "GET", 200),
    ("/demo.js", "GET", 200),
    ("/demo.css", "GET", 200),
    ("/favicon.ico", "GET", 200),
    ("/healthz", "GET", 200),
    ("/readyz", "GET", 200),
    ("/metrics", "GET", 200),
    (SEARCH, "POST", 202),
    (STREAM, "GET", 200),
];

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint<'a> {
    /// `GET /`.
    Index,
    /// `GET /demo.js`.
    DemoScript,
    /// `GET /demo.css`.
    DemoStyle,
    /// `GET /favicon.ico`.
    Favicon,
    /// `GET /healthz`.
    Health,
    /// `GET /readyz`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.yaml`.
    OpenApi,
    /// `POST /api/flights/search`.
    Submit,
    /// `GET /api/flights/search/{search_id}/stream`, with the raw id segment.
    Stream(&'a str),
    /// `HEAD` on a stream, with the raw id segment.
    StreamHead(&'a str),
    /// `OPTIONS` on an API route, which answers `allow` otherwise: a CORS
    /// preflight if it is one from an allowed origin, else 405.
    Preflight {
        /// The route's method.
        allow: &'static str,
    },
    /// Answered with an error without a handler.
    Refuse(ApiError),
}

/// The `Allow` value of the routes that answer `GET`.
const GET_AND_HEAD: &str = "GET, HEAD";

/// Matches a method and path to a route pattern (the metrics label) and an
/// endpoint. `HEAD` goes where `GET` goes: hyper sends the head of the answer
/// and drops its body.
fn route<'a>(method: &Method, path: &'a str) -> (&'static str, Endpoint<'a>) {
    let get = |endpoint| {
        if method == Method::GET || method == Method::HEAD {
            endpoint
        } else {
            Endpoint::Refuse(ApiError::MethodNotAllowed {
                allow: GET_AND_HEAD,
            })
        }
    };
    match path {
        "/" => ("/", get(Endpoint::Index)),
        "/demo.js" => ("/demo.js", get(Endpoint::DemoScript)),
        "/demo.css" => ("/demo.css", get(Endpoint::DemoStyle)),
        "/favicon.ico" => ("/favicon.ico", get(Endpoint::Favicon)),
        "/healthz" => ("/healthz", get(Endpoint::Health)),
        "/readyz" => ("/readyz", get(Endpoint::Ready)),
        "/metrics" => ("/metrics", get(Endpoint::Metrics)),
        "/openapi.yaml" => ("/openapi.yaml", get(Endpoint::OpenApi)),
        SEARCH if method == Method::POST => (SEARCH, Endpoint::Submit),
        SEARCH if method == Method::OPTIONS => (SEARCH, Endpoint::Preflight { allow: "POST" }),
        SEARCH => (
            SEARCH,
            Endpoint::Refuse(ApiError::MethodNotAllowed { allow: "POST" }),
        ),
        _ => match stream_id(path) {
            Some(_) if method == Method::OPTIONS => (
                STREAM,
                Endpoint::Preflight {
                    allow: GET_AND_HEAD,
                },
            ),
            Some(id) if method == Method::HEAD => (STREAM, Endpoint::StreamHead(id)),
            Some(id) => (STREAM, get(Endpoint::Stream(id))),
            None => (UNMATCHED, Endpoint::Refuse(ApiError::NoRoute)),
        },
    }
}

/// The `{search_id}` segment of a stream path.
fn stream_id(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/api/flights/search/")?
        .strip_suffix("/stream")?;
    (!id.contains('/')).then_some(id)
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

/// Answers one request arriving on `connection`.
pub(crate) async fn handle(
    app: Arc<App>,
    connection: Arc<Connection>,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    // A client sends its next request only after reading the previous response.
    connection.release_finished_reader();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (pattern, mut endpoint) = route(&method, &path);
    if let Some(error) = request_head::problem(req.version(), req.headers()) {
        endpoint = Endpoint::Refuse(error);
    }
    let origin = app.cors.allowed_origin(req.headers());
    let mut response = match endpoint {
        Endpoint::Index => browser_policy::demo_page(response::with_body(
            StatusCode::OK,
            "text/html; charset=utf-8",
            INDEX_HTML,
        )),
        Endpoint::DemoScript => {
            response::with_body(StatusCode::OK, "text/javascript; charset=utf-8", DEMO_JS)
        }
        Endpoint::DemoStyle => {
            response::with_body(StatusCode::OK, "text/css; charset=utf-8", DEMO_CSS)
        }
        Endpoint::Favicon => {
            let mut icon = response::with_body(StatusCode::OK, "image/svg+xml", FAVICON_SVG);
            icon.headers_mut().insert(
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            );
            icon
        }
        Endpoint::Health => response::boxed(http_answer::alive()),
        Endpoint::Ready => readiness(&app),
        Endpoint::Metrics => {
            app.metrics.redis_up.set(i64::from(app.redis.is_ready()));
            app.metrics
                .redis_writes_refused
                .set(i64::from(app.health.refusal().is_some()));
            response::with_body(
                StatusCode::OK,
                OPENMETRICS_CONTENT_TYPE,
                app.metrics.encode(),
            )
        }
        // RFC 9512's media type; YAML is always UTF-8 here, so no charset.
        Endpoint::OpenApi => response::with_body(StatusCode::OK, "application/yaml", OPENAPI_YAML),
        // Boxed: hyper keeps the allocation of a connection's request future for
        // the connection's whole life, so the large states of these two (Redis
        // round trips, body reading) must not be inlined into it.
        Endpoint::Submit => Box::pin(submit::submit(&app, req)).await,
        Endpoint::Stream(id) => Box::pin(stream::open(&app, &req, id, &connection)).await,
        Endpoint::StreamHead(id) => Box::pin(stream::head(&app, &req, id)).await,
        Endpoint::Preflight { allow } => app
            .cors
            .preflight(origin.as_ref(), req.headers(), allow)
            .unwrap_or_else(|| ApiError::MethodNotAllowed { allow }.into_response()),
        Endpoint::Refuse(error) => error.into_response(),
    };
    app.cors.apply(origin, &mut response);
    browser_policy::apply(&mut response);
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
    let latency_ms = took.as_micros() as f64 / 1000.0;
    let search_id = search_id.map(tracing::field::display);
    // Orchestrators and Prometheus poll these every few seconds: at info they
    // would drown the lines that tell what happened.
    if matches!(pattern, "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(method = %method, path, status = status.as_u16(), latency_ms, search_id, "request");
    } else {
        tracing::info!(method = %method, path, status = status.as_u16(), latency_ms, search_id, "request");
    }
    response
}

/// `/readyz`: 200 `{"status":"ready"}` while Redis answers and accepts
/// writes, else 503 with `Retry-After` and the reason, which names the cause's
/// class (unreachable, authentication, TLS, database index, refused writes). Either way `warnings`
/// lists what does not stop the service but puts searches at risk (an eviction
/// policy other than `noeviction`). The shape is provider-service's too
/// ([`service_runtime::http_answer::readiness`]).
fn readiness(app: &App) -> Response<Body> {
    let reason = match app.redis.down_reason() {
        Some(down) => Some(down.to_owned()),
        None => app.health.refusal_reason(),
    };
    response::boxed(http_answer::readiness(
        reason.as_deref(),
        &app.health.warnings(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_route_to_their_endpoints() {
        assert_eq!(route(&Method::GET, "/"), ("/", Endpoint::Index));
        assert_eq!(
            route(&Method::GET, "/demo.js"),
            ("/demo.js", Endpoint::DemoScript)
        );
        assert_eq!(
            route(&Method::GET, "/demo.css"),
            ("/demo.css", Endpoint::DemoStyle)
        );
        assert_eq!(
            route(&Method::GET, "/favicon.ico"),
            ("/favicon.ico", Endpoint::Favicon)
        );
        assert_eq!(
            route(&Method::GET, "/healthz"),
            ("/healthz", Endpoint::Health)
        );
        assert_eq!(route(&Method::GET, "/readyz"), ("/readyz", Endpoint::Ready));
        assert_eq!(
            route(&Method::GET, "/metrics"),
            ("/metrics", Endpoint::Metrics)
        );
        assert_eq!(
            route(&Method::GET, "/openapi.yaml"),
            ("/openapi.yaml", Endpoint::OpenApi)
        );
        assert_eq!(route(&Method::POST, SEARCH), (SEARCH, Endpoint::Submit));
        assert_eq!(
            route(&Method::GET, "/api/flights/search/abc/stream"),
            (STREAM, Endpoint::Stream("abc"))
        );
    }

    #[test]
    fn head_goes_wherever_get_goes_and_only_looks_a_stream_up() {
        for path in [
            "/",
            "/demo.js",
            "/demo.css",
            "/favicon.ico",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.yaml",
        ] {
            assert_eq!(route(&Method::HEAD, path), route(&Method::GET, path));
        }
        assert_eq!(
            route(&Method::HEAD, "/api/flights/search/abc/stream"),
            (STREAM, Endpoint::StreamHead("abc"))
        );
    }

    #[test]
    fn wrong_methods_are_405_with_allow() {
        let refused = |allow| Endpoint::Refuse(ApiError::MethodNotAllowed { allow });
        assert_eq!(route(&Method::GET, SEARCH), (SEARCH, refused("POST")));
        assert_eq!(route(&Method::HEAD, SEARCH), (SEARCH, refused("POST")));
        assert_eq!(
            route(&Method::POST, "/api/flights/search/abc/stream"),
            (STREAM, refused(GET_AND_HEAD))
        );
        assert_eq!(
            route(&Method::DELETE, "/healthz"),
            ("/healthz", refused(GET_AND_HEAD))
        );
        assert_eq!(
            route(&Method::PUT, "/openapi.yaml"),
            ("/openapi.yaml", refused(GET_AND_HEAD))
        );
        assert_eq!(
            route(&Method::OPTIONS, "/metrics"),
            ("/metrics", refused(GET_AND_HEAD))
        );
    }

    #[test]
    fn options_on_the_api_routes_may_be_preflights() {
        assert_eq!(
            route(&Method::OPTIONS, SEARCH),
            (SEARCH, Endpoint::Preflight { allow: "POST" })
        );
        assert_eq!(
            route(&Method::OPTIONS, "/api/flights/search/abc/stream"),
            (
                STREAM,
                Endpoint::Preflight {
                    allow: GET_AND_HEAD
                }
            )
        );
    }

    #[test]
    fn other_paths_are_404_under_one_label() {
        for path in [
            "/api/nothing-here",
            "/api/flights/search/",
            "/api/flights/search/a/b/stream",
            "/api/flights/search/abc/stream/",
            "/healthz/",
        ] {
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
