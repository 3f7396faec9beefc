//! Prometheus metrics (prefix `flight_search_`), served at `GET /metrics`.
//!
//! Label values are always from a fixed set (route patterns, known methods,
//! status codes, Redis operation names), never raw input, so a client cannot
//! grow the number of series. The standard unprefixed `process_*` metrics
//! (open and allowed file descriptors above all: one per SSE stream) follow.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern, e.g. `/api/flights/search/{search_id}/stream`.
    pub route: &'static str,
    /// The method, or `other` for anything unusual.
    pub method: &'static str,
    /// The response status code.
    pub status: u16,
}

/// Labels naming a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern.
    pub route: &'static str,
}

/// Labels naming a Redis operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// What main-service was doing, e.g. `submit`, `attach`, `fetch`.
    pub op: &'static str,
}

/// Labels naming why a submission was refused before anything was written.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// `queue_full` (503) or `rate_limited` (429).
    pub reason: &'static str,
}
/// Every `op` label of `redis_errors_total`; each call site of
/// [`Metrics::redis_error`] names one of these.
const REDIS_OPS: [&str; 7] = [
    "submit",
    "attach",
    "detach",
    "fetch",
    "subscribe",
    "timeout",
    "group_create",
];

/// A histogram family keyed by route.
type RouteHistograms = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Every metric main-service exports, registered once.
pub struct Metrics {
    /// Holds the metrics below for encoding (they share their values with it).
    registry: Registry,
    /// The standard `process_*` metrics, unprefixed, read at each scrape.
    process: Registry,
    /// `http_requests_total{route,method,status}`.
    pub http_requests: Family<RequestLabels, Counter>,
    /// `http_request_duration_seconds{route}`: time to the response head (for
    /// SSE, until the stream starts, not its whole life).
    pub http_request_duration: RouteHistograms,
    /// `sse_streams_open`: event streams currently attached.
    pub sse_streams_open: Gauge,
    /// `sse_events_delivered_total`: events handed to clients (not keep-alives).
    pub sse_events_delivered: Counter,
    /// `searches_submitted_total`: accepted POSTs.
    pub searches_submitted: Counter,
    /// `deliveries_completed_total`: searches whose clients on this instance
    /// watched them from before their first result to a `completed` event.
    /// A delivery figure, not a search outcome: provider-service counts every
    /// search's outcome where it is written.
    pub deliveries_completed: Counter,
    /// `deliveries_failed_total`: as `deliveries_completed_total`, for a
    /// `failed` event (timeouts included).
    pub deliveries_failed: Counter,
    /// `searches_timed_out_total`: timeout events this instance wrote.
    pub searches_timed_out: Counter,
    /// `search_time_to_first_result_seconds`: POST to the hub reading the first
    /// `result` event.
    pub time_to_first_result: Histogram,
    /// `search_time_to_completion_seconds`: POST to the hub reading the terminal event.
    pub time_to_completion: Histogram,
    /// `hub_feeds_active`: searches with at least one local client.
    pub hub_feeds_active: Gauge,
    /// `hub_entries_skipped_total`: result stream entries read but not
    /// delivered because they had no readable `data` field (or no readable id),
    /// so a hand-written or damaged entry shows without stopping its search.
    pub hub_entries_skipped: Counter,
    /// `hub_sweeps_total`: passes of the hub's clock, each of which writes
    /// the timeouts that are due and, every two seconds, retries failed reads
    /// (and re-reads every feed while the subscription is down). A stalled
    /// count means timeouts are no longer written.
    pub hub_sweeps: Counter,
    /// `sse_clients_dropped_slow_total`: connections cut off because the client
    /// stopped accepting bytes.
    pub sse_clients_dropped_slow: Counter,
    /// `redis_errors_total{op}`.
    pub redis_errors: Family<OpLabels, Counter>,
    /// `redis_up`: 1 while the Redis link answers pings; set when scraped.
    pub redis_up: Gauge,
    /// `queue_backlog`: searches accepted and not yet finished by the slowest
    /// consumer group, as last read (every 100 ms).
    pub queue_backlog: Gauge,
    /// `queue_trimmed_entries_total`: finished entries this instance trimmed
    /// from the queue.
    pub queue_trimmed: Counter,
    /// `searches_rejected_total{reason}`: submissions refused by admission
    /// control or the rate limit.
    pub searches_rejected: Family<RejectionLabels, Counter>,
    /// `redis_writes_refused`: 1 while Redis refuses writes (OOM, READONLY,
    /// MISCONF); set when scraped.
    pub redis_writes_refused: Gauge,
}

impl Metrics {
    /// Creates and registers every metric. `answered` holds the route,
    /// method and status of each route's normal answer: those request series
    /// start at zero. The routes pass it in, as they use the metrics.
    pub fn new(answered: &[(&'static str, &'static str, u16)]) -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("flight_search"),
            process: service_runtime::process_metrics::registry(),
            http_requests: Family::default(),
            http_request_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            sse_streams_open: Gauge::default(),
            sse_events_delivered: Counter::default(),
            searches_submitted: Counter::default(),
            deliveries_completed: Counter::default(),
            deliveries_failed: Counter::default(),
            searches_timed_out: Counter::default(),
            time_to_first_result: Histogram::new(exponential_buckets(0.025, 2.0, 14)),
            time_to_completion: Histogram::new(exponential_buckets(0.025, 2.0, 14)),
            hub_feeds_active: Gauge::default(),
            hub_entries_skipped: Counter::default(),
            hub_sweeps: Counter::default(),
            sse_clients_dropped_slow: Counter::default(),
            redis_errors: Family::default(),
            redis_up: Gauge::default(),
            queue_backlog: Gauge::default(),
            queue_trimmed: Counter::default(),
            searches_rejected: Family::default(),
            redis_writes_refused: Gauge::default(),
        };
        m.register_delivery();
        m.register_searches();
        m.register_redis();
        m.registry.register(
            "trace_spans_dropped",
            "Spans not exported: queue full or the receiver did not take them",
            service_runtime::trace_export::dropped_spans(),
        );
        m.start_known_series_at_zero(answered);
        m
    }

    /// Registers the HTTP and event delivery metrics.
    fn register_delivery(&mut self) {
        let r = &mut self.registry;
        r.register(
            "http_requests",
            "HTTP responses sent, by route pattern, method and status",
            self.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response head (for an event stream, until the stream starts)",
            self.http_request_duration.clone(),
        );
        r.register(
            "sse_streams_open",
            "Event streams (SSE responses) open on this instance now",
            self.sse_streams_open.clone(),
        );
        r.register(
            "sse_events_delivered",
            "Events written to SSE clients (keep-alive comments and the retry line not counted)",
            self.sse_events_delivered.clone(),
        );
        r.register(
            "hub_feeds_active",
            "Searches with at least one SSE client on this instance now",
            self.hub_feeds_active.clone(),
        );
        r.register(
            "hub_entries_skipped",
            "Result stream entries read past because they had no readable data field or id",
            self.hub_entries_skipped.clone(),
        );
        r.register(
            "hub_sweeps",
            "Passes of the hub's clock (timeouts due, retries of failed reads)",
            self.hub_sweeps.clone(),
        );
        r.register(
            "sse_clients_dropped_slow",
            "Event streams cut off because the client accepted no bytes for SSE_STALL_TIMEOUT_SECS",
            self.sse_clients_dropped_slow.clone(),
        );
    }

    /// Registers the search outcome metrics.
    fn register_searches(&mut self) {
        let r = &mut self.registry;
        r.register(
            "searches_submitted",
            "Searches accepted",
            self.searches_submitted.clone(),
        );
        r.register(
            "deliveries_completed",
            "Searches watched on this instance from before their first result to a completed event",
            self.deliveries_completed.clone(),
        );
        r.register(
            "deliveries_failed",
            "Searches watched on this instance from before their first result to a failed event, timeouts included",
            self.deliveries_failed.clone(),
        );
        r.register(
            "searches_timed_out",
            "Searches this instance ended with a timeout",
            self.searches_timed_out.clone(),
        );
        r.register(
            "search_time_to_first_result_seconds",
            "Time from POST to the first supplier result, for searches watched on this instance from before it",
            self.time_to_first_result.clone(),
        );
        r.register(
            "search_time_to_completion_seconds",
            "Time from POST to the terminal event, for searches watched on this instance from before their first result",
            self.time_to_completion.clone(),
        );
    }

    /// Registers the Redis and queue metrics.
    fn register_redis(&mut self) {
        let r = &mut self.registry;
        r.register(
            "redis_errors",
            "Redis operations of this instance that failed, by what it was doing",
            self.redis_errors.clone(),
        );
        r.register(
            "redis_up",
            "1 while this instance's latest Redis ping (sent every second) succeeded, else 0",
            self.redis_up.clone(),
        );
        r.register(
            "queue_backlog",
            "Searches accepted and not yet finished by the slowest consumer group, as last read (every 100 ms)",
            self.queue_backlog.clone(),
        );
        r.register(
            "queue_trimmed_entries",
            "Finished entries this instance trimmed from the search queue",
            self.queue_trimmed.clone(),
        );
        r.register(
            "searches_rejected",
            "Submissions refused by admission control, by reason: queue_full (503, a valid search at QUEUE_MAX_BACKLOG) or rate_limited (429, before the body is read); 503s for Redis being unavailable are not counted here",
            self.searches_rejected.clone(),
        );
        // Both reasons start at zero, so dashboards see the series before the
        // first refusal.
        for reason in ["queue_full", "rate_limited"] {
            drop(
                self.searches_rejected
                    .get_or_create(&RejectionLabels { reason }),
            );
        }
        r.register(
            "redis_writes_refused",
            "1 while Redis refuses writes (OOM, READONLY, MISCONF)",
            self.redis_writes_refused.clone(),
        );
    }

    /// Creates the known series, so every family is in the first scrape.
    fn start_known_series_at_zero(&mut self, answered: &[(&'static str, &'static str, u16)]) {
        // Known series start at zero, so every family is in the first scrape
        // and dashboards see zeros rather than gaps.
        for &(route, method, status) in answered {
            self.http_requests.get_or_create_owned(&RequestLabels {
                route,
                method,
                status,
            });
            self.http_request_duration
                .get_or_create_owned(&RouteLabels { route });
        }
        for op in REDIS_OPS {
            self.redis_errors.get_or_create_owned(&OpLabels { op });
        }
    }

    /// Counts a failed Redis operation.
    pub fn redis_error(&self, op: &'static str) {
        self.redis_errors.get_or_create(&OpLabels { op }).inc();
    }

    /// Counts a submission refused for `reason`.
    pub fn rejected(&self, reason: &'static str) {
        self.searches_rejected
            .get_or_create(&RejectionLabels { reason })
            .inc();
    }

    /// Records one answered HTTP request.
    pub fn request(&self, labels: RequestLabels, took: Duration) {
        self.http_request_duration
            .get_or_create(&RouteLabels {
                route: labels.route,
            })
            .observe(took.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        service_runtime::process_metrics::encode_with(&self.registry, &self.process)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_suffixes() {
        let m = Metrics::new(&[("/api/flights/search", "POST", 202)]);
        m.searches_timed_out.inc();
        m.request(
            RequestLabels {
                route: "/healthz",
                method: "GET",
                status: 200,
            },
            Duration::from_millis(3),
        );
        m.redis_error("fetch");
        m.rejected("queue_full");
        m.queue_backlog.set(7);
        let text = m.encode();
        for line in [
            "flight_search_searches_timed_out_total 1",
            "flight_search_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1",
            "flight_search_redis_errors_total{op=\"fetch\"} 1",
            "flight_search_sse_streams_open 0",
            "# TYPE process_open_fds gauge",
            "flight_search_hub_feeds_active 0",
            "flight_search_hub_entries_skipped_total 0",
            "flight_search_searches_rejected_total{reason=\"queue_full\"} 1",
            "flight_search_queue_backlog 7",
            "flight_search_queue_trimmed_entries_total 0",
            "flight_search_redis_errors_total{op=\"attach\"} 0",
            "flight_search_http_requests_total{route=\"/api/flights/search\",method=\"POST\",status=\"202\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.contains("flight_search_http_request_duration_seconds_bucket{"));
        assert!(text.contains("flight_search_search_time_to_first_result_seconds_bucket{"));
    }
}
