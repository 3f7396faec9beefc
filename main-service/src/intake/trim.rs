//! Trimming the search queue without losing a search: only entries that every
//! consumer group has been handed and has acknowledged are removed.
//!
//! Every [`TRIM_INTERVAL`] each instance computes, from `XINFO GROUPS` and
//! each group's oldest pending entry (`XPENDING ... - + 1`), the lowest id any
//! group still needs: its oldest pending entry, or the entry after the last one
//! delivered to it when nothing is pending. Then `XTRIM MINID ~` removes whole
//! stream nodes below that id, never an entry at or above it. Groups only move
//! forward, so an id computed from an older reading is still safe when the trim
//! runs; several instances trimming at once therefore reach the same result as
//! one. Each step names only the queue key, so it runs unchanged on a cluster.
//! Without any group nothing is trimmed: the searches wait for the first.

use std::time::Duration;

use contract::EntryId;
use contract::keys::REQUESTS_STREAM;
use redis::Value;
use redis::aio::ConnectionLike;
use service_runtime::redis_link::RedisLink;
use tokio_util::sync::CancellationToken;

use crate::intake::queue_progress::{self, GroupProgress};
use crate::metrics::Metrics;

/// How often the queue is trimmed; the queue holds at most about this much
/// finished work on top of the backlog.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Trims every [`TRIM_INTERVAL`] until `shutdown`.
pub(crate) async fn run(
    redis: RedisLink,
    metrics: std::sync::Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut conn = redis.commands();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TRIM_INTERVAL) => {}
        }
        if !redis.is_ready() {
            continue;
        }
        match trim(&mut conn).await {
            Ok(removed) => {
                metrics.queue_trimmed.inc_by(removed);
            }
            Err(error) => {
                metrics.redis_error("trim");
                tracing::debug!(%error, "cannot trim the search queue");
            }
        }
    }
}

/// One trim; returns how many entries were removed.
pub(crate) async fn trim(conn: &mut impl ConnectionLike) -> redis::RedisResult<u64> {
    let groups = queue_progress::read(conn).await?;
    let mut oldest = Vec::with_capacity(groups.len());
    for group in &groups {
        oldest.push(if group.pending > 0 {
            oldest_pending(conn, &group.name).await?
        } else {
            None
        });
    }
    let Some(min_id) = still_needed(&groups, &oldest) else {
        return Ok(0);
    };
    redis::cmd("XTRIM")
        .arg(REQUESTS_STREAM)
        .arg("MINID")
        .arg("~")
        .arg(min_id.to_string())
        .query_async(conn)
        .await
}

/// The lowest entry id any group still needs, given each group's oldest
/// pending entry (`None` when nothing is pending on it); `None` when there is
/// no group at all, so nothing may be trimmed.
fn still_needed(groups: &[GroupProgress], oldest_pending: &[Option<EntryId>]) -> Option<EntryId> {
    groups
        .iter()
        .zip(oldest_pending)
        .map(|(group, oldest)| match oldest {
            Some(id) => *id,
            None => EntryId {
                ms: group.last_delivered.ms,
                seq: group.last_delivered.seq.saturating_add(1),
            },
        })
        .min()
}

/// The id of the group's oldest pending entry.
async fn oldest_pending(
    conn: &mut impl ConnectionLike,
    group: &str,
) -> redis::RedisResult<Option<EntryId>> {
    let reply: Value = redis::cmd("XPENDING")
        .arg(REQUESTS_STREAM)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(1)
        .query_async(conn)
        .await?;
    let Value::Array(rows) = reply else {
        return Ok(None);
    };
    Ok(rows.first().and_then(|row| match row {
        Value::Array(cols) => match cols.first() {
            Some(Value::BulkString(id)) => std::str::from_utf8(id).ok()?.parse().ok(),
            _ => None,
        },
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(last: &str, pending: u64) -> GroupProgress {
        GroupProgress {
            name: "g".into(),
            pending,
            last_delivered: last.parse().unwrap(),
            lag: Some(0),
        }
    }

    #[test]
    fn the_oldest_need_of_any_group_bounds_the_trim() {
        assert_eq!(still_needed(&[], &[]), None);
        let idle = group("100-5", 0);
        assert_eq!(
            still_needed(std::slice::from_ref(&idle), &[None]),
            Some("100-6".parse().unwrap())
        );
        let busy = group("300-0", 2);
        let oldest = Some("200-1".parse().unwrap());
        assert_eq!(
            still_needed(&[busy.clone(), idle.clone()], &[oldest, None]),
            Some("100-6".parse().unwrap())
        );
        let behind = group("0-0", 0);
        assert_eq!(
            still_needed(&[busy, behind], &[oldest, None]),
            Some("0-1".parse().unwrap())
        );
    }
}
