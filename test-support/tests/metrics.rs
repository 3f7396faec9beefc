//! Health, readiness and metrics of both services: one JSON shape for the
//! probes, every metric family docs/operations.md documents exposed with its
//! type (and every exposed one documented), and each search outcome counted
//! once even when nobody watches. Always runs on a local stack.

use std::time::Duration;

use test_support::http::{self, metric};
use test_support::stack::Stack;
use test_support::{eventually, search_body};

const LIMIT: Duration = Duration::from_secs(30);

/// Parses an OpenMetrics exposition into (family name → TYPE) and checks its
/// framing: every sample belongs to a declared family and the text ends with `# EOF`.
fn families(exposition: &str) -> std::collections::HashMap<String, String> {
    let mut types = std::collections::HashMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a kind");
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad sample value in {line:?}");
            assert!(
                types.keys().any(|family| name.starts_with(family.as_str())),
                "sample {name} without a TYPE line"
            );
        }
    }
    assert_eq!(
        exposition.lines().last(),
        Some("# EOF"),
        "exposition not terminated"
    );
    types
}

/// main-service's metric families and their types, as docs/operations.md
/// documents them.
const MAIN_FAMILIES: &[(&str, &str)] = &[
    ("flight_search_http_requests", "counter"),
    ("flight_search_http_request_duration_seconds", "histogram"),
    ("flight_search_sse_streams_open", "gauge"),
    ("flight_search_sse_events_delivered", "counter"),
    ("flight_search_sse_clients_dropped_slow", "counter"),
    ("flight_search_searches_submitted", "counter"),
    ("flight_search_deliveries_completed", "counter"),
    ("flight_search_deliveries_failed", "counter"),
    ("flight_search_searches_timed_out", "counter"),
    (
        "flight_search_search_time_to_first_result_seconds",
        "histogram",
    ),
    (
        "flight_search_search_time_to_completion_seconds",
        "histogram",
    ),
    ("flight_search_hub_feeds_active", "gauge"),
    ("flight_search_hub_entries_skipped", "counter"),
    ("flight_search_hub_sweeps", "counter"),
    ("flight_search_redis_errors", "counter"),
    ("flight_search_redis_up", "gauge"),
    ("flight_search_queue_backlog", "gauge"),
    ("flight_search_queue_trimmed_entries", "counter"),
    ("flight_search_searches_rejected", "counter"),
    ("flight_search_redis_writes_refused", "gauge"),
    ("flight_search_trace_spans_dropped", "counter"),
];

/// provider-service's metric families and their types.
const PROVIDER_FAMILIES: &[(&str, &str)] = &[
    ("flight_search_provider_searches_in_flight", "gauge"),
    ("flight_search_provider_searches_completed", "counter"),
    ("flight_search_provider_searches_failed", "counter"),
    (
        "flight_search_provider_supplier_call_duration_seconds",
        "histogram",
    ),
    ("flight_search_provider_supplier_failures", "counter"),
    ("flight_search_provider_claims", "counter"),
    ("flight_search_provider_recovery_sweeps", "counter"),
    ("flight_search_provider_pending_entries", "gauge"),
    ("flight_search_provider_dead_letters", "counter"),
    ("flight_search_provider_redis_errors", "counter"),
    ("flight_search_provider_redis_up", "gauge"),
    (
        "flight_search_provider_searches_waiting_for_writes",
        "gauge",
    ),
    ("flight_search_provider_redis_writes_refused", "gauge"),
    ("flight_search_provider_supplier_panics", "counter"),
    ("flight_search_provider_search_panics", "counter"),
    ("flight_search_provider_supplier_offers_rejected", "counter"),
    (
        "flight_search_provider_supplier_offers_truncated",
        "counter",
    ),
    ("flight_search_provider_result_event_bytes", "histogram"),
    ("flight_search_provider_search_event_bytes", "histogram"),
    ("flight_search_provider_trace_spans_dropped", "counter"),
];

/// Asserts that every family in `expected` is exposed with its type, and
/// that docs/operations.md names every family exposed under `prefix` (the
/// page lists them without it), so a new metric cannot stay undocumented.
fn assert_families(who: &str, exposition: &str, prefix: &str, expected: &[(&str, &str)]) {
    let families = families(exposition);
    for (family, kind) in expected {
        assert_eq!(
            families.get(*family).map(String::as_str),
            Some(*kind),
            "{who} {family}"
        );
    }
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .expect("read docs/operations.md");
    for family in families.keys() {
        let Some(name) = family.strip_prefix(prefix) else {
            continue;
        };
        assert!(
            page.contains(&format!("`{name}`"))
                || page.contains(&format!("`{name}{{"))
                || page.contains(&format!("`{name}_total")),
            "docs/operations.md does not name {who}'s metric {family}"
        );
    }
}

/// The provider's `/metrics` text.
async fn provider_metrics(provider: &str) -> String {
    let body = http::get(&format!("{provider}/metrics"))
        .await
        .unwrap()
        .body;
    String::from_utf8(body.to_vec()).unwrap()
}

/// Polls an exposition until `series` reads `value`, and returns that text.
async fn metrics_when<F, Fut>(what: &str, series: &str, value: f64, scrape: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    eventually(what, LIMIT, || async {
        let text = scrape().await;
        (metric(&text, series) == Some(value)).then_some(text)
    })
    .await
}

#[tokio::test]
async fn every_search_outcome_is_counted_once_even_when_nobody_watches() {
    let mut stack = Stack::builder().local_only().start().await;
    let provider = stack.local().providers[0].base_url();
    for day in 0..3 {
        stack.submit(&search_body("CGK", "DPS", 6 + day, 1)).await;
    }
    metrics_when(
        "the provider to count three searches",
        "flight_search_provider_searches_completed_total",
        3.0,
        || provider_metrics(&provider),
    )
    .await;
    let main_text = stack.metrics().await;
    assert_eq!(
        metric(&main_text, "flight_search_searches_submitted_total"),
        Some(3.0)
    );
    // Nobody watched: no delivery to count, however the searches ended.
    for delivery in [
        "flight_search_deliveries_completed_total",
        "flight_search_deliveries_failed_total",
        "flight_search_sse_events_delivered_total",
    ] {
        assert_eq!(metric(&main_text, delivery), Some(0.0), "{delivery}");
    }
}

/// Health and readiness answer in one JSON shape on both services.
async fn assert_healthy_and_ready(bases: [&str; 2]) {
    for base in bases {
        let health = http::get(&format!("{base}/healthz")).await.unwrap();
        assert_eq!(health.status, 200, "{base}");
        assert_eq!(health.json(), serde_json::json!({"status": "ok"}), "{base}");
        let ready = http::get(&format!("{base}/readyz")).await.unwrap();
        assert_eq!(ready.status, 200, "{base}");
        assert_eq!(ready.header("content-type"), Some("application/json"));
        assert_eq!(
            ready.json(),
            serde_json::json!({"status": "ready"}),
            "{base}"
        );
    }
}

#[tokio::test]
async fn both_services_expose_health_readiness_and_the_documented_metrics() {
    let mut stack = Stack::builder().local_only().start().await;
    let provider = stack.local().providers[0].base_url();

    // Every documented family is there before anything happened, its known
    // series at zero.
    let main_at_start = stack.metrics().await;
    let provider_at_start = provider_metrics(&provider).await;
    for (text, series) in [
        (
            &main_at_start,
            "flight_search_http_requests_total{route=\"/api/flights/search\",method=\"POST\",status=\"202\"}",
        ),
        (
            &main_at_start,
            "flight_search_http_request_duration_seconds_count{route=\"/api/flights/search/{search_id}/stream\"}",
        ),
        (
            &main_at_start,
            "flight_search_redis_errors_total{op=\"attach\"}",
        ),
        (&main_at_start, "flight_search_searches_submitted_total"),
        (
            &provider_at_start,
            "flight_search_provider_dead_letters_total{reason=\"invalid_request\"}",
        ),
        (
            &provider_at_start,
            "flight_search_provider_dead_letters_total{reason=\"max_deliveries_exceeded\"}",
        ),
        (
            &provider_at_start,
            "flight_search_provider_redis_errors_total{op=\"append\"}",
        ),
        (
            &provider_at_start,
            "flight_search_provider_searches_failed_total{code=\"dead_lettered\"}",
        ),
    ] {
        assert_eq!(
            metric(text, series),
            Some(0.0),
            "{series} at start:\n{text}"
        );
    }
    assert_healthy_and_ready([stack.base_url(), &provider]).await;

    let id = stack.submit(&search_body("CGK", "DPS", 6, 2)).await;
    let events = stack.events(id).await;

    // Either service may count a moment after the client saw the terminal
    // event: the provider after acknowledging the search, main-service after
    // handing the last event to the connection.
    let text = metrics_when(
        "the provider to count the search",
        "flight_search_provider_searches_completed_total",
        1.0,
        || provider_metrics(&provider),
    )
    .await;
    assert_families(
        "provider",
        &text,
        "flight_search_provider_",
        PROVIDER_FAMILIES,
    );
    assert_eq!(metric(&text, "flight_search_provider_redis_up"), Some(1.0));
    assert!(
        metric(
            &text,
            "flight_search_provider_supplier_call_duration_seconds_count{supplier=\"GA\""
        )
        .is_some(),
        "per-supplier latency:\n{text}"
    );
    let main_text = metrics_when(
        "main-service to count the events it delivered",
        "flight_search_sse_events_delivered_total",
        events.len() as f64,
        || stack.metrics(),
    )
    .await;
    assert_families("main-service", &main_text, "flight_search_", MAIN_FAMILIES);
    assert_eq!(
        metric(&main_text, "flight_search_searches_submitted_total"),
        Some(1.0)
    );
    assert!(
        metric(
            &main_text,
            "flight_search_http_requests_total{route=\"/api/flights/search\""
        )
        .is_some(),
        "requests by route:\n{main_text}"
    );
}
