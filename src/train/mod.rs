//! Compiling and training: `compile`, `fit`, `evaluate`, `predict`,
//! `train_on_batch`, and the custom-training-loop API (`compute_gradients`,
//! `apply_gradients`).
//!
//! Each purpose (train, evaluate, predict, gradients, apply) is traced into
//! its own graph and compiled into a program cached per batch size (a
//! final partial batch gets its own program). Every program runs against the
//! model's one variable store, so no variable is copied between programs or
//! to the host.
//!
//! Reported numbers follow Keras 3: `loss` is the total (compiled plus every
//! added loss), per-output losses are unweighted, and `fit` reports epoch
//! means weighted by batch size.
//!
//! Modules, in dependency order (none of them is imported by `model` except
//! `session`, which knows nothing of the model):
//! - [`options`]: [`Purpose`], [`CompileOptions`], [`FitOptions`];
//! - [`logs`]: [`Logs`], [`History`] (also used by the callbacks);
//! - `engine`: JIT or interpreter, and the recorded [`InterpreterFallback`]s;
//! - `session`: the program cache, on the model's variable store;
//! - `step`: the step builder, one pipeline of [`StepStage`]s for every purpose;
//! - `run`: data checking, feeds, and the model's glue to the session;
//! - `fit`: `compile`, `fit`, `evaluate`, `predict`, `train_on_batch`;
//! - `custom_loop`: `compute_gradients`, `apply_gradients`;
//! - [`checkpoint`]: `save_checkpoint`, `load_checkpoint` (exact resume);
//! - `distributed`: data-parallel `fit` (shards, mean logs, start-up check, watchdog);
//! - `numerics`: `fit`'s opt-in per-step NaN/Inf check and its report.

pub mod checkpoint;
mod custom_loop;
mod distributed;
mod engine;
mod fit;
pub mod logs;
mod numerics;
pub mod options;
mod run;
pub(crate) mod session;
mod step;

pub use checkpoint::CheckpointInfo;
pub use custom_loop::Gradients;
pub use engine::InterpreterFallback;
pub use logs::{History, Logs};
pub use options::{
    CompileOptions, Distributed, Engine, FitOptions, Purpose, SampleWeights, Validation,
    DEFAULT_WATCHDOG,
};
pub use step::StepStage;
