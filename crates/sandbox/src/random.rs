//! A small lock-free pseudo-random source for fault rates, status quirks and
//! the random parts of identifiers. Not cryptographic: nothing here guards a
//! secret, it only has to be cheap on the send path and well spread.

use std::sync::atomic::{AtomicU64, Ordering};

/// splitmix64: each call advances a shared counter by a fixed odd step and
/// scrambles it, so concurrent callers never need a lock.
#[derive(Debug)]
pub(crate) struct Random {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Random {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// Seeded from a fresh ULID, whose random part comes from the OS.
    pub(crate) fn from_entropy() -> Self {
        let bits = ulid::Ulid::new().0;
        // Folding both halves keeps the timestamp bits from dominating.
        Self::new((bits as u64) ^ ((bits >> 64) as u64))
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`; exact (no dice rolled) at 0 and 1, so
    /// tests that set a rate of 1.0 are deterministic.
    pub(crate) fn chance(&self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits make a uniform f64 in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_follows_the_rate() {
        let random = Random::new(42);
        let hits = (0..100_000).filter(|_| random.chance(0.25)).count();
        assert!((23_000..27_000).contains(&hits), "{hits}");
        assert!(!(0..1_000).any(|_| random.chance(0.0) || random.chance(f64::NAN)));
        assert!((0..1_000).all(|_| random.chance(1.0)));
    }

    #[test]
    fn values_do_not_repeat_quickly() {
        let random = Random::from_entropy();
        let mut seen: Vec<u64> = (0..10_000).map(|_| random.next_u64()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10_000);
    }
}
