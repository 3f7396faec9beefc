//! Property test: whatever bytes a partner sends, neither style's parser
//! panics; it answers flights or an error.

use contract::{Iata, SearchRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use super::Adapter;
use super::flight_offers::FlightOffersApi;
use super::offer_request::OfferRequestApi;

/// A valid answer of each style, the seed for mutated ones.
const VALID: [&[u8]; 2] = [
    br#"{"data":{"offers":[{"owner":{"iata_code":"GA","name":"G"},"total_amount":"10.00",
      "total_currency":"EUR","slices":[{"segments":[{"origin":{"iata_code":"CGK","time_zone":"Asia/Jakarta"},
      "destination":{"iata_code":"DPS","time_zone":"Asia/Makassar"},"departing_at":"2026-12-10T08:00:00",
      "arriving_at":"2026-12-10T10:50:00","marketing_carrier":{"iata_code":"GA"},
      "marketing_carrier_flight_number":"402"}]}]}]}}"#,
    br#"{"data":[{"numberOfBookableSeats":9,"itineraries":[{"segments":[{"departure":{"iataCode":"CGK",
      "at":"2026-12-10T08:00:00"},"arrival":{"iataCode":"DPS","at":"2026-12-10T10:50:00"},
      "carrierCode":"GA","number":"402"}]}],"price":{"grandTotal":"10.00","currency":"EUR"}}],
      "dictionaries":{"carriers":{"GA":"GARUDA"}}}"#,
];

fn search() -> SearchRequest {
    SearchRequest {
        from: Iata::parse("CGK").unwrap(),
        to: Iata::parse("DPS").unwrap(),
        date: time::macros::date!(2026 - 12 - 10),
        passengers: 1,
    }
}

fn parse_both(body: &[u8]) {
    let _ = OfferRequestApi.flights(&search(), body);
    let _ = FlightOffersApi.flights(&search(), body);
}

/// Fixed seed and a few hundred cases: the same inputs on every run, in
/// well under a second.
fn config() -> Config {
    Config {
        cases: 300,
        rng_seed: RngSeed::Fixed(20_261_210),
        failure_persistence: None,
        ..Config::default()
    }
}

#[test]
fn the_valid_seeds_parse() {
    assert_eq!(
        OfferRequestApi.flights(&search(), VALID[0]).unwrap().len(),
        1
    );
    assert_eq!(
        FlightOffersApi.flights(&search(), VALID[1]).unwrap().len(),
        1
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_both(&body);
    }

    #[test]
    fn mutated_answers_never_panic(
        which in 0..2usize,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = VALID[which].to_vec();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        body.truncate(cut.index(body.len() + 1));
        parse_both(&body);
    }
}
