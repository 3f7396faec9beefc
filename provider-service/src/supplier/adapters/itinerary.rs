//! What both partner styles share once their JSON is read: an offer as a
//! chain of segments with airport-local times, checked and turned into one
//! contract [`Flight`].
//!
//! * Times: each local time is read in its airport's IANA zone from the
//!   `airport-zones` table; an airport the table lacks is read in the zone
//!   the answer itself names (the offer-request style does), and an offer
//!   with an airport neither knows is dropped ([`Dropped::UnknownAirport`]).
//! * Connections: stops are segments − 1, the duration runs from the first
//!   departure to the last arrival (layovers included), and the flight number
//!   is the first segment's. Segments must chain (each leaves from where the
//!   previous one landed, not before it landed).
//! * Money: the answer's total for the party, a decimal string, becomes exact
//!   minor units; the per-passenger amount is that total divided by the party,
//!   and a total that does not divide evenly is dropped rather than rounded.

use contract::{Airline, Flight, Price, SearchRequest, money};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why one offer of an otherwise readable answer was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The offer's JSON lacks a field or has one of the wrong type.
    Malformed,
    /// An airport with no known time zone.
    UnknownAirport,
    /// A time that is not a local time, does not exist, or runs backwards.
    BadTime,
    /// A price that is not an exact amount of a known currency for the party.
    BadPrice,
    /// Not the route asked for, not one journey, or segments that do not chain.
    OtherRoute,
    /// Fewer seats than the party.
    TooFewSeats,
}

impl Dropped {
    /// The reason as a fixed label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::UnknownAirport => "unknown_airport",
            Dropped::BadTime => "bad_time",
            Dropped::BadPrice => "bad_price",
            Dropped::OtherRoute => "other_route",
            Dropped::TooFewSeats => "too_few_seats",
        }
    }
}

/// One flight of a journey, its times placed in their zones.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Origin IATA code.
    pub from: String,
    /// Destination IATA code.
    pub to: String,
    /// Departure, with the origin's offset.
    pub departs: OffsetDateTime,
    /// Arrival, with the destination's offset.
    pub arrives: OffsetDateTime,
}

/// One partner offer in the terms both styles share.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The airline selling it.
    pub airline: Airline,
    /// Marketing flight number of the first segment, e.g. `GA 402`.
    pub flight_number: String,
    /// The journey's segments, in order.
    pub segments: Vec<Segment>,
    /// Seats left, when the partner says.
    pub seats: Option<u32>,
    /// Price for the whole party as a decimal string, e.g. `"246.90"`.
    pub total: String,
    /// ISO 4217 code of `total`.
    pub currency: String,
}

/// `local` at airport `code`, in the table's zone for it or else in
/// `answer_zone` (the zone the partner gave, if any).
pub fn airport_time(
    code: &str,
    local: &str,
    answer_zone: Option<&str>,
) -> Result<OffsetDateTime, Dropped> {
    let zone = airport_zones::zone_of(code)
        .or(answer_zone)
        .ok_or(Dropped::UnknownAirport)?;
    airport_zones::at_airport(local, zone).map_err(|e| match e {
        airport_zones::ZoneError::UnknownZone(_) => Dropped::UnknownAirport,
        _ => Dropped::BadTime,
    })
}

/// The price of a party of `passengers` from the partner's `total` text.
fn party_price(total: &str, currency: &str, passengers: u8) -> Option<Price> {
    let decimals = money::decimals(currency)?;
    let total = money::parse_amount(total, decimals).ok()?;
    let party = u64::from(passengers);
    if party == 0 || total % party != 0 {
        return None;
    }
    Price::for_party(total / party, currency, passengers)
}

/// RFC 3339 text of `at`; `None` past year 9999.
fn rfc3339(at: OffsetDateTime) -> Option<String> {
    at.format(&Rfc3339).ok()
}

/// True when every segment leaves from where, and not before, the previous
/// one landed, and none lands before it leaves.
fn chained(segments: &[Segment]) -> bool {
    segments.iter().all(|s| s.arrives > s.departs)
        && segments
            .windows(2)
            .all(|w| w[1].from == w[0].to && w[1].departs >= w[0].arrives)
}

impl Offer {
    /// The contract flight this offer is for `search`, or why it is not one.
    pub fn into_flight(self, search: &SearchRequest) -> Result<Flight, Dropped> {
        let (Some(first), Some(last)) = (self.segments.first(), self.segments.last()) else {
            return Err(Dropped::Malformed);
        };
        if first.from != search.from.as_str() || last.to != search.to.as_str() {
            return Err(Dropped::OtherRoute);
        }
        if !chained(&self.segments) {
            return Err(Dropped::OtherRoute);
        }
        let minutes = (last.arrives - first.departs).whole_minutes();
        let duration_minutes = u32::try_from(minutes).map_err(|_| Dropped::BadTime)?;
        let stops = u8::try_from(self.segments.len() - 1).map_err(|_| Dropped::OtherRoute)?;
        if self.seats.is_some_and(|s| s < u32::from(search.passengers)) {
            return Err(Dropped::TooFewSeats);
        }
        let price =
            party_price(&self.total, &self.currency, search.passengers).ok_or(Dropped::BadPrice)?;
        Ok(Flight {
            flight_number: self.flight_number,
            airline: self.airline,
            from: first.from.clone(),
            to: last.to.clone(),
            departure_time: rfc3339(first.departs).ok_or(Dropped::BadTime)?,
            arrival_time: rfc3339(last.arrives).ok_or(Dropped::BadTime)?,
            duration_minutes,
            stops,
            seats_available: self.seats,
            price,
        })
    }
}

/// The flights among `offers` that answer `search`, and the reason each
/// other offer was left out (also logged).
pub fn flights(
    style: &'static str,
    search: &SearchRequest,
    offers: impl Iterator<Item = Result<Offer, Dropped>>,
) -> (Vec<Flight>, Vec<&'static str>) {
    let mut dropped = Vec::new();
    let flights = offers
        .filter_map(|offer| match offer.and_then(|o| o.into_flight(search)) {
            Ok(flight) => Some(flight),
            Err(reason) => {
                tracing::info!(style, reason = reason.as_str(), "supplier offer dropped");
                dropped.push(reason.as_str());
                None
            }
        })
        .collect();
    (flights, dropped)
}
