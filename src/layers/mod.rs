//! Built-in layers. Each is a plain struct with Keras-style builder methods,
//! so the Keras JSON importer constructs the same objects a Rust user writes:
//! `Dense::new(8).activation("relu").kernel_regularizer(Regularizer::L2(0.01)).name("dense_1")`.

/// Keras's builder methods shared by the layers with weights, written once.
/// `layer_setters!(T: group, ...)` adds to `T` the methods of each group; `T`
/// must have the fields the group sets:
/// - `output`: `activation`, `use_bias`, `bias_initializer`,
///   `bias_regularizer`, `activity_regularizer` (and `config_error` for a bad
///   activation name);
/// - `name`: `name`;
/// - `seed` (the noise layers): `seed`, a [`NoiseSeed`];
/// - `affine` (the normalizations): `center`, `scale`, `beta_initializer`,
///   `gamma_initializer`, `beta_regularizer`, `gamma_regularizer`;
/// - `kernel`: `kernel_initializer`, `kernel_regularizer`;
/// - `trainable`: `trainable`;
/// - `window`: `strides`, `padding` (and `config_error`), `dilation_rate`.
macro_rules! layer_setters {
    ($t:ident: $($group:ident),+) => {
        impl $t {
            $(layer_setters!(@$group $t);)+
        }
    };
    (@output $t:ident) => {
        /// Sets the activation (an [`Activation`](crate::activations::Activation) or a Keras name such as `"relu"`).
        pub fn activation(mut self, a: impl crate::layers::IntoActivation) -> $t {
            match a.into_activation() {
                Ok(a) => self.activation = a,
                Err(m) => self.config_error = Some(m),
            }
            self
        }

        /// Whether to add a bias.
        pub fn use_bias(mut self, yes: bool) -> $t {
            self.use_bias = yes;
            self
        }

        /// The bias initialiser.
        pub fn bias_initializer(mut self, init: crate::initializers::Init) -> $t {
            self.bias_initializer = init;
            self
        }

        /// A regulariser on the bias.
        pub fn bias_regularizer(mut self, r: crate::regularizers::Regularizer) -> $t {
            self.bias_regularizer = Some(r);
            self
        }

        /// A regulariser on the (post-activation) output, divided by the batch size.
        pub fn activity_regularizer(mut self, r: crate::regularizers::Regularizer) -> $t {
            self.activity_regularizer = Some(r);
            self
        }

    };
    (@seed $t:ident) => {
        /// The noise seed (default: derived from the model seed).
        pub fn seed(mut self, seed: u32) -> $t {
            self.seed = crate::layers::NoiseSeed::fixed(seed);
            self
        }
    };
    (@name $t:ident) => {
        /// The layer name.
        pub fn name(mut self, name: impl Into<String>) -> $t {
            self.name = Some(name.into());
            self
        }
    };
    (@affine $t:ident) => {
        /// Whether there is a `beta` offset.
        pub fn center(mut self, yes: bool) -> $t {
            self.center = yes;
            self
        }

        /// Whether there is a `gamma` factor.
        pub fn scale(mut self, yes: bool) -> $t {
            self.scale = yes;
            self
        }

        /// The `beta` initialiser (zeros).
        pub fn beta_initializer(mut self, i: crate::initializers::Init) -> $t {
            self.beta_initializer = i;
            self
        }

        /// The `gamma` initialiser (ones).
        pub fn gamma_initializer(mut self, i: crate::initializers::Init) -> $t {
            self.gamma_initializer = i;
            self
        }

        /// A regulariser on `beta`.
        pub fn beta_regularizer(mut self, r: crate::regularizers::Regularizer) -> $t {
            self.beta_regularizer = Some(r);
            self
        }

        /// A regulariser on `gamma`.
        pub fn gamma_regularizer(mut self, r: crate::regularizers::Regularizer) -> $t {
            self.gamma_regularizer = Some(r);
            self
        }
    };
    (@kernel $t:ident) => {
        /// The kernel initialiser.
        pub fn kernel_initializer(mut self, init: crate::initializers::Init) -> $t {
            self.kernel_initializer = init;
            self
        }

        /// A regulariser on the kernel.
        pub fn kernel_regularizer(mut self, r: crate::regularizers::Regularizer) -> $t {
            self.kernel_regularizer = Some(r);
            self
        }
    };
    (@trainable $t:ident) => {
        /// Freezes (false) or unfreezes the layer's weights.
        pub fn trainable(mut self, yes: bool) -> $t {
            self.trainable = yes;
            self
        }
    };
    (@window $t:ident) => {
        /// Strides, one per spatial axis.
        pub fn strides(mut self, s: &[usize]) -> $t {
            self.strides = s.to_vec();
            self
        }

        /// `"valid"` or `"same"`.
        pub fn padding(mut self, p: &str) -> $t {
            match crate::layers::parse_padding(p) {
                Ok(p) => self.padding = p,
                Err(m) => self.config_error = Some(m),
            }
            self
        }

        /// Dilation, one per spatial axis.
        pub fn dilation_rate(mut self, d: &[usize]) -> $t {
            self.dilation_rate = d.to_vec();
            self
        }
    };
}

mod activation;
mod alpha_dropout;
mod batch_normalization;
mod conv;
mod conv_transpose;
mod dense;
mod depthwise;
mod dropout;
mod embedding;
mod gaussian_dropout;
mod gaussian_noise;
mod global_pooling;
mod group_normalization;
mod input;
pub(crate) mod lambda;
mod layer_normalization;
mod merge;
mod pooling;
mod regularization;
mod reshape;
mod resize;
mod spatial_dropout;
mod unit_normalization;

pub use activation::Activation;
pub use alpha_dropout::AlphaDropout;
pub use batch_normalization::BatchNormalization;
pub(crate) use conv::parse_padding;
pub use conv::{Conv, Conv1D, Conv2D};
pub use conv_transpose::{Conv1DTranspose, Conv2DTranspose, ConvTranspose};
pub use dense::Dense;
pub use depthwise::{DepthwiseConv, DepthwiseConv2D, SeparableConv2D};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use gaussian_dropout::GaussianDropout;
pub use gaussian_noise::GaussianNoise;
pub use global_pooling::{
    GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
    GlobalPooling,
};
pub use group_normalization::GroupNormalization;
pub use input::Input;
pub use lambda::Lambda;
pub use layer_normalization::LayerNormalization;
pub use merge::{Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract};
pub use pooling::{AveragePooling1D, AveragePooling2D, MaxPooling1D, MaxPooling2D, Pooling};
pub use regularization::ActivityRegularization;
pub use reshape::{Flatten, Reshape};
pub use resize::{
    Cropping1D, Cropping2D, Resize, UpSampling1D, UpSampling2D, ZeroPadding1D, ZeroPadding2D,
};
pub use spatial_dropout::SpatialDropout;
pub use unit_normalization::UnitNormalization;

use crate::activations;
use crate::error::{Error, Result};
use crate::layer::BuildCtx;

/// An activation given by enum or by Keras name; a bad name is reported when the layer is built.
pub trait IntoActivation {
    /// The activation, or the message explaining why the name is unknown.
    fn into_activation(self) -> std::result::Result<activations::Activation, String>;
}

impl IntoActivation for activations::Activation {
    fn into_activation(self) -> std::result::Result<activations::Activation, String> {
        Ok(self)
    }
}

impl IntoActivation for &str {
    fn into_activation(self) -> std::result::Result<activations::Activation, String> {
        activations::Activation::from_name(self).map_err(|e| e.to_string())
    }
}

impl IntoActivation for &String {
    fn into_activation(self) -> std::result::Result<activations::Activation, String> {
        self.as_str().into_activation()
    }
}

/// The epilogue of the layers with a kernel: `activation(y + bias)`, the
/// bias being the layer's `bias` weight when `use_bias`.
pub(crate) fn bias_activation(
    ctx: &crate::layer::CallCtx<'_>,
    y: lossgraph_ir::Tensor,
    use_bias: bool,
    activation: &activations::Activation,
) -> lossgraph_ir::Tensor {
    let y = if use_bias { y + ctx.weight("bias") } else { y };
    activation.apply(&y)
}

/// Turns a configuration error recorded by a builder method into a layer error.
pub(crate) fn config_check(path: &str, err: &Option<String>) -> Result<()> {
    match err {
        Some(m) => Err(Error::layer(path, m.clone())),
        None => Ok(()),
    }
}

/// Resolves a layer's `axis` (negative counts from the end) against a
/// per-sample shape to an axis of the batched input (batch axis 0, which a
/// layer cannot name): `1..=input_shape.len()`.
pub(crate) fn norm_axis(path: &str, axis: isize, input_shape: &[usize]) -> Result<usize> {
    let rank = input_shape.len() as isize + 1;
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 1 || a >= rank {
        return Err(Error::layer(
            path,
            format!(
                "axis {axis} is not a feature axis of inputs (batch, {})",
                input_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(a as usize)
}

/// The noise seed of a layer that draws noise: the user's, or one derived
/// from the model seed in `build` ([`BuildCtx::seed`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NoiseSeed {
    fixed: Option<u32>,
    resolved: u32,
}

impl NoiseSeed {
    /// A seed chosen by the user.
    pub(crate) fn fixed(seed: u32) -> NoiseSeed {
        NoiseSeed {
            fixed: Some(seed),
            resolved: seed,
        }
    }

    /// Fixes the seed for this build: the user's, else the model-derived one.
    pub(crate) fn resolve(&mut self, ctx: &BuildCtx<'_>) {
        self.resolved = self.fixed.unwrap_or_else(|| ctx.seed());
    }

    /// The seed the ops use.
    pub(crate) fn get(&self) -> u32 {
        self.resolved
    }
}
