//! `GaussianDropout`: multiplicative normal noise while training.

use super::dropout::check_rate;
use super::NoiseSeed;
use crate::error::Result;
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Keras `GaussianDropout(rate)`: `x · N(1, rate/(1 − rate))` in training.
#[derive(Clone, Debug)]
pub struct GaussianDropout {
    rate: f32,
    seed: NoiseSeed,
    name: Option<String>,
}

impl GaussianDropout {
    /// Multiplicative noise for a drop probability `rate` in `[0, 1)`.
    pub fn new(rate: f32) -> Self {
        GaussianDropout {
            rate,
            seed: NoiseSeed::default(),
            name: None,
        }
    }
}

layer_setters!(GaussianDropout: seed, name);

impl Layer for GaussianDropout {
    fn class_name(&self) -> String {
        "GaussianDropout".into()
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
        let stddev = (self.rate / (1.0 - self.rate)).sqrt();
        let z = ctx.random_normal(self.seed.get(), x.shape());
        Ok(x * (z * stddev + 1.0))
    }
    fn describe(&self) -> String {
        format!("rate={}", self.rate)
    }
}
