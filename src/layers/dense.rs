//! `Dense`: `activation(x @ kernel + bias)`.

use super::{bias_activation, config_check};
use crate::activations::Activation;
use crate::error::{Error, Result};
use crate::initializers::Init;
use crate::layer::{BuildCtx, CallCtx, Layer};
use crate::regularizers::Regularizer;
use lossgraph_ir::Tensor;

/// A densely connected layer (Keras `Dense`): kernel `(in, units)`, bias
/// `(units,)`. Inputs of rank > 2 are contracted on their last axis.
#[derive(Clone, Debug)]
pub struct Dense {
    units: usize,
    activation: Activation,
    use_bias: bool,
    kernel_initializer: Init,
    bias_initializer: Init,
    kernel_regularizer: Option<Regularizer>,
    bias_regularizer: Option<Regularizer>,
    activity_regularizer: Option<Regularizer>,
    trainable: bool,
    name: Option<String>,
    config_error: Option<String>,
}

impl Dense {
    /// A dense layer with `units` outputs, linear activation, bias, glorot_uniform kernel, zero bias.
    pub fn new(units: usize) -> Dense {
        Dense {
            units,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Init::GlorotUniform,
            bias_initializer: Init::Zeros,
            kernel_regularizer: None,
            bias_regularizer: None,
            activity_regularizer: None,
            trainable: true,
            name: None,
            config_error: None,
        }
    }

    /// The number of output units.
    pub fn units(&self) -> usize {
        self.units
    }
}

layer_setters!(Dense: output, name, kernel, trainable);

impl Layer for Dense {
    fn class_name(&self) -> String {
        "Dense".into()
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        config_check(ctx.path(), &self.config_error)?;
        let Some(&fan_in) = input_shape.last() else {
            return Err(Error::layer(
                ctx.path(),
                "Dense needs inputs with at least one feature axis, got per-sample shape []",
            ));
        };
        if self.units == 0 {
            return Err(Error::layer(ctx.path(), "Dense needs units > 0"));
        }
        ctx.add_weight_with(
            "kernel",
            &[fan_in, self.units],
            self.kernel_initializer.clone(),
            self.trainable,
            self.kernel_regularizer.clone(),
        )?;
        if self.use_bias {
            ctx.add_weight_with(
                "bias",
                &[self.units],
                self.bias_initializer.clone(),
                self.trainable,
                self.bias_regularizer.clone(),
            )?;
        }
        Ok(())
    }

    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let kernel = ctx.weight("kernel");
        let y = if inputs.rank() > 2 {
            let shape = inputs.shape().to_vec();
            let (lead, last) = shape.split_at(shape.len() - 1);
            let rows: usize = lead.iter().product();
            let mut out_shape = lead.to_vec();
            out_shape.push(self.units);
            inputs
                .reshape(&[rows, last[0]])
                .matmul(kernel)
                .reshape(&out_shape)
        } else {
            inputs.matmul(kernel)
        };
        Ok(bias_activation(ctx, y, self.use_bias, &self.activation))
    }

    fn activity_regularizer(&self) -> Option<&Regularizer> {
        self.activity_regularizer.as_ref()
    }

    fn describe(&self) -> String {
        format!(
            "units={}, activation={}",
            self.units,
            self.activation.name()
        )
    }
}
