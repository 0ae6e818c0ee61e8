//! Compiling and training: `compile`, `fit`, `evaluate`, `predict`,
//! `train_on_batch`, and the custom-training-loop API (`compute_gradients`,
//! `apply_gradients`).
//!
//! Each purpose (train, evaluate, predict, gradients, apply) is traced into
//! its own graph and compiled into a program cached per batch size (a
//! final partial batch gets its own program). The model's host variables are
//! the truth between calls; a training program holds the newest values while
//! it runs and they are copied back when it stops being the live one.
//!
//! Reported numbers follow Keras 3: `loss` is the total (compiled plus every
//! added loss), per-output losses are unweighted, and `fit` reports epoch
//! means weighted by batch size.
//!
//! Modules, in dependency order (none of them is imported by `model` except
//! `session`, which knows nothing of the model):
//! - [`options`]: [`Purpose`], [`CompileOptions`], [`FitOptions`];
//! - [`logs`]: [`Logs`], [`History`] (also used by the callbacks);
//! - `session`: the program cache and which program holds the newest variables;
//! - `step`: the per-purpose graph builder;
//! - `run`: data checking, feeds, and the model's glue to the session;
//! - `fit`: `compile`, `fit`, `evaluate`, `predict`, `train_on_batch`;
//! - `custom_loop`: `compute_gradients`, `apply_gradients`.

mod custom_loop;
mod fit;
pub mod logs;
pub mod options;
mod run;
pub(crate) mod session;
mod step;

pub use custom_loop::Gradients;
pub use logs::{History, Logs};
pub use options::{CompileOptions, Engine, FitOptions, Purpose, Validation};
