//! The test support the workspace's suites share (the suites themselves are
//! this crate's `tests/`, one per subject; provider-service's use it too).
//!
//! Everything here is real: `redis_process` starts `redis-server` processes,
//! one for [`redis_server::RedisServer`] on a free port (optionally with TLS
//! from a throwaway CA made by [`pki`], and ACL users), six for
//! [`redis_cluster::RedisCluster`] as a Redis Cluster (used when
//! `FLIGHT_SEARCH_REDIS=cluster`); [`services`] starts the real service
//! binaries as child processes, [`mock_suppliers`] the airline APIs, and
//! [`http`]/[`sse`] speak HTTP/1.1 to them over TCP. [`stack::Stack`] bundles
//! them, or, when `FLIGHT_SEARCH_URL` is set, attaches to a stack that is
//! already running (with `REDIS_URL` or `REDIS_CLUSTER_NODES` pointing at its
//! Redis) so the same suite can check a compose deployment. [`documents`]
//! holds `openapi.yaml` and `asyncapi.yaml` as validators: every SSE event a
//! suite receives is checked against them. [`supplier_outcomes`] reads what a
//! finished search says about each supplier, and [`suppliers_file`] writes a
//! `SUPPLIERS_FILE` for one test; [`left_behind`] writes the queue entries and
//! events another provider replica would have left in Redis. [`prometheus`] runs a real Prometheus that
//! scrapes a stack and loads the repository's rules, [`nginx`] the compose
//! stack's nginx configuration in front of local instances.
//! [`otlp::OtlpReceiver`] collects the spans the services export.
//! [`module_graph`] finds import circles between the modules of a crate.

pub mod documents;
pub mod http;
pub mod left_behind;
pub mod mock_suppliers;
pub mod module_graph;
pub mod nginx;
pub mod otlp;
pub mod pki;
pub mod prometheus;
pub mod redis_cluster;
mod redis_process;
pub mod redis_server;
pub mod services;
pub mod sse;
pub mod stack;
pub mod supplier_outcomes;
pub mod suppliers_file;

use std::time::Duration;

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after
/// `limit`. The suites wait on conditions with this, never on fixed sleeps.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A date `days` ahead of today (UTC) as `YYYY-MM-DD`.
pub fn date_in(days: i64) -> String {
    let date = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    contract::request::format_date(date)
}

/// The JSON body of a valid search.
pub fn search_body(from: &str, to: &str, days_ahead: i64, passengers: u8) -> String {
    serde_json::json!({
        "from": from,
        "to": to,
        "date": date_in(days_ahead),
        "passengers": passengers,
    })
    .to_string()
}
