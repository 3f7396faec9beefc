//! Calling an airline's API over HTTP: the shared connection pool, the timeout
//! of each call inside the search's deadline, retries only for failures worth
//! retrying, the per-supplier concurrency limit and circuit breaker.
//!
//! Retry policy: a 5xx other than 501, or a connection that failed before any
//! answer (refused, reset), is retried with full-jitter exponential backoff; a
//! 429 is retried after its `Retry-After` (seconds). Nothing is retried once
//! the wait would leave the call less than half its timeout before the
//! search's deadline (a retry then gets only what is left), and a
//! timeout is never retried: a supplier that is slow now will not be faster a
//! moment later, and a second call would only add load. A 4xx, a malformed
//! answer and 501 are errors a retry cannot fix.
//!
//! The breaker counts timeouts and errors; a 429 does not count (the supplier
//! is up and says when to come back).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use contract::{Flight, SearchRequest};
use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use hyper::header::RETRY_AFTER;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use timetable::rng::Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::adapters::Adapter;
use crate::breaker::{Breaker, Permission};
use crate::config::SupplierConfig;
use crate::metrics::{Metrics, SupplierLabel};
use crate::supplier::Failure;

/// Largest answer body read; anything longer is an error, not a reason to
/// buffer without bound.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// First backoff step before a retry.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest backoff step.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Idle pooled connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// The one HTTP/1.1 client every supplier shares: one keep-alive pool.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Builds the shared client. The pool keeps as many idle connections per host
/// as may be in use at once: `SUPPLIER_MAX_CONNECTIONS` per supplier, times
/// the suppliers that may share one host (the pool is keyed by host, and
/// several airlines can live behind one gateway). A smaller cap would close
/// connections after each busy moment and open new ones the next.
pub fn client(config: &SupplierConfig) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(config.max_connections * config.urls.len().max(1))
        .build(connector)
}

/// One call's result, before the retry decision.
enum Attempt {
    /// 200 and readable.
    Answered(Vec<Flight>),
    /// Worth another call after this long (or the backoff when `None`).
    Retry(Failure, Option<Duration>),
    /// Not worth another call.
    Final(Failure),
}

/// One airline's API over HTTP.
pub struct HttpSupplier {
    /// Airline code.
    code: &'static str,
    /// Base URL, no trailing `/`.
    base: String,
    /// Turns searches into requests and answers into flights.
    adapter: Box<dyn Adapter>,
    /// The shared pool.
    client: HttpClient,
    /// Calls in flight to this supplier, at most `SUPPLIER_MAX_CONNECTIONS`.
    permits: Semaphore,
    /// This supplier's circuit.
    breaker: Breaker,
    /// Timeout of one call.
    timeout: Duration,
    /// Calls after the first.
    retries: u32,
    /// Retries and circuit state are counted here.
    metrics: Arc<Metrics>,
}

impl HttpSupplier {
    /// A supplier at `base` spoken to through `adapter`.
    pub fn new(
        code: &'static str,
        base: String,
        adapter: Box<dyn Adapter>,
        client: HttpClient,
        config: &SupplierConfig,
        metrics: Arc<Metrics>,
    ) -> HttpSupplier {
        HttpSupplier {
            code,
            base,
            adapter,
            client,
            permits: Semaphore::new(config.max_connections),
            breaker: Breaker::new(code, config.breaker_failures, config.breaker_open),
            timeout: config.timeout,
            retries: config.retries,
            metrics,
        }
    }

    /// The airline code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Asks the supplier, retrying as the policy allows, until an answer, a
    /// failure not worth retrying, or `deadline`.
    pub async fn search(
        &self,
        request: &SearchRequest,
        deadline: Instant,
    ) -> Result<Vec<Flight>, Failure> {
        let outcome = self.call_with_retries(request, deadline).await;
        self.metrics
            .supplier_circuit_open
            .get_or_create(&SupplierLabel {
                supplier: self.code,
            })
            .set(i64::from(self.breaker.is_open()));
        outcome
    }

    async fn call_with_retries(
        &self,
        request: &SearchRequest,
        deadline: Instant,
    ) -> Result<Vec<Flight>, Failure> {
        let mut rng = Rng::from_entropy();
        let mut retry = 0;
        loop {
            if self.breaker.permit() == Permission::Refused {
                return Err(Failure::CircuitOpen);
            }
            let attempt = match tokio::time::timeout_at(deadline, self.permits.acquire()).await {
                Ok(permit) => {
                    let _permit = permit.expect("the semaphore is never closed");
                    let call_deadline = Instant::now()
                        .checked_add(self.timeout)
                        .map_or(deadline, |end| end.min(deadline));
                    match tokio::time::timeout_at(call_deadline, self.call(request)).await {
                        Ok(attempt) => attempt,
                        Err(_) => Attempt::Final(Failure::Timeout),
                    }
                }
                // The deadline passed while waiting for this provider's own
                // limit, not for the supplier: not held against its circuit.
                Err(_) => return Err(Failure::Timeout),
            };
            let (failure, wait) = match attempt {
                Attempt::Answered(flights) => {
                    self.breaker.succeeded();
                    return Ok(flights);
                }
                Attempt::Final(failure) => (failure, None),
                Attempt::Retry(failure, after) => {
                    let backoff = after.unwrap_or_else(|| jittered(retry, &mut rng));
                    (failure, Some(backoff))
                }
            };
            if failure != Failure::RateLimited {
                self.breaker.failed();
            }
            let Some(wait) = wait.filter(|_| retry < self.retries) else {
                return Err(failure);
            };
            // Only retry if the wait still leaves the call half its timeout
            // before the deadline; less is unlikely to be enough. Saturating:
            // a Retry-After is the supplier's number and may be any size.
            let needed = wait.saturating_add(self.timeout / 2);
            if deadline.saturating_duration_since(Instant::now()) < needed {
                return Err(failure);
            }
            retry += 1;
            tracing::Span::current().record("retries", retry);
            self.metrics
                .supplier_retries
                .get_or_create(&SupplierLabel {
                    supplier: self.code,
                })
                .inc();
            tracing::debug!(
                supplier = self.code,
                ?failure,
                retry,
                wait_ms = wait.as_millis() as u64,
                "retrying supplier call"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One HTTP exchange, classified.
    async fn call(&self, request: &SearchRequest) -> Attempt {
        let mut outgoing = self.adapter.request(&self.base, request);
        service_runtime::trace_context::inject(outgoing.headers_mut());
        let response = match self.client.request(outgoing).await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(supplier = self.code, %error, "supplier call failed to connect");
                // Nothing was answered: the request may not have been
                // processed at all, and a search is safe to repeat.
                return Attempt::Retry(Failure::Error, None);
            }
        };
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Attempt::Retry(Failure::RateLimited, after.or(Some(BACKOFF_MAX)));
        }
        if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
            return Attempt::Retry(Failure::Error, None);
        }
        if status != StatusCode::OK {
            tracing::debug!(supplier = self.code, %status, "supplier refused the call");
            return Attempt::Final(Failure::Error);
        }
        let body = match Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(error) => {
                tracing::debug!(supplier = self.code, %error, "supplier answer unreadable");
                return Attempt::Final(Failure::Error);
            }
        };
        match self.adapter.flights(request, &body) {
            Ok(flights) => Attempt::Answered(flights),
            Err(error) => {
                tracing::info!(supplier = self.code, %error, "supplier answer malformed");
                Attempt::Final(Failure::Error)
            }
        }
    }
}

/// Full jitter: uniform in `[0, min(max, base·2^retry)]`, so retries of many
/// searches do not arrive together.
fn jittered(retry: u32, rng: &mut Rng) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << retry.min(16))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(rng.unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_below_a_growing_ceiling() {
        let mut rng = Rng::for_key("backoff");
        for retry in 0..8 {
            let ceiling = (BACKOFF_BASE * (1 << retry)).min(BACKOFF_MAX);
            let draws: Vec<Duration> = (0..100).map(|_| jittered(retry, &mut rng)).collect();
            assert!(draws.iter().all(|d| *d <= ceiling));
            assert!(draws.iter().any(|d| *d != draws[0]));
        }
    }
}
