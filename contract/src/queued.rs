//! A search as queued on `flight.search.requested`: field names and decoding.

use std::collections::HashMap;

use uuid::Uuid;

use crate::request::{Iata, SearchRequest, format_date, parse_date};
use crate::trace_parent::TraceParent;

/// A submitted search, as the queue carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedSearch {
    /// The id handed to the client.
    pub search_id: Uuid,
    /// What to search for.
    pub request: SearchRequest,
    /// POST time, Unix milliseconds. Optional in the contract: producers other
    /// than main-service may queue searches with the fixed fields only.
    pub requested_at_ms: Option<u64>,
    /// The trace the search belongs to (`traceparent` field), when the
    /// submitter traces. Optional like `requested_at`: entries without it, or
    /// with a value that is not a valid `traceparent`, are searched untraced.
    pub traceparent: Option<TraceParent>,
}

/// A queue entry that cannot be turned into a [`QueuedSearch`]: poison input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` is {problem}")]
pub struct DecodeError {
    /// The offending field.
    pub field: &'static str,
    /// `missing` or `invalid`.
    pub problem: &'static str,
}

impl QueuedSearch {
    /// The entry's fields, in the order they are written.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let r = &self.request;
        let mut fields = vec![
            ("search_id", self.search_id.to_string()),
            ("from", r.from.to_string()),
            ("to", r.to.to_string()),
            ("date", format_date(r.date)),
            ("passengers", r.passengers.to_string()),
        ];
        if let Some(ms) = self.requested_at_ms {
            fields.push(("requested_at", ms.to_string()));
        }
        if let Some(parent) = self.traceparent {
            fields.push(("traceparent", parent.to_string()));
        }
        fields
    }

    /// Reads an entry's fields back. The search id alone is decoded by
    /// [`QueuedSearch::search_id_of`] so that poison entries can still be tied to
    /// their search when the id survives.
    pub fn from_fields(fields: &HashMap<String, Vec<u8>>) -> Result<QueuedSearch, DecodeError> {
        let text = |field: &'static str| -> Result<&str, DecodeError> {
            let raw = fields.get(field).ok_or(DecodeError {
                field,
                problem: "missing",
            })?;
            std::str::from_utf8(raw).map_err(|_| DecodeError {
                field,
                problem: "invalid",
            })
        };
        let invalid = |field: &'static str| DecodeError {
            field,
            problem: "invalid",
        };
        let search_id = Self::search_id_of(fields)?;
        let from = Iata::parse(text("from")?).ok_or(invalid("from"))?;
        let to = Iata::parse(text("to")?).ok_or(invalid("to"))?;
        let date = parse_date(text("date")?).ok_or(invalid("date"))?;
        let passengers = text("passengers")?
            .parse::<u8>()
            .ok()
            .filter(|p| crate::request::PASSENGERS.contains(&u64::from(*p)))
            .ok_or(invalid("passengers"))?;
        // Informational only, so a missing or odd value does not poison the search.
        let requested_at_ms = text("requested_at").ok().and_then(|t| t.parse().ok());
        let traceparent = text("traceparent").ok().and_then(TraceParent::parse);
        if from == to {
            return Err(invalid("to"));
        }
        Ok(QueuedSearch {
            search_id,
            request: SearchRequest {
                from,
                to,
                date,
                passengers,
            },
            requested_at_ms,
            traceparent,
        })
    }

    /// The `search_id` field alone.
    pub fn search_id_of(fields: &HashMap<String, Vec<u8>>) -> Result<Uuid, DecodeError> {
        let raw = fields.get("search_id").ok_or(DecodeError {
            field: "search_id",
            problem: "missing",
        })?;
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or(DecodeError {
                field: "search_id",
                problem: "invalid",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn sample() -> QueuedSearch {
        QueuedSearch {
            search_id: Uuid::new_v4(),
            request: SearchRequest {
                from: Iata::parse("CGK").unwrap(),
                to: Iata::parse("DPS").unwrap(),
                date: date!(2026 - 12 - 10),
                passengers: 2,
            },
            requested_at_ms: Some(1_790_000_000_000),
            traceparent: TraceParent::parse(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        }
    }

    fn as_map(q: &QueuedSearch) -> HashMap<String, Vec<u8>> {
        q.to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_bytes()))
            .collect()
    }

    #[test]
    fn round_trips() {
        let q = sample();
        assert_eq!(QueuedSearch::from_fields(&as_map(&q)), Ok(q));
    }

    #[test]
    fn the_fixed_fields_alone_are_enough() {
        let q = QueuedSearch {
            requested_at_ms: None,
            traceparent: None,
            ..sample()
        };
        let mut m = as_map(&q);
        assert!(!m.contains_key("requested_at"));
        assert!(!m.contains_key("traceparent"));
        assert_eq!(QueuedSearch::from_fields(&m), Ok(q));
        m.insert("requested_at".into(), b"yesterday".to_vec());
        m.insert("traceparent".into(), b"00-not-a-trace".to_vec());
        assert_eq!(QueuedSearch::from_fields(&m), Ok(q));
    }

    #[test]
    fn poison_entries_name_the_bad_field() {
        let q = sample();
        let mut m = as_map(&q);
        m.insert("passengers".into(), b"12".to_vec());
        assert_eq!(
            QueuedSearch::from_fields(&m).unwrap_err().field,
            "passengers"
        );
        assert_eq!(QueuedSearch::search_id_of(&m), Ok(q.search_id));
        m.remove("search_id");
        assert_eq!(
            QueuedSearch::from_fields(&m).unwrap_err(),
            DecodeError {
                field: "search_id",
                problem: "missing"
            }
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::hostile_input::{bytes_like, config};

    /// Field names: the real ones, mostly, and now and then any text.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(
                &["search_id", "from", "to", "date", "passengers", "requested_at"][..]
            )
            .prop_map(str::to_owned),
            1 => any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(config(400))]

        /// No set of fields panics the decoder, and what it decodes is
        /// written back as the same search.
        #[test]
        fn no_fields_panic_the_queued_decoder(
            fields in proptest::collection::hash_map(
                name(),
                prop_oneof![
                    bytes_like(b"6f1c2a9e-8a5b-4c2d-9e7f-0a1b2c3d4e5f"),
                    bytes_like(b"CGK"),
                    bytes_like(b"DPS"),
                    bytes_like(b"2026-12-10"),
                    bytes_like(b"2"),
                ],
                0..8,
            )
        ) {
            let _ = QueuedSearch::search_id_of(&fields);
            if let Ok(search) = QueuedSearch::from_fields(&fields) {
                let again: HashMap<String, Vec<u8>> = search
                    .to_fields()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.into_bytes()))
                    .collect();
                prop_assert_eq!(QueuedSearch::from_fields(&again).ok(), Some(search));
            }
        }
    }
}
