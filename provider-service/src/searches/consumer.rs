//! The read loop: takes new searches off `flight.search.requested` for this
//! consumer and hands each to the worker.
//!
//! It reads on a connection of its own (on a cluster, a cluster connection of
//! its own), because `XREADGROUP ... BLOCK` would stall every other command
//! sharing a multiplexed connection, with a response timeout above the BLOCK
//! time. It reads only when a concurrency permit is free
//! and never more entries than there are free permits, so a backlog waits in
//! Redis (where other replicas can take it) rather than in this process.

use std::sync::Arc;
use std::time::Duration;

use service_runtime::backoff::Backoff;
use service_runtime::redis_connection::RedisConnection;
use service_runtime::redis_link::{LinkState, RedisLink};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use service_runtime::redis_failure::{ErrorCode, RedisFailure};
use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_reply::StreamEntry;

use crate::metrics::Metrics;
use crate::searches::queue::Queue;
use crate::searches::worker::{Held, Worker};

/// How long one XREADGROUP waits for new entries.
const BLOCK: Duration = Duration::from_secs(2);

/// Slack on top of [`BLOCK`] before a read counts as hung.
const RESPONSE_SLACK: Duration = Duration::from_secs(3);

/// Reconnect attempts are at most this far apart, so reading resumes within
/// about one BLOCK period of Redis coming back.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Time allowed to open the reader's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The read loop's state.
pub struct Consumer {
    /// The request stream, read as this replica's consumer.
    queue: Queue,
    /// Processes what is read.
    worker: Arc<Worker>,
    /// Read failures are counted here.
    metrics: Arc<Metrics>,
    /// Whether Redis accepts writes; XREADGROUP is one.
    health: Arc<RedisHealth>,
    /// The concurrency bound, shared with the recovery sweep.
    permits: Arc<Semaphore>,
    /// Opens the reader's dedicated connection.
    link: RedisLink,
    /// Up/down of the reader's connection; part of readiness.
    state: Arc<LinkState>,
}

impl Consumer {
    /// A read loop for `queue`'s consumer handing entries to `worker`,
    /// reporting its connection in `state`.
    pub fn new(
        queue: Queue,
        worker: Arc<Worker>,
        metrics: Arc<Metrics>,
        health: Arc<RedisHealth>,
        permits: Arc<Semaphore>,
        link: RedisLink,
        state: Arc<LinkState>,
    ) -> Consumer {
        Consumer {
            queue,
            worker,
            metrics,
            health,
            permits,
            link,
            state,
        }
    }

    /// Reads until `stop`. A read in progress is abandoned at once and its
    /// connection dropped, which makes Redis forget the blocked read.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_RECONNECT_DELAY);
        let mut reader: Option<RedisConnection> = None;
        loop {
            // Biased here and below: once stopped, no read may start, or Redis
            // could hand new entries to a consumer that is leaving.
            let first = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                permit = Arc::clone(&self.permits).acquire_owned() => {
                    permit.expect("the semaphore is never closed")
                }
            };
            if reader.is_none() {
                match self.connect().await {
                    Ok(conn) => {
                        self.state.up();
                        backoff.reset();
                        reader = Some(conn);
                    }
                    Err(error) => {
                        self.state.down(&error);
                        drop(first);
                        if self.pause(&mut backoff, &stop).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let conn = reader.as_mut().expect("connected above");
            let count = 1 + self.permits.available_permits();
            let read = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                read = self.queue.read(conn, count, BLOCK) => read,
            };
            match read {
                Ok(entries) => {
                    if self.dispatch(entries, first, &stop).await {
                        return;
                    }
                }
                Err(error)
                    if matches!(
                        ErrorCode::of(&error),
                        Some(ErrorCode::NoGroup | ErrorCode::Unblocked)
                    ) =>
                {
                    // The stream or group was deleted under us (UNBLOCKED: while
                    // this read was waiting on it): recreate, then read again.
                    self.metrics.redis_error("read");
                    tracing::warn!(%error, "consumer group missing; recreating it");
                    if self.queue.ensure_group(conn).await.is_err()
                        && self.pause(&mut backoff, &stop).await
                    {
                        return;
                    }
                }
                Err(error) => {
                    self.metrics.redis_error("read");
                    // XREADGROUP is a write: a replica refuses it. That is no
                    // reason to reconnect, and is logged by the refusal state.
                    if self.health.note_write_failure(&error).is_none() {
                        self.state.down(&error);
                        reader = None;
                    }
                    drop(first);
                    if self.pause(&mut backoff, &stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// Starts a search per entry, each with a permit: `first` for the first
    /// entry, fresh ones for the rest (free when the read was sized, unless the
    /// sweep took some since). Every entry is held from the start, so the sweep
    /// leaves alone those still waiting for a permit. Returns true if `stop`
    /// fired meanwhile; entries not started then stay pending for a claim.
    async fn dispatch(
        &self,
        entries: Vec<StreamEntry>,
        first: OwnedSemaphorePermit,
        stop: &CancellationToken,
    ) -> bool {
        let held: Vec<Held> = entries.into_iter().map(|e| self.worker.hold(e)).collect();
        let mut permit = Some(first);
        for entry in held {
            let permit = match permit.take() {
                Some(p) => p,
                None => tokio::select! {
                    biased;
                    () = stop.cancelled() => return true,
                    p = Arc::clone(&self.permits).acquire_owned() => {
                        p.expect("the semaphore is never closed")
                    }
                },
            };
            self.worker.start(entry, 1, permit);
        }
        false
    }

    /// Opens the dedicated connection and makes sure the group exists, which it
    /// may not after Redis lost its data.
    async fn connect(&self) -> Result<RedisConnection, RedisFailure> {
        let mut conn = self
            .link
            .dedicated(CONNECT_TIMEOUT, BLOCK + RESPONSE_SLACK)
            .await
            .map_err(|source| {
                self.metrics.redis_error("connect");
                RedisFailure {
                    op: "connect",
                    source,
                }
            })?;
        self.queue.ensure_group(&mut conn).await?;
        Ok(conn)
    }

    /// Waits out the next backoff delay. Returns true if `stop` fired instead.
    async fn pause(&self, backoff: &mut Backoff, stop: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            () = stop.cancelled() => true,
            () = tokio::time::sleep(backoff.next_delay()) => false,
        }
    }
}
