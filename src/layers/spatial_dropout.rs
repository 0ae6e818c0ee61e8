//! `SpatialDropout1D` / `SpatialDropout2D`: dropout of whole channels while training.

use super::dropout::check_rate;
use super::NoiseSeed;
use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Keras `SpatialDropout1D` / `SpatialDropout2D` (channels last): dropout
/// of whole channels — one mask value per sample and channel, shared by
/// every step (1D, `(N, T, C)`) or pixel (2D, `(N, H, W, C)`), kept ones
/// scaled by `1/(1 − rate)`.
#[derive(Clone, Debug)]
pub struct SpatialDropout {
    rate: f32,
    /// 1 or 2 spatial axes.
    spatial: usize,
    seed: NoiseSeed,
    name: Option<String>,
}

impl SpatialDropout {
    /// `SpatialDropout1D(rate)`: inputs `(N, T, C)`.
    pub fn new_1d(rate: f32) -> Self {
        SpatialDropout {
            rate,
            spatial: 1,
            seed: NoiseSeed::default(),
            name: None,
        }
    }
    /// `SpatialDropout2D(rate)`: inputs `(N, H, W, C)`.
    pub fn new_2d(rate: f32) -> Self {
        SpatialDropout {
            spatial: 2,
            ..SpatialDropout::new_1d(rate)
        }
    }
}

layer_setters!(SpatialDropout: seed, name);

impl Layer for SpatialDropout {
    fn class_name(&self) -> String {
        format!("SpatialDropout{}D", self.spatial)
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        check_rate(ctx.path(), self.rate)?;
        if input_shape.len() != self.spatial + 1 {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "{} needs per-sample inputs of rank {}, got shape {input_shape:?}",
                    self.class_name(),
                    self.spatial + 1
                ),
            ));
        }
        self.seed.resolve(ctx);
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, x: &Tensor) -> Result<Tensor> {
        if !ctx.training() || self.rate == 0.0 {
            return Ok(x.clone());
        }
        let shape = x.shape();
        let mut noise_shape = vec![1usize; shape.len()];
        noise_shape[0] = shape[0];
        noise_shape[shape.len() - 1] = shape[shape.len() - 1];
        let keep = 1.0 - self.rate;
        let mask = ctx.random_bernoulli(self.seed.get(), keep, &noise_shape);
        Ok(x * (mask * (1.0 / keep)))
    }
    fn describe(&self) -> String {
        format!("rate={}", self.rate)
    }
}
