//! The checks every offer from a supplier passes before it reaches a client.
//!
//! Adapters only translate an airline's format; what the translated offer
//! says is checked here, once for every adapter, because a supplier's answer
//! is outside input like any request: a partner's bug, a proxy's mangling or a
//! hostile endpoint must not put a foreign airline's offer, a name the size of
//! a page, a flight that lands before it leaves or a price that overflows into
//! a client's results. An offer that fails is dropped (the rest of the answer
//! is kept) and counted per supplier and [`Rejection`] in
//! `supplier_offers_rejected_total`.

use contract::{Flight, SearchRequest};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::metrics::{Metrics, RejectionLabel};

/// Longest flight number kept, e.g. `GA 402` or `SJ 12345`.
pub const MAX_FLIGHT_NUMBER: usize = 8;
/// Longest airline name kept, in bytes.
pub const MAX_AIRLINE_NAME: usize = 64;
/// Longest flight kept: two days gate to gate, layovers included.
pub const MAX_DURATION_MINUTES: u32 = 48 * 60;
/// Most stops kept.
pub const MAX_STOPS: u8 = 4;
/// Most seats one offer may claim; no airliner seats more.
pub const MAX_SEATS: u32 = 1_000;
/// Highest fare per passenger kept, in the currency's minor unit: far above
/// any real fare in IDR (no minor unit, ≈ 100 000 000) or in KWD (three
/// decimals), far below what would overflow a party's total.
pub const MAX_FARE: u64 = 100_000_000_000_000;

/// Why an offer was dropped; the `reason` label, a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The airline code is not two IATA characters.
    Airline,
    /// The flight number is empty, too long, or has other characters than
    /// `A-Z`, `0-9` and spaces.
    FlightNumber,
    /// The airline name is empty, too long, or has control characters.
    AirlineName,
    /// Another route than the one searched.
    Route,
    /// A time that does not parse, or an arrival not after the departure.
    Times,
    /// A duration of zero or beyond [`MAX_DURATION_MINUTES`], or more than
    /// [`MAX_STOPS`] stops.
    Duration,
    /// Fewer seats than the party, or more than [`MAX_SEATS`].
    Seats,
    /// A fare of zero or above [`MAX_FARE`], or a total that is not the fare
    /// times the party.
    Price,
    /// A currency that is not three upper-case letters.
    Currency,
}

impl Rejection {
    /// Every reason, so the metric's series exist from start.
    pub const ALL: [Rejection; 9] = [
        Rejection::Airline,
        Rejection::FlightNumber,
        Rejection::AirlineName,
        Rejection::Route,
        Rejection::Times,
        Rejection::Duration,
        Rejection::Seats,
        Rejection::Price,
        Rejection::Currency,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Airline => "airline",
            Rejection::FlightNumber => "flight_number",
            Rejection::AirlineName => "airline_name",
            Rejection::Route => "route",
            Rejection::Times => "times",
            Rejection::Duration => "duration",
            Rejection::Seats => "seats",
            Rejection::Price => "price",
            Rejection::Currency => "currency",
        }
    }
}

/// The offers of `supplier`'s answer to `search` that pass [`check`]; the
/// others are counted in `metrics` and logged (once per answer, with the
/// first reason).
pub fn keep(
    supplier: &'static str,
    search: &SearchRequest,
    offers: Vec<Flight>,
    metrics: &Metrics,
) -> Vec<Flight> {
    let mut first: Option<Rejection> = None;
    let mut dropped: usize = 0;
    let kept: Vec<Flight> = offers
        .into_iter()
        .filter(|offer| match check(search, offer) {
            Ok(()) => true,
            Err(reason) => {
                metrics
                    .supplier_offers_rejected
                    .get_or_create(&RejectionLabel {
                        supplier,
                        reason: reason.as_str(),
                    })
                    .inc();
                first.get_or_insert(reason);
                dropped = dropped.saturating_add(1);
                false
            }
        })
        .collect();
    if let Some(reason) = first {
        tracing::info!(
            supplier,
            dropped,
            kept = kept.len(),
            first_reason = reason.as_str(),
            "supplier offers failed their checks and were dropped"
        );
    }
    kept
}

/// Whether `offer` is fit to answer `search`.
pub fn check(search: &SearchRequest, offer: &Flight) -> Result<(), Rejection> {
    let code = &offer.airline.code;
    // Which airlines a supplier may sell is its configuration's to say
    // (`airlines`, checked by the HTTP supplier before this); here only the
    // code's form.
    if code.len() != 2 || !code.bytes().all(iata_char) {
        return Err(Rejection::Airline);
    }
    let number = &offer.flight_number;
    if number.is_empty()
        || number.len() > MAX_FLIGHT_NUMBER
        || !number.bytes().all(|b| iata_char(b) || b == b' ')
    {
        return Err(Rejection::FlightNumber);
    }
    let name = &offer.airline.name;
    if name.trim().is_empty() || name.len() > MAX_AIRLINE_NAME || name.chars().any(char::is_control)
    {
        return Err(Rejection::AirlineName);
    }
    if offer.from != search.from.as_str() || offer.to != search.to.as_str() {
        return Err(Rejection::Route);
    }
    let departs = OffsetDateTime::parse(&offer.departure_time, &Rfc3339);
    let arrives = OffsetDateTime::parse(&offer.arrival_time, &Rfc3339);
    match (departs, arrives) {
        (Ok(departs), Ok(arrives)) if arrives > departs => {}
        _ => return Err(Rejection::Times),
    }
    if !(1..=MAX_DURATION_MINUTES).contains(&offer.duration_minutes) || offer.stops > MAX_STOPS {
        return Err(Rejection::Duration);
    }
    // No seat count is honest (the partner does not say); a count is checked.
    if let Some(seats) = offer.seats_available
        && !(u32::from(search.passengers)..=MAX_SEATS).contains(&seats)
    {
        return Err(Rejection::Seats);
    }
    let price = &offer.price;
    let total = price.amount.checked_mul(u64::from(search.passengers));
    if !(1..=MAX_FARE).contains(&price.amount) || total != Some(price.total) {
        return Err(Rejection::Price);
    }
    let currency = &price.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Rejection::Currency);
    }
    Ok(())
}

/// `A-Z` or `0-9`: what IATA designators are made of.
fn iata_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::KnownLabels;
    use contract::Iata;

    fn search() -> SearchRequest {
        SearchRequest {
            from: Iata::parse("CGK").unwrap(),
            to: Iata::parse("DPS").unwrap(),
            date: time::macros::date!(2026 - 12 - 10),
            passengers: 2,
        }
    }

    fn offers() -> Vec<Flight> {
        timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], &search())
    }

    #[test]
    fn the_timetable_passes_and_each_flaw_is_named() {
        let good = offers();
        assert!(!good.is_empty());
        for offer in &good {
            assert_eq!(check(&search(), offer), Ok(()), "{offer:?}");
        }
        type Flaw = fn(&mut Flight);
        let flaws: [(Flaw, Rejection); 20] = [
            (|f| f.airline.code = "G".into(), Rejection::Airline),
            (|f| f.airline.code = "ga".into(), Rejection::Airline),
            (|f| f.airline.code = "GAX".into(), Rejection::Airline),
            (
                |f| f.flight_number = "GA 4021234".into(),
                Rejection::FlightNumber,
            ),
            (
                |f| f.flight_number = "GA\n402".into(),
                Rejection::FlightNumber,
            ),
            (|f| f.flight_number = String::new(), Rejection::FlightNumber),
            (|f| f.airline.name = "x".repeat(65), Rejection::AirlineName),
            (
                |f| f.airline.name = "Garuda\u{7}".into(),
                Rejection::AirlineName,
            ),
            (|f| f.to = "SUB".into(), Rejection::Route),
            (
                |f| f.arrival_time = f.departure_time.clone(),
                Rejection::Times,
            ),
            (|f| f.departure_time = "tomorrow".into(), Rejection::Times),
            (|f| f.duration_minutes = 0, Rejection::Duration),
            (|f| f.stops = 200, Rejection::Duration),
            (|f| f.seats_available = Some(1), Rejection::Seats),
            (|f| f.seats_available = Some(u32::MAX), Rejection::Seats),
            (|f| f.price.amount = 0, Rejection::Price),
            (|f| f.price.amount = u64::MAX, Rejection::Price),
            (|f| f.price.total = f.price.amount, Rejection::Price),
            (|f| f.price.currency = "idr".into(), Rejection::Currency),
            (|f| f.price.currency = "RUPIAH".into(), Rejection::Currency),
        ];
        for (flaw, reason) in flaws {
            let mut offer = good[0].clone();
            flaw(&mut offer);
            assert_eq!(check(&search(), &offer), Err(reason), "{offer:?}");
        }
    }

    #[test]
    fn failing_offers_are_dropped_and_counted_by_reason() {
        let metrics = Metrics::new(&KnownLabels {
            suppliers: &["GA"],
            rejections: &Rejection::ALL.map(Rejection::as_str),
            ..KnownLabels::default()
        });
        let mut answer = offers();
        let good = answer.len();
        let mut foreign = answer[0].clone();
        foreign.airline.code = "X!".into();
        let mut backwards = answer[0].clone();
        backwards.arrival_time = "2000-01-01T00:00:00Z".into();
        answer.extend([foreign.clone(), foreign, backwards]);
        let kept = keep("GA", &search(), answer, &metrics);
        assert_eq!(kept.len(), good);
        let text = metrics.encode();
        for line in [
            r#"flight_search_provider_supplier_offers_rejected_total{supplier="GA",reason="airline"} 2"#,
            r#"flight_search_provider_supplier_offers_rejected_total{supplier="GA",reason="times"} 1"#,
            r#"flight_search_provider_supplier_offers_rejected_total{supplier="GA",reason="price"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
