//! Decoding Redis replies both services read: stream entries (XRANGE,
//! XREADGROUP, XCLAIM) and field/value lists.
//!
//! Stream replies are decoded entry by entry, never as a whole into typed
//! maps: one entry that no service wrote (say, a field name that is not UTF-8)
//! must spoil only itself, not the read that delivered it with others.

use std::borrow::Cow;
use std::collections::HashMap;

use contract::EntryId;
use redis::Value;

/// One stream entry: its id and raw fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamEntry {
    /// Stream entry id; what XACK, XCLAIM and SSE resume points name.
    pub id: EntryId,
    /// Fields whose names are UTF-8, values as bytes: a poison entry's values
    /// may not be UTF-8 either.
    pub fields: HashMap<String, Vec<u8>>,
    /// Fields whose names are not UTF-8, byte for byte. The contract's field
    /// names are ASCII, so such a field was not written by a producer that
    /// follows it.
    pub binary_fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// The field list was not name/value pairs of strings; `fields` and
    /// `binary_fields` hold the pairs that could be read.
    pub malformed: bool,
}

impl StreamEntry {
    /// Why the entry's fields cannot all be read, if they cannot: whatever its
    /// readable fields say, such an entry was not written by the contract.
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

/// One item of a stream reply.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// An entry with its fields.
    Entry(StreamEntry),
    /// A deleted entry: nil, or an id whose fields are nil (what servers send
    /// for entries deleted since they were delivered).
    Deleted(Option<EntryId>),
    /// Not an `[id, fields]` pair with a readable id; Redis never sends one.
    Unreadable,
}

/// The items of an XRANGE/XCLAIM reply, or of one stream in an XREADGROUP
/// reply (`[[id, [field, value, ...]], ...]`). Fails only if the reply is not
/// a list at all.
pub fn stream_items(reply: Value) -> redis::RedisResult<Vec<StreamItem>> {
    let items = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(unexpected("a list of stream entries")),
    };
    Ok(items.into_iter().map(stream_item).collect())
}

/// The entries of a stream reply ([`stream_items`]), leaving out deleted ones
/// and logging those that are not entries at all. An entry whose fields
/// cannot all be read comes back with [`StreamEntry::unreadable`] set.
pub fn entries_of(reply: Value) -> redis::RedisResult<Vec<StreamEntry>> {
    Ok(stream_items(reply)?
        .into_iter()
        .filter_map(|item| match item {
            StreamItem::Entry(entry) => Some(entry),
            StreamItem::Deleted(_) => None,
            StreamItem::Unreadable => {
                tracing::warn!("skipping a stream entry that is not an [id, fields] pair");
                None
            }
        })
        .collect())
}

/// The entries of an XREADGROUP reply over any number of streams:
/// `[[stream, entries]]`, or a map from stream to entries in RESP3; nil when
/// the read timed out.
pub fn read_entries(reply: Value) -> redis::RedisResult<Vec<StreamEntry>> {
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

/// One item of a stream reply.
fn stream_item(item: Value) -> StreamItem {
    let parts = match item {
        Value::Nil => return StreamItem::Deleted(None),
        Value::Array(parts) => parts,
        _ => return StreamItem::Unreadable,
    };
    let Ok([id, fields]) = <[Value; 2]>::try_from(parts) else {
        return StreamItem::Unreadable;
    };
    let Some(id) = text(&id).and_then(|id| id.parse::<EntryId>().ok()) else {
        return StreamItem::Unreadable;
    };
    if fields == Value::Nil {
        return StreamItem::Deleted(Some(id));
    }
    let mut entry = StreamEntry {
        id,
        ..StreamEntry::default()
    };
    let Some((pairs, whole)) = pairs(fields) else {
        entry.malformed = true;
        return StreamItem::Entry(entry);
    };
    entry.malformed = !whole;
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
    StreamItem::Entry(entry)
}

/// The name/value pairs of a RESP2 flat list or a RESP3 map, and whether
/// that was all of it (a flat list of odd length leaves its last item out).
/// `None` if `value` is neither.
pub fn pairs(value: Value) -> Option<(Vec<(Value, Value)>, bool)> {
    match value {
        Value::Array(flat) => {
            let whole = flat.len() % 2 == 0;
            let mut flat = flat.into_iter();
            let pairs = std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect();
            Some((pairs, whole))
        }
        Value::Map(pairs) => Some((pairs, true)),
        _ => None,
    }
}

/// A string reply's bytes.
pub fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

/// A string reply as text, lossily: ids are ASCII, and names only go to logs.
pub fn text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes)),
        Value::SimpleString(text) => Some(text.into()),
        _ => None,
    }
}

/// An integer reply that is not negative.
pub fn int(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// The error for a reply of the wrong shape; `what` says what was expected.
pub fn unexpected(what: &'static str) -> redis::RedisError {
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

    fn raw(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    fn id(text: &str) -> EntryId {
        text.parse().unwrap()
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
        assert_eq!(entries[0].id, id("1-0"));
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
                    raw(b"\xffname"),
                    raw(b"\xfevalue"),
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
        let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
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

    #[test]
    fn items_tell_deleted_entries_from_unreadable_ones() {
        let entry = |id: &[u8], fields: &[&[u8]]| {
            Value::Array(vec![
                raw(id),
                Value::Array(fields.iter().map(|f| raw(f)).collect()),
            ])
        };
        let items = stream_items(Value::Array(vec![
            entry(b"5-1", &[b"\xff\xfe", b"x", b"data", b"{}"]),
            Value::Array(vec![bulk("5-2"), Value::Nil]),
            Value::Nil,
            entry(b"\xff", &[b"data", b"{}"]),
            bulk("5-3"),
        ]))
        .unwrap();
        let StreamItem::Entry(first) = &items[0] else {
            panic!("{:?}", items[0]);
        };
        assert_eq!(first.fields["data"], b"{}");
        assert_eq!(items[1], StreamItem::Deleted(Some(id("5-2"))));
        assert_eq!(items[2], StreamItem::Deleted(None));
        assert_eq!(items[3], StreamItem::Unreadable);
        assert_eq!(items[4], StreamItem::Unreadable);
    }

    #[test]
    fn a_read_over_streams_is_flattened() {
        let stream = Value::Array(vec![
            bulk("flight.search.requested"),
            Value::Array(vec![Value::Array(vec![
                bulk("7-0"),
                Value::Array(vec![bulk("a"), bulk("b")]),
            ])]),
        ]);
        let entries = read_entries(Value::Array(vec![stream])).unwrap();
        assert_eq!(entries[0].id, id("7-0"));
        assert!(read_entries(Value::Nil).unwrap().is_empty());
        assert!(read_entries(Value::Int(1)).is_err());
    }
}
