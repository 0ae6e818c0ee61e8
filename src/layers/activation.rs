//! The `Activation` layer: applies an activation function.

use super::{config_check, IntoActivation};
use crate::activations;
use crate::error::Result;
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Applies an activation (Keras `layers.Activation("relu")`).
#[derive(Clone, Debug)]
pub struct Activation {
    activation: activations::Activation,
    name: Option<String>,
    config_error: Option<String>,
}

impl Activation {
    /// An activation layer (an [`activations::Activation`] or a Keras name).
    pub fn new(a: impl IntoActivation) -> Activation {
        let (activation, config_error) = match a.into_activation() {
            Ok(a) => (a, None),
            Err(m) => (activations::Activation::Linear, Some(m)),
        };
        Activation {
            activation,
            name: None,
            config_error,
        }
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Activation {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Activation {
    fn class_name(&self) -> String {
        "Activation".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, _input_shape: &[usize]) -> Result<()> {
        config_check(ctx.path(), &self.config_error)
    }
    fn call(&self, _ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        Ok(self.activation.apply(inputs))
    }
    fn describe(&self) -> String {
        self.activation.name().into()
    }
}
