//! Redis stream entry ids (`<ms>-<seq>`), used as SSE event ids and resume points.

use std::fmt;
use std::str::FromStr;

/// A stream entry id. Ordered the way Redis orders entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

/// The text was not an entry id of the form `<digits>-<digits>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stream entry id (expected <ms>-<seq>)")]
pub struct InvalidEntryId;

impl FromStr for EntryId {
    type Err = InvalidEntryId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = s.split_once('-').ok_or(InvalidEntryId)?;
        let digits = |p: &str| {
            if p.is_empty() || p.len() > 20 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidEntryId);
            }
            p.parse::<u64>().map_err(|_| InvalidEntryId)
        };
        Ok(EntryId {
            ms: digits(ms)?,
            seq: digits(seq)?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_like_redis() {
        let a: EntryId = "1700000000000-0".parse().unwrap();
        let b: EntryId = "1700000000000-10".parse().unwrap();
        let c: EntryId = "1700000000001-2".parse().unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-10");
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1",
            "a-1",
            "1-1-1",
            "1 -1",
            "+1-1",
            "99999999999999999999999-0",
        ] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad:?} was accepted");
        }
    }
}
