//! Exact money: amounts are integers in a currency's minor unit, never floats.
//!
//! A price carries its amount in minor units plus the number of decimals of its
//! currency, so `EUR 123.45` is `{"amount":12345,"currency":"EUR","decimals":2}`
//! and a reader needs no table to show it. The exponents are ISO 4217's, with
//! one product decision: **IDR is quoted without a minor unit** (0 decimals,
//! where ISO lists 2), because rupiah fares are never quoted in sen and the
//! existing IDR amounts must keep their meaning.
//!
//! Partners send fares as decimal strings (`"123.45"`); [`parse_amount`] turns
//! one into minor units with checked arithmetic and refuses what cannot be
//! represented exactly: a sign, a non-zero digit beyond the currency's
//! decimals, anything that is not a plain decimal, or a value past `u64`.
//! Zeros beyond the decimals are accepted (`"1385000.00"` for IDR), since they
//! state no value the minor unit cannot hold.

/// Currencies this product accepts and their decimals (ISO 4217 exponents,
/// except IDR; see the module documentation). Sorted by code.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BND", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 0),
    ("INR", 2),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LKR", 2),
    ("LYD", 3),
    ("MXN", 2),
    ("MYR", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("QAR", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("USD", 2),
    ("VND", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    ("ZAR", 2),
];

/// The decimals of currency `code` (upper-case ISO 4217), or `None` for a
/// currency this product does not know.
pub fn decimals(code: &str) -> Option<u8> {
    CURRENCIES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| CURRENCIES[i].1)
}

/// Why a decimal string is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Empty, a sign other than none, letters, exponents, several points.
    #[error("`{0}` is not a plain non-negative decimal")]
    NotADecimal(String),
    /// A negative amount.
    #[error("`{0}` is negative")]
    Negative(String),
    /// A non-zero digit past what the currency's minor unit can hold.
    #[error("`{text}` has more than {decimals} decimals")]
    TooPrecise {
        /// The text given.
        text: String,
        /// The currency's decimals.
        decimals: u8,
    },
    /// Larger than an amount can be.
    #[error("`{0}` is too large")]
    Overflow(String),
}

/// `text` (`"123.45"`) in minor units of a currency with `decimals` decimals
/// (`12345` for 2). See the module documentation for what is refused.
pub fn parse_amount(text: &str, decimals: u8) -> Result<u64, AmountError> {
    if text.starts_with('-') {
        return Err(AmountError::Negative(text.to_owned()));
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
        return Err(AmountError::NotADecimal(text.to_owned()));
    }
    let places = usize::from(decimals);
    let (kept, beyond) = fraction.split_at(fraction.len().min(places));
    if beyond.bytes().any(|b| b != b'0') {
        return Err(AmountError::TooPrecise {
            text: text.to_owned(),
            decimals,
        });
    }
    let overflow = || AmountError::Overflow(text.to_owned());
    let mut amount: u64 = 0;
    let padding = places.saturating_sub(kept.len());
    for b in whole
        .bytes()
        .chain(kept.bytes())
        .chain(std::iter::repeat_n(b'0', padding))
    {
        amount = amount
            .checked_mul(10)
            .and_then(|a| a.checked_add(u64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    Ok(amount)
}

/// `amount` minor units as a decimal string with exactly `decimals`
/// decimals: `format_amount(12345, 2) == "123.45"`, the inverse of
/// [`parse_amount`].
pub fn format_amount(amount: u64, decimals: u8) -> String {
    let digits = amount.to_string();
    let places = usize::from(decimals);
    if places == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = places + 1);
    let (whole, fraction) = padded.split_at(padded.len() - places);
    format!("{whole}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_has_the_exponents_the_product_relies_on() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(decimals("IDR"), Some(0));
        assert_eq!(decimals("EUR"), Some(2));
        assert_eq!(decimals("KWD"), Some(3));
        assert_eq!(decimals("JPY"), Some(0));
        assert_eq!(decimals("eur"), None);
        assert_eq!(decimals("XXX"), None);
    }

    #[test]
    fn decimal_strings_become_minor_units() {
        for (text, decimals, amount) in [
            ("123.45", 2, 12_345),
            ("123.4", 2, 12_340),
            ("123", 2, 12_300),
            ("0.05", 2, 5),
            ("12.345", 3, 12_345),
            ("1385000", 0, 1_385_000),
            ("1385000.00", 0, 1_385_000),
            ("123.450", 2, 12_345),
            ("18446744073709551615", 0, u64::MAX),
        ] {
            assert_eq!(parse_amount(text, decimals), Ok(amount), "{text}");
        }
    }

    #[test]
    fn what_cannot_be_exact_is_refused() {
        assert!(matches!(
            parse_amount("123.456", 2),
            Err(AmountError::TooPrecise { decimals: 2, .. })
        ));
        assert!(matches!(
            parse_amount("10.5", 0),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_amount("-1.00", 2),
            Err(AmountError::Negative(_))
        ));
        for bad in ["", ".5", "5.", "1.2.3", "+1", "1e3", " 1", "1,00", "0x10"] {
            assert!(
                matches!(parse_amount(bad, 2), Err(AmountError::NotADecimal(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_amount("18446744073709551616", 0),
            Err(AmountError::Overflow(_))
        ));
        assert!(matches!(
            parse_amount("184467440737095516.16", 2),
            Err(AmountError::Overflow(_))
        ));
    }

    #[test]
    fn formatting_is_the_inverse_of_parsing() {
        for (amount, decimals, text) in [
            (12_345, 2, "123.45"),
            (5, 2, "0.05"),
            (0, 3, "0.000"),
            (12_345, 3, "12.345"),
            (1_385_000, 0, "1385000"),
        ] {
            assert_eq!(format_amount(amount, decimals), text);
            assert_eq!(parse_amount(text, decimals), Ok(amount));
        }
    }
}
