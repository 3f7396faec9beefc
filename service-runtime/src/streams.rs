//! The Redis operations on the contract's streams that both services perform,
//! written once so their key and argument order cannot drift apart.

use std::sync::LazyLock;
use std::time::Duration;

use contract::EntryId;
use contract::keys::{EVENTS_CHANNEL, REQUESTS_STREAM, events_channel, results_key, state_key};
use contract::{EventKind, SearchEvent, SupplierOutcomes, Tally};
use redis::aio::ConnectionLike;

use crate::redis_failure::ErrorCode;

/// The append script, sent by hash (EVALSHA) with automatic fallback to its body.
static APPEND_EVENT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(contract::scripts::APPEND_EVENT));

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

/// What [`append_event`] did.
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
    append_reported_event(conn, event, &SupplierOutcomes::new(), ttl, basis, nudges).await
}

/// [`append_event`] for a terminal event that reports each supplier's outcome
/// (see [`SearchEvent::to_json_reporting`]); the report changes neither the
/// slot nor the tally check.
pub async fn append_reported_event(
    conn: &mut impl ConnectionLike,
    event: &SearchEvent,
    suppliers: &SupplierOutcomes,
    ttl: Duration,
    basis: Option<Tally>,
    nudges: Nudges,
) -> redis::RedisResult<Appended> {
    let tally = match (&event.kind, basis) {
        (EventKind::Result { results, .. }, _) => results.len().to_string(),
        (kind, Some(basis)) if kind.is_terminal() => basis.to_arg(),
        _ => String::new(),
    };
    let (channel, publish) = match nudges {
        Nudges::Broadcast => (EVENTS_CHANNEL.to_owned(), "PUBLISH"),
        Nudges::Sharded => (events_channel(event.search_id), "SPUBLISH"),
    };
    let written: redis::RedisResult<Option<String>> = APPEND_EVENT
        .key(results_key(event.search_id))
        .key(state_key(event.search_id))
        .arg(event.kind.slot())
        .arg(event.to_json_reporting(suppliers))
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
            .map_err(|_| crate::reply::unexpected("an entry id")),
        Ok(None) => Ok(Appended::Skipped),
        Err(error) if ErrorCode::of(&error) == Some(ErrorCode::StaleTally) => {
            let now = error.detail().and_then(Tally::parse).unwrap_or_default();
            Ok(Appended::Stale(now))
        }
        Err(error) => Err(error),
    }
}
