//! Weight initialisers (Keras names and formulas) and the seeded PRNG behind them.
//!
//! Keras's defaults: `glorot_uniform` for kernels, `zeros` for biases,
//! `random_normal` with mean 0 and standard deviation 0.05. The generator is
//! the workspace's SplitMix64 ([`lossgraph_ir::rng`]), so a model built with
//! the same seed always gets the same weights on every platform (the values
//! differ from Keras's, whose RNG is backend specific).

use crate::error::{Error, Result};
use lossgraph_ir::rng::SplitMix64;

/// The generator of a model's initial weights and shuffles: the shared
/// [`SplitMix64`] on the seed scrambled with a fixed constant (so seed 0 is
/// not the raw zero state). Every draw goes through [`SplitMix64`] (deref).
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed ^ 0x5DEE_CE66_D1CE_4E5B))
    }
}

impl std::ops::Deref for Rng {
    type Target = SplitMix64;
    fn deref(&self) -> &SplitMix64 {
        &self.0
    }
}

impl std::ops::DerefMut for Rng {
    fn deref_mut(&mut self) -> &mut SplitMix64 {
        &mut self.0
    }
}

/// Standard normal truncated to `[-2, 2]` by redrawing (Keras's `TruncatedNormal`).
fn truncated_normal(rng: &mut SplitMix64) -> f64 {
    loop {
        let x = rng.normal();
        if x.abs() <= 2.0 {
            return x;
        }
    }
}

/// A weight initialiser. Fans follow Keras: for a rank-2 shape `(in, out)`,
/// `fan_in = in`, `fan_out = out`; for rank 1 both are the extent; for higher
/// ranks the leading axes form the receptive field.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// `U(-l, l)` with `l = √(6 / (fan_in + fan_out))` (Keras's kernel default).
    GlorotUniform,
    /// Truncated normal with `σ = √(2 / (fan_in + fan_out))` (scaled by 1/0.8796 like Keras).
    GlorotNormal,
    /// Truncated normal with `σ = √(2 / fan_in)` (scaled by 1/0.8796 like Keras).
    HeNormal,
    /// `U(-l, l)` with `l = √(6 / fan_in)`.
    HeUniform,
    /// Normal with mean 0 and standard deviation 0.05 (Keras's `random_normal`).
    RandomNormal,
    /// Normal with the given mean and standard deviation.
    Normal { mean: f32, stddev: f32 },
    /// `U(-0.05, 0.05)` (Keras's `random_uniform`).
    RandomUniform,
    /// `U(lo, hi)`.
    Uniform { lo: f32, hi: f32 },
    /// All zeros (Keras's bias default).
    Zeros,
    /// All ones.
    Ones,
    /// Every element equal to the value.
    Constant(f32),
}

/// Standard deviation of a standard normal truncated to [-2, 2] (Keras's correction constant).
const TRUNC_STD: f64 = 0.879_625_661_034_239_8;

impl Init {
    /// Looks up a Keras initialiser name (`"glorot_uniform"`, `"GlorotUniform"`, `"he_normal"`,
    /// `"random_normal"`, `"zeros"`, `"ones"`, …).
    pub fn from_name(name: &str) -> Result<Init> {
        let n = crate::name_key(name);
        Ok(match n.as_str() {
            "glorotuniform" => Init::GlorotUniform,
            "glorotnormal" => Init::GlorotNormal,
            "henormal" => Init::HeNormal,
            "heuniform" => Init::HeUniform,
            "randomnormal" => Init::RandomNormal,
            "randomuniform" => Init::RandomUniform,
            "zeros" | "zero" => Init::Zeros,
            "ones" | "one" => Init::Ones,
            _ => {
                return Err(Error::config(
                    "initializer",
                    format!("unknown initializer '{name}'"),
                ))
            }
        })
    }

    /// `numel(shape)` initial values drawn from `rng`.
    pub fn sample(&self, shape: &[usize], rng: &mut SplitMix64) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let (fan_in, fan_out) = fans(shape);
        let uniform = |rng: &mut SplitMix64, lo: f64, hi: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (lo + (hi - lo) * rng.unit()) as f32)
                .collect()
        };
        let trunc = |rng: &mut SplitMix64, std: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (truncated_normal(rng) * std / TRUNC_STD) as f32)
                .collect()
        };
        match self {
            Init::GlorotUniform => {
                let l = (6.0 / (fan_in + fan_out).max(1.0)).sqrt();
                uniform(rng, -l, l)
            }
            Init::GlorotNormal => trunc(rng, (2.0 / (fan_in + fan_out).max(1.0)).sqrt()),
            Init::HeNormal => trunc(rng, (2.0 / fan_in.max(1.0)).sqrt()),
            Init::HeUniform => {
                let l = (6.0 / fan_in.max(1.0)).sqrt();
                uniform(rng, -l, l)
            }
            Init::RandomNormal => (0..n).map(|_| (rng.normal() * 0.05) as f32).collect(),
            Init::Normal { mean, stddev } => (0..n)
                .map(|_| (*mean as f64 + rng.normal() * *stddev as f64) as f32)
                .collect(),
            Init::RandomUniform => uniform(rng, -0.05, 0.05),
            Init::Uniform { lo, hi } => uniform(rng, *lo as f64, *hi as f64),
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Constant(v) => vec![*v; n],
        }
    }
}

/// Keras's `compute_fans`: `(fan_in, fan_out)` of a weight shape.
pub fn fans(shape: &[usize]) -> (f64, f64) {
    match shape.len() {
        0 => (1.0, 1.0),
        1 => (shape[0] as f64, shape[0] as f64),
        2 => (shape[0] as f64, shape[1] as f64),
        r => {
            let receptive: usize = shape[..r - 2].iter().product();
            (
                (shape[r - 2] * receptive) as f64,
                (shape[r - 1] * receptive) as f64,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glorot_uniform_stays_in_its_limit_and_is_seeded() {
        // limit = sqrt(6 / (30 + 10)) = sqrt(0.15) ≈ 0.3873
        let a = Init::GlorotUniform.sample(&[30, 10], &mut Rng::new(1));
        let b = Init::GlorotUniform.sample(&[30, 10], &mut Rng::new(1));
        let c = Init::GlorotUniform.sample(&[30, 10], &mut Rng::new(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| v.abs() <= 0.3873));
        let max = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.3, "300 draws should come near the limit, max {max}");
    }

    #[test]
    fn normal_moments_and_constants() {
        let v = Init::RandomNormal.sample(&[100, 100], &mut Rng::new(7));
        let mean: f64 = v.iter().map(|&x| x as f64).sum::<f64>() / 1e4;
        let var: f64 = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / 1e4;
        assert!(mean.abs() < 0.002, "mean {mean}");
        assert!((var.sqrt() - 0.05).abs() < 0.002, "std {}", var.sqrt());
        // he_normal: std sqrt(2/fan_in) = sqrt(2/50) = 0.2
        let h = Init::HeNormal.sample(&[50, 200], &mut Rng::new(3));
        let hv: f64 = h.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / 1e4;
        assert!((hv.sqrt() - 0.2).abs() < 0.01, "he std {}", hv.sqrt());
        assert_eq!(Init::Ones.sample(&[2, 2], &mut Rng::new(0)), vec![1.0; 4]);
        assert_eq!(Init::Zeros.sample(&[3], &mut Rng::new(0)), vec![0.0; 3]);
        assert_eq!(
            Init::from_name("GlorotUniform").unwrap(),
            Init::GlorotUniform
        );
        assert!(Init::from_name("orthogonal").is_err());
    }
}
