//! lossgraph: a Keras-style neural-network graph compiler.
//!
//! Write a model the way a Keras user does — layers with `build`/`call`,
//! [`add_loss`](layer::BuildCtx::add_loss), regularisers, `Sequential` or the
//! functional API — and lossgraph traces it into a symbolic IR, differentiates
//! it, and trains it with Keras 3's exact loss, regularisation and optimiser
//! semantics.
//!
//! Map of the front end:
//! - [`layer`]: the [`Layer`] trait, [`BuildCtx`] (`add_weight`,
//!   `add_state`, `add_loss` on weights, sub-layers) and [`CallCtx`]
//!   (`weight`, `assign` of state, `add_loss` on activations, `call_sublayer`);
//! - [`layers`]: Input, Dense, Activation, Dropout, ActivityRegularization,
//!   Add, Concatenate, Flatten, Reshape; [`activations`], [`regularizers`],
//!   [`initializers`];
//! - [`model`]: [`Sequential`], [`Functional`] (multi-input/output, shared
//!   layers), [`Model`] with [`Model::trace`], [`Model::losses`] (Keras's
//!   `model.losses` order) and [`Model::summary`];
//! - [`losses`], [`metrics`], [`optimizers`] (Keras 3 formulas and defaults,
//!   emitted as IR with `lr`/`iteration` runtime inputs);
//! - [`train`]: `compile`, `fit` (progress bar with the loss breakdown, or
//!   one line per epoch without a terminal),
//!   `evaluate`, `predict`, `train_on_batch`, `compute_gradients` /
//!   `apply_gradients`, built through one staged step builder
//!   ([`StepStage`], see [`architecture`]); [`callbacks`] (Keras's
//!   `ModelCheckpoint`, `EarlyStopping`, `ReduceLROnPlateau`, …); [`weights`] (safetensors).
//!
//! The seed example, Keras's `CustomDenseLayer` with an L1 penalty added in
//! `build`:
//!
//! ```
//! use lossgraph::layers::{Dense, Input};
//! use lossgraph::{BuildCtx, CallCtx, Init, Layer, LossReason, Result, Sequential, Tensor};
//!
//! struct CustomDenseLayer {
//!     units: usize,
//! }
//!
//! impl CustomDenseLayer {
//!     fn new(units: usize) -> Self {
//!         CustomDenseLayer { units }
//!     }
//! }
//!
//! impl Layer for CustomDenseLayer {
//!     fn build(&mut self, ctx: &mut BuildCtx, input_shape: &[usize]) -> Result<()> {
//!         let in_features = input_shape[input_shape.len() - 1];
//!         ctx.add_weight("kernel", &[in_features, self.units], Init::RandomNormal, true)?;
//!         ctx.add_weight("bias", &[self.units], Init::Zeros, true)?;
//!         // Add a custom loss term (L1 regularisation of the kernel).
//!         ctx.add_loss(|w| w.weight("kernel").abs().sum_all() * 0.01);
//!         Ok(())
//!     }
//!
//!     fn call(&self, ctx: &mut CallCtx, inputs: &Tensor) -> Result<Tensor> {
//!         Ok(inputs.matmul(ctx.weight("kernel")) + ctx.weight("bias"))
//!     }
//! }
//!
//! # fn main() -> Result<()> {
//! let model = Sequential::new("seed")
//!     .add(Input::new(&[3]))
//!     .add(CustomDenseLayer::new(4))
//!     .add(Dense::new(2).activation("softmax"))
//!     .build()?;
//! let losses = model.losses()?;
//! assert_eq!(losses.len(), 1);
//! assert_eq!(losses[0].owner, "custom_dense_layer");
//! assert_eq!(losses[0].reason, LossReason::AddLoss);
//! # Ok(()) }
//! ```

pub use lossgraph_ir as ir;
pub use lossgraph_runtime as runtime;

pub mod activations;
#[doc = include_str!("../docs/architecture.md")]
pub mod architecture {}
mod backend;
pub mod callbacks;
pub mod error;
#[doc = include_str!("../docs/add_loss.md")]
pub mod guide {}
pub mod initializers;
pub mod io;
pub mod keras;
pub mod layer;
pub mod layers;
pub mod losses;
pub mod metrics;
pub mod model;
pub mod optimizers;
pub mod regularizers;
pub mod stages;
pub mod sublayer;
pub mod summary;
pub mod train;
pub mod weights;

pub use activations::Activation;
pub use callbacks::{
    CSVLogger, Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint, ModelHandle,
    ProgbarLogger, ReduceLROnPlateau, TerminateOnNaN, Verbosity,
};
pub use error::{Error, Result};
pub use initializers::Init;
pub use layer::{BuildCtx, CallCtx, Layer, Variable, VariableKind, Weight};
pub use losses::Loss;
pub use lossgraph_ir::{DType, HostTensor, LossReason, Tensor};
pub use lossgraph_runtime::{Communicator, SingleProcess};
pub use metrics::Metric;
pub use model::{AddedLoss, Functional, LayerId, Model, Sequential, SymbolicTensor, Trace};
pub use optimizers::{LearningRate, Optimizer};
pub use regularizers::Regularizer;
pub use sublayer::Sublayer;
pub use train::{
    CheckpointInfo, CompileOptions, Distributed, Engine, FitOptions, Gradients, History,
    InterpreterFallback, Logs, Purpose, SampleWeights, StepStage, Validation, DEFAULT_WATCHDOG,
};
pub use weights::{read_safetensors, write_safetensors};

/// The lookup key of a Keras name: lower case without underscores, so
/// `"glorot_uniform"`, `"GlorotUniform"` and `"glorotuniform"` meet.
pub(crate) fn name_key(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase()
}
