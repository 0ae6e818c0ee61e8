//! Built-in layers. Each is a plain struct with Keras-style builder methods,
//! so the Keras JSON importer constructs the same objects a Rust user writes:
//! `Dense::new(8).activation("relu").kernel_regularizer(Regularizer::L2(0.01)).name("dense_1")`.

mod activation;
mod conv;
mod conv_transpose;
mod dense;
mod depthwise;
mod dropout;
mod global_pooling;
mod input;
mod merge;
mod pooling;
mod regularization;
mod reshape;
mod resize;

pub use activation::Activation;
pub(crate) use conv::parse_padding;
pub use conv::{Conv, Conv1D, Conv2D};
pub use conv_transpose::{Conv1DTranspose, Conv2DTranspose, ConvTranspose};
pub use dense::Dense;
pub use depthwise::{DepthwiseConv, DepthwiseConv2D, SeparableConv2D};
pub use dropout::Dropout;
pub use global_pooling::{
    GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
    GlobalPooling,
};
pub use input::Input;
pub use merge::{Add, Concatenate};
pub use pooling::{AveragePooling1D, AveragePooling2D, MaxPooling1D, MaxPooling2D, Pooling};
pub use regularization::ActivityRegularization;
pub use reshape::{Flatten, Reshape};
pub use resize::{
    Cropping1D, Cropping2D, Resize, UpSampling1D, UpSampling2D, ZeroPadding1D, ZeroPadding2D,
};

use crate::activations;
use crate::error::{Error, Result};

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

/// Turns a configuration error recorded by a builder method into a layer error.
pub(crate) fn config_check(path: &str, err: &Option<String>) -> Result<()> {
    match err {
        Some(m) => Err(Error::layer(path, m.clone())),
        None => Ok(()),
    }
}
