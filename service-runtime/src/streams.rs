//! The Redis operations on the contract's streams that both services perform,
//! written once so their key and argument order cannot drift apart.

use std::sync::LazyLock;
use std::time::Duration;

use contract::SearchEvent;
use contract::keys::{EVENTS_CHANNEL, REQUESTS_STREAM, results_key, state_key};
use redis::aio::ConnectionLike;

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
        Err(error) if error.code() != Some("BUSYGROUP") => Err(error),
        _ => Ok(()),
    }
}

/// Appends `event` to its search's result stream through
/// `contract::scripts::APPEND_EVENT`: at most once per slot, never after the
/// terminal event, with both keys' TTL refreshed to `ttl` and the pub/sub nudge
/// sent, all atomically. Returns the new entry id, or `None` when nothing was
/// written because the slot was taken or the search had already ended.
pub async fn append_event(
    conn: &mut impl ConnectionLike,
    event: &SearchEvent,
    ttl: Duration,
) -> redis::RedisResult<Option<String>> {
    APPEND_EVENT
        .key(results_key(event.search_id))
        .key(state_key(event.search_id))
        .arg(event.kind.slot())
        .arg(event.to_json())
        .arg(ttl.as_secs())
        .arg(EVENTS_CHANNEL)
        .arg(event.search_id.to_string())
        .invoke_async(conn)
        .await
}
