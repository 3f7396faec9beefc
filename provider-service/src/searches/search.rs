//! One attempt at a queued search, from reading what the stream already has to
//! acknowledging the entry.
//!
//! A search may be delivered more than once: after a crash its entry is claimed
//! by another consumer, which must carry on rather than start over. So each
//! redelivery first reads back what earlier attempts wrote (a first delivery
//! writes `processing` at once and reads only if that is refused), asks only
//! the suppliers that have not answered, and counts every answer, old and new, in the total. The
//! append script keeps one event per slot, so clients see each supplier once and
//! exactly one terminal event however many attempts ran. The entry is
//! acknowledged only after the terminal event is in Redis; until then it stays
//! pending and another consumer can finish the job.
//!
//! Answers are written as they arrive, and those that arrive together (with
//! the `processing` event, and with the terminal event once every supplier
//! is done) are written together, in one script call and with one nudge.
//!
//! `total_results` is counted from what the stream holds: what earlier
//! attempts wrote plus this attempt's appends, re-read whenever an append was
//! refused. The append script keeps its own tally of the results
//! written and refuses a terminal event based on another, so an overlapping
//! attempt that adds a `result` meanwhile makes this one re-read and retry: the
//! total always equals the offers before it.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use contract::{
    EntryId, EventError, EventKind, Flight, QueuedSearch, SearchEvent, SearchRequest,
    SupplierOutcome, SupplierOutcomes,
};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use service_runtime::redis_failure::RedisFailure;
use service_runtime::streams::Appended;
use service_runtime::{search_span, trace_context};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::{CodeLabel, LimitLabel, Metrics, SupplierLabel};
use crate::searches::answer_bounds::{AnswerBounds, Cut};
use crate::searches::containment;
use crate::searches::queue::Queue;
use crate::searches::result_streams::{History, ResultStreams};
use crate::supplier::Supplier;
use crate::supplier::cache::AnswerCache;
use crate::supplier::failure::Failure as SupplierFailure;

/// Tries at writing the terminal event. One suffices unless another attempt
/// keeps adding results meanwhile; the bound guards against a stream that
/// something else keeps writing to.
const TERMINAL_ATTEMPTS: usize = 8;

/// Everything a search attempt reads, writes and asks.
pub struct Searcher {
    /// Where the entry is acknowledged.
    queue: Queue,
    /// Where events are written and read back.
    results: ResultStreams,
    /// The airline APIs every search asks.
    suppliers: Vec<Supplier>,
    /// How long one attempt's supplier calls may take in all.
    supplier_deadline: Duration,
    /// Answers reused across searches, in front of every supplier.
    cache: AnswerCache,
    /// Search outcomes are counted here.
    metrics: Arc<Metrics>,
    /// How much of each answer is kept.
    bounds: AnswerBounds,
}

/// What this attempt has gathered and not yet written, and what it spent.
struct Gathered {
    /// Events ready for the next write.
    ready: Vec<EventKind>,
    /// How each supplier's part ended, for those that did not simply answer.
    outcomes: SupplierOutcomes,
    /// Bytes of the search's events so far, earlier attempts' included.
    spent: usize,
    /// Answers cut to the bounds, by supplier.
    cuts: Vec<(&'static str, Cut)>,
}

/// What every log line of one attempt says about it.
struct Attempt {
    /// The queue entry being processed.
    entry_id: EntryId,
    /// The search's id.
    search_id: Uuid,
    /// `FROM-TO`.
    route: String,
    /// The departure date as queued.
    date: String,
    /// Deliveries of the entry, this one included.
    deliveries: u64,
    /// When the attempt began.
    started: Instant,
}

/// How the terminal step ended.
struct Ended {
    /// The stream as read last.
    history: History,
    /// Whether this attempt wrote the terminal event.
    written: bool,
}

impl Searcher {
    /// Searches `suppliers` through `cache`, each attempt's calls bounded by
    /// `supplier_deadline`.
    pub fn new(
        queue: Queue,
        results: ResultStreams,
        suppliers: Vec<Supplier>,
        supplier_deadline: Duration,
        cache: AnswerCache,
        metrics: Arc<Metrics>,
        bounds: AnswerBounds,
    ) -> Searcher {
        Searcher {
            queue,
            results,
            suppliers,
            supplier_deadline,
            cache,
            metrics,
            bounds,
        }
    }

    /// Runs one attempt at `search`, queued as `entry_id`: reads what the
    /// stream already has, asks the suppliers still missing, writes the
    /// terminal event, acknowledges the entry and records the outcome.
    /// Runs in the span `provider.attempt`, a child of the search's POST span
    /// when the entry carries its `traceparent`; the first delivery also
    /// records the time queued (`search.queued`).
    pub async fn run(
        &self,
        entry_id: EntryId,
        search: QueuedSearch,
        deliveries: u64,
    ) -> Result<(), RedisFailure> {
        let span = search_span!(
            "provider.attempt",
            otel.kind = "consumer",
            search_id = %search.search_id,
            delivery_count = deliveries,
        );
        trace_context::continue_trace(&span, search.traceparent);
        if let (Some(post), Some(ms), 1) = (search.traceparent, search.requested_at_ms, deliveries)
            && let Some(queued_at) = UNIX_EPOCH.checked_add(Duration::from_millis(ms))
        {
            trace_context::record_queued(post, queued_at, search.search_id);
        }
        self.attempt(entry_id, search, deliveries)
            .instrument(span)
            .await
    }

    /// One attempt, as [`Searcher::run`] describes.
    async fn attempt(
        &self,
        entry_id: EntryId,
        search: QueuedSearch,
        deliveries: u64,
    ) -> Result<(), RedisFailure> {
        let request = search.request;
        let attempt = Attempt {
            entry_id,
            search_id: search.search_id,
            route: format!("{}-{}", request.from, request.to),
            date: request.date_text(),
            deliveries,
            started: Instant::now(),
        };
        let (before, resumed) = self.open(attempt.search_id, deliveries).await?;
        if before.terminal {
            return self.acknowledge_finished(&attempt).await;
        }
        tracing::info!(
            search_id = %attempt.search_id,
            %entry_id,
            route = attempt.route,
            date = attempt.date,
            passengers = request.passengers,
            deliveries,
            resumed,
            answered_before = before.answered.len(),
            "search started"
        );
        let ended = self
            .ask_and_write(attempt.search_id, &request, before)
            .await?;
        if !ended.written && !ended.history.terminal {
            // Results kept landing from another attempt; that attempt will
            // finish the search, or this entry is claimed again later.
            tracing::warn!(search_id = %attempt.search_id, %entry_id, "terminal event kept going stale; left pending");
            return Ok(());
        }
        self.queue.ack(entry_id).await?;
        self.record_outcome(&attempt, &ended, resumed);
        Ok(())
    }

    /// What the search's stream holds as this attempt starts, and whether an
    /// earlier attempt wrote to it. A search handed out for the first time
    /// normally has nothing yet, so its `processing` event is written at once
    /// instead of reading first: that saves a round trip per search, and the
    /// append script's refusal tells when the stream does hold something (the
    /// search timed out meanwhile, or the queue was handed out again after its
    /// group was recreated), and only then is it read. A redelivered search is
    /// read first, since an earlier attempt may have answered part of it.
    async fn open(
        &self,
        search_id: Uuid,
        deliveries: u64,
    ) -> Result<(History, bool), RedisFailure> {
        if deliveries <= 1 {
            let processing = EventKind::Processing { results: vec![] };
            if self.results.append(search_id, processing).await?.is_some() {
                let history = History {
                    processing: true,
                    ..History::default()
                };
                return Ok((history, false));
            }
        }
        let history = self.results.history(search_id).await?;
        let resumed = !history.is_empty();
        Ok((history, resumed))
    }

    /// Acknowledges an entry whose search an earlier attempt already ended.
    async fn acknowledge_finished(&self, attempt: &Attempt) -> Result<(), RedisFailure> {
        self.queue.ack(attempt.entry_id).await?;
        tracing::info!(
            search_id = %attempt.search_id,
            entry_id = %attempt.entry_id,
            route = attempt.route,
            date = attempt.date,
            deliveries = attempt.deliveries,
            "search already finished; acknowledged"
        );
        Ok(())
    }

    /// Asks, concurrently, every supplier without a `result` event in
    /// `history`, and writes the `processing` event (if missing), each answer
    /// and the terminal event, each batch as soon as it is ready: whatever is
    /// ready when the previous write returns goes out in the next one.
    async fn ask_and_write(
        &self,
        search_id: Uuid,
        request: &SearchRequest,
        mut history: History,
    ) -> Result<Ended, RedisFailure> {
        let deadline = Instant::now() + self.supplier_deadline;
        let mut calls: FuturesUnordered<_> = self
            .suppliers
            .iter()
            .filter(|s| !history.answered.contains_key(s.code()))
            .map(|s| async move {
                let span = search_span!(
                    "supplier.call",
                    otel.kind = "client",
                    supplier = s.code(),
                    style = s.style(),
                    outcome = tracing::field::Empty,
                    http.response.status_code = tracing::field::Empty,
                    retries = tracing::field::Empty,
                    cache_hit = tracing::field::Empty,
                );
                let answer = self.cache.search(s, request, deadline, &self.metrics);
                let answer = containment::contain(answer.instrument(span))
                    .await
                    .unwrap_or_else(|message| self.supplier_panicked(search_id, s, &message));
                (s.code(), answer)
            })
            .collect();
        let mut gathered = Gathered {
            ready: Vec::new(),
            outcomes: SupplierOutcomes::new(),
            spent: history.bytes,
            cuts: Vec::new(),
        };
        if !history.processing {
            gathered
                .ready
                .push(EventKind::Processing { results: vec![] });
        }
        loop {
            while let Some(Some((supplier, answer))) = calls.next().now_or_never() {
                self.sort_answer(search_id, supplier, answer, &mut gathered);
            }
            if calls.is_empty() {
                self.record_cuts(search_id, &gathered);
                return self
                    .write_terminal(search_id, history, gathered.ready, &gathered.outcomes)
                    .await;
            }
            if gathered.ready.is_empty() {
                if let Some((supplier, answer)) = calls.next().await {
                    self.sort_answer(search_id, supplier, answer, &mut gathered);
                }
                continue;
            }
            let events = into_events(search_id, &mut gathered.ready);
            let appended = self
                .results
                .append_all(search_id, &events, None, &gathered.outcomes)
                .await?;
            record_written(&mut history, &events, &appended);
        }
    }

    /// Files one supplier's answer: its offers, cut to the bounds, as an
    /// event ready to write, or why it gave none.
    fn sort_answer(
        &self,
        search_id: Uuid,
        supplier: &'static str,
        answer: Result<Vec<Flight>, SupplierFailure>,
        gathered: &mut Gathered,
    ) {
        let results = match answer {
            Ok(results) => results,
            Err(failure) => {
                gathered
                    .outcomes
                    .insert(supplier.to_owned(), failure.outcome());
                return;
            }
        };
        let mut kind = EventKind::Result {
            supplier: supplier.to_owned(),
            results,
        };
        let left = self.bounds.max_search_bytes.saturating_sub(gathered.spent);
        let (size, cut) = self.bounds.cut(search_id, &mut kind, left);
        gathered.spent = gathered.spent.saturating_add(size);
        // A lossy cast is fine for a histogram: sizes are far below 2^52.
        self.metrics.result_event_bytes.observe(size as f64);
        if let Some(cut) = cut {
            self.metrics
                .supplier_offers_truncated
                .get_or_create(&LimitLabel {
                    supplier,
                    limit: cut.limit.as_str(),
                })
                .inc_by(u64::try_from(cut.dropped).unwrap_or(u64::MAX));
            gathered
                .outcomes
                .insert(supplier.to_owned(), SupplierOutcome::Truncated);
            gathered.cuts.push((supplier, cut));
        }
        gathered.ready.push(kind);
    }

    /// Counts the bytes the search's events took, and logs, once, which
    /// answers were cut.
    fn record_cuts(&self, search_id: Uuid, gathered: &Gathered) {
        self.metrics
            .search_event_bytes
            .observe(gathered.spent as f64);
        if gathered.cuts.is_empty() {
            return;
        }
        let cuts: Vec<String> = gathered
            .cuts
            .iter()
            .map(|(supplier, cut)| format!("{supplier}: {} by {}", cut.dropped, cut.limit.as_str()))
            .collect();
        tracing::warn!(
            %search_id,
            truncated = cuts.join(", "),
            search_bytes = gathered.spent,
            "supplier answers cut to the configured bounds; offers dropped"
        );
    }

    /// Counts and logs a supplier call that panicked; its part of the search
    /// ends as `error`, like any answer that cannot be used.
    fn supplier_panicked(
        &self,
        search_id: Uuid,
        supplier: &Supplier,
        message: &str,
    ) -> Result<Vec<Flight>, SupplierFailure> {
        let code = supplier.code();
        self.metrics
            .supplier_panics
            .get_or_create(&SupplierLabel { supplier: code })
            .inc();
        tracing::error!(
            %search_id,
            supplier = code,
            panic = message,
            "supplier call panicked; its part of the search ends as error"
        );
        Err(SupplierFailure::Error)
    }

    /// Writes `ready` followed by the terminal event the stream calls for. The
    /// terminal event is based on what this attempt knows the stream holds;
    /// the append script refuses it when the results written add up to
    /// something else (another attempt added an answer, or one of this
    /// attempt's was refused), and then the stream is read back, the
    /// authority on what clients see, and the terminal event tried again.
    async fn write_terminal(
        &self,
        search_id: Uuid,
        mut history: History,
        mut ready: Vec<EventKind>,
        failures: &SupplierOutcomes,
    ) -> Result<Ended, RedisFailure> {
        for _ in 0..TERMINAL_ATTEMPTS {
            if history.terminal {
                break;
            }
            let mut assumed = history.clone();
            ready.iter().for_each(|kind| assumed.record(kind));
            ready.push(terminal_event(&assumed));
            let report = supplier_report(&assumed, failures);
            let events = into_events(search_id, &mut ready);
            let appended = self
                .results
                .append_all(search_id, &events, Some(assumed.tally()), &report)
                .await?;
            record_written(&mut history, &events, &appended);
            match appended.last() {
                Some(Appended::Written(_)) => {
                    return Ok(Ended {
                        history,
                        written: true,
                    });
                }
                Some(Appended::Skipped) => {
                    self.results.catch_up(search_id, &mut history).await?;
                    break;
                }
                _ => {
                    self.results.catch_up(search_id, &mut history).await?;
                }
            }
        }
        Ok(Ended {
            history,
            written: false,
        })
    }

    /// Counts the search's end, if this attempt wrote it, and logs how it went.
    fn record_outcome(&self, attempt: &Attempt, ended: &Ended, resumed: bool) {
        let answered = ended.history.answered.len();
        if ended.written {
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
        let outcome = match (ended.history.terminal, answered) {
            (true, _) => "ended_elsewhere",
            (false, 0) => "failed",
            (false, _) => "completed",
        };
        tracing::info!(
            search_id = %attempt.search_id,
            entry_id = %attempt.entry_id,
            route = attempt.route,
            date = attempt.date,
            outcome,
            terminal_written = ended.written,
            suppliers_answered = answered,
            suppliers = self.suppliers.len(),
            total_results = ended.history.total_results(),
            elapsed_ms = attempt.started.elapsed().as_millis() as u64,
            resumed,
            "search finished"
        );
    }
}

/// Takes the `ready` events of `search_id` out, as events to write.
fn into_events(search_id: Uuid, ready: &mut Vec<EventKind>) -> Vec<SearchEvent> {
    ready
        .drain(..)
        .map(|kind| SearchEvent { search_id, kind })
        .collect()
}

/// Notes in `history` the events that `appended` says were written, but for
/// a terminal event: [`Ended::written`] tells that this attempt wrote it.
fn record_written(history: &mut History, events: &[SearchEvent], appended: &[Appended]) {
    for (event, outcome) in events.iter().zip(appended) {
        if matches!(outcome, Appended::Written(_)) && !event.kind.is_terminal() {
            history.record(&event.kind);
        }
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

/// How each supplier's part ended: `answered` for every supplier with a
/// `result` event (from this attempt or an earlier one) unless this attempt
/// cut it (`truncated`), else why this attempt got nothing from it.
fn supplier_report(history: &History, failures: &SupplierOutcomes) -> SupplierOutcomes {
    let mut report = failures.clone();
    for supplier in history.answered.keys() {
        report
            .entry(supplier.clone())
            .and_modify(|outcome| {
                if *outcome != SupplierOutcome::Truncated {
                    *outcome = SupplierOutcome::Answered;
                }
            })
            .or_insert(SupplierOutcome::Answered);
    }
    report
}
