//! The Redis operations on the contract's streams that both services perform,
//! written once so their key and argument order cannot drift apart.

use std::sync::LazyLock;
use std::time::Duration;

use contract::EntryId;
use contract::keys::{EVENTS_CHANNEL, REQUESTS_STREAM, events_channel, results_key, state_key};
use contract::{EventKind, SearchEvent, SupplierOutcomes, Tally};
use redis::aio::ConnectionLike;
use uuid::Uuid;

use crate::redis_failure::ErrorCode;

/// The append script, sent by hash (EVALSHA) with automatic fallback to its body.
static APPEND_EVENT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(contract::scripts::APPEND_EVENT));

/// The batch append script, sent like [`APPEND_EVENT`].
static APPEND_EVENTS: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(contract::scripts::APPEND_EVENTS));

/// Creates consumer group `group` on the requests stream from id `0` (with
/// MKSTREAM), so searches queued before any provider ever ran are processed.
/// An existing group (BUSYGROUP) is success.
pub async fn create_group(conn: &mut impl ConnectionLike, group: &str) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(REQUESTS_STREAM)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(error) if ErrorCode::of(&error) != Some(ErrorCode::BusyGroup) => Err(error),
        _ => Ok(()),
    }
}

/// How an append is announced to the main-service instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudges {
    /// PUBLISH on the one channel `flight.search.events` (a single Redis).
    Broadcast,
    /// SPUBLISH on the search's own channel `{flight.search.results:<id>}:events`
    /// (a Redis Cluster, where a PUBLISH would be forwarded to every node).
    Sharded,
}

/// What [`append_event`] did, or [`append_events`] did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The event is in the stream under this entry id.
    Written(EntryId),
    /// Nothing was written: the slot was taken or the search had already ended.
    Skipped,
    /// A terminal event was refused because the search's `result` events add
    /// up to this tally, not the one it was based on; recount and retry.
    Stale(Tally),
}

/// Appends `event` to its search's result stream through
/// `contract::scripts::APPEND_EVENT`: at most once per slot, never after the
/// terminal event, with both keys' TTL refreshed to `ttl` and the pub/sub nudge
/// sent as `nudges` says, all atomically. A `result` always updates the
/// search's tally; a terminal event given a `basis` is written only if the
/// tally still matches it.
pub async fn append_event(
    conn: &mut impl ConnectionLike,
    event: &SearchEvent,
    ttl: Duration,
    basis: Option<Tally>,
    nudges: Nudges,
) -> redis::RedisResult<Appended> {
    let tally = tally_arg(&event.kind, basis);
    let (channel, publish) = nudge_target(event.search_id, nudges);
    let written: redis::RedisResult<Option<String>> = APPEND_EVENT
        .key(results_key(event.search_id))
        .key(state_key(event.search_id))
        .arg(event.kind.slot())
        .arg(event.to_json())
        .arg(ttl.as_secs())
        .arg(channel)
        .arg(event.search_id.to_string())
        .arg(tally)
        .arg(publish)
        .invoke_async(conn)
        .await;
    match written {
        Ok(Some(id)) => id
            .parse()
            .map(Appended::Written)
            .map_err(|_| crate::redis_reply::unexpected("an entry id")),
        Ok(None) => Ok(Appended::Skipped),
        Err(error) if ErrorCode::of(&error) == Some(ErrorCode::StaleTally) => {
            let now = error.detail().and_then(Tally::parse).unwrap_or_default();
            Ok(Appended::Stale(now))
        }
        Err(error) => Err(error),
    }
}

/// One event for [`append_events`]: the event, the supplier report a terminal
/// event carries (empty for none) and the tally a terminal event is based on.
pub struct Batched<'a> {
    /// The event.
    pub event: &'a SearchEvent,
    /// Each supplier's outcome, reported by a terminal event.
    pub report: &'a SupplierOutcomes,
    /// What a terminal event's `completed` total was counted from.
    pub basis: Option<Tally>,
}

/// Appends `events`, all of search `search_id`, in order and in one atomic
/// step through `contract::scripts::APPEND_EVENTS`: each by the rules of
/// [`append_event`], with the TTL refreshed and one nudge sent if any was
/// written. Returns what happened to each, in order.
pub async fn append_events(
    conn: &mut impl ConnectionLike,
    search_id: Uuid,
    events: &[Batched<'_>],
    ttl: Duration,
    nudges: Nudges,
) -> redis::RedisResult<Vec<Appended>> {
    let (channel, publish) = nudge_target(search_id, nudges);
    let mut invocation = APPEND_EVENTS.key(results_key(search_id));
    invocation
        .key(state_key(search_id))
        .arg(ttl.as_secs())
        .arg(channel)
        .arg(search_id.to_string())
        .arg(publish);
    for batched in events {
        let event = batched.event;
        invocation
            .arg(event.kind.slot())
            .arg(event.to_json_reporting(batched.report))
            .arg(tally_arg(&event.kind, batched.basis));
    }
    let replies: Vec<redis::Value> = invocation.invoke_async(conn).await?;
    if replies.len() != events.len() {
        return Err(crate::redis_reply::unexpected(
            "one reply per appended event",
        ));
    }
    replies.into_iter().map(appended_from).collect()
}

/// One element of [`append_events`]' reply.
fn appended_from(reply: redis::Value) -> redis::RedisResult<Appended> {
    use redis::Value;
    match reply {
        Value::BulkString(id) => std::str::from_utf8(&id)
            .ok()
            .and_then(|id| id.parse().ok())
            .map(Appended::Written)
            .ok_or_else(|| crate::redis_reply::unexpected("an entry id")),
        Value::Int(0) => Ok(Appended::Skipped),
        Value::Array(stale) => match stale.as_slice() {
            [Value::BulkString(now)] => std::str::from_utf8(now)
                .ok()
                .and_then(Tally::parse)
                .map(Appended::Stale)
                .ok_or_else(|| crate::redis_reply::unexpected("a tally")),
            _ => Err(crate::redis_reply::unexpected("a tally")),
        },
        _ => Err(crate::redis_reply::unexpected("an append's outcome")),
    }
}

/// The script's tally argument for `kind`: a `result`'s offer count, a
/// terminal event's basis, else empty.
fn tally_arg(kind: &EventKind, basis: Option<Tally>) -> String {
    match (kind, basis) {
        (EventKind::Result { results, .. }, _) => results.len().to_string(),
        (kind, Some(basis)) if kind.is_terminal() => basis.to_arg(),
        _ => String::new(),
    }
}

/// The channel an append of `search_id` is announced on, and the command.
fn nudge_target(search_id: Uuid, nudges: Nudges) -> (String, &'static str) {
    match nudges {
        Nudges::Broadcast => (EVENTS_CHANNEL.to_owned(), "PUBLISH"),
        Nudges::Sharded => (events_channel(search_id), "SPUBLISH"),
    }
}
