//! Calling an airline's API over HTTP through the shared connection pool
//! ([`super::http_client`]): the timeout
//! of each call inside the search's deadline, retries only for failures worth
//! retrying, the per-supplier concurrency limit and circuit breaker.
//!
//! Retry policy: a 5xx other than 501, or a connection that failed before any
//! answer (refused, reset), is retried with equal-jitter exponential backoff; a
//! 429 is retried after its `Retry-After` (seconds). Nothing is retried once
//! the wait would leave the call less than half its timeout before the
//! search's deadline (a retry then gets only what is left), and a
//! timeout is never retried: a supplier that is slow now will not be faster a
//! moment later, and a second call would only add load. A 4xx, a malformed
//! answer and 501 are errors a retry cannot fix.
//!
//! The breaker counts timeouts, errors and refused credentials; a 429 does not
//! count (the supplier is up and says when to come back).
//!
//! Credentials ([`super::auth`]) are added here, not by adapters. A 401 with
//! an OAuth2 token is answered by fetching a new token and calling once more;
//! a 401 or 403 after that (or with a static credential) ends the call as
//! `unauthorized`, never retried. Offers for an airline the supplier may not
//! sell are dropped and counted.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use contract::{Flight, SearchRequest};
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::header::{ACCEPT_ENCODING, CONTENT_ENCODING, HeaderValue, RETRY_AFTER};
use service_runtime::backoff::Backoff;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::metrics::{AIRLINE_NOT_SOLD, DroppedLabel, LimitLabel, Metrics, SupplierLabel};
use crate::searches::answer_bounds::Limit;
use crate::supplier::adapters::Adapter;
use crate::supplier::auth::{AuthError, Credentials};
use crate::supplier::breaker::{Breaker, Permission};
use crate::supplier::failure::Failure;
use crate::supplier::http_client::{self, HttpClient};
use crate::supplier::offer_check;
use crate::supplier::suppliers_file::SupplierSettings;

/// Largest answer body read; anything longer is an error, not a reason to
/// buffer without bound.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Ceiling of the first backoff before a retry.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Highest ceiling of a backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Longest `Retry-After` taken at its word: longer than any search's deadline
/// (`SUPPLIER_DEADLINE_MS` is at most 600 s), so such a wait is always
/// `rate_limited` at once, and small enough that no clock arithmetic on it can
/// overflow.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

/// One call's result, before the retry decision.
enum Attempt {
    /// 200 and readable.
    Answered(Vec<Flight>),
    /// Worth another call after this long (or the backoff when `None`).
    Retry(Failure, Option<Duration>),
    /// Not worth another call.
    Final(Failure),
}

/// One partner API over HTTP.
pub struct HttpSupplier {
    /// Supplier code.
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
    /// Added to every call.
    credentials: Credentials,
    /// Airline codes it may sell.
    airlines: Vec<String>,
    /// Its answer cache TTL.
    cache_ttl: Duration,
    /// Retries and circuit state are counted here.
    metrics: Arc<Metrics>,
    /// `MAX_OFFERS_PER_ANSWER`.
    max_offers: usize,
}

impl HttpSupplier {
    /// The supplier `settings` describe, on a connection pool of its own,
    /// keeping at most `max_offers` offers of an answer (one more, to tell it
    /// was cut).
    pub fn new(
        settings: &SupplierSettings,
        metrics: Arc<Metrics>,
        max_offers: usize,
    ) -> HttpSupplier {
        HttpSupplier::with_adapter(settings, settings.style.adapter(), metrics, max_offers)
    }

    /// As [`HttpSupplier::new`], speaking through `adapter` instead of the
    /// one of the settings' style: an API style of the caller's own.
    pub fn with_adapter(
        settings: &SupplierSettings,
        adapter: Box<dyn Adapter>,
        metrics: Arc<Metrics>,
        max_offers: usize,
    ) -> HttpSupplier {
        let client = http_client::client(std::slice::from_ref(settings), &settings.tls);
        HttpSupplier::build(settings, adapter, client, metrics, max_offers)
    }

    /// As [`HttpSupplier::new`], calling through `client`, the pool it
    /// shares with other suppliers.
    pub(crate) fn sharing(
        settings: &SupplierSettings,
        client: HttpClient,
        metrics: Arc<Metrics>,
        max_offers: usize,
    ) -> HttpSupplier {
        let adapter = settings.style.adapter();
        HttpSupplier::build(settings, adapter, client, metrics, max_offers)
    }

    fn build(
        settings: &SupplierSettings,
        adapter: Box<dyn Adapter>,
        client: HttpClient,
        metrics: Arc<Metrics>,
        max_offers: usize,
    ) -> HttpSupplier {
        let code = settings.code;
        HttpSupplier {
            code,
            base: settings.base_url.clone(),
            adapter,
            client,
            permits: Semaphore::new(settings.max_connections),
            breaker: Breaker::new(code, settings.breaker_failures, settings.breaker_open),
            timeout: settings.timeout,
            retries: settings.retries,
            credentials: Credentials::new(code, &settings.auth),
            airlines: settings.airlines.clone(),
            cache_ttl: settings.cache_ttl,
            metrics,
            max_offers,
        }
    }

    /// How long its answers are cached.
    pub(crate) fn cache_ttl(&self) -> Duration {
        self.cache_ttl
    }

    fn label(&self) -> SupplierLabel {
        SupplierLabel {
            supplier: self.code,
        }
    }

    /// The airline code.
    pub(crate) fn code(&self) -> &'static str {
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
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
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
                    // Drawn for a 429 too, so the ceiling follows the retries.
                    let drawn = backoff.next_delay();
                    (failure, Some(after.unwrap_or(drawn)))
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

    /// `offers` cut to one more than a search keeps: the search still sees
    /// that the answer was over the bound (and reports it `truncated`), while
    /// the rest is freed now rather than held, and cached, until then. The
    /// offers cut here are counted under the `offers` limit like those the
    /// search cuts.
    fn at_most(&self, mut offers: Vec<Flight>) -> Vec<Flight> {
        let most = self.max_offers.saturating_add(1);
        if offers.len() > most {
            let dropped = offers.len().saturating_sub(most);
            offers.truncate(most);
            offers.shrink_to_fit();
            self.metrics
                .supplier_offers_truncated
                .get_or_create(&LimitLabel {
                    supplier: self.code,
                    limit: Limit::Offers.as_str(),
                })
                .inc_by(u64::try_from(dropped).unwrap_or(u64::MAX));
        }
        offers
    }

    /// One HTTP exchange with its credential, classified; a 401 with a
    /// renewable token is tried once more with a new one.
    async fn call(&self, request: &SearchRequest) -> Attempt {
        let mut renewed = false;
        loop {
            let mut outgoing = self.adapter.request(&self.base, request);
            outgoing
                .headers_mut()
                .insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            service_runtime::trace_context::inject(outgoing.headers_mut());
            let fetched = || {
                self.metrics
                    .supplier_token_fetches
                    .get_or_create(&self.label())
                    .inc();
            };
            let used = match self
                .credentials
                .apply(&mut outgoing, &self.client, fetched)
                .await
            {
                Ok(used) => used,
                Err(AuthError::Refused) => return Attempt::Final(Failure::Unauthorized),
                Err(AuthError::Unavailable) => return Attempt::Retry(Failure::Error, None),
            };
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
            if status == StatusCode::UNAUTHORIZED && self.credentials.renewable() && !renewed {
                self.credentials.refused(used).await;
                renewed = true;
                continue;
            }
            return self.classify(request, response).await;
        }
    }

    /// What an answer means for the call.
    async fn classify(
        &self,
        request: &SearchRequest,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Attempt {
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let after = retry_after(response.headers().get(RETRY_AFTER));
            return Attempt::Retry(Failure::RateLimited, Some(after));
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Attempt::Final(Failure::Unauthorized);
        }
        if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
            return Attempt::Retry(Failure::Error, None);
        }
        if status != StatusCode::OK {
            tracing::debug!(supplier = self.code, %status, "supplier refused the call");
            return Attempt::Final(Failure::Error);
        }
        let gzip = match response.headers().get(CONTENT_ENCODING) {
            None => false,
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"gzip") => true,
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"identity") => false,
            Some(other) => {
                tracing::info!(supplier = self.code, encoding = ?other, "answer in an encoding not asked for");
                return Attempt::Final(Failure::Error);
            }
        };
        let body = match Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| e.to_string())
            .and_then(|body| decoded(body.to_bytes(), gzip))
        {
            Ok(body) => body,
            Err(error) => {
                tracing::debug!(supplier = self.code, %error, "supplier answer unreadable");
                return Attempt::Final(Failure::Error);
            }
        };
        match self.adapter.read(request, &body) {
            Ok((flights, dropped)) => {
                for reason in dropped {
                    self.metrics
                        .supplier_offers_dropped
                        .get_or_create(&DroppedLabel {
                            supplier: self.code,
                            reason,
                        })
                        .inc();
                }
                let sold = self.only_airlines_it_sells(flights);
                let kept = offer_check::keep(self.code, request, sold, &self.metrics);
                Attempt::Answered(self.at_most(kept))
            }
            Err(error) => {
                tracing::info!(supplier = self.code, %error, "supplier answer malformed");
                Attempt::Final(Failure::Error)
            }
        }
    }

    /// `flights` without those of airlines the supplier may not sell, which
    /// are counted.
    fn only_airlines_it_sells(&self, mut flights: Vec<Flight>) -> Vec<Flight> {
        let before = flights.len();
        flights.retain(|f| self.airlines.contains(&f.airline.code));
        let dropped = before - flights.len();
        if dropped > 0 {
            tracing::debug!(
                supplier = self.code,
                dropped,
                "offers for airlines it may not sell"
            );
            self.metrics
                .supplier_offers_dropped
                .get_or_create(&DroppedLabel {
                    supplier: self.code,
                    reason: AIRLINE_NOT_SOLD,
                })
                .inc_by(dropped as u64);
        }
        flights
    }
}

/// `body` as sent, or gunzipped when `gzip`. The answer limit applies to the
/// decompressed bytes too, so a small compressed answer that expands without
/// bound (a compression bomb) is refused after [`MAX_ANSWER`] bytes.
fn decoded(body: Bytes, gzip: bool) -> Result<Bytes, String> {
    if !gzip {
        return Ok(body);
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .take(MAX_ANSWER as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| format!("bad gzip: {e}"))?;
    if plain.len() > MAX_ANSWER {
        return Err(format!(
            "answer larger than {MAX_ANSWER} bytes once decompressed"
        ));
    }
    Ok(Bytes::from(plain))
}

/// The wait a 429's `Retry-After` asks for: whole seconds, at most
/// [`LONGEST_WAIT`] (the header is the supplier's number and may be any
/// size); the longest backoff step when it is missing or not seconds.
fn retry_after(value: Option<&HeaderValue>) -> Duration {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(BACKOFF_MAX, |secs| {
            Duration::from_secs(secs).min(LONGEST_WAIT)
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{Strategy, any, prop_assert, prop_oneof, proptest};
    use proptest::test_runner::{Config, RngSeed};

    use super::*;

    #[test]
    fn gzip_answers_are_decoded_within_the_limit() {
        use std::io::Write;
        let gzip = |plain: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(plain).unwrap();
            Bytes::from(encoder.finish().unwrap())
        };
        let body = br#"{"flights":[]}"#;
        assert_eq!(decoded(gzip(body), true).unwrap(), &body[..]);
        assert_eq!(decoded(Bytes::from_static(body), false).unwrap(), &body[..]);
        let bomb = gzip(&vec![b' '; MAX_ANSWER + 1]);
        assert!(bomb.len() < 64 * 1024, "a bomb is small: {}", bomb.len());
        assert!(decoded(bomb, true).unwrap_err().contains("decompressed"));
        assert!(decoded(Bytes::from_static(b"not gzip"), true).is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_capped_beyond_any_deadline() {
        let wait = |text: &str| retry_after(Some(&HeaderValue::from_str(text).unwrap()));
        assert_eq!(wait(" 3 "), Duration::from_secs(3));
        assert_eq!(wait("18446744073709551615"), LONGEST_WAIT);
        assert_eq!(wait("Wed, 21 Oct 2026 07:28:00 GMT"), BACKOFF_MAX);
        assert_eq!(retry_after(None), BACKOFF_MAX);
        assert!(LONGEST_WAIT > Duration::from_millis(600_000));
    }

    proptest! {
        #![proptest_config(Config {
            cases: 2000,
            rng_seed: RngSeed::Fixed(0x5EED_F00D),
            failure_persistence: None,
            ..Config::default()
        })]

        /// No header value panics the parser, and no wait it gives can
        /// overflow the clock.
        #[test]
        fn no_retry_after_panics_or_overflows(
            raw in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                "[0-9 ]{0,30}".prop_map(String::into_bytes),
            ]
        ) {
            if let Ok(value) = HeaderValue::from_bytes(&raw) {
                let wait = retry_after(Some(&value));
                prop_assert!(wait <= LONGEST_WAIT);
                prop_assert!(Instant::now().checked_add(wait).is_some());
            }
        }
    }
}
