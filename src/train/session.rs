//! The program cache and the variables' residence: a compiled [`Program`] per
//! (purpose, batch size), the optimiser state, and which program holds the
//! newest variable values.
//!
//! The model's host variables are the truth between calls; a program that
//! updates variables (train, apply) holds the newest values while it is the
//! *live* one, and they are copied back ([`TrainState::pull_live`]) when
//! another program is loaded or the host needs them. This module works on
//! the variable list only and knows nothing of the model.

use super::engine::{compile_program, InterpreterFallback};
use super::logs::Logs;
use super::options::{Compiled, Purpose};
use crate::error::{Error, Result};
use crate::layer::Variable;
use lossgraph_ir::names::{ITERATION_INPUT, LR_INPUT, RNG_STEP_INPUT};
use lossgraph_ir::{Graph, HostTensor, TensorType};
use lossgraph_runtime::{Engine, Feed, Program};
use std::borrow::Cow;
use std::collections::HashMap;

/// Output names of a compiled program and the labels they are logged under.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProgramInfo {
    /// (label, output name), in log order: loss, per-output losses, added losses, metrics.
    pub logs: Vec<(String, String)>,
    /// The graph reads the `rng_step` input.
    pub needs_rng: bool,
    /// The graph has `update/<variable>` outputs (optimiser or state updates).
    pub writes_vars: bool,
}

struct Cached {
    program: Program,
    info: ProgramInfo,
    /// The `version` whose variable values the program holds (`u64::MAX`: none yet).
    loaded: u64,
}

/// Training state kept in a [`Model`](crate::Model): compile settings, cached
/// programs, optimiser state.
///
/// Invariant: at most one program (`live`) holds values newer than the host
/// variables; `version` counts changes of the variable values.
#[derive(Default)]
pub(crate) struct TrainState {
    pub(super) compiled: Option<Compiled>,
    programs: HashMap<(Purpose, usize), Cached>,
    opt_state: HashMap<String, HostTensor>,
    pub(super) iterations: u64,
    /// Runs that read the `rng_step` stream so far: the value fed next, so
    /// every train step, evaluate and predict draws fresh noise. Not reset
    /// by `compile` (a model's noise sequence depends only on its seed and
    /// the runs made).
    rng_runs: u64,
    version: u64,
    live: Option<(Purpose, usize)>,
    fallbacks: Vec<InterpreterFallback>,
}

impl TrainState {
    pub(crate) fn weights_changed_on_host(&mut self) {
        self.version += 1;
    }

    pub(crate) fn invalidate_programs(&mut self) {
        self.programs.clear();
        self.fallbacks.clear();
        self.live = None;
    }

    /// Installs new compile settings: drops programs and optimiser state.
    pub(super) fn recompile(&mut self, compiled: Compiled) {
        self.invalidate_programs();
        self.opt_state.clear();
        self.iterations = 0;
        self.compiled = Some(compiled);
    }

    /// True when a program for `key` is cached.
    pub(super) fn has_program(&self, key: (Purpose, usize)) -> bool {
        self.programs.contains_key(&key)
    }

    /// Compiles `g` for `key` under the compiled engine policy (the JIT when
    /// not compiled) and caches it, recording an interpreter fallback.
    pub(super) fn insert_program(
        &mut self,
        key: (Purpose, usize),
        g: Graph,
        info: ProgramInfo,
    ) -> Result<()> {
        let policy = self.compiled.as_ref().map(|c| c.engine).unwrap_or_default();
        let (program, fallback) =
            compile_program(g, key.0, key.1, policy, |g| Program::new(g, Engine::Jit))?;
        self.fallbacks.extend(fallback);
        self.programs.insert(
            key,
            Cached {
                program,
                info,
                loaded: u64::MAX,
            },
        );
        Ok(())
    }

    /// The interpreter fallbacks of the cached programs, in compile order.
    pub(crate) fn fallbacks(&self) -> &[InterpreterFallback] {
        &self.fallbacks
    }

    /// Makes the cached program for `key` hold the newest variables.
    pub(super) fn load(&mut self, key: (Purpose, usize), vars: &mut [Variable]) -> Result<()> {
        if let Some(live) = self.live {
            if live != key {
                self.pull_live(vars);
            }
        }
        let version = self.version;
        let Some(c) = self.programs.get_mut(&key) else {
            return Err(Error::Compile {
                purpose: key.0.name().into(),
                message: "program cache lost an entry".into(),
            });
        };
        if c.loaded != version {
            for name in c.program.var_names() {
                let value = match vars.iter().find(|v| v.path == name) {
                    Some(v) => Cow::Borrowed(&v.value),
                    None => match self.opt_state.get(&name) {
                        Some(s) => Cow::Borrowed(s),
                        None => {
                            let ty = c
                                .program
                                .var(&name)
                                .map(|t| t.ty.clone())
                                .unwrap_or_else(TensorType::scalar);
                            Cow::Owned(HostTensor::zeros(&ty))
                        }
                    },
                };
                c.program
                    .set_var(&name, &value)
                    .map_err(|e| Error::runtime(key.0.name(), e))?;
            }
            c.loaded = version;
        }
        Ok(())
    }

    /// Copies the variables of the live (training) program back to the host.
    pub(crate) fn pull_live(&mut self, vars: &mut [Variable]) {
        let Some(key) = self.live.take() else {
            return;
        };
        let Some(c) = self.programs.get(&key) else {
            return;
        };
        for name in c.program.var_names() {
            let Some(t) = c.program.var(&name) else {
                continue;
            };
            let host = t.to_host();
            match vars.iter_mut().find(|v| v.path == name) {
                Some(v) => v.value = host,
                None => {
                    self.opt_state.insert(name, host);
                }
            }
        }
    }

    /// Runs the loaded program for `key` with `feeds` plus the per-step inputs
    /// (`lr`, `iteration` for optimiser steps; `rng_step`). A program that
    /// writes variables becomes the live one. Returns the logged scalars.
    pub(super) fn run(
        &mut self,
        key: (Purpose, usize),
        feeds: &[(String, Feed<'_>)],
    ) -> Result<Logs> {
        let purpose = key.0;
        let optimizer_step = matches!(purpose, Purpose::Train | Purpose::Apply);
        let lr = self
            .compiled
            .as_ref()
            .map(|c| c.optimizer.learning_rate.at(self.iterations))
            .unwrap_or(0.0);
        let it = [self.iterations as f32];
        let lr = [lr];
        let step = [self.rng_runs as i32];
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
        c.program
            .run(&all)
            .map_err(|e| Error::runtime(purpose.name(), e))?;
        let mut logs = Logs::default();
        for (label, out) in &c.info.logs {
            if let Some(v) = c.program.output(out).and_then(|t| t.item()) {
                logs.set(label, v);
            }
        }
        if optimizer_step {
            self.iterations += 1;
        }
        if c.info.writes_vars {
            self.version += 1;
            c.loaded = self.version;
            self.live = Some(key);
        }
        Ok(logs)
    }

    /// The output `name` of the cached program for `key` (after a run).
    pub(super) fn output(&self, key: (Purpose, usize), name: &str) -> Result<HostTensor> {
        self.programs
            .get(&key)
            .and_then(|c| c.program.output(name))
            .map(|t| t.to_host())
            .ok_or_else(|| Error::Compile {
                purpose: key.0.name().into(),
                message: format!("missing output {name}"),
            })
    }
}
