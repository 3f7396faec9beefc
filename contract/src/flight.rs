//! A flight offer as suppliers return it and clients receive it.

use serde::{Deserialize, Serialize};

/// One bookable flight for the requested route, date and party size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flight {
    /// Marketing flight number, e.g. `GA 402`.
    pub flight_number: String,
    /// The operating airline.
    pub airline: Airline,
    /// Origin IATA code.
    pub from: String,
    /// Destination IATA code.
    pub to: String,
    /// RFC 3339 local time at the origin, with the origin's UTC offset.
    pub departure_time: String,
    /// RFC 3339 local time at the destination, with the destination's UTC offset.
    pub arrival_time: String,
    /// Gate-to-gate time, layovers included.
    pub duration_minutes: u32,
    /// Number of intermediate stops (0 = direct).
    pub stops: u8,
    /// Seats left at this price; never below the requested passengers.
    pub seats_available: u32,
    /// Fare for the party.
    pub price: Price,
}

/// An airline as shown to travellers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Airline {
    /// Two-character IATA airline designator.
    pub code: String,
    /// Name for people.
    pub name: String,
}

/// A fare in the currency's major unit (IDR has no minor unit in use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Per passenger.
    pub amount: u64,
    /// `amount` × passengers.
    pub total: u64,
    /// ISO 4217 code.
    pub currency: String,
}
