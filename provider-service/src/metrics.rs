//! Prometheus metrics, all prefixed `flight_search_provider_`, served on
//! `/metrics` by the admin server.
//!
//! Label values are fixed strings (supplier codes, error codes, Redis operation
//! names), so no label can grow without bound. Known label values are created at
//! start so dashboards see zeros rather than missing series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use service_runtime::redis_failure::RedisFailure;

/// Label for counters split by the failure code written to the client.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// An `EventError` code.
    pub code: &'static str,
}

/// Label for per-supplier series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SupplierLabel {
    /// Airline code of the supplier.
    pub supplier: &'static str,
}

/// Label for supplier call outcomes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// Airline code of the supplier.
    pub supplier: &'static str,
    /// A `SupplierOutcome` wire name.
    pub outcome: &'static str,
}

/// Label for dead letters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the entry was set aside.
    pub reason: &'static str,
}

/// Label for Redis failures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// Which operation failed (`read`, `append`, `ack`, ...).
    pub op: &'static str,
}

/// Every metric the provider exports. Handles are cheap clones sharing the
/// registered series.
pub struct Metrics {
    /// Owns the series for encoding.
    registry: Registry,
    /// Searches taken by this replica and not yet finished; saturation shows as
    /// this sitting at `PROVIDER_CONCURRENCY`.
    pub searches_in_flight: Gauge,
    /// Searches this process finished with a `completed` event.
    pub searches_completed: Counter,
    /// Searches this process finished with a `failed` event, by code.
    pub searches_failed: Family<CodeLabel, Counter>,
    /// Time each supplier call took, answered or failed.
    pub supplier_call_duration: Family<SupplierLabel, Histogram>,
    /// Supplier calls that failed, by supplier.
    pub supplier_failures: Family<SupplierLabel, Counter>,
    /// Supplier calls by how they ended (the terminal event's report).
    pub supplier_outcomes: Family<OutcomeLabel, Counter>,
    /// HTTP supplier calls repeated after a retryable failure.
    pub supplier_retries: Family<SupplierLabel, Counter>,
    /// 1 while an HTTP supplier's circuit is open or half-open, as of its last call.
    pub supplier_circuit_open: Family<SupplierLabel, Gauge>,
    /// Supplier answers served from the Redis answer cache.
    pub supplier_cache_hits: Family<SupplierLabel, Counter>,
    /// Supplier answers looked up in the cache and not found.
    pub supplier_cache_misses: Family<SupplierLabel, Counter>,
    /// Idle searches taken over from another (or a previous) consumer.
    pub claims: Counter,
    /// Entries moved to the dead-letter stream, by reason.
    pub dead_letters: Family<ReasonLabel, Counter>,
    /// Entries delivered to the group and not yet acknowledged, as of the last sweep.
    pub pending_entries: Gauge,
    /// Failed Redis operations, by operation.
    pub redis_errors: Family<OpLabel, Counter>,
    /// 1 while both the command connection and the reader are up; set on scrape.
    pub redis_up: Gauge,
    /// Searches held by this replica that wait for Redis to accept writes again.
    pub searches_waiting_for_writes: Gauge,
    /// 1 while Redis refuses writes (OOM, READONLY, MISCONF); set on scrape.
    pub redis_writes_refused: Gauge,
}

/// Every `op` label of `redis_errors_total`; each call site of
/// [`Metrics::redis_error`] names one of these.
const REDIS_OPS: [&str; 11] = [
    "connect",
    "read",
    "ack",
    "append",
    "history",
    "group_create",
    "pending",
    "claim",
    "heartbeat",
    "forget_consumers",
    "dead_letter",
];

/// Supplier calls take from nothing (benchmarks) to several seconds.
const CALL_BUCKETS: [f64; 13] = [
    0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

impl Metrics {
    /// Registers every series; `suppliers` and the known codes start at zero.
    pub fn new(suppliers: &[&'static str]) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("flight_search_provider"),
            searches_in_flight: Gauge::default(),
            searches_completed: Counter::default(),
            searches_failed: Family::default(),
            supplier_call_duration: Family::new_with_constructor(|| Histogram::new(CALL_BUCKETS)),
            supplier_failures: Family::default(),
            supplier_outcomes: Family::default(),
            supplier_retries: Family::default(),
            supplier_circuit_open: Family::default(),
            supplier_cache_hits: Family::default(),
            supplier_cache_misses: Family::default(),
            claims: Counter::default(),
            dead_letters: Family::default(),
            pending_entries: Gauge::default(),
            redis_errors: Family::default(),
            redis_up: Gauge::default(),
            searches_waiting_for_writes: Gauge::default(),
            redis_writes_refused: Gauge::default(),
        };
        metrics.register();
        metrics.registry.register(
            "trace_spans_dropped",
            "Spans not exported: queue full or the receiver did not take them",
            service_runtime::trace_export::dropped_spans(),
        );
        metrics.start_at_zero(suppliers);
        metrics
    }

    /// Adds every series to the registry, in the order they are exposed.
    fn register(&mut self) {
        let metrics = self;
        let registry = &mut metrics.registry;
        registry.register(
            "searches_in_flight",
            "Searches being processed now",
            metrics.searches_in_flight.clone(),
        );
        registry.register(
            "searches_completed",
            "Searches finished with a completed event",
            metrics.searches_completed.clone(),
        );
        registry.register(
            "searches_failed",
            "Searches finished with a failed event, by code",
            metrics.searches_failed.clone(),
        );
        registry.register(
            "supplier_call_duration_seconds",
            "Duration of supplier calls, answered or failed",
            metrics.supplier_call_duration.clone(),
        );
        registry.register(
            "supplier_failures",
            "Supplier calls that failed",
            metrics.supplier_failures.clone(),
        );
        registry.register(
            "searches_waiting_for_writes",
            "Searches held while Redis refuses writes",
            metrics.searches_waiting_for_writes.clone(),
        );
        registry.register(
            "redis_writes_refused",
            "1 while Redis refuses writes (OOM, READONLY, MISCONF)",
            metrics.redis_writes_refused.clone(),
        );
        registry.register(
            "supplier_outcomes",
            "Supplier calls by outcome: answered, timeout, error, rate_limited, circuit_open",
            metrics.supplier_outcomes.clone(),
        );
        registry.register(
            "supplier_retries",
            "HTTP supplier calls repeated after a retryable failure",
            metrics.supplier_retries.clone(),
        );
        registry.register(
            "supplier_circuit_open",
            "1 while the supplier's circuit breaker is open or probing",
            metrics.supplier_circuit_open.clone(),
        );
        registry.register(
            "supplier_cache_hits",
            "Supplier answers served from the Redis answer cache",
            metrics.supplier_cache_hits.clone(),
        );
        registry.register(
            "supplier_cache_misses",
            "Supplier answers looked up in the cache and not found",
            metrics.supplier_cache_misses.clone(),
        );
        registry.register(
            "claims",
            "Idle pending searches claimed for processing",
            metrics.claims.clone(),
        );
        registry.register(
            "dead_letters",
            "Queue entries moved to the dead-letter stream, by reason",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "pending_entries",
            "Entries delivered to the consumer group and not yet acknowledged",
            metrics.pending_entries.clone(),
        );
        registry.register(
            "redis_errors",
            "Failed Redis operations, by operation",
            metrics.redis_errors.clone(),
        );
        registry.register(
            "redis_up",
            "1 if Redis is reachable for commands and for reading the queue",
            metrics.redis_up.clone(),
        );
    }

    /// Creates the labelled series known from the start, so they read zero
    /// rather than being absent until first used.
    fn start_at_zero(&self, suppliers: &[&'static str]) {
        let metrics = self;
        for &supplier in suppliers {
            let label = SupplierLabel { supplier };
            metrics.supplier_failures.get_or_create_owned(&label);
            metrics.supplier_call_duration.get_or_create_owned(&label);
            metrics.supplier_retries.get_or_create_owned(&label);
            metrics.supplier_circuit_open.get_or_create_owned(&label);
            metrics.supplier_cache_hits.get_or_create_owned(&label);
            metrics.supplier_cache_misses.get_or_create_owned(&label);
        }
        for code in [
            contract::EventError::SUPPLIERS_UNAVAILABLE,
            contract::EventError::INVALID_REQUEST,
            contract::EventError::DEAD_LETTERED,
        ] {
            metrics
                .searches_failed
                .get_or_create_owned(&CodeLabel { code });
        }
        for reason in crate::dead_letter::DeadLetter::REASONS {
            metrics
                .dead_letters
                .get_or_create_owned(&ReasonLabel { reason });
        }
        for op in REDIS_OPS {
            metrics.redis_errors.get_or_create_owned(&OpLabel { op });
        }
    }

    /// Counts one failed Redis operation.
    pub fn redis_error(&self, op: &'static str) {
        self.redis_errors.get_or_create(&OpLabel { op }).inc();
    }

    /// Counts `source` as a failure of `op` and labels it so.
    pub fn redis_failure(&self, op: &'static str, source: redis::RedisError) -> RedisFailure {
        self.redis_error(op);
        RedisFailure { op, source }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_known_labels_start_at_zero() {
        let m = Metrics::new(&["GA", "JT"]);
        m.searches_completed.inc();
        m.redis_error("ack");
        let text = m.encode();
        for line in [
            "flight_search_provider_searches_completed_total 1",
            "flight_search_provider_searches_in_flight 0",
            r#"flight_search_provider_supplier_failures_total{supplier="JT"} 0"#,
            r#"flight_search_provider_searches_failed_total{code="dead_lettered"} 0"#,
            r#"flight_search_provider_redis_errors_total{op="ack"} 1"#,
            r#"flight_search_provider_supplier_call_duration_seconds_count{supplier="GA"} 0"#,
            "flight_search_provider_claims_total 0",
            "flight_search_provider_pending_entries 0",
            "flight_search_provider_redis_up 0",
            r#"flight_search_provider_dead_letters_total{reason="max_deliveries_exceeded"} 0"#,
            r#"flight_search_provider_redis_errors_total{op="claim"} 0"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
