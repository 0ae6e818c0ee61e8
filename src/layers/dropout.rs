//! `Dropout`: zeroes a fraction of activations while training.

use super::NoiseSeed;
use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Keras `Dropout(rate, seed)`: in training, keeps each element with
/// probability `1 - rate` and scales kept ones by `1/(1-rate)`; the identity
/// at inference and when `rate == 0`. The mask is fresh on every training
/// step (a pure function of the seed, the model's run counter and the
/// element index); without a seed, one derived from the model seed is used.
#[derive(Clone, Debug)]
pub struct Dropout {
    rate: f32,
    seed: NoiseSeed,
    name: Option<String>,
}

impl Dropout {
    /// Dropout with probability `rate` in `[0, 1)`.
    pub fn new(rate: f32) -> Dropout {
        Dropout {
            rate,
            seed: NoiseSeed::default(),
            name: None,
        }
    }
}

layer_setters!(Dropout: seed, name);

/// Checks a dropout rate: `[0, 1)`.
pub(crate) fn check_rate(path: &str, rate: f32) -> Result<()> {
    if (0.0..1.0).contains(&rate) {
        Ok(())
    } else {
        Err(Error::layer(
            path,
            format!("dropout rate must be in [0, 1), got {rate}"),
        ))
    }
}

impl Layer for Dropout {
    fn class_name(&self) -> String {
        "Dropout".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, _input_shape: &[usize]) -> Result<()> {
        check_rate(ctx.path(), self.rate)?;
        self.seed.resolve(ctx);
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        if !ctx.training() || self.rate == 0.0 {
            return Ok(inputs.clone());
        }
        let keep = 1.0 - self.rate;
        let mask = ctx.random_bernoulli(self.seed.get(), keep, inputs.shape());
        Ok(inputs * &mask * (1.0 / keep))
    }
    fn describe(&self) -> String {
        format!("rate={}", self.rate)
    }
}
