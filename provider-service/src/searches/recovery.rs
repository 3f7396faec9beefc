//! Taking over searches whose consumer died, and setting aside the ones that
//! cannot be processed.
//!
//! Every `min(CLAIM_IDLE_MS / 2, 5 s)` the sweep:
//!
//! 1. records the group's pending count;
//! 2. resets the idle time of the entries this replica is working on, so a slow
//!    but live search is never taken over;
//! 3. lists entries idle for `CLAIM_IDLE_MS` (`XPENDING ... IDLE`) and, for each:
//!    * delivered `MAX_DELIVERIES` times already: claims it, writes it to the
//!      dead-letter stream, gives its search a terminal `failed` event
//!      (`dead_lettered`) and acknowledges it: a search that keeps killing its
//!      provider must not take the whole fleet down in turn;
//!    * otherwise: claims it and processes it like a fresh delivery (the resume
//!      logic in `search` makes that invisible to clients);
//!    * its data trimmed from the stream: acknowledges it, nothing to process.
//!
//! Nothing is claimed while Redis refuses writes, nor for two sweep intervals
//! after it accepts them again: the heartbeats of live replicas were refused
//! too, so their entries may look idle, and claiming them would spend a
//! delivery on Redis' fault.
//!
//! Every claim passes `min-idle-time = CLAIM_IDLE_MS`, so when two sweeps race
//! for one entry only the first gets it. Poison entries (fields that do not
//! decode) are dead-lettered at once, never retried. A failure that concerns one
//! entry is logged and the sweep goes on to the next; only a failure of Redis
//! itself (connection, missing group) ends it early. Once the stop signal fires
//! the sweep takes nothing more: a claim by an exiting consumer would only cost
//! the entry a delivery and a wait of `CLAIM_IDLE_MS`.
//!
//! Every `FORGET_INTERVAL` it also removes consumers of the group that have held
//! no pending entry for `FORGET_AFTER` (replicas that exited without removing
//! themselves, under names never used again), so `XINFO CONSUMERS` does not grow
//! with every restart.

use std::sync::Arc;
use std::time::Duration;

use service_runtime::redis_failure::{ErrorCode, RedisFailure};
use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_link::RedisLink;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::searches::dead_letter::{DeadLetter, DeadLetters};
use crate::searches::queue::{Claim, Idle, Queue};
use crate::searches::worker::Worker;

/// Most entries looked at per sweep; the rest wait for the next one.
const SWEEP_BATCH: usize = 100;

/// Longest pause between sweeps, whatever `CLAIM_IDLE_MS` is.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How often consumers without pending entries are looked for; the roster only
/// needs to stay bounded, not tidy.
const FORGET_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Idle time after which a consumer without pending entries is removed. Far
/// longer than any live reader's pause between reads; removing a live one
/// would cost nothing anyway, since its next read recreates it.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

/// The periodic sweep over the group's pending entries.
pub struct Recovery {
    /// The pending list, claims and heartbeats.
    queue: Queue,
    /// Processes what is claimed, and knows what this replica holds.
    worker: Arc<Worker>,
    /// Where entries that used up their deliveries go.
    dead_letters: DeadLetters,
    /// The pending count and claims are recorded here.
    metrics: Arc<Metrics>,
    /// Whether Redis accepts writes; nothing is claimed while it does not.
    health: Arc<RedisHealth>,
    /// The concurrency bound shared with the read loop: claimed searches count too.
    permits: Arc<Semaphore>,
    /// Readiness of the command connection; sweeping while it is down would
    /// only log failures.
    link: RedisLink,
    /// Time between sweeps.
    interval: Duration,
    /// Deliveries after which an entry is dead-lettered.
    max_deliveries: u64,
}

/// Time between sweeps for a claim threshold of `claim_idle`:
/// `min(claim_idle / 2, 5 s)`, so a live replica refreshes its entries twice
/// before they count as idle.
fn sweep_interval(claim_idle: Duration) -> Duration {
    (claim_idle / 2).min(MAX_SWEEP_INTERVAL)
}

impl Recovery {
    /// The sweep over `queue` for this replica's `worker`, retiring entries
    /// through the worker's dead letters, on the timing of `config`
    /// (`CLAIM_IDLE_MS`, `MAX_DELIVERIES`).
    pub fn new(
        queue: Queue,
        worker: Arc<Worker>,
        metrics: Arc<Metrics>,
        health: Arc<RedisHealth>,
        permits: Arc<Semaphore>,
        link: RedisLink,
        config: &Config,
    ) -> Recovery {
        Recovery {
            queue,
            dead_letters: worker.dead_letters().clone(),
            worker,
            metrics,
            health,
            permits,
            link,
            interval: sweep_interval(config.claim_idle),
            max_deliveries: config.max_deliveries,
        }
    }

    /// Sweeps until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut sweeps = tokio::time::interval(self.interval);
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut forgets = tokio::time::interval(FORGET_INTERVAL);
        forgets.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Biased: once stopped, a tick that is also due must not start a sweep.
            let sweep = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = sweeps.tick() => true,
                _ = forgets.tick() => false,
            };
            if !self.link.is_ready() {
                continue;
            }
            let outcome = if sweep {
                self.metrics.recovery_sweeps.inc();
                self.sweep(&stop).await
            } else {
                self.forget_consumers().await
            };
            match outcome {
                Ok(()) => {}
                Err(failure) if failure.code() == Some(ErrorCode::NoGroup) => {
                    // Redis lost the stream (restarted empty, or it was
                    // deleted): recreate the group rather than wait for the
                    // read loop's next reconnect.
                    if let Err(error) = self.queue.ensure_group(&mut self.link.commands()).await {
                        tracing::warn!(%error, "cannot recreate the consumer group");
                    }
                }
                Err(failure) => {
                    if self.health.note_write_failure(&failure.source).is_none() {
                        tracing::warn!(%failure, "recovery sweep failed");
                    }
                }
            }
        }
    }

    /// One pass over the pending list. Returns early with the failure when Redis
    /// itself fails; failures that concern one entry are logged and skipped.
    async fn sweep(&self, stop: &CancellationToken) -> Result<(), RedisFailure> {
        let queue = &self.queue;
        let pending = queue.pending_count().await?;
        self.metrics
            .pending_entries
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        if pending == 0 {
            return Ok(());
        }
        let ours = self.worker.in_flight();
        if !ours.is_empty() {
            queue.heartbeat(&ours).await?;
        }
        // After writes were refused, entries of live replicas may look idle
        // because their heartbeats were refused too; claiming them would cost
        // a delivery for Redis' fault. Wait until every replica has had a
        // sweep with writes accepted to refresh its own.
        if !self.health.writes_accepted_for(self.interval * 2) {
            return Ok(());
        }
        for idle in queue.idle_entries(SWEEP_BATCH).await? {
            if stop.is_cancelled() {
                return Ok(());
            }
            if ours.contains(&idle.id) {
                continue;
            }
            let entry_id = idle.id;
            match self.recover(idle, stop).await {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(failure)
                    if failure.is_transient() || failure.code() == Some(ErrorCode::NoGroup) =>
                {
                    return Err(failure);
                }
                Err(failure) => tracing::warn!(
                    %entry_id,
                    %failure,
                    "cannot recover a pending entry; going on with the next"
                ),
            }
        }
        Ok(())
    }

    /// Claims one idle entry and processes or retires it. Returns false if the
    /// sweep should end here: stopped, or no permit came free in time.
    async fn recover(&self, idle: Idle, stop: &CancellationToken) -> Result<bool, RedisFailure> {
        if idle.deliveries >= self.max_deliveries {
            self.retire(idle).await?;
            return Ok(true);
        }
        // Claimed work is bounded like read work; when every permit stays busy
        // for a whole interval, the rest waits for the next sweep. Biased: a
        // stop or a free permit wins over the timeout.
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(false),
            permit = Arc::clone(&self.permits).acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
            () = tokio::time::sleep(self.interval) => return Ok(false),
        };
        match self.queue.claim(idle.id).await? {
            Claim::Taken(entry) => {
                self.metrics.claims.inc();
                tracing::info!(
                    entry_id = %idle.id,
                    from_consumer = idle.consumer,
                    idle_ms = idle.idle_ms,
                    deliveries = idle.deliveries.saturating_add(1),
                    "claimed an idle search"
                );
                let held = self.worker.hold(entry);
                // Saturating: the count is Redis' reply, whatever it says.
                self.worker
                    .start(held, idle.deliveries.saturating_add(1), permit);
            }
            Claim::Trimmed => self.drop_trimmed(&idle).await?,
            Claim::Lost => {}
        }
        Ok(true)
    }

    /// Removes consumers that have held nothing for [`FORGET_AFTER`].
    async fn forget_consumers(&self) -> Result<(), RedisFailure> {
        let removed = self.queue.forget_idle_consumers(FORGET_AFTER).await?;
        if !removed.is_empty() {
            tracing::info!(
                count = removed.len(),
                consumers = ?removed,
                idle_secs = FORGET_AFTER.as_secs(),
                "removed long-idle consumers without pending entries from the group"
            );
        }
        Ok(())
    }

    /// Dead-letters an entry that used up its deliveries.
    async fn retire(&self, idle: Idle) -> Result<(), RedisFailure> {
        match self.queue.claim(idle.id).await? {
            Claim::Taken(entry) => {
                self.dead_letters
                    .retire(
                        &entry,
                        DeadLetter::MaxDeliveries(idle.deliveries),
                        idle.deliveries,
                    )
                    .await
            }
            Claim::Trimmed => self.drop_trimmed(&idle).await,
            Claim::Lost => Ok(()),
        }
    }

    async fn drop_trimmed(&self, idle: &Idle) -> Result<(), RedisFailure> {
        self.queue.ack(idle.id).await?;
        tracing::warn!(
            entry_id = %idle.id,
            from_consumer = idle.consumer,
            deliveries = idle.deliveries,
            "pending entry was trimmed from the stream; acknowledged without processing"
        );
        Ok(())
    }
}
