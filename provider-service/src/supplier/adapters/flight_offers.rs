//! The flight-offers style (as Amadeus Self-Service "Flight Offers Search"
//! v2): `GET <base>/v2/shopping/flight-offers?originLocationCode=…&
//! destinationLocationCode=…&departureDate=…&adults=…`; the answer's `data[]`
//! each carry one itinerary of `segments[]` (`departure`/`arrival` with
//! `iataCode` and a local time `at`, `carrierCode`, `number`),
//! `numberOfBookableSeats` and `price.grandTotal` for the party with
//! `price.currency`; `dictionaries.carriers` maps carrier codes to names.
//!
//! The airline is the first segment's carrier (named from the dictionary, or
//! by its code when the dictionary lacks it). Airports carry no zone in this
//! style, so one the table lacks drops its offer.

use std::collections::HashMap;

use bytes::Bytes;
use contract::{Airline, Flight, SearchRequest};
use http_body_util::Full;
use hyper::Request;
use hyper::header::ACCEPT;
use serde::Deserialize;

use super::itinerary::{self, Dropped, Offer, Segment};
use super::{Adapter, BadAnswer};

/// The flight-offers style.
pub struct FlightOffersApi;

#[derive(Deserialize)]
struct Answer {
    /// Read one by one, so one odd offer costs only itself.
    data: Vec<serde_json::Value>,
    #[serde(default)]
    dictionaries: Dictionaries,
}

#[derive(Default, Deserialize)]
struct Dictionaries {
    #[serde(default)]
    carriers: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOffer {
    number_of_bookable_seats: Option<u32>,
    itineraries: Vec<Itinerary>,
    price: WirePrice,
}

#[derive(Deserialize)]
struct Itinerary {
    segments: Vec<WireSegment>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSegment {
    departure: Point,
    arrival: Point,
    carrier_code: String,
    number: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Point {
    iata_code: String,
    at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePrice {
    grand_total: String,
    currency: String,
}

impl WireSegment {
    fn segment(&self) -> Result<Segment, Dropped> {
        let at = |p: &Point| itinerary::airport_time(&p.iata_code, &p.at, None);
        Ok(Segment {
            from: self.departure.iata_code.clone(),
            to: self.arrival.iata_code.clone(),
            departs: at(&self.departure)?,
            arrives: at(&self.arrival)?,
        })
    }
}

/// One wire offer in shared terms, its airline named from `carriers`.
fn offer(value: serde_json::Value, carriers: &HashMap<String, String>) -> Result<Offer, Dropped> {
    let wire: WireOffer = serde_json::from_value(value).map_err(|_| Dropped::Malformed)?;
    // A one-way search has one itinerary; more would be another journey.
    let [itinerary] = wire.itineraries.as_slice() else {
        return Err(Dropped::OtherRoute);
    };
    let first = itinerary.segments.first().ok_or(Dropped::Malformed)?;
    let code = first.carrier_code.clone();
    Ok(Offer {
        flight_number: format!("{code} {}", first.number),
        segments: itinerary
            .segments
            .iter()
            .map(WireSegment::segment)
            .collect::<Result<_, _>>()?,
        airline: Airline {
            name: carriers.get(&code).cloned().unwrap_or_else(|| code.clone()),
            code,
        },
        seats: wire.number_of_bookable_seats,
        total: wire.price.grand_total,
        currency: wire.price.currency,
    })
}

impl Adapter for FlightOffersApi {
    fn request(&self, base: &str, search: &SearchRequest) -> Request<Full<Bytes>> {
        let uri = format!(
            "{base}/v2/shopping/flight-offers?originLocationCode={}&destinationLocationCode={}\
             &departureDate={}&adults={}",
            search.from,
            search.to,
            search.date_text(),
            search.passengers
        );
        Request::get(uri)
            .header(ACCEPT, "application/vnd.amadeus+json, application/json")
            .body(Full::new(Bytes::new()))
            .expect("a valid request from a checked base URL")
    }

    fn flights(&self, search: &SearchRequest, body: &[u8]) -> Result<Vec<Flight>, BadAnswer> {
        self.read(search, body).map(|(flights, _)| flights)
    }

    fn read(
        &self,
        search: &SearchRequest,
        body: &[u8],
    ) -> Result<(Vec<Flight>, Vec<&'static str>), BadAnswer> {
        let answer: Answer = serde_json::from_slice(body).map_err(|e| BadAnswer(e.to_string()))?;
        let carriers = &answer.dictionaries.carriers;
        Ok(itinerary::flights(
            "flight_offers",
            search,
            answer.data.into_iter().map(|v| offer(v, carriers)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::Iata;

    fn search(from: &str, to: &str, date: time::Date, passengers: u8) -> SearchRequest {
        SearchRequest {
            from: Iata::parse(from).unwrap(),
            to: Iata::parse(to).unwrap(),
            date,
            passengers,
        }
    }

    fn segment(from: &str, to: &str, times: (&str, &str), flight: &str) -> serde_json::Value {
        let (carrier, number) = flight.split_once(' ').unwrap();
        serde_json::json!({
            "departure": {"iataCode": from, "terminal": "1", "at": times.0},
            "arrival": {"iataCode": to, "at": times.1},
            "carrierCode": carrier, "number": number, "duration": "PT2H", "numberOfStops": 0,
        })
    }

    fn offer(
        seats: Option<u32>,
        total: (&str, &str),
        segments: Vec<serde_json::Value>,
    ) -> serde_json::Value {
        let mut offer = serde_json::json!({
            "type": "flight-offer", "id": "1", "source": "GDS",
            "itineraries": [{"duration": "PT6H", "segments": segments}],
            "price": {"currency": total.1, "total": total.0, "base": "1.00", "grandTotal": total.0},
            "validatingAirlineCodes": ["XX"],
        });
        if let Some(seats) = seats {
            offer["numberOfBookableSeats"] = seats.into();
        }
        offer
    }

    fn answer(offers: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::json!({
            "meta": {"count": offers.len()},
            "data": offers,
            "dictionaries": {"carriers": {"LH": "LUFTHANSA", "TK": "TURKISH AIRLINES"}},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_request_carries_the_search_in_the_query() {
        let date = time::macros::date!(2026 - 07 - 15);
        let request =
            FlightOffersApi.request("https://api.example", &search("FRA", "KWI", date, 2));
        assert_eq!(request.method(), hyper::Method::GET);
        assert_eq!(
            request.uri(),
            "https://api.example/v2/shopping/flight-offers?originLocationCode=FRA\
             &destinationLocationCode=KWI&departureDate=2026-07-15&adults=2"
        );
    }

    /// Frankfurt to Kuwait in July: Berlin time is UTC+2 (summer), Istanbul
    /// UTC+3, Kuwait UTC+3.
    #[test]
    fn summer_offers_and_a_connection_through_istanbul_get_their_offsets() {
        let date = time::macros::date!(2026 - 07 - 15);
        let body = answer(vec![
            offer(
                Some(4),
                ("1283.70", "EUR"),
                vec![segment(
                    "FRA",
                    "KWI",
                    ("2026-07-15T10:40:00", "2026-07-15T17:55:00"),
                    "LH 626",
                )],
            ),
            offer(
                None,
                ("451.250", "KWD"),
                vec![
                    segment(
                        "FRA",
                        "IST",
                        ("2026-07-15T06:50:00", "2026-07-15T10:55:00"),
                        "TK 1588",
                    ),
                    segment(
                        "IST",
                        "KWI",
                        ("2026-07-15T13:05:00", "2026-07-15T16:05:00"),
                        "TK 770",
                    ),
                ],
            ),
            offer(
                Some(9),
                ("10.00", "EUR"),
                vec![segment(
                    "FRA",
                    "KWI",
                    ("2026-07-15T10:40:00", "2026-07-15T17:55:00"),
                    "XQ 1",
                )],
            ),
        ]);
        let flights = FlightOffersApi
            .flights(&search("FRA", "KWI", date, 2), &body)
            .unwrap();
        assert_eq!(flights.len(), 3);
        let direct = &flights[0];
        assert_eq!(
            direct.airline,
            Airline {
                code: "LH".into(),
                name: "LUFTHANSA".into()
            }
        );
        assert_eq!(direct.departure_time, "2026-07-15T10:40:00+02:00");
        assert_eq!(direct.arrival_time, "2026-07-15T17:55:00+03:00");
        assert_eq!((direct.duration_minutes, direct.stops), (375, 0));
        assert_eq!(direct.seats_available, Some(4));
        assert_eq!(
            (
                direct.price.amount,
                direct.price.total,
                direct.price.decimals
            ),
            (64_185, 128_370, 2)
        );
        let connection = &flights[1];
        assert_eq!(connection.flight_number, "TK 1588");
        assert_eq!(connection.arrival_time, "2026-07-15T16:05:00+03:00");
        assert_eq!((connection.duration_minutes, connection.stops), (495, 1));
        assert_eq!(connection.seats_available, None, "no numberOfBookableSeats");
        assert_eq!(
            (connection.price.amount, connection.price.total),
            (225_625, 451_250)
        );
        assert_eq!(
            flights[2].airline.name, "XQ",
            "a carrier the dictionary lacks keeps its code"
        );
    }

    #[test]
    fn winter_times_in_frankfurt_are_an_hour_closer_to_utc() {
        let date = time::macros::date!(2026 - 12 - 10);
        let body = answer(vec![offer(
            Some(9),
            ("1283.70", "EUR"),
            vec![segment(
                "FRA",
                "KWI",
                ("2026-12-10T10:40:00", "2026-12-10T17:55:00"),
                "LH 626",
            )],
        )]);
        let flights = FlightOffersApi
            .flights(&search("FRA", "KWI", date, 1), &body)
            .unwrap();
        assert_eq!(flights[0].departure_time, "2026-12-10T10:40:00+01:00");
        assert_eq!(flights[0].duration_minutes, 315);
    }

    #[test]
    fn offers_with_an_unknown_airport_too_few_seats_or_an_odd_total_are_dropped() {
        let date = time::macros::date!(2026 - 07 - 15);
        let times = ("2026-07-15T10:40:00", "2026-07-15T17:55:00");
        let body = answer(vec![
            offer(
                Some(9),
                ("10.00", "EUR"),
                vec![
                    segment("FRA", "QQQ", times, "LH 1"),
                    segment("QQQ", "KWI", times, "LH 2"),
                ],
            ),
            offer(
                Some(1),
                ("10.00", "EUR"),
                vec![segment("FRA", "KWI", times, "LH 3")],
            ),
            offer(
                Some(9),
                ("10.01", "EUR"),
                vec![segment("FRA", "KWI", times, "LH 4")],
            ),
            offer(
                Some(9),
                ("10.001", "EUR"),
                vec![segment("FRA", "KWI", times, "LH 5")],
            ),
            offer(
                Some(9),
                ("10.00", "EUR"),
                vec![segment(
                    "FRA",
                    "KWI",
                    ("2026-07-15T10:40:00+02:00", times.1),
                    "LH 6",
                )],
            ),
            serde_json::json!({"itineraries": "none"}),
        ]);
        let (flights, dropped) = FlightOffersApi
            .read(&search("FRA", "KWI", date, 2), &body)
            .unwrap();
        assert!(flights.is_empty(), "{flights:?}");
        assert_eq!(
            dropped,
            [
                "unknown_airport",
                "too_few_seats",
                "bad_price",
                "bad_price",
                "bad_time",
                "malformed"
            ]
        );
        assert!(
            FlightOffersApi
                .flights(&search("FRA", "KWI", date, 2), b"{\"data\":{}}")
                .is_err()
        );
    }
}
