//! `GET /api/flights/search/{search_id}/stream`: a search's events as
//! Server-Sent Events.
//!
//! The handler checks the id and the resume point (`Last-Event-ID` header or
//! `?last_event_id=`), registers a reader in Redis, which also says whether the
//! search is unknown (404), gone (410, or 204 for a resuming client) or readable,
//! and answers with a body that walks the search's shared feed from the client's
//! cursor: `retry:` first, then each event, keep-alive comments while idle, and
//! the end right after the terminal event (or as soon as the search's stream
//! turns out to be gone without one).
//!
//! The body owns everything the stream holds (its subscription, its reader), so
//! however the response ends (terminal event, client gone, stalled client,
//! shutdown) dropping the body releases all of it. The one exception is the
//! reader of a stream that delivered its terminal event: it is handed to the
//! connection and detached once the client has read the response (see
//! [`crate::connection`]), because only then may its leaving delete the
//! search's stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use contract::EntryId;
use futures_util::Stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use service_runtime::{search_span, trace_context};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::app::App;
use crate::connection::Connection;
use crate::hub::{EntryKind, Next, Subscription, Wake};
use crate::reader::{self, Attach, Reader};
use crate::response::{self, Body, SearchIdLog};
use crate::sse;

/// Answers a stream request; `id` is the path segment as sent.
pub(crate) async fn open(
    app: &Arc<App>,
    req: &Request<Incoming>,
    id: &str,
    connection: &Arc<Connection>,
) -> Response<Body> {
    let Some(search_id) = hyphenated_uuid(id) else {
        return ApiError::field(
            "search_id",
            "must be a UUID in its hyphenated form, as returned by the submission",
        )
        .into_response();
    };
    let span = search_span!(
        "sse.stream",
        otel.kind = "server",
        search_id = %search_id,
        events = tracing::field::Empty,
        reason = tracing::field::Empty,
    );
    // The search's own trace if this instance took its POST, else the client's.
    if trace_context::enabled() {
        let parent = app
            .traces
            .post_of(search_id)
            .or_else(|| trace_context::from_headers(req.headers()));
        trace_context::continue_trace(&span, parent);
    }
    let mut response = try_open(app, req, search_id, connection, span)
        .await
        .unwrap_or_else(ApiError::into_response);
    response.extensions_mut().insert(SearchIdLog(search_id));
    response
}

async fn try_open(
    app: &Arc<App>,
    req: &Request<Incoming>,
    search_id: Uuid,
    connection: &Arc<Connection>,
    span: Span,
) -> Result<Response<Body>, ApiError> {
    let after = last_event_id(req.headers(), req.uri().query())?;
    let attached = reader::attach(app, search_id, after)
        .instrument(search_span!(parent: &span, "sse.attach"))
        .await
        .map_err(|error| app.redis_failed("attach", Some(search_id), &error))?;
    match attached {
        Attach::Unknown => Err(ApiError::UnknownSearch),
        // 204 is what makes a reconnecting EventSource stop for good.
        Attach::Gone if after.is_some() => Ok(response::empty(StatusCode::NO_CONTENT)),
        Attach::Gone => Err(ApiError::SearchGone),
        // Refused rather than served: such a client would wait for events that
        // can never come after its id, the terminal one included.
        Attach::Beyond => Err(ApiError::field(
            "last_event_id",
            "is after the last event of this search",
        )),
        Attach::Open {
            requested_at_ms,
            terminal,
            mut reader,
        } => {
            if let Some(reader) = &mut reader {
                reader.trace_in(span.clone());
            }
            if let (Some(after), Some(terminal)) = (after, terminal)
                && after >= terminal
            {
                // The client has everything; as the reader that saw the end it
                // may be the one whose leaving deletes the stream.
                if let Some(reader) = &mut reader {
                    reader.saw_terminal();
                }
                return Ok(response::empty(StatusCode::NO_CONTENT));
            }
            let subscription =
                app.hub
                    .subscribe(search_id, requested_at_ms, terminal.is_some(), after);
            let end = StreamEnd::new(app.clone(), search_id, reader, connection.clone(), span);
            let retry = sse::retry(app.config.sse_retry);
            let body = events(subscription, end, retry, app.closing.clone());
            Ok(event_stream_response(StreamBody::new(body).boxed_unsync()))
        }
    }
}

/// The search id of the path: only the hyphenated form (any case), the one the
/// API hands out, so one search has one URL. `Uuid::try_parse` alone would also
/// take the simple, braced and `urn:uuid:` forms, all of other lengths.
fn hyphenated_uuid(id: &str) -> Option<Uuid> {
    const HYPHENATED_LEN: usize = 36;
    (id.len() == HYPHENATED_LEN)
        .then(|| Uuid::try_parse(id).ok())
        .flatten()
}

/// The resume point: the `Last-Event-ID` header, else the `last_event_id` query
/// parameter. Empty counts as absent; anything else must be an entry id, since
/// silently replaying from the start would duplicate events.
fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Result<Option<EntryId>, ApiError> {
    let invalid = || {
        ApiError::field(
            "last_event_id",
            "must be an event id of the form <ms>-<seq>",
        )
    };
    let raw = match headers.get("last-event-id") {
        Some(value) => value.to_str().map_err(|_| invalid())?,
        None => query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("last_event_id="))
            .unwrap_or(""),
    };
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| invalid())
}

/// The 200 head of an event stream around `body`.
fn event_stream_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(sse::CONTENT_TYPE));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer, or events would arrive in bursts.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The body: `retry:`, then the feed from the subscription's cursor, until the
/// terminal event, the stream's disappearance or shutdown. Idle streams send a
/// keep-alive comment on each hub tick that found them quiet.
fn events(
    mut subscription: Subscription,
    mut end: StreamEnd,
    retry: Bytes,
    closing: CancellationToken,
) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> {
    async_stream::stream! {
        yield Ok(Frame::data(retry));
        let mut quiet = true;
        loop {
            match subscription.next() {
                Next::Entry(entry) => {
                    end.delivered();
                    quiet = false;
                    let kind = entry.kind;
                    yield Ok(Frame::data(entry.frame));
                    if kind.is_terminal() {
                        end.finish(kind);
                        break;
                    }
                    continue;
                }
                Next::Ended(kind) => {
                    end.finish(kind);
                    break;
                }
                Next::Vanished => {
                    end.vanished();
                    break;
                }
                Next::Wait => {}
            }
            let wake = tokio::select! {
                biased;
                _ = closing.cancelled() => None,
                wake = subscription.wait() => Some(wake),
            };
            match wake {
                None => {
                    end.shutting_down();
                    break;
                }
                Some(Wake::Entries) => {}
                Some(Wake::Tick) => {
                    if quiet {
                        yield Ok(Frame::data(sse::KEEP_ALIVE));
                    }
                    quiet = true;
                }
            }
        }
    }
}

/// Why a stream ended, when the body knows; otherwise the client left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    /// The terminal event was delivered.
    Terminal,
    /// The terminal event was delivered and it was a timeout.
    Timeout,
    /// The service is shutting down.
    Shutdown,
    /// The search's stream is gone without its terminal event.
    StreamGone,
}

/// The accounting of one open stream: counted open while it exists, logged
/// when it goes, and the owner of its reader registration.
struct StreamEnd {
    /// Metrics and the reader's shared state.
    app: Arc<App>,
    /// The Redis registration; `None` when the search had no count to join,
    /// and while being handed over on drop.
    reader: Option<Reader>,
    /// The connection the stream runs on: it keeps a finished stream's reader
    /// until the client has read the response, and knows if it was cut off.
    connection: Arc<Connection>,
    /// Events delivered.
    events: u64,
    /// Why it ended, if the body ended it.
    reason: Option<EndReason>,
    /// When it opened, for the log line.
    opened: Instant,
    /// The search, for the log line.
    search_id: Uuid,
    /// `sse.stream`: the parent of the first event's and the terminal
    /// event's spans.
    span: Span,
}

impl StreamEnd {
    fn new(
        app: Arc<App>,
        search_id: Uuid,
        reader: Option<Reader>,
        connection: Arc<Connection>,
        span: Span,
    ) -> StreamEnd {
        app.metrics.sse_streams_open.inc();
        StreamEnd {
            span,
            search_id,
            app,
            reader,
            connection,
            events: 0,
            reason: None,
            opened: Instant::now(),
        }
    }

    fn delivered(&mut self) {
        if self.events == 0 {
            drop(search_span!(parent: &self.span, "sse.first_event"));
        }
        self.events += 1;
        self.app.metrics.sse_events_delivered.inc();
    }

    /// The service is shutting down.
    fn shutting_down(&mut self) {
        self.reason = Some(EndReason::Shutdown);
    }

    /// The search's stream is gone; the client never got the terminal event,
    /// and learns from its reconnect that the search is over.
    fn vanished(&mut self) {
        self.reason = Some(EndReason::StreamGone);
    }

    /// The client has the terminal event (of `kind`).
    fn finish(&mut self, kind: EntryKind) {
        drop(search_span!(parent: &self.span, "sse.terminal", kind = ?kind));
        if let Some(reader) = &mut self.reader {
            reader.saw_terminal();
        }
        self.reason = Some(if kind == EntryKind::TimedOut {
            EndReason::Timeout
        } else {
            EndReason::Terminal
        });
    }
}

impl Drop for StreamEnd {
    /// Logs the end; a reader that got the terminal event moves to the
    /// connection, any other is detached now (its drop).
    fn drop(&mut self) {
        self.app.metrics.sse_streams_open.dec();
        let reason = match self.reason {
            Some(EndReason::Terminal) => "terminal",
            Some(EndReason::Timeout) => "timeout",
            Some(EndReason::Shutdown) => "shutdown",
            Some(EndReason::StreamGone) => "stream_gone",
            None if self.connection.is_stalled() => "slow",
            None => "client_gone",
        };
        tracing::info!(
            search_id = %self.search_id,
            reason,
            events = self.events,
            open_ms = self.opened.elapsed().as_millis() as u64,
            "stream ended"
        );
        self.span.record("reason", reason);
        self.span.record("events", self.events);
        let finished = matches!(self.reason, Some(EndReason::Terminal | EndReason::Timeout));
        if let Some(reader) = self.reader.take()
            && finished
        {
            self.connection.keep_finished_reader(reader);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(last_event_id: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = last_event_id {
            h.insert("last-event-id", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_resume_point_comes_from_the_header_or_the_query() {
        let id = |s: &str| Some(s.parse::<EntryId>().unwrap());
        assert_eq!(last_event_id(&headers(None), None), Ok(None));
        assert_eq!(last_event_id(&headers(Some("5-1")), None), Ok(id("5-1")));
        assert_eq!(
            last_event_id(&headers(None), Some("a=b&last_event_id=7-0")),
            Ok(id("7-0"))
        );
        assert_eq!(
            last_event_id(&headers(Some("5-1")), Some("last_event_id=7-0")),
            Ok(id("5-1")),
            "the header wins, as EventSource sends it on reconnect"
        );
        assert_eq!(last_event_id(&headers(Some("")), None), Ok(None));
    }

    #[test]
    fn only_hyphenated_search_ids_are_accepted() {
        let id = Uuid::new_v4();
        let hyphenated = id.hyphenated().to_string();
        assert_eq!(hyphenated_uuid(&hyphenated), Some(id));
        assert_eq!(hyphenated_uuid(&hyphenated.to_uppercase()), Some(id));
        for other in [
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
            format!("{hyphenated}0"),
            "not-a-uuid".to_owned(),
        ] {
            assert_eq!(hyphenated_uuid(&other), None, "{other}");
        }
    }

    #[test]
    fn a_malformed_resume_point_is_a_field_error() {
        for (header, query) in [(Some("yesterday"), None), (None, Some("last_event_id=1-x"))] {
            let err = last_event_id(&headers(header), query).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            let body = serde_json::to_value(err.envelope()).unwrap();
            assert_eq!(body["errors"][0]["field"], "last_event_id");
        }
    }

    #[tokio::test]
    async fn an_open_stream_holds_little_memory() {
        let app = crate::app::tests::app();
        let search_id = Uuid::new_v4();
        let subscription = app.hub.subscribe(search_id, Some(0), false, None);
        let end = StreamEnd::new(
            app.clone(),
            search_id,
            None,
            Arc::new(Connection::default()),
            Span::none(),
        );
        let body = events(
            subscription,
            end,
            sse::retry(app.config.sse_retry),
            app.closing.clone(),
        );
        let size = std::mem::size_of_val(&body);
        assert!(size < 1024, "an event stream body takes {size} bytes");
        drop(body);
        assert_eq!(app.metrics.sse_streams_open.get(), 0);
        assert_eq!(app.metrics.hub_feeds_active.get(), 0);
    }
}
