//! A small seeded PRNG: SplitMix64 to spread the seed, xorshift64* for the stream. Written here
//! so the generator's output for a seed never changes with a dependency's version.

/// One SplitMix64 step: advances `state` and returns a well-mixed 64-bit value.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64* stream; fast and good enough for shaping synthetic metrics.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A stream for `seed` and `stream` (e.g. a target index), independent of other streams.
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut s = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let v = splitmix64(&mut s);
        Rng(if v == 0 { 1 } else { v })
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Roughly normal noise with mean 0 and standard deviation 1, bounded to [-2√3, 2√3].
    pub(crate) fn noise(&mut self) -> f64 {
        // Sum of four uniforms: cheap and bounded, which keeps counters from going backwards.
        let s = self.f64() + self.f64() + self.f64() + self.f64() - 2.0;
        s * 3f64.sqrt()
    }

    /// Rounds `x` (>= 0) to an integer stochastically, so small rates still add up right.
    pub(crate) fn round_stochastic(&mut self, x: f64) -> u64 {
        if x <= 0.0 {
            return 0;
        }
        (x + self.f64()).floor() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn streams_differ_by_seed_and_stream_and_repeat_for_the_same_pair() {
        let take = |seed, stream| {
            let mut r = Rng::new(seed, stream);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(take(1, 0), take(1, 0));
        assert_ne!(take(1, 0), take(2, 0));
        assert_ne!(take(1, 0), take(1, 1));
    }

    #[test]
    fn below_and_f64_stay_in_range() {
        let mut r = Rng::new(7, 3);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let x = r.f64();
            assert!((0.0..1.0).contains(&x));
            assert!(r.noise().abs() <= 2.0 * 3f64.sqrt());
        }
        assert_eq!(r.below(0), 0);
    }
}
