//! What a finished search's events say about each supplier: its outcome in
//! the terminal event and the offers of its `result` event.

use crate::documents::{self, Schema};
use crate::sse::Event;

/// The terminal event's outcome for `supplier` (`answered`, `timeout`, …);
/// the event must match the OpenAPI document.
pub fn outcome<'a>(events: &'a [Event], supplier: &str) -> &'a str {
    let last = events.last().expect("a terminal event");
    documents::assert_matches(Schema::SearchEvent, &last.data);
    last.data["suppliers"][supplier]
        .as_str()
        .unwrap_or_else(|| panic!("no outcome for {supplier} in {}", last.raw))
}

/// The offers of `supplier`'s result event, if it answered.
pub fn offers_of(events: &[Event], supplier: &str) -> Option<serde_json::Value> {
    events
        .iter()
        .find(|e| e.status() == "result" && e.data["supplier"] == supplier)
        .map(|e| e.data["results"].clone())
}

/// The offers of `supplier`'s result event; panics if it did not answer.
pub fn offers(events: &[Event], supplier: &str) -> Vec<serde_json::Value> {
    offers_of(events, supplier)
        .unwrap_or_else(|| panic!("{supplier} did not answer"))
        .as_array()
        .expect("results")
        .clone()
}
