//! Per-supplier adapters: how to ask one airline's API for a search and how to
//! turn its answer into the contract's flights.
//!
//! Real partners differ in everything, so each API style gets an [`Adapter`];
//! a supplier names its style in configuration, so a new supplier of a known
//! style needs no code. The HTTP plumbing around it (pool, credentials,
//! timeouts, retries, circuit breaker) is shared and knows nothing about
//! formats; an adapter only builds the request and reads the answer. Styles:
//!
//! * `flights` ([`FlightsApi`]): `GET <base>/v1/flights?from&to&date&passengers`,
//!   answering `{"flights":[…]}` in the contract's flight shape.
//! * `offers` ([`OffersApi`]): `POST <base>/api/offers/search` with a camelCase
//!   JSON body, answering `{"offers":[…]}` with local times and separate UTC
//!   offsets and the fare per adult as a decimal string.
//!
//! * `offer_request` ([`offer_request`], as Duffel's offer requests) and
//!   `flight_offers` ([`flight_offers`], as Amadeus' Flight Offers Search):
//!   public partner styles for suppliers selling several airlines, with local
//!   times read in each airport's IANA zone; they report each offer they
//!   leave out through [`Adapter::read`], and the provider counts them.
//!
//! Adapters check what they are given: offers for another route, with fewer
//! seats than the party, with times that do not parse, or with a fare that is
//! not exact in a known currency (`contract::money`) are dropped, and the
//! total price is always computed here, never trusted. An offer without a seat
//! count keeps `seats_available` empty rather than inventing one. Every offer
//! then passes the [`super::offer_check`] (airline, flight number, times,
//! price, …), one check for every style.

pub mod flight_offers;
mod itinerary;
#[cfg(test)]
mod never_panic;
pub mod offer_request;

use bytes::Bytes;
use contract::{Airline, Flight, Price, SearchRequest, money};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An API style: which adapter speaks a supplier's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// [`FlightsApi`].
    Flights,
    /// [`OffersApi`].
    Offers,
    /// [`offer_request::OfferRequestApi`].
    OfferRequest,
    /// [`flight_offers::FlightOffersApi`].
    FlightOffers,
}

/// Every style by its configuration name.
const STYLES: [(&str, Style); 4] = [
    ("flights", Style::Flights),
    ("offers", Style::Offers),
    ("offer_request", Style::OfferRequest),
    ("flight_offers", Style::FlightOffers),
];

impl Style {
    /// The style called `name` in configuration.
    pub fn parse(name: &str) -> Option<Style> {
        STYLES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// The configuration names, for error messages.
    pub fn names() -> String {
        STYLES.map(|(n, _)| n).join(", ")
    }

    /// The adapter speaking this style.
    pub fn adapter(self) -> Box<dyn Adapter> {
        match self {
            Style::Flights => Box::new(FlightsApi),
            Style::Offers => Box::new(OffersApi),
            Style::OfferRequest => Box::new(offer_request::OfferRequestApi),
            Style::FlightOffers => Box::new(flight_offers::FlightOffersApi),
        }
    }
}

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

    /// [`Adapter::flights`] and, for each offer of the answer left out, why
    /// (a fixed label, counted per supplier). Adapters that drop nothing worth
    /// counting keep this default.
    fn read(
        &self,
        search: &SearchRequest,
        body: &[u8],
    ) -> Result<(Vec<Flight>, Vec<&'static str>), BadAnswer> {
        self.flights(search, body)
            .map(|flights| (flights, Vec::new()))
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
            .filter(|f| valid_time(&f.departure_time) && valid_time(&f.arrival_time))
            .filter_map(|mut f| {
                let price = Price::for_party(f.price.amount, &f.price.currency, search.passengers)?;
                // Decimals that disagree with the currency's would scale the
                // fare by a power of ten: the offer is dropped, not guessed at.
                (price.decimals == f.price.decimals).then_some(())?;
                f.price = price;
                Some(f)
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
    seats_left: Option<u32>,
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

impl Fare {
    /// The fare for the party, exact in the currency's minor unit; `None` for
    /// an unknown currency or an amount that is not exact in it.
    fn price(&self, passengers: u8) -> Option<Price> {
        let decimals = money::decimals(&self.currency)?;
        let amount = money::parse_amount(&self.per_adult, decimals).ok()?;
        Price::for_party(amount, &self.currency, passengers)
    }
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
            .filter_map(|o| {
                let price = o.fare.price(search.passengers)?;
                Some(Flight {
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
                    price,
                })
            })
            .collect())
    }
}

fn valid_time(text: &str) -> bool {
    OffsetDateTime::parse(text, &Rfc3339).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supplier::offer_check::{Rejection, check};
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
    fn styles_are_named_in_configuration() {
        assert_eq!(Style::parse("flights"), Some(Style::Flights));
        assert_eq!(Style::parse("offers"), Some(Style::Offers));
        assert_eq!(Style::parse("offer_request"), Some(Style::OfferRequest));
        assert_eq!(Style::parse("flight_offers"), Some(Style::FlightOffers));
        assert_eq!(Style::parse("GA"), None);
        assert_eq!(
            Style::names(),
            "flights, offers, offer_request, flight_offers"
        );
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
        assert_eq!(
            flights.len(),
            1,
            "the IDR fare with a minor part is dropped"
        );
        let f = &flights[0];
        assert_eq!(f.departure_time, "2026-12-10T08:00:00+07:00");
        assert_eq!(f.arrival_time, "2026-12-10T10:45:00+08:00");
        assert_eq!((f.price.amount, f.price.total), (1_041_000, 2_082_000));
        assert_eq!(check(&search(2), f), Ok(()));
        assert_eq!(
            check(&search(3), &OffersApi.flights(&search(3), body).unwrap()[0]),
            Err(Rejection::Seats),
            "too few seats for three"
        );
        assert!(OffersApi.flights(&search(1), br#"{"flights":[]}"#).is_err());
    }

    /// One offer with this fare and seat count, as the offers API writes it.
    fn offer(per_adult: &str, currency: &str, seats: &str) -> String {
        format!(
            r#"{{"offers":[{{"flightNo":"JT 199","carrier":{{"iata":"JT","name":"Lion Air"}},
              "departure":{{"airport":"CGK","localTime":"2026-12-10T08:00:00","utcOffset":"+07:00"}},
              "arrival":{{"airport":"DPS","localTime":"2026-12-10T10:45:00","utcOffset":"+08:00"}},
              "durationMinutes":105,"stops":0,{seats}"fare":{{"perAdult":"{per_adult}","currency":"{currency}"}}}}]}}"#
        )
    }

    #[test]
    fn fares_in_other_currencies_arrive_exact() {
        let price = |per_adult, currency| {
            let body = offer(per_adult, currency, r#""seatsLeft":9,"#);
            let flights = OffersApi.flights(&search(2), body.as_bytes()).unwrap();
            flights.first().map(|f| f.price.clone())
        };
        let eur = price("123.45", "EUR").unwrap();
        assert_eq!((eur.amount, eur.total, eur.decimals), (12_345, 24_690, 2));
        let kwd = price("26.132", "KWD").unwrap();
        assert_eq!((kwd.amount, kwd.total, kwd.decimals), (26_132, 52_264, 3));
        assert_eq!(price("123.456", "EUR"), None, "more decimals than EUR has");
        assert_eq!(price("-1.00", "EUR"), None);
        assert_eq!(price("1.00", "XXX"), None, "an unknown currency");
    }

    #[test]
    fn an_offer_without_a_seat_count_says_so() {
        let body = offer("123.45", "EUR", "");
        let flights = OffersApi.flights(&search(9), body.as_bytes()).unwrap();
        assert_eq!(flights[0].seats_available, None);
        let json = serde_json::to_value(&flights[0]).unwrap();
        assert!(json.get("seats_available").is_none(), "{json}");
    }

    #[test]
    fn flights_whose_decimals_disagree_with_their_currency_are_dropped() {
        let request = search(1);
        let mut flights =
            timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], &request);
        flights.truncate(1);
        flights[0].price = Price::for_party(12_345, "EUR", 1).unwrap();
        let body = serde_json::json!({ "flights": flights }).to_string();
        assert_eq!(
            FlightsApi.flights(&request, body.as_bytes()).unwrap(),
            flights
        );
        flights[0].price.decimals = 0;
        let body = serde_json::json!({ "flights": flights }).to_string();
        assert!(
            FlightsApi
                .flights(&request, body.as_bytes())
                .unwrap()
                .is_empty()
        );
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
            assert_eq!(check(&reversed, &f), Err(Rejection::Route));
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
    use crate::supplier::offer_check::check;
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
            for adapter in [&FlightsApi as &dyn Adapter, &OffersApi] {
                let Ok(flights) = adapter.flights(&request, &body) else {
                    continue;
                };
                for flight in flights.iter().filter(|f| check(&request, f).is_ok()) {
                    let total = flight.price.amount.checked_mul(u64::from(passengers));
                    prop_assert_eq!(total, Some(flight.price.total));
                    prop_assert!(flight.seats_available.is_none_or(|s| s >= u32::from(passengers)));
                }
            }
        }
    }
}
