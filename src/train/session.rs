//! The program cache: a compiled [`Program`] per [`ProgramKey`] (purpose,
//! batch size, sample-weighted or not),
//! every one of them on the model's one [`VariableStore`].
//!
//! Invariant: every cached program was made with the model's store
//! ([`Program::with_store`]) and runs against it, so all programs see the
//! same variable values and switching between them (train, evaluate,
//! predict, gradients, apply; any batch size) copies nothing. A training
//! program registers its optimiser slots in the store when it is compiled
//! (zero-filled). This module works on the store and the variable list only
//! and knows nothing of the model.

use super::engine::{compile_program, InterpreterFallback};
use super::logs::Logs;
use super::options::{Compiled, ProgramKey, Purpose};
use crate::error::{Error, Result};
use crate::layer::Variable;
use lossgraph_ir::names::{ITERATION_INPUT, LR_INPUT, RNG_STEP_INPUT, SHARD_WEIGHT_INPUT};
use lossgraph_ir::{Graph, HostTensor};
use lossgraph_runtime::{Feed, JitOptions, Program, VariableStore};
use std::collections::HashMap;

/// Output names of a compiled program and the labels they are logged under.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProgramInfo {
    /// (label, output name), in log order: loss, per-output losses, added losses, metrics.
    pub logs: Vec<(String, String)>,
    /// The graph reads the `rng_step` input.
    pub needs_rng: bool,
    /// The graph reads the `shard_weight` input (a data-parallel step).
    pub needs_shard_weight: bool,
    /// The graph has `update/<variable>` outputs (optimiser or state updates).
    pub writes_vars: bool,
}

struct Cached {
    program: Program,
    info: ProgramInfo,
}

/// Training state kept in a [`Model`](crate::Model): compile settings and
/// cached programs (the variables, optimiser slots included, are in the
/// model's store).
#[derive(Default)]
pub(crate) struct TrainState {
    pub(super) compiled: Option<Compiled>,
    programs: HashMap<ProgramKey, Cached>,
    pub(super) iterations: u64,
    /// Runs that read the `rng_step` stream so far: the value fed next, so
    /// every train step, evaluate and predict draws fresh noise. Not reset
    /// by `compile` (a model's noise sequence depends only on its seed and
    /// the runs made).
    pub(super) rng_runs: u64,
    /// Epochs completed by `fit` since `compile` (saved in checkpoints).
    pub(super) epoch: u64,
    fallbacks: Vec<InterpreterFallback>,
    /// The `shard_weight` fed to data-parallel steps: set by `fit` per
    /// step (this rank's share of the global batch); `None` feeds 1 (every
    /// rank's batch counts equally, as in `train_on_batch` on each rank).
    pub(super) shard_weight: Option<f32>,
}

impl TrainState {
    pub(crate) fn invalidate_programs(&mut self) {
        self.programs.clear();
        self.fallbacks.clear();
    }

    /// Installs new compile settings: drops programs and the optimiser state
    /// (every slot of `store` that is not one of `vars`).
    pub(super) fn recompile(
        &mut self,
        compiled: Compiled,
        store: &mut VariableStore,
        vars: &[Variable],
    ) -> Result<()> {
        self.invalidate_programs();
        store
            .retain(|name| vars.iter().any(|v| v.path == name))
            .map_err(|e| Error::runtime("compile", e))?;
        self.iterations = 0;
        self.epoch = 0;
        self.compiled = Some(compiled);
        Ok(())
    }

    /// True when a program for `key` is cached.
    pub(super) fn has_program(&self, key: ProgramKey) -> bool {
        self.programs.contains_key(&key)
    }

    /// Compiles `g` for `key` on `store` under the compiled engine policy
    /// (the JIT when not compiled) and caches it, recording an interpreter
    /// fallback.
    pub(super) fn insert_program(
        &mut self,
        key: ProgramKey,
        g: Graph,
        info: ProgramInfo,
        store: &mut VariableStore,
    ) -> Result<()> {
        let policy = self.compiled.as_ref().map(|c| c.engine).unwrap_or_default();
        let comm = self
            .compiled
            .as_ref()
            .map(|c| c.distributed.comm.clone())
            .unwrap_or_else(|| std::sync::Arc::new(lossgraph_runtime::SingleProcess));
        let opts = JitOptions::default();
        let (program, fallback) = compile_program(g, key.purpose, key.batch, policy, |g, e| {
            Program::with_store_on(g, e, &opts, store, comm.clone())
        })?;
        self.fallbacks.extend(fallback);
        self.programs.insert(key, Cached { program, info });
        Ok(())
    }

    /// The interpreter fallbacks of the cached programs, in compile order.
    pub(crate) fn fallbacks(&self) -> &[InterpreterFallback] {
        &self.fallbacks
    }

    /// Runs the cached program for `key` on `store` with `feeds` plus the
    /// per-step inputs (`lr`, `iteration` for optimiser steps; `rng_step`).
    /// Returns the logged scalars.
    pub(super) fn run(
        &mut self,
        key: ProgramKey,
        store: &mut VariableStore,
        feeds: &[(String, Feed<'_>)],
    ) -> Result<Logs> {
        let purpose = key.purpose;
        let optimizer_step = matches!(purpose, Purpose::Train | Purpose::Apply);
        let lr = self
            .compiled
            .as_ref()
            .map(|c| c.optimizer.learning_rate.at(self.iterations))
            .unwrap_or(0.0);
        let it = [self.iterations as f32];
        let lr = [lr];
        let step = [self.rng_runs as i32];
        let shard_weight = [self.shard_weight.unwrap_or(1.0)];
        let Some(c) = self.programs.get_mut(&key) else {
            return Err(Error::Compile {
                purpose: purpose.name().into(),
                message: "program was not prepared".into(),
            });
        };
        let mut all: Vec<(&str, Feed<'_>)> = feeds.iter().map(|(n, f)| (n.as_str(), *f)).collect();
        if optimizer_step {
            all.push((LR_INPUT, Feed::F32(&lr)));
            all.push((ITERATION_INPUT, Feed::F32(&it)));
        }
        if c.info.needs_rng {
            all.push((RNG_STEP_INPUT, Feed::I32(&step)));
            self.rng_runs += 1;
        }
        if c.info.needs_shard_weight {
            all.push((SHARD_WEIGHT_INPUT, Feed::F32(&shard_weight)));
        }
        c.program
            .run_with(store, &all)
            .map_err(|e| Error::runtime(purpose.name(), e))?;
        let mut logs = Logs::default();
        for (label, out) in &c.info.logs {
            if let Some(v) = c.program.output_with(store, out).and_then(|t| t.item()) {
                logs.set(label, v);
            }
        }
        if optimizer_step {
            self.iterations += 1;
        }
        Ok(logs)
    }

    /// The output `name` of the cached program for `key` (after a run on `store`).
    pub(super) fn output(
        &self,
        key: ProgramKey,
        store: &VariableStore,
        name: &str,
    ) -> Result<HostTensor> {
        self.programs
            .get(&key)
            .and_then(|c| c.program.output_with(store, name))
            .map(|t| t.to_host())
            .ok_or_else(|| Error::Compile {
                purpose: key.purpose.name().into(),
                message: format!("missing output {name}"),
            })
    }
}
