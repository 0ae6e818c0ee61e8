//! The step builder: every program is built through one pipeline of explicit
//! stages, and a [`Purpose`] runs a contiguous range of them
//! ([`Purpose::stages`]):
//!
//! 1. [`StepStage::Forward`]: the traced model — predictions `pred/<o>`,
//!    added losses `added/<i>` and, in training mode, the state updates
//!    layers assign (`update/<state variable>`, role `state_update`);
//! 2. [`StepStage::Losses`]: target inputs, compiled losses `loss/<o>`,
//!    metrics `metric/<m>`, the total `loss` (compiled + added) and its
//!    compiled part `compiled_loss`;
//! 3. [`StepStage::Gradients`]: `grad/<v>` of the total loss for every
//!    trainable variable (state variables and frozen weights get none);
//! 4. [`StepStage::GradientHook`]: rewrites the gradients: in a
//!    data-parallel program (a communicator of more than one rank), first
//!    their `all_reduce_mean` over the ranks, then the optimiser's clipping;
//! 5. [`StepStage::Updates`]: the optimiser's `update/<v>` and
//!    `update/<optimizer state>` outputs, from the `lr` and `iteration` inputs.
//!
//! | purpose   | stages                          | forward mode |
//! |-----------|---------------------------------|--------------|
//! | train     | forward … updates               | training     |
//! | evaluate  | forward, losses                 | inference    |
//! | predict   | forward                         | inference    |
//! | gradients | forward … gradient hook         | training     |
//! | apply     | updates, from fed `grad/<v>`    | —            |
//!
//! `compute_gradients` returns the hook's output and `apply_gradients` feeds
//! gradients in its place, so a custom loop applies the hook exactly once per
//! optimiser step, as `train_on_batch` does.

use super::options::{Compiled, GradientHook, ProgramKey, Purpose};
use super::session::ProgramInfo;
use crate::backend;
use crate::error::{Error, Result};
use crate::model::{Model, Trace};
use crate::optimizers::{Clip, Optimizer};
use lossgraph_ir::names::{self, ITERATION_INPUT, LR_INPUT, RNG_STEP_INPUT, SHARD_WEIGHT_INPUT};
use lossgraph_ir::{nn, Builder, Graph, NodeId, Role, Tensor, TensorType};
use std::collections::HashMap;

/// A stage of the step pipeline, in pipeline order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepStage {
    /// The traced model (training or inference mode).
    Forward,
    /// Compiled losses, metrics and the total loss.
    Losses,
    /// Differentiation of the total loss.
    Gradients,
    /// Rewriting of the gradients (identity by default).
    GradientHook,
    /// Optimiser updates.
    Updates,
}

impl StepStage {
    /// The stage's name (`forward`, `losses`, `gradients`, `gradient_hook`, `updates`).
    pub fn name(self) -> &'static str {
        match self {
            StepStage::Forward => "forward",
            StepStage::Losses => "losses",
            StepStage::Gradients => "gradients",
            StepStage::GradientHook => "gradient_hook",
            StepStage::Updates => "updates",
        }
    }
}

impl Purpose {
    /// The first and last stage of the purpose's program (it runs every
    /// stage in between). `apply` starts at the updates, with the gradients
    /// fed in place of the hook's output.
    pub fn stages(self) -> (StepStage, StepStage) {
        match self {
            Purpose::Train => (StepStage::Forward, StepStage::Updates),
            Purpose::Evaluate => (StepStage::Forward, StepStage::Losses),
            Purpose::Predict => (StepStage::Forward, StepStage::Forward),
            Purpose::Gradients => (StepStage::Forward, StepStage::GradientHook),
            Purpose::Apply => (StepStage::Updates, StepStage::Updates),
        }
    }

    /// True when the purpose's program runs `stage`.
    pub fn runs(self, stage: StepStage) -> bool {
        let (first, last) = self.stages();
        first <= stage && stage <= last
    }

    /// True when the forward stage traces in training mode (dropout active,
    /// state updates emitted): the purposes that compute gradients.
    pub fn training(self) -> bool {
        self.runs(StepStage::Gradients)
    }
}

/// A step between stages: the graph so far and what the later stages need.
struct Step {
    purpose: Purpose,
    g: Graph,
    info: ProgramInfo,
    /// Trainable variables as (name, `param` node), in trainable-weight order.
    trainable: Vec<(String, NodeId)>,
    /// The total loss, once the losses stage ran.
    loss: Option<NodeId>,
    /// One gradient per trainable variable, in the same order, once the
    /// gradients stage ran (or fed, for `apply`).
    grads: Vec<NodeId>,
}

impl Step {
    fn err(&self, message: impl Into<String>) -> Error {
        Error::Compile {
            purpose: self.purpose.name().into(),
            message: message.into(),
        }
    }

    /// Stage 3: `grad/<v>` outputs of the total loss for every trainable
    /// variable. On more than one rank the differentiated loss is the total
    /// times the fed `shard_weight` (this rank's share of the global batch,
    /// see [`SHARD_WEIGHT_INPUT`]): a scale of the seed cotangent, free in
    /// the step, so that the mean over ranks is the global batch's gradient.
    fn gradients(&mut self, ranks: usize) -> Result<()> {
        let p = self.purpose.name();
        let mut loss = self
            .loss
            .ok_or_else(|| self.err("the gradients stage needs the losses stage"))?;
        if ranks > 1 {
            // A synchronized BatchNormalization's trace may have read it.
            let fed = self.g.input(SHARD_WEIGHT_INPUT);
            let b = Builder::from_graph(std::mem::take(&mut self.g));
            b.set_scope("");
            b.set_role(Role::Gradient);
            let w = match fed {
                Some(id) => b.tensor(id),
                None => b.input(SHARD_WEIGHT_INPUT, TensorType::scalar()),
            };
            loss = (b.tensor(loss) * &w).id();
            self.restore(b)?;
        }
        let ids: Vec<NodeId> = self.trainable.iter().map(|v| v.1).collect();
        backend::append_gradients(&mut self.g, loss, &ids, p)?;
        let mut grads = Vec::new();
        for (name, _) in &self.trainable {
            let id = self
                .g
                .output(&names::grad(name))
                .ok_or_else(|| self.err(format!("no gradient output for '{name}'")))?;
            grads.push(id);
        }
        self.grads = grads;
        Ok(())
    }

    /// Stage 4: rewrites `grads` (and the `grad/<v>` outputs) with the
    /// hook: on more than one rank, each gradient's `all_reduce_mean` (one
    /// external call per gradient, in place on its buffer); then the clipping.
    fn gradient_hook(&mut self, hook: GradientHook, ranks: usize) -> Result<()> {
        if ranks > 1 {
            let b = Builder::from_graph(std::mem::take(&mut self.g));
            b.set_scope("gradient_hook");
            b.set_role(Role::Gradient);
            let reduced: Vec<Tensor> = self
                .grads
                .iter()
                .map(|g| b.tensor(*g).all_reduce_mean())
                .collect();
            self.grads = reduced.iter().map(|t| t.id()).collect();
            for ((name, _), t) in self.trainable.iter().zip(&reduced) {
                b.output(&names::grad(name), t);
            }
            self.restore(b)?;
        }
        let clip = match hook {
            GradientHook::Identity => return Ok(()),
            GradientHook::Clip(c) => c,
        };
        let b = Builder::from_graph(std::mem::take(&mut self.g));
        b.set_scope("gradient_hook");
        b.set_role(Role::Gradient);
        let grads: Vec<Tensor> = self.grads.iter().map(|g| b.tensor(*g)).collect();
        let clipped: Vec<Tensor> = match clip {
            Clip::Value(c) => grads.iter().map(|g| nn::clip(g, -c, c)).collect(),
            // Keras's `clip_by_norm`: g·c / max(‖g‖, c), with ‖0‖ = 0.
            Clip::Norm(c) => grads
                .iter()
                .map(|g| (g * c) / nn::square(g).sum_all().sqrt().maximum(c))
                .collect(),
            // Keras's `clip_by_global_norm`: scale = c·min(1/‖G‖, 1/c).
            Clip::GlobalNorm(c) => {
                let mut total: Option<Tensor> = None;
                for g in &grads {
                    let s = nn::square(g).sum_all();
                    total = Some(match total.take() {
                        None => s,
                        Some(t) => t + s,
                    });
                }
                let Some(total) = total else {
                    return self.restore(b);
                };
                let scale = total.sqrt().recip().minimum(1.0 / c) * c;
                grads.iter().map(|g| g * &scale).collect()
            }
        };
        self.grads = clipped.iter().map(|t| t.id()).collect();
        for ((name, _), t) in self.trainable.iter().zip(&clipped) {
            b.output(&names::grad(name), t);
        }
        self.restore(b)
    }

    /// Takes the graph back from a builder made on it.
    fn restore(&mut self, b: Builder) -> Result<()> {
        self.g = b.finish().map_err(|e| self.err(e.to_string()))?;
        Ok(())
    }

    /// Stage 5: the optimiser's updates from `grads`. The `grad/<v>` outputs
    /// are dropped: the updates consume the gradients, and as outputs they
    /// would cost a store (and a live buffer) each; `compute_gradients` has
    /// its own program that returns them.
    fn updates(&mut self, optimizer: &Optimizer) -> Result<()> {
        if self.grads.len() != self.trainable.len() {
            return Err(self.err("the updates stage needs one gradient per trainable variable"));
        }
        let b = Builder::from_graph(std::mem::take(&mut self.g));
        b.set_scope("");
        let lr = b.input(LR_INPUT, TensorType::scalar());
        let it = b.input(ITERATION_INPUT, TensorType::scalar());
        let vars: Vec<_> = self
            .trainable
            .iter()
            .zip(&self.grads)
            .map(|((name, w), g)| (name.clone(), b.tensor(*w), b.tensor(*g)))
            .collect();
        optimizer.emit_updates(&b, &vars, &lr, &it)?;
        self.g = b.finish().map_err(|e| self.err(e.to_string()))?;
        for (name, _) in &self.trainable {
            self.g.remove_output(&names::grad(name));
        }
        Ok(())
    }

    /// Records what the session needs and runs the optimisation passes.
    fn finish(mut self, optimize: bool) -> Result<(Graph, ProgramInfo)> {
        self.info.needs_rng = self.g.input(RNG_STEP_INPUT).is_some();
        self.info.needs_shard_weight = self.g.input(SHARD_WEIGHT_INPUT).is_some();
        self.info.writes_vars = self
            .g
            .outputs()
            .iter()
            .any(|o| names::updated_variable(&o.0).is_some());
        let g = if optimize {
            backend::optimize(self.g, self.purpose.name())?
        } else {
            self.g
        };
        Ok((g, self.info))
    }
}

impl Model {
    /// Builds the graph for `purpose` and batch size `batch` (for dumps and custom engines).
    pub fn graph(&self, purpose: Purpose, batch: usize) -> Result<Graph> {
        Ok(self.build_graph(ProgramKey::new(purpose, batch))?.0)
    }

    /// [`graph`](Self::graph) before the optimisation passes (for IR dumps).
    pub fn graph_unoptimized(&self, purpose: Purpose, batch: usize) -> Result<Graph> {
        Ok(self
            .build_graph_with(ProgramKey::new(purpose, batch), false)?
            .0)
    }

    pub(super) fn build_graph(&self, key: ProgramKey) -> Result<(Graph, ProgramInfo)> {
        self.build_graph_with(key, true)
    }

    /// Runs the stages of `key.purpose` in order ([`Purpose::stages`]).
    pub(super) fn build_graph_with(
        &self,
        key: ProgramKey,
        optimize: bool,
    ) -> Result<(Graph, ProgramInfo)> {
        let ProgramKey {
            purpose,
            batch,
            weighted,
        } = key;
        let (first, _) = purpose.stages();
        let mut step = match first {
            StepStage::Forward => {
                let tr = self.trace(purpose.training(), batch)?;
                if purpose.runs(StepStage::Losses) {
                    self.losses_stage(tr, purpose, weighted)?
                } else {
                    self.forward_only(tr, purpose)?
                }
            }
            StepStage::Updates => self.fed_gradients(purpose)?,
            StepStage::Losses | StepStage::Gradients | StepStage::GradientHook => {
                return Err(Error::Compile {
                    purpose: purpose.name().into(),
                    message: format!("no step starts at the {} stage", first.name()),
                })
            }
        };
        let ranks = self.ranks();
        if purpose.runs(StepStage::Gradients) {
            step.gradients(ranks)?;
        }
        if purpose.runs(StepStage::GradientHook) {
            step.gradient_hook(self.compiled(purpose.name())?.gradient_hook, ranks)?;
        }
        if purpose.runs(StepStage::Updates) {
            step.updates(&self.compiled(purpose.name())?.optimizer)?;
        }
        step.finish(optimize)
    }

    /// A step that ends after the forward stage (predict): the predictions only.
    fn forward_only(&self, tr: Trace, purpose: Purpose) -> Result<Step> {
        let mut g = tr.finish()?;
        let added: Vec<String> = g
            .outputs()
            .iter()
            .filter(|o| names::is_added_loss(&o.0))
            .map(|o| o.0.clone())
            .collect();
        for a in added {
            g.remove_output(&a);
        }
        Ok(Step {
            purpose,
            g,
            info: ProgramInfo::default(),
            trainable: Vec::new(),
            loss: None,
            grads: Vec::new(),
        })
    }

    /// Stage 2 on a forward trace: compiled losses, metrics, `loss` and `compiled_loss`.
    /// `weighted`: each compiled loss is sample-weighted by a fed
    /// `sample_weight` input ([`Loss::emit_weighted`](crate::Loss::emit_weighted)).
    fn losses_stage(&self, tr: Trace, purpose: Purpose, weighted: bool) -> Result<Step> {
        let p = purpose.name();
        let cfg = self.compiled(p)?;
        let mut info = ProgramInfo::default();
        self.add_objective(&tr, cfg, weighted, &mut info);
        let trainable: Vec<(String, NodeId)> = tr
            .params
            .iter()
            .filter(|(n, _)| self.vars.iter().any(|v| v.path == *n && v.trainable))
            .map(|(n, t)| (n.clone(), t.id()))
            .collect();
        let mut g = tr.finish()?;
        let loss = backend::total_loss(&mut g, p)?;
        // The compiled part of the total, for the breakdown.
        info.logs.insert(
            1,
            (names::COMPILED_LOSS.into(), names::COMPILED_LOSS.into()),
        );
        add_compiled_total(&mut g, p)?;
        Ok(Step {
            purpose,
            g,
            info,
            trainable,
            loss: Some(loss),
            grads: Vec::new(),
        })
    }

    /// The start of `apply`: a `param` and a fed `grad/<v>` input per
    /// trainable variable, standing for the gradient hook's output.
    fn fed_gradients(&self, purpose: Purpose) -> Result<Step> {
        let b = Builder::new(format!("{}_{}", self.name, purpose.name()));
        let mut trainable = Vec::new();
        let mut grads = Vec::new();
        for v in self.vars.iter().filter(|v| v.trainable) {
            b.set_scope(v.layer.as_str());
            let w = b.param(&v.path, v.ty.clone());
            let g = b.input(&names::grad(&v.path), v.ty.clone());
            trainable.push((v.path.clone(), w.id()));
            grads.push(g.id());
        }
        b.set_scope("");
        let g = b.finish().map_err(|e| Error::Compile {
            purpose: purpose.name().into(),
            message: e.to_string(),
        })?;
        Ok(Step {
            purpose,
            g,
            info: ProgramInfo::default(),
            trainable,
            loss: None,
            grads,
        })
    }

    /// Appends target inputs (and, when `weighted`, sample-weight inputs
    /// `f32[batch]`), compiled losses (`loss/<o>`) and metrics to a trace.
    /// Metrics are unweighted, as Keras's `metrics` are.
    fn add_objective(&self, tr: &Trace, cfg: &Compiled, weighted: bool, info: &mut ProgramInfo) {
        let b = &tr.builder;
        let multi = tr.preds.len() > 1;
        let mut metric_logs = Vec::new();
        info.logs.push((names::LOSS.into(), names::LOSS.into()));
        for (i, (name, pred)) in tr.preds.iter().enumerate() {
            let Some(oc) = cfg.outputs.iter().find(|o| o.name == *name) else {
                b.record_error(lossgraph_ir::IrError::Graph {
                    graph: self.name.clone(),
                    message: format!("no loss configured for output '{name}'"),
                });
                continue;
            };
            let Some(loss) = &oc.loss else {
                continue;
            };
            b.set_scope("");
            let y = b.input(&self.target_feed_name(i), loss.target_type(pred.ty()));
            let w = weighted.then(|| {
                let batch = pred.shape().first().copied().unwrap_or(1);
                b.input(&self.sample_weight_feed_name(i), TensorType::f32([batch]))
            });
            b.set_scope(name.as_str());
            let role = Role::CompiledLoss {
                output: name.clone(),
                weight: oc.weight,
            };
            let l = b.with_role(role, || match &w {
                Some(w) => loss.emit_weighted(&y, pred, w),
                None => loss.emit(&y, pred),
            });
            let out = names::loss(name);
            b.output(&out, &l);
            if multi {
                info.logs.push((format!("{name}_loss"), out));
            }
            for m in &oc.metrics {
                let label = if multi {
                    format!("{name}_{}", m.name())
                } else {
                    m.name().to_string()
                };
                let resolved = m.resolve(loss, &y, pred);
                let v = b.with_role(
                    Role::Metric {
                        name: label.clone(),
                    },
                    || resolved.emit(&y, pred),
                );
                let out = names::metric(&label);
                b.output(&out, &v);
                metric_logs.push((label, out));
            }
        }
        b.set_scope("");
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (l, _) in &tr.losses {
            let mut label = format!("{}/{}", l.owner, l.reason.name());
            if let Some(v) = &l.variable {
                let short = v.rsplit('/').next().unwrap_or(v);
                if short != "kernel" && short != "bias" {
                    label = format!("{}/{}", v, l.reason.name());
                }
            }
            let k = seen.entry(label.clone()).or_insert(0);
            *k += 1;
            if *k > 1 {
                label = format!("{label}#{}", *k);
            }
            info.logs.push((label, l.output.clone()));
        }
        info.logs.extend(metric_logs);
    }
}

/// Adds the output `compiled_loss` = Σ weight·`loss/<o>` (for the breakdown).
fn add_compiled_total(g: &mut Graph, purpose: &str) -> Result<()> {
    let parts: Vec<_> = g
        .outputs()
        .iter()
        .filter(|o| names::is_output_loss(&o.0))
        .map(|o| o.1)
        .collect();
    let b = Builder::from_graph(std::mem::take(g));
    let mut total: Option<lossgraph_ir::Tensor> = None;
    for id in parts {
        let node = b.graph().node(id).clone();
        let Role::CompiledLoss { weight, .. } = node.role else {
            continue;
        };
        b.set_scope(node.scope.clone());
        b.set_role(node.role.clone());
        let t = b.tensor(id);
        let t = if weight == 1.0 { t } else { t * weight };
        total = Some(match total.take() {
            None => t,
            Some(a) => a + t,
        });
    }
    if let Some(t) = total {
        b.output(names::COMPILED_LOSS, &t);
    }
    *g = b.finish().map_err(|e| Error::Compile {
        purpose: purpose.into(),
        message: e.to_string(),
    })?;
    Ok(())
}
