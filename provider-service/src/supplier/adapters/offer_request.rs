//! The offer-request style (as Duffel's API): `POST <base>/air/offer_requests`
//! with a `Duffel-Version` header and a body naming one slice and one
//! `{"type":"adult"}` per passenger; the answer's `data.offers[]` each carry
//! the selling airline (`owner`), the party's `total_amount` as a decimal
//! string with `total_currency`, and one slice of `segments[]` whose
//! `departing_at`/`arriving_at` are local times at airports that also name
//! their `time_zone`. No seat count is given, so flights from this style have
//! none (`seats_available` absent).

use bytes::Bytes;
use contract::{Airline, Flight, SearchRequest};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;

use super::itinerary::{self, Dropped, Offer, Segment};
use super::{Adapter, BadAnswer};

/// API version this adapter reads; the header every call carries.
pub const VERSION: &str = "v2";

/// The offer-request style.
pub struct OfferRequestApi;

#[derive(Deserialize)]
struct Answer {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    /// Read one by one, so one odd offer costs only itself.
    offers: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct WireOffer {
    owner: Carrier,
    total_amount: String,
    total_currency: String,
    slices: Vec<Slice>,
}

#[derive(Deserialize)]
struct Carrier {
    iata_code: String,
    name: String,
}

#[derive(Deserialize)]
struct Slice {
    segments: Vec<WireSegment>,
}

#[derive(Deserialize)]
struct WireSegment {
    origin: Place,
    destination: Place,
    departing_at: String,
    arriving_at: String,
    marketing_carrier: MarketingCarrier,
    marketing_carrier_flight_number: String,
}

#[derive(Deserialize)]
struct MarketingCarrier {
    iata_code: String,
}

#[derive(Deserialize)]
struct Place {
    iata_code: String,
    time_zone: Option<String>,
}

impl WireSegment {
    fn segment(&self) -> Result<Segment, Dropped> {
        let at = |place: &Place, local: &str| {
            itinerary::airport_time(&place.iata_code, local, place.time_zone.as_deref())
        };
        Ok(Segment {
            from: self.origin.iata_code.clone(),
            to: self.destination.iata_code.clone(),
            departs: at(&self.origin, &self.departing_at)?,
            arrives: at(&self.destination, &self.arriving_at)?,
        })
    }
}

/// One wire offer in shared terms.
fn offer(value: serde_json::Value) -> Result<Offer, Dropped> {
    let wire: WireOffer = serde_json::from_value(value).map_err(|_| Dropped::Malformed)?;
    // One slice was asked for; more would be another journey.
    let [slice] = wire.slices.as_slice() else {
        return Err(Dropped::OtherRoute);
    };
    let first = slice.segments.first().ok_or(Dropped::Malformed)?;
    Ok(Offer {
        flight_number: format!(
            "{} {}",
            first.marketing_carrier.iata_code, first.marketing_carrier_flight_number
        ),
        segments: slice
            .segments
            .iter()
            .map(WireSegment::segment)
            .collect::<Result<_, _>>()?,
        airline: Airline {
            code: wire.owner.iata_code,
            name: wire.owner.name,
        },
        seats: None,
        total: wire.total_amount,
        currency: wire.total_currency,
    })
}

impl Adapter for OfferRequestApi {
    fn request(&self, base: &str, search: &SearchRequest) -> Request<Full<Bytes>> {
        let passengers: Vec<serde_json::Value> = (0..search.passengers)
            .map(|_| serde_json::json!({ "type": "adult" }))
            .collect();
        let body = serde_json::json!({
            "data": {
                "slices": [{
                    "origin": search.from.as_str(),
                    "destination": search.to.as_str(),
                    "departure_date": search.date_text(),
                }],
                "passengers": passengers,
            }
        });
        Request::post(format!("{base}/air/offer_requests"))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .header("Duffel-Version", VERSION)
            .body(Full::new(Bytes::from(body.to_string())))
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
        Ok(itinerary::flights(
            "offer_request",
            search,
            answer.data.offers.into_iter().map(offer),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::Iata;

    fn search(from: &str, to: &str, passengers: u8) -> SearchRequest {
        SearchRequest {
            from: Iata::parse(from).unwrap(),
            to: Iata::parse(to).unwrap(),
            date: time::macros::date!(2026 - 12 - 10),
            passengers,
        }
    }

    fn segment(from: (&str, &str), to: (&str, &str), times: (&str, &str), flight: &str) -> String {
        let (carrier, number) = flight.split_once(' ').unwrap();
        format!(
            r#"{{"origin":{{"iata_code":"{}","time_zone":{}}},
                "destination":{{"iata_code":"{}","time_zone":{}}},
                "departing_at":"{}","arriving_at":"{}","duration":"PT2H",
                "marketing_carrier":{{"iata_code":"{carrier}","name":"x"}},
                "marketing_carrier_flight_number":"{number}"}}"#,
            from.0, from.1, to.0, to.1, times.0, times.1
        )
    }

    fn offer(owner: (&str, &str), total: (&str, &str), segments: &[String]) -> String {
        format!(
            r#"{{"id":"off_1","owner":{{"iata_code":"{}","name":"{}"}},
                "total_amount":"{}","total_currency":"{}",
                "slices":[{{"duration":"PT6H","segments":[{}]}}]}}"#,
            owner.0,
            owner.1,
            total.0,
            total.1,
            segments.join(",")
        )
    }

    const CGK: (&str, &str) = ("CGK", r#""Asia/Jakarta""#);
    const DPS: (&str, &str) = ("DPS", r#""Asia/Makassar""#);
    const SIN: (&str, &str) = ("SIN", r#""Asia/Singapore""#);

    /// A day's answer: a direct flight in EUR, a connection through Singapore
    /// (UTC+8, the origin is UTC+7) in KWD, and two through an airport the
    /// table lacks, one with the zone named and one without.
    fn answer() -> String {
        let offers = [
            offer(
                ("GA", "Garuda Indonesia"),
                ("246.90", "EUR"),
                &[segment(
                    CGK,
                    DPS,
                    ("2026-12-10T08:00:00", "2026-12-10T10:50:00"),
                    "GA 402",
                )],
            ),
            offer(
                ("SQ", "Singapore Airlines"),
                ("246.914", "KWD"),
                &[
                    segment(
                        CGK,
                        SIN,
                        ("2026-12-10T08:00:00", "2026-12-10T10:50:00"),
                        "SQ 951",
                    ),
                    segment(
                        SIN,
                        DPS,
                        ("2026-12-10T12:30:00", "2026-12-10T15:10:00"),
                        "SQ 938",
                    ),
                ],
            ),
            offer(
                ("ID", "Batik Air"),
                ("300.00", "EUR"),
                &[
                    segment(
                        CGK,
                        ("QQQ", r#""Asia/Makassar""#),
                        ("2026-12-10T09:00:00", "2026-12-10T11:30:00"),
                        "ID 1",
                    ),
                    segment(
                        ("QQQ", r#""Asia/Makassar""#),
                        DPS,
                        ("2026-12-10T12:00:00", "2026-12-10T13:00:00"),
                        "ID 2",
                    ),
                ],
            ),
            offer(
                ("ID", "Batik Air"),
                ("300.00", "EUR"),
                &[
                    segment(
                        CGK,
                        ("QQQ", "null"),
                        ("2026-12-10T09:00:00", "2026-12-10T11:30:00"),
                        "ID 3",
                    ),
                    segment(
                        ("QQQ", "null"),
                        DPS,
                        ("2026-12-10T12:00:00", "2026-12-10T13:00:00"),
                        "ID 4",
                    ),
                ],
            ),
        ];
        format!(
            r#"{{"data":{{"id":"orq_1","offers":[{}]}}}}"#,
            offers.join(",")
        )
    }

    #[test]
    fn the_request_names_one_slice_and_each_adult() {
        let request = OfferRequestApi.request("https://api.example/x", &search("CGK", "DPS", 2));
        assert_eq!(request.method(), hyper::Method::POST);
        assert_eq!(request.uri(), "https://api.example/x/air/offer_requests");
        assert_eq!(request.headers()["Duffel-Version"], VERSION);
        let body: serde_json::Value = serde_json::from_slice(
            &futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
                request.into_body(),
            ))
            .unwrap()
            .unwrap()
            .to_bytes(),
        )
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"data": {
                "slices": [{"origin": "CGK", "destination": "DPS", "departure_date": "2026-12-10"}],
                "passengers": [{"type": "adult"}, {"type": "adult"}],
            }})
        );
    }

    #[test]
    fn offers_of_several_airlines_become_flights_with_exact_prices_and_offsets() {
        let flights = OfferRequestApi
            .flights(&search("CGK", "DPS", 2), answer().as_bytes())
            .unwrap();
        let numbers: Vec<&str> = flights.iter().map(|f| f.flight_number.as_str()).collect();
        assert_eq!(
            numbers,
            ["GA 402", "SQ 951", "ID 1"],
            "ID 3's stop has no zone"
        );
        let direct = &flights[0];
        assert_eq!(direct.airline.name, "Garuda Indonesia");
        assert_eq!(direct.departure_time, "2026-12-10T08:00:00+07:00");
        assert_eq!(direct.arrival_time, "2026-12-10T10:50:00+08:00");
        assert_eq!((direct.duration_minutes, direct.stops), (110, 0));
        assert_eq!(
            direct.seats_available, None,
            "the style gives no seat count"
        );
        let eur = &direct.price;
        assert_eq!((eur.amount, eur.total, eur.decimals), (12_345, 24_690, 2));
        let connection = &flights[1];
        assert_eq!(connection.airline.code, "SQ");
        assert_eq!(connection.arrival_time, "2026-12-10T15:10:00+08:00");
        assert_eq!((connection.duration_minutes, connection.stops), (370, 1));
        let kwd = &connection.price;
        assert_eq!(
            (kwd.amount, kwd.total, kwd.currency.as_str(), kwd.decimals),
            (123_457, 246_914, "KWD", 3)
        );
        assert_eq!(
            flights[2].duration_minutes, 180,
            "the answer's zone for QQQ"
        );
    }

    #[test]
    fn offers_that_do_not_answer_the_search_are_dropped() {
        let body = answer();
        assert!(
            OfferRequestApi
                .flights(&search("DPS", "CGK", 2), body.as_bytes())
                .unwrap()
                .is_empty(),
            "another route"
        );
        let three = OfferRequestApi
            .flights(&search("CGK", "DPS", 3), body.as_bytes())
            .unwrap();
        let numbers: Vec<&str> = three.iter().map(|f| f.flight_number.as_str()).collect();
        assert_eq!(
            numbers,
            ["GA 402", "ID 1"],
            "246.914 KWD does not divide by three"
        );
        let odd = offer(
            ("GA", "Garuda"),
            ("10.00", "XXX"),
            &[segment(
                CGK,
                DPS,
                ("2026-12-10T08:00:00", "2026-12-10T10:50:00"),
                "GA 1",
            )],
        );
        let backwards = offer(
            ("GA", "Garuda"),
            ("10.00", "EUR"),
            &[segment(
                CGK,
                DPS,
                ("2026-12-10T08:00:00", "2026-12-10T08:50:00"),
                "GA 2",
            )],
        );
        let body = format!(r#"{{"data":{{"offers":[{odd},{backwards},{{"owner":1}}]}}}}"#);
        assert!(
            OfferRequestApi
                .flights(&search("CGK", "DPS", 1), body.as_bytes())
                .unwrap()
                .is_empty(),
            "unknown currency, landing before leaving, malformed"
        );
        assert!(
            OfferRequestApi
                .flights(&search("CGK", "DPS", 1), b"{\"data\":[]}")
                .is_err()
        );
    }
}
