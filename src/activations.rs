//! Activation functions by Keras name. `gelu` is the exact erf form (Keras's
//! `activation="gelu"`), `softmax` acts on the last axis.

use crate::error::{Error, Result};
use lossgraph_ir::{nn, Tensor};

/// An elementwise (or last-axis, for softmax) activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    /// The identity (Keras `"linear"`, also `None`).
    #[default]
    Linear,
    Relu,
    Tanh,
    Sigmoid,
    /// Softmax over the last axis.
    Softmax,
    /// Log-softmax over the last axis.
    LogSoftmax,
    /// Exact GELU `0.5·x·(1+erf(x/√2))`.
    Gelu,
    /// `log(1+eˣ)`.
    Softplus,
    /// `x·σ(x)` (Keras `"silu"`/`"swish"`).
    Silu,
    /// `x` for x > 0, `eˣ-1` otherwise.
    Elu,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `max(x, 0.2·x)` (Keras's default negative slope 0.2).
    LeakyRelu,
    /// `eˣ`.
    Exponential,
}

impl Activation {
    /// Looks up a Keras activation name (`"relu"`, `"gelu"`, `"linear"`, …).
    pub fn from_name(name: &str) -> Result<Activation> {
        Ok(match name {
            "linear" | "" | "none" | "None" => Activation::Linear,
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "softmax" => Activation::Softmax,
            "log_softmax" => Activation::LogSoftmax,
            "gelu" => Activation::Gelu,
            "softplus" => Activation::Softplus,
            "silu" | "swish" => Activation::Silu,
            "elu" => Activation::Elu,
            "softsign" => Activation::Softsign,
            "leaky_relu" => Activation::LeakyRelu,
            "exponential" => Activation::Exponential,
            _ => {
                return Err(Error::config(
                    "activation",
                    format!("unknown activation '{name}'"),
                ))
            }
        })
    }

    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Softmax => "softmax",
            Activation::LogSoftmax => "log_softmax",
            Activation::Gelu => "gelu",
            Activation::Softplus => "softplus",
            Activation::Silu => "silu",
            Activation::Elu => "elu",
            Activation::Softsign => "softsign",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Exponential => "exponential",
        }
    }

    /// Emits the activation of `x`.
    pub fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Linear => x.clone(),
            Activation::Relu => nn::relu(x),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Softmax => nn::softmax(x, -1),
            Activation::LogSoftmax => nn::log_softmax(x, -1),
            Activation::Gelu => nn::gelu(x),
            Activation::Softplus => nn::softplus(x),
            Activation::Silu => x * x.sigmoid(),
            Activation::Elu => x.gt(0.0).select(x, x.minimum(0.0).exp() - 1.0),
            Activation::Softsign => x / (x.abs() + 1.0),
            Activation::LeakyRelu => x.maximum(x * 0.2),
            Activation::Exponential => x.exp(),
        }
    }
}
