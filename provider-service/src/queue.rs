//! The request stream as this consumer group sees it: the group itself, reading,
//! acknowledging, the pending list, claims, and the dead-letter stream.
//!
//! Everything here except [`Queue::read`] runs on the shared multiplexed
//! connection; the blocking read gets a dedicated connection from its caller.

use std::collections::HashMap;

use contract::keys::{DEAD_LETTER_MAXLEN, DEAD_LETTER_STREAM, REQUESTS_STREAM};
use redis::Value;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::streams::{StreamPendingCountReply, StreamPendingReply};
use std::sync::Arc;
use std::time::Duration;

use crate::RedisFailure;
use crate::metrics::Metrics;

/// One queued search as delivered: its entry id and raw fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Stream entry id; what XACK and XCLAIM name.
    pub id: String,
    /// Field values as bytes: a poison entry may not even be UTF-8.
    pub fields: HashMap<String, Vec<u8>>,
}

/// A pending entry another consumer (or a dead one) has sat on too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    /// Stream entry id.
    pub id: String,
    /// Its current owner.
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
    Taken(Entry),
    /// The entry's data was trimmed from the stream; only its id was pending.
    Trimmed,
    /// Someone else claimed or acknowledged it first.
    Lost,
}

/// The consumer group's view of the request stream.
#[derive(Clone)]
pub struct Queue {
    /// Shared connection for every non-blocking command.
    conn: ConnectionManager,
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
        conn: ConnectionManager,
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

    /// This replica's consumer name.
    pub fn consumer(&self) -> &str {
        &self.consumer
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
    /// branches on NOGROUP.
    pub async fn read(
        &self,
        conn: &mut impl ConnectionLike,
        count: usize,
        block: Duration,
    ) -> redis::RedisResult<Vec<Entry>> {
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
        let streams: Vec<(String, Value)> = match reply {
            Value::Nil => return Ok(Vec::new()),
            other => redis::from_redis_value(other)?,
        };
        let mut entries = Vec::new();
        for (_, list) in streams {
            entries.extend(entries_of(list)?);
        }
        Ok(entries)
    }

    /// Acknowledges an entry: it is done and leaves the pending list for good.
    pub async fn ack(&self, id: &str) -> Result<(), RedisFailure> {
        redis::cmd("XACK")
            .arg(REQUESTS_STREAM)
            .arg(&self.group)
            .arg(id)
            .query_async::<u64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(|e| self.failed("ack", e))
    }

    /// Entries delivered to the group and not yet acknowledged (`XPENDING key group`).
    pub async fn pending_count(&self) -> Result<u64, RedisFailure> {
        redis::cmd("XPENDING")
            .arg(REQUESTS_STREAM)
            .arg(&self.group)
            .query_async::<StreamPendingReply>(&mut self.conn.clone())
            .await
            .map(|reply| reply.count() as u64)
            .map_err(|e| self.failed("pending", e))
    }

    /// Up to `limit` entries idle for at least the claim threshold, oldest first.
    pub async fn idle_entries(&self, limit: usize) -> Result<Vec<Idle>, RedisFailure> {
        let reply: StreamPendingCountReply = redis::cmd("XPENDING")
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
        Ok(reply
            .ids
            .into_iter()
            .map(|p| Idle {
                id: p.id,
                consumer: p.consumer,
                idle_ms: p.last_delivered_ms as u64,
                deliveries: p.times_delivered as u64,
            })
            .collect())
    }

    /// Takes over `id` if it is still idle for the claim threshold. Counts as a
    /// delivery.
    pub async fn claim(&self, id: &str) -> Result<Claim, RedisFailure> {
        let mut conn = self.conn.clone();
        let reply: Value = redis::cmd("XCLAIM")
            .arg(REQUESTS_STREAM)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(self.claim_idle.as_millis() as u64)
            .arg(id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed("claim", e))?;
        let entries = entries_of(reply).map_err(|e| self.failed("claim", e))?;
        if let Some(entry) = entries.into_iter().next() {
            return Ok(Claim::Taken(entry));
        }
        // Redis 7 drops trimmed entries from the pending list and answers
        // nothing; older servers answer nil. Either way an empty answer is
        // ambiguous until we look for the entry itself.
        let still_there: Value = redis::cmd("XRANGE")
            .arg(REQUESTS_STREAM)
            .arg(id)
            .arg(id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed("claim", e))?;
        Ok(match still_there {
            Value::Array(items) if !items.is_empty() => Claim::Lost,
            _ => Claim::Trimmed,
        })
    }

    /// Resets the idle time of entries this replica is still working on
    /// (`XCLAIM ... 0 ... JUSTID`, which leaves the delivery count alone), so a
    /// slow search is not taken over while it is alive.
    pub async fn heartbeat(&self, ids: &[String]) -> Result<(), RedisFailure> {
        redis::cmd("XCLAIM")
            .arg(REQUESTS_STREAM)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .query_async::<Value>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(|e| self.failed("heartbeat", e))
    }

    /// Appends `entry` to the dead-letter stream with why and how often it was
    /// tried; its original fields follow as `orig.<name>`.
    pub async fn dead_letter(
        &self,
        entry: &Entry,
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
            .arg("entry_id")
            .arg(&entry.id)
            .arg("reason")
            .arg(reason)
            .arg("detail")
            .arg(detail)
            .arg("deliveries")
            .arg(deliveries)
            .arg("consumer")
            .arg(&self.consumer);
        let mut original: Vec<(&String, &Vec<u8>)> = entry.fields.iter().collect();
        original.sort();
        for (name, value) in original {
            cmd.arg(format!("orig.{name}")).arg(value.as_slice());
        }
        cmd.query_async::<String>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(|e| self.failed("dead_letter", e))
    }

    fn failed(&self, op: &'static str, source: redis::RedisError) -> RedisFailure {
        self.metrics.redis_error(op);
        RedisFailure { op, source }
    }
}

/// Entries of an XRANGE/XREADGROUP/XCLAIM reply (`[[id, [field, value, ...]], ...]`).
/// Nil entries and entries without fields, which servers use for deleted
/// entries, are skipped.
pub fn entries_of(reply: Value) -> redis::RedisResult<Vec<Entry>> {
    let items = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(unexpected(&other)),
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(parts) = item else {
            continue;
        };
        let [id, fields]: [Value; 2] = parts.try_into().map_err(|_| unexpected(&Value::Nil))?;
        if fields == Value::Nil {
            continue;
        }
        entries.push(Entry {
            id: redis::from_redis_value(id)?,
            fields: redis::from_redis_value(fields)?,
        });
    }
    Ok(entries)
}

fn unexpected(value: &Value) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "not a list of stream entries",
        format!("{value:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_are_read_and_deleted_ones_skipped() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![
                    bulk("search_id"),
                    bulk("x"),
                    bulk("from"),
                    bulk("CGK"),
                ]),
            ]),
            Value::Nil,
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]);
        let entries = entries_of(reply).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].id, "1-0");
        assert_eq!(entries[0].fields["from"], b"CGK");
        assert!(entries_of(Value::Nil).unwrap().is_empty());
        assert!(entries_of(Value::Int(3)).is_err());
    }
}
