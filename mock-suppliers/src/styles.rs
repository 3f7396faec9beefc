//! Suppliers in two public flight-API styles, each selling several airlines
//! ([`journeys`](crate::journeys)) and quoting in a currency of its own:
//!
//! * **offer request** (as Duffel): `POST /offer_request/<name>/<CUR>/air/offer_requests`
//!   with a `Duffel-Version` header and `{"data":{"slices":[…],"passengers":[…]}}`;
//!   answers `data.offers[]` with local times, airports' `time_zone`, the
//!   party's `total_amount` and no seat count.
//! * **flight offers** (as Amadeus): `GET /flight_offers/<name>/<CUR>/v2/shopping/flight-offers?
//!   originLocationCode=…&destinationLocationCode=…&departureDate=…&adults=…`;
//!   answers `data[]` with local times, `numberOfBookableSeats`,
//!   `price.grandTotal` for the party and `dictionaries.carriers`.
//!
//! `<name>` picks the airlines (any name; the same name sells the same ones)
//! and `<CUR>` the currency (one the mock quotes in: IDR, EUR, USD, KWD).
//! These suppliers answer at once and without faults: the per-airline
//! behaviours of the admin endpoint apply to the airline APIs only. Each
//! supplier name demands the credentials set for it
//! ([`style_credentials`](crate::style_credentials)), with its OAuth2 token
//! endpoint at `POST <base>/oauth/token`, and offer requests are answered
//! gzipped to callers that accept it, as Duffel always does.

use bytes::Bytes;
use contract::{Flight, Price, SearchRequest, money};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::currencies;
use crate::journeys::{self, Journey};
use crate::style_credentials::StyleCredentials;

/// A supplier API style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Duffel-like offer requests.
    OfferRequest,
    /// Amadeus-like flight offers.
    FlightOffers,
}

impl Style {
    /// The method and path (below the supplier's base) of its search call.
    fn endpoint(self) -> (Method, &'static str) {
        match self {
            Style::OfferRequest => (Method::POST, "air/offer_requests"),
            Style::FlightOffers => (Method::GET, "v2/shopping/flight-offers"),
        }
    }
}

/// Which supplier a path is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The style spoken.
    pub style: Style,
    /// The supplier's name.
    pub name: String,
    /// The currency it quotes in.
    pub currency: String,
    /// The rest of the path, the endpoint asked for.
    endpoint: String,
}

impl Route {
    /// The route of `path` if it is under a style's prefix.
    pub fn parse(path: &str) -> Option<Route> {
        let rest = path.strip_prefix('/')?;
        let (style, rest) = rest.split_once('/')?;
        let style = match style {
            "offer_request" => Style::OfferRequest,
            "flight_offers" => Style::FlightOffers,
            _ => return None,
        };
        let (name, rest) = rest.split_once('/')?;
        let (currency, endpoint) = rest.split_once('/')?;
        Some(Route {
            style,
            name: name.to_owned(),
            currency: currency.to_owned(),
            endpoint: endpoint.to_owned(),
        })
    }
}

/// Answers one call to a style supplier, which demands what `credentials`
/// hold for its name.
pub async fn answer(
    route: Route,
    req: Request<Incoming>,
    credentials: &StyleCredentials,
) -> Response<Full<Bytes>> {
    if route.endpoint == "oauth/token" && req.method() == Method::POST {
        return token(&route.name, req, credentials).await;
    }
    let (method, endpoint) = route.style.endpoint();
    if route.endpoint != endpoint {
        return crate::error(StatusCode::NOT_FOUND, "no such endpoint");
    }
    if req.method() != method {
        return crate::error(StatusCode::METHOD_NOT_ALLOWED, "wrong method");
    }
    if !credentials.authorized(&route.name, req.headers()) {
        return crate::error(
            StatusCode::UNAUTHORIZED,
            "missing, wrong or expired credentials",
        );
    }
    let gzip = route.style == Style::OfferRequest && crate::accepts_gzip(req.headers());
    if let Err(reason) = currencies::check(&route.currency) {
        return crate::error(StatusCode::NOT_FOUND, &reason);
    }
    let request = match route.style {
        Style::FlightOffers => flight_offers_request(req.uri().query().unwrap_or("")),
        Style::OfferRequest => {
            if !req.headers().contains_key("duffel-version") {
                return crate::error(StatusCode::BAD_REQUEST, "Duffel-Version is missing");
            }
            match crate::read_body(req).await {
                Ok(body) => offer_request_request(&body),
                Err(()) => Err("unreadable body".to_owned()),
            }
        }
    };
    let request = match request {
        Ok(request) => request,
        Err(reason) => return crate::error(StatusCode::BAD_REQUEST, &reason),
    };
    let journeys = journeys::journeys(&route.name, &request);
    let body = match route.style {
        Style::OfferRequest => offer_request_body(&journeys, &route.currency, &request),
        Style::FlightOffers => flight_offers_body(&journeys, &route.currency, &request),
    };
    if gzip {
        let body = body.to_string();
        crate::gzipped(&[body.as_bytes()], 1)
    } else {
        crate::json(StatusCode::OK, &body)
    }
}

/// `POST <base>/oauth/token`: a token for supplier `name`'s OAuth2 client,
/// or 401 for any other.
async fn token(
    name: &str,
    req: Request<Incoming>,
    credentials: &StyleCredentials,
) -> Response<Full<Bytes>> {
    let Ok(form) = crate::read_body(req).await else {
        return crate::error(StatusCode::BAD_REQUEST, "unreadable body");
    };
    match credentials.issue_token(name, &form, &mut timetable::rng::Rng::from_entropy()) {
        Some((token, lifetime)) => crate::token_answer(&token, lifetime),
        None => crate::error(StatusCode::UNAUTHORIZED, "invalid_client"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferRequestBody {
    data: OfferRequestData,
}

#[derive(Deserialize)]
struct OfferRequestData {
    slices: Vec<SliceAsked>,
    passengers: Vec<PassengerAsked>,
}

#[derive(Deserialize)]
struct SliceAsked {
    origin: String,
    destination: String,
    departure_date: String,
}

#[derive(Deserialize)]
struct PassengerAsked {
    #[serde(rename = "type")]
    kind: String,
}

/// Reads an offer request: one slice, adults only.
pub fn offer_request_request(body: &[u8]) -> Result<SearchRequest, String> {
    let r: OfferRequestBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let [slice] = r.data.slices.as_slice() else {
        return Err("exactly one slice is supported".to_owned());
    };
    if r.data.passengers.iter().any(|p| p.kind != "adult") {
        return Err("only adult passengers are supported".to_owned());
    }
    let passengers = u8::try_from(r.data.passengers.len()).map_err(|_| "too many passengers")?;
    crate::formats::request(
        &slice.origin,
        &slice.destination,
        &slice.departure_date,
        passengers,
    )
}

/// Reads a flight-offers query string.
pub fn flight_offers_request(query: &str) -> Result<SearchRequest, String> {
    let mut fields = [None; 4];
    const NAMES: [&str; 4] = [
        "originLocationCode",
        "destinationLocationCode",
        "departureDate",
        "adults",
    ];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let i = NAMES
            .iter()
            .position(|n| *n == key)
            .ok_or_else(|| format!("unknown parameter `{key}`"))?;
        fields[i] = Some(value);
    }
    let [Some(from), Some(to), Some(date), Some(adults)] = fields else {
        return Err(format!("required: {}", NAMES.join(", ")));
    };
    let adults = adults
        .parse()
        .map_err(|_| "`adults` must be 1 to 9".to_owned())?;
    crate::formats::request(from, to, date, adults)
}

/// `journey`'s fare for the party in `currency`, if it can be expressed.
fn price(journey: &Journey, currency: &str, passengers: u8) -> Option<Price> {
    let mut summary = journey.legs.first()?.clone();
    summary.price = Price::for_party(journey.fare()?, "IDR", passengers)?;
    Some(
        currencies::quote(vec![summary], currency, passengers)
            .pop()?
            .price,
    )
}

/// The local wall-clock part of an RFC 3339 time with offset.
fn local(time: &str) -> &str {
    time.get(..19).unwrap_or(time)
}

/// ISO 8601 duration of `minutes`, e.g. `PT2H5M`.
fn iso_duration(minutes: u32) -> String {
    format!("PT{}H{}M", minutes / 60, minutes % 60)
}

/// A flight number's airline and number parts (`GA 402` → `GA`, `402`).
fn flight_number(leg: &Flight) -> (&str, &str) {
    leg.flight_number
        .split_once(' ')
        .unwrap_or((&leg.airline.code, &leg.flight_number))
}

fn place(code: &str) -> Value {
    json!({"type": "airport", "iata_code": code, "time_zone": airport_zones::zone_of(code)})
}

fn duffel_segment(leg: &Flight) -> Value {
    let (carrier, number) = flight_number(leg);
    let airline = json!({"iata_code": carrier, "name": leg.airline.name});
    json!({
        "origin": place(&leg.from),
        "destination": place(&leg.to),
        "departing_at": local(&leg.departure_time),
        "arriving_at": local(&leg.arrival_time),
        "duration": iso_duration(leg.duration_minutes),
        "marketing_carrier": airline,
        "operating_carrier": airline,
        "marketing_carrier_flight_number": number,
    })
}

/// The offer-request answer: the request echoed, and its offers.
pub fn offer_request_body(journeys: &[Journey], currency: &str, request: &SearchRequest) -> Value {
    let offers: Vec<Value> = journeys
        .iter()
        .enumerate()
        .filter_map(|(i, j)| {
            let price = price(j, currency, request.passengers)?;
            Some(json!({
                "id": format!("off_{i:04}"),
                "owner": {"iata_code": j.carrier.code, "name": j.carrier.name},
                "total_amount": money::format_amount(price.total, price.decimals),
                "total_currency": price.currency,
                "slices": [{
                    "origin": place(request.from.as_str()),
                    "destination": place(request.to.as_str()),
                    "segments": j.legs.iter().map(duffel_segment).collect::<Vec<_>>(),
                }],
            }))
        })
        .collect();
    json!({"data": {
        "slices": [{"origin": request.from.as_str(), "destination": request.to.as_str(),
                    "departure_date": request.date_text()}],
        "passengers": vec![json!({"type": "adult"}); usize::from(request.passengers)],
        "offers": offers,
    }})
}

fn amadeus_segment(leg: &Flight) -> Value {
    let (carrier, number) = flight_number(leg);
    json!({
        "departure": {"iataCode": leg.from, "at": local(&leg.departure_time)},
        "arrival": {"iataCode": leg.to, "at": local(&leg.arrival_time)},
        "carrierCode": carrier,
        "number": number,
        "duration": iso_duration(leg.duration_minutes),
        "numberOfStops": 0,
    })
}

/// The flight-offers answer, with the carriers' names in its dictionary.
pub fn flight_offers_body(journeys: &[Journey], currency: &str, request: &SearchRequest) -> Value {
    let mut carriers = serde_json::Map::new();
    let data: Vec<Value> = journeys
        .iter()
        .enumerate()
        .filter_map(|(i, j)| {
            let price = price(j, currency, request.passengers)?;
            let total = money::format_amount(price.total, price.decimals);
            carriers.insert(j.carrier.code.to_owned(), json!(j.carrier.name.to_uppercase()));
            Some(json!({
                "type": "flight-offer",
                "id": (i + 1).to_string(),
                "numberOfBookableSeats": j.seats(),
                "itineraries": [{"segments": j.legs.iter().map(amadeus_segment).collect::<Vec<_>>()}],
                "price": {"currency": price.currency, "total": total, "grandTotal": total},
                "validatingAirlineCodes": [j.carrier.code],
            }))
        })
        .collect();
    json!({"meta": {"count": data.len()}, "data": data, "dictionaries": {"carriers": carriers}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_style_supplier_and_currency() {
        let r = Route::parse("/flight_offers/skyhub/KWD/v2/shopping/flight-offers").unwrap();
        assert_eq!(
            (r.style, r.name.as_str(), r.currency.as_str()),
            (Style::FlightOffers, "skyhub", "KWD")
        );
        assert_eq!(r.endpoint, "v2/shopping/flight-offers");
        assert_eq!(Route::parse("/ga/v1/flights"), None);
        assert_eq!(Route::parse("/offer_request/x"), None);
    }

    #[test]
    fn both_requests_read_the_same_search() {
        let a = flight_offers_request(
            "originLocationCode=CGK&destinationLocationCode=DPS&departureDate=2026-12-10&adults=2",
        )
        .unwrap();
        let b = offer_request_request(
            br#"{"data":{"slices":[{"origin":"CGK","destination":"DPS","departure_date":"2026-12-10"}],
                "passengers":[{"type":"adult"},{"type":"adult"}]}}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert!(flight_offers_request("originLocationCode=CGK").is_err());
        assert!(offer_request_request(br#"{"data":{"slices":[],"passengers":[]}}"#).is_err());
    }

    #[test]
    fn answers_carry_local_times_zones_and_exact_totals() {
        let request = flight_offers_request(
            "originLocationCode=CGK&destinationLocationCode=DPS&departureDate=2026-12-10&adults=2",
        )
        .unwrap();
        let journeys = journeys::journeys("skyhub", &request);
        assert!(!journeys.is_empty());
        let duffel = offer_request_body(&journeys, "KWD", &request);
        let first = &duffel["data"]["offers"][0];
        let segment = &first["slices"][0]["segments"][0];
        assert_eq!(segment["origin"]["time_zone"], "Asia/Jakarta");
        assert_eq!(
            segment["departing_at"].as_str().unwrap().len(),
            19,
            "no offset"
        );
        let total = first["total_amount"].as_str().unwrap();
        assert_eq!(
            total.split_once('.').unwrap().1.len(),
            3,
            "KWD has fils: {total}"
        );
        let amadeus = flight_offers_body(&journeys, "EUR", &request);
        let offer = &amadeus["data"][0];
        assert_eq!(offer["price"]["currency"], "EUR");
        let code = offer["itineraries"][0]["segments"][0]["carrierCode"]
            .as_str()
            .unwrap();
        assert!(amadeus["dictionaries"]["carriers"][code].is_string());
        assert!(offer["numberOfBookableSeats"].as_u64().unwrap() >= 2);
    }
}
