//! Training callbacks with Keras 3's hooks and semantics.
//!
//! `fit` calls every [`Callback`] at the boundaries of training, of each
//! epoch and of each batch (Keras's `on_train_begin`, `on_epoch_begin`,
//! `on_train_batch_begin`, `on_train_batch_end`, `on_epoch_end`,
//! `on_train_end`), in the order they were added, then its own
//! [`History`] and, unless silent, the [`ProgbarLogger`] (Keras appends
//! both after the user's callbacks, so the progress line shows what the
//! callbacks logged, e.g. `learning_rate`).
//!
//! A callback sees the model through a [`ModelHandle`]: read and set the
//! weights, read and set the learning rate the next step uses (fed to the
//! compiled step as an input, so setting it recompiles nothing), save
//! weights or a checkpoint, and ask training to stop (Keras's
//! `model.stop_training = True`: `fit` stops after the current batch, still
//! ending that epoch). Logs are batch-size-weighted running means over the
//! epoch so far at batch ends (as Keras's stateful metrics), the epoch means
//! (validation entries prefixed `val_`) at epoch ends.
//!
//! One callback per file: [`EarlyStopping`], [`ModelCheckpoint`],
//! [`ReduceLROnPlateau`], [`LearningRateScheduler`], [`CSVLogger`],
//! [`TerminateOnNaN`], [`History`] and [`ProgbarLogger`]; [`Monitor`]
//! holds the "is this an improvement" rule the monitoring ones share.
//!
//! This module depends on [`logs`](crate::train::logs) and the error type
//! only; `fit` implements [`ModelHandle`] for the model it trains.
//!
//! ```
//! use lossgraph::callbacks::ModelHandle;
//! use lossgraph::layers::{Dense, Input};
//! use lossgraph::{
//!     Callback, CompileOptions, EarlyStopping, FitOptions, HostTensor, Logs, Loss, Optimizer,
//!     ReduceLROnPlateau, Result, Sequential, Validation,
//! };
//!
//! /// Halves the learning rate after every epoch whose loss went up.
//! struct HalveOnIncrease(Option<f64>);
//!
//! impl Callback for HalveOnIncrease {
//!     fn on_epoch_end(&mut self, m: &mut dyn ModelHandle, _e: usize, logs: &mut Logs) -> Result<()> {
//!         if matches!(self.0, Some(prev) if logs.loss() > prev) {
//!             let lr = m.learning_rate()?;
//!             m.set_learning_rate(lr / 2.0)?;
//!         }
//!         self.0 = Some(logs.loss());
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<()> {
//! let mut model = Sequential::new("m").add(Input::new(&[2])).add(Dense::new(1)).build()?;
//! model.compile(CompileOptions::new(Optimizer::sgd(0.05), Loss::MeanSquaredError))?;
//! let x = HostTensor::f32(&[8, 2], (0..16).map(|i| i as f32 / 16.0).collect()).unwrap();
//! let y = HostTensor::f32(&[8, 1], (0..8).map(|i| i as f32 / 8.0).collect()).unwrap();
//! let history = model.fit(
//!     &[x],
//!     &[y],
//!     FitOptions::new()
//!         .epochs(20)
//!         .batch_size(4)
//!         .validation(Validation::Split(0.25))
//!         .verbose(false)
//!         .callback(HalveOnIncrease(None))
//!         .callback(ReduceLROnPlateau::new("val_loss").factor(0.5)?.patience(2))
//!         .callback(EarlyStopping::new("val_loss", 4).restore_best_weights(true)),
//! )?;
//! // ReduceLROnPlateau logs the rate each epoch trained with.
//! assert_eq!(history.series("learning_rate").len(), history.epochs.len());
//! # Ok(())
//! # }
//! ```

mod csv_logger;
mod early_stopping;
mod history;
mod learning_rate_scheduler;
mod model_checkpoint;
mod monitor;
mod progbar_logger;
mod python_format;
mod reduce_lr_on_plateau;
mod terminate_on_nan;

pub use csv_logger::CSVLogger;
pub use early_stopping::EarlyStopping;
pub use learning_rate_scheduler::{EpochSchedule, LearningRateScheduler};
pub use model_checkpoint::{format_filepath, ModelCheckpoint, SaveFreq};
pub use monitor::{Mode, Monitor};
pub use progbar_logger::{epoch_line, ProgbarLogger, Verbosity};
pub use reduce_lr_on_plateau::ReduceLROnPlateau;
pub use terminate_on_nan::TerminateOnNaN;

use crate::error::Result;
pub use crate::train::logs::{History, Logs};
use lossgraph_ir::HostTensor;
use std::path::Path;

/// What a `fit` run is (Keras's `callback.params`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FitParams {
    /// Index of the last epoch + 1 (`FitOptions::epochs`).
    pub epochs: usize,
    /// Training steps (batches) per epoch.
    pub steps: usize,
    /// The resolved verbosity ([`Verbosity::resolve`]: never `Auto`).
    pub verbose: Verbosity,
    /// This process's rank in a data-parallel run (0 otherwise): callbacks
    /// that write files write on rank 0 only, as Keras writes on the chief.
    pub rank: usize,
}

/// The model as a callback sees it during `fit` (Keras's `self.model`,
/// narrowed to what the Keras callbacks use).
pub trait ModelHandle {
    /// The settings of this `fit` run.
    fn params(&self) -> FitParams;
    /// Every variable as `(name, value)` ([`Model::get_weights`](crate::Model::get_weights)).
    fn get_weights(&self) -> Vec<(String, HostTensor)>;
    /// Replaces the variables, all or nothing ([`Model::set_weights`](crate::Model::set_weights)).
    fn set_weights(&mut self, weights: &[(String, HostTensor)]) -> Result<()>;
    /// Writes the variables to a safetensors file atomically ([`Model::save_weights`](crate::Model::save_weights)).
    fn save_weights(&self, path: &Path) -> Result<()>;
    /// Writes a checkpoint that resumes training exactly, atomically
    /// ([`Model::save_checkpoint`](crate::Model::save_checkpoint)).
    fn save_checkpoint(&self, path: &Path) -> Result<()>;
    /// The learning rate the next optimiser step uses (a schedule's value
    /// at the current iteration).
    fn learning_rate(&self) -> Result<f32>;
    /// Sets a constant learning rate from the next step on, without
    /// recompiling. Refused (as Keras refuses it) when the optimiser was
    /// compiled with a schedule, and for a negative or non-finite rate.
    fn set_learning_rate(&mut self, lr: f32) -> Result<()>;
    /// Optimiser steps taken since `compile`.
    fn iterations(&self) -> u64;
    /// Asks `fit` to stop after the current batch (Keras's `model.stop_training = True`).
    fn stop_training(&mut self);
    /// True once a callback asked to stop.
    fn stop_requested(&self) -> bool;
}

/// Hooks called by `fit`; every one has a no-op default and may fail (the
/// error ends `fit` with it).
pub trait Callback {
    /// Before the first epoch.
    fn on_train_begin(&mut self, model: &mut dyn ModelHandle) -> Result<()> {
        let _ = model;
        Ok(())
    }
    /// After the last epoch (or the one training stopped in), with its logs
    /// (empty when no epoch ran).
    fn on_train_end(&mut self, model: &mut dyn ModelHandle, logs: &Logs) -> Result<()> {
        let _ = (model, logs);
        Ok(())
    }
    /// At the start of epoch `epoch` (0-based, from `initial_epoch` on).
    fn on_epoch_begin(&mut self, model: &mut dyn ModelHandle, epoch: usize) -> Result<()> {
        let _ = (model, epoch);
        Ok(())
    }
    /// At the end of epoch `epoch`, with its means; a callback may add
    /// entries (Keras's `ReduceLROnPlateau` logs `learning_rate`), which the
    /// callbacks after it, the history and the progress line see.
    fn on_epoch_end(
        &mut self,
        model: &mut dyn ModelHandle,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        let _ = (model, epoch, logs);
        Ok(())
    }
    /// Before training batch `batch` (0-based within the epoch).
    fn on_train_batch_begin(&mut self, model: &mut dyn ModelHandle, batch: usize) -> Result<()> {
        let _ = (model, batch);
        Ok(())
    }
    /// After training batch `batch`, with the running means of the epoch so far.
    fn on_train_batch_end(
        &mut self,
        model: &mut dyn ModelHandle,
        batch: usize,
        logs: &Logs,
    ) -> Result<()> {
        let _ = (model, batch, logs);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A [`ModelHandle`] without a model, for the callbacks' unit tests on
    //! hand-built log sequences.

    use super::*;
    use crate::error::Error;

    /// Weights are one named tensor per entry; saves are recorded (path, kind), not written.
    pub struct FakeModel {
        pub params: FitParams,
        pub weights: Vec<(String, HostTensor)>,
        pub lr: f32,
        pub schedule: bool,
        pub stop: bool,
        pub saved: std::cell::RefCell<Vec<(String, &'static str)>>,
        pub iterations: u64,
    }

    impl FakeModel {
        pub fn new(epochs: usize) -> FakeModel {
            FakeModel {
                params: FitParams {
                    epochs,
                    steps: 1,
                    verbose: Verbosity::Silent,
                    rank: 0,
                },
                weights: vec![("w".into(), HostTensor::scalar(0.0))],
                lr: 0.1,
                schedule: false,
                stop: false,
                saved: Default::default(),
                iterations: 0,
            }
        }

        /// The value of the one weight.
        pub fn w(&self) -> f32 {
            self.weights[0].1.item().unwrap_or(f64::NAN) as f32
        }

        pub fn set_w(&mut self, v: f32) {
            self.weights[0].1 = HostTensor::scalar(v);
        }
    }

    impl ModelHandle for FakeModel {
        fn params(&self) -> FitParams {
            self.params
        }
        fn get_weights(&self) -> Vec<(String, HostTensor)> {
            self.weights.clone()
        }
        fn set_weights(&mut self, weights: &[(String, HostTensor)]) -> Result<()> {
            self.weights = weights.to_vec();
            Ok(())
        }
        fn save_weights(&self, path: &Path) -> Result<()> {
            let p = path.display().to_string();
            self.saved.borrow_mut().push((p, "weights"));
            Ok(())
        }
        fn save_checkpoint(&self, path: &Path) -> Result<()> {
            let p = path.display().to_string();
            self.saved.borrow_mut().push((p, "checkpoint"));
            Ok(())
        }
        fn learning_rate(&self) -> Result<f32> {
            Ok(self.lr)
        }
        fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
            if self.schedule {
                return Err(Error::config("learning rate", "a schedule"));
            }
            self.lr = lr;
            Ok(())
        }
        fn iterations(&self) -> u64 {
            self.iterations
        }
        fn stop_training(&mut self) {
            self.stop = true;
        }
        fn stop_requested(&self) -> bool {
            self.stop
        }
    }

    /// Logs from `(name, value)` pairs.
    pub fn logs(pairs: &[(&str, f64)]) -> Logs {
        let mut l = Logs::default();
        for (k, v) in pairs {
            l.insert(k, *v);
        }
        l
    }
}
