//! How far each consumer group has got through the search queue, read with
//! `XINFO GROUPS` (one entry per group, so its cost does not grow with the
//! queue). Admission control ([`crate::intake::admission`]) and trimming
//! ([`crate::intake::trim`]) both start from it.

use contract::EntryId;
use contract::keys::REQUESTS_STREAM;
use redis::Value;
use redis::aio::ConnectionLike;
use service_runtime::redis_reply::{pairs, text};

/// One group's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupProgress {
    /// The group's name, lossily decoded (for logs).
    pub name: String,
    /// Entries delivered to the group and not yet acknowledged.
    pub pending: u64,
    /// The last entry delivered to the group.
    pub last_delivered: EntryId,
    /// Entries not yet delivered to the group; `None` when Redis cannot tell
    /// (entries deleted with XDEL in between, or a server older than 7.0).
    pub lag: Option<u64>,
}

/// Every group on the queue; empty when the queue does not exist yet.
pub(crate) async fn read(conn: &mut impl ConnectionLike) -> redis::RedisResult<Vec<GroupProgress>> {
    let reply: redis::RedisResult<Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(REQUESTS_STREAM)
        .query_async(conn)
        .await;
    match reply {
        Ok(reply) => parse(reply),
        // The stream is created with the group, by the first submission or the
        // group task; until then nothing is queued.
        Err(error) if error.to_string().contains("no such key") => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// `XLEN` of the queue, the stand-in for a lag Redis cannot compute.
pub(crate) async fn queue_length(conn: &mut impl ConnectionLike) -> redis::RedisResult<u64> {
    redis::cmd("XLEN")
        .arg(REQUESTS_STREAM)
        .query_async(conn)
        .await
}

/// Decodes an `XINFO GROUPS` reply (RESP2 flat pairs or RESP3 maps).
fn parse(reply: Value) -> redis::RedisResult<Vec<GroupProgress>> {
    let Value::Array(groups) = reply else {
        return Err(unexpected());
    };
    groups
        .into_iter()
        .map(|group| {
            let Some((pairs, true)) = pairs(group) else {
                return Err(unexpected());
            };
            let mut name = None;
            let mut pending = None;
            let mut last_delivered = None;
            let mut lag = None;
            for (key, value) in pairs {
                match (text(&key).as_deref(), value) {
                    (Some("name"), value) => name = text(&value).map(|name| name.into_owned()),
                    (Some("pending"), Value::Int(n)) => pending = u64::try_from(n).ok(),
                    (Some("last-delivered-id"), value) => {
                        last_delivered = text(&value).and_then(|id| id.parse().ok());
                    }
                    (Some("lag"), Value::Int(n)) => lag = u64::try_from(n).ok(),
                    _ => {}
                }
            }
            Ok(GroupProgress {
                name: name.ok_or_else(unexpected)?,
                pending: pending.ok_or_else(unexpected)?,
                last_delivered: last_delivered.ok_or_else(unexpected)?,
                lag,
            })
        })
        .collect()
}

fn unexpected() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected XINFO GROUPS reply",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn groups_are_read_with_or_without_a_lag() {
        let group = |name: &str, lag: Value| {
            Value::Array(vec![
                bulk("name"),
                bulk(name),
                bulk("consumers"),
                Value::Int(2),
                bulk("pending"),
                Value::Int(3),
                bulk("last-delivered-id"),
                bulk("1700000000000-4"),
                bulk("entries-read"),
                Value::Int(9),
                bulk("lag"),
                lag,
            ])
        };
        let groups = parse(Value::Array(vec![
            group("provider-service", Value::Int(7)),
            group("other", Value::Nil),
        ]))
        .unwrap();
        assert_eq!(
            groups[0],
            GroupProgress {
                name: "provider-service".into(),
                pending: 3,
                last_delivered: "1700000000000-4".parse().unwrap(),
                lag: Some(7),
            }
        );
        assert_eq!(groups[1].lag, None);
        assert!(parse(Value::Int(1)).is_err());
        assert!(parse(Value::Array(vec![Value::Array(vec![bulk("name")])])).is_err());
    }
}
