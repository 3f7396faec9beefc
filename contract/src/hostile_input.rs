//! Inputs for the property tests of the parsers of outside bytes: any bytes
//! at all, and valid inputs with a few bytes changed and cut short, which
//! reach deeper into a parser than noise does. The seed is fixed so CI runs
//! the same cases every time; the case count keeps each parser to well under
//! a second.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};

/// A fixed seed, `cases` cases, nothing written to disk.
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5EED_F00D),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Any bytes, or `valid` with up to eight bytes replaced and then cut at
/// any point.
pub fn bytes_like(valid: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (
            proptest::collection::vec((any::<Index>(), any::<u8>()), 0..8),
            any::<Index>(),
        )
            .prop_map(move |(edits, cut)| {
                let mut bytes = valid.to_vec();
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
                bytes
            }),
    ]
}
