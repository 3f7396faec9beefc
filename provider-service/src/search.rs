//! Processing one queued search, from delivery to acknowledgement.
//!
//! A search may be delivered more than once: after a crash its entry is claimed
//! by another consumer, which must carry on rather than start over. So each
//! attempt first reads back what earlier ones wrote, asks only the suppliers that
//! have not answered, and counts every answer, old and new, in the total. The
//! append script keeps one event per slot, so clients see each supplier once and
//! exactly one terminal event however many attempts ran. The entry is
//! acknowledged only after the terminal event is in Redis; until then it stays
//! pending and another consumer can finish the job.
//!
//! `total_results` is counted from the stream as read after all of this
//! attempt's appends. The append script keeps its own tally of the results
//! written and refuses a terminal event based on another, so an overlapping
//! attempt that adds a `result` meanwhile makes this one re-read and retry: the
//! total always equals the offers before it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::{EventError, EventKind, QueuedSearch, SupplierOutcome, SupplierOutcomes};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_link::Backoff;
use service_runtime::streams::Appended;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::RedisFailure;
use crate::cache::AnswerCache;
use crate::events::{History, ResultStreams};
use crate::metrics::{CodeLabel, Metrics};
use crate::queue::{Entry, Queue};
use crate::recovery::{self, DeadLetter};
use crate::supplier::Supplier;

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
/// Tries at writing the terminal event. One suffices unless another attempt
/// keeps adding results meanwhile; the bound guards against a stream that
/// something else keeps writing to.
const TERMINAL_ATTEMPTS: usize = 8;

/// Runs searches as tasks and knows which entries it is working on.
pub struct Worker {
    /// The request stream: acknowledgements and dead letters.
    pub queue: Queue,
    /// Where events are written and read back.
    pub results: ResultStreams,
    /// The airline APIs every search asks.
    suppliers: Vec<Supplier>,
    /// How long one attempt's supplier calls may take in all.
    supplier_deadline: Duration,
    /// Answers reused across searches, in front of every supplier.
    cache: AnswerCache,
    /// Counters and gauges.
    pub metrics: Arc<Metrics>,
    /// Whether Redis refuses writes; noted by every attempt that hits a refusal.
    pub health: Arc<RedisHealth>,
    /// Every search task, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Entry ids being processed here: the sweep heartbeats them and never
    /// claims them.
    in_flight: Mutex<HashSet<String>>,
    /// Cancelled when the shutdown grace period is over: searches still running
    /// stop where they are, leaving their entries pending.
    abandon: CancellationToken,
}

impl Worker {
    /// A worker with no searches running.
    pub fn new(
        queue: Queue,
        results: ResultStreams,
        suppliers: Vec<Supplier>,
        supplier_deadline: Duration,
        cache: AnswerCache,
        metrics: Arc<Metrics>,
        health: Arc<RedisHealth>,
    ) -> Worker {
        Worker {
            queue,
            results,
            suppliers,
            supplier_deadline,
            cache,
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
    pub fn hold(self: &Arc<Self>, entry: Entry) -> Held {
        Held {
            guard: InFlight::enter(self, &entry.id),
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
                        entry_id = entry.id,
                        "search unfinished at shutdown; left pending for another consumer"
                    );
                }
                () = worker.process(&entry, deliveries) => {}
            }
        });
    }

    /// Entry ids being processed right now.
    pub fn in_flight(&self) -> Vec<String> {
        self.in_flight
            .lock()
            .expect("in-flight set poisoned")
            .iter()
            .cloned()
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
    async fn process(&self, entry: &Entry, deliveries: u64) {
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
                    entry_id = entry.id,
                    %failure,
                    attempt,
                    "search attempt failed; entry left pending for a claim"
                );
                return;
            }
            tracing::debug!(
                entry_id = entry.id,
                %failure,
                attempt,
                "search attempt failed; retrying"
            );
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn handle(&self, entry: &Entry, deliveries: u64) -> Result<(), RedisFailure> {
        if let Some(problem) = entry.unreadable() {
            return recovery::dead_letter(self, entry, DeadLetter::Unreadable(problem), deliveries)
                .await;
        }
        match QueuedSearch::from_fields(&entry.fields) {
            Ok(search) => self.search(&entry.id, search, deliveries).await,
            Err(error) => {
                recovery::dead_letter(self, entry, DeadLetter::Invalid(error), deliveries).await
            }
        }
    }

    async fn search(
        &self,
        entry_id: &str,
        search: QueuedSearch,
        deliveries: u64,
    ) -> Result<(), RedisFailure> {
        let started = Instant::now();
        let id = search.search_id;
        let request = search.request;
        let route = format!("{}-{}", request.from, request.to);
        let date = request.date_text();

        let before = self.results.history(id).await?;
        let resumed = !before.is_empty();
        if before.terminal {
            self.queue.ack(entry_id).await?;
            tracing::info!(
                search_id = %id,
                entry_id,
                route,
                date,
                deliveries,
                "search already finished; acknowledged"
            );
            return Ok(());
        }
        tracing::info!(
            search_id = %id,
            entry_id,
            route,
            date,
            passengers = request.passengers,
            deliveries,
            resumed,
            answered_before = before.answered.len(),
            "search started"
        );

        if !before.processing {
            self.results
                .append(id, EventKind::Processing { results: vec![] })
                .await?;
        }

        let deadline = Instant::now() + self.supplier_deadline;
        let mut failures = SupplierOutcomes::new();
        let mut calls: FuturesUnordered<_> = self
            .suppliers
            .iter()
            .filter(|s| !before.answered.contains_key(s.code()))
            .map(|s| async move {
                let answer = self.cache.search(s, &request, deadline, &self.metrics);
                (s.code(), answer.await)
            })
            .collect();
        while let Some((supplier, answer)) = calls.next().await {
            let results = match answer {
                Ok(results) => results,
                Err(failure) => {
                    failures.insert(supplier.to_owned(), failure.outcome());
                    continue;
                }
            };
            self.results
                .append(
                    id,
                    EventKind::Result {
                        supplier: supplier.to_owned(),
                        results,
                    },
                )
                .await?;
        }

        // Read back rather than add up locally: the stream is what clients see,
        // and a concurrent attempt may have added answers this one missed. The
        // append script refuses a terminal event whose tally no longer matches
        // the results written, so a refusal means: read what is new, try again.
        let mut after = before;
        let mut written = None;
        for _ in 0..TERMINAL_ATTEMPTS {
            self.results.catch_up(id, &mut after).await?;
            if after.terminal {
                break;
            }
            let terminal = terminal_event(&after);
            let report = supplier_report(&after, &failures);
            match self
                .results
                .append_based_on(id, terminal, Some(after.tally()), &report)
                .await?
            {
                Appended::Written(entry) => {
                    written = Some(entry);
                    break;
                }
                Appended::Skipped => break,
                Appended::Stale(_) => {}
            }
        }
        let answered = after.answered.len();
        let total = after.total_results();
        let outcome = match (after.terminal, answered) {
            (true, _) => "ended_elsewhere",
            (false, 0) => "failed",
            (false, _) => "completed",
        };
        if written.is_none() && !after.terminal {
            // Results kept landing from another attempt; that attempt will
            // finish the search, or this entry is claimed again later.
            tracing::warn!(search_id = %id, entry_id, "terminal event kept going stale; left pending");
            return Ok(());
        }
        self.queue.ack(entry_id).await?;

        if written.is_some() {
            if answered == 0 {
                self.metrics
                    .searches_failed
                    .get_or_create(&CodeLabel {
                        code: EventError::SUPPLIERS_UNAVAILABLE,
                    })
                    .inc();
            } else {
                self.metrics.searches_completed.inc();
            }
        }
        tracing::info!(
            search_id = %id,
            entry_id,
            route,
            date,
            outcome,
            terminal_written = written.is_some(),
            suppliers_answered = answered,
            suppliers = self.suppliers.len(),
            total_results = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
            resumed,
            "search finished"
        );
        Ok(())
    }
}

/// The terminal event `history` calls for: `completed` with its offers, or
/// `failed` when no supplier ever answered.
fn terminal_event(history: &History) -> EventKind {
    if history.answered.is_empty() {
        EventKind::Failed {
            error: EventError::new(
                EventError::SUPPLIERS_UNAVAILABLE,
                "no airline supplier answered; please try again",
            ),
        }
    } else {
        EventKind::Completed {
            total_results: history.total_results(),
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

/// How each supplier's part ended: `answered` for every supplier with a
/// `result` event (from this attempt or an earlier one), else why this
/// attempt got nothing from it.
fn supplier_report(history: &History, failures: &SupplierOutcomes) -> SupplierOutcomes {
    let mut report = failures.clone();
    for supplier in history.answered.keys() {
        report.insert(supplier.clone(), SupplierOutcome::Answered);
    }
    report
}

/// An entry this replica has taken and not yet finished.
pub struct Held {
    /// The queued search.
    entry: Entry,
    /// Keeps the entry in the in-flight set while it is held.
    guard: InFlight,
}

/// Marks an entry as being processed here for as long as it lives.
struct InFlight {
    /// The worker whose set holds the id.
    worker: Arc<Worker>,
    /// The entry being processed.
    id: String,
}

impl InFlight {
    fn enter(worker: &Arc<Worker>, id: &str) -> InFlight {
        worker
            .in_flight
            .lock()
            .expect("in-flight set poisoned")
            .insert(id.to_owned());
        worker.metrics.searches_in_flight.inc();
        InFlight {
            worker: Arc::clone(worker),
            id: id.to_owned(),
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
