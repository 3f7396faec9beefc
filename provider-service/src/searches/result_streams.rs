//! Writing a search's events, and reading back what earlier attempts wrote.
//!
//! Every append goes through [`service_runtime::streams::append_events`], which
//! writes at most one event per slot (`processing`, `result:<supplier>`,
//! terminal), pairs the XADDs with EXPIRE and publishes the one nudge
//! main-service waits on, all in one atomic step, however many events are
//! ready at once. A nil answer means the slot was already
//! taken: another attempt (or main-service's timeout) got there first, which is
//! normal, not an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use contract::EntryId;
use contract::keys::{DATA_FIELD, STATE_TERMINAL, results_key, state_key};
use contract::{EventKind, SearchEvent, SupplierOutcomes, Tally};
use redis::Value;
use service_runtime::redis_connection::RedisConnection;
use service_runtime::redis_failure::RedisFailure;
use service_runtime::redis_reply::entries_of;
use service_runtime::search_span;
use service_runtime::streams::{Appended, Batched};
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::Metrics;

/// What a search's stores already hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The `processing` event was written.
    pub processing: bool,
    /// Suppliers with a `result` event, and how many offers each carried.
    pub answered: BTreeMap<String, u32>,
    /// The search has its terminal event (seen in the stream or, once
    /// main-service deleted a delivered stream, in the state hash).
    pub terminal: bool,
    /// Id of the last stream entry read, where [`ResultStreams::catch_up`]
    /// continues.
    pub last_id: Option<EntryId>,
    /// Bytes of the events read back, counted against the search's budget.
    pub bytes: usize,
}

impl History {
    /// True if and only if nothing has been written for the search yet.
    pub fn is_empty(&self) -> bool {
        !self.processing && self.answered.is_empty() && !self.terminal
    }

    /// Offers over every `result` event.
    pub fn total_results(&self) -> u32 {
        // Saturating: the counts come from a stream anything could write to.
        self.answered
            .values()
            .fold(0, |total, offers| total.saturating_add(*offers))
    }

    /// The answers and offers read so far, as the append script counts them.
    pub fn tally(&self) -> Tally {
        Tally {
            answers: u32::try_from(self.answered.len()).unwrap_or(u32::MAX),
            offers: u64::from(self.total_results()),
        }
    }

    /// Notes an event read back, or written by this attempt.
    pub fn record(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Processing { .. } => self.processing = true,
            EventKind::Result { supplier, results } => {
                let offers = u32::try_from(results.len()).unwrap_or(u32::MAX);
                self.answered.insert(supplier.clone(), offers);
            }
            EventKind::Completed { .. } | EventKind::Failed { .. } => self.terminal = true,
        }
    }
}

/// Every search's result stream and state hash.
#[derive(Clone)]
pub struct ResultStreams {
    /// Shared connection for every command here.
    conn: RedisConnection,
    /// TTL refreshed by every append.
    ttl: Duration,
    /// Where Redis failures are counted.
    metrics: Arc<Metrics>,
}

impl ResultStreams {
    /// Handles on every search's stores, appending with TTL `ttl`.
    pub fn new(conn: RedisConnection, ttl: Duration, metrics: Arc<Metrics>) -> ResultStreams {
        ResultStreams { conn, ttl, metrics }
    }

    /// Appends one event unless its slot is taken or the search already ended.
    /// Returns the new entry id, or `None` when nothing was written.
    pub async fn append(
        &self,
        search_id: Uuid,
        kind: EventKind,
    ) -> Result<Option<EntryId>, RedisFailure> {
        let events = [SearchEvent { search_id, kind }];
        let appended = self
            .append_all(search_id, &events, None, &SupplierOutcomes::new())
            .await?;
        Ok(match appended.into_iter().next() {
            Some(Appended::Written(id)) => Some(id),
            _ => None,
        })
    }

    /// Appends `events` of `search_id` in order, in one atomic step; the
    /// terminal event among them (last, if any) reports `report` and is
    /// refused as [`Appended::Stale`] when the search's results no longer add
    /// up to `basis`. Returns what happened to each event.
    pub async fn append_all(
        &self,
        search_id: Uuid,
        events: &[SearchEvent],
        basis: Option<Tally>,
        report: &SupplierOutcomes,
    ) -> Result<Vec<Appended>, RedisFailure> {
        let unreported = SupplierOutcomes::new();
        let batch: Vec<Batched<'_>> = events
            .iter()
            .map(|event| Batched {
                event,
                report: if event.kind.is_terminal() {
                    report
                } else {
                    &unreported
                },
                basis,
            })
            .collect();
        let span = search_span!(
            "results.append",
            search_id = %search_id,
            events = events.len(),
            terminal = events.last().is_some_and(|e| e.kind.is_terminal()),
        );
        service_runtime::streams::append_events(
            &mut self.conn.clone(),
            search_id,
            &batch,
            self.ttl,
            self.conn.nudges(),
        )
        .instrument(span)
        .await
        .map_err(|e| self.failed("append", e))
    }

    /// What earlier attempts wrote for `search_id`.
    pub async fn history(&self, search_id: Uuid) -> Result<History, RedisFailure> {
        let mut history = History::default();
        self.catch_up(search_id, &mut history).await?;
        Ok(history)
    }

    /// Adds to `history` what was written for `search_id` after the last entry
    /// it holds (all of it, for an empty one). Returns true if and only if the
    /// stream held anything new or the search has newly ended.
    pub async fn catch_up(
        &self,
        search_id: Uuid,
        history: &mut History,
    ) -> Result<bool, RedisFailure> {
        let start = history
            .last_id
            .as_ref()
            .map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let (stream, terminal): (Value, bool) = redis::pipe()
            .cmd("XRANGE")
            .arg(results_key(search_id))
            .arg(start)
            .arg("+")
            .cmd("HEXISTS")
            .arg(state_key(search_id))
            .arg(STATE_TERMINAL)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.failed("history", e))?;
        let entries = entries_of(stream).map_err(|e| self.failed("history", e))?;
        let news = !entries.is_empty() || (terminal && !history.terminal);
        history.terminal |= terminal;
        for entry in entries {
            history.last_id = Some(entry.id);
            let Some(data) = entry.fields.get(DATA_FIELD) else {
                continue;
            };
            history.bytes = history.bytes.saturating_add(data.len());
            match serde_json::from_slice::<SearchEvent>(data) {
                Ok(event) => history.record(&event.kind),
                Err(error) => tracing::warn!(
                    %search_id,
                    entry_id = %entry.id,
                    %error,
                    "ignoring an unreadable event in a result stream"
                ),
            }
        }
        Ok(news)
    }

    fn failed(&self, op: &'static str, source: redis::RedisError) -> RedisFailure {
        self.metrics.redis_failure(op, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::KnownLabels;
    use ::test_support::left_behind::append;
    use ::test_support::redis_server::RedisServer;
    use contract::EventError;

    #[test]
    fn history_counts_offers_per_supplier_and_sees_the_end() {
        let mut h = History::default();
        assert!(h.is_empty());
        h.record(&EventKind::Processing { results: vec![] });
        h.record(&EventKind::Result {
            supplier: "GA".into(),
            results: vec![],
        });
        assert!(!h.is_empty() && !h.terminal);
        assert_eq!(h.total_results(), 0);
        assert!(h.answered.contains_key("GA"));
        h.record(&EventKind::Failed {
            error: EventError::new(EventError::TIMEOUT, "late"),
        });
        assert!(h.terminal);
    }

    #[test]
    fn counts_read_from_a_stream_saturate_instead_of_overflowing() {
        let mut h = History::default();
        h.answered.insert("GA".into(), u32::MAX);
        h.answered.insert("JT".into(), 5);
        assert_eq!(h.total_results(), u32::MAX);
        assert_eq!(h.tally().answers, 2);
    }

    #[tokio::test]
    async fn catching_up_reads_only_what_was_written_since_and_sees_the_end() {
        let redis = RedisServer::start().await;
        let mut conn = redis.connection().await;
        let commands = redis::Client::open(redis.url())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap();
        let results = ResultStreams::new(
            RedisConnection::Managed(commands),
            Duration::from_secs(60),
            Arc::new(Metrics::new(&KnownLabels::default())),
        );
        let id = Uuid::new_v4();
        append(&mut conn, id, EventKind::Processing { results: vec![] }).await;
        let mut history = results.history(id).await.unwrap();
        assert!(history.processing && history.answered.is_empty());
        assert!(!results.catch_up(id, &mut history).await.unwrap());

        // Another attempt's answer lands after the read.
        append(
            &mut conn,
            id,
            EventKind::Result {
                supplier: "GA".into(),
                results: vec![],
            },
        )
        .await;
        assert!(results.catch_up(id, &mut history).await.unwrap());
        assert_eq!(history.answered.keys().collect::<Vec<_>>(), ["GA"]);
        assert!(!results.catch_up(id, &mut history).await.unwrap());

        append(&mut conn, id, EventKind::Completed { total_results: 0 }).await;
        assert!(results.catch_up(id, &mut history).await.unwrap());
        assert!(history.terminal);
        assert_eq!(history.answered.len(), 1);
    }
}
