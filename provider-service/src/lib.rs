//! provider-service: the worker behind the flight search.
//!
//! It consumes `flight.search.requested` in a Redis consumer group, asks several
//! airlines for offers concurrently and writes each airline's offers into the
//! search's result stream as soon as they arrive, then one terminal event.
//! Redis is the only state: replicas share work through the group, and a
//! replica that dies mid-search has its entries claimed and finished by another.
//!
//! The crate is two folders and the pieces that tie them together:
//!
//! * [`searches`]: the work path: the read loop, search tasks, one attempt at
//!   a search, the result streams, the recovery sweep and dead letters.
//! * [`supplier`]: asking the airlines: the simulation, partner APIs over
//!   HTTP with their adapters and credentials, the answer cache.
//! * [`config`]: the environment variables, validated at start.
//! * [`admin`], [`metrics`]: `/healthz`, `/readyz`, `/metrics`.
//!
//! The binary calls [`run`]; [`serve`] runs the same provider over suppliers
//! of the caller's making, from the few pieces [`supplier`] makes public.

mod admin;
mod config;
mod metrics;
mod searches;
pub mod supplier;

use std::sync::Arc;

use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_link::{LinkState, RedisLink};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, metrics_addr};
pub use metrics::{KnownLabels, Metrics};

use crate::admin::Admin;
use crate::searches::answer_bounds::Limit;
use crate::searches::consumer::Consumer;
use crate::searches::dead_letter::{DeadLetter, DeadLetters};
use crate::searches::queue::Queue;
use crate::searches::recovery::Recovery;
use crate::searches::result_streams::ResultStreams;
use crate::searches::search::Searcher;
use crate::searches::worker::Worker;
use crate::supplier::Supplier;
use crate::supplier::cache::AnswerCache;
use crate::supplier::offer_check::Rejection;

/// Why the provider could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Redis client could not be created from `REDIS_URL` and `REDIS_CA_FILE`.
    #[error("cannot create the Redis client: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Runs the provider until `shutdown`: serves the admin endpoints on `admin`,
/// reads and processes searches, sweeps for abandoned ones. On shutdown it stops
/// reading and claiming at once, lets running searches finish within the grace
/// period (counted from the signal), leaves whatever is unfinished pending for
/// another replica, and removes its consumer from the group if nothing is left
/// pending on it.
pub async fn run(
    admin: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    serve(admin, config, supplier::from_config, shutdown).await
}

/// [`run`] with the suppliers made by `suppliers` (given the metrics they
/// count in) instead of from the configuration: a way to run the provider
/// over suppliers with another [`supplier::Adapter`].
pub async fn serve(
    admin: TcpListener,
    config: Config,
    suppliers: impl FnOnce(&Config, &Arc<Metrics>) -> Vec<Supplier>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new(&KnownLabels {
        suppliers: &supplier::codes(&config),
        limits: &Limit::ALL.map(Limit::as_str),
        rejections: &Rejection::ALL.map(Rejection::as_str),
        dead_letters: &DeadLetter::REASONS,
    }));
    let suppliers = suppliers(&config, &metrics);
    let link = RedisLink::new(&config.redis)?;
    let queue = Queue::new(
        link.commands(),
        config.consumer_group.clone(),
        config.consumer_name.clone(),
        config.claim_idle,
        Arc::clone(&metrics),
    );
    let health = RedisHealth::new();
    let worker = worker(&config, suppliers, &link, &queue, &metrics, &health);
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let reader = Arc::new(LinkState::new("redis-reader"));

    tracing::info!(
        consumer = config.consumer_name,
        group = config.consumer_group,
        concurrency = config.concurrency,
        suppliers = if config.suppliers.http.is_empty() { "simulated" } else { "http" },
        admin = %admin.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
        "provider starting"
    );

    let background = TaskTracker::new();
    let admin_stop = CancellationToken::new();
    background.spawn(link.clone().watch(admin_stop.clone()));
    let waiting = Arc::clone(&metrics);
    background.spawn(Arc::clone(&health).watch(
        link.clone(),
        move || {
            format!(
                "searches held: {}",
                waiting.searches_waiting_for_writes.get()
            )
        },
        admin_stop.clone(),
    ));
    background.spawn(
        Arc::new(Admin::new(
            link.clone(),
            Arc::clone(&reader),
            Arc::clone(&health),
            shutdown.clone(),
            Arc::clone(&metrics),
        ))
        .serve(admin, admin_stop.clone()),
    );

    let work = TaskTracker::new();
    work.spawn(
        Consumer::new(
            queue.clone(),
            Arc::clone(&worker),
            Arc::clone(&metrics),
            Arc::clone(&health),
            Arc::clone(&permits),
            link.clone(),
            reader,
        )
        .run(shutdown.clone()),
    );
    work.spawn(
        Recovery::new(
            queue.clone(),
            Arc::clone(&worker),
            metrics,
            health,
            permits,
            link,
            &config,
        )
        .run(shutdown.clone()),
    );

    shutdown.cancelled().await;
    // The grace period is the whole budget from the signal: the read loop and
    // the sweep stop at once, but one Redis command of theirs may be under way.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    work.close();
    if tokio::time::timeout_at(deadline, work.wait())
        .await
        .is_err()
    {
        tracing::warn!("read loop or sweep still busy when the grace period ended");
    }
    worker.drain(deadline).await;
    forget_consumer(&queue, deadline).await;
    admin_stop.cancel();
    background.close();
    background.wait().await;
    tracing::info!("provider stopped");
    Ok(())
}

/// The worker that runs searches: asks `suppliers` through the answer cache,
/// and dead-letters what cannot be searched.
fn worker(
    config: &Config,
    suppliers: Vec<Supplier>,
    link: &RedisLink,
    queue: &Queue,
    metrics: &Arc<Metrics>,
    health: &Arc<RedisHealth>,
) -> Arc<Worker> {
    let results = ResultStreams::new(link.commands(), config.results_ttl, Arc::clone(metrics));
    let dead_letters = DeadLetters::new(queue.clone(), results.clone(), Arc::clone(metrics));
    let searcher = Searcher::new(
        queue.clone(),
        results,
        suppliers,
        config.suppliers.deadline,
        AnswerCache::new(link.commands(), config.supplier_cache_ttl),
        Arc::clone(metrics),
        config.suppliers.answer_bounds,
    );
    Arc::new(Worker::new(
        searcher,
        dead_letters,
        Arc::clone(metrics),
        Arc::clone(health),
    ))
}

/// Removes this replica's consumer from the group unless entries are still
/// pending on it (then the sweep of another replica will, once they are
/// claimed and it has sat idle long enough). Names are usually host name plus
/// pid, never reused, so without this every restart would leave one behind.
async fn forget_consumer(queue: &Queue, deadline: tokio::time::Instant) {
    match tokio::time::timeout_at(deadline, queue.forget_self()).await {
        Ok(Ok(true)) => tracing::info!("consumer removed from the group"),
        Ok(Ok(false)) => {
            tracing::debug!("consumer not removed: entries are pending on it, or it never read")
        }
        Ok(Err(error)) => tracing::warn!(%error, "cannot remove the consumer from the group"),
        Err(_) => tracing::info!("no time left to remove the consumer from the group"),
    }
}
