//! `Embedding`: rows of a table selected by integer ids.

use crate::error::{Error, Result};
use crate::initializers::Init;
use crate::layer::{BuildCtx, CallCtx, Layer};
use crate::regularizers::Regularizer;
use lossgraph_ir::{DType, Tensor};

/// Keras `Embedding(input_dim, output_dim)` (SEMANTICS.md §6.7): ids `(N,
/// T..)` → `(N, T.., output_dim)`, `y[n,t,:] = embeddings[ids[n,t], :]` (a
/// `gather`). Non-integer inputs are cast to `i32` (truncating), as Keras
/// casts. The gradient is dense: every row gets one each step (zero where
/// no id selects it, plus the regulariser), so the optimiser updates the
/// whole table, as Keras does. A shared Embedding (one layer called on two
/// inputs) has one variable whose gradients add up.
///
/// Ids outside `[0, input_dim)` are refused: the data of a model input read
/// directly by an Embedding is checked before every run (an error naming
/// the sample and the value); ids computed in the graph are checked as the
/// run looks them up, by both engines (an error naming the gather node,
/// the batch row and the value; a refused training step changes no
/// weight). Keras on JAX returns NaN rows (or wraps negative ids) instead.
#[derive(Clone, Debug)]
pub struct Embedding {
    input_dim: usize,
    output_dim: usize,
    embeddings_initializer: Init,
    embeddings_regularizer: Option<Regularizer>,
    trainable: bool,
    name: Option<String>,
}

impl Embedding {
    /// A table of `input_dim` rows of width `output_dim`, initialised `U(−0.05, 0.05)`.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding {
            input_dim,
            output_dim,
            embeddings_initializer: Init::RandomUniform,
            embeddings_regularizer: None,
            trainable: true,
            name: None,
        }
    }
    /// The table initialiser.
    pub fn embeddings_initializer(mut self, i: Init) -> Self {
        self.embeddings_initializer = i;
        self
    }
    /// A regulariser on the table.
    pub fn embeddings_regularizer(mut self, r: Regularizer) -> Self {
        self.embeddings_regularizer = Some(r);
        self
    }
    /// Freezes (false) or unfreezes the table.
    pub fn trainable(mut self, yes: bool) -> Self {
        self.trainable = yes;
        self
    }
    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Embedding {
    fn class_name(&self) -> String {
        "Embedding".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, _input_shape: &[usize]) -> Result<()> {
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "Embedding needs input_dim and output_dim > 0, got {} and {}",
                    self.input_dim, self.output_dim
                ),
            ));
        }
        ctx.add_weight_with(
            "embeddings",
            &[self.input_dim, self.output_dim],
            self.embeddings_initializer.clone(),
            self.trainable,
            self.embeddings_regularizer.clone(),
        )?;
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, ids: &Tensor) -> Result<Tensor> {
        let ids = if ids.dtype() == DType::I32 {
            ids.clone()
        } else {
            ids.cast(DType::I32)
        };
        Ok(ctx.weight("embeddings").gather(&ids))
    }
    fn id_bound(&self) -> Option<usize> {
        Some(self.input_dim)
    }
    fn describe(&self) -> String {
        format!(
            "input_dim={}, output_dim={}",
            self.input_dim, self.output_dim
        )
    }
}
