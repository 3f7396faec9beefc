//! What every request handler shares, and the tasks that run beside them:
//! [`App::start`] starts every background task, [`App::stop`] waits for them
//! and for the readers' tasks at shutdown.

use std::sync::Arc;

use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_link::RedisLink;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::answer::api_error::ApiError;
use crate::config::Config;
use crate::delivery::hub::{self, Hub};
use crate::edge::cors::Cors;
use crate::intake::admission::Admission;
use crate::intake::queue::SearchQueue;
use crate::intake::rate_limit::ClientLimiter;
use crate::intake::trim;
use crate::metrics::Metrics;
use crate::search_traces::SearchTraces;
use crate::tasks::Tasks;

/// The service's shared state, one per process, behind an `Arc`.
///
/// The fields are the shared handles the handlers read; none is replaced
/// after the start. Only the background tasks are private: [`App::start`]
/// spawns them and [`App::stop`] waits for them.
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
    pub readers: Tasks,
    /// The loops that run until shutdown: the Redis link's and health's
    /// watches, the consumer group, admission, trimming, the rate limit's
    /// clean-up and the hub's tasks.
    background: Tasks,
    /// Cancelled at shutdown; every event stream watches it and ends with its
    /// final chunk instead of holding the drain up.
    pub closing: CancellationToken,
    /// The POST span of searches accepted here, while traces are exported.
    pub traces: SearchTraces,
}

impl App {
    /// Builds the shared state around `metrics` and starts the background
    /// tasks, which stop when `shutdown` is cancelled.
    pub(crate) fn start(
        config: Config,
        redis: RedisLink,
        metrics: Arc<Metrics>,
        shutdown: &CancellationToken,
    ) -> Arc<App> {
        let background = Tasks::default();
        let health = RedisHealth::new();
        let hub = Hub::start(
            redis.clone(),
            metrics.clone(),
            health.clone(),
            hub::Settings::from(&config),
            &background,
            shutdown.child_token(),
        );
        let app = Arc::new(App {
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
            readers: Tasks::default(),
            background,
        });
        app.start_background(shutdown);
        app
    }

    /// Spawns the loops of the process (besides the hub's, started with it).
    fn start_background(&self, shutdown: &CancellationToken) {
        let tasks = &self.background;
        tasks.spawn("redis link", self.redis.clone().watch(shutdown.clone()));
        let hub = self.hub.clone();
        tasks.spawn(
            "redis health",
            self.health.clone().watch(
                self.redis.clone(),
                move || format!("searches with local readers: {}", hub.feed_count()),
                shutdown.clone(),
            ),
        );
        tasks.spawn(
            "consumer group",
            self.queue
                .clone()
                .keep_group(self.metrics.clone(), shutdown.clone()),
        );
        tasks.spawn(
            "admission",
            self.admission
                .clone()
                .refresh(self.metrics.clone(), shutdown.clone()),
        );
        tasks.spawn(
            "trim",
            trim::run(self.redis.clone(), self.metrics.clone(), shutdown.clone()),
        );
        if let Some(limiter) = &self.limiter {
            tasks.spawn("rate limit", limiter.clone().forget_idle(shutdown.clone()));
        }
    }

    /// After the connections have ended: waits until `deadline` for the
    /// readers to be detached and for the background tasks to stop (they watch
    /// the shutdown token), and logs what did not end.
    pub(crate) async fn stop(&self, deadline: Instant) {
        self.readers.wait_until(deadline, "readers").await;
        self.background.wait_until(deadline, "background").await;
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
