//! SSE readers as Redis knows them: attaching (which also tells whether the
//! search exists, runs or is gone), looking up what an attach would find
//! without attaching (for `HEAD`), and detaching (which deletes a finished
//! search's stream once its last reader that saw the end has left).
//!
//! The reader count lives in the search's state hash, so it spans every
//! main-service instance. A [`Reader`] is the local proof of one counted
//! attach: its drop detaches exactly once, however the stream ended.
//!
//! A count that goes up and never comes down keeps a finished search's stream
//! until its TTL, so every attach that may have counted is undone:
//!
//! * Each attach names its reader with a fresh token that the scripts record
//!   next to the count. Detaching a token counts down once at most, and not at
//!   all if its attach never ran, so detaching can be retried and a lost attach
//!   reply can be answered with a detach.
//! * The attach runs in a task of its own, not in the request's future, which
//!   hyper drops when the client disconnects. The task makes the [`Reader`] as
//!   soon as the script answers and hands it to the handler; if the handler is
//!   gone (client left, or it stopped waiting and answered 503), the reader is
//!   dropped on the spot and detached. If the script's reply never came, the
//!   task detaches the token in case the script ran anyway.
//! * A failed detach is retried a few times with backoff before the count is
//!   left to the key's TTL.
//!
//! These tasks are tracked by `App::readers`, which shutdown waits for.

use std::io;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use contract::EntryId;
use contract::keys::{results_key, state_key};
use contract::scripts::{self, attach as status};
use redis::{Script, Value};
use service_runtime::backoff::Backoff;
use service_runtime::redis_link::COMMAND_TIMEOUT;
use service_runtime::redis_reply::text;
use service_runtime::search_span;
use tokio::sync::oneshot;
use tracing::Instrument;
use uuid::Uuid;

use crate::app::App;

/// The attach script, hashed once.
static ATTACH_READER: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::ATTACH_READER));

/// The lookup script of a `HEAD`, hashed once.
static LOOK_UP_SEARCH: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::LOOK_UP_SEARCH));

/// The detach script, hashed once.
static DETACH_READER: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::DETACH_READER));

/// How long a stream request waits for its attach before answering 503: as
/// long as any Redis command may take. The attach itself carries on.
const ATTACH_WAIT: Duration = COMMAND_TIMEOUT;

/// Attempts at a detach before the count is left to the key's TTL.
const DETACH_ATTEMPTS: u32 = 4;

/// Ceiling of the jittered pause before the first retry of a detach; doubled
/// for each further one, so the attempts can span a Redis hiccup of a second or two.
const DETACH_RETRY_DELAY: Duration = Duration::from_millis(250);

/// What attaching found: the attach (or lookup) script's reply, decoded once
/// by [`Attach::decode`].
pub(crate) enum Attach {
    /// No such search (never submitted, or expired). Nothing was registered.
    Unknown,
    /// The search finished and its stream was deleted. Nothing was registered.
    Gone,
    /// The resume point lies beyond the search's last event, so it never came
    /// from this search. Nothing was registered.
    Beyond,
    /// The search's events can be read.
    Open {
        /// POST time in Unix ms, if the state hash records it.
        requested_at_ms: Option<u64>,
        /// The terminal event's entry id, if the search already ended.
        terminal: Option<EntryId>,
        /// The registration to release when the client is done; `None` when the
        /// search has no state hash, so there was no count to raise.
        reader: Option<Reader>,
    },
}

/// Registers a reader of `search_id` that resumes after `after`, and reports
/// what it will find. The reader of an [`Attach::Open`] must be kept until the
/// client is done.
///
/// Fails when Redis fails or does not answer within [`ATTACH_WAIT`]; whatever
/// the attach registered is then released by its task.
pub(crate) async fn attach(
    app: &Arc<App>,
    search_id: Uuid,
    after: Option<EntryId>,
) -> redis::RedisResult<Attach> {
    let (reply, answer) = oneshot::channel();
    app.readers
        .spawn("attach", register(app.clone(), search_id, after, reply));
    match tokio::time::timeout(ATTACH_WAIT, answer).await {
        Ok(Ok(attached)) => attached,
        // The task was dropped unfinished (the runtime is shutting down).
        Ok(Err(_)) => Err(io::Error::other("attach abandoned").into()),
        Err(_) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, "attach not answered in time").into())
        }
    }
}

/// The attach task: runs the script and sends the outcome to the handler. A
/// reader the handler can no longer take comes back from `send` and is
/// detached by its drop.
async fn register(
    app: Arc<App>,
    search_id: Uuid,
    after: Option<EntryId>,
    reply: oneshot::Sender<redis::RedisResult<Attach>>,
) {
    // The client left before the task ran: nothing to register, or undo.
    if reply.is_closed() {
        return;
    }
    let token = Uuid::new_v4();
    let ran: redis::RedisResult<Vec<Value>> = ATTACH_READER
        .key(state_key(search_id))
        .key(results_key(search_id))
        .arg(token_arg(token))
        // Display writes no leading zeros, as the script expects.
        .arg(after.map(|id| id.to_string()).unwrap_or_default())
        .invoke_async(&mut app.redis.commands())
        .await;
    let found = ran.and_then(|reply| {
        Attach::decode(&reply, || Some(Reader::new(app.clone(), search_id, token)))
    });
    let attached = match found {
        Ok(found) => Ok(found),
        Err(error) => {
            // A refused connection never carried the script; anything else
            // (no reply in time, a dropped connection, an unreadable reply) may
            // have counted the reader.
            if !error.is_connection_refusal() {
                detach(&app, search_id, token, false).await;
            }
            Err(error)
        }
    };
    drop(reply.send(attached));
}

/// What a reader of `search_id` resuming after `after` would find, without
/// registering one: the answer to a `HEAD` on the stream, which must not
/// count as a reader. An [`Attach::Open`] from here holds no reader.
pub(crate) async fn look_up(
    app: &App,
    search_id: Uuid,
    after: Option<EntryId>,
) -> redis::RedisResult<Attach> {
    let reply: Vec<Value> = LOOK_UP_SEARCH
        .key(state_key(search_id))
        .key(results_key(search_id))
        .arg("")
        .arg(after.map(|id| id.to_string()).unwrap_or_default())
        .invoke_async(&mut app.redis.commands())
        .await?;
    // A lookup registers nobody, so there is no reader to hand out.
    Attach::decode(&reply, || None)
}

impl Attach {
    /// Decodes the attach or lookup script's reply, `{status, ...}` with the
    /// statuses of [`contract::scripts::attach`]; empty strings mean unset.
    /// `counted` gives the reader to hold when the reply says one was
    /// registered. A parse error for any other shape.
    fn decode(
        reply: &[Value],
        counted: impl FnOnce() -> Option<Reader>,
    ) -> redis::RedisResult<Attach> {
        fn parsed_at<T: std::str::FromStr>(reply: &[Value], i: usize) -> Option<T> {
            reply.get(i).and_then(text)?.parse().ok()
        }
        let unexpected = || {
            redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected reply from the attach script",
            ))
        };
        let Some(Value::Int(found)) = reply.first() else {
            return Err(unexpected());
        };
        match *found {
            status::UNKNOWN => Ok(Attach::Unknown),
            status::GONE => Ok(Attach::Gone),
            status::BEYOND => Ok(Attach::Beyond),
            status::OPEN => {
                let Some(Value::Int(registered)) = reply.get(3) else {
                    return Err(unexpected());
                };
                Ok(Attach::Open {
                    requested_at_ms: parsed_at(reply, 1),
                    terminal: parsed_at(reply, 2),
                    reader: if *registered == 1 { counted() } else { None },
                })
            }
            _ => Err(unexpected()),
        }
    }
}

/// The token as the scripts receive it: 32 hex digits.
fn token_arg(token: Uuid) -> String {
    token.simple().to_string()
}

/// Runs the detach script for `token`, retrying failures a few times. Safe to
/// run for a token that was never counted, or twice.
async fn detach(app: &App, search_id: Uuid, token: Uuid, saw_terminal: bool) {
    let mut backoff = Backoff::new(DETACH_RETRY_DELAY, DETACH_RETRY_DELAY * 8);
    for attempt in 1..=DETACH_ATTEMPTS {
        let detached: redis::RedisResult<i64> = DETACH_READER
            .key(state_key(search_id))
            .key(results_key(search_id))
            .arg(token_arg(token))
            .arg(if saw_terminal { "1" } else { "0" })
            .invoke_async(&mut app.redis.commands())
            .await;
        match detached {
            Ok(1) => {
                tracing::debug!(%search_id, "last reader left; results deleted");
                tracing::Span::current().record("deleted", true);
                if service_runtime::trace_context::enabled() {
                    app.traces.forget(search_id);
                }
                return;
            }
            Ok(_) => {
                tracing::Span::current().record("deleted", false);
                return;
            }
            Err(error) => {
                app.metrics.redis_error("detach");
                if attempt == DETACH_ATTEMPTS {
                    tracing::warn!(%search_id, %error, "could not detach a reader; the key's TTL will clean up");
                    return;
                }
                tracing::debug!(%search_id, %error, attempt, "detach failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// One counted reader; dropping it detaches it.
pub(crate) struct Reader {
    /// Redis, the metrics, and the tracker that shutdown waits on.
    app: Arc<App>,
    /// The search read.
    search_id: Uuid,
    /// Names this reader in the state hash, so its detach counts down exactly
    /// the registration its attach made.
    token: Uuid,
    /// Whether the client received the terminal event: only then may detaching
    /// delete the stream, because a client that left early may come back.
    saw_terminal: bool,
    /// The stream's `sse.stream` span, parent of the detach's.
    span: tracing::Span,
}

impl Reader {
    /// Takes responsibility for the reader that attached with `token`.
    fn new(app: Arc<App>, search_id: Uuid, token: Uuid) -> Reader {
        Reader {
            app,
            search_id,
            token,
            saw_terminal: false,
            span: tracing::Span::none(),
        }
    }

    /// Puts the detach in the trace of the stream `span`.
    pub(crate) fn trace_in(&mut self, span: tracing::Span) {
        self.span = span;
    }

    /// Records that the client has the terminal event.
    pub(crate) fn saw_terminal(&mut self) {
        self.saw_terminal = true;
    }
}

impl Drop for Reader {
    /// Runs the detach in a task, since drop cannot wait. The task is tracked
    /// so shutdown waits for it; without a runtime (the process is already
    /// exiting) the count is left to the key's TTL.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let app = self.app.clone();
        let (search_id, token, saw_terminal) = (self.search_id, self.token, self.saw_terminal);
        let span = search_span!(
            parent: &self.span,
            "sse.detach",
            saw_terminal,
            deleted = tracing::field::Empty,
        );
        self.app.readers.spawn(
            "detach",
            async move { detach(&app, search_id, token, saw_terminal).await }.instrument(span),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn attach_replies_are_interpreted() {
        let int = |n: i64| Value::Int(n);
        // Whether the decoder asked for the reader of a counted attach.
        let asked = std::cell::Cell::new(false);
        let decode = |reply: &[Value]| {
            asked.set(false);
            Attach::decode(reply, || {
                asked.set(true);
                None
            })
        };
        assert!(matches!(
            decode(&[int(status::UNKNOWN)]),
            Ok(Attach::Unknown)
        ));
        assert!(matches!(
            decode(&[int(status::GONE), bulk("5-0")]),
            Ok(Attach::Gone)
        ));
        assert!(matches!(decode(&[int(status::BEYOND)]), Ok(Attach::Beyond)));
        assert!(!asked.get());
        let reply = [int(status::OPEN), bulk("1700000000000"), bulk(""), int(1)];
        assert!(matches!(
            decode(&reply),
            Ok(Attach::Open {
                requested_at_ms: Some(1_700_000_000_000),
                terminal: None,
                ..
            })
        ));
        assert!(asked.get(), "a counted reader is handed out");
        let reply = [int(status::OPEN), bulk(""), bulk("17-2"), int(0)];
        assert!(matches!(
            decode(&reply),
            Ok(Attach::Open {
                requested_at_ms: None,
                terminal: Some(EntryId { ms: 17, seq: 2 }),
                ..
            })
        ));
        assert!(!asked.get(), "no reader without a count");
        assert!(decode(&[]).is_err());
        assert!(decode(&[int(7)]).is_err());
        assert!(
            decode(&[int(status::OPEN), bulk(""), bulk("")]).is_err(),
            "whether the reader counted must be known"
        );
    }

    #[tokio::test]
    async fn an_attach_that_fails_leaves_no_task_behind() {
        // Nothing listens on Redis' port: the attach fails, and its task ends
        // without leaving a reader behind.
        let app = crate::app::tests::app();
        assert!(attach(&app, Uuid::new_v4(), None).await.is_err());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        assert!(
            app.readers.wait_until(deadline, "readers").await,
            "the attach task and any detach it started end"
        );
    }
}
