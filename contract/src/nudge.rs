//! The nudge: the message the append scripts publish after every call that
//! wrote events, and the one parser of it.
//!
//! A nudge carries the entries the call wrote, so a subscriber that already
//! holds everything up to the stream's previous last entry can deliver them
//! without reading the stream:
//!
//! ```text
//! <search id> SP <previous> ( LF <entry id> SP <length> LF <data> )+
//! ```
//!
//! * `<search id>`: the 36-byte hyphenated UUID, always first.
//! * `<previous>`: the id of the entry the stream ended with before the call
//!   (`<ms>-<seq>`), or `-` when the stream had no entry: the carried entries
//!   are exactly the ones that follow it, since the script is atomic.
//! * per entry, in stream order: its id, the decimal byte length of its
//!   `data` field, and exactly that many bytes of data. The length, not a
//!   separator, ends the data, so JSON holding spaces or newlines (or any
//!   bytes) cannot be misread; the next entry's LF follows the data directly.
//!
//! A bare search id (36 bytes, nothing after) is a nudge too, meaning "read
//! the stream": the script sends it when the call wrote more than
//! [`NUDGE_DATA_LIMIT`] bytes of data, and older scripts send nothing else. Every other
//! form is malformed and, if it starts with a search id, read as a bare nudge.

use uuid::Uuid;

use crate::EntryId;

/// Most bytes of event data one nudge carries; a call that wrote more
/// publishes the bare search id instead, and subscribers read the stream.
///
/// The scripts spell it as a literal (a test checks it equals this). It is
/// fixed rather than passed by each writer because it is a property of the
/// channel that every writer must respect alike. 16 KiB holds every ordinary
/// append (an offer is about 300 bytes of JSON, and an airline answers with a
/// handful) while keeping pub/sub traffic bounded: on a single server every
/// main-service instance receives every nudge, searches it watches or not,
/// and Redis cuts off a subscriber whose pending output exceeds
/// `client-output-buffer-limit pubsub` (32 MB, or 8 MB for a minute, by
/// default), after which every feed has to be re-read.
pub const NUDGE_DATA_LIMIT: usize = 16 * 1024;

/// Length of the hyphenated search id that starts every nudge.
const SEARCH_ID_LEN: usize = 36;

/// A nudge whose search id has been read; what it carries is parsed only on
/// demand ([`Nudge::carried`]), since most nudges a single-server subscriber
/// receives are for searches it does not watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nudge<'a> {
    /// The search whose stream changed.
    pub search_id: Uuid,
    /// Everything after the search id.
    tail: &'a [u8],
}

/// The entries a nudge carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried<'a> {
    /// The stream's last entry before them; `None` when they are its first.
    pub after: Option<EntryId>,
    /// Each entry's id and `data`, in stream order; never empty.
    pub entries: Vec<(EntryId, &'a [u8])>,
}

impl<'a> Nudge<'a> {
    /// Reads a nudge's search id; `None` when the payload does not start with
    /// one, which makes it no nudge at all.
    pub fn parse(payload: &'a [u8]) -> Option<Nudge<'a>> {
        let search_id = Uuid::try_parse_ascii(payload.get(..SEARCH_ID_LEN)?).ok()?;
        Some(Nudge {
            search_id,
            tail: &payload[SEARCH_ID_LEN..],
        })
    }

    /// A bare nudge of `search_id`: read its stream.
    pub fn bare(search_id: Uuid) -> Nudge<'static> {
        Nudge {
            search_id,
            tail: &[],
        }
    }

    /// The entries the nudge carries; `None` for a bare nudge and for a
    /// malformed one (anything but the format in the module docs, including
    /// ids out of order), which must be treated as bare.
    pub fn carried(&self) -> Option<Carried<'a>> {
        let (after, mut rest) = split_once(self.tail.strip_prefix(b" ")?, b'\n')?;
        let after = match after {
            b"-" => None,
            id => Some(entry_id(id)?),
        };
        let mut entries = Vec::new();
        let mut newest = after;
        loop {
            let (id, tail) = split_once(rest, b' ')?;
            let id = entry_id(id)?;
            if newest.is_some_and(|newest| id <= newest) {
                return None;
            }
            let (length, tail) = split_once(tail, b'\n')?;
            let length = decimal(length)?;
            let data = tail.get(..length)?;
            entries.push((id, data));
            newest = Some(id);
            rest = &tail[length..];
            if rest.is_empty() {
                return Some(Carried { after, entries });
            }
            rest = rest.strip_prefix(b"\n")?;
        }
    }
}

/// The bytes before the first `separator` and those after it.
fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// A stream entry id written as text.
fn entry_id(bytes: &[u8]) -> Option<EntryId> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// A byte length in plain decimal digits.
fn decimal(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() || bytes.len() > 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f";

    fn id(ms: u64, seq: u64) -> EntryId {
        EntryId { ms, seq }
    }

    fn carried(payload: &[u8]) -> Option<Carried<'_>> {
        let nudge = Nudge::parse(payload).expect("a search id");
        assert_eq!(nudge.search_id.to_string(), ID);
        nudge.carried()
    }

    #[test]
    fn a_bare_search_id_carries_nothing() {
        assert_eq!(carried(ID.as_bytes()), None);
        assert_eq!(
            Nudge::parse(ID.as_bytes()),
            Some(Nudge::bare(ID.parse().unwrap()))
        );
    }

    #[test]
    fn one_entry_after_none_or_after_a_previous_one() {
        let first = format!("{ID} -\n5-0 4\n{{}}{{}}");
        assert_eq!(
            carried(first.as_bytes()),
            Some(Carried {
                after: None,
                entries: vec![(id(5, 0), &b"{}{}"[..])]
            })
        );
        let next = format!("{ID} 5-0\n7-1 2\n{{}}");
        assert_eq!(
            carried(next.as_bytes()),
            Some(Carried {
                after: Some(id(5, 0)),
                entries: vec![(id(7, 1), &b"{}"[..])]
            })
        );
    }

    #[test]
    fn data_is_delimited_by_its_length_whatever_it_holds() {
        let tricky = "a b\n7-2 1\nx\n";
        let payload = format!("{ID} 5-0\n7-0 {}\n{tricky}\n7-1 0\n", tricky.len());
        assert_eq!(
            carried(payload.as_bytes()),
            Some(Carried {
                after: Some(id(5, 0)),
                entries: vec![(id(7, 0), tricky.as_bytes()), (id(7, 1), &b""[..])]
            })
        );
        let binary = [format!("{ID} -\n1-0 3\n").as_bytes(), b"\xff\x00\n"].concat();
        assert_eq!(
            carried(&binary).unwrap().entries,
            [(id(1, 0), &b"\xff\x00\n"[..])]
        );
    }

    #[test]
    fn anything_malformed_after_the_search_id_is_a_bare_nudge() {
        for tail in [
            " ",
            " -",
            " -\n",
            "x-\n1-0 1\na",
            " 1-0",
            " x\n2-0 1\na",
            " -\n1-0 2\na",
            " -\n1-0 1\nab",
            " -\n1-0 1\na\n",
            " -\n1-0 1\na2-0 1\nb",
            " -\n1-0 +1\na",
            " -\n1-0 -1\na",
            " -\n1-0 99999999999\na",
            " -\n1-0\n1\na",
            " -\n1-x 1\na",
            " 2-0\n1-0 1\na",
            " 1-0\n1-0 1\na",
            " -\n1-0 1\na\n1-0 1\nb",
        ] {
            let payload = format!("{ID}{tail}");
            assert_eq!(carried(payload.as_bytes()), None, "{tail:?}");
        }
    }

    #[test]
    fn without_a_search_id_first_it_is_no_nudge() {
        for payload in [
            &b""[..],
            b"not a search id",
            &ID.as_bytes()[..35],
            b"6f1c2a9e8a5b4c2d9e7f0a1b2c3d4e5f -\n1-0 1\na",
            b"{6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f}",
        ] {
            assert_eq!(Nudge::parse(payload), None, "{payload:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::hostile_input::{bytes_like, config};

    const VALID: &[u8] = b"6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f 1-1\n1-2 5\nhello\n2-0 2\nhi";

    #[test]
    fn the_valid_sample_carries_two_entries() {
        let carried = Nudge::parse(VALID).and_then(|n| n.carried()).unwrap();
        assert_eq!(carried.entries.len(), 2);
    }

    proptest! {
        #![proptest_config(config(1000))]

        /// No payload panics the parser, and what it reads lies within the
        /// payload, in stream order.
        #[test]
        fn no_payload_panics_the_nudge_parser(payload in bytes_like(VALID)) {
            if let Some(carried) = Nudge::parse(&payload).and_then(|n| n.carried()) {
                prop_assert!(!carried.entries.is_empty());
                let data: usize = carried.entries.iter().map(|(_, d)| d.len()).sum();
                prop_assert!(data <= payload.len());
                let ids: Vec<EntryId> = carried.entries.iter().map(|(id, _)| *id).collect();
                prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(carried.after.is_none_or(|after| after < ids[0]));
            }
        }
    }
}
