//! The admin server on `METRICS_ADDR`, for orchestrators and Prometheus:
//!
//! * `GET /healthz`: 200 `{"status":"ok"}` while the process runs (liveness).
//! * `GET /readyz`: 200 `{"status":"ready"}` if and only if Redis answers on
//!   the command connection and accepts writes, the read loop is connected,
//!   and the process is not shutting down; otherwise 503
//!   `{"status":"not ready","reason":…}` with `Retry-After`. Either way
//!   `warnings` lists a Redis eviction policy other than `noeviction`. Built by
//!   [`service_runtime::http_answer`], like main-service's.
//! * `GET /metrics`: the Prometheus metrics, OpenMetrics text format.
//!
//! Any other path is 404; another method on these paths is 405 with `Allow`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::ALLOW;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use service_runtime::http_answer::{self, text};
use service_runtime::http_server::{self, OPENMETRICS_CONTENT_TYPE};
use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_link::{LinkState, RedisLink};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Open admin connections get this long to finish once the server stops;
/// those still open then are closed.
const DRAIN: Duration = Duration::from_secs(1);

/// What the admin endpoints report on.
pub struct Admin {
    /// The command connection; its readiness is half of ours.
    link: RedisLink,
    /// The read loop's connection; the other half.
    reader: Arc<LinkState>,
    /// Whether Redis accepts writes, and its eviction policy.
    health: Arc<RedisHealth>,
    /// The process-wide shutdown signal: a draining replica is not ready.
    shutdown: CancellationToken,
    /// The metrics to serve.
    metrics: Arc<Metrics>,
}

impl Admin {
    /// Endpoints reporting on the command connection `link`, the read loop's
    /// `reader`, Redis' `health` and `shutdown`, serving `metrics`.
    pub fn new(
        link: RedisLink,
        reader: Arc<LinkState>,
        health: Arc<RedisHealth>,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Admin {
        Admin {
            link,
            reader,
            health,
            shutdown,
            metrics,
        }
    }

    /// Why this replica cannot take work now, or `None` if it can.
    fn not_ready(&self) -> Option<String> {
        if self.shutdown.is_cancelled() {
            Some("shutting down".to_owned())
        } else if let Some(down) = self.link.down_reason() {
            Some(down.to_owned())
        } else if !self.reader.is_up() {
            Some("the queue reader is not connected".to_owned())
        } else {
            self.health.refusal_reason()
        }
    }

    /// The `/readyz` answer: status line, reason, warnings.
    fn readiness(&self) -> Response<Full<Bytes>> {
        http_answer::readiness(self.not_ready().as_deref(), &self.health.warnings())
    }

    /// Serves `listener` until `stop`, then gives open connections [`DRAIN`].
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        http_server::serve("admin", listener, DRAIN, stop, move |socket, _| {
            let admin = Arc::clone(&self);
            let service = service_fn(move |req| {
                let admin = Arc::clone(&admin);
                async move { Ok::<_, Infallible>(admin.route(&req)) }
            });
            (socket, service)
        })
        .await;
    }

    fn route(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => http_answer::alive(),
            (&Method::GET, "/readyz") => self.readiness(),
            (&Method::GET, "/metrics") => {
                self.metrics
                    .redis_up
                    .set(i64::from(self.link.is_ready() && self.reader.is_up()));
                self.metrics
                    .redis_writes_refused
                    .set(i64::from(self.health.refusal().is_some()));
                http_answer::with_body(
                    StatusCode::OK,
                    OPENMETRICS_CONTENT_TYPE,
                    self.metrics.encode(),
                )
            }
            (_, "/healthz" | "/readyz" | "/metrics") => {
                let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                response
                    .headers_mut()
                    .insert(ALLOW, "GET".parse().expect("valid header"));
                response
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}
