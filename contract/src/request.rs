//! The search request (`POST /api/flights/search` body) and its input rules.
//!
//! The body is parsed leniently into a JSON value and checked field by field, so
//! every problem, wrong JSON types included, is reported against the field at
//! fault in one answer rather than as serde's first complaint.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use time::{Date, Duration, format_description::FormatItem, macros::format_description};

/// How far ahead a search may look, in days (inclusive).
pub const MAX_DAYS_AHEAD: i64 = 365;

/// Party size bounds (inclusive).
pub const PASSENGERS: std::ops::RangeInclusive<u64> = 1..=9;

const DATE_FORMAT: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// A three-letter IATA airport code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Iata([u8; 3]);

impl Iata {
    /// Accepts exactly three ASCII letters in any case.
    pub fn parse(text: &str) -> Option<Iata> {
        let bytes: [u8; 3] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_alphabetic)
            .then(|| Iata(bytes.map(|b| b.to_ascii_uppercase())))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("validated ASCII")
    }
}

impl fmt::Display for Iata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchRequest {
    /// Origin airport.
    pub from: Iata,
    /// Destination airport, never equal to `from`.
    pub to: Iata,
    /// Local departure date.
    pub date: Date,
    /// Party size, within [`PASSENGERS`].
    pub passengers: u8,
}

/// One input problem, reported against the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The request field (`from`, `to`, `date`, `passengers`, or an unknown name).
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Why a request body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not JSON at all.
    #[error("request body is not valid JSON")]
    MalformedJson,
    /// The body is JSON but not an object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// One or more fields break the rules.
    #[error("request has invalid fields")]
    Invalid(Vec<FieldError>),
}

impl SearchRequest {
    /// Parses and validates a request body against the input rules, with `today`
    /// the current UTC date. Returns every field error found, in field order.
    pub fn from_json(body: &[u8], today: Date) -> Result<SearchRequest, RequestError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| RequestError::MalformedJson)?;
        let Value::Object(object) = value else {
            return Err(RequestError::NotAnObject);
        };
        // `Value` keeps the last of repeated keys; the second pass sees them all.
        let TopLevelKeys(duplicates) =
            serde_json::from_slice(body).map_err(|_| RequestError::MalformedJson)?;
        Self::from_object(&object, &duplicates, today)
    }

    fn from_object(
        object: &Map<String, Value>,
        duplicates: &BTreeSet<String>,
        today: Date,
    ) -> Result<SearchRequest, RequestError> {
        let mut errors = Vec::new();
        // A repeated field is reported as such and its values are not judged:
        // which one the client meant is unknowable.
        let once = |field: &str, errors: &mut Vec<FieldError>| {
            let repeated = duplicates.contains(field);
            if repeated {
                errors.push(FieldError::new(field, "must appear only once"));
            }
            !repeated
        };
        let from = once("from", &mut errors)
            .then(|| airport(object, "from", &mut errors))
            .flatten();
        let to = once("to", &mut errors)
            .then(|| airport(object, "to", &mut errors))
            .flatten();
        if let (Some(from), Some(to)) = (from, to)
            && from == to
        {
            errors.push(FieldError::new("to", "must differ from `from`"));
        }
        let date = once("date", &mut errors)
            .then(|| date(object, today, &mut errors))
            .flatten();
        let passengers = once("passengers", &mut errors)
            .then(|| passengers(object, &mut errors))
            .flatten();
        let mut unknown: Vec<&String> = object
            .keys()
            .filter(|k| !["from", "to", "date", "passengers"].contains(&k.as_str()))
            .collect();
        unknown.sort();
        errors.extend(
            unknown
                .into_iter()
                .map(|k| FieldError::new(k, "unknown field")),
        );
        match (from, to, date, passengers) {
            (Some(from), Some(to), Some(date), Some(passengers)) if errors.is_empty() => {
                Ok(SearchRequest {
                    from,
                    to,
                    date,
                    passengers,
                })
            }
            _ => Err(RequestError::Invalid(errors)),
        }
    }

    /// The date as `YYYY-MM-DD`.
    pub fn date_text(&self) -> String {
        format_date(self.date)
    }
}

/// The keys that occur more than once at the top level of a JSON object.
struct TopLevelKeys(BTreeSet<String>);

impl<'de> Deserialize<'de> for TopLevelKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = TopLevelKeys;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevelKeys, A::Error> {
                let mut seen = BTreeSet::new();
                let mut repeated = BTreeSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    if let Some(key) = seen.replace(key) {
                        repeated.insert(key);
                    }
                }
                Ok(TopLevelKeys(repeated))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

/// Formats a date as `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    date.format(DATE_FORMAT).expect("a Date always formats")
}

/// Parses a strict `YYYY-MM-DD` calendar date.
pub fn parse_date(text: &str) -> Option<Date> {
    if text.len() != 10 {
        return None;
    }
    Date::parse(text, DATE_FORMAT).ok()
}

fn airport(object: &Map<String, Value>, field: &str, errors: &mut Vec<FieldError>) -> Option<Iata> {
    let parsed = match object.get(field) {
        None | Some(Value::Null) => Err("is required"),
        Some(Value::String(s)) => Iata::parse(s).ok_or("must be a 3-letter IATA airport code"),
        Some(_) => Err("must be a string holding a 3-letter IATA airport code"),
    };
    parsed
        .map_err(|m| errors.push(FieldError::new(field, m)))
        .ok()
}

fn date(object: &Map<String, Value>, today: Date, errors: &mut Vec<FieldError>) -> Option<Date> {
    // Checked: a clock near the end of the calendar must not panic a parse.
    let last = today
        .checked_add(Duration::days(MAX_DAYS_AHEAD))
        .unwrap_or(Date::MAX);
    let parsed = match object.get("date") {
        None | Some(Value::Null) => Err("is required".to_owned()),
        Some(Value::String(s)) => match parse_date(s) {
            None => Err("must be a real calendar date in the form YYYY-MM-DD".to_owned()),
            Some(d) if d < today => Err(format!(
                "must not be in the past (today is {})",
                format_date(today)
            )),
            Some(d) if d > last => Err(format!(
                "must be at most {MAX_DAYS_AHEAD} days ahead (last allowed: {})",
                format_date(last)
            )),
            Some(d) => Ok(d),
        },
        Some(_) => Err("must be a string in the form YYYY-MM-DD".to_owned()),
    };
    parsed
        .map_err(|m| errors.push(FieldError::new("date", m)))
        .ok()
}

fn passengers(object: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<u8> {
    let message = format!(
        "must be an integer from {} to {}",
        PASSENGERS.start(),
        PASSENGERS.end()
    );
    let parsed = match object.get("passengers") {
        None | Some(Value::Null) => Err("is required".to_owned()),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(p) if PASSENGERS.contains(&p) => Ok(p as u8),
            _ => Err(message),
        },
        Some(_) => Err(message),
    };
    parsed
        .map_err(|m| errors.push(FieldError::new("passengers", m)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 21);

    #[test]
    fn a_clock_at_the_end_of_the_calendar_does_not_panic_the_parser() {
        let body = br#"{"from":"CGK","to":"DPS","date":"9999-12-31","passengers":1}"#;
        let parsed = SearchRequest::from_json(body, Date::MAX).unwrap();
        assert_eq!(parsed.date, Date::MAX);
    }

    fn check(body: &str) -> Result<SearchRequest, RequestError> {
        SearchRequest::from_json(body.as_bytes(), TODAY)
    }

    fn fields(body: &str) -> Vec<String> {
        match check(body) {
            Err(RequestError::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("{body}: expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_valid_request_and_upper_cases_codes() {
        let r = check(r#"{"from":"cgk","to":"Dps","date":"2026-12-10","passengers":2}"#).unwrap();
        assert_eq!((r.from.as_str(), r.to.as_str()), ("CGK", "DPS"));
        assert_eq!(r.date_text(), "2026-12-10");
        assert_eq!(r.passengers, 2);
    }

    #[test]
    fn date_bounds_are_today_and_a_year_ahead_inclusive() {
        assert!(check(r#"{"from":"CGK","to":"DPS","date":"2026-11-21","passengers":1}"#).is_ok());
        assert!(check(r#"{"from":"CGK","to":"DPS","date":"2027-11-21","passengers":1}"#).is_ok());
        assert_eq!(
            fields(r#"{"from":"CGK","to":"DPS","date":"2026-11-20","passengers":1}"#),
            ["date"]
        );
        assert_eq!(
            fields(r#"{"from":"CGK","to":"DPS","date":"2027-11-22","passengers":1}"#),
            ["date"]
        );
    }

    #[test]
    fn rejects_impossible_and_sloppy_dates() {
        for d in [
            "2027-02-29",
            "2026-13-01",
            "2026-12-1",
            "10-12-2026",
            "2026/12/10",
            "2026-12-10T00:00:00Z",
            "",
        ] {
            let body = format!(r#"{{"from":"CGK","to":"DPS","date":"{d}","passengers":1}}"#);
            assert_eq!(fields(&body), ["date"], "{d}");
        }
    }

    #[test]
    fn reports_every_bad_field_including_wrong_types() {
        assert_eq!(
            fields(r#"{"from":1,"to":"D1S","date":20261210,"passengers":"2","extra":true}"#),
            ["from", "to", "date", "passengers", "extra"]
        );
        assert_eq!(fields("{}"), ["from", "to", "date", "passengers"]);
    }

    #[test]
    fn passengers_must_be_a_whole_number_from_one_to_nine() {
        for p in ["0", "10", "2.5", "-1", "2.0", "true", "null"] {
            let body =
                format!(r#"{{"from":"CGK","to":"DPS","date":"2026-12-10","passengers":{p}}}"#);
            assert_eq!(fields(&body), ["passengers"], "{p}");
        }
        for p in 1..=9 {
            let body =
                format!(r#"{{"from":"CGK","to":"DPS","date":"2026-12-10","passengers":{p}}}"#);
            assert!(check(&body).is_ok(), "{p}");
        }
    }

    #[test]
    fn repeated_keys_are_errors_on_their_field() {
        assert_eq!(
            fields(r#"{"from":"CGK","from":"XXX","to":"DPS","date":"2026-12-10","passengers":1}"#),
            ["from"]
        );
        assert_eq!(
            fields(
                r#"{"from":"CGK","to":"DPS","date":"2026-12-10","passengers":1,"passengers":1,"to":"DPS"}"#
            ),
            ["to", "passengers"]
        );
        assert!(
            check(r#"{"from":"CGK","to":"DPS","date":"2026-12-10","passengers":1,"x":{"a":1,"a":2}}"#)
                .is_err_and(|e| e == RequestError::Invalid(vec![FieldError::new("x", "unknown field")])),
            "only the top level is checked for repeats; deeper values are refused anyway"
        );
    }

    #[test]
    fn same_origin_and_destination_is_an_error_on_to() {
        assert_eq!(
            fields(r#"{"from":"CGK","to":"cgk","date":"2026-12-10","passengers":1}"#),
            ["to"]
        );
    }

    #[test]
    fn non_objects_and_garbage_are_told_apart() {
        assert_eq!(check("[1]"), Err(RequestError::NotAnObject));
        assert_eq!(check("{\"from\":"), Err(RequestError::MalformedJson));
        assert_eq!(check(""), Err(RequestError::MalformedJson));
    }

    #[test]
    fn iata_codes_are_three_ascii_letters() {
        for bad in ["CG", "CGKK", "C1K", "ÇGK", "   "] {
            assert!(Iata::parse(bad).is_none(), "{bad}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use time::macros::date;

    use super::*;
    use crate::hostile_input::{bytes_like, config};

    const VALID: &[u8] = br#"{"from":"CGK","to":"DPS","date":"2026-12-10","passengers":2}"#;

    proptest! {
        #![proptest_config(config(1000))]

        /// No body panics the parser, and what it accepts keeps the rules.
        #[test]
        fn no_body_panics_the_request_parser(body in bytes_like(VALID)) {
            let today = date!(2026 - 11 - 21);
            if let Ok(request) = SearchRequest::from_json(&body, today) {
                prop_assert_ne!(request.from, request.to);
                prop_assert!(PASSENGERS.contains(&u64::from(request.passengers)));
                prop_assert!(request.date >= today);
            }
        }
    }
}
