//! The seeded random source: ChaCha8, whose stream is specified bit for bit, so
//! a seed gives the same data and initial weights natively and in the browser.
//! Only what the project needs is here: uniforms, normals, integers below n,
//! and the generator's position, so a checkpoint can resume the stream exactly.

use crate::error::{Error, Result};
use rand_chacha::rand_core::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Where a generator stands: its key, its stream and the 32-bit words it has
/// produced. JSON-safe: the 256-bit seed as hex, the u128 position as decimal text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: String,
    pub stream: u64,
    pub word_pos: String,
}

pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in [0, 1), 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller; one of the pair is used, for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < n / 2⁶⁴).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.0.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// `n` standard normals.
    pub fn normals(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.normal()).collect()
    }

    /// The generator's position, to resume it with `from_state`.
    pub fn state(&self) -> RngState {
        RngState {
            seed: self.0.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: self.0.get_stream(),
            word_pos: self.0.get_word_pos().to_string(),
        }
    }

    /// The generator exactly where `state` left it; a malformed state is refused.
    pub fn from_state(state: &RngState) -> Result<Rng> {
        let bad = || Error::Config(format!("not a random generator state: {state:?}"));
        let hex = state.seed.as_bytes();
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (byte, pair) in seed.iter_mut().zip(hex.chunks_exact(2)) {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        let word_pos: u128 = state.word_pos.parse().map_err(|_| bad())?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(word_pos);
        Ok(Rng(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_generator_continues_the_same_stream_from_any_position() {
        let mut a = Rng::new(7);
        for drawn in [0, 1, 3, 17, 64] {
            for _ in 0..drawn {
                a.uniform();
            }
            let mut b = Rng::from_state(&a.state()).unwrap();
            let ahead: Vec<f64> = (0..40).map(|_| a.uniform()).collect();
            let resumed: Vec<f64> = (0..40).map(|_| b.uniform()).collect();
            assert_eq!(ahead, resumed, "after {drawn} more draws");
        }
    }

    #[test]
    fn a_malformed_state_is_refused() {
        let mut s = Rng::new(1).state();
        s.seed.truncate(10);
        assert!(Rng::from_state(&s).is_err());
        let mut s = Rng::new(1).state();
        s.word_pos = "x".into();
        assert!(Rng::from_state(&s).is_err());
    }
}
