//! Checkpoints that resume training exactly: one safetensors file holding
//! everything a training step reads besides the data.
//!
//! Contents, under Keras 3's names where Keras has the variable:
//! - every model variable, weights and state (`dense_1/kernel`,
//!   `batch_normalization/moving_mean`);
//! - the optimiser's `iteration` (`i32[]`) and, for a constant rate, its
//!   `learning_rate` (`f32[]`), in the optimiser's scope (`adam/iteration`);
//! - every slot of every trainable variable, named as Keras's
//!   `add_variable_from_reference` names it (`adam/dense_1_kernel_momentum`);
//!   slots no step has written yet are saved as their zero start value;
//! - lossgraph's own counters: [`RNG_STEP_VARIABLE`] (the position in the
//!   model's noise stream, so dropout draws the same masks after a resume)
//!   and [`EPOCH_VARIABLE`] (epochs `fit` completed, to resume with
//!   [`FitOptions::initial_epoch`](super::FitOptions::initial_epoch)).
//!
//! Invariant: saving then loading into a model of the same architecture
//! (noise layers' seeds included: like Keras's `seed` argument they are
//! configuration, and an unseeded noise layer takes its seed from the model
//! seed), compiled with the same settings, restores every value a training step
//! reads, so the next steps are bit-identical to those of the run that saved.

use super::session::TrainState;
use crate::error::{Error, Result};
use crate::layer::Variable;
use crate::model::Model;
use crate::optimizers::{LearningRate, Optimizer};
use crate::weights::{read_safetensors, write_safetensors};
use lossgraph_ir::{HostTensor, TensorType};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// Checkpoint key of the model's noise-stream position (an `i32[]`).
pub const RNG_STEP_VARIABLE: &str = "lossgraph/rng_step";
/// Checkpoint key of the number of epochs `fit` completed (an `i32[]`).
pub const EPOCH_VARIABLE: &str = "lossgraph/epoch";

/// What [`Model::load_checkpoint`] restored besides the variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Epochs completed by `fit` when the checkpoint was saved: pass it to
    /// [`FitOptions::initial_epoch`](super::FitOptions::initial_epoch).
    pub epoch: usize,
    /// Optimiser steps taken.
    pub iterations: u64,
}

/// One optimiser slot: its store name, Keras's name and its type.
struct SlotEntry {
    store: String,
    keras: String,
    ty: TensorType,
}

/// Every slot the optimiser keeps for the trainable variables, in
/// trainable-weight order. Errors when two slots get the same Keras name
/// (`a_b/c` and `a/b_c` both flatten to `a_b_c`).
fn slot_entries(opt: &Optimizer, vars: &[Variable]) -> Result<Vec<SlotEntry>> {
    let mut out: Vec<SlotEntry> = Vec::new();
    for v in vars.iter().filter(|v| v.trainable) {
        for slot in opt.slots() {
            let keras = opt.keras_slot_name(slot, &v.path);
            if let Some(other) = out.iter().find(|e| e.keras == keras) {
                return Err(Error::config(
                    "checkpoint",
                    format!(
                        "optimizer slots '{}' and '{}' both get the Keras name '{keras}'",
                        other.store,
                        opt.slot_variable(slot, &v.path)
                    ),
                ));
            }
            out.push(SlotEntry {
                store: opt.slot_variable(slot, &v.path),
                keras,
                ty: v.ty.clone(),
            });
        }
    }
    Ok(out)
}

fn counter(name: &str, v: u64) -> Result<HostTensor> {
    let v = i32::try_from(v).map_err(|_| {
        Error::config(
            "checkpoint",
            format!("{name} = {v} does not fit the i32 a checkpoint stores"),
        )
    })?;
    HostTensor::i32(&[], vec![v])
        .ok_or_else(|| Error::config("checkpoint", format!("{name}: not a scalar")))
}

impl TrainState {
    fn optimizer(&self, action: &str, model: &str) -> Result<&Optimizer> {
        self.compiled
            .as_ref()
            .map(|c| &c.optimizer)
            .ok_or_else(|| Error::NotCompiled {
                model: model.into(),
                action: action.into(),
            })
    }
}

impl Model {
    /// Saves a checkpoint (see the module docs for its contents) atomically
    /// ([`crate::io::write_atomic`]). The model must be compiled.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let opt = self.train.optimizer("save_checkpoint", &self.name)?;
        let mut tensors = self.get_weights();
        tensors.push((
            opt.keras_variable("iteration"),
            counter("iteration", self.train.iterations)?,
        ));
        if let Some(lr) = opt.learning_rate.constant() {
            tensors.push((opt.keras_variable("learning_rate"), HostTensor::scalar(lr)));
        }
        let slots = slot_entries(opt, &self.vars)?;
        // Invariant check: the store holds the variables and the slots only.
        if let Some(other) = self.store.names().find(|n| {
            !self.vars.iter().any(|v| v.path == *n) && !slots.iter().any(|e| e.store == *n)
        }) {
            return Err(Error::config(
                "checkpoint",
                format!("the variable store holds '{other}', which is neither a model variable nor a slot of the compiled optimizer"),
            ));
        }
        for e in slots {
            let value = self
                .store
                .read(&e.store)
                .unwrap_or_else(|| HostTensor::zeros(&e.ty));
            tensors.push((e.keras, value));
        }
        tensors.push((
            RNG_STEP_VARIABLE.into(),
            counter("rng step", self.train.rng_runs)?,
        ));
        tensors.push((EPOCH_VARIABLE.into(), counter("epoch", self.train.epoch)?));
        write_safetensors(path, &tensors)
    }

    /// Restores a checkpoint written by [`save_checkpoint`](Self::save_checkpoint):
    /// variables, optimiser slots, iteration count, a constant learning rate,
    /// the noise-stream position and the epoch count. Call it after
    /// `compile` (which resets the optimiser state) with the same optimiser
    /// settings. All or nothing: a missing, unexpected or mistyped entry
    /// changes nothing and the error lists every problem.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<CheckpointInfo> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let opt = self.train.optimizer("load_checkpoint", &self.name)?.clone();
        let mut tensors: HashMap<String, HostTensor> =
            read_safetensors(path)?.into_iter().collect();
        let slots = slot_entries(&opt, &self.vars)?;
        let mut missing = Vec::new();
        let mut wrong = Vec::new();
        let mut take = |name: &str, ty: &TensorType| -> Option<HostTensor> {
            match tensors.remove(name) {
                None => {
                    missing.push(format!("{name} {ty}"));
                    None
                }
                Some(t) if t.ty != *ty => {
                    wrong.push(format!("{name}: expected {ty}, file has {}", t.ty));
                    None
                }
                Some(t) => Some(t),
            }
        };
        let weights: Vec<(String, Option<HostTensor>)> = self
            .vars
            .iter()
            .map(|v| (v.path.clone(), take(&v.path, &v.ty)))
            .collect();
        let slot_values: Vec<(&SlotEntry, Option<HostTensor>)> =
            slots.iter().map(|e| (e, take(&e.keras, &e.ty))).collect();
        let i32_scalar = TensorType::i32([]);
        let iteration = take(&opt.keras_variable("iteration"), &i32_scalar);
        let lr = opt
            .learning_rate
            .constant()
            .and_then(|_| take(&opt.keras_variable("learning_rate"), &TensorType::scalar()));
        let rng = take(RNG_STEP_VARIABLE, &i32_scalar);
        let epoch = take(EPOCH_VARIABLE, &i32_scalar);
        let mut unexpected: Vec<String> = tensors
            .iter()
            .map(|(n, t)| format!("{n} {}", t.ty))
            .collect();
        unexpected.sort();
        let count = |t: &Option<HostTensor>, name: &str, wrong: &mut Vec<String>| -> u64 {
            let v = t
                .as_ref()
                .and_then(|t| t.as_i32())
                .and_then(|v| v.first().copied());
            match v {
                Some(v) if v >= 0 => v as u64,
                Some(v) => {
                    wrong.push(format!("{name}: negative count {v}"));
                    0
                }
                None => 0,
            }
        };
        let iterations = count(&iteration, &opt.keras_variable("iteration"), &mut wrong);
        let rng_runs = count(&rng, RNG_STEP_VARIABLE, &mut wrong);
        let epochs = count(&epoch, EPOCH_VARIABLE, &mut wrong);
        let lr = lr.and_then(|t| t.item()).map(|v| v as f32);
        if let Some(v) = lr.filter(|v| !(v.is_finite() && *v >= 0.0)) {
            wrong.push(format!(
                "{}: {v} is not a learning rate",
                opt.keras_variable("learning_rate")
            ));
        }
        if !(missing.is_empty() && wrong.is_empty() && unexpected.is_empty()) {
            let mut d = String::new();
            if !missing.is_empty() {
                let _ = writeln!(d, "  missing ({}): {}", missing.len(), missing.join(", "));
            }
            if !unexpected.is_empty() {
                let hint = if unexpected.iter().any(|u| u.contains("/iteration ")) {
                    format!(" (this model's optimizer is '{}')", opt.keras_name())
                } else {
                    String::new()
                };
                let _ = writeln!(
                    d,
                    "  unexpected ({}){hint}: {}",
                    unexpected.len(),
                    unexpected.join(", ")
                );
            }
            if !wrong.is_empty() {
                let _ = writeln!(d, "  wrong ({}): {}", wrong.len(), wrong.join("; "));
            }
            return Err(Error::WeightsMismatch {
                file,
                details: d.trim_end().to_string(),
            });
        }
        let store_err = |e| Error::runtime("load_checkpoint", e);
        for (name, t) in weights.iter().filter_map(|(n, t)| Some((n, t.as_ref()?))) {
            self.store.set(name, t).map_err(store_err)?;
        }
        for (e, t) in slot_values
            .iter()
            .filter_map(|(e, t)| Some((e, t.as_ref()?)))
        {
            self.store.register(&e.store, &e.ty).map_err(store_err)?;
            self.store.set(&e.store, t).map_err(store_err)?;
        }
        if let (Some(lr), Some(c)) = (lr, self.train.compiled.as_mut()) {
            c.optimizer.learning_rate = LearningRate::Constant(lr);
        }
        self.train.iterations = iterations;
        self.train.rng_runs = rng_runs;
        self.train.epoch = epochs;
        Ok(CheckpointInfo {
            epoch: epochs as usize,
            iterations,
        })
    }
}
