//! What every request handler shares.

use std::sync::Arc;

use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_link::RedisLink;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::answer::api_error::ApiError;
use crate::intake::admission::Admission;
use crate::config::Config;
use crate::edge::cors::Cors;
use crate::delivery::hub::{self, Hub};
use crate::metrics::Metrics;
use crate::intake::queue::SearchQueue;
use crate::intake::rate_limit::ClientLimiter;
use crate::search_traces::SearchTraces;

/// The service's shared state, one per process, behind an `Arc`.
pub(crate) struct App {
    /// Settings the handlers read (retry delay, TTL, timeouts).
    pub config: Config,
    /// Which other origins' pages may call the API.
    pub cors: Cors,
    /// Redis for attach and detach.
    pub redis: RedisLink,
    /// Where submissions go.
    pub queue: Arc<SearchQueue>,
    /// Whether the queue has room for another search.
    pub admission: Arc<Admission>,
    /// The per-client limit on submissions, when configured.
    pub limiter: Option<Arc<ClientLimiter>>,
    /// Whether Redis accepts writes and keeps its data (readiness).
    pub health: Arc<RedisHealth>,
    /// Delivery of events to SSE clients.
    pub hub: Arc<Hub>,
    /// Everything counted.
    pub metrics: Arc<Metrics>,
    /// Attach and detach tasks, which run apart from the requests so a client
    /// that leaves cannot cut them short; shutdown waits for them so readers
    /// are unregistered before the process exits.
    pub readers: TaskTracker,
    /// Cancelled at shutdown; every event stream watches it and ends with its
    /// final chunk instead of holding the drain up.
    pub closing: CancellationToken,
    /// The POST span of searches accepted here, while traces are exported.
    pub traces: SearchTraces,
}

impl App {
    /// Builds the shared state around `metrics` and starts the hub's tasks,
    /// which stop when `shutdown` is cancelled.
    pub(crate) fn start(
        config: Config,
        redis: RedisLink,
        metrics: Arc<Metrics>,
        shutdown: &CancellationToken,
    ) -> Arc<App> {
        let health = RedisHealth::new();
        let hub = Hub::start(
            redis.clone(),
            metrics.clone(),
            health.clone(),
            hub::Settings::from(&config),
            shutdown.child_token(),
        );
        Arc::new(App {
            closing: shutdown.child_token(),
            traces: SearchTraces::new(config.results_ttl),
            queue: Arc::new(SearchQueue::new(redis.clone(), config.results_ttl)),
            admission: Arc::new(Admission::new(redis.clone(), config.queue_max_backlog)),
            limiter: config.rate_limit.map(ClientLimiter::new),
            health,
            cors: Cors::new(config.cors_allowed_origins.clone()),
            config,
            redis,
            hub,
            metrics,
            readers: TaskTracker::new(),
        })
    }

    /// What a client gets when a Redis command (`op`, its metrics label) made
    /// for its request failed: the failure is counted and logged at debug
    /// (the Redis link logs an outage itself, once), and the answer is a 503
    /// without the details.
    pub(crate) fn redis_failed(
        &self,
        op: &'static str,
        search_id: Option<Uuid>,
        error: &redis::RedisError,
    ) -> ApiError {
        self.metrics.redis_error(op);
        let search_id = search_id.map(tracing::field::display);
        tracing::debug!(op, search_id, %error, "a Redis command failed");
        ApiError::Unavailable
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use service_runtime::config::Vars;

    /// A complete app whose Redis is unreachable (nothing listens on port 1), for
    /// tests of what happens before any Redis answer.
    pub(crate) fn app() -> Arc<App> {
        let vars =
            Vars::new(|name| (name == "REDIS_URL").then(|| "redis://127.0.0.1:1".to_owned()));
        let config = Config::from_vars(&vars).unwrap();
        let redis = RedisLink::new(&config.redis).unwrap();
        let metrics = Arc::new(Metrics::new(&[]));
        App::start(config, redis, metrics, &CancellationToken::new())
    }
}
