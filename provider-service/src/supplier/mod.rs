//! The supplier call boundary: what a search asks each airline, and how each
//! call ended.
//!
//! A [`Supplier`] is either the in-process simulation (the default) or an
//! airline API over HTTP (`SUPPLIERS_FILE` or `SUPPLIER_URLS`); searches see
//! one interface and one set of outcomes either way. Every call is bounded by
//! the search's deadline, and its duration and outcome are counted per
//! supplier.
//!
//! Everything about asking airlines lives here; nothing here knows the queue
//! or the result streams. The modules:
//!
//! * [`failure`]: how a call ended without an answer, the same for every kind.
//! * [`simulation`]: the in-process airlines over the `timetable` crate.
//! * [`http_supplier`]: one partner API over HTTP: timeouts, retries, the
//!   [`breaker`], [`auth`] credentials; it speaks through the per-style
//!   [`adapters`], and every offer passes the [`offer_check`].
//! * [`http_client`]: the connection pool calls and token fetches share, over
//!   [`tls`].
//! * [`suppliers_file`]: the HTTP suppliers as configuration, their
//!   credentials held as [`secret`]s.
//! * [`cache`]: the Redis answer cache in front of every supplier.
//!
//! Outside the crate only what [`crate::serve`] needs is public: the
//! suppliers [`from_config`] makes, and the pieces to make an HTTP supplier
//! of one's own ([`HttpSupplier`] from [`SupplierSettings`], speaking a
//! [`Style`] or one's own [`Adapter`]).

pub(crate) mod adapters;
mod auth;
mod breaker;
pub(crate) mod cache;
pub(crate) mod failure;
mod http_client;
mod http_supplier;
pub(crate) mod offer_check;
mod secret;
pub(crate) mod simulation;
pub(crate) mod suppliers_file;
mod tls;

pub use adapters::{Adapter, BadAnswer, Style};
pub use http_supplier::HttpSupplier;
pub use suppliers_file::{Defaults, SupplierSettings};

use std::sync::Arc;

use contract::{Flight, SearchRequest, SupplierOutcome};
use tokio::time::Instant;

use crate::config::Config;
use crate::metrics::{Metrics, OutcomeLabel, SupplierLabel};
use failure::Failure;
use simulation::Simulated;

/// One airline's API.
pub enum Supplier {
    /// The in-process simulation.
    Simulated(Simulated),
    /// A real (or mock) API over HTTP.
    Http(Box<HttpSupplier>),
}

/// The suppliers `config` asks for: the HTTP ones of `SUPPLIERS_FILE` or
/// `SUPPLIER_URLS`, sharing one connection pool, or else every simulated airline.
pub fn from_config(config: &Config, metrics: &Arc<Metrics>) -> Vec<Supplier> {
    let suppliers = &config.suppliers.http;
    if suppliers.is_empty() {
        return simulation::all(config.mock_latency, config.mock_failure_rate)
            .into_iter()
            .map(Supplier::Simulated)
            .collect();
    }
    let default_tls = tls::TlsFiles::default();
    let shared: Vec<_> = suppliers
        .iter()
        .filter(|s| s.tls.is_default())
        .cloned()
        .collect();
    let shared = http_client::client(&shared, &default_tls);
    let max_offers = config.suppliers.answer_bounds.max_offers;
    suppliers
        .iter()
        .map(|settings| {
            // A supplier with its own CA or client certificate gets its own
            // client (and pool): TLS settings belong to the connector.
            let supplier = if settings.tls.is_default() {
                HttpSupplier::sharing(settings, shared.clone(), Arc::clone(metrics), max_offers)
            } else {
                HttpSupplier::new(settings, Arc::clone(metrics), max_offers)
            };
            Supplier::Http(Box::new(supplier))
        })
        .collect()
}

/// Supplier codes `config` will call, for labelling metrics before any call.
pub(crate) fn codes(config: &Config) -> Vec<&'static str> {
    if config.suppliers.http.is_empty() {
        simulation::codes()
    } else {
        config.suppliers.http.iter().map(|s| s.code).collect()
    }
}

impl Supplier {
    /// The supplier code, which names the supplier in events.
    pub fn code(&self) -> &'static str {
        match self {
            Supplier::Simulated(s) => s.code(),
            Supplier::Http(s) => s.code(),
        }
    }

    /// Its own answer cache TTL, if it has one (HTTP suppliers).
    pub(crate) fn cache_ttl(&self) -> Option<std::time::Duration> {
        match self {
            Supplier::Simulated(_) => None,
            Supplier::Http(s) => Some(s.cache_ttl()),
        }
    }

    /// How the supplier is asked, for its spans: `simulated` or `http`.
    pub(crate) fn style(&self) -> &'static str {
        match self {
            Supplier::Simulated(_) => "simulated",
            Supplier::Http(_) => "http",
        }
    }

    /// Asks for `request`'s flights, giving up at `deadline`; counts the
    /// call's duration and outcome in `metrics`; records its outcome in the
    /// current (`supplier.call`) span.
    pub(crate) async fn search(
        &self,
        request: &SearchRequest,
        deadline: Instant,
        metrics: &Metrics,
    ) -> Result<Vec<Flight>, Failure> {
        let started = Instant::now();
        let answer = match self {
            Supplier::Simulated(s) => tokio::time::timeout_at(deadline, s.search(request))
                .await
                .unwrap_or(Err(Failure::Timeout)),
            Supplier::Http(s) => s.search(request, deadline).await,
        };
        let supplier = self.code();
        metrics
            .supplier_call_duration
            .get_or_create(&SupplierLabel { supplier })
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &answer {
            Ok(_) => SupplierOutcome::Answered,
            Err(failure) => {
                metrics
                    .supplier_failures
                    .get_or_create(&SupplierLabel { supplier })
                    .inc();
                // An open circuit was logged once when it opened; repeating it
                // for every search it spares would drown the other lines.
                if *failure == Failure::CircuitOpen {
                    tracing::debug!(supplier, "supplier skipped: circuit open");
                } else if *failure == Failure::Unauthorized {
                    tracing::warn!(
                        supplier,
                        "supplier refused our credentials; check its auth settings"
                    );
                } else {
                    tracing::info!(
                        supplier,
                        outcome = failure.outcome().as_str(),
                        "supplier call failed"
                    );
                }
                failure.outcome()
            }
        };
        tracing::Span::current().record("outcome", outcome.as_str());
        metrics
            .supplier_outcomes
            .get_or_create(&OutcomeLabel {
                supplier,
                outcome: outcome.as_str(),
            })
            .inc();
        answer
    }
}
