//! How much of a supplier's answer a search keeps, so that no answer, however
//! large, costs more than a bounded amount of memory here, in Redis and in
//! every client's stream.
//!
//! Three limits, each a setting: offers kept per supplier answer
//! (`MAX_OFFERS_PER_ANSWER`), bytes of one `result` event
//! (`MAX_RESULT_EVENT_BYTES`) and bytes of all events of one search
//! (`MAX_SEARCH_EVENT_BYTES`, counting what earlier attempts wrote). An answer
//! over a limit keeps its first offers, as many as fit; what is cut is counted
//! in `supplier_offers_truncated_total{supplier,limit}`, logged once per
//! search, and the supplier's outcome in the terminal event is `truncated`.

use contract::{EventKind, Flight, SearchEvent};
use service_runtime::config::{ConfigError, Vars};
use uuid::Uuid;

/// The limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerBounds {
    /// Offers kept per supplier answer.
    pub max_offers: usize,
    /// Bytes of one `result` event's JSON.
    pub max_event_bytes: usize,
    /// Bytes of the JSON of all events of one search.
    pub max_search_bytes: usize,
}

/// Which limit cut an answer; the metric's `limit` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `MAX_OFFERS_PER_ANSWER`.
    Offers,
    /// `MAX_RESULT_EVENT_BYTES`.
    EventBytes,
    /// `MAX_SEARCH_EVENT_BYTES`.
    SearchBytes,
}

impl Limit {
    /// Every limit, so the metric's series exist from start.
    pub const ALL: [Limit; 3] = [Limit::Offers, Limit::EventBytes, Limit::SearchBytes];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Offers => "offers",
            Limit::EventBytes => "event_bytes",
            Limit::SearchBytes => "search_bytes",
        }
    }
}

/// What cutting one answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The limit that cut deepest.
    pub limit: Limit,
    /// Offers dropped.
    pub dropped: usize,
}

impl AnswerBounds {
    /// Reads and validates the three settings.
    pub fn from_vars<F: Fn(&str) -> Option<String>>(
        vars: &Vars<F>,
    ) -> Result<AnswerBounds, ConfigError> {
        let max_offers = vars.int_in("MAX_OFFERS_PER_ANSWER", 500, 1..=100_000)?;
        let max_event_bytes = vars.int_in(
            "MAX_RESULT_EVENT_BYTES",
            256 * 1024,
            4096..=16 * 1024 * 1024,
        )?;
        let max_search_bytes = vars.int_in(
            "MAX_SEARCH_EVENT_BYTES",
            1024 * 1024,
            4096..=64 * 1024 * 1024,
        )?;
        if max_search_bytes < max_event_bytes {
            return Err(ConfigError {
                name: "MAX_SEARCH_EVENT_BYTES",
                value: max_search_bytes.to_string(),
                reason: format!("must be at least MAX_RESULT_EVENT_BYTES ({max_event_bytes})"),
            });
        }
        // The ranges keep every value far below usize::MAX on any target.
        Ok(AnswerBounds {
            max_offers: usize::try_from(max_offers).unwrap_or(usize::MAX),
            max_event_bytes: usize::try_from(max_event_bytes).unwrap_or(usize::MAX),
            max_search_bytes: usize::try_from(max_search_bytes).unwrap_or(usize::MAX),
        })
    }

    /// Cuts the offers of `kind` (a `result` event of `search_id`) to what
    /// the limits allow when `left` bytes of the search's budget remain, and
    /// returns the event's size and the cut, if any. Offers are kept in the
    /// supplier's order, as many as fit.
    pub fn cut(&self, search_id: Uuid, kind: &mut EventKind, left: usize) -> (usize, Option<Cut>) {
        let EventKind::Result { supplier, results } = kind else {
            let event = SearchEvent {
                search_id,
                kind: kind.clone(),
            };
            return (event.to_json().len(), None);
        };
        let offered = results.len();
        let mut limit = None;
        if offered > self.max_offers {
            results.truncate(self.max_offers);
            limit = Some(Limit::Offers);
        }
        let envelope = SearchEvent {
            search_id,
            kind: EventKind::Result {
                supplier: supplier.clone(),
                results: Vec::new(),
            },
        }
        .to_json()
        .len();
        let (byte_limit, room) = if left < self.max_event_bytes {
            (Limit::SearchBytes, left)
        } else {
            (Limit::EventBytes, self.max_event_bytes)
        };
        let (fit, size) = fitting(results, envelope, room);
        if fit < results.len() {
            results.truncate(fit);
            limit = Some(byte_limit);
        }
        let cut = limit.map(|limit| Cut {
            limit,
            dropped: offered.saturating_sub(fit),
        });
        (size, cut)
    }
}

/// How many of `offers` fit in `room` bytes after an `envelope` (the event
/// with no offers), and the size of the event with them: each offer adds its
/// own JSON and a comma between it and the previous one.
fn fitting(offers: &[Flight], envelope: usize, room: usize) -> (usize, usize) {
    let mut size = envelope;
    for (i, offer) in offers.iter().enumerate() {
        let own = serde_json::to_string(offer).map_or(usize::MAX, |json| json.len());
        let next = size.saturating_add(own).saturating_add(usize::from(i > 0));
        if next > room {
            return (i, size);
        }
        size = next;
    }
    (offers.len(), size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::{Iata, SearchRequest};

    fn event(offers: usize) -> SearchEvent {
        let request = SearchRequest {
            from: Iata::parse("CGK").unwrap(),
            to: Iata::parse("DPS").unwrap(),
            date: time::macros::date!(2026 - 12 - 10),
            passengers: 1,
        };
        let day = timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], &request);
        SearchEvent {
            search_id: Uuid::nil(),
            kind: EventKind::Result {
                supplier: "GA".into(),
                results: day.iter().cycle().take(offers).cloned().collect(),
            },
        }
    }

    fn cutting(bounds: &AnswerBounds, e: &mut SearchEvent, left: usize) -> (usize, Option<Cut>) {
        bounds.cut(e.search_id, &mut e.kind, left)
    }

    fn offers(event: &SearchEvent) -> usize {
        match &event.kind {
            EventKind::Result { results, .. } => results.len(),
            _ => 0,
        }
    }

    const BOUNDS: AnswerBounds = AnswerBounds {
        max_offers: 50,
        max_event_bytes: 8192,
        max_search_bytes: 20_000,
    };

    #[test]
    fn a_small_answer_is_whole_and_its_size_is_exact() {
        let mut e = event(3);
        let (size, cut) = cutting(&BOUNDS, &mut e, BOUNDS.max_search_bytes);
        assert_eq!(cut, None);
        assert_eq!(offers(&e), 3);
        assert_eq!(size, e.to_json().len());
    }

    #[test]
    fn each_limit_cuts_to_what_fits() {
        let mut e = event(500);
        let (size, cut) = cutting(&BOUNDS, &mut e, BOUNDS.max_search_bytes);
        assert_eq!(cut.map(|c| c.limit), Some(Limit::EventBytes));
        assert_eq!(size, e.to_json().len());
        assert!(size <= 8192 && size > 8192 - 400, "{size}");
        assert_eq!(cut.unwrap().dropped, 500 - offers(&e));

        let mut e = event(500);
        let (size, cut) = cutting(&BOUNDS, &mut e, 3000);
        assert_eq!(cut.map(|c| c.limit), Some(Limit::SearchBytes));
        assert!(size <= 3000, "{size}");

        let roomy = AnswerBounds {
            max_event_bytes: 1 << 20,
            max_search_bytes: 1 << 20,
            ..BOUNDS
        };
        let mut e = event(500);
        let (_, cut) = cutting(&roomy, &mut e, 1 << 20);
        assert_eq!(
            cut,
            Some(Cut {
                limit: Limit::Offers,
                dropped: 450
            })
        );
        assert_eq!(offers(&e), 50);

        let mut e = event(5);
        let (_, cut) = cutting(&BOUNDS, &mut e, 10);
        assert_eq!(offers(&e), 0, "no room at all keeps no offer");
        assert_eq!(cut.map(|c| c.dropped), Some(5));
    }

    #[test]
    fn settings_are_validated() {
        let bounds = |pairs: &[(&str, &str)]| AnswerBounds::from_vars(&Vars::from_pairs(pairs));
        assert_eq!(
            bounds(&[]).unwrap(),
            AnswerBounds {
                max_offers: 500,
                max_event_bytes: 262_144,
                max_search_bytes: 1_048_576
            }
        );
        for (name, value) in [
            ("MAX_OFFERS_PER_ANSWER", "0"),
            ("MAX_RESULT_EVENT_BYTES", "100"),
            ("MAX_SEARCH_EVENT_BYTES", "18446744073709551616"),
            ("MAX_SEARCH_EVENT_BYTES", "5000"),
        ] {
            assert_eq!(bounds(&[(name, value)]).unwrap_err().name, name, "{value}");
        }
    }
}
