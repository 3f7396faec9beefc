//! Prometheus metrics, all prefixed `flight_search_provider_`, served on
//! `/metrics` by the admin server.
//!
//! Label values are fixed strings (supplier codes, error codes, Redis operation
//! names), so no label can grow without bound. Known label values are created at
//! start so dashboards see zeros rather than missing series. The standard
//! unprefixed `process_*` metrics (descriptors, memory, CPU) follow.

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

/// Label for supplier offers left out of an answer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabel {
    /// Airline code of the supplier.
    pub supplier: &'static str,
    /// Why, e.g. `unknown_airport` (see the partner-style adapters).
    pub reason: &'static str,
}

/// The drop reason of offers for an airline the supplier may not sell.
pub const AIRLINE_NOT_SOLD: &str = "airline_not_sold";
/// Label for offers dropped by the offer checks.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabel {
    /// Airline code of the supplier.
    pub supplier: &'static str,
    /// A `Rejection` name.
    pub reason: &'static str,
}

/// Label for offers cut from answers by a bound.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// Airline code of the supplier.
    pub supplier: &'static str,
    /// An `answer_bounds::Limit` name.
    pub limit: &'static str,
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
    /// The standard `process_*` metrics, unprefixed, read at each scrape.
    process: Registry,
    /// Searches taken by this replica and not yet finished; saturation shows as
    /// this sitting at `PROVIDER_CONCURRENCY`.
    pub(crate) searches_in_flight: Gauge,
    /// Searches this process finished with a `completed` event.
    pub(crate) searches_completed: Counter,
    /// Searches this process finished with a `failed` event, by code.
    pub(crate) searches_failed: Family<CodeLabel, Counter>,
    /// Time each supplier query took for one search attempt, retries and
    /// waits included, answered or failed.
    pub(crate) supplier_call_duration: Family<SupplierLabel, Histogram>,
    /// Supplier queries that ended without an answer, by supplier.
    pub(crate) supplier_failures: Family<SupplierLabel, Counter>,
    /// Supplier queries by how they ended (what the terminal event reports),
    /// one per supplier per search attempt; a cache hit, or an answer shared
    /// with an identical query in flight, is not a query.
    pub(crate) supplier_outcomes: Family<OutcomeLabel, Counter>,
    /// HTTP supplier calls repeated after a retryable failure.
    pub(crate) supplier_retries: Family<SupplierLabel, Counter>,
    /// Offers of readable answers left out, by supplier and reason.
    pub(crate) supplier_offers_dropped: Family<DroppedLabel, Counter>,
    /// 1 while an HTTP supplier's circuit is open or half-open, as of its last call.
    pub(crate) supplier_circuit_open: Family<SupplierLabel, Gauge>,
    /// Supplier answers served from the Redis answer cache.
    pub(crate) supplier_cache_hits: Family<SupplierLabel, Counter>,
    /// Supplier answers looked up in the cache and not found.
    pub(crate) supplier_cache_misses: Family<SupplierLabel, Counter>,
    /// OAuth2 tokens fetched, by supplier.
    pub(crate) supplier_token_fetches: Family<SupplierLabel, Counter>,
    /// Idle searches taken over from another (or a previous) consumer.
    pub(crate) claims: Counter,
    /// Recovery sweeps started over the pending list (whether or not Redis
    /// let them claim anything): a stalled count means idle searches are no
    /// longer taken over.
    pub(crate) recovery_sweeps: Counter,
    /// Entries moved to the dead-letter stream, by reason.
    pub(crate) dead_letters: Family<ReasonLabel, Counter>,
    /// Entries delivered to the group and not yet acknowledged, as of the last sweep.
    pub(crate) pending_entries: Gauge,
    /// Failed Redis operations, by operation.
    pub(crate) redis_errors: Family<OpLabel, Counter>,
    /// 1 while both the command connection and the reader are up; set on scrape.
    pub(crate) redis_up: Gauge,
    /// Searches held by this replica that wait for Redis to accept writes again.
    pub(crate) searches_waiting_for_writes: Gauge,
    /// 1 while Redis refuses writes (OOM, READONLY, MISCONF); set on scrape.
    pub(crate) redis_writes_refused: Gauge,
    /// Supplier calls that panicked (and ended as `error`), by supplier.
    pub(crate) supplier_panics: Family<SupplierLabel, Counter>,
    /// Search attempts that panicked outside a supplier call (and ended the
    /// search with `internal_error`).
    pub(crate) search_panics: Counter,
    /// Supplier offers dropped by the offer checks, by supplier and reason.
    pub(crate) supplier_offers_rejected: Family<RejectionLabel, Counter>,
    /// Offers cut from supplier answers by a bound, by supplier and limit.
    pub(crate) supplier_offers_truncated: Family<LimitLabel, Counter>,
    /// Size of each `result` event as written, after any cut.
    pub(crate) result_event_bytes: Histogram,
    /// Size of all events of a search, as of each attempt's last answer.
    pub(crate) search_event_bytes: Histogram,
}

/// Event sizes, from a few offers to the largest bounds allowed.
const BYTE_BUCKETS: [f64; 9] = [
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Every `op` label of `redis_errors_total`; each call site of
/// [`Metrics::redis_error`] names one of these.
const REDIS_OPS: [&str; 12] = [
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
    "cache",
];

/// Supplier calls take from nothing (benchmarks) to several seconds.
const CALL_BUCKETS: [f64; 13] = [
    0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

/// The label values whose series start at zero. The modules that own them
/// (dead letters, answer bounds, the offer check) write to the metrics, so
/// whoever builds the metrics passes their values in.
#[derive(Debug, Default)]
pub struct KnownLabels<'a> {
    /// The supplier codes.
    pub suppliers: &'a [&'static str],
    /// The answer bounds a supplier's answer can be cut at, per supplier.
    pub limits: &'a [&'static str],
    /// The reasons an offer is rejected for, per supplier.
    pub rejections: &'a [&'static str],
    /// The reasons a search is dead-lettered for.
    pub dead_letters: &'a [&'static str],
}

impl Metrics {
    /// Registers every series; the `known` labels and codes start at zero.
    pub fn new(known: &KnownLabels) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("flight_search_provider"),
            process: service_runtime::process_metrics::registry(),
            searches_in_flight: Gauge::default(),
            searches_completed: Counter::default(),
            searches_failed: Family::default(),
            supplier_call_duration: Family::new_with_constructor(|| Histogram::new(CALL_BUCKETS)),
            supplier_failures: Family::default(),
            supplier_outcomes: Family::default(),
            supplier_retries: Family::default(),
            supplier_offers_dropped: Family::default(),
            supplier_circuit_open: Family::default(),
            supplier_cache_hits: Family::default(),
            supplier_cache_misses: Family::default(),
            supplier_token_fetches: Family::default(),
            claims: Counter::default(),
            recovery_sweeps: Counter::default(),
            dead_letters: Family::default(),
            pending_entries: Gauge::default(),
            redis_errors: Family::default(),
            redis_up: Gauge::default(),
            searches_waiting_for_writes: Gauge::default(),
            redis_writes_refused: Gauge::default(),
            supplier_panics: Family::default(),
            search_panics: Counter::default(),
            supplier_offers_rejected: Family::default(),
            supplier_offers_truncated: Family::default(),
            result_event_bytes: Histogram::new(BYTE_BUCKETS),
            search_event_bytes: Histogram::new(BYTE_BUCKETS),
        };
        metrics.register();
        metrics.register_guards();
        metrics.registry.register(
            "trace_spans_dropped",
            "Spans not exported: queue full or the receiver did not take them",
            service_runtime::trace_export::dropped_spans(),
        );
        metrics.start_at_zero(known);
        metrics
    }

    /// Adds every series to the registry, in the order they are exposed.
    fn register(&mut self) {
        let metrics = self;
        let registry = &mut metrics.registry;
        registry.register(
            "searches_in_flight",
            "Searches this process has taken and not yet finished",
            metrics.searches_in_flight.clone(),
        );
        registry.register(
            "searches_completed",
            "Searches whose completed event this process wrote",
            metrics.searches_completed.clone(),
        );
        registry.register(
            "searches_failed",
            "Searches whose failed event this process wrote, by code (dead_lettered and invalid_request included)",
            metrics.searches_failed.clone(),
        );
        registry.register(
            "supplier_call_duration_seconds",
            "Time a supplier query took for one search attempt, retries and waits included, answered or failed (cache hits not counted)",
            metrics.supplier_call_duration.clone(),
        );
        registry.register(
            "supplier_failures",
            "Supplier queries that ended without an answer (any outcome but answered; cache hits not counted)",
            metrics.supplier_failures.clone(),
        );
        registry.register(
            "searches_waiting_for_writes",
            "Searches this process holds until Redis accepts writes again",
            metrics.searches_waiting_for_writes.clone(),
        );
        registry.register(
            "redis_writes_refused",
            "1 while Redis refuses writes (OOM, READONLY, MISCONF)",
            metrics.redis_writes_refused.clone(),
        );
        metrics.register_suppliers();
        let registry = &mut metrics.registry;
        registry.register(
            "claims",
            "Idle pending searches this process claimed from another (or a previous) consumer",
            metrics.claims.clone(),
        );
        registry.register(
            "recovery_sweeps",
            "Recovery sweeps started over the pending list",
            metrics.recovery_sweeps.clone(),
        );
        registry.register(
            "dead_letters",
            "Queue entries this process moved to the dead-letter stream, by reason",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "pending_entries",
            "Entries delivered to the consumer group (any consumer) and not yet acknowledged, as of this process's last sweep",
            metrics.pending_entries.clone(),
        );
        registry.register(
            "redis_errors",
            "Redis operations of this process that failed, by operation",
            metrics.redis_errors.clone(),
        );
        registry.register(
            "redis_up",
            "1 while both this process's command connection and its queue reader are up, else 0; read at scrape",
            metrics.redis_up.clone(),
        );
    }

    /// Adds the per-supplier series to the registry.
    fn register_suppliers(&mut self) {
        let metrics = self;
        let registry = &mut metrics.registry;
        registry.register(
            "supplier_outcomes",
            "Supplier queries by how they ended, one per supplier per search attempt (cache hits and answers shared with an identical query in flight not counted): answered, timeout, error, rate_limited, circuit_open, unauthorized",
            metrics.supplier_outcomes.clone(),
        );
        registry.register(
            "supplier_retries",
            "HTTP supplier calls repeated after a retryable failure",
            metrics.supplier_retries.clone(),
        );
        registry.register(
            "supplier_offers_dropped",
            "Offers in supplier answers left out, by reason: airline_not_sold, unknown_airport, bad_time, bad_price, other_route, too_few_seats, malformed",
            metrics.supplier_offers_dropped.clone(),
        );
        registry.register(
            "supplier_circuit_open",
            "1 while the supplier's circuit breaker is open or probing, as of this process's last query to it",
            metrics.supplier_circuit_open.clone(),
        );
        registry.register(
            "supplier_cache_hits",
            "Supplier queries answered from the Redis answer cache",
            metrics.supplier_cache_hits.clone(),
        );
        registry.register(
            "supplier_cache_misses",
            "Supplier queries looked up in the answer cache and not found (or not readable), so asked of the supplier",
            metrics.supplier_cache_misses.clone(),
        );
        registry.register(
            "supplier_token_fetches",
            "OAuth2 tokens fetched from the supplier's token endpoint",
            metrics.supplier_token_fetches.clone(),
        );
    }

    /// Adds the series of the guards against bad supplier answers: panics,
    /// offers dropped by the offer check.
    fn register_guards(&mut self) {
        let metrics = self;
        let registry = &mut metrics.registry;
        registry.register(
            "supplier_panics",
            "Supplier calls that panicked and ended as error, by supplier",
            metrics.supplier_panics.clone(),
        );
        registry.register(
            "search_panics",
            "Search attempts that panicked outside a supplier call",
            metrics.search_panics.clone(),
        );
        registry.register(
            "supplier_offers_rejected",
            "Supplier offers dropped by the offer checks, by supplier and reason",
            metrics.supplier_offers_rejected.clone(),
        );
        registry.register(
            "supplier_offers_truncated",
            "Offers cut from supplier answers by a bound, by supplier and limit",
            metrics.supplier_offers_truncated.clone(),
        );
        registry.register(
            "result_event_bytes",
            "Size of each result event written, after any cut",
            metrics.result_event_bytes.clone(),
        );
        registry.register(
            "search_event_bytes",
            "Size of all events of a search, as of each attempt's last answer",
            metrics.search_event_bytes.clone(),
        );
    }

    /// Creates the labelled series known from the start, so they read zero
    /// rather than being absent until first used.
    fn start_at_zero(&self, known: &KnownLabels) {
        let metrics = self;
        for &supplier in known.suppliers {
            let label = SupplierLabel { supplier };
            metrics.supplier_failures.get_or_create_owned(&label);
            metrics.supplier_call_duration.get_or_create_owned(&label);
            metrics.supplier_retries.get_or_create_owned(&label);
            metrics.supplier_circuit_open.get_or_create_owned(&label);
            metrics.supplier_cache_hits.get_or_create_owned(&label);
            metrics.supplier_cache_misses.get_or_create_owned(&label);
            metrics
                .supplier_offers_dropped
                .get_or_create_owned(&DroppedLabel {
                    supplier,
                    reason: AIRLINE_NOT_SOLD,
                });
            metrics.supplier_token_fetches.get_or_create_owned(&label);
            metrics.supplier_panics.get_or_create_owned(&label);
            for &limit in known.limits {
                metrics
                    .supplier_offers_truncated
                    .get_or_create_owned(&LimitLabel { supplier, limit });
            }
            for &reason in known.rejections {
                metrics
                    .supplier_offers_rejected
                    .get_or_create_owned(&RejectionLabel { supplier, reason });
            }
        }
        for code in [
            contract::EventError::SUPPLIERS_UNAVAILABLE,
            contract::EventError::INVALID_REQUEST,
            contract::EventError::DEAD_LETTERED,
            contract::EventError::INTERNAL_ERROR,
        ] {
            metrics
                .searches_failed
                .get_or_create_owned(&CodeLabel { code });
        }
        for &reason in known.dead_letters {
            metrics
                .dead_letters
                .get_or_create_owned(&ReasonLabel { reason });
        }
        for op in REDIS_OPS {
            metrics.redis_errors.get_or_create_owned(&OpLabel { op });
        }
    }

    /// Counts one failed Redis operation.
    pub(crate) fn redis_error(&self, op: &'static str) {
        self.redis_errors.get_or_create(&OpLabel { op }).inc();
    }

    /// Counts `source` as a failure of `op` and labels it so.
    pub(crate) fn redis_failure(
        &self,
        op: &'static str,
        source: redis::RedisError,
    ) -> RedisFailure {
        self.redis_error(op);
        RedisFailure { op, source }
    }

    /// The registry in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        service_runtime::process_metrics::encode_with(&self.registry, &self.process)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_known_labels_start_at_zero() {
        let m = Metrics::new(&KnownLabels {
            suppliers: &["GA", "JT"],
            dead_letters: &["max_deliveries_exceeded"],
            ..KnownLabels::default()
        });
        m.searches_completed.inc();
        m.redis_error("ack");
        m.supplier_offers_dropped
            .get_or_create(&DroppedLabel {
                supplier: "GA",
                reason: "bad_time",
            })
            .inc();
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
            "# TYPE process_open_fds gauge",
            "flight_search_provider_redis_up 0",
            r#"flight_search_provider_dead_letters_total{reason="max_deliveries_exceeded"} 0"#,
            r#"flight_search_provider_redis_errors_total{op="claim"} 0"#,
            r#"flight_search_provider_supplier_offers_dropped_total{supplier="GA",reason="bad_time"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
