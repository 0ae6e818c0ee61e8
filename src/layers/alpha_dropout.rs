//! `AlphaDropout`: dropout that keeps SELU's mean and variance while training.

use super::dropout::check_rate;
use super::NoiseSeed;
use crate::error::Result;
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Keras `AlphaDropout(rate)`, for SELU networks: in training, dropped
/// elements are set to `α' = −λ·α` (SELU's negative saturation) and the
/// result is affinely rescaled, `a·(x·keep + α'·(1 − keep)) + b`, with
/// `a = ((1 − rate)(1 + rate·α'²))^(−½)` and `b = −a·α'·rate`, so mean and
/// variance are kept.
#[derive(Clone, Debug)]
pub struct AlphaDropout {
    rate: f32,
    seed: NoiseSeed,
    name: Option<String>,
}

impl AlphaDropout {
    /// Alpha dropout with drop probability `rate` in `[0, 1)`.
    pub fn new(rate: f32) -> Self {
        AlphaDropout {
            rate,
            seed: NoiseSeed::default(),
            name: None,
        }
    }
}

layer_setters!(AlphaDropout: seed, name);

/// SELU's `α` and `λ`.
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

impl Layer for AlphaDropout {
    fn class_name(&self) -> String {
        "AlphaDropout".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, _input_shape: &[usize]) -> Result<()> {
        check_rate(ctx.path(), self.rate)?;
        self.seed.resolve(ctx);
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, x: &Tensor) -> Result<Tensor> {
        if !ctx.training() || self.rate == 0.0 {
            return Ok(x.clone());
        }
        let rate = f64::from(self.rate);
        let alpha_p = -SELU_ALPHA * SELU_SCALE;
        let a = ((1.0 - rate) * (1.0 + rate * alpha_p * alpha_p)).powf(-0.5);
        let b = -a * alpha_p * rate;
        let keep = ctx.random_bernoulli(self.seed.get(), 1.0 - self.rate, x.shape());
        let dropped = (1.0 - &keep) * alpha_p as f32;
        Ok((x * keep + dropped) * a as f32 + b as f32)
    }
    fn describe(&self) -> String {
        format!("rate={}", self.rate)
    }
}
