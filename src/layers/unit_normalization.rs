//! `UnitNormalization`: scales each sample to unit L2 norm over axes.

use super::norm_axis;
use crate::error::Result;
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Keras `UnitNormalization(axis=-1)`: `y = x / max(‖x‖₂, 1e-12)` per
/// sample, the norm over `axis` (Keras's `ops.normalize(order=2)`).
#[derive(Clone, Debug)]
pub struct UnitNormalization {
    axis: Vec<isize>,
    name: Option<String>,
    resolved: Vec<isize>,
}

impl Default for UnitNormalization {
    fn default() -> Self {
        UnitNormalization::new()
    }
}

impl UnitNormalization {
    /// Over the last axis.
    pub fn new() -> Self {
        UnitNormalization {
            axis: vec![-1],
            name: None,
            resolved: Vec::new(),
        }
    }
    /// The axes of the norm.
    pub fn axis(mut self, axes: &[isize]) -> Self {
        self.axis = axes.to_vec();
        self
    }
    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl Layer for UnitNormalization {
    fn class_name(&self) -> String {
        "UnitNormalization".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let mut axes = self
            .axis
            .iter()
            .map(|&a| norm_axis(ctx.path(), a, input_shape).map(|a| a as isize))
            .collect::<Result<Vec<_>>>()?;
        axes.sort_unstable();
        axes.dedup();
        self.resolved = axes;
        Ok(())
    }
    fn call(&self, _ctx: &mut CallCtx<'_>, x: &Tensor) -> Result<Tensor> {
        let norm = (x * x).sum(&self.resolved, true).sqrt();
        Ok(x / norm.maximum(1e-12))
    }
    fn describe(&self) -> String {
        format!("axis={:?}", self.axis)
    }
}
