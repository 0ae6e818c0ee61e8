//! `GaussianNoise`: additive normal noise while training.

use super::NoiseSeed;
use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Keras `GaussianNoise(stddev)`: `x + N(0, stddev²)` in training.
#[derive(Clone, Debug)]
pub struct GaussianNoise {
    stddev: f32,
    seed: NoiseSeed,
    name: Option<String>,
}

impl GaussianNoise {
    /// Additive noise of standard deviation `stddev` (≥ 0).
    pub fn new(stddev: f32) -> Self {
        GaussianNoise {
            stddev,
            seed: NoiseSeed::default(),
            name: None,
        }
    }
}

layer_setters!(GaussianNoise: seed, name);

impl Layer for GaussianNoise {
    fn class_name(&self) -> String {
        "GaussianNoise".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, _input_shape: &[usize]) -> Result<()> {
        if !(self.stddev >= 0.0 && self.stddev.is_finite()) {
            return Err(Error::layer(
                ctx.path(),
                format!("stddev must be finite and ≥ 0, got {}", self.stddev),
            ));
        }
        self.seed.resolve(ctx);
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, x: &Tensor) -> Result<Tensor> {
        if !ctx.training() || self.stddev == 0.0 {
            return Ok(x.clone());
        }
        let z = ctx.random_normal(self.seed.get(), x.shape());
        Ok(x + z * self.stddev)
    }
    fn describe(&self) -> String {
        format!("stddev={}", self.stddev)
    }
}
