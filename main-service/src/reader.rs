//! SSE readers as Redis knows them: attaching (which also tells whether the
//! search exists, runs or is gone) and detaching (which deletes a finished
//! search's stream once its last reader that saw the end has left).
//!
//! The reader count lives in the search's state hash, so it spans every
//! main-service instance. A [`Reader`] is the local proof of one attach: its
//! drop detaches exactly once, however the stream ended.

use std::sync::{Arc, LazyLock};

use contract::EntryId;
use contract::keys::{results_key, state_key};
use contract::scripts;
use redis::{Script, Value};
use uuid::Uuid;

use crate::app::App;

/// The attach script, hashed once.
static ATTACH_READER: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::ATTACH_READER));

/// The detach script, hashed once.
static DETACH_READER: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::DETACH_READER));

/// What attaching found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attach {
    /// No such search (never submitted, or expired). Nothing was registered.
    Unknown,
    /// The search finished and its stream was deleted. Nothing was registered.
    Gone,
    /// The search's events can be read; one reader was registered.
    Open {
        /// POST time in Unix ms, if the state hash records it.
        requested_at_ms: Option<u64>,
        /// The terminal event's entry id, if the search already ended.
        terminal: Option<EntryId>,
    },
}

/// Registers a reader of `search_id` and reports what it will find. On
/// [`Attach::Open`] the caller must hold a [`Reader`] so it is detached again.
pub(crate) async fn attach(app: &App, search_id: Uuid) -> redis::RedisResult<Attach> {
    let reply: Vec<Value> = ATTACH_READER
        .key(state_key(search_id))
        .key(results_key(search_id))
        .invoke_async(&mut app.redis.commands())
        .await?;
    parse_attach(&reply).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::Parse,
            "unexpected reply from the attach script",
        ))
    })
}

/// Interprets the attach script's reply: `{0}`, `{2, terminal}` or
/// `{1, requested_at, terminal}`, empty strings meaning unset.
fn parse_attach(reply: &[Value]) -> Option<Attach> {
    let text = |i: usize| -> Option<String> {
        match reply.get(i)? {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
            Value::SimpleString(text) => Some(text.clone()),
            _ => None,
        }
    };
    match reply.first()? {
        Value::Int(0) => Some(Attach::Unknown),
        Value::Int(2) => Some(Attach::Gone),
        Value::Int(1) => Some(Attach::Open {
            requested_at_ms: text(1).and_then(|t| t.parse().ok()),
            terminal: text(2).and_then(|t| t.parse().ok()),
        }),
        _ => None,
    }
}

/// One attached reader; dropping it detaches it.
pub(crate) struct Reader {
    /// Redis, the metrics, and the tracker that shutdown waits on.
    app: Arc<App>,
    /// The search read.
    search_id: Uuid,
    /// Whether the client received the terminal event: only then may detaching
    /// delete the stream, because a client that left early may come back.
    saw_terminal: bool,
}

impl Reader {
    /// Takes responsibility for a reader that [`attach`] registered.
    pub(crate) fn new(app: Arc<App>, search_id: Uuid) -> Reader {
        Reader {
            app,
            search_id,
            saw_terminal: false,
        }
    }

    /// Records that the client has the terminal event.
    pub(crate) fn saw_terminal(&mut self) {
        self.saw_terminal = true;
    }

    /// The search read.
    pub(crate) fn search_id(&self) -> Uuid {
        self.search_id
    }

    /// What the reader shares with the rest of the service.
    pub(crate) fn app(&self) -> &Arc<App> {
        &self.app
    }
}

impl Drop for Reader {
    /// Runs the detach script in a task, since drop cannot wait. The task is
    /// tracked so shutdown waits for it; without a runtime (the process is
    /// already exiting) the count is left to the key's TTL.
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let app = self.app.clone();
        let search_id = self.search_id;
        let saw_terminal = self.saw_terminal;
        self.app.readers.spawn_on(
            async move {
                let detached: redis::RedisResult<i64> = DETACH_READER
                    .key(state_key(search_id))
                    .key(results_key(search_id))
                    .arg(if saw_terminal { "1" } else { "0" })
                    .invoke_async(&mut app.redis.commands())
                    .await;
                match detached {
                    Ok(1) => tracing::debug!(%search_id, "last reader left; results deleted"),
                    Ok(_) => {}
                    Err(error) => {
                        app.metrics.redis_error("detach");
                        tracing::warn!(%search_id, %error, "could not detach a reader; the key's TTL will clean up");
                    }
                }
            },
            &runtime,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn attach_replies_are_interpreted() {
        assert_eq!(parse_attach(&[Value::Int(0)]), Some(Attach::Unknown));
        assert_eq!(
            parse_attach(&[Value::Int(2), bulk("5-0")]),
            Some(Attach::Gone)
        );
        assert_eq!(
            parse_attach(&[Value::Int(1), bulk("1700000000000"), bulk("")]),
            Some(Attach::Open {
                requested_at_ms: Some(1_700_000_000_000),
                terminal: None
            })
        );
        assert_eq!(
            parse_attach(&[Value::Int(1), bulk(""), bulk("17-2")]),
            Some(Attach::Open {
                requested_at_ms: None,
                terminal: Some(EntryId { ms: 17, seq: 2 })
            })
        );
        assert_eq!(parse_attach(&[]), None);
        assert_eq!(parse_attach(&[Value::Int(7)]), None);
    }
}
