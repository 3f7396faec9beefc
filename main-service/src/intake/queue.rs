//! The search queue, `flight.search.requested`, as main-service writes it.
//!
//! A submission writes the search's state hash (with its TTL), then its queue
//! entry. The two keys live in different Redis Cluster slots, so they cannot
//! share a transaction; the order makes the gap harmless. A queued search
//! always has its state hash, so its stream can be opened at once; if the
//! second write fails the POST answers 503 and what is left is a state hash
//! that no client knows of and that expires after `RESULTS_TTL_SECS`.
//! The XADD sets no MAXLEN: the queue is bounded by admission control
//! ([`crate::intake::admission`]) and trimmed only below what every group has finished
//! ([`crate::intake::trim`]).
//!
//! The consumer group is created here too (from id `0`, with MKSTREAM), so a
//! search posted before any provider ever ran, or after Redis lost its data, is
//! still delivered to the group: at start, after every Redis outage, and before
//! the first submission that finds it not yet created.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contract::QueuedSearch;
use contract::keys::{DEFAULT_CONSUMER_GROUP, REQUESTS_STREAM, STATE_REQUESTED_AT, state_key};
use service_runtime::redis_link::RedisLink;
use service_runtime::streams;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the group task looks at the link's readiness.
const GROUP_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The writer side of the search queue.
pub(crate) struct SearchQueue {
    /// The multiplexed connection.
    redis: RedisLink,
    /// TTL of each search's state hash.
    results_ttl: Duration,
    /// True while the consumer group is known to exist: set on creation,
    /// cleared when the link goes down (Redis may come back without it).
    group_ready: AtomicBool,
}

impl SearchQueue {
    /// A queue writer; the group is created by [`SearchQueue::keep_group`] or
    /// the first submission.
    pub(crate) fn new(redis: RedisLink, results_ttl: Duration) -> SearchQueue {
        SearchQueue {
            redis,
            results_ttl,
            group_ready: AtomicBool::new(false),
        }
    }

    /// Records the search as submitted, then queues it. An error from either
    /// write means the search must not be reported as accepted.
    pub(crate) async fn enqueue(&self, search: &QueuedSearch) -> redis::RedisResult<()> {
        if !self.group_ready.load(Ordering::Acquire) {
            self.create_group().await?;
        }
        let state = state_key(search.search_id);
        // The timeout counts from here, so the state hash always gets a time.
        let requested_at_ms = search.requested_at_ms.unwrap_or_else(crate::unix_ms);
        let mut conn = self.redis.commands();
        // One key, so MULTI/EXEC works on a cluster too: the hash never exists
        // without its TTL.
        redis::pipe()
            .atomic()
            .hset(&state, STATE_REQUESTED_AT, requested_at_ms)
            .ignore()
            .expire(&state, self.results_ttl.as_secs() as i64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        redis::cmd("XADD")
            .arg(REQUESTS_STREAM)
            .arg("*")
            .arg(search.to_fields())
            .query_async::<()>(&mut conn)
            .await
    }

    /// Creates the consumer group at start and whenever the Redis link is ready
    /// again after being down, until `shutdown`.
    pub(crate) async fn keep_group(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) {
        let mut link_was_up = true;
        loop {
            if !self.group_ready.load(Ordering::Acquire)
                && link_was_up
                && let Err(error) = self.create_group().await
            {
                metrics.redis_error("group_create");
                tracing::debug!(%error, "could not create the consumer group yet");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(GROUP_CHECK_INTERVAL) => {}
            }
            link_was_up = self.redis.is_ready();
            if !link_was_up {
                self.group_ready.store(false, Ordering::Release);
            }
        }
    }

    /// Creates the default consumer group (`provider-service`), and remembers
    /// that it exists.
    async fn create_group(&self) -> redis::RedisResult<()> {
        streams::create_group(&mut self.redis.commands(), DEFAULT_CONSUMER_GROUP).await?;
        self.group_ready.store(true, Ordering::Release);
        Ok(())
    }
}
