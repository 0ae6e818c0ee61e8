//! The opt-in per-step numeric check of `fit`
//! ([`FitOptions::check_numerics`](super::FitOptions::check_numerics)), as
//! `jax.debug_nans` or `tf.debugging.check_numerics` do: after every
//! training step, every logged loss term and every variable of the store
//! (weights, state, optimiser slots: a non-finite gradient reaches them
//! through the update) must be finite. When one is not, the step is undone
//! (the variables and counters from before it are put back) and the step is
//! replayed in the interpreter on the unoptimised training graph, whose
//! nodes carry the scope (layer) and role of the code that emitted them:
//! the first node in topological order holding a non-finite value is where
//! the value first went non-finite (its operands are all finite).
//!
//! Cost: a copy of every variable before each step and a scan after it;
//! off by default.

use super::logs::Logs;
use super::options::ProgramKey;
use crate::error::{Error, Result};
use crate::model::Model;
use lossgraph_ir::interp::interpret_with;
use lossgraph_ir::names::{ITERATION_INPUT, LR_INPUT, RNG_STEP_INPUT, SHARD_WEIGHT_INPUT};
use lossgraph_ir::{Data, Graph, HostTensor, Op};
use lossgraph_runtime::Feed;
use std::collections::HashMap;

/// The model's training state before a step: every variable and the counters.
pub(super) struct PreStep {
    vars: Vec<(String, HostTensor)>,
    iterations: u64,
    rng_runs: u64,
    shard_weight: f32,
}

/// Where a step sits in `fit`, for the report.
#[derive(Clone, Copy, Debug)]
pub(super) struct StepPlace {
    /// Steps run by this `fit` before this one.
    pub step: u64,
    pub epoch: usize,
    pub batch: usize,
}

/// The first non-finite element of `t` (flat index and value), if any.
fn first_non_finite(t: &HostTensor) -> Option<(usize, f32)> {
    match &t.data {
        Data::F32(v) => v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i])),
        Data::I32(_) => None,
    }
}

/// `flat` as a multi-index of `shape` (`[3, 1]`).
fn multi_index(shape: &[usize], mut flat: usize) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

fn host_of(feed: &Feed<'_>, shape: &[usize]) -> Option<HostTensor> {
    match feed {
        Feed::F32(v) => HostTensor::f32(shape, v.to_vec()),
        Feed::I32(v) => HostTensor::i32(shape, v.to_vec()),
    }
}

impl Model {
    /// Runs the training step `key` on `feeds`, checked as the module docs
    /// say when `place` is given.
    pub(super) fn run_train_step(
        &mut self,
        key: ProgramKey,
        feeds: &[(String, Feed<'_>)],
        place: Option<StepPlace>,
    ) -> Result<Logs> {
        let Some(place) = place else {
            return self.run_prepared(key, feeds);
        };
        let pre = self.pre_step();
        let logs = self.run_prepared(key, feeds)?;
        self.check_step(key, feeds, &logs, pre, place)?;
        Ok(logs)
    }

    /// Copies every variable of the store and the step counters.
    pub(super) fn pre_step(&self) -> PreStep {
        let vars = self
            .store
            .names()
            .filter_map(|n| Some((n.to_string(), self.store.read(n)?)))
            .collect();
        PreStep {
            vars,
            iterations: self.train.iterations,
            rng_runs: self.train.rng_runs,
            shard_weight: self.train.shard_weight.unwrap_or(1.0),
        }
    }

    /// After the step `key` ran on `feeds` from `pre` and logged `logs`:
    /// `Ok` when every loss term and variable is finite; otherwise puts
    /// `pre` back and returns [`Error::NonFinite`] naming the step, the
    /// non-finite loss terms and the first non-finite node.
    pub(super) fn check_step(
        &mut self,
        key: ProgramKey,
        feeds: &[(String, Feed<'_>)],
        logs: &Logs,
        pre: PreStep,
        place: StepPlace,
    ) -> Result<()> {
        let bad_logs: Vec<String> = logs
            .entries()
            .iter()
            .filter(|(_, v)| !v.is_finite())
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        let bad_var = self.store.names().find(|n| {
            self.store.get(n).is_some_and(|t| match t.data {
                Feed::F32(v) => v.iter().any(|x| !x.is_finite()),
                Feed::I32(_) => false,
            })
        });
        if bad_logs.is_empty() && bad_var.is_none() {
            return Ok(());
        }
        let after = bad_var.map(str::to_string);
        for (name, value) in &pre.vars {
            self.store
                .set(name, value)
                .map_err(|e| Error::runtime("check_numerics", e))?;
        }
        self.train.iterations = pre.iterations;
        self.train.rng_runs = pre.rng_runs;
        let mut message = format!(
            "training step {} (epoch {}, batch {}) produced non-finite values; the \
             variables are those from before the step",
            place.step + 1,
            place.epoch + 1,
            place.batch + 1
        );
        if bad_logs.is_empty() {
            message.push_str("\n  every loss term is finite");
        } else {
            message.push_str(&format!("\n  loss terms: {}", bad_logs.join(", ")));
        }
        if let Some(v) = after {
            message.push_str(&format!("\n  after the step, variable '{v}' is not finite"));
        }
        let (g, _) = self.build_graph_with(key, false)?;
        message.push_str(&format!(
            "\n  {}",
            self.first_non_finite_node(&g, feeds, &pre)?
        ));
        Err(Error::NonFinite { message })
    }

    /// Replays the step graph `g` in the interpreter and names its first
    /// non-finite node.
    fn first_non_finite_node(
        &self,
        g: &Graph,
        feeds: &[(String, Feed<'_>)],
        pre: &PreStep,
    ) -> Result<String> {
        let lr = self
            .train
            .compiled
            .as_ref()
            .map(|c| c.optimizer.learning_rate.at(pre.iterations))
            .unwrap_or(0.0);
        let mut values: HashMap<String, HostTensor> = HashMap::new();
        for (name, id) in g.inputs() {
            let shape = &g.node(id).ty.shape;
            let value = match name.as_str() {
                LR_INPUT => HostTensor::f32(&[], vec![lr]),
                ITERATION_INPUT => HostTensor::f32(&[], vec![pre.iterations as f32]),
                RNG_STEP_INPUT => HostTensor::i32(&[], vec![pre.rng_runs as i32]),
                SHARD_WEIGHT_INPUT => HostTensor::f32(&[], vec![pre.shard_weight]),
                _ => feeds
                    .iter()
                    .find(|f| f.0 == name)
                    .and_then(|f| host_of(&f.1, shape)),
            };
            let value = value.ok_or_else(|| Error::Compile {
                purpose: "check_numerics".into(),
                message: format!("no value of shape {shape:?} for input '{name}'"),
            })?;
            values.insert(name, value);
        }
        for (name, _) in g.params() {
            if let Some(v) = pre.vars.iter().find(|v| v.0 == name) {
                values.insert(name, v.1.clone());
            }
        }
        let want: Vec<_> = g.outputs().iter().map(|o| o.1).collect();
        let computed = interpret_with(g, &values, &want).map_err(|e| Error::Compile {
            purpose: "check_numerics".into(),
            message: format!("replaying the step in the interpreter: {e}"),
        })?;
        let order = g.topo_order().map_err(|id| Error::Compile {
            purpose: "check_numerics".into(),
            message: format!("the training graph has a cycle through %{}", id.index()),
        })?;
        for id in order {
            let Some((i, v)) = computed.get(&id).and_then(first_non_finite) else {
                continue;
            };
            let node = g.node(id);
            let at = multi_index(&node.ty.shape, i);
            let layer = if node.scope.is_empty() {
                "the model (no layer)".to_string()
            } else {
                format!("layer '{}'", node.scope)
            };
            let what = match &node.op {
                Op::Param { name } => format!("variable '{name}' holds {v} at {at:?}"),
                Op::Input { name } => format!("input '{name}' holds {v} at {at:?}"),
                op => format!(
                    "node %{} ({}) is {v} at {at:?} of {}",
                    id.index(),
                    op.name(),
                    node.ty
                ),
            };
            return Ok(format!(
                "first non-finite value: {what}, in {layer}, role {}",
                node.role
            ));
        }
        Ok(
            "the interpreter's replay of the step is finite everywhere (the compiled \
            step and the interpreter differ: please report this)"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_index_is_row_major() {
        assert_eq!(multi_index(&[2, 3], 5), vec![1, 2]);
        assert_eq!(multi_index(&[2, 3, 4], 13), vec![1, 0, 1]);
        assert_eq!(multi_index(&[], 0), Vec::<usize>::new());
    }
}
