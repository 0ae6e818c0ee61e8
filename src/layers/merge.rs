//! Merge layers: `Add` and `Concatenate`.

use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Elementwise sum of two or more inputs of equal shape (Keras `Add`).
#[derive(Clone, Debug, Default)]
pub struct Add {
    name: Option<String>,
}

impl Add {
    /// An `Add` layer.
    pub fn new() -> Add {
        Add::default()
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Add {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Add {
    fn class_name(&self) -> String {
        "Add".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        self.build_multi(ctx, &[input_shape.to_vec()])
    }
    fn build_multi(&mut self, ctx: &mut BuildCtx<'_>, shapes: &[Vec<usize>]) -> Result<()> {
        require_two_or_more(ctx, "Add", shapes.len())?;
        if let Some(s) = shapes.iter().find(|s| **s != shapes[0]) {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "Add needs inputs of equal shape, got {:?} and {:?}",
                    shapes[0], s
                ),
            ));
        }
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        self.call_multi(ctx, std::slice::from_ref(inputs))
    }
    fn call_multi(&self, ctx: &mut CallCtx<'_>, inputs: &[Tensor]) -> Result<Tensor> {
        let Some((first, rest)) = inputs.split_first() else {
            return Err(Error::layer(ctx.path(), "Add got no inputs"));
        };
        if rest.is_empty() {
            return Err(Error::layer(
                ctx.path(),
                "Add needs at least 2 inputs, got 1",
            ));
        }
        Ok(rest.iter().fold(first.clone(), |acc, t| acc + t))
    }
}

/// Joins inputs along an axis (Keras `Concatenate`, default axis -1). The axis
/// counts the batch axis, as in Keras; negative values count from the end.
#[derive(Clone, Debug)]
pub struct Concatenate {
    axis: isize,
    name: Option<String>,
}

impl Default for Concatenate {
    fn default() -> Concatenate {
        Concatenate {
            axis: -1,
            name: None,
        }
    }
}

impl Concatenate {
    /// Concatenation along the last axis.
    pub fn new() -> Concatenate {
        Concatenate::default()
    }

    /// The axis (batch axis included, negative from the end).
    pub fn axis(mut self, axis: isize) -> Concatenate {
        self.axis = axis;
        self
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Concatenate {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Concatenate {
    fn class_name(&self) -> String {
        "Concatenate".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        self.build_multi(ctx, &[input_shape.to_vec()])
    }
    fn build_multi(&mut self, ctx: &mut BuildCtx<'_>, shapes: &[Vec<usize>]) -> Result<()> {
        require_two_or_more(ctx, "Concatenate", shapes.len())?;
        let rank = shapes[0].len() + 1;
        let axis = if self.axis < 0 {
            self.axis + rank as isize
        } else {
            self.axis
        };
        if axis < 1 || axis as usize >= rank {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "Concatenate axis {} is out of range for inputs of rank {rank} (the batch axis cannot be joined)",
                    self.axis
                ),
            ));
        }
        let a = axis as usize - 1;
        for s in &shapes[1..] {
            let ok =
                s.len() == shapes[0].len() && (0..s.len()).all(|i| i == a || s[i] == shapes[0][i]);
            if !ok {
                return Err(Error::layer(
                    ctx.path(),
                    format!(
                        "Concatenate inputs disagree off axis {}: {:?} and {:?}",
                        self.axis, shapes[0], s
                    ),
                ));
            }
        }
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        self.call_multi(ctx, std::slice::from_ref(inputs))
    }
    fn call_multi(&self, ctx: &mut CallCtx<'_>, inputs: &[Tensor]) -> Result<Tensor> {
        if inputs.len() < 2 {
            return Err(Error::layer(
                ctx.path(),
                format!("Concatenate needs at least 2 inputs, got {}", inputs.len()),
            ));
        }
        let parts: Vec<&Tensor> = inputs.iter().collect();
        Ok(ctx.builder().concat(&parts, self.axis))
    }
    fn describe(&self) -> String {
        format!("axis={}", self.axis)
    }
}

/// Merge layers take two or more inputs; anything else is an error naming the layer.
fn require_two_or_more(ctx: &BuildCtx<'_>, class: &str, n: usize) -> Result<()> {
    if n < 2 {
        return Err(Error::layer(
            ctx.path(),
            format!("{class} needs at least 2 inputs, got {n}"),
        ));
    }
    Ok(())
}
