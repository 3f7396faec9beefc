//! Reads new entries of the feeds that were marked for a fetch.
//!
//! Each read is `XRANGE <results> (<last id> + COUNT 512` on the shared
//! multiplexed connection, so one round trip serves every local client of the
//! search. Many searches are read concurrently (pipelined on the one
//! connection), bounded so a burst of nudges cannot pile up unbounded work.
//!
//! Two queues feed it. Nudged reads (the first read of a new feed, and a
//! nudge whose entries did not continue its feed: a gap, or a bare search id)
//! are taken first, up to the whole concurrency. Rechecks, the re-reads done in
//! case a nudge was missed, are taken only when no nudged read waits, and at
//! most [`RECHECK_CONCURRENCY`] at a time: re-reading thousands of feeds after
//! a resubscription then never queues a nudged read behind them, here or in
//! Redis' pipeline.
//!
//! The reply is read entry by entry: an entry this service cannot use (no
//! `data` field, a field name that is not UTF-8) is skipped and read past,
//! rather than failing the whole read and freezing the search's feed.

use std::sync::Arc;

use contract::EntryId;
use contract::keys::DATA_FIELD;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::Value;
use service_runtime::redis_reply::{StreamItem, stream_items};
use tokio::sync::mpsc;

use super::{Feed, Hub};

/// Entries per read; a longer backlog is read in several pages.
const PAGE: usize = 512;

/// Reads in flight at once.
const CONCURRENCY: usize = 64;

/// Rechecks in flight at once, within [`CONCURRENCY`].
const RECHECK_CONCURRENCY: usize = 4;

/// Why a feed is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// A nudge, or a new feed: clients wait for it.
    Nudged,
    /// A recheck in case a nudge was missed.
    Recheck,
}

/// Takes feeds off the queues and reads them until shutdown: nudged reads
/// first, rechecks with what capacity is left.
pub(super) async fn run(
    hub: Arc<Hub>,
    mut nudged: mpsc::UnboundedReceiver<Arc<Feed>>,
    mut rechecks: mpsc::UnboundedReceiver<Arc<Feed>>,
) {
    let mut running = FuturesUnordered::new();
    let mut rechecking = 0;
    loop {
        tokio::select! {
            biased;
            _ = hub.shutdown.cancelled() => return,
            Some(reason) = running.next(), if !running.is_empty() => {
                if reason == Reason::Recheck {
                    rechecking -= 1;
                }
            }
            Some(feed) = nudged.recv(), if running.len() < CONCURRENCY => {
                running.push(read(&hub, feed, Reason::Nudged));
            }
            Some(feed) = rechecks.recv(),
                if running.len() < CONCURRENCY && rechecking < RECHECK_CONCURRENCY =>
            {
                rechecking += 1;
                running.push(read(&hub, feed, Reason::Recheck));
            }
        }
    }
}

/// One queued read of `feed`; returns why it was queued.
async fn read(hub: &Hub, feed: Arc<Feed>, reason: Reason) -> Reason {
    match reason {
        Reason::Nudged => feed.fetch_started(),
        Reason::Recheck => feed.recheck_started(),
    }
    // A recheck of a feed whose clients all left since is not worth a read.
    if reason == Reason::Nudged || feed.is_watched() {
        fetch(hub, feed).await;
    }
    reason
}

/// Reads everything after the feed's last entry. Returns true if and only if
/// the read reached the end of the stream (or the terminal event). On a Redis
/// error the feed is left as it is and noted for the sweep to retry.
pub(super) async fn fetch(hub: &Hub, feed: Arc<Feed>) -> bool {
    let mut conn = hub.redis.commands();
    loop {
        let start = match feed.last_id() {
            Some(id) => format!("({id}"),
            None => "-".to_owned(),
        };
        let reply: redis::RedisResult<Value> = redis::cmd("XRANGE")
            .arg(&feed.results_key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await;
        let entries = match reply.and_then(stream_items) {
            Ok(entries) => {
                hub.link.up();
                entries
            }
            Err(error) => {
                hub.metrics.redis_error("fetch");
                hub.link.down(&error);
                hub.retry_later(&feed);
                return false;
            }
        };
        let full_page = entries.len() == PAGE;
        let readable = entries
            .into_iter()
            .filter_map(|entry| read_entry(hub, &feed, entry));
        let appended = feed.append(readable);
        hub.record(&feed, &appended);
        if !full_page || feed.is_terminal() {
            return true;
        }
    }
}

/// One entry for the feed: its id and `data` field (`None` when it has none,
/// so the feed still reads past it). An entry without a readable id, which
/// Redis never produces, is dropped. Both are logged and counted.
fn read_entry(hub: &Hub, feed: &Feed, item: StreamItem) -> Option<(EntryId, Option<Vec<u8>>)> {
    let Some((id, data)) = parse_entry(item) else {
        hub.metrics.hub_entries_skipped.inc();
        tracing::warn!(search_id = %feed.search_id, "result entry without a readable id; skipped");
        return None;
    };
    if data.is_none() {
        hub.metrics.hub_entries_skipped.inc();
        tracing::warn!(search_id = %feed.search_id, entry_id = %id, "result entry without a data field; skipped");
    }
    Some((id, data))
}

/// An item's id and `data` field; `None` when the id is unreadable. Field
/// names that are not UTF-8 are just other fields.
fn parse_entry(item: StreamItem) -> Option<(EntryId, Option<Vec<u8>>)> {
    match item {
        StreamItem::Entry(mut entry) => Some((entry.id, entry.fields.remove(DATA_FIELD))),
        StreamItem::Deleted(Some(id)) => Some((id, None)),
        StreamItem::Deleted(None) | StreamItem::Unreadable => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    /// One item of a reply, as the shared decoder reads it.
    fn entry(id: &[u8], fields: &[&[u8]]) -> StreamItem {
        item(Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ]))
    }

    fn item(value: Value) -> StreamItem {
        stream_items(Value::Array(vec![value])).unwrap().remove(0)
    }

    #[test]
    fn the_data_field_is_found_among_any_fields() {
        let id = EntryId { ms: 5, seq: 1 };
        assert_eq!(
            parse_entry(entry(b"5-1", &[b"data", b"{}"])),
            Some((id, Some(b"{}".to_vec())))
        );
        assert_eq!(
            parse_entry(entry(b"5-1", &[b"\xff\xfe", b"x", b"data", b"{}"])),
            Some((id, Some(b"{}".to_vec()))),
            "a field name that is not UTF-8 is just another field"
        );
    }

    #[test]
    fn unusable_entries_are_still_read_past() {
        let id = EntryId { ms: 5, seq: 1 };
        assert_eq!(
            parse_entry(entry(b"5-1", &[b"\xff", b"x"])),
            Some((id, None))
        );
        assert_eq!(parse_entry(entry(b"5-1", &[])), Some((id, None)));
        assert_eq!(parse_entry(entry(b"5-1", &[b"data"])), Some((id, None)));
        assert_eq!(parse_entry(entry(b"\xff", &[b"data", b"{}"])), None);
        assert_eq!(parse_entry(item(bulk(b"5-1"))), None);
    }
}
