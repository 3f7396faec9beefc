//! A small pseudo-random generator with a stable algorithm.
//!
//! The mock suppliers must produce the same flights for the same route, date and
//! airline in every process and every release, so the seed comes from FNV-1a and
//! the stream from SplitMix64: both fixed, published algorithms (std's
//! `DefaultHasher` is explicitly allowed to change between releases). The same
//! generator, seeded from the OS instead, draws latency jitter and failures.

use std::hash::{BuildHasher, Hasher};

/// SplitMix64: tiny, fast, and statistically good enough for fake timetables.
#[derive(Debug, Clone)]
pub struct Rng {
    /// The generator's whole state; advanced by a fixed odd constant per draw.
    state: u64,
}

impl Rng {
    /// A generator determined by `key` alone, e.g. `GA|CGK|DPS|2026-12-10`.
    pub fn for_key(key: &str) -> Rng {
        Rng {
            state: fnv1a(key.as_bytes()),
        }
    }

    /// A generator seeded from the OS, for draws that must differ between calls.
    /// std's `RandomState` is seeded from OS randomness once per thread and
    /// stepped for every instance, which is all jitter needs.
    pub fn from_entropy() -> Rng {
        Rng {
            state: std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must be positive. The modulo bias is below 2⁻⁵⁰
    /// for the small `n` used here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`; `p` ≤ 0 never, `p` ≥ 1 always.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_F739_67E8);
    }

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        let mut rng = Rng { state: 0 };
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn keyed_generators_repeat_and_differ_by_key() {
        let draws = |key: &str| {
            let mut rng = Rng::for_key(key);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(
            draws("GA|CGK|DPS|2026-12-10"),
            draws("GA|CGK|DPS|2026-12-10")
        );
        assert_ne!(
            draws("GA|CGK|DPS|2026-12-10"),
            draws("GA|CGK|DPS|2026-12-11")
        );
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = Rng::for_key("range");
        for _ in 0..10_000 {
            assert!(rng.below(7) < 7);
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
    }
}
