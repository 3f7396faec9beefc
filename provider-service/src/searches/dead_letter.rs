//! Setting aside a queued search that cannot be processed: a copy in the
//! dead-letter stream, a terminal `failed` event for its client, and the
//! acknowledgement that takes it off the pending list.
//!
//! Fresh deliveries use it for entries that do not decode and for searches
//! whose processing panicked; the recovery sweep for entries handed out
//! `MAX_DELIVERIES` times.

use std::sync::Arc;

use contract::{DecodeError, EventError, EventKind, QueuedSearch};
use service_runtime::redis_failure::RedisFailure;
use service_runtime::redis_reply::StreamEntry;
use service_runtime::write_refusal::Refusal;

use crate::metrics::{CodeLabel, Metrics, ReasonLabel};
use crate::searches::queue::Queue;
use crate::searches::result_streams::ResultStreams;

/// Why an entry is set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// Its fields do not make a search.
    Invalid(DecodeError),
    /// Its fields could not even be read (see `StreamEntry::unreadable`).
    Unreadable(&'static str),
    /// It was handed out this many times without being acknowledged.
    MaxDeliveries(u64),
    /// Processing it panicked, with this message.
    Panicked(String),
}

impl DeadLetter {
    /// Every `reason`, so the metric's series exist from start.
    pub(crate) const REASONS: [&'static str; 3] =
        ["invalid_request", "max_deliveries_exceeded", "panicked"];

    /// The `reason` field and metric label.
    fn reason(&self) -> &'static str {
        match self {
            DeadLetter::Invalid(_) | DeadLetter::Unreadable(_) => Self::REASONS[0],
            DeadLetter::MaxDeliveries(_) => Self::REASONS[1],
            DeadLetter::Panicked(_) => Self::REASONS[2],
        }
    }

    /// The `failed` event code the search's client sees.
    fn code(&self) -> &'static str {
        match self {
            DeadLetter::Invalid(_) | DeadLetter::Unreadable(_) => EventError::INVALID_REQUEST,
            DeadLetter::MaxDeliveries(_) => EventError::DEAD_LETTERED,
            DeadLetter::Panicked(_) => EventError::INTERNAL_ERROR,
        }
    }

    /// What the search's client is told.
    fn client_error(&self) -> EventError {
        let message = match self {
            DeadLetter::Invalid(e) => format!("the queued search could not be read: {e}"),
            DeadLetter::Unreadable(problem) => {
                format!("the queued search could not be read: {problem}")
            }
            DeadLetter::MaxDeliveries(n) => format!(
                "the search was attempted {n} times without finishing and has been set aside"
            ),
            // The panic's text stays in the logs and the dead-letter stream:
            // it is about the provider, not something the client can act on.
            DeadLetter::Panicked(_) => {
                "the search hit an internal error and has been set aside".to_owned()
            }
        };
        EventError::new(self.code(), message)
    }

    /// The `detail` field: what exactly was wrong.
    fn detail(&self) -> String {
        match self {
            DeadLetter::Invalid(e) => e.to_string(),
            DeadLetter::Unreadable(problem) => (*problem).to_owned(),
            DeadLetter::MaxDeliveries(n) => {
                format!("delivered {n} times without an acknowledgement")
            }
            DeadLetter::Panicked(message) => format!("processing panicked: {message}"),
        }
    }
}

/// What dead-lettering writes to, and where it is counted.
#[derive(Clone)]
pub struct DeadLetters {
    /// The dead-letter stream and the acknowledgement.
    queue: Queue,
    /// Where the search's `failed` event goes.
    results: ResultStreams,
    /// `dead_letters_total` and `searches_failed_total`.
    metrics: Arc<Metrics>,
}

impl DeadLetters {
    /// Dead-letters through `queue`, ending searches in `results`.
    pub fn new(queue: Queue, results: ResultStreams, metrics: Arc<Metrics>) -> DeadLetters {
        DeadLetters {
            queue,
            results,
            metrics,
        }
    }

    /// Writes `entry` to the dead-letter stream, ends its search with `failed`
    /// if its search id can still be read, and acknowledges it. Safe to repeat
    /// after a crash: the event append is idempotent; the dead-letter stream may
    /// then hold the entry twice. If the `failed` event cannot be written for a
    /// reason that will not pass (the search's keys hold the wrong type, say),
    /// the entry is acknowledged all the same: it is in the dead-letter stream,
    /// and keeping it pending would only have it claimed and retired again
    /// forever.
    pub async fn retire(
        &self,
        entry: &StreamEntry,
        why: DeadLetter,
        deliveries: u64,
    ) -> Result<(), RedisFailure> {
        let reason = why.reason();
        let detail = why.detail();
        self.queue
            .dead_letter(entry, reason, &detail, deliveries)
            .await?;
        let search_id = QueuedSearch::search_id_of(&entry.fields).ok();
        let failed_written = match search_id {
            Some(id) => self.end_search(entry, id, &why).await?,
            None => false,
        };
        self.queue.ack(entry.id).await?;
        self.metrics
            .dead_letters
            .get_or_create(&ReasonLabel { reason })
            .inc();
        if failed_written {
            self.metrics
                .searches_failed
                .get_or_create(&CodeLabel { code: why.code() })
                .inc();
        }
        tracing::warn!(
            entry_id = %entry.id,
            search_id = search_id.map(|id| id.to_string()),
            reason,
            detail,
            deliveries,
            failed_written,
            "queue entry dead-lettered"
        );
        Ok(())
    }

    /// Writes the search's `failed` event. Returns whether it was written; a
    /// failure that may pass is returned, others are logged and swallowed.
    async fn end_search(
        &self,
        entry: &StreamEntry,
        search_id: uuid::Uuid,
        why: &DeadLetter,
    ) -> Result<bool, RedisFailure> {
        let error = why.client_error();
        match self
            .results
            .append(search_id, EventKind::Failed { error })
            .await
        {
            Ok(written) => Ok(written.is_some()),
            // Redis refusing writes passes too: the caller retries the whole step.
            Err(failure) if failure.is_transient() || Refusal::of(&failure.source).is_some() => {
                Err(failure)
            }
            Err(failure) => {
                tracing::warn!(
                    entry_id = %entry.id,
                    %search_id,
                    %failure,
                    "cannot write the failed event of a dead-lettered search"
                );
                Ok(false)
            }
        }
    }
}
