//! The lifecycle of search tasks on this replica: which entries it holds, the
//! task that processes each, retries while Redis fails, and the drain at
//! shutdown.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::{EntryId, QueuedSearch};
use service_runtime::redis_failure::RedisFailure;
use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_link::Backoff;
use service_runtime::reply::StreamEntry;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::metrics::Metrics;
use crate::search::Searcher;

/// Attempts per delivery when Redis fails transiently.
const MAX_ATTEMPTS: u32 = 8;
/// First pause between attempts.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest pause between attempts; with [`MAX_ATTEMPTS`] about 20 s in all,
/// enough to ride out a Redis restart.
const RETRY_MAX: Duration = Duration::from_secs(4);
/// First pause after Redis refused a write (OOM, READONLY, MISCONF).
const REFUSED_RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause between attempts while Redis refuses writes, so work resumes
/// within this of Redis accepting writes again.
const REFUSED_RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs searches as tasks and knows which entries it is working on.
pub struct Worker {
    /// One attempt at a search.
    searcher: Searcher,
    /// Where entries that cannot be searched go.
    dead_letters: DeadLetters,
    /// Counters and gauges.
    metrics: Arc<Metrics>,
    /// Whether Redis refuses writes; noted by every attempt that hits a refusal.
    health: Arc<RedisHealth>,
    /// Every search task, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Entry ids being processed here: the sweep heartbeats them and never
    /// claims them.
    in_flight: Mutex<HashSet<EntryId>>,
    /// Cancelled when the shutdown grace period is over: searches still running
    /// stop where they are, leaving their entries pending.
    abandon: CancellationToken,
}

impl Worker {
    /// A worker with no searches running.
    pub fn new(
        searcher: Searcher,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
        health: Arc<RedisHealth>,
    ) -> Worker {
        Worker {
            searcher,
            dead_letters,
            metrics,
            health,
            tasks: TaskTracker::new(),
            in_flight: Mutex::new(HashSet::new()),
            abandon: CancellationToken::new(),
        }
    }

    /// Marks `entry` as taken by this replica, from the moment it was delivered
    /// until its task ends: the sweep heartbeats it and never claims it, even
    /// while it still waits for a permit.
    pub fn hold(self: &Arc<Self>, entry: StreamEntry) -> Held {
        Held {
            guard: InFlight::enter(self, entry.id),
            entry,
        }
    }

    /// Processes a held entry in its own task, which keeps `permit` until it
    /// ends. `deliveries` counts this one.
    pub fn start(self: &Arc<Self>, held: Held, deliveries: u64, permit: OwnedSemaphorePermit) {
        let worker = Arc::clone(self);
        self.tasks.spawn(async move {
            let _permit = permit;
            let Held {
                entry,
                guard: _guard,
            } = held;
            // Biased: a search started after the grace period ran out (by a
            // sweep that had not yet seen the stop) must not write anything.
            tokio::select! {
                biased;
                () = worker.abandon.cancelled() => {
                    tracing::warn!(
                        entry_id = %entry.id,
                        "search unfinished at shutdown; left pending for another consumer"
                    );
                }
                () = worker.process(&entry, deliveries) => {}
            }
        });
    }

    /// Entry ids being processed right now.
    pub fn in_flight(&self) -> Vec<EntryId> {
        self.in_flight
            .lock()
            .expect("in-flight set poisoned")
            .iter()
            .copied()
            .collect()
    }

    /// Waits for running searches until `deadline`, then abandons the rest.
    pub async fn drain(&self, deadline: Instant) {
        self.tasks.close();
        if !self.tasks.is_empty() {
            tracing::info!(
                in_flight = self.tasks.len(),
                "waiting for in-flight searches"
            );
        }
        if tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_err()
        {
            let left = self.in_flight();
            tracing::warn!(
                left = left.len(),
                entries = ?left,
                "shutdown grace period over; abandoning unfinished searches"
            );
            self.abandon.cancel();
            self.tasks.wait().await;
        }
    }

    /// Handles `entry`, retrying here while Redis fails transiently (a restart,
    /// a dropped connection): the entry stays ours and heartbeated, so clients
    /// wait seconds rather than `CLAIM_IDLE_MS`. After [`MAX_ATTEMPTS`], or on
    /// an error that will not go away by itself, the entry is left pending for
    /// the claim path, which counts deliveries.
    ///
    /// Redis refusing writes (OOM, READONLY, MISCONF) is not the search's
    /// fault and uses up none of its attempts: the entry stays held and
    /// heartbeated, so it is neither claimed nor spends a delivery, and the
    /// attempt is repeated every [`REFUSED_RETRY_MAX`] at most until Redis
    /// accepts writes or shutdown abandons it. The refusal is logged by
    /// [`RedisHealth`], once per change and in periodic summaries.
    async fn process(&self, entry: &StreamEntry, deliveries: u64) {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        let mut refused = Backoff::new(REFUSED_RETRY_MIN, REFUSED_RETRY_MAX);
        let mut attempt = 0;
        while attempt < MAX_ATTEMPTS {
            let failure = match self.handle(entry, deliveries).await {
                Ok(()) => return,
                Err(failure) => failure,
            };
            if self.health.writes.note(&failure.source).is_some() {
                let _waiting = WaitingForWrites::enter(&self.metrics);
                tokio::time::sleep(refused.next_delay()).await;
                continue;
            }
            refused.reset();
            attempt += 1;
            if !failure.is_transient() || attempt == MAX_ATTEMPTS {
                tracing::warn!(
                    entry_id = %entry.id,
                    %failure,
                    attempt,
                    "search attempt failed; entry left pending for a claim"
                );
                return;
            }
            tracing::debug!(
                entry_id = %entry.id,
                %failure,
                attempt,
                "search attempt failed; retrying"
            );
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One attempt at `entry`: searched if it decodes, else dead-lettered.
    async fn handle(&self, entry: &StreamEntry, deliveries: u64) -> Result<(), RedisFailure> {
        if let Some(problem) = entry.unreadable() {
            return self
                .dead_letters
                .retire(entry, DeadLetter::Unreadable(problem), deliveries)
                .await;
        }
        match QueuedSearch::from_fields(&entry.fields) {
            Ok(search) => self.searcher.run(entry.id, search, deliveries).await,
            Err(error) => {
                self.dead_letters
                    .retire(entry, DeadLetter::Invalid(error), deliveries)
                    .await
            }
        }
    }
}

/// Counts a search in `searches_waiting_for_writes` while it lives, however
/// its wait ends (abandoned at shutdown included).
struct WaitingForWrites<'a>(&'a Metrics);

impl<'a> WaitingForWrites<'a> {
    fn enter(metrics: &'a Metrics) -> WaitingForWrites<'a> {
        metrics.searches_waiting_for_writes.inc();
        WaitingForWrites(metrics)
    }
}

impl Drop for WaitingForWrites<'_> {
    fn drop(&mut self) {
        self.0.searches_waiting_for_writes.dec();
    }
}

/// An entry this replica has taken and not yet finished.
pub struct Held {
    /// The queued search.
    entry: StreamEntry,
    /// Keeps the entry in the in-flight set while it is held.
    guard: InFlight,
}

/// Marks an entry as being processed here for as long as it lives.
struct InFlight {
    /// The worker whose set holds the id.
    worker: Arc<Worker>,
    /// The entry being processed.
    id: EntryId,
}

impl InFlight {
    fn enter(worker: &Arc<Worker>, id: EntryId) -> InFlight {
        worker
            .in_flight
            .lock()
            .expect("in-flight set poisoned")
            .insert(id);
        worker.metrics.searches_in_flight.inc();
        InFlight {
            worker: Arc::clone(worker),
            id,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.worker
            .in_flight
            .lock()
            .expect("in-flight set poisoned")
            .remove(&self.id);
        self.worker.metrics.searches_in_flight.dec();
    }
}
