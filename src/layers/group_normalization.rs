//! `GroupNormalization`: per-sample normalization over groups of channels.

use super::norm_axis;
use crate::error::{Error, Result};
use crate::initializers::Init;
use crate::layer::{BuildCtx, CallCtx, Layer};
use crate::regularizers::Regularizer;
use lossgraph_ir::Tensor;

/// Keras `GroupNormalization(groups, axis=-1, epsilon=1e-3)`: the `C`
/// channels of `axis` are split into `groups` consecutive groups; each
/// sample is normalized per group over the group's channels and every
/// other non-batch axis (biased variance), then `gamma`, `beta` (`(C,)`)
/// apply per channel. `groups = C` is instance normalization, `groups = 1`
/// layer normalization over all axes.
#[derive(Clone, Debug)]
pub struct GroupNormalization {
    groups: usize,
    axis: isize,
    epsilon: f32,
    center: bool,
    scale: bool,
    beta_initializer: Init,
    gamma_initializer: Init,
    beta_regularizer: Option<Regularizer>,
    gamma_regularizer: Option<Regularizer>,
    name: Option<String>,
    resolved: usize,
}

impl GroupNormalization {
    /// `groups` groups over the last axis (Keras's default is 32).
    pub fn new(groups: usize) -> Self {
        GroupNormalization {
            groups,
            axis: -1,
            epsilon: 1e-3,
            center: true,
            scale: true,
            beta_initializer: Init::Zeros,
            gamma_initializer: Init::Ones,
            beta_regularizer: None,
            gamma_regularizer: None,
            name: None,
            resolved: 0,
        }
    }
    /// The channel axis.
    pub fn axis(mut self, axis: isize) -> Self {
        self.axis = axis;
        self
    }
    /// Added to the variance before the square root.
    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self
    }
}

layer_setters!(GroupNormalization: name, affine);

impl Layer for GroupNormalization {
    fn class_name(&self) -> String {
        "GroupNormalization".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let a = norm_axis(ctx.path(), self.axis, input_shape)?;
        let c = input_shape[a - 1];
        if self.groups == 0 || !c.is_multiple_of(self.groups) {
            return Err(Error::layer(
                ctx.path(),
                format!("{c} channels cannot be split into {} groups", self.groups),
            ));
        }
        self.resolved = a;
        if self.scale {
            ctx.add_weight_with(
                "gamma",
                &[c],
                self.gamma_initializer.clone(),
                true,
                self.gamma_regularizer.clone(),
            )?;
        }
        if self.center {
            ctx.add_weight_with(
                "beta",
                &[c],
                self.beta_initializer.clone(),
                true,
                self.beta_regularizer.clone(),
            )?;
        }
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, x: &Tensor) -> Result<Tensor> {
        let shape = x.shape().to_vec();
        let a = self.resolved;
        let (g, c) = (self.groups, shape[a]);
        // [N, before, G, C/G, after]: statistics over all but N and G.
        let before: usize = shape[1..a].iter().product();
        let after: usize = shape[a + 1..].iter().product();
        let grouped = x.reshape(&[shape[0], before, g, c / g, after]);
        let mean = grouped.mean(&[1, 3, 4], true);
        let d = &grouped - &mean;
        let var = (&d * &d).mean(&[1, 3, 4], true);
        let y = (d * (var + self.epsilon).sqrt().recip()).reshape(&shape);
        let mut bshape = vec![1usize; shape.len()];
        bshape[a] = c;
        let mut y = y;
        if self.scale {
            y = y * ctx.weight("gamma").reshape(&bshape);
        }
        if self.center {
            y = y + ctx.weight("beta").reshape(&bshape);
        }
        Ok(y)
    }
    fn describe(&self) -> String {
        format!("groups={}, axis={}", self.groups, self.axis)
    }
}
