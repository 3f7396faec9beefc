//! The currencies an airline API can be set to quote in. The timetables price
//! in rupiah; another currency is quoted at a fixed rate, rounded down to the
//! currency's minor unit, so tests can see fares with cents (EUR) or fils
//! (KWD) arrive exact.

use contract::{Flight, Price, money};

/// Rupiah per major unit of each currency an API may quote in.
const RATES: &[(&str, u64)] = &[
    ("IDR", 1),
    ("EUR", 17_000),
    ("USD", 16_000),
    ("KWD", 52_000),
];

/// Checks that `code` is a currency the mock quotes in.
pub fn check(code: &str) -> Result<(), String> {
    if RATES.iter().any(|(c, _)| *c == code) {
        Ok(())
    } else {
        let known: Vec<&str> = RATES.iter().map(|(c, _)| *c).collect();
        Err(format!("currency: expected one of {}", known.join(", ")))
    }
}

/// `flights` (priced in IDR) with their fares in `currency`; a flight whose
/// fare cannot be expressed is left out.
pub fn quote(flights: Vec<Flight>, currency: &str, passengers: u8) -> Vec<Flight> {
    let Some(&(_, rate)) = RATES.iter().find(|(c, _)| *c == currency) else {
        return flights;
    };
    let Some(decimals) = money::decimals(currency) else {
        return flights;
    };
    let scale = 10u128.pow(u32::from(decimals));
    flights
        .into_iter()
        .filter_map(|mut f| {
            let minor = u128::from(f.price.amount).checked_mul(scale)? / u128::from(rate);
            f.price = Price::for_party(u64::try_from(minor).ok()?, currency, passengers)?;
            Some(f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fares_are_converted_to_the_minor_unit() {
        let request =
            crate::formats::flights_request("from=CGK&to=DPS&date=2026-12-10&passengers=2")
                .unwrap();
        let idr = timetable::schedule::flights(&timetable::catalogue::CARRIERS[0], &request);
        assert!(!idr.is_empty());
        let eur = quote(idr.clone(), "EUR", 2);
        let kwd = quote(idr.clone(), "KWD", 2);
        for ((i, e), k) in idr.iter().zip(&eur).zip(&kwd) {
            assert_eq!(e.price.amount, i.price.amount * 100 / 17_000);
            assert_eq!((e.price.currency.as_str(), e.price.decimals), ("EUR", 2));
            assert_eq!(e.price.total, e.price.amount * 2);
            assert_eq!(k.price.amount, i.price.amount * 1000 / 52_000);
            assert_eq!(k.price.decimals, 3);
        }
        assert_eq!(quote(idr.clone(), "IDR", 2), idr);
        assert!(check("EUR").is_ok() && check("XXX").is_err());
    }
}
