//! `LayerNormalization`: per-sample normalization over a list of axes.

use super::norm_axis;
use crate::error::{Error, Result};
use crate::initializers::Init;
use crate::layer::{BuildCtx, CallCtx, Layer};
use crate::regularizers::Regularizer;
use lossgraph_ir::Tensor;

/// Keras `LayerNormalization` (SEMANTICS.md §6.6): per sample, over the
/// `axis` list, `y = gamma·(x − mean)/√(var + ε) + beta` with the biased
/// variance; `gamma`, `beta` have the extents of those axes. With
/// `rms_scaling`, Keras 3's formula (`keras.ops.nn._layer_normalization`,
/// which Keras itself warns is a variance, not a root mean square):
/// `y = gamma·x/√(var + ε)` — `x` is not centred, but `var` is the biased
/// variance about the mean; no beta whatever `center` says (Keras ignores
/// `center` and `scale` then and keeps gamma). No state: training and
/// inference agree.
#[derive(Clone, Debug)]
pub struct LayerNormalization {
    axis: Vec<isize>,
    epsilon: f32,
    center: bool,
    scale: bool,
    rms_scaling: bool,
    beta_initializer: Init,
    gamma_initializer: Init,
    beta_regularizer: Option<Regularizer>,
    gamma_regularizer: Option<Regularizer>,
    trainable: bool,
    name: Option<String>,
    /// Resolved axes (batch axis 0 included), sorted; set by `build`.
    resolved: Vec<usize>,
}

impl Default for LayerNormalization {
    fn default() -> Self {
        LayerNormalization::new()
    }
}

impl LayerNormalization {
    /// Keras's defaults: axis `[-1]`, epsilon 1e-3, center and scale.
    pub fn new() -> Self {
        LayerNormalization {
            axis: vec![-1],
            epsilon: 1e-3,
            center: true,
            scale: true,
            rms_scaling: false,
            beta_initializer: Init::Zeros,
            gamma_initializer: Init::Ones,
            beta_regularizer: None,
            gamma_regularizer: None,
            trainable: true,
            name: None,
            resolved: Vec::new(),
        }
    }
    /// The normalized axes (negative counts from the end; not the batch axis).
    pub fn axis(mut self, axes: &[isize]) -> Self {
        self.axis = axes.to_vec();
        self
    }
    /// Added to the variance before the square root.
    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self
    }
    /// RMS normalization (see the type docs).
    pub fn rms_scaling(mut self, yes: bool) -> Self {
        self.rms_scaling = yes;
        self
    }
    fn has_gamma(&self) -> bool {
        self.scale || self.rms_scaling
    }
    fn has_beta(&self) -> bool {
        self.center && !self.rms_scaling
    }
}

layer_setters!(LayerNormalization: name, affine, trainable);

impl Layer for LayerNormalization {
    fn class_name(&self) -> String {
        "LayerNormalization".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        if self.axis.is_empty() {
            return Err(Error::layer(
                ctx.path(),
                "LayerNormalization needs at least one axis",
            ));
        }
        let mut axes = self
            .axis
            .iter()
            .map(|&a| norm_axis(ctx.path(), a, input_shape))
            .collect::<Result<Vec<_>>>()?;
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::layer(
                ctx.path(),
                format!("axis {:?} lists an axis twice", self.axis),
            ));
        }
        let shape: Vec<usize> = axes.iter().map(|&a| input_shape[a - 1]).collect();
        self.resolved = axes;
        if self.has_gamma() {
            ctx.add_weight_with(
                "gamma",
                &shape,
                self.gamma_initializer.clone(),
                self.trainable,
                self.gamma_regularizer.clone(),
            )?;
        }
        if self.has_beta() {
            ctx.add_weight_with(
                "beta",
                &shape,
                self.beta_initializer.clone(),
                self.trainable,
                self.beta_regularizer.clone(),
            )?;
        }
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, x: &Tensor) -> Result<Tensor> {
        let rank = x.rank();
        let axes: Vec<isize> = self.resolved.iter().map(|&a| a as isize).collect();
        // Parameters reshaped to broadcast: their extents at the axes, 1 elsewhere.
        let bshape: Vec<usize> = (0..rank)
            .map(|i| {
                if self.resolved.contains(&i) {
                    x.shape()[i]
                } else {
                    1
                }
            })
            .collect();
        let along = |t: &Tensor| t.reshape(&bshape);
        let mean = x.mean(&axes, true);
        let d = x - &mean;
        let var = (&d * &d).mean(&axes, true);
        if self.rms_scaling {
            let y = x * (var + self.epsilon).sqrt().recip();
            return Ok(y * along(ctx.weight("gamma")));
        }
        let mut inv = (var + self.epsilon).sqrt().recip();
        if self.has_gamma() {
            inv = inv * along(ctx.weight("gamma"));
        }
        let mut y = d * inv;
        if self.has_beta() {
            y = y + along(ctx.weight("beta"));
        }
        Ok(y)
    }
    fn describe(&self) -> String {
        format!("axis={:?}, epsilon={}", self.axis, self.epsilon)
    }
}
