//! An SSE client that keeps everything the server sent, so tests can check the
//! framing as well as the events. The body is parsed by loadgen's strict
//! parser ([`loadgen::sse`], the workspace's one); every event it receives must
//! match the `SearchEvent` schema of `openapi.yaml`, so every suite checks the
//! document.

use std::collections::VecDeque;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Incoming;
use loadgen::sse::{SseItem, SseParser};

use crate::documents::{self, Schema};
use crate::http::{Error, send};

/// One thing the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `retry: <ms>`.
    Retry(u64),
    /// A `: comment` (keep-alive).
    Comment(String),
    /// `id:` plus `data:`.
    Event(Event),
}

impl Item {
    /// The parser's item, an event's JSON parsed and checked against the
    /// `SearchEvent` schema.
    fn checked(item: SseItem) -> Result<Item, Error> {
        Ok(match item {
            SseItem::Retry(ms) => Item::Retry(ms),
            SseItem::Comment(text) => Item::Comment(text),
            SseItem::Event { id, data: raw } => {
                let data = serde_json::from_str(&raw)?;
                documents::assert_matches(Schema::SearchEvent, &data);
                Item::Event(Event { id, data, raw })
            }
        })
    }
}

/// An event with its id and parsed JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `id:` field (a Redis stream entry id).
    pub id: String,
    /// The `data:` field, parsed.
    pub data: serde_json::Value,
    /// The `data:` field exactly as sent.
    pub raw: String,
}

impl Event {
    /// The event's `status` field.
    pub fn status(&self) -> &str {
        self.data["status"].as_str().unwrap_or("")
    }

    /// True if and only if this is `completed` or `failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status(), "completed" | "failed")
    }
}

/// An open event stream.
pub struct SseStream {
    /// Response status.
    pub status: u16,
    /// Response headers.
    pub headers: hyper::HeaderMap,
    /// The body, `None` once it ended.
    body: Option<Incoming>,
    /// The parser of the body received so far.
    parser: SseParser,
    /// Items received but not yet returned.
    ready: VecDeque<Item>,
}

impl SseStream {
    /// Opens `url`, sending `Last-Event-ID` when given.
    pub async fn open(url: &str, last_event_id: Option<&str>) -> Result<SseStream, Error> {
        let mut headers = vec![("accept", "text/event-stream")];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id));
        }
        let response = send(Method::GET, url, &headers, bytes::Bytes::new()).await?;
        let (parts, body) = response.into_parts();
        Ok(SseStream {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: Some(body),
            parser: SseParser::new(),
            ready: VecDeque::new(),
        })
    }

    /// The next item, `Ok(None)` when the server ended the response, or an error
    /// when nothing arrives within `limit`.
    pub async fn next_item(&mut self, limit: Duration) -> Result<Option<Item>, Error> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            match tokio::time::timeout(limit, body.frame()).await {
                Err(_) => return Err(format!("no SSE data within {limit:?}").into()),
                Ok(None) => {
                    self.body = None;
                    if !self.parser.at_boundary() {
                        return Err("stream ended mid-item".into());
                    }
                }
                Ok(Some(frame)) => {
                    if let Ok(data) = frame?.into_data() {
                        let mut items = Vec::new();
                        self.parser.feed(&data, &mut items)?;
                        for item in items {
                            self.ready.push_back(Item::checked(item)?);
                        }
                    }
                }
            }
        }
    }

    /// The next event, skipping `retry:` and comments.
    pub async fn next_event(&mut self, limit: Duration) -> Result<Option<Event>, Error> {
        while let Some(item) = self.next_item(limit).await? {
            if let Item::Event(event) = item {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// Every event up to and including the terminal one, then checks that the
    /// server ended the response right after it.
    pub async fn until_terminal(&mut self, limit: Duration) -> Result<Vec<Event>, Error> {
        let mut events = Vec::new();
        loop {
            match self.next_event(limit).await? {
                None => {
                    return Err(format!("stream ended before a terminal event: {events:?}").into());
                }
                Some(event) => {
                    let terminal = event.is_terminal();
                    events.push(event);
                    if terminal {
                        break;
                    }
                }
            }
        }
        match self.next_item(limit).await? {
            None => Ok(events),
            Some(extra) => Err(format!("data after the terminal event: {extra:?}").into()),
        }
    }
}

/// Asserts what a client must see whatever happened behind the scenes: one
/// `processing` first, each supplier once, exactly one terminal event last, and
/// a `completed` total equal to the offers received (so no result went missing).
pub fn assert_exactly_once(id: uuid::Uuid, events: &[Event]) {
    assert_eq!(
        events.first().map(Event::status),
        Some("processing"),
        "{id}: {events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| e.status() == "processing").count(),
        1,
        "{id}"
    );
    assert_eq!(
        events.iter().filter(|e| e.is_terminal()).count(),
        1,
        "{id}: {events:?}"
    );
    assert!(events.last().unwrap().is_terminal(), "{id}");
    let mut suppliers = std::collections::HashSet::new();
    let mut offers = 0;
    for event in events.iter().filter(|e| e.status() == "result") {
        let supplier = event.data["supplier"].as_str().unwrap().to_owned();
        assert!(
            suppliers.insert(supplier.clone()),
            "{id}: {supplier} answered twice"
        );
        offers += event.data["results"].as_array().unwrap().len() as u64;
    }
    let last = events.last().unwrap();
    if last.status() == "completed" {
        assert_eq!(
            last.data["total_results"].as_u64(),
            Some(offers),
            "{id}: offers went missing"
        );
    }
}
