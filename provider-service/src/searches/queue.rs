//! The request stream as this consumer group sees it: the group itself, reading,
//! acknowledging, the pending list, claims, the dead-letter stream and the
//! group's roster of consumers.
//!
//! Everything here except [`Queue::read`] runs on the shared multiplexed
//! connection; the blocking read gets a dedicated connection from its caller.
//!
//! Replies are decoded entry by entry ([`service_runtime::reply`]): one entry
//! that no search could come from (say, a field name that is not UTF-8) must
//! become one dead letter, not a failed read that stalls every entry delivered
//! with it.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use contract::EntryId;
use contract::keys::{
    DEAD_LETTER_CONSUMER, DEAD_LETTER_DELIVERIES, DEAD_LETTER_DETAIL, DEAD_LETTER_ENTRY_ID,
    DEAD_LETTER_MAXLEN, DEAD_LETTER_ORIGINAL_PREFIX, DEAD_LETTER_REASON, DEAD_LETTER_STREAM,
    REQUESTS_STREAM,
};
use redis::Value;
use redis::aio::ConnectionLike;
use service_runtime::redis_connection::RedisConnection;
use service_runtime::redis_failure::RedisFailure;
use service_runtime::redis_reply::{self, StreamEntry, int, text, unexpected};

use crate::metrics::Metrics;

/// Refreshes the idle time of the given entries that are still pending on the
/// given consumer, and only those, in one atomic step.
///
/// `KEYS[1]` request stream; `ARGV[1]` group, `ARGV[2]` consumer, `ARGV[3..]`
/// entry ids. Returns how many were refreshed. A plain `XCLAIM ... 0 ... JUSTID`
/// would also take back an entry that another consumer claimed while this
/// replica was stalled beyond `CLAIM_IDLE_MS`, from a consumer that is now
/// working on it. A `min-idle-time` cannot tell the two cases apart, because
/// every owner refreshes its entries on the same schedule; ownership can, and
/// checking it in the same script leaves no gap for a claim to slip into.
const HEARTBEAT: &str = r"
local refreshed = 0
for i = 3, #ARGV do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    refreshed = refreshed + 1
  end
end
return refreshed
";

/// Deletes consumers of a group that have no pending entries and have been idle
/// for at least a given time, optionally only one of them by name.
///
/// `KEYS[1]` request stream; `ARGV[1]` group, `ARGV[2]` minimum idle time in
/// milliseconds, `ARGV[3]` (optional) the only consumer to consider. Returns the
/// names deleted. Deleting a consumer drops its pending entries from the group,
/// so the check and the delete must be one atomic step; a consumer without
/// pending entries loses nothing, and if it is in fact alive its next read
/// simply creates it again.
const FORGET_CONSUMERS: &str = r"
local deleted = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info.pending == 0 and info.idle >= tonumber(ARGV[2])
      and (ARGV[3] == nil or info.name == ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info.name)
    deleted[#deleted + 1] = info.name
  end
end
return deleted
";

/// [`HEARTBEAT`], sent by hash with automatic fallback to its body.
static HEARTBEAT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(HEARTBEAT));

/// [`FORGET_CONSUMERS`], sent by hash with automatic fallback to its body.
static FORGET_CONSUMERS_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(FORGET_CONSUMERS));

/// A pending entry another consumer (or a dead one) has sat on too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    /// Stream entry id.
    pub id: EntryId,
    /// Its current owner, for logs (lossily decoded: names are anyone's choice).
    pub consumer: String,
    /// Time since it was last delivered or claimed.
    pub idle_ms: u64,
    /// How often it has been handed out so far.
    pub deliveries: u64,
}

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The entry is now ours.
    Taken(StreamEntry),
    /// The entry's data was trimmed from the stream; only its id was pending.
    Trimmed,
    /// Someone else claimed or acknowledged it first.
    Lost,
}

/// The consumer group's view of the request stream.
#[derive(Clone)]
pub struct Queue {
    /// Shared connection for every non-blocking command.
    conn: RedisConnection,
    /// Consumer group name.
    group: String,
    /// This replica's consumer name.
    consumer: String,
    /// `min-idle-time` of every claim: the entry must still be idle this long
    /// when the claim executes, so two sweeps cannot both take it.
    claim_idle: Duration,
    /// Where Redis failures are counted.
    metrics: Arc<Metrics>,
}

impl Queue {
    /// A queue handle for `consumer` in `group`.
    pub fn new(
        conn: RedisConnection,
        group: String,
        consumer: String,
        claim_idle: Duration,
        metrics: Arc<Metrics>,
    ) -> Queue {
        Queue {
            conn,
            group,
            consumer,
            claim_idle,
            metrics,
        }
    }

    /// Creates the group from the stream's start unless it exists (see
    /// [`service_runtime::streams::create_group`]), on `conn`.
    pub async fn ensure_group(&self, conn: &mut impl ConnectionLike) -> Result<(), RedisFailure> {
        service_runtime::streams::create_group(conn, &self.group)
            .await
            .map_err(|e| self.failed("group_create", e))
    }

    /// `XREADGROUP ... COUNT count BLOCK block STREAMS key >` on `conn`, which
    /// must be dedicated to it. The raw error is returned because the caller
    /// branches on NOGROUP. Unreadable entries are returned like the others
    /// (see [`StreamEntry::unreadable`]), so one cannot fail the whole read.
    pub async fn read(
        &self,
        conn: &mut impl ConnectionLike,
        count: usize,
        block: Duration,
    ) -> redis::RedisResult<Vec<StreamEntry>> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(REQUESTS_STREAM)
            .arg(">")
            .query_async(conn)
            .await?;
        redis_reply::read_entries(reply)
    }

    /// Acknowledges an entry: it is done and leaves the pending list for good.
    pub async fn ack(&self, id: EntryId) -> Result<(), RedisFailure> {
        redis::cmd("XACK")
            .arg(REQUESTS_STREAM)
            .arg(&self.group)
            .arg(id.to_string())
            .query_async::<u64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(|e| self.failed("ack", e))
    }

    /// Entries delivered to the group and not yet acknowledged (`XPENDING key group`).
    pub async fn pending_count(&self) -> Result<u64, RedisFailure> {
        // Only the count is decoded: the summary also lists every consumer by
        // name, and one odd name must not make the count unreadable.
        let reply: Value = redis::cmd("XPENDING")
            .arg(REQUESTS_STREAM)
            .arg(&self.group)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.failed("pending", e))?;
        match reply {
            Value::Array(summary) if !summary.is_empty() => {
                int(&summary[0]).ok_or_else(|| self.failed("pending", unexpected("a count")))
            }
            _ => Err(self.failed("pending", unexpected("an XPENDING summary"))),
        }
    }

    /// Up to `limit` entries idle for at least the claim threshold, oldest first.
    pub async fn idle_entries(&self, limit: usize) -> Result<Vec<Idle>, RedisFailure> {
        let reply: Value = redis::cmd("XPENDING")
            .arg(REQUESTS_STREAM)
            .arg(&self.group)
            .arg("IDLE")
            .arg(self.claim_idle.as_millis() as u64)
            .arg("-")
            .arg("+")
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.failed("pending", e))?;
        let Value::Array(rows) = reply else {
            return Err(self.failed("pending", unexpected("a list of pending entries")));
        };
        rows.iter()
            .map(|row| match row {
                Value::Array(cols) if cols.len() == 4 => Some(Idle {
                    id: text(&cols[0])?.parse().ok()?,
                    consumer: text(&cols[1])?.into_owned(),
                    idle_ms: int(&cols[2])?,
                    deliveries: int(&cols[3])?,
                }),
                _ => None,
            })
            .collect::<Option<Vec<Idle>>>()
            .ok_or_else(|| self.failed("pending", unexpected("a list of pending entries")))
    }

    /// Takes over `id` if it is still idle for the claim threshold. Counts as a
    /// delivery.
    pub async fn claim(&self, id: EntryId) -> Result<Claim, RedisFailure> {
        let mut conn = self.conn.clone();
        let id = id.to_string();
        let reply: Value = redis::cmd("XCLAIM")
            .arg(REQUESTS_STREAM)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.claim_idle.as_millis() as u64)
            .arg(&id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed("claim", e))?;
        let entries = redis_reply::entries_of(reply).map_err(|e| self.failed("claim", e))?;
        if let Some(entry) = entries.into_iter().next() {
            return Ok(Claim::Taken(entry));
        }
        // Redis 7 drops trimmed entries from the pending list and answers
        // nothing; older servers answer nil. Either way an empty answer is
        // ambiguous until we look for the entry itself.
        let still_there: Value = redis::cmd("XRANGE")
            .arg(REQUESTS_STREAM)
            .arg(&id)
            .arg(&id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed("claim", e))?;
        Ok(match still_there {
            Value::Array(items) if !items.is_empty() => Claim::Lost,
            _ => Claim::Trimmed,
        })
    }

    /// Resets the idle time of those of `ids` still pending on this consumer
    /// (through [`HEARTBEAT`], leaving delivery counts alone), so a slow search
    /// is not taken over while it is alive, and an entry that was taken over
    /// anyway is not taken back.
    pub async fn heartbeat(&self, ids: &[EntryId]) -> Result<(), RedisFailure> {
        let ids: Vec<String> = ids.iter().map(EntryId::to_string).collect();
        HEARTBEAT_SCRIPT
            .key(REQUESTS_STREAM)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(&ids)
            .invoke_async::<u64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(|e| self.failed("heartbeat", e))
    }

    /// Removes consumers of the group that have held no pending entry for at
    /// least `idle` (through [`FORGET_CONSUMERS`]), so replicas that come and
    /// go under fresh names do not pile up in `XINFO CONSUMERS` forever.
    /// Returns the names removed, lossily decoded for logs.
    pub async fn forget_idle_consumers(&self, idle: Duration) -> Result<Vec<String>, RedisFailure> {
        self.forget(
            FORGET_CONSUMERS_SCRIPT
                .key(REQUESTS_STREAM)
                .arg(&self.group)
                .arg(idle.as_millis() as u64),
        )
        .await
    }

    /// Removes this replica's own consumer if it holds no pending entry, for a
    /// clean exit. Returns true if it was removed.
    pub async fn forget_self(&self) -> Result<bool, RedisFailure> {
        self.forget(
            FORGET_CONSUMERS_SCRIPT
                .key(REQUESTS_STREAM)
                .arg(&self.group)
                .arg(0)
                .arg(&self.consumer),
        )
        .await
        .map(|removed| !removed.is_empty())
    }

    async fn forget(
        &self,
        script: &mut redis::ScriptInvocation<'_>,
    ) -> Result<Vec<String>, RedisFailure> {
        let removed: Vec<Vec<u8>> = script
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.failed("forget_consumers", e))?;
        Ok(removed
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect())
    }

    /// Appends `entry` to the dead-letter stream with why and how often it was
    /// tried; its original fields follow as `orig.<name>` (a name that is not
    /// UTF-8 written with `\xNN` escapes, so the dead-letter stream itself stays
    /// readable).
    pub async fn dead_letter(
        &self,
        entry: &StreamEntry,
        reason: &str,
        detail: &str,
        deliveries: u64,
    ) -> Result<(), RedisFailure> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(DEAD_LETTER_STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(DEAD_LETTER_MAXLEN)
            .arg("*")
            .arg(DEAD_LETTER_ENTRY_ID)
            .arg(entry.id.to_string())
            .arg(DEAD_LETTER_REASON)
            .arg(reason)
            .arg(DEAD_LETTER_DETAIL)
            .arg(detail)
            .arg(DEAD_LETTER_DELIVERIES)
            .arg(deliveries)
            .arg(DEAD_LETTER_CONSUMER)
            .arg(&self.consumer);
        let mut original: Vec<(String, &[u8])> = entry
            .fields
            .iter()
            .map(|(name, value)| {
                (
                    format!("{DEAD_LETTER_ORIGINAL_PREFIX}{name}"),
                    value.as_slice(),
                )
            })
            .chain(entry.binary_fields.iter().map(|(name, value)| {
                (
                    format!("{DEAD_LETTER_ORIGINAL_PREFIX}{}", name.escape_ascii()),
                    value.as_slice(),
                )
            }))
            .collect();
        original.sort();
        for (name, value) in original {
            cmd.arg(name).arg(value);
        }
        cmd.query_async::<String>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(|e| self.failed("dead_letter", e))
    }

    fn failed(&self, op: &'static str, source: redis::RedisError) -> RedisFailure {
        self.metrics.redis_failure(op, source)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ::test_support::eventually;
    use ::test_support::left_behind::{enqueue_search, queued_search, take_and_die};
    use ::test_support::redis_server::RedisServer;
    use redis::aio::MultiplexedConnection;

    use super::*;
    use crate::metrics::KnownLabels;

    const LIMIT: Duration = Duration::from_secs(20);

    /// A queue handle as consumer `consumer`, on its own connection.
    async fn queue(redis: &RedisServer, consumer: &str) -> Queue {
        let conn = redis::Client::open(redis.url())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap();
        Queue::new(
            RedisConnection::Managed(conn),
            "provider-service".to_owned(),
            consumer.to_owned(),
            Duration::from_secs(15),
            Arc::new(Metrics::new(&KnownLabels::default())),
        )
    }

    /// Every pending entry: id, consumer, idle ms, deliveries.
    async fn pending_entries(conn: &mut MultiplexedConnection) -> Vec<(String, String, u64, u64)> {
        redis::cmd("XPENDING")
            .arg(REQUESTS_STREAM)
            .arg("provider-service")
            .arg("-")
            .arg("+")
            .arg(10)
            .query_async(conn)
            .await
            .unwrap()
    }

    /// The consumer an entry is pending on, if it is pending.
    async fn owner(conn: &mut MultiplexedConnection, entry: &str) -> Option<String> {
        let reply: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(REQUESTS_STREAM)
            .arg("provider-service")
            .arg(entry)
            .arg(entry)
            .arg(1)
            .query_async(conn)
            .await
            .unwrap();
        reply.into_iter().next().map(|(_, consumer, _, _)| consumer)
    }

    /// One field of each of the group's consumers in `XINFO CONSUMERS`.
    async fn consumer_field<T: redis::FromRedisValue>(
        conn: &mut MultiplexedConnection,
        field: &str,
    ) -> Vec<T> {
        let reply: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(REQUESTS_STREAM)
            .arg("provider-service")
            .query_async(conn)
            .await
            .unwrap();
        reply
            .into_iter()
            .map(|c| redis::from_redis_value(c[field].clone()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_heartbeat_refreshes_its_own_entries_and_never_takes_one_back() {
        let redis = RedisServer::start().await;
        let mut conn = redis.connection().await;
        let kept = enqueue_search(&mut conn, &queued_search("CGK", "DPS")).await;
        let taken = enqueue_search(&mut conn, &queued_search("SUB", "UPG")).await;
        take_and_die(&mut conn, "stalled", 2).await;
        // While "stalled" was not looking, another consumer claimed one of them.
        let _: Value = redis::cmd("XCLAIM")
            .arg(REQUESTS_STREAM)
            .arg("provider-service")
            .arg("claimer")
            .arg(0)
            .arg(&taken)
            .query_async(&mut conn)
            .await
            .unwrap();
        eventually("both entries to sit idle for 300 ms", LIMIT, || async {
            let idle = pending_entries(&mut conn.clone()).await;
            idle.iter()
                .all(|(_, _, idle_ms, _)| *idle_ms >= 300)
                .then_some(())
        })
        .await;

        queue(&redis, "stalled")
            .await
            .heartbeat(&[kept.parse().unwrap(), taken.parse().unwrap()])
            .await
            .unwrap();

        assert_eq!(owner(&mut conn, &taken).await.as_deref(), Some("claimer"));
        assert_eq!(owner(&mut conn, &kept).await.as_deref(), Some("stalled"));
        // Both idle times come from one reply, so however slow the machine,
        // a refreshed entry has been idle at least 300 ms less than one left
        // alone; without the refresh it would have been idle longer, having
        // been delivered before the other was claimed.
        let entries = pending_entries(&mut conn).await;
        let entry = |wanted: &str| {
            entries
                .iter()
                .find(|(id, ..)| id == wanted)
                .map(|(_, _, idle_ms, deliveries)| (*idle_ms, *deliveries))
                .expect("still pending")
        };
        let (kept_idle, kept_deliveries) = entry(&kept);
        let (taken_idle, taken_deliveries) = entry(&taken);
        assert!(
            kept_idle + 300 <= taken_idle,
            "its own entry was refreshed ({kept_idle} ms idle), the other's not ({taken_idle} ms)"
        );
        assert_eq!(kept_deliveries, 1, "a heartbeat is not a delivery");
        assert_eq!(taken_deliveries, 2, "read, then claimed");
    }

    #[tokio::test]
    async fn only_consumers_without_pending_entries_are_forgotten() {
        let redis = RedisServer::start().await;
        let mut conn = redis.connection().await;
        enqueue_search(&mut conn, &queued_search("CGK", "DPS")).await;
        take_and_die(&mut conn, "busy", 1).await;
        for idle in ["gone-1", "gone-2"] {
            let _: u64 = redis::cmd("XGROUP")
                .arg("CREATECONSUMER")
                .arg(REQUESTS_STREAM)
                .arg("provider-service")
                .arg(idle)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        eventually("every consumer to sit idle for 200 ms", LIMIT, || async {
            let idle: Vec<u64> = consumer_field(&mut conn.clone(), "idle").await;
            idle.iter().all(|&ms| ms >= 200).then_some(())
        })
        .await;

        let busy = queue(&redis, "busy").await;
        assert!(!busy.forget_self().await.unwrap(), "it has a pending entry");
        assert!(
            busy.forget_idle_consumers(Duration::from_secs(3600))
                .await
                .unwrap()
                .is_empty(),
            "none has been idle for an hour"
        );
        let mut forgotten = busy
            .forget_idle_consumers(Duration::from_millis(100))
            .await
            .unwrap();
        forgotten.sort();
        assert_eq!(forgotten, ["gone-1", "gone-2"]);
        let names: Vec<String> = consumer_field(&mut conn, "name").await;
        assert_eq!(names, ["busy"]);
        assert_eq!(pending_entries(&mut conn).await.len(), 1);
    }
}
