//! Reads new entries of the feeds that were marked for a fetch.
//!
//! Each read is `XRANGE <results> (<last id> + COUNT 512` on the shared
//! multiplexed connection, so one round trip serves every local client of the
//! search. Many searches are read concurrently (pipelined on the one
//! connection), bounded so a burst of nudges cannot pile up unbounded work.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use contract::EntryId;
use contract::keys::DATA_FIELD;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::Value;
use redis::streams::{StreamId, StreamRangeReply};
use tokio::sync::mpsc;

use super::{Feed, Hub};

/// Entries per read; a longer backlog is read in several pages.
const PAGE: usize = 512;

/// Reads in flight at once.
const CONCURRENCY: usize = 64;

/// Takes feeds off the queue and reads them until shutdown.
pub(super) async fn run(hub: Arc<Hub>, mut queue: mpsc::UnboundedReceiver<Arc<Feed>>) {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            _ = hub.shutdown.cancelled() => return,
            Some(_) = running.next(), if !running.is_empty() => {}
            Some(feed) = queue.recv(), if running.len() < CONCURRENCY => {
                running.push(fetch(&hub, feed));
            }
        }
    }
}

/// Reads everything after the feed's last entry. Returns true if and only if
/// the read reached the end of the stream (or the terminal event). On a Redis
/// error the feed is left as it is: the sweep asks again.
pub(super) async fn fetch(hub: &Hub, feed: Arc<Feed>) -> bool {
    // Cleared before reading: a nudge that arrives during the read queues
    // another one instead of being lost.
    feed.fetch_wanted.store(false, Ordering::Release);
    let mut conn = hub.redis.commands();
    loop {
        let start = match feed.last_id() {
            Some(id) => format!("({id}"),
            None => "-".to_owned(),
        };
        let reply: redis::RedisResult<StreamRangeReply> = redis::cmd("XRANGE")
            .arg(&feed.results_key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await;
        let entries = match reply {
            Ok(reply) => {
                hub.link.up();
                reply.ids
            }
            Err(error) => {
                hub.metrics.redis_error("fetch");
                hub.link.down(&error);
                return false;
            }
        };
        let full_page = entries.len() == PAGE;
        let appended = feed.append(entries.into_iter().filter_map(parse_entry));
        hub.record(&feed, &appended);
        if !full_page || feed.is_terminal() {
            return true;
        }
    }
}

/// An entry's id and `data` field; `None` for an id Redis would never produce.
fn parse_entry(mut entry: StreamId) -> Option<(EntryId, Option<Vec<u8>>)> {
    let id = entry.id.parse().ok()?;
    let data = match entry.map.remove(DATA_FIELD) {
        Some(Value::BulkString(bytes)) => Some(bytes),
        Some(Value::SimpleString(text)) => Some(text.into_bytes()),
        _ => None,
    };
    if data.is_none() {
        tracing::warn!(entry_id = %entry.id, "result entry without a data field; skipped");
    }
    Some((id, data))
}
