//! `ActivityRegularization`: the identity plus an activity loss.

use crate::error::Result;
use crate::layer::{CallCtx, Layer};
use crate::regularizers::Regularizer;
use lossgraph_ir::Tensor;

/// Keras `ActivityRegularization(l1, l2)`: returns its input and adds
/// `L1L2(l1, l2)(output) / batch_size` as an activity loss.
#[derive(Clone, Debug)]
pub struct ActivityRegularization {
    reg: Regularizer,
    name: Option<String>,
}

impl ActivityRegularization {
    /// The layer with factors `l1` and `l2`.
    pub fn new(l1: f32, l2: f32) -> ActivityRegularization {
        ActivityRegularization {
            reg: Regularizer::L1L2 { l1, l2 },
            name: None,
        }
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> ActivityRegularization {
        self.name = Some(name.into());
        self
    }
}

impl Layer for ActivityRegularization {
    fn class_name(&self) -> String {
        "ActivityRegularization".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn call(&self, _ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        Ok(inputs.clone())
    }
    fn activity_regularizer(&self) -> Option<&Regularizer> {
        Some(&self.reg)
    }
    fn describe(&self) -> String {
        self.reg.describe()
    }
}
