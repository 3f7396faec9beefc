//! Failures by kind. Every failed exchange, broken stream, refused append and
//! failed measurement is counted under one [`ErrorKind`]; nothing is dropped
//! silently. A few first occurrences keep their detail for the human report.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How many failures keep their detail text.
const SAMPLES: usize = 8;

/// What went wrong, named by where and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// `POST /api/flights/search` could not connect.
    PostConnect,
    /// The POST exchange failed mid-way (reset, early close).
    PostIo,
    /// The POST was answered with something other than 202.
    PostStatus,
    /// The 202 body did not hold a `search_id`, or the response was not HTTP.
    PostMalformed,
    /// The POST took longer than the scenario allowed.
    PostTimeout,
    /// An SSE connection could not be opened.
    SseConnect,
    /// An SSE read or write failed (reset).
    SseIo,
    /// The stream request was answered with something other than 200.
    SseStatus,
    /// The body broke HTTP or SSE framing, or an event was not the contract's JSON.
    SseProtocol,
    /// The connection or response ended before the terminal event.
    SseEof,
    /// The scenario deadline passed before the terminal event.
    SseTimeout,
    /// An event arrived after the terminal event.
    SseAfterTerminal,
    /// The response did not end within the grace period after the terminal event.
    SseNoEnd,
    /// The connection closed after the terminal event without the final chunk.
    SseUncleanEnd,
    /// An event of another search arrived on a stream.
    SseWrongSearch,
    /// An event arrived twice on one stream.
    SseDuplicate,
    /// An event arrived before one that was appended earlier.
    SseOutOfOrder,
    /// An event arrived that is not in the search's result stream.
    SseUnexpectedEvent,
    /// A search ended with a `failed` event.
    SearchFailed,
    /// APPEND_EVENT refused an event (slot taken or search already terminal).
    ProduceRefused,
    /// APPEND_EVENT failed in Redis.
    ProduceRedis,
    /// The deadline passed before every event was appended.
    ProduceDeadline,
    /// A search's state hash was missing, so what it should have delivered is unknown.
    StateMissing,
    /// A worker process exited or broke protocol before reporting its streams.
    WorkerLost,
    /// A `/proc`, `INFO` or `/metrics` sample failed.
    Sample,
}

/// Counts per kind, plus the detail of the first few.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Errors {
    /// Occurrences per kind.
    pub counts: BTreeMap<ErrorKind, u64>,
    /// `kind: detail` of the first [`SAMPLES`] occurrences, for people.
    pub samples: Vec<String>,
}

impl Errors {
    /// No errors.
    pub fn new() -> Self {
        Errors::default()
    }

    /// Counts one occurrence of `kind`.
    pub fn record(&mut self, kind: ErrorKind, detail: impl fmt::Display) {
        self.add(kind, 1, detail);
    }

    /// Counts `n` occurrences of `kind` with one shared detail.
    pub fn add(&mut self, kind: ErrorKind, n: u64, detail: impl fmt::Display) {
        if n == 0 {
            return;
        }
        *self.counts.entry(kind).or_default() += n;
        if self.samples.len() < SAMPLES {
            self.samples.push(format!("{kind:?}: {detail}"));
        }
    }

    /// Adds every count and sample of `other`.
    pub fn merge(&mut self, other: Errors) {
        for (kind, n) in other.counts {
            *self.counts.entry(kind).or_default() += n;
        }
        let room = SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }

    /// Occurrences over all kinds.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_serialise_by_kind_name() {
        let mut a = Errors::new();
        a.record(ErrorKind::SseEof, "cut");
        let mut b = Errors::new();
        b.add(ErrorKind::SseEof, 2, "cut twice");
        b.add(ErrorKind::PostStatus, 0, "never");
        a.merge(b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.samples, ["SseEof: cut", "SseEof: cut twice"]);
        assert_eq!(
            serde_json::to_string(&a.counts).unwrap(),
            r#"{"sse_eof":3}"#
        );
    }
}
