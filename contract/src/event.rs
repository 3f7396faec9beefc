//! The events of a search, exactly as stored in its result stream (field `data`)
//! and forwarded untouched to SSE clients.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::flight::Flight;

/// One event of a search's result stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchEvent {
    /// The search this event belongs to.
    pub search_id: Uuid,
    /// What happened; serialised as `status` plus its own fields.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The event kinds, tagged by `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum EventKind {
    /// A provider took the search. Written exactly once per search.
    Processing {
        /// Always empty; kept so every non-terminal event has `results`.
        results: Vec<Flight>,
    },
    /// One supplier answered.
    Result {
        /// The supplier's airline code.
        supplier: String,
        /// Its offers (possibly none).
        results: Vec<Flight>,
    },
    /// Terminal: every supplier answered or gave up.
    Completed {
        /// Offers over all `result` events of this search.
        total_results: u32,
    },
    /// Terminal: the search could not be completed.
    Failed {
        /// Why.
        error: EventError,
    },
}

/// Why a search failed; `code` is meant for programs, `message` for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventError {
    /// One of [`EventError::TIMEOUT`], [`EventError::DEAD_LETTERED`],
    /// [`EventError::INVALID_REQUEST`], [`EventError::SUPPLIERS_UNAVAILABLE`],
    /// [`EventError::INTERNAL_ERROR`].
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl EventError {
    /// No terminal event within `SEARCH_TIMEOUT_SECS` of the POST.
    pub const TIMEOUT: &'static str = "timeout";
    /// The search was handed out more than `MAX_DELIVERIES` times.
    pub const DEAD_LETTERED: &'static str = "dead_lettered";
    /// The queued search could not be decoded.
    pub const INVALID_REQUEST: &'static str = "invalid_request";
    /// Every supplier failed.
    pub const SUPPLIERS_UNAVAILABLE: &'static str = "suppliers_unavailable";
    /// Processing the search hit a fault in the provider (a panic); the
    /// search is set aside at once rather than retried into the same fault.
    pub const INTERNAL_ERROR: &'static str = "internal_error";

    /// An error with the given code and message.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        EventError {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// What a search's `result` events add up to: the basis of its terminal event.
/// The append script keeps the same count in the state hash and refuses a
/// terminal event based on a different one (`scripts::APPEND_EVENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Suppliers that answered (one `result` event each).
    pub answers: u32,
    /// Offers over all those events.
    pub offers: u64,
}

impl Tally {
    /// The script's form, `<answers>:<offers>`.
    pub fn to_arg(self) -> String {
        format!("{}:{}", self.answers, self.offers)
    }

    /// Reads the script's form back.
    pub fn parse(text: &str) -> Option<Tally> {
        let (answers, offers) = text.split_once(':')?;
        Some(Tally {
            answers: answers.parse().ok()?,
            offers: offers.parse().ok()?,
        })
    }
}

impl EventKind {
    /// True if and only if this event ends the search.
    pub fn is_terminal(&self) -> bool {
        matches!(self, EventKind::Completed { .. } | EventKind::Failed { .. })
    }

    /// The idempotency slot of this event: at most one event per slot is ever
    /// written to a search's stream (see `scripts::APPEND_EVENT`). Both terminal
    /// kinds share one slot, so a search has exactly one terminal event.
    pub fn slot(&self) -> String {
        match self {
            EventKind::Processing { .. } => "processing".to_owned(),
            EventKind::Result { supplier, .. } => format!("result:{supplier}"),
            EventKind::Completed { .. } | EventKind::Failed { .. } => {
                crate::keys::STATE_TERMINAL.to_owned()
            }
        }
    }
}

/// What a stored event says about its search, as far as delivering it and
/// counting outcomes care; read from the event's JSON by [`EventStatus::of`]
/// without decoding its offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// `processing`, or anything not recognised: delivered, ends nothing.
    Progress,
    /// A supplier's `result`.
    Result,
    /// Terminal `completed`.
    Completed,
    /// Terminal `failed` for any reason but a timeout.
    Failed,
    /// Terminal `failed` with code [`EventError::TIMEOUT`].
    TimedOut,
}

impl EventStatus {
    /// Reads `status` (and a failure's `error.code`) from an event's JSON. Only
    /// these fields matter, so an event with offers this version does not know
    /// still ends the stream when it should.
    pub fn of(json: &[u8]) -> EventStatus {
        match status_after_search_id(json) {
            Some(b"processing") => EventStatus::Progress,
            Some(b"result") => EventStatus::Result,
            Some(b"completed") => EventStatus::Completed,
            _ => EventStatus::parse(json),
        }
    }

    /// The full parse, for `failed` events (small; their code matters) and for
    /// JSON that does not start the way [`SearchEvent::to_json`] writes it.
    fn parse(json: &[u8]) -> EventStatus {
        #[derive(Deserialize)]
        struct Head {
            status: String,
            #[serde(default)]
            error: Option<serde_json::Value>,
        }
        let Ok(head) = serde_json::from_slice::<Head>(json) else {
            return EventStatus::Progress;
        };
        match head.status.as_str() {
            "result" => EventStatus::Result,
            "completed" => EventStatus::Completed,
            "failed" => {
                let code = head.error.as_ref().and_then(|e| e.get("code"));
                if code.and_then(|c| c.as_str()) == Some(EventError::TIMEOUT) {
                    EventStatus::TimedOut
                } else {
                    EventStatus::Failed
                }
            }
            _ => EventStatus::Progress,
        }
    }

    /// True if and only if this event ends the search.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventStatus::Completed | EventStatus::Failed | EventStatus::TimedOut
        )
    }
}

/// The `status` of an event serialised as [`SearchEvent::to_json`] writes it,
/// `{"search_id":"<uuid>","status":"<status>",…` (a layout the tests below
/// pin down), read without parsing the rest: result events can be large, and
/// every one is classified.
fn status_after_search_id(json: &[u8]) -> Option<&[u8]> {
    let rest = json.strip_prefix(br#"{"search_id":""#)?;
    let rest = rest.get(36..)?.strip_prefix(br#"","status":""#)?;
    let end = rest.iter().take(16).position(|&b| b == b'"')?;
    Some(&rest[..end])
}

impl SearchEvent {
    /// The JSON stored in the stream and sent as SSE `data:`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a SearchEvent always serialises")
    }

    /// The JSON of a terminal event that also reports how each supplier's part
    /// ended, as the field `suppliers` after the fixed fields. An empty report
    /// adds nothing, so the result is then exactly [`SearchEvent::to_json`].
    pub fn to_json_reporting(&self, suppliers: &SupplierOutcomes) -> String {
        if suppliers.is_empty() {
            // The flattened form goes through serde's slower map path.
            return self.to_json();
        }
        serde_json::to_string(&ReportedEvent {
            event: self,
            suppliers,
        })
        .expect("a SearchEvent always serialises")
    }
}

/// How one supplier's part of a search ended, as reported in the terminal
/// event's `suppliers` object (`{"GA":"answered","JT":"timeout",...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupplierOutcome {
    /// The supplier answered; its offers are in a `result` event.
    Answered,
    /// It did not answer within its timeout or the search's deadline.
    Timeout,
    /// It answered with an error or something unreadable, or could not be reached.
    Error,
    /// It refused with 429 and asked for a wait the search could not afford.
    RateLimited,
    /// It was not asked: its circuit breaker is open after repeated failures.
    CircuitOpen,
    /// It refused the provider's credentials (401/403, or its token endpoint
    /// refused the client): a configuration matter, not retried.
    Unauthorized,
    /// It answered, but more than the provider keeps: its `result` event
    /// holds the first offers only.
    Truncated,
}

impl SupplierOutcome {
    /// The wire name, also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            SupplierOutcome::Answered => "answered",
            SupplierOutcome::Timeout => "timeout",
            SupplierOutcome::Error => "error",
            SupplierOutcome::RateLimited => "rate_limited",
            SupplierOutcome::CircuitOpen => "circuit_open",
            SupplierOutcome::Unauthorized => "unauthorized",
            SupplierOutcome::Truncated => "truncated",
        }
    }
}

/// Every supplier of a search and how its part ended, by airline code.
pub type SupplierOutcomes = BTreeMap<String, SupplierOutcome>;

/// A search event plus the per-supplier report of a terminal event. Reading a
/// reported event as a plain [`SearchEvent`] ignores `suppliers`, so readers
/// that do not know the field are unaffected.
#[derive(Debug, Serialize)]
struct ReportedEvent<'a> {
    /// The event's fixed fields.
    #[serde(flatten)]
    event: &'a SearchEvent,
    /// Outcomes by supplier; omitted when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    suppliers: &'a SupplierOutcomes,
}

/// Reads the `suppliers` report of a terminal event's JSON; empty when the
/// event carries none (a timeout written by main-service, an older provider).
pub fn supplier_report(json: &[u8]) -> SupplierOutcomes {
    #[derive(Deserialize)]
    struct Report {
        #[serde(default)]
        suppliers: SupplierOutcomes,
    }
    serde_json::from_slice::<Report>(json)
        .map(|r| r.suppliers)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> Uuid {
        Uuid::parse_str("6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f").unwrap()
    }

    #[test]
    fn events_serialise_to_the_contract_shapes() {
        let cases = [
            (
                EventKind::Processing { results: vec![] },
                json!({"search_id": id(), "status": "processing", "results": []}),
            ),
            (
                EventKind::Result {
                    supplier: "GA".into(),
                    results: vec![],
                },
                json!({"search_id": id(), "status": "result", "supplier": "GA", "results": []}),
            ),
            (
                EventKind::Completed { total_results: 7 },
                json!({"search_id": id(), "status": "completed", "total_results": 7}),
            ),
            (
                EventKind::Failed {
                    error: EventError::new(EventError::TIMEOUT, "too slow"),
                },
                json!({"search_id": id(), "status": "failed", "error": {"code": "timeout", "message": "too slow"}}),
            ),
        ];
        for (kind, expected) in cases {
            let event = SearchEvent {
                search_id: id(),
                kind,
            };
            let text = event.to_json();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                expected
            );
            assert_eq!(serde_json::from_str::<SearchEvent>(&text).unwrap(), event);
        }
    }

    #[test]
    fn status_comes_right_after_search_id() {
        let text = SearchEvent {
            search_id: id(),
            kind: EventKind::Completed { total_results: 1 },
        }
        .to_json();
        assert!(
            text.starts_with(&format!(r#"{{"search_id":"{}","status":"completed""#, id())),
            "{text}"
        );
    }

    #[test]
    fn written_events_are_classified_from_their_prefix() {
        let status = |kind| {
            let json = SearchEvent {
                search_id: id(),
                kind,
            }
            .to_json();
            (
                status_after_search_id(json.as_bytes()).map(<[u8]>::to_vec),
                EventStatus::of(json.as_bytes()),
            )
        };
        assert_eq!(
            status(EventKind::Processing { results: vec![] }),
            (Some(b"processing".to_vec()), EventStatus::Progress)
        );
        let result = EventKind::Result {
            supplier: "GA".into(),
            results: vec![],
        };
        assert_eq!(
            status(result),
            (Some(b"result".to_vec()), EventStatus::Result)
        );
        assert_eq!(
            status(EventKind::Completed { total_results: 3 }),
            (Some(b"completed".to_vec()), EventStatus::Completed)
        );
        let timeout = EventKind::Failed {
            error: EventError::new(EventError::TIMEOUT, "m"),
        };
        assert_eq!(status(timeout).1, EventStatus::TimedOut);
        assert_eq!(status_after_search_id(br#"{"status":"completed"}"#), None);
    }

    #[test]
    fn statuses_are_read_from_status_and_error_code() {
        assert_eq!(
            EventStatus::of(br#"{"status":"processing"}"#),
            EventStatus::Progress
        );
        assert_eq!(
            EventStatus::of(br#"{"status":"result","results":[1]}"#),
            EventStatus::Result
        );
        assert_eq!(
            EventStatus::of(br#"{"status":"completed"}"#),
            EventStatus::Completed
        );
        assert_eq!(
            EventStatus::of(br#"{"status":"failed","error":{"code":"timeout","message":"m"}}"#),
            EventStatus::TimedOut
        );
        assert_eq!(
            EventStatus::of(br#"{"status":"failed","error":{"code":"dead_lettered"}}"#),
            EventStatus::Failed
        );
        assert_eq!(
            EventStatus::of(br#"{"status":"failed","error":7}"#),
            EventStatus::Failed
        );
        assert_eq!(EventStatus::of(b"not json"), EventStatus::Progress);
        assert!(EventStatus::TimedOut.is_terminal() && !EventStatus::Result.is_terminal());
    }

    #[test]
    fn the_supplier_report_follows_the_fixed_fields_and_is_ignored_by_plain_readers() {
        let event = SearchEvent {
            search_id: id(),
            kind: EventKind::Completed { total_results: 3 },
        };
        let report = SupplierOutcomes::from([
            ("GA".to_owned(), SupplierOutcome::Answered),
            ("JT".to_owned(), SupplierOutcome::RateLimited),
            ("QZ".to_owned(), SupplierOutcome::CircuitOpen),
        ]);
        let text = event.to_json_reporting(&report);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            json!({"search_id": id(), "status": "completed", "total_results": 3,
                   "suppliers": {"GA": "answered", "JT": "rate_limited", "QZ": "circuit_open"}})
        );
        assert!(text.starts_with(&format!(r#"{{"search_id":"{}","status":"completed""#, id())));
        assert_eq!(serde_json::from_str::<SearchEvent>(&text).unwrap(), event);
        assert_eq!(supplier_report(text.as_bytes()), report);
        assert_eq!(
            event.to_json_reporting(&SupplierOutcomes::new()),
            event.to_json()
        );
        assert!(supplier_report(event.to_json().as_bytes()).is_empty());
    }

    #[test]
    fn tallies_round_trip_through_the_script_form() {
        let t = Tally {
            answers: 3,
            offers: 14,
        };
        assert_eq!(t.to_arg(), "3:14");
        assert_eq!(Tally::parse("3:14"), Some(t));
        assert_eq!(Tally::parse("3"), None);
        assert_eq!(Tally::parse("x:1"), None);
    }

    #[test]
    fn terminal_kinds_share_one_slot() {
        let done = EventKind::Completed { total_results: 0 };
        let failed = EventKind::Failed {
            error: EventError::new(EventError::TIMEOUT, ""),
        };
        assert_eq!(done.slot(), failed.slot());
        assert!(done.is_terminal() && failed.is_terminal());
        let ga = EventKind::Result {
            supplier: "GA".into(),
            results: vec![],
        };
        assert_ne!(ga.slot(), EventKind::Processing { results: vec![] }.slot());
        assert!(!ga.is_terminal());
    }
}
