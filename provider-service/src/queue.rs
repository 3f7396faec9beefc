//! The request stream as this consumer group sees it: the group itself, reading,
//! acknowledging, the pending list, claims, the dead-letter stream and the
//! group's roster of consumers.
//!
//! Everything here except [`Queue::read`] runs on the shared multiplexed
//! connection; the blocking read gets a dedicated connection from its caller.
//!
//! Replies are decoded entry by entry ([`entries_of`]), never as a whole into
//! typed maps: one entry that no search could come from (say, a field name that
//! is not UTF-8) must become one dead letter, not a failed read that stalls
//! every entry delivered with it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use contract::keys::{DEAD_LETTER_MAXLEN, DEAD_LETTER_STREAM, REQUESTS_STREAM};
use redis::Value;
use redis::aio::ConnectionLike;
use service_runtime::redis_connection::RedisConnection;

use crate::RedisFailure;
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

/// One queued search as delivered: its entry id and raw fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// Stream entry id; what XACK and XCLAIM name.
    pub id: String,
    /// Fields whose names are UTF-8, values as bytes: a poison entry's values
    /// may not be UTF-8 either.
    pub fields: HashMap<String, Vec<u8>>,
    /// Fields whose names are not UTF-8, byte for byte. The contract's field
    /// names are ASCII, so such a field was not written by a producer that
    /// follows it; they are kept only to be dead-lettered with the rest.
    pub binary_fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// The field list was not name/value pairs of strings; `fields` and
    /// `binary_fields` hold the pairs that could be read.
    pub malformed: bool,
}

impl Entry {
    /// Why the entry cannot be a search whatever its readable fields say, if it
    /// cannot: such an entry is poison and is dead-lettered at once.
    pub fn unreadable(&self) -> Option<&'static str> {
        if self.malformed {
            Some("the entry's field list is not name/value pairs")
        } else if !self.binary_fields.is_empty() {
            Some("a field name is not UTF-8")
        } else {
            None
        }
    }
}

/// A pending entry another consumer (or a dead one) has sat on too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    /// Stream entry id.
    pub id: String,
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
    /// (see [`Entry::unreadable`]), so one cannot fail the whole read.
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
        // `[[stream, entries]]`, or a map from stream to entries in RESP3.
        let streams: Vec<(Value, Value)> = match reply {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(streams) => streams
                .into_iter()
                .map(|stream| match stream {
                    Value::Array(parts) => <[Value; 2]>::try_from(parts)
                        .map(|[name, entries]| (name, entries))
                        .map_err(|_| unexpected("a [stream, entries] pair")),
                    _ => Err(unexpected("a [stream, entries] pair")),
                })
                .collect::<redis::RedisResult<_>>()?,
            Value::Map(streams) => streams,
            _ => return Err(unexpected("a list of streams")),
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
                    id: text(&cols[0])?.into_owned(),
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

    /// Resets the idle time of those of `ids` still pending on this consumer
    /// (through [`HEARTBEAT`], leaving delivery counts alone), so a slow search
    /// is not taken over while it is alive, and an entry that was taken over
    /// anyway is not taken back.
    pub async fn heartbeat(&self, ids: &[String]) -> Result<(), RedisFailure> {
        HEARTBEAT_SCRIPT
            .key(REQUESTS_STREAM)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(ids)
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
        let mut original: Vec<(String, &[u8])> =
            entry
                .fields
                .iter()
                .map(|(name, value)| (format!("orig.{name}"), value.as_slice()))
                .chain(entry.binary_fields.iter().map(|(name, value)| {
                    (format!("orig.{}", name.escape_ascii()), value.as_slice())
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
        self.metrics.redis_error(op);
        RedisFailure { op, source }
    }
}

/// Entries of an XRANGE/XREADGROUP/XCLAIM reply (`[[id, [field, value, ...]], ...]`),
/// decoded one by one: an entry whose fields cannot all be read comes back
/// with [`Entry::unreadable`] set rather than failing the reply. Nil entries and
/// entries without fields, which servers use for deleted entries, are skipped,
/// as is an entry without a readable id (nothing could acknowledge it; Redis
/// never sends one). Fails only if the reply is not a list at all.
pub fn entries_of(reply: Value) -> redis::RedisResult<Vec<Entry>> {
    let items = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(unexpected("a list of stream entries")),
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(parts) = item else {
            continue;
        };
        let Ok([id, fields]) = <[Value; 2]>::try_from(parts) else {
            tracing::warn!("skipping a stream entry that is not an [id, fields] pair");
            continue;
        };
        let Some(id) = text(&id).map(|id| id.into_owned()) else {
            tracing::warn!(?id, "skipping a stream entry without a readable id");
            continue;
        };
        let pairs = match fields {
            Value::Nil => continue,
            Value::Array(flat) if flat.len() % 2 == 0 => {
                let mut flat = flat.into_iter();
                std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
            }
            Value::Map(pairs) => pairs,
            _ => {
                entries.push(Entry {
                    id,
                    malformed: true,
                    ..Entry::default()
                });
                continue;
            }
        };
        entries.push(entry(id, pairs));
    }
    Ok(entries)
}

/// One entry from its id and field/value pairs.
fn entry(id: String, pairs: Vec<(Value, Value)>) -> Entry {
    let mut entry = Entry {
        id,
        ..Entry::default()
    };
    for (name, value) in pairs {
        let (Some(name), Some(value)) = (bytes(name), bytes(value)) else {
            entry.malformed = true;
            continue;
        };
        match String::from_utf8(name) {
            Ok(name) => {
                entry.fields.insert(name, value);
            }
            Err(binary) => entry.binary_fields.push((binary.into_bytes(), value)),
        }
    }
    entry
}

/// A string reply's bytes.
fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

/// A string reply as text, lossily: ids are ASCII, and names only go to logs.
fn text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes)),
        Value::SimpleString(text) => Some(text.into()),
        _ => None,
    }
}

/// An integer reply.
fn int(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

fn unexpected(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        format!("expected {what}"),
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

    #[test]
    fn an_unreadable_entry_spoils_only_itself() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![
                    bulk("search_id"),
                    bulk("x"),
                    Value::BulkString(b"\xffname".to_vec()),
                    Value::BulkString(b"\xfevalue".to_vec()),
                ]),
            ]),
            Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("odd")])]),
            Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![
                    bulk("from"),
                    Value::Array(vec![]),
                    bulk("to"),
                    bulk("DPS"),
                ]),
            ]),
            Value::Array(vec![
                bulk("4-0"),
                Value::Array(vec![bulk("from"), bulk("CGK")]),
            ]),
        ]);
        let entries = entries_of(reply).unwrap();
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1-0", "2-0", "3-0", "4-0"]);

        assert_eq!(entries[0].fields["search_id"], b"x");
        assert_eq!(
            entries[0].binary_fields,
            [(b"\xffname".to_vec(), b"\xfevalue".to_vec())]
        );
        assert_eq!(entries[0].unreadable(), Some("a field name is not UTF-8"));

        assert!(entries[1].fields.is_empty() && entries[1].malformed);
        assert!(entries[1].unreadable().is_some());
        assert_eq!(entries[2].fields["to"], b"DPS");
        assert!(entries[2].unreadable().is_some());

        assert_eq!(entries[3].fields["from"], b"CGK");
        assert_eq!(entries[3].unreadable(), None);
    }
}
