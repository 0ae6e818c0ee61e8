//! Keras 3 import: `model.to_json()` architectures, compile settings and the
//! reference cases of `shared/keras-cases`.
//!
//! Parsing ([`spec`], [`compile`]) is strict and independent of the front
//! end: it turns JSON into typed descriptions and reports anything
//! unsupported with the layer class, the layer name and the offending key.
//! Each importable layer class is one entry of [`registry::LAYER_CLASSES`]
//! (parse and build together).

pub mod archive;
pub mod build;
pub mod case;
pub mod compile;
mod error;
mod json;
pub mod model_file;
pub mod nested;
pub mod registry;
pub mod reshaping;
pub mod spatial;
pub mod spec;
pub mod weights_h5;

pub use archive::{load_keras, KerasArchive, KerasModel};
pub use compile::{CompileSpec, LossKind, LossSpec, OptimizerSpec};
pub use error::{KerasError, Result};
pub use spec::{
    ActivationSpec, InitializerSpec, LayerKind, LayerSpec, ModelKind, ModelSpec, RegularizerSpec,
    TensorRef,
};

#[cfg(test)]
mod tests;
