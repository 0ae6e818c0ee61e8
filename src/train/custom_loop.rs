//! The custom-training-loop API: `compute_gradients` returns the gradients
//! of one batch, `apply_gradients` applies (possibly edited) gradients with
//! the compiled optimiser.

use super::logs::Logs;
use super::options::{ProgramKey, Purpose};
use crate::error::{Error, Result};
use crate::model::Model;
use lossgraph_ir::{names, HostTensor};
use lossgraph_runtime::Feed;

/// Gradients of the total loss for one batch (custom training loops).
#[derive(Clone, Debug)]
pub struct Gradients {
    /// Losses and metrics of the batch at the current weights.
    pub logs: Logs,
    /// `(variable name, gradient)` for every trainable variable, in trainable-weight order.
    pub grads: Vec<(String, HostTensor)>,
    /// The training-mode predictions of the batch, in output order (what
    /// Keras's `model(x, training=True)` returns).
    pub outputs: Vec<HostTensor>,
}

impl Model {
    /// Gradients of the total loss (compiled + added) for one batch, at the
    /// current weights, after the gradient hook. Like a Keras training-mode
    /// call, it runs the layers' state updates ([`CallCtx::assign`](crate::CallCtx::assign)).
    pub fn compute_gradients(&mut self, x: &[HostTensor], y: &[HostTensor]) -> Result<Gradients> {
        self.compiled("compute_gradients")?;
        let data = self.prepare_data(x, Some(y))?;
        let n = data.n;
        let key = data.key(Purpose::Gradients, n);
        self.prepare(key)?;
        let feeds = self.feeds(&data, 0, n);
        let logs = self.run_prepared(key, &feeds)?;
        let mut grads = Vec::new();
        for v in self.vars.iter().filter(|v| v.trainable) {
            let t = self.train.output(key, &self.store, &names::grad(&v.path))?;
            grads.push((v.path.clone(), t));
        }
        let mut outputs = Vec::new();
        for (o, _) in &self.outputs {
            outputs.push(self.train.output(key, &self.store, &names::pred(o))?);
        }
        Ok(Gradients {
            logs,
            grads,
            outputs,
        })
    }

    /// Applies gradients with the compiled optimiser (one step; advances the
    /// iteration count). They enter the step in place of the gradient hook's
    /// output. Every trainable variable needs a gradient of its own shape;
    /// state variables take none.
    pub fn apply_gradients(&mut self, grads: &[(String, HostTensor)]) -> Result<()> {
        self.compiled("apply_gradients")?;
        let mut feeds = Vec::new();
        for v in self.vars.iter().filter(|v| v.trainable) {
            let Some((_, g)) = grads.iter().find(|(n, _)| *n == v.path) else {
                return Err(Error::data(
                    names::grad(&v.path),
                    "no gradient given for this trainable variable",
                ));
            };
            if g.ty != v.ty {
                return Err(Error::data(
                    names::grad(&v.path),
                    format!("expected {}, got {}", v.ty, g.ty),
                ));
            }
            feeds.push((names::grad(&v.path), Feed::of(g)));
        }
        let key = ProgramKey::new(Purpose::Apply, 0);
        self.prepare(key)?;
        self.run_prepared(key, &feeds)?;
        Ok(())
    }
}
