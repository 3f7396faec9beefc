//! Per-supplier adapters: how to ask one airline's API for a search and how to
//! turn its answer into the contract's flights.
//!
//! Real partners differ in everything, so each airline gets an [`Adapter`]; the
//! HTTP plumbing around it (pool, timeouts, retries, circuit breaker) is shared
//! and knows nothing about formats. Two formats exist today:
//!
//! * [`FlightsApi`] (GA, ID, QG): `GET <base>/v1/flights?from&to&date&passengers`,
//!   answering `{"flights":[…]}` in the contract's flight shape.
//! * [`OffersApi`] (JT, QZ, SJ): `POST <base>/api/offers/search` with a camelCase
//!   JSON body, answering `{"offers":[…]}` with local times and separate UTC
//!   offsets and the fare per adult as a decimal string.
//!
//! Adapters only translate: the total price is computed here, never trusted,
//! and every offer then passes the [`crate::offer_check`] (route, seats,
//! times, airline, price, …), one check for every format.

use bytes::Bytes;
use contract::{Airline, Flight, Price, SearchRequest};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;

/// Airlines with an adapter, the codes `SUPPLIER_URLS` accepts.
pub const AIRLINES: &[&str] = &["GA", "JT", "QZ", "ID", "QG", "SJ"];

/// An answer the adapter cannot read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable supplier answer: {0}")]
pub struct BadAnswer(String);

/// How to talk to one airline's API.
pub trait Adapter: Send + Sync {
    /// The request asking the API at `base` (its base URL, no trailing `/`)
    /// for `search`'s flights.
    fn request(&self, base: &str, search: &SearchRequest) -> Request<Full<Bytes>>;

    /// The flights in a successful (200) answer's body.
    fn flights(&self, search: &SearchRequest, body: &[u8]) -> Result<Vec<Flight>, BadAnswer>;
}

/// The adapter for airline `code`, if there is one.
pub fn for_airline(code: &str) -> Option<Box<dyn Adapter>> {
    match code {
        "GA" | "ID" | "QG" => Some(Box::new(FlightsApi)),
        "JT" | "QZ" | "SJ" => Some(Box::new(OffersApi)),
        _ => None,
    }
}

/// The query-string API answering contract-shaped flights.
pub struct FlightsApi;

#[derive(Deserialize)]
struct FlightsAnswer {
    flights: Vec<Flight>,
}

impl Adapter for FlightsApi {
    fn request(&self, base: &str, search: &SearchRequest) -> Request<Full<Bytes>> {
        let uri = format!(
            "{base}/v1/flights?from={}&to={}&date={}&passengers={}",
            search.from,
            search.to,
            search.date_text(),
            search.passengers
        );
        Request::get(uri)
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .expect("a valid request from a checked base URL")
    }

    fn flights(&self, search: &SearchRequest, body: &[u8]) -> Result<Vec<Flight>, BadAnswer> {
        let answer: FlightsAnswer =
            serde_json::from_slice(body).map_err(|e| BadAnswer(e.to_string()))?;
        Ok(answer
            .flights
            .into_iter()
            .map(|mut f| {
                // Saturating: a fare that large fails the offer check anyway.
                f.price.total = f.price.amount.saturating_mul(u64::from(search.passengers));
                f
            })
            .collect())
    }
}

/// The JSON API answering camelCase offers.
pub struct OffersApi;

#[derive(Deserialize)]
struct OffersAnswer {
    offers: Vec<Offer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Offer {
    flight_no: String,
    carrier: Carrier,
    departure: Point,
    arrival: Point,
    duration_minutes: u32,
    stops: u8,
    seats_left: u32,
    fare: Fare,
}

#[derive(Deserialize)]
struct Carrier {
    iata: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Point {
    airport: String,
    local_time: String,
    utc_offset: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fare {
    per_adult: String,
    currency: String,
}

impl Point {
    /// RFC 3339 with the airport's offset, if the parts make one (the offer
    /// check parses it).
    fn time(&self) -> String {
        format!("{}{}", self.local_time, self.utc_offset)
    }
}

/// `"1385000.00"` as whole units; a fare with a non-zero minor part, or
/// that is no number, is zero (IDR has no minor unit in use, so one would be
/// a supplier error), which the offer check refuses and counts.
fn whole_units(text: &str) -> u64 {
    let (units, minor) = text.split_once('.').unwrap_or((text, ""));
    if !minor.bytes().all(|b| b == b'0') {
        return 0;
    }
    units.parse().unwrap_or(0)
}

impl Adapter for OffersApi {
    fn request(&self, base: &str, search: &SearchRequest) -> Request<Full<Bytes>> {
        let body = serde_json::json!({
            "origin": search.from.as_str(),
            "destination": search.to.as_str(),
            "departureDate": search.date_text(),
            "adults": search.passengers,
        });
        Request::post(format!("{base}/api/offers/search"))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a valid request from a checked base URL")
    }

    fn flights(&self, search: &SearchRequest, body: &[u8]) -> Result<Vec<Flight>, BadAnswer> {
        let answer: OffersAnswer =
            serde_json::from_slice(body).map_err(|e| BadAnswer(e.to_string()))?;
        Ok(answer
            .offers
            .into_iter()
            .map(|o| {
                let amount = whole_units(&o.fare.per_adult);
                Flight {
                    flight_number: o.flight_no,
                    airline: Airline {
                        code: o.carrier.iata,
                        name: o.carrier.name,
                    },
                    departure_time: o.departure.time(),
                    arrival_time: o.arrival.time(),
                    from: o.departure.airport,
                    to: o.arrival.airport,
                    duration_minutes: o.duration_minutes,
                    stops: o.stops,
                    seats_available: o.seats_left,
                    price: Price {
                        amount,
                        total: amount.saturating_mul(u64::from(search.passengers)),
                        currency: o.fare.currency,
                    },
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer_check::{Rejection, check};
    use contract::Iata;

    fn search(passengers: u8) -> SearchRequest {
        SearchRequest {
            from: Iata::parse("CGK").unwrap(),
            to: Iata::parse("DPS").unwrap(),
            date: time::macros::date!(2026 - 12 - 10),
            passengers,
        }
    }

    #[test]
    fn every_airline_has_an_adapter() {
        for code in AIRLINES {
            assert!(for_airline(code).is_some(), "{code}");
        }
        assert!(for_airline("XX").is_none());
    }

    #[test]
    fn requests_carry_the_search() {
        let get = FlightsApi.request("http://m:1/ga", &search(2));
        assert_eq!(
            get.uri().to_string(),
            "http://m:1/ga/v1/flights?from=CGK&to=DPS&date=2026-12-10&passengers=2"
        );
        let post = OffersApi.request("http://m:1/jt", &search(2));
        assert_eq!(post.method(), hyper::Method::POST);
        assert_eq!(post.uri().to_string(), "http://m:1/jt/api/offers/search");
    }

    #[test]
    fn offers_become_contract_flights() {
        let body = br#"{"offers":[
          {"flightNo":"JT 199","carrier":{"iata":"JT","name":"Lion Air"},
           "departure":{"airport":"CGK","localTime":"2026-12-10T08:00:00","utcOffset":"+07:00"},
           "arrival":{"airport":"DPS","localTime":"2026-12-10T10:45:00","utcOffset":"+08:00"},
           "durationMinutes":105,"stops":0,"seatsLeft":2,"fare":{"perAdult":"1041000.00","currency":"IDR"}},
          {"flightNo":"JT 200","carrier":{"iata":"JT","name":"Lion Air"},
           "departure":{"airport":"CGK","localTime":"2026-12-10T09:00:00","utcOffset":"+07:00"},
           "arrival":{"airport":"DPS","localTime":"2026-12-10T11:45:00","utcOffset":"+08:00"},
           "durationMinutes":105,"stops":0,"seatsLeft":9,"fare":{"perAdult":"10.50","currency":"IDR"}}]}"#;
        let flights = OffersApi.flights(&search(2), body).unwrap();
        let f = &flights[0];
        assert_eq!(f.departure_time, "2026-12-10T08:00:00+07:00");
        assert_eq!(f.arrival_time, "2026-12-10T10:45:00+08:00");
        assert_eq!((f.price.amount, f.price.total), (1_041_000, 2_082_000));
        assert_eq!(check("JT", &search(2), f), Ok(()));
        assert_eq!(
            check("JT", &search(2), &flights[1]),
            Err(Rejection::Price),
            "the fare with a minor part is refused"
        );
        assert_eq!(
            check(
                "JT",
                &search(3),
                &OffersApi.flights(&search(3), body).unwrap()[0]
            ),
            Err(Rejection::Seats),
            "too few seats for three"
        );
        assert!(OffersApi.flights(&search(1), br#"{"flights":[]}"#).is_err());
    }

    #[test]
    fn flights_are_checked_and_totals_recomputed() {
        let request = search(2);
        let flights = timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], &request);
        assert!(!flights.is_empty());
        let mut tampered = flights.clone();
        tampered[0].price.total = 1;
        let body = serde_json::json!({ "flights": tampered }).to_string();
        assert_eq!(
            FlightsApi.flights(&request, body.as_bytes()).unwrap(),
            flights
        );
        assert!(
            FlightsApi
                .flights(&request, br#"{"flights":[{"flight_"#)
                .is_err()
        );
        let body = serde_json::json!({ "flights": flights }).to_string();
        let mut reversed = search(2);
        std::mem::swap(&mut reversed.from, &mut reversed.to);
        for f in FlightsApi.flights(&reversed, body.as_bytes()).unwrap() {
            assert_eq!(check("GA", &reversed, &f), Err(Rejection::Route));
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::{
        Just, Strategy, any, prop_assert, prop_assert_eq, prop_oneof, proptest,
    };
    use proptest::sample::Index;
    use proptest::test_runner::{Config, RngSeed};

    use super::*;
    use crate::offer_check::check;
    use contract::Iata;

    const OFFERS: &str = r#"{"offers":[{"flightNo":"JT 199","carrier":{"iata":"JT","name":"Lion Air"},
        "departure":{"airport":"CGK","localTime":"2026-12-10T08:00:00","utcOffset":"+07:00"},
        "arrival":{"airport":"DPS","localTime":"2026-12-10T10:45:00","utcOffset":"+08:00"},
        "durationMinutes":105,"stops":0,"seatsLeft":9,"fare":{"perAdult":"1041000.00","currency":"IDR"}}]}"#;

    fn search(passengers: u8) -> SearchRequest {
        SearchRequest {
            from: Iata::parse("CGK").unwrap(),
            to: Iata::parse("DPS").unwrap(),
            date: time::macros::date!(2026 - 12 - 10),
            passengers,
        }
    }

    /// A real answer of each format.
    fn valid_answers() -> [Vec<u8>; 2] {
        let flights = timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], &search(1));
        let flights = serde_json::json!({ "flights": &flights[..2] }).to_string();
        [flights.into_bytes(), OFFERS.as_bytes().to_vec()]
    }

    /// Any bytes, or a real answer with up to eight bytes replaced and then
    /// cut at any point.
    fn answer() -> impl Strategy<Value = Vec<u8>> {
        let mutated = (
            proptest::sample::select(valid_answers().to_vec()),
            proptest::collection::vec((any::<Index>(), any::<u8>()), 0..8),
            any::<Index>(),
        )
            .prop_map(|(mut bytes, edits, cut)| {
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                bytes
            });
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            mutated,
            Just(br#"{"offers":[{"flightNo":"JT 1","carrier":{"iata":"JT","name":"L"},"departure":{"airport":"CGK","localTime":"2026-12-10T08:00:00","utcOffset":"+07:00"},"arrival":{"airport":"DPS","localTime":"9999-12-31T23:59:59","utcOffset":"-23:59"},"durationMinutes":4294967295,"stops":255,"seatsLeft":4294967295,"fare":{"perAdult":"18446744073709551615.00","currency":"IDR"}}]}"#.to_vec()),
        ]
    }

    proptest! {
        #![proptest_config(Config {
            cases: 1500,
            rng_seed: RngSeed::Fixed(0x5EED_F00D),
            failure_persistence: None,
            ..Config::default()
        })]

        /// No answer panics either adapter or the offer check, and every
        /// offer that passes is priced for the party.
        #[test]
        fn no_answer_panics_an_adapter(body in answer(), passengers in 1u8..=9) {
            let request = search(passengers);
            for (code, adapter) in [("GA", &FlightsApi as &dyn Adapter), ("JT", &OffersApi)] {
                let Ok(flights) = adapter.flights(&request, &body) else {
                    continue;
                };
                for flight in flights.iter().filter(|f| check(code, &request, f).is_ok()) {
                    let total = flight.price.amount.checked_mul(u64::from(passengers));
                    prop_assert_eq!(total, Some(flight.price.total));
                    prop_assert!(flight.seats_available >= u32::from(passengers));
                }
            }
        }
    }
}
