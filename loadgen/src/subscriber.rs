//! One SSE client: opens a search's event stream, records every event with the
//! wall-clock time it was read, and checks that the response ends right after
//! the terminal event.
//!
//! Each client is a plain task owning one `TcpStream` and a small buffer, so a
//! worker process can hold thousands of them idle. Receipt times are
//! [`now_us`](crate::clock::now_us) taken as soon as `read` returns, before any
//! parsing, so that they compare with the producer's append times in another
//! process.

use std::net::IpAddr;
use std::time::Duration;

use contract::{EntryId, SearchEvent};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::now_us;
use crate::errors::ErrorKind;
use crate::http::{self, ChunkedDecoder, Framing, HttpError, Target};
use crate::sse::{SseItem, SseParser};

/// First size of a client's read buffer; it grows only for large events.
const READ_BUFFER: usize = 2048;

/// One event as a client received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The SSE `id:` as `[ms, seq]`.
    pub id: (u64, u64),
    /// Wall-clock receipt time, µs since the Unix epoch.
    pub at_us: u64,
    /// `completed` or `failed`.
    pub terminal: bool,
    /// `failed`.
    pub failed: bool,
}

impl Received {
    /// The entry id.
    pub fn entry_id(&self) -> EntryId {
        EntryId {
            ms: self.id.0,
            seq: self.id.1,
        }
    }
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Terminal event received, then the response ended with its final chunk.
    Complete,
    /// Anything else, with what went wrong.
    Failed {
        /// The kind counted in the report.
        kind: ErrorKind,
        /// Detail for people.
        detail: String,
    },
}

/// Everything one client saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamReport {
    /// The search whose stream this was.
    pub search_id: Uuid,
    /// When the 200 response head arrived, µs since the epoch; `None` if it never did.
    pub opened_at_us: Option<u64>,
    /// The events, in arrival order.
    pub events: Vec<Received>,
    /// How the stream ended.
    pub outcome: Outcome,
}

/// What one client does.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Where main-service listens.
    pub target: Target,
    /// Whose events to read.
    pub search_id: Uuid,
    /// Loopback source address to connect from, if spreading over several.
    pub source: Option<IpAddr>,
    /// The client gives up (counted as a timeout) at this instant.
    pub deadline: Instant,
    /// How long the response may take to end after the terminal event.
    pub end_grace: Duration,
}

/// An open event stream, between the response head and the end of the body.
pub struct OpenStream {
    /// The connection.
    stream: TcpStream,
    /// Raw bytes read but not yet decoded.
    raw: Vec<u8>,
    /// Body framing from the head.
    framing: Framing,
    /// Wall-clock time the head arrived.
    opened_at_us: u64,
}

fn failed(kind: ErrorKind, detail: impl ToString) -> Outcome {
    Outcome::Failed {
        kind,
        detail: detail.to_string(),
    }
}

fn io_failure(error: HttpError, connect: ErrorKind) -> Outcome {
    let kind = match &error {
        HttpError::Connect(_) => connect,
        HttpError::Io(_) => ErrorKind::SseIo,
        HttpError::Eof => ErrorKind::SseEof,
        HttpError::Malformed(_) => ErrorKind::SseProtocol,
    };
    failed(kind, error)
}

impl Subscription {
    /// Connects and reads the response head. Fails unless it is 200.
    pub async fn open(&self) -> Result<OpenStream, Outcome> {
        let opening = async {
            let mut stream = http::connect(self.target.addr, self.source).await?;
            let path = format!("/api/flights/search/{}/stream", self.search_id);
            let head = http::request_head(
                "GET",
                &path,
                &self.target.host,
                &[
                    ("accept", "text/event-stream"),
                    ("cache-control", "no-cache"),
                    ("connection", "close"),
                ],
                0,
            );
            stream
                .write_all(head.as_bytes())
                .await
                .map_err(HttpError::Io)?;
            let mut raw = Vec::with_capacity(READ_BUFFER);
            let head = http::read_head(&mut stream, &mut raw).await?;
            Ok::<_, HttpError>((stream, raw, head))
        };
        let (stream, raw, head) = match tokio::time::timeout_at(self.deadline, opening).await {
            Err(_) => {
                return Err(failed(
                    ErrorKind::SseTimeout,
                    "no response head before the deadline",
                ));
            }
            Ok(Err(e)) => return Err(io_failure(e, ErrorKind::SseConnect)),
            Ok(Ok(opened)) => opened,
        };
        if head.status != 200 {
            return Err(failed(
                ErrorKind::SseStatus,
                format!("status {}", head.status),
            ));
        }
        let framing = head
            .framing()
            .map_err(|e| io_failure(e, ErrorKind::SseConnect))?;
        if let Framing::Length(_) = framing {
            return Err(failed(
                ErrorKind::SseProtocol,
                "event stream with a content-length",
            ));
        }
        Ok(OpenStream {
            stream,
            raw,
            framing,
            opened_at_us: now_us(),
        })
    }

    /// Opens the stream and reads it to the end.
    pub async fn run(&self) -> StreamReport {
        match self.open().await {
            Ok(open) => self.read(open).await,
            Err(outcome) => StreamReport {
                search_id: self.search_id,
                opened_at_us: None,
                events: Vec::new(),
                outcome,
            },
        }
    }

    /// Reads an opened stream until the response ends, an error, or the deadline.
    pub async fn read(&self, open: OpenStream) -> StreamReport {
        let OpenStream {
            mut stream,
            mut raw,
            framing,
            opened_at_us,
        } = open;
        let mut reader = StreamReader::new(self.search_id, framing);
        // Bytes that came with the head were read at `opened_at_us`.
        let mut outcome = reader.consume(&raw, opened_at_us);
        raw.clear();
        while outcome.is_none() {
            let limit = match reader.terminal_at {
                Some(_) => self.deadline.min(Instant::now() + self.end_grace),
                None => self.deadline,
            };
            outcome = match tokio::time::timeout_at(limit, http::read_more(&mut stream, &mut raw))
                .await
            {
                Err(_) if reader.terminal_at.is_some() => Some(failed(
                    ErrorKind::SseNoEnd,
                    format!(
                        "response still open {:?} after the terminal event",
                        self.end_grace
                    ),
                )),
                Err(_) => Some(failed(
                    ErrorKind::SseTimeout,
                    "no terminal event before the deadline",
                )),
                Ok(Err(e)) => Some(io_failure(e, ErrorKind::SseIo)),
                Ok(Ok(0)) => Some(reader.eof()),
                Ok(Ok(_)) => {
                    let at = now_us();
                    let outcome = reader.consume(&raw, at);
                    raw.clear();
                    outcome
                }
            };
        }
        StreamReport {
            search_id: self.search_id,
            opened_at_us: Some(opened_at_us),
            events: reader.events,
            outcome: outcome.expect("loop ends with an outcome"),
        }
    }
}

/// Body decoding and event checks of one response, independent of I/O.
pub struct StreamReader {
    /// The search this stream belongs to.
    search_id: Uuid,
    /// Chunked decoding, when the body is chunked.
    chunks: Option<ChunkedDecoder>,
    /// SSE framing.
    parser: SseParser,
    /// Decoded body bytes not yet parsed (reused).
    body: Vec<u8>,
    /// Parsed items not yet checked (reused).
    items: Vec<SseItem>,
    /// Events so far.
    pub events: Vec<Received>,
    /// Receipt time of the terminal event, once seen.
    pub terminal_at: Option<u64>,
}

impl StreamReader {
    /// A reader at the start of a body framed by `framing`.
    pub fn new(search_id: Uuid, framing: Framing) -> Self {
        StreamReader {
            search_id,
            chunks: (framing == Framing::Chunked).then(ChunkedDecoder::new),
            parser: SseParser::new(),
            body: Vec::new(),
            items: Vec::new(),
            events: Vec::new(),
            terminal_at: None,
        }
    }

    /// Takes bytes read at `at_us`. Returns the outcome once the stream is over.
    pub fn consume(&mut self, raw: &[u8], at_us: u64) -> Option<Outcome> {
        self.body.clear();
        match &mut self.chunks {
            Some(decoder) => {
                if let Err(e) = decoder.decode(raw, &mut self.body) {
                    return Some(failed(ErrorKind::SseProtocol, e));
                }
            }
            None => self.body.extend_from_slice(raw),
        }
        self.items.clear();
        if let Err(e) = self.parser.feed(&self.body, &mut self.items) {
            return Some(failed(ErrorKind::SseProtocol, e));
        }
        for item in std::mem::take(&mut self.items) {
            let SseItem::Event { id, data } = item else {
                continue;
            };
            if self.terminal_at.is_some() {
                return Some(failed(ErrorKind::SseAfterTerminal, format!("event {id}")));
            }
            if let Err(outcome) = self.event(&id, &data, at_us) {
                return Some(outcome);
            }
        }
        if self.chunks.as_ref().is_some_and(ChunkedDecoder::is_done) {
            return Some(self.ended());
        }
        None
    }

    /// The connection closed.
    pub fn eof(&self) -> Outcome {
        match (&self.chunks, self.terminal_at) {
            // A close-delimited body ends exactly like this.
            (None, _) => self.ended(),
            (Some(_), Some(_)) => failed(
                ErrorKind::SseUncleanEnd,
                "connection closed after the terminal event without the final chunk",
            ),
            (Some(_), None) => failed(
                ErrorKind::SseEof,
                "connection closed before the terminal event",
            ),
        }
    }

    fn ended(&self) -> Outcome {
        if !self.parser.at_boundary() {
            return failed(ErrorKind::SseProtocol, "response ended inside an event");
        }
        match self.terminal_at {
            Some(_) => Outcome::Complete,
            None => failed(
                ErrorKind::SseEof,
                format!(
                    "response ended after {} events without a terminal one",
                    self.events.len()
                ),
            ),
        }
    }

    fn event(&mut self, id: &str, data: &str, at_us: u64) -> Result<(), Outcome> {
        let entry: EntryId = id
            .parse()
            .map_err(|_| failed(ErrorKind::SseProtocol, format!("event id {id:?}")))?;
        let event: SearchEvent = serde_json::from_str(data)
            .map_err(|e| failed(ErrorKind::SseProtocol, format!("event data: {e}")))?;
        if event.search_id != self.search_id {
            return Err(failed(
                ErrorKind::SseWrongSearch,
                format!(
                    "event of {} on the stream of {}",
                    event.search_id, self.search_id
                ),
            ));
        }
        let terminal = event.kind.is_terminal();
        self.events.push(Received {
            id: (entry.ms, entry.seq),
            at_us,
            terminal,
            failed: matches!(event.kind, contract::EventKind::Failed { .. }),
        });
        if terminal {
            self.terminal_at = Some(at_us);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::EventKind;

    fn id() -> Uuid {
        Uuid::parse_str("6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f").unwrap()
    }

    fn sse(entry: &str, kind: EventKind) -> String {
        let data = SearchEvent {
            search_id: id(),
            kind,
        }
        .to_json();
        format!("id: {entry}\ndata: {data}\n\n")
    }

    fn chunk(text: &str) -> String {
        format!("{:x}\r\n{text}\r\n", text.len())
    }

    fn body() -> String {
        chunk("retry: 2000\n\n")
            + &chunk(": keep-alive\n\n")
            + &chunk(&sse("5-0", EventKind::Processing { results: vec![] }))
            + &chunk(&sse("5-1", EventKind::Completed { total_results: 0 }))
    }

    #[test]
    fn a_well_formed_stream_completes_at_the_final_chunk() {
        let mut r = StreamReader::new(id(), Framing::Chunked);
        assert_eq!(r.consume(body().as_bytes(), 7), None);
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[1].entry_id(), "5-1".parse().unwrap());
        assert!(r.events[1].terminal && !r.events[1].failed);
        assert_eq!(r.terminal_at, Some(7));
        assert_eq!(r.consume(b"0\r\n\r\n", 8), Some(Outcome::Complete));
    }

    #[test]
    fn endings_that_break_the_contract_are_named() {
        let kind = |o: Option<Outcome>| match o {
            Some(Outcome::Failed { kind, .. }) => kind,
            other => panic!("{other:?}"),
        };
        let mut r = StreamReader::new(id(), Framing::Chunked);
        r.consume(body().as_bytes(), 1);
        assert_eq!(kind(Some(r.eof())), ErrorKind::SseUncleanEnd);
        let extra = chunk(&sse("5-2", EventKind::Completed { total_results: 0 }));
        assert_eq!(
            kind(r.consume(extra.as_bytes(), 2)),
            ErrorKind::SseAfterTerminal
        );

        let mut r = StreamReader::new(id(), Framing::Chunked);
        r.consume(
            chunk(&sse("5-0", EventKind::Processing { results: vec![] })).as_bytes(),
            1,
        );
        assert_eq!(kind(Some(r.eof())), ErrorKind::SseEof);
        assert_eq!(kind(r.consume(b"0\r\n\r\n", 2)), ErrorKind::SseEof);

        let mut r = StreamReader::new(Uuid::nil(), Framing::Chunked);
        assert_eq!(
            kind(r.consume(body().as_bytes(), 1)),
            ErrorKind::SseWrongSearch
        );
        let mut r = StreamReader::new(id(), Framing::Chunked);
        assert_eq!(kind(r.consume(b"zz\r\n", 1)), ErrorKind::SseProtocol);
    }

    #[test]
    fn a_close_delimited_body_ends_at_eof() {
        let mut r = StreamReader::new(id(), Framing::UntilClose);
        let plain = sse("1-0", EventKind::Completed { total_results: 0 });
        assert_eq!(r.consume(plain.as_bytes(), 1), None);
        assert_eq!(r.eof(), Outcome::Complete);
    }
}
