//! The lifecycle of search tasks on this replica: which entries it holds, the
//! task that processes each, retries while Redis fails, and the drain at
//! shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::{EntryId, QueuedSearch};
use service_runtime::backoff::Backoff;
use service_runtime::redis_failure::RedisFailure;
use service_runtime::redis_health::RedisHealth;
use service_runtime::redis_reply::StreamEntry;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::searches::containment;
use crate::searches::dead_letter::{DeadLetter, DeadLetters};
use crate::searches::search::Searcher;

/// Attempts per delivery when Redis fails transiently.
const MAX_ATTEMPTS: u32 = 8;
/// Ceiling of the first (jittered) pause between attempts.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Highest ceiling of a pause between attempts; with [`MAX_ATTEMPTS`] the
/// pauses add up to between 8 s and 16 s, enough to ride out a Redis
/// restart.
const RETRY_MAX: Duration = Duration::from_secs(4);
/// Ceiling of the first pause after Redis refused a write (OOM, READONLY,
/// MISCONF).
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

    /// Where this worker sets aside the searches it cannot process; the
    /// recovery sweep retires entries out of deliveries there too.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dead_letters
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
        self.process_with(entry, deliveries, || self.handle(entry, deliveries))
            .await;
    }

    /// [`Worker::process`] with the attempt given, so the retry and panic
    /// policies can be exercised with any attempt. An attempt that panics is
    /// not repeated: its entry is dead-lettered (retried like any Redis write).
    async fn process_with<A, F>(&self, entry: &StreamEntry, deliveries: u64, attempt: A)
    where
        A: Fn() -> F,
        F: Future<Output = Result<(), RedisFailure>>,
    {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        let mut refused = Backoff::new(REFUSED_RETRY_MIN, REFUSED_RETRY_MAX);
        let mut panicked: Option<String> = None;
        let mut tries = 0;
        while tries < MAX_ATTEMPTS {
            let outcome = match &panicked {
                Some(message) => self.retire_panicked(entry, message, deliveries).await,
                None => match containment::contain(attempt()).await {
                    Ok(outcome) => outcome,
                    Err(message) => {
                        self.metrics.search_panics.inc();
                        tracing::error!(
                            entry_id = %entry.id,
                            panic = message,
                            "search attempt panicked; ending the search as failed"
                        );
                        let outcome = self.retire_panicked(entry, &message, deliveries).await;
                        panicked = Some(message);
                        outcome
                    }
                },
            };
            let Err(failure) = outcome else {
                return;
            };
            if self.health.note_write_failure(&failure.source).is_some() {
                let _waiting = WaitingForWrites::enter(&self.metrics);
                tokio::time::sleep(refused.next_delay()).await;
                continue;
            }
            refused.reset();
            tries += 1;
            if !failure.is_transient() || tries == MAX_ATTEMPTS {
                tracing::warn!(
                    entry_id = %entry.id,
                    %failure,
                    attempt = tries,
                    "search attempt failed; entry left pending for a claim"
                );
                return;
            }
            tracing::debug!(
                entry_id = %entry.id,
                %failure,
                attempt = tries,
                "search attempt failed; retrying"
            );
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Ends the search of `entry`, whose processing panicked with `message`.
    async fn retire_panicked(
        &self,
        entry: &StreamEntry,
        message: &str,
        deliveries: u64,
    ) -> Result<(), RedisFailure> {
        self.dead_letters
            .retire(entry, DeadLetter::Panicked(message.to_owned()), deliveries)
            .await
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ::test_support::redis_server::RedisServer;
    use contract::keys::{DEAD_LETTER_STREAM, REQUESTS_STREAM, results_key};
    use contract::{EventKind, Iata, SearchEvent, SearchRequest};
    use service_runtime::redis_connection::RedisConnection;
    use timetable::latency_range::LatencyRange;
    use uuid::Uuid;

    use super::*;
    use crate::metrics::KnownLabels;
    use crate::searches::queue::Queue;
    use crate::searches::result_streams::ResultStreams;
    use crate::supplier::Supplier;
    use crate::supplier::cache::AnswerCache;
    use crate::supplier::simulation;

    /// A worker over `redis` with the six simulated airlines.
    async fn worker(redis: &RedisServer, metrics: &Arc<Metrics>) -> (Arc<Worker>, Queue) {
        let conn = RedisConnection::Managed(
            redis::Client::open(redis.url())
                .unwrap()
                .get_connection_manager()
                .await
                .unwrap(),
        );
        let queue = Queue::new(
            conn.clone(),
            "provider-service".to_owned(),
            "worker-test".to_owned(),
            Duration::from_secs(15),
            Arc::clone(metrics),
        );
        queue.ensure_group(&mut conn.clone()).await.unwrap();
        let results =
            ResultStreams::new(conn.clone(), Duration::from_secs(60), Arc::clone(metrics));
        let dead_letters = DeadLetters::new(queue.clone(), results.clone(), Arc::clone(metrics));
        let suppliers = simulation::all(
            LatencyRange {
                min_ms: 0,
                max_ms: 0,
            },
            0.0,
        )
        .into_iter()
        .map(Supplier::Simulated)
        .collect();
        let searcher = Searcher::new(
            queue.clone(),
            results,
            suppliers,
            Duration::from_secs(5),
            AnswerCache::new(conn, Duration::ZERO),
            Arc::clone(metrics),
            crate::searches::answer_bounds::AnswerBounds {
                max_offers: 500,
                max_event_bytes: 1 << 18,
                max_search_bytes: 1 << 20,
            },
        );
        let health = RedisHealth::new();
        let worker = Worker::new(searcher, dead_letters, Arc::clone(metrics), health);
        (Arc::new(worker), queue)
    }

    /// Queues a search and takes it as the worker's consumer.
    async fn delivered(redis: &RedisServer, queue: &Queue) -> (Uuid, StreamEntry) {
        let queued = contract::QueuedSearch {
            search_id: Uuid::new_v4(),
            request: SearchRequest {
                from: Iata::parse("CGK").unwrap(),
                to: Iata::parse("DPS").unwrap(),
                date: time::macros::date!(2026 - 12 - 10),
                passengers: 1,
            },
            requested_at_ms: None,
            traceparent: None,
        };
        let mut conn = redis.connection().await;
        let mut add = redis::cmd("XADD");
        add.arg(REQUESTS_STREAM).arg("*");
        for (name, value) in queued.to_fields() {
            add.arg(name).arg(value);
        }
        let _: String = add.query_async(&mut conn).await.unwrap();
        let mut entries = queue
            .read(&mut conn, 1, Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
        (queued.search_id, entries.remove(0))
    }

    async fn events(redis: &RedisServer, id: Uuid) -> Vec<EventKind> {
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(results_key(id))
            .arg("-")
            .arg("+")
            .query_async(&mut redis.connection().await)
            .await
            .unwrap();
        entries
            .iter()
            .map(|(_, f)| {
                serde_json::from_str::<SearchEvent>(&f["data"])
                    .unwrap()
                    .kind
            })
            .collect()
    }

    #[tokio::test]
    async fn a_panicking_attempt_fails_its_search_at_once_and_the_next_one_runs() {
        let redis = RedisServer::start().await;
        let metrics = Arc::new(Metrics::new(&KnownLabels::default()));
        let (worker, queue) = worker(&redis, &metrics).await;

        let (broken, entry) = delivered(&redis, &queue).await;
        let calls = std::sync::atomic::AtomicU32::new(0);
        worker
            .process_with(&entry, 1, || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                panic!("injected fault")
            })
            .await;
        assert_eq!(calls.into_inner(), 1, "a panicking attempt is not repeated");
        let EventKind::Failed { error } = &events(&redis, broken).await[0] else {
            panic!("no failed event")
        };
        assert_eq!(error.code, "internal_error");
        assert_eq!(queue.pending_count().await.unwrap(), 0, "acknowledged");
        let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(DEAD_LETTER_STREAM)
            .arg("-")
            .arg("+")
            .query_async(&mut redis.connection().await)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].1["reason"], "panicked");
        assert!(dead[0].1["detail"].contains("injected fault"), "{dead:?}");
        let text = metrics.encode();
        for line in [
            "flight_search_provider_search_panics_total 1",
            r#"flight_search_provider_searches_failed_total{code="internal_error"} 1"#,
            r#"flight_search_provider_dead_letters_total{reason="panicked"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }

        // The same worker, through the same entry point the read loop uses,
        // with its one permit: the next search completes and gives it back.
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        let (healthy, entry) = delivered(&redis, &queue).await;
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        worker.start(worker.hold(entry), 1, permit);
        let _permit = tokio::time::timeout(Duration::from_secs(10), permits.acquire())
            .await
            .expect("the permit comes back once the search ends")
            .unwrap();
        assert!(matches!(
            events(&redis, healthy).await.last(),
            Some(EventKind::Completed { .. })
        ));
        assert!(worker.in_flight().is_empty());
    }
}
