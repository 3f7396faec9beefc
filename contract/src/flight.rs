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
    /// Seats left at this price, never below the requested passengers;
    /// `None` (absent from the JSON) when the supplier does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats_available: Option<u32>,
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

/// A fare as exact integers in the currency's minor unit (see [`crate::money`]):
/// EUR 123.45 is `amount: 12345, decimals: 2`; IDR has 0 decimals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Per passenger, in minor units.
    pub amount: u64,
    /// `amount` × passengers, in minor units.
    pub total: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Digits after the decimal point: `amount / 10^decimals` is the fare in
    /// the currency's major unit.
    pub decimals: u8,
}

impl Price {
    /// The fare of `amount` minor units of `currency` per passenger for a
    /// party of `passengers`; `None` for a currency this product does not know
    /// or a total past `u64`.
    pub fn for_party(amount: u64, currency: &str, passengers: u8) -> Option<Price> {
        Some(Price {
            amount,
            total: amount.checked_mul(u64::from(passengers))?,
            currency: currency.to_owned(),
            decimals: crate::money::decimals(currency)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_party_price_knows_its_decimals_and_multiplies_exactly() {
        let eur = Price::for_party(12_345, "EUR", 2).unwrap();
        assert_eq!((eur.amount, eur.total, eur.decimals), (12_345, 24_690, 2));
        assert_eq!(
            serde_json::to_value(&eur).unwrap(),
            serde_json::json!({"amount":12345,"total":24690,"currency":"EUR","decimals":2})
        );
        assert_eq!(Price::for_party(1_385_000, "IDR", 1).unwrap().decimals, 0);
        assert_eq!(Price::for_party(1, "XXX", 1), None);
        assert_eq!(Price::for_party(u64::MAX, "EUR", 2), None);
    }
}
