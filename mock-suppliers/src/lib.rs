//! mock-suppliers: the six airlines' supplier APIs over HTTP, standing in for
//! real partners in tests, demos and benchmarks.
//!
//! Each airline is served under its own base path (`/ga`, `/jt`, …) in one of
//! two wire formats ([`formats`]), with the same deterministic timetables as the
//! in-process simulation (the `timetable` crate). Each airline's latency and
//! faults ([`behaviour`]) are set at start ([`config`]) and changed at run time:
//!
//! * `GET /healthz`: 200 while the process runs.
//! * `GET /admin/suppliers`: every airline's behaviour and call count, the
//!   number of TCP connections that carried airline calls (to see whether
//!   clients pool them), of airline and style supplier calls over HTTP/2,
//!   and under `styles` each style supplier name's credentials rule, calls
//!   and tokens issued.
//!
//! With `MOCK_HTTPS_ADDR` and a certificate the airline APIs are also served
//! over HTTPS ([`https`]), optionally requiring client certificates.
//! * `PATCH /admin/suppliers/<CODE>`: changes one airline's behaviour; the body
//!   is a JSON object with any of `latency_ms`, `error_rate`, `fault`
//!   (`none`, `server_error`, `rate_limited`, `hang`, `malformed`,
//!   `gzip_bomb`), `gzip` (gzip answers for callers that accept it),
//!   `fault_calls`, `retry_after_secs`, `currency` (`IDR`, `EUR`, `USD`, `KWD`),
//!   and the credentials calls must carry: `bearer`, `api_key`, `oauth`
//!   (`{"client_id","client_secret","token_lifetime_ms"}`), see [`credentials`].
//! * `POST /<code>/oauth/token`: the airline's OAuth2 token endpoint.
//! * `GET /<code>/v1/flights?…` (flights format) or
//!   `POST /<code>/api/offers/search` (offers format): the airline's API.
//! * `POST /offer_request/<name>/<CUR>/air/offer_requests` and
//!   `GET /flight_offers/<name>/<CUR>/v2/shopping/flight-offers?…`: suppliers
//!   of several airlines in two public API styles ([`styles`]), with their
//!   token endpoint `POST /<style>/<name>/<CUR>/oauth/token`.
//! * `PATCH /admin/styles/<name>`: the credentials style supplier `name`
//!   demands, `{"bearer","api_key","oauth"}` as for an airline
//!   ([`style_credentials`]).

pub mod behaviour;
pub mod config;
pub mod credentials;
pub mod currencies;
pub mod formats;
pub mod https;
pub mod journeys;
pub mod partner_pki;
pub mod style_credentials;
pub mod styles;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::RETRY_AFTER;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use service_runtime::http_answer::{JSON, json, text, with_body};
use service_runtime::http_server;
use timetable::catalogue::CARRIERS;
use timetable::rng::Rng;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::behaviour::{BehaviourPatch, Board, Fault, HANG_LIMIT, Plan};
use crate::formats::Format;
use crate::style_credentials::StyleCredentials;
use contract::Flight;

/// MiB a gzip bomb expands to: twice the provider's 4 MiB answer limit, so
/// a reader without a limit after decompression is caught, while the mock
/// compresses it in well under a supplier timeout even in a debug build on a
/// busy machine (64 MiB took seconds there, and the call timed out instead).
const BOMB_MIB: usize = 8;
/// Largest request body read (admin patches and offers searches are tiny).
const MAX_BODY: usize = 16 * 1024;
/// The size an `oversized` answer stays under: the most provider-service reads
/// of one answer.
pub const OVERSIZED_BYTES: usize = 4 * 1024 * 1024;
/// Open connections get this long to finish once the server stops; those
/// still open then are closed.
const DRAIN: Duration = Duration::from_secs(1);

/// Why a call ended without an HTTP answer: the connection is closed instead.
#[derive(Debug, thiserror::Error)]
#[error("hung up without answering")]
pub struct HungUp;

/// What every connection shares.
struct Mock {
    /// Each airline's behaviour and call count.
    board: Board,
    /// TCP connections that carried at least one airline call since start.
    connections: AtomicU64,
    /// Airline and style supplier calls that arrived over HTTP/2.
    http2_calls: AtomicU64,
    /// What each style supplier demands of its callers.
    styles: StyleCredentials,
    /// Ends hanging calls at shutdown.
    shutdown: CancellationToken,
}

/// Serves the airline APIs and the admin endpoints on `listener` until
/// `shutdown`, then gives open connections [`DRAIN`] to finish.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) {
    tracing::info!(
        addr = %listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
        "mock suppliers starting"
    );
    let mock = Arc::new(Mock {
        board: Board::new(config.behaviours),
        connections: AtomicU64::new(0),
        http2_calls: AtomicU64::new(0),
        styles: StyleCredentials::default(),
        shutdown: shutdown.clone(),
    });
    // One service per connection, with its flag for the connection count.
    let service = move || {
        let mock = Arc::clone(&mock);
        let counted = Arc::new(AtomicBool::new(false));
        service_fn(move |req| {
            let mock = Arc::clone(&mock);
            let counted = Arc::clone(&counted);
            async move { mock.route(req, &counted).await }
        })
    };
    let tls = match &config.tls {
        Some(files) => match https::listen(files).await {
            Ok(tls) => Some(tls),
            Err(error) => {
                tracing::error!(%error, "cannot serve HTTPS");
                None
            }
        },
        None => None,
    };
    let https = {
        let service = service.clone();
        let shutdown = shutdown.clone();
        async move {
            if let Some((listener, acceptor)) = tls {
                https::serve(listener, acceptor, shutdown, service).await;
            }
        }
    };
    let http = http_server::serve(
        "mock-suppliers",
        listener,
        DRAIN,
        shutdown,
        move |socket, _| (socket, service()),
    );
    tokio::join!(http, https);
    tracing::info!("mock suppliers stopped");
}

impl Mock {
    /// `PATCH /admin/suppliers/<code>`: changes one airline's behaviour.
    async fn change(&self, code: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Ok(body) = read_body(req).await else {
            return error(StatusCode::BAD_REQUEST, "unreadable body");
        };
        let patch: BehaviourPatch = match serde_json::from_slice(&body) {
            Ok(patch) => patch,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        match self.board.change(code, patch) {
            Ok(Some(behaviour)) => json(StatusCode::OK, &behaviour),
            Ok(None) => error(StatusCode::NOT_FOUND, "no such airline"),
            Err(reason) => error(StatusCode::BAD_REQUEST, &reason),
        }
    }

    /// `POST /<code>/oauth/token`: a token for the airline's OAuth2 client,
    /// or 401 for any other.
    async fn token(&self, code: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Ok(form) = read_body(req).await else {
            return error(StatusCode::BAD_REQUEST, "unreadable body");
        };
        match self
            .board
            .issue_token(code, &form, &mut Rng::from_entropy())
        {
            Some((token, lifetime)) => token_answer(&token, lifetime),
            None => error(StatusCode::UNAUTHORIZED, "invalid_client"),
        }
    }

    /// `PATCH /admin/styles/<name>`: changes the credentials style supplier
    /// `name` demands.
    async fn change_style(&self, name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Ok(body) = read_body(req).await else {
            return error(StatusCode::BAD_REQUEST, "unreadable body");
        };
        let patch: style_credentials::RulePatch = match serde_json::from_slice(&body) {
            Ok(patch) => patch,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        match self.styles.change(name, patch) {
            Ok(rule) => json(StatusCode::OK, &rule),
            Err(reason) => error(StatusCode::BAD_REQUEST, &reason),
        }
    }

    /// Answers one request; `counted` is its connection's flag for the
    /// connection count.
    async fn route(
        &self,
        req: Request<Incoming>,
        counted: &AtomicBool,
    ) -> Result<Response<Full<Bytes>>, HungUp> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if path == "/healthz" {
            return Ok(text(StatusCode::OK, "ok\n"));
        }
        if path == "/admin/suppliers" && method == Method::GET {
            let body = serde_json::json!({
                "connections": self.connections.load(Ordering::Relaxed),
                "http2_calls": self.http2_calls.load(Ordering::Relaxed),
                "suppliers": self.board.snapshot(),
                "styles": self.styles.snapshot(),
            });
            return Ok(json(StatusCode::OK, &body));
        }
        if let Some(code) = path.strip_prefix("/admin/suppliers/") {
            if method != Method::PATCH {
                return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use PATCH\n"));
            }
            return Ok(self.change(code, req).await);
        }
        if let Some(name) = path.strip_prefix("/admin/styles/") {
            if method != Method::PATCH {
                return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use PATCH\n"));
            }
            return Ok(self.change_style(name, req).await);
        }
        if let Some(route) = styles::Route::parse(&path) {
            if req.version() == hyper::Version::HTTP_2 {
                self.http2_calls.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(styles::answer(route, req, &self.styles).await);
        }
        let Some(carrier) = CARRIERS.iter().find(|c| {
            path.strip_prefix('/')
                .and_then(|p| p.get(..2))
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case(c.code))
                && path.get(3..4) == Some("/")
        }) else {
            return Ok(error(StatusCode::NOT_FOUND, "no such airline"));
        };
        if &path[3..] == "/oauth/token" && method == Method::POST {
            return Ok(self.token(carrier.code, req).await);
        }
        let format = Format::of(carrier.code);
        let (want_method, want_path) = format.endpoint();
        if &path[3..] != want_path {
            return Ok(error(StatusCode::NOT_FOUND, "no such endpoint"));
        }
        if method.as_str() != want_method {
            return Ok(error(StatusCode::METHOD_NOT_ALLOWED, "wrong method"));
        }
        if req.version() == hyper::Version::HTTP_2 {
            self.http2_calls.fetch_add(1, Ordering::Relaxed);
        }
        let gzip = accepts_gzip(req.headers());
        if !self.board.authorized(carrier.code, req.headers()) {
            return Ok(error(
                StatusCode::UNAUTHORIZED,
                "missing, wrong or expired credentials",
            ));
        }
        let request = match format {
            Format::Flights => formats::flights_request(req.uri().query().unwrap_or("")),
            Format::Offers => match read_body(req).await {
                Ok(body) => formats::offers_request(&body),
                Err(()) => Err("unreadable body".to_owned()),
            },
        };
        let request = match request {
            Ok(request) => request,
            Err(reason) => return Ok(error(StatusCode::BAD_REQUEST, &reason)),
        };
        if !counted.swap(true, Ordering::Relaxed) {
            self.connections.fetch_add(1, Ordering::Relaxed);
        }
        let mut rng = Rng::from_entropy();
        let (plan, latency, behaviour) = self
            .board
            .plan(carrier.code, &mut rng)
            .expect("every carrier is on the board");
        if plan == Plan::Fault(Fault::Hang) {
            tokio::select! {
                () = tokio::time::sleep(HANG_LIMIT) => {}
                () = self.shutdown.cancelled() => {}
            }
            return Err(HungUp);
        }
        tokio::time::sleep(latency).await;
        let gzip = gzip && behaviour.gzip;
        Ok(answer(plan, &behaviour, carrier, &request, format, gzip))
    }
}

/// The answer `plan` calls for, in `format`, with `behaviour`'s currency and
/// `Retry-After`; offers are gzipped when `gzip`.
fn answer(
    plan: Plan,
    behaviour: &behaviour::Behaviour,
    carrier: &timetable::catalogue::Carrier,
    request: &contract::SearchRequest,
    format: Format,
    gzip: bool,
) -> Response<Full<Bytes>> {
    match plan {
        Plan::Answer => {
            let flights = currencies::quote(
                timetable::schedule::flights(carrier, request),
                &behaviour.currency,
                request.passengers,
            );
            let body = match format {
                Format::Flights => formats::flights_body(&flights),
                Format::Offers => formats::offers_body(&flights),
            };
            if gzip {
                gzipped(&[body.as_bytes()], 1)
            } else {
                with_body(StatusCode::OK, JSON, body)
            }
        }
        Plan::InternalError => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        Plan::Fault(Fault::ServerError) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
        }
        Plan::Fault(Fault::RateLimited) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "slow down");
            response.headers_mut().insert(
                RETRY_AFTER,
                behaviour
                    .retry_after_secs
                    .to_string()
                    .parse()
                    .expect("digits"),
            );
            response
        }
        // A valid JSON start, then spaces: only a size limit stops a reader.
        Plan::Fault(Fault::GzipBomb) => {
            gzipped(&[br#"{"flights":["#, &[b' '; 1024 * 1024]], BOMB_MIB)
        }
        Plan::Fault(Fault::Malformed) => {
            with_body(StatusCode::OK, JSON, r#"{"flights":[{"flight_"#)
        }
        Plan::Fault(Fault::Oversized) => {
            let flights = timetable::schedule::flights(carrier, request);
            with_body(StatusCode::OK, JSON, oversized_body(format, &flights))
        }
        Plan::Fault(Fault::None | Fault::Hang) => unreachable!("handled above"),
    }
}

/// True if the caller's `Accept-Encoding` names gzip.
fn accepts_gzip(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(hyper::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
}

/// The token endpoint's answer issuing `token` for `lifetime`.
fn token_answer(token: &str, lifetime: Duration) -> Response<Full<Bytes>> {
    json(
        StatusCode::OK,
        &serde_json::json!({"access_token": token, "token_type": "Bearer",
                            "expires_in": lifetime.as_secs()}),
    )
}

/// A 200 JSON answer with a gzip body of `parts[0]` followed by `repeat`
/// times `parts[1..]`.
fn gzipped(parts: &[&[u8]], repeat: usize) -> Response<Full<Bytes>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(parts[0]).expect("writing to memory");
    for _ in 0..repeat {
        for part in &parts[1..] {
            encoder.write_all(part).expect("writing to memory");
        }
    }
    let compressed = encoder.finish().expect("writing to memory");
    let mut response = with_body(StatusCode::OK, JSON, compressed);
    response.headers_mut().insert(
        hyper::header::CONTENT_ENCODING,
        hyper::header::HeaderValue::from_static("gzip"),
    );
    response
}

/// The answer of `format` with `flights` repeated as often as fits in
/// [`OVERSIZED_BYTES`] (once, if they do not fit even once).
fn oversized_body(format: Format, flights: &[Flight]) -> String {
    let body = |flights: &[Flight]| match format {
        Format::Flights => formats::flights_body(flights),
        Format::Offers => formats::offers_body(flights),
    };
    // The answer with n copies is at most n times the answer with one, which
    // carries the envelope once more per copy.
    let copies = (OVERSIZED_BYTES / body(flights).len().max(1)).max(1);
    let repeated: Vec<Flight> = flights
        .iter()
        .cycle()
        .take(flights.len().saturating_mul(copies))
        .cloned()
        .collect();
    body(&repeated)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ()> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| ())
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}
