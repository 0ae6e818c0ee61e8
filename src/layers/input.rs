//! The input layer: declares a model input's per-sample shape.

use crate::error::Result;
use crate::layer::{CallCtx, Layer};
use lossgraph_ir::{DType, Tensor};

/// A model input of a fixed per-sample shape (Keras `Input(shape=...)`).
/// Its batch axis is added by the model. As a layer it is the identity.
/// Inputs are `f32` unless [`Input::dtype`] says `i32` (token ids).
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    shape: Vec<usize>,
    dtype: DType,
    name: Option<String>,
}

impl Input {
    /// An input of per-sample `shape` (no batch axis).
    pub fn new(shape: &[usize]) -> Input {
        Input {
            shape: shape.to_vec(),
            dtype: DType::F32,
            name: None,
        }
    }

    /// The element type fed (`I32` for token ids; Keras's `dtype="int32"`).
    /// Data of the other type is converted when fed (`f32` → `i32` truncates).
    pub fn dtype(mut self, dtype: DType) -> Input {
        self.dtype = dtype;
        self
    }

    /// The element type fed.
    pub fn element_type(&self) -> DType {
        self.dtype
    }

    /// Names the input (used for the `x/<name>` feed of multi-input models).
    pub fn name(mut self, name: impl Into<String>) -> Input {
        self.name = Some(name.into());
        self
    }

    /// The per-sample shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl Layer for Input {
    fn class_name(&self) -> String {
        "InputLayer".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn call(&self, _ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        Ok(inputs.clone())
    }
    fn input_shape(&self) -> Option<&[usize]> {
        Some(&self.shape)
    }
    fn input_dtype(&self) -> DType {
        self.dtype
    }
}
