//! Shape layers: `Flatten` and `Reshape`.

use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Flattens every axis but the batch axis (Keras `Flatten`).
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    name: Option<String>,
}

impl Flatten {
    /// A `Flatten` layer.
    pub fn new() -> Flatten {
        Flatten::default()
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Flatten {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Flatten {
    fn class_name(&self) -> String {
        "Flatten".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn call(&self, _ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let shape = inputs.shape();
        let batch = shape.first().copied().unwrap_or(1);
        let rest: usize = shape.iter().skip(1).product();
        Ok(inputs.reshape(&[batch, rest]))
    }
}

/// Reshapes each sample to a target shape (Keras `Reshape`); one extent may be
/// `-1`, inferred from the others.
#[derive(Clone, Debug)]
pub struct Reshape {
    target: Vec<isize>,
    resolved: Vec<usize>,
    name: Option<String>,
}

impl Reshape {
    /// Reshapes samples to `target` (no batch axis; at most one `-1`).
    pub fn new(target: &[isize]) -> Reshape {
        Reshape {
            target: target.to_vec(),
            resolved: Vec::new(),
            name: None,
        }
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Reshape {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Reshape {
    fn class_name(&self) -> String {
        "Reshape".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        // Sizes from a model file: a product that overflows is an error.
        let count = lossgraph_ir::types::checked_numel(input_shape);
        let unknown = self.target.iter().filter(|&&d| d == -1).count();
        let bad = || {
            Error::layer(
                ctx.path(),
                format!(
                    "cannot reshape samples of shape {input_shape:?} ({} elements) to {:?}",
                    count.map_or("too many".into(), |n| n.to_string()),
                    self.target
                ),
            )
        };
        if unknown > 1 || self.target.iter().any(|&d| d < -1 || d == 0) {
            return Err(bad());
        }
        let positive: Vec<usize> = self
            .target
            .iter()
            .filter(|&&d| d > 0)
            .map(|&d| d.unsigned_abs())
            .collect();
        let known = lossgraph_ir::types::checked_numel(&positive).ok_or_else(bad)?;
        let n = count.ok_or_else(bad)?;
        if known == 0 || !n.is_multiple_of(known) || (unknown == 0 && known != n) {
            return Err(bad());
        }
        self.resolved = self
            .target
            .iter()
            .map(|&d| if d == -1 { n / known } else { d.unsigned_abs() })
            .collect();
        Ok(())
    }
    fn call(&self, _ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let mut shape = vec![inputs.shape().first().copied().unwrap_or(1)];
        shape.extend_from_slice(&self.resolved);
        Ok(inputs.reshape(&shape))
    }
    fn describe(&self) -> String {
        format!("target={:?}", self.target)
    }
}
