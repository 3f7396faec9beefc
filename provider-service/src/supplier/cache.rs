//! The supplier answer cache: an airline's answer for (supplier, from, to,
//! date, passengers) is kept in Redis for `SUPPLIER_CACHE_TTL_SECS` and reused
//! by every replica, because identical searches are common and supplier calls
//! are slow (and, with real partners, often billed).
//!
//! Only answers are cached, never failures: a supplier that failed is asked
//! again by the next search. Within one replica, concurrent identical calls
//! share one supplier call (single flight); across replicas two may overlap
//! until the first answer is stored. The cache sits before the append script,
//! so a cached answer is written like any other: once per search, counted in
//! the terminal event's tally.
//!
//! The cache can only make a search faster: when Redis fails, a lookup is a
//! miss and a store is skipped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::keys::SUPPLIER_ANSWER_PREFIX;
use contract::{Flight, SearchRequest};
use service_runtime::redis_connection::RedisConnection;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::metrics::{Metrics, SupplierLabel};
use crate::supplier::Supplier;
use crate::supplier::failure::Failure;

/// One call in flight that identical calls wait for.
type Flight1 = Arc<OnceCell<Result<Vec<Flight>, Failure>>>;

/// The cache in front of every supplier.
pub struct AnswerCache {
    /// Shared command connection.
    conn: RedisConnection,
    /// How long answers are kept unless the supplier has its own TTL; zero
    /// disables the cache for those suppliers.
    ttl: Duration,
    /// Calls in flight by cache key, for single flight.
    in_flight: Mutex<HashMap<String, Flight1>>,
}

/// The cache key of `supplier`'s answer to `request`.
pub fn key(supplier: &str, request: &SearchRequest) -> String {
    format!(
        "{SUPPLIER_ANSWER_PREFIX}{supplier}:{}:{}:{}:{}",
        request.from,
        request.to,
        request.date_text(),
        request.passengers
    )
}

impl AnswerCache {
    /// A cache keeping answers `ttl` (zero: off).
    pub fn new(conn: RedisConnection, ttl: Duration) -> AnswerCache {
        AnswerCache {
            conn,
            ttl,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// `supplier`'s answer to `request`: from the cache when it holds one,
    /// else from the supplier (shared with identical calls in flight here),
    /// stored for the next search when it is an answer.
    pub async fn search(
        &self,
        supplier: &Supplier,
        request: &SearchRequest,
        deadline: Instant,
        metrics: &Metrics,
    ) -> Result<Vec<Flight>, Failure> {
        let ttl = supplier.cache_ttl().unwrap_or(self.ttl);
        if ttl.is_zero() {
            return supplier.search(request, deadline, metrics).await;
        }
        let key = key(supplier.code(), request);
        let cell = {
            let mut in_flight = self.in_flight.lock().expect("in-flight map poisoned");
            Arc::clone(in_flight.entry(key.clone()).or_default())
        };
        let answer = cell
            .get_or_init(|| self.lookup_or_call(&key, ttl, supplier, request, deadline, metrics))
            .await
            .clone();
        // The first caller to finish removes the entry; later ones find it gone
        // or replaced by a newer call, which they leave alone.
        let mut in_flight = self.in_flight.lock().expect("in-flight map poisoned");
        if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(&key);
        }
        answer
    }

    async fn lookup_or_call(
        &self,
        key: &str,
        ttl: Duration,
        supplier: &Supplier,
        request: &SearchRequest,
        deadline: Instant,
        metrics: &Metrics,
    ) -> Result<Vec<Flight>, Failure> {
        let label = SupplierLabel {
            supplier: supplier.code(),
        };
        let cached: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await;
        match cached {
            Ok(Some(bytes)) => match serde_json::from_slice::<Vec<Flight>>(&bytes) {
                Ok(flights) => {
                    metrics.supplier_cache_hits.get_or_create(&label).inc();
                    tracing::Span::current().record("cache_hit", true);
                    return Ok(flights);
                }
                Err(error) => tracing::warn!(key, %error, "ignoring an unreadable cached answer"),
            },
            Ok(None) => {}
            Err(error) => {
                metrics.redis_error("cache");
                tracing::debug!(key, %error, "answer cache lookup failed; asking the supplier");
            }
        }
        metrics.supplier_cache_misses.get_or_create(&label).inc();
        tracing::Span::current().record("cache_hit", false);
        let answer = supplier.search(request, deadline, metrics).await;
        if let Ok(flights) = &answer {
            let stored: redis::RedisResult<()> = redis::cmd("SET")
                .arg(key)
                .arg(serde_json::to_vec(flights).expect("flights serialise"))
                .arg("EX")
                .arg(ttl.as_secs())
                .query_async(&mut self.conn.clone())
                .await;
            if let Err(error) = stored {
                metrics.redis_error("cache");
                tracing::debug!(key, %error, "answer cache store failed");
            }
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_every_part_of_the_question() {
        let request = SearchRequest {
            from: contract::Iata::parse("CGK").unwrap(),
            to: contract::Iata::parse("DPS").unwrap(),
            date: time::macros::date!(2026 - 12 - 10),
            passengers: 3,
        };
        assert_eq!(
            key("GA", &request),
            "flight.supplier.answer:GA:CGK:DPS:2026-12-10:3"
        );
    }
}
