//! The two wire formats the airline APIs speak, as real partners differ:
//!
//! * **flights** (GA, ID, QG): `GET <base>/v1/flights?from=CGK&to=DPS&date=2026-12-10&passengers=2`
//!   answers `{"flights":[<flight>…]}`, each flight already in the contract's shape.
//! * **offers** (JT, QZ, SJ): `POST <base>/api/offers/search` with
//!   `{"origin":"CGK","destination":"DPS","departureDate":"2026-12-10","adults":2}`
//!   answers `{"offers":[…]}` in camelCase, local times with a separate UTC
//!   offset, and the fare per adult as a decimal string (`"123.45"`).

use contract::request::parse_date;
use contract::{Flight, Iata, SearchRequest, money};
use serde::{Deserialize, Serialize};

/// An airline API's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Query-string request, contract-shaped flights.
    Flights,
    /// JSON request, camelCase offers.
    Offers,
}

impl Format {
    /// The format `code`'s API speaks.
    pub fn of(code: &str) -> Format {
        match code {
            "JT" | "QZ" | "SJ" => Format::Offers,
            _ => Format::Flights,
        }
    }

    /// The method and path (below the airline's base path) of its search call.
    pub fn endpoint(self) -> (&'static str, &'static str) {
        match self {
            Format::Flights => ("GET", "/v1/flights"),
            Format::Offers => ("POST", "/api/offers/search"),
        }
    }
}

/// Reads a `flights` request from its query string.
pub fn flights_request(query: &str) -> Result<SearchRequest, String> {
    let mut from = None;
    let mut to = None;
    let mut date = None;
    let mut passengers = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "from" => from = Some(value),
            "to" => to = Some(value),
            "date" => date = Some(value),
            "passengers" => passengers = Some(value),
            _ => return Err(format!("unknown parameter `{key}`")),
        }
    }
    request(
        from.ok_or("`from` is missing")?,
        to.ok_or("`to` is missing")?,
        date.ok_or("`date` is missing")?,
        passengers
            .ok_or("`passengers` is missing")?
            .parse()
            .map_err(|_| "`passengers` must be 1 to 9".to_owned())?,
    )
}

/// An `offers` request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OffersRequest {
    /// Origin IATA code.
    origin: String,
    /// Destination IATA code.
    destination: String,
    /// Local departure date.
    departure_date: String,
    /// Party size.
    adults: u8,
}

/// Reads an `offers` request from its JSON body.
pub fn offers_request(body: &[u8]) -> Result<SearchRequest, String> {
    let r: OffersRequest = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    request(&r.origin, &r.destination, &r.departure_date, r.adults)
}

/// A search from its parts as text, checked like the contract's request.
pub(crate) fn request(
    from: &str,
    to: &str,
    date: &str,
    passengers: u8,
) -> Result<SearchRequest, String> {
    if !(1..=9).contains(&passengers) {
        return Err("passengers must be 1 to 9".to_owned());
    }
    Ok(SearchRequest {
        from: Iata::parse(from).ok_or("`from` is not an IATA code")?,
        to: Iata::parse(to).ok_or("`to` is not an IATA code")?,
        date: parse_date(date).ok_or("`date` is not YYYY-MM-DD")?,
        passengers,
    })
}

/// The `flights` answer.
pub fn flights_body(flights: &[Flight]) -> String {
    serde_json::json!({ "flights": flights }).to_string()
}

/// One `offers` offer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Offer<'a> {
    flight_no: &'a str,
    carrier: Carrier<'a>,
    departure: Point<'a>,
    arrival: Point<'a>,
    duration_minutes: u32,
    stops: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    seats_left: Option<u32>,
    fare: Fare<'a>,
}

#[derive(Debug, Serialize)]
struct Carrier<'a> {
    iata: &'a str,
    name: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Point<'a> {
    airport: &'a str,
    /// `YYYY-MM-DDTHH:MM:SS`, the airport's local time.
    local_time: &'a str,
    /// `+HH:MM`.
    utc_offset: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Fare<'a> {
    per_adult: String,
    currency: &'a str,
}

/// Splits an RFC 3339 time with offset into its local part and its offset.
fn split_offset(time: &str) -> (&str, &str) {
    let at = time.len().saturating_sub(6);
    time.split_at(at)
}

/// The `offers` answer.
pub fn offers_body(flights: &[Flight]) -> String {
    let offers: Vec<Offer<'_>> = flights
        .iter()
        .map(|f| {
            let (dep_local, dep_offset) = split_offset(&f.departure_time);
            let (arr_local, arr_offset) = split_offset(&f.arrival_time);
            Offer {
                flight_no: &f.flight_number,
                carrier: Carrier {
                    iata: &f.airline.code,
                    name: &f.airline.name,
                },
                departure: Point {
                    airport: &f.from,
                    local_time: dep_local,
                    utc_offset: dep_offset,
                },
                arrival: Point {
                    airport: &f.to,
                    local_time: arr_local,
                    utc_offset: arr_offset,
                },
                duration_minutes: f.duration_minutes,
                stops: f.stops,
                seats_left: f.seats_available,
                fare: Fare {
                    per_adult: money::format_amount(f.price.amount, f.price.decimals),
                    currency: &f.price.currency,
                },
            }
        })
        .collect();
    serde_json::json!({ "offers": offers }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_requests_read_the_same_search() {
        let a = flights_request("from=CGK&to=DPS&date=2026-12-10&passengers=2").unwrap();
        let b = offers_request(
            br#"{"origin":"CGK","destination":"DPS","departureDate":"2026-12-10","adults":2}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert!(flights_request("from=CGK&to=DPS&date=2026-12-10").is_err());
        assert!(flights_request("from=CGK&to=DPS&date=2026-12-10&passengers=0").is_err());
        assert!(offers_request(b"{}").is_err());
    }

    #[test]
    fn offers_split_times_and_write_fares_as_decimals() {
        let request = flights_request("from=CGK&to=DPS&date=2026-12-10&passengers=1").unwrap();
        let carrier = &timetable::catalogue::CARRIERS[1];
        let flights = timetable::schedule::flights(carrier, &request);
        assert!(!flights.is_empty());
        let body: serde_json::Value = serde_json::from_str(&offers_body(&flights)).unwrap();
        let first = &body["offers"][0];
        assert_eq!(first["flightNo"], flights[0].flight_number.as_str());
        assert_eq!(first["departure"]["utcOffset"], "+07:00");
        assert_eq!(
            format!(
                "{}{}",
                first["departure"]["localTime"].as_str().unwrap(),
                first["departure"]["utcOffset"].as_str().unwrap()
            ),
            flights[0].departure_time
        );
        assert_eq!(
            first["fare"]["perAdult"],
            flights[0].price.amount.to_string()
        );
    }
}
