//! `Dropout`: zeroes a fraction of activations while training.

use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Keras `Dropout(rate, seed)`: in training, keeps each element with
/// probability `1 - rate` and scales kept ones by `1/(1-rate)`; the identity
/// at inference and when `rate == 0`. The mask is a pure function of the seed,
/// the step counter and the element index.
#[derive(Clone, Debug)]
pub struct Dropout {
    rate: f32,
    seed: u32,
    name: Option<String>,
}

impl Dropout {
    /// Dropout with probability `rate` in `[0, 1)`.
    pub fn new(rate: f32) -> Dropout {
        Dropout {
            rate,
            seed: 0x0D50_0B17,
            name: None,
        }
    }

    /// The noise seed.
    pub fn seed(mut self, seed: u32) -> Dropout {
        self.seed = seed;
        self
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Dropout {
        self.name = Some(name.into());
        self
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
        if !(0.0..1.0).contains(&self.rate) {
            return Err(Error::layer(
                ctx.path(),
                format!("dropout rate must be in [0, 1), got {}", self.rate),
            ));
        }
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        if !ctx.training() || self.rate == 0.0 {
            return Ok(inputs.clone());
        }
        let keep = 1.0 - self.rate;
        let noise = ctx.random_uniform(self.seed, inputs.shape());
        let mask = noise.lt(keep);
        Ok(inputs * &mask * (1.0 / keep))
    }
    fn describe(&self) -> String {
        format!("rate={}", self.rate)
    }
}
