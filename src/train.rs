//! Compiling and training: `compile`, `fit`, `evaluate`, `predict`,
//! `train_on_batch`, and the custom-training-loop API (`compute_gradients`,
//! `apply_gradients`).
//!
//! Each purpose (train, evaluate, predict, gradients, apply) is traced into
//! its own graph and compiled into a [`Program`] cached per batch size (a
//! final partial batch gets its own program). The model's host variables are
//! the truth between calls; a training program holds the newest values while
//! it runs and they are copied back when it stops being the live one.
//!
//! Reported numbers follow Keras 3: `loss` is the total (compiled plus every
//! added loss), per-output losses are unweighted, and `fit` reports epoch
//! means weighted by batch size.

use crate::backend;
use crate::callbacks::{Callback, Control};
use crate::error::{Error, Result};
use crate::initializers::Rng;
use crate::layer::RNG_STEP_INPUT;
use crate::losses::Loss;
use crate::metrics::Metric;
use crate::model::{Model, Trace};
use crate::optimizers::{Optimizer, ITERATION_INPUT, LR_INPUT};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lossgraph_ir::{Builder, DType, Data, Graph, HostTensor, Role, TensorType};
pub use lossgraph_runtime::Engine;
use lossgraph_runtime::{Feed, Program};
use std::borrow::Cow;
use std::collections::HashMap;

/// What a compiled program is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Forward, losses, gradients and optimiser updates.
    Train,
    /// Forward, losses and metrics.
    Evaluate,
    /// Forward only.
    Predict,
    /// Forward, losses and `grad/<param>` outputs, no update.
    Gradients,
    /// Optimiser updates from fed `grad/<param>` inputs.
    Apply,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Purpose::Train => "train",
            Purpose::Evaluate => "evaluate",
            Purpose::Predict => "predict",
            Purpose::Gradients => "gradients",
            Purpose::Apply => "apply",
        }
    }
}

/// `compile` settings: optimiser, a loss per output, loss weights, metrics, engine.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    optimizer: Optimizer,
    default_loss: Option<Loss>,
    losses: Vec<(String, Loss)>,
    loss_weights: Vec<(String, f32)>,
    metrics: Vec<Metric>,
    engine: Option<Engine>,
}

impl CompileOptions {
    /// Compile with `optimizer` and `loss` for every output.
    pub fn new(optimizer: Optimizer, loss: Loss) -> CompileOptions {
        CompileOptions {
            optimizer,
            default_loss: Some(loss),
            losses: Vec::new(),
            loss_weights: Vec::new(),
            metrics: Vec::new(),
            engine: None,
        }
    }

    /// Compile with `optimizer` and losses given per output ([`loss_for`](Self::loss_for)).
    pub fn with_optimizer(optimizer: Optimizer) -> CompileOptions {
        CompileOptions {
            optimizer,
            default_loss: None,
            losses: Vec::new(),
            loss_weights: Vec::new(),
            metrics: Vec::new(),
            engine: None,
        }
    }

    /// The loss of the output named `output`.
    pub fn loss_for(mut self, output: &str, loss: Loss) -> CompileOptions {
        self.losses.push((output.to_string(), loss));
        self
    }

    /// The weight of `output`'s loss in the total (default 1; added losses are never weighted).
    pub fn loss_weight(mut self, output: &str, weight: f32) -> CompileOptions {
        self.loss_weights.push((output.to_string(), weight));
        self
    }

    /// A metric computed on every output.
    pub fn metric(mut self, metric: Metric) -> CompileOptions {
        self.metrics.push(metric);
        self
    }

    /// Forces an execution engine. By default programs are JIT-compiled
    /// ([`Engine::Jit`]), falling back to the interpreter for a graph the JIT rejects.
    pub fn engine(mut self, engine: Engine) -> CompileOptions {
        self.engine = Some(engine);
        self
    }
}

#[derive(Clone, Debug)]
pub(crate) struct OutputConfig {
    pub name: String,
    pub loss: Loss,
    pub weight: f32,
}

#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    pub optimizer: Optimizer,
    pub outputs: Vec<OutputConfig>,
    pub metrics: Vec<Metric>,
    /// `None`: JIT with interpreter fallback.
    pub engine: Option<Engine>,
}

/// Output names of a compiled program and the labels they are logged under.
#[derive(Clone, Debug, Default)]
struct ProgramInfo {
    /// (label, output name), in log order: loss, per-output losses, added losses, metrics.
    logs: Vec<(String, String)>,
    needs_rng: bool,
}

struct Cached {
    program: Program,
    info: ProgramInfo,
    loaded: u64,
}

/// Training state kept in a [`Model`]: compile settings, cached programs, optimiser state.
#[derive(Default)]
pub(crate) struct TrainState {
    compiled: Option<Compiled>,
    programs: HashMap<(Purpose, usize), Cached>,
    opt_state: HashMap<String, HostTensor>,
    iterations: u64,
    version: u64,
    live: Option<(Purpose, usize)>,
}

impl TrainState {
    pub(crate) fn weights_changed_on_host(&mut self) {
        self.version += 1;
    }

    pub(crate) fn invalidate_programs(&mut self) {
        self.programs.clear();
        self.live = None;
    }
}

/// Named scalar results of a step, an evaluation or an epoch, in a stable order:
/// `loss`, `compiled_loss`, per-output `<output>_loss` (multi-output models),
/// one entry per added loss (`<layer>/<reason>`), then metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logs {
    entries: Vec<(String, f64)>,
}

impl Logs {
    /// The value logged under `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries.iter().find(|e| e.0 == name).map(|e| e.1)
    }

    /// All entries in order.
    pub fn entries(&self) -> &[(String, f64)] {
        &self.entries
    }

    /// The total loss.
    pub fn loss(&self) -> f64 {
        self.get("loss").unwrap_or(f64::NAN)
    }

    /// Sets (or adds) an entry.
    pub fn insert(&mut self, name: &str, v: f64) {
        self.set(name, v)
    }

    fn set(&mut self, name: &str, v: f64) {
        match self.entries.iter_mut().find(|e| e.0 == name) {
            Some(e) => e.1 = v,
            None => self.entries.push((name.to_string(), v)),
        }
    }

    /// A one-line rendering: `loss 0.8881 = compiled 0.7744 + dense_1/kernel_regularizer 0.0726`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut terms = Vec::new();
        let mut rest = Vec::new();
        for (k, v) in &self.entries {
            match k.as_str() {
                "loss" => s = format!("loss {v:.4}"),
                "compiled_loss" => terms.insert(0, format!("compiled {v:.4}")),
                _ if !k.starts_with("val_")
                    && (k.contains("_regularizer")
                        || k.ends_with("/add_loss")
                        || k.contains("/add_loss#")) =>
                {
                    terms.push(format!("{k} {v:.4}"))
                }
                _ => rest.push(format!("{k} {v:.4}")),
            }
        }
        if !terms.is_empty() {
            s.push_str(" = ");
            s.push_str(&terms.join(" + "));
        }
        for r in rest {
            s.push_str(" | ");
            s.push_str(&r);
        }
        s
    }
}

/// Per-epoch logs of a `fit` run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// One entry per completed epoch (validation values prefixed `val_`).
    pub epochs: Vec<Logs>,
}

impl History {
    /// The series logged under `name`, one value per epoch.
    pub fn series(&self, name: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|l| l.get(name)).collect()
    }
}

/// Held-out data for `fit`.
#[derive(Clone, Debug, Default)]
pub enum Validation {
    /// No validation.
    #[default]
    None,
    /// The last fraction of the samples (taken before shuffling, as in Keras).
    Split(f32),
    /// Explicit inputs and targets.
    Data(Vec<HostTensor>, Vec<HostTensor>),
}

/// `fit` settings. Defaults: 1 epoch, batch 32, shuffle with seed 0, progress bar on.
pub struct FitOptions {
    /// Number of passes over the data.
    pub epochs: usize,
    /// Samples per step (the last batch may be smaller).
    pub batch_size: usize,
    /// Validation data or split.
    pub validation: Validation,
    /// Shuffle the training samples every epoch.
    pub shuffle: bool,
    /// Seed of the shuffling.
    pub seed: u64,
    /// Show the progress bar.
    pub verbose: bool,
    /// Callbacks (early stopping, NaN termination, …).
    pub callbacks: Vec<Box<dyn Callback>>,
}

impl Default for FitOptions {
    fn default() -> FitOptions {
        FitOptions {
            epochs: 1,
            batch_size: 32,
            validation: Validation::None,
            shuffle: true,
            seed: 0,
            verbose: true,
            callbacks: Vec::new(),
        }
    }
}

impl FitOptions {
    /// Default options.
    pub fn new() -> FitOptions {
        FitOptions::default()
    }
    /// Sets the number of epochs.
    pub fn epochs(mut self, n: usize) -> FitOptions {
        self.epochs = n;
        self
    }
    /// Sets the batch size.
    pub fn batch_size(mut self, n: usize) -> FitOptions {
        self.batch_size = n;
        self
    }
    /// Sets the validation data or split.
    pub fn validation(mut self, v: Validation) -> FitOptions {
        self.validation = v;
        self
    }
    /// Enables or disables shuffling, with a seed.
    pub fn shuffle(mut self, yes: bool, seed: u64) -> FitOptions {
        self.shuffle = yes;
        self.seed = seed;
        self
    }
    /// Shows or hides the progress bar.
    pub fn verbose(mut self, yes: bool) -> FitOptions {
        self.verbose = yes;
        self
    }
    /// Adds a callback.
    pub fn callback(mut self, cb: impl Callback + 'static) -> FitOptions {
        self.callbacks.push(Box::new(cb));
        self
    }
}

/// Gradients of the total loss for one batch (custom training loops).
#[derive(Clone, Debug)]
pub struct Gradients {
    /// Losses and metrics of the batch at the current weights.
    pub logs: Logs,
    /// `(variable name, gradient)` for every trainable variable, in trainable-weight order.
    pub grads: Vec<(String, HostTensor)>,
}

/// Validation inputs and targets.
type ValData = (Vec<HostTensor>, Vec<HostTensor>);

/// Checked, dtype-converted data: per input and per output, `n` samples.
struct Prepared<'a> {
    x: Vec<Cow<'a, HostTensor>>,
    y: Vec<Cow<'a, HostTensor>>,
    n: usize,
}

fn per_sample(t: &HostTensor) -> usize {
    t.shape().iter().skip(1).product()
}

fn convert(t: &HostTensor, dtype: DType) -> HostTensor {
    let data = match (&t.data, dtype) {
        (Data::F32(v), DType::I32) => Data::I32(v.iter().map(|x| *x as i32).collect()),
        (Data::I32(v), DType::F32) => Data::F32(v.iter().map(|x| *x as f32).collect()),
        (d, _) => d.clone(),
    };
    HostTensor {
        ty: t.ty.with_dtype(dtype),
        data,
    }
}

fn rows(t: &HostTensor, start: usize, end: usize) -> Feed<'_> {
    // Callers pass ranges within the sample count checked by `prepare_data`.
    Feed::rows(t, start, end).unwrap_or(Feed::F32(&[]))
}

fn gather(t: &HostTensor, idx: &[usize]) -> HostTensor {
    let k = per_sample(t);
    let mut shape = t.shape().to_vec();
    if let Some(s) = shape.first_mut() {
        *s = idx.len();
    }
    let data = match &t.data {
        Data::F32(v) => Data::F32(
            idx.iter()
                .flat_map(|&i| v[i * k..(i + 1) * k].iter().copied())
                .collect(),
        ),
        Data::I32(v) => Data::I32(
            idx.iter()
                .flat_map(|&i| v[i * k..(i + 1) * k].iter().copied())
                .collect(),
        ),
    };
    HostTensor {
        ty: TensorType::new(t.ty.dtype, &shape),
        data,
    }
}

fn slice_samples(t: &HostTensor, start: usize, end: usize) -> HostTensor {
    gather(t, &(start..end).collect::<Vec<_>>())
}

impl Model {
    /// Configures training: optimiser, losses per output, loss weights,
    /// metrics and engine. Drops previously compiled programs and optimiser state.
    pub fn compile(&mut self, opts: CompileOptions) -> Result<()> {
        let names = self.output_names();
        for (n, _) in opts.losses.iter().map(|(n, l)| (n, l)).chain(
            opts.loss_weights
                .iter()
                .map(|(n, _)| (n, &Loss::MeanSquaredError)),
        ) {
            if !names.contains(n) {
                return Err(Error::config(
                    "compile",
                    format!(
                        "model '{}' has no output '{n}' (outputs: {names:?})",
                        self.name
                    ),
                ));
            }
        }
        let mut outputs = Vec::new();
        for name in &names {
            let loss = opts
                .losses
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, l)| l.clone())
                .or_else(|| opts.default_loss.clone())
                .ok_or_else(|| {
                    Error::config("compile", format!("no loss given for output '{name}'"))
                })?;
            let weight = opts
                .loss_weights
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, w)| *w)
                .unwrap_or(1.0);
            outputs.push(OutputConfig {
                name: name.clone(),
                loss,
                weight,
            });
        }
        self.train.invalidate_programs();
        self.train.opt_state.clear();
        self.train.iterations = 0;
        self.train.compiled = Some(Compiled {
            optimizer: opts.optimizer,
            outputs,
            metrics: opts.metrics,
            engine: opts.engine,
        });
        Ok(())
    }

    /// Number of optimiser steps taken since `compile`.
    pub fn iterations(&self) -> u64 {
        self.train.iterations
    }

    fn compiled(&self, action: &str) -> Result<&Compiled> {
        self.train
            .compiled
            .as_ref()
            .ok_or_else(|| Error::NotCompiled {
                model: self.name.clone(),
                action: action.into(),
            })
    }

    /// Appends target inputs, compiled losses (`loss/<o>`) and metrics to a trace.
    fn add_objective(&self, tr: &Trace, cfg: &Compiled, info: &mut ProgramInfo) {
        let b = &tr.builder;
        let multi = tr.preds.len() > 1;
        let mut metric_logs = Vec::new();
        info.logs.push(("loss".into(), "loss".into()));
        for (i, (name, pred)) in tr.preds.iter().enumerate() {
            let Some(oc) = cfg.outputs.iter().find(|o| o.name == *name) else {
                b.record_error(lossgraph_ir::IrError::Graph {
                    graph: self.name.clone(),
                    message: format!("no loss configured for output '{name}'"),
                });
                continue;
            };
            b.set_scope("");
            let y = b.input(&self.target_feed_name(i), oc.loss.target_type(pred.ty()));
            b.set_scope(name.as_str());
            let role = Role::CompiledLoss {
                output: name.clone(),
                weight: oc.weight,
            };
            let l = b.with_role(role, || oc.loss.emit(&y, pred));
            let out = lossgraph_ir::names::loss(name);
            b.output(&out, &l);
            if multi {
                info.logs.push((format!("{name}_loss"), out));
            }
            for m in &cfg.metrics {
                let label = if multi {
                    format!("{name}_{}", m.name())
                } else {
                    m.name().to_string()
                };
                let resolved = m.resolve(&oc.loss, &y, pred);
                let v = b.with_role(
                    Role::Metric {
                        name: label.clone(),
                    },
                    || resolved.emit(&y, pred),
                );
                let out = lossgraph_ir::names::metric(&label);
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

    /// Builds the graph for `purpose` and batch size `batch` (for dumps and custom engines).
    pub fn graph(&self, purpose: Purpose, batch: usize) -> Result<Graph> {
        Ok(self.build_graph(purpose, batch)?.0)
    }

    /// [`graph`](Self::graph) before the optimisation passes (for IR dumps).
    pub fn graph_unoptimized(&self, purpose: Purpose, batch: usize) -> Result<Graph> {
        Ok(self.build_graph_with(purpose, batch, false)?.0)
    }

    fn build_graph(&self, purpose: Purpose, batch: usize) -> Result<(Graph, ProgramInfo)> {
        self.build_graph_with(purpose, batch, true)
    }

    fn build_graph_with(
        &self,
        purpose: Purpose,
        batch: usize,
        optimize: bool,
    ) -> Result<(Graph, ProgramInfo)> {
        let finish = |g: Graph, p: &str| {
            if optimize {
                backend::optimize(g, p)
            } else {
                Ok(g)
            }
        };
        let p = purpose.name();
        let mut info = ProgramInfo::default();
        if purpose == Purpose::Apply {
            let cfg = self.compiled("apply_gradients")?;
            let b = Builder::new(format!("{}_apply", self.name));
            let mut vars = Vec::new();
            for v in self.vars.iter().filter(|v| v.trainable) {
                b.set_scope(v.layer.as_str());
                let w = b.param(&v.path, v.value.ty.clone());
                let g = b.input(&lossgraph_ir::names::grad(&v.path), v.value.ty.clone());
                vars.push((v.path.clone(), w, g));
            }
            b.set_scope("");
            let lr = b.input(LR_INPUT, TensorType::scalar());
            let it = b.input(ITERATION_INPUT, TensorType::scalar());
            cfg.optimizer.emit_updates(&b, &vars, &lr, &it)?;
            let g = b.finish().map_err(|e| Error::Compile {
                purpose: p.into(),
                message: e.to_string(),
            })?;
            return Ok((finish(g, p)?, info));
        }
        let training = purpose == Purpose::Train || purpose == Purpose::Gradients;
        let tr = self.trace(training, batch)?;
        if purpose != Purpose::Predict {
            let cfg = self.compiled(p)?;
            self.add_objective(&tr, cfg, &mut info);
            let ins: Vec<(String, lossgraph_ir::NodeId)> = tr
                .params
                .iter()
                .filter(|(n, _)| self.vars.iter().any(|v| v.path == *n && v.trainable))
                .map(|(n, t)| (n.clone(), t.id()))
                .collect();
            let mut g = tr.finish()?;
            let loss = backend::total_loss(&mut g, p)?;
            // The compiled part of the total, for the breakdown.
            info.logs
                .insert(1, ("compiled_loss".into(), "compiled_loss".into()));
            add_compiled_total(&mut g, p)?;
            if training {
                let ids: Vec<_> = ins.iter().map(|x| x.1).collect();
                backend::append_gradients(&mut g, loss, &ids, p)?;
            }
            if purpose == Purpose::Train {
                let cfg = self.compiled(p)?;
                let b = Builder::from_graph(g);
                let lr = b.input(LR_INPUT, TensorType::scalar());
                let it = b.input(ITERATION_INPUT, TensorType::scalar());
                let mut vars = Vec::new();
                for (name, id) in &ins {
                    let gid = b
                        .graph()
                        .output(&lossgraph_ir::names::grad(name))
                        .ok_or_else(|| Error::Compile {
                            purpose: p.into(),
                            message: format!("no gradient output for '{name}'"),
                        })?;
                    vars.push((name.clone(), b.tensor(*id), b.tensor(gid)));
                }
                cfg.optimizer.emit_updates(&b, &vars, &lr, &it)?;
                g = b.finish().map_err(|e| Error::Compile {
                    purpose: p.into(),
                    message: e.to_string(),
                })?;
                // A training step consumes its gradients in the updates; as
                // outputs they would cost a store (and a live buffer) each.
                // `compute_gradients` has its own program that returns them.
                for (name, _) in &ins {
                    g.remove_output(&lossgraph_ir::names::grad(name));
                }
            }
            info.needs_rng = g.input(RNG_STEP_INPUT).is_some();
            return Ok((finish(g, p)?, info));
        }
        let mut g = tr.finish()?;
        let added: Vec<String> = g
            .outputs()
            .iter()
            .filter(|o| lossgraph_ir::names::is_added_loss(&o.0))
            .map(|o| o.0.clone())
            .collect();
        for a in added {
            g.remove_output(&a);
        }
        info.needs_rng = g.input(RNG_STEP_INPUT).is_some();
        Ok((finish(g, p)?, info))
    }

    /// Makes sure a program exists for (purpose, batch) and holds the newest variables.
    fn prepare(&mut self, purpose: Purpose, batch: usize) -> Result<()> {
        let key = (purpose, batch);
        if !self.train.programs.contains_key(&key) {
            let engine = self.train.compiled.as_ref().and_then(|c| c.engine);
            let (g, info) = self.build_graph(purpose, batch)?;
            let program = match engine {
                Some(e) => Program::new(g, e),
                // Auto: native code when the JIT accepts the graph, else the interpreter.
                None => Program::new(g.clone(), Engine::Jit)
                    .or_else(|_| Program::new(g, Engine::Interpreter)),
            }
            .map_err(|e| Error::runtime(purpose.name(), e))?;
            self.train.programs.insert(
                key,
                Cached {
                    program,
                    info,
                    loaded: u64::MAX,
                },
            );
        }
        if let Some(live) = self.train.live {
            if live != key {
                self.pull_live();
            }
        }
        let version = self.train.version;
        let Some(c) = self.train.programs.get_mut(&key) else {
            return Err(Error::Compile {
                purpose: purpose.name().into(),
                message: "program cache lost an entry".into(),
            });
        };
        if c.loaded != version {
            for name in c.program.var_names() {
                let value = match self.vars.iter().find(|v| v.path == name) {
                    Some(v) => Cow::Borrowed(&v.value),
                    None => match self.train.opt_state.get(&name) {
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
                    .map_err(|e| Error::runtime(purpose.name(), e))?;
            }
            c.loaded = version;
        }
        Ok(())
    }

    /// Copies the variables of the live (training) program back to the host.
    fn pull_live(&mut self) {
        let Some(key) = self.train.live.take() else {
            return;
        };
        let Some(c) = self.train.programs.get(&key) else {
            return;
        };
        for name in c.program.var_names() {
            let Some(t) = c.program.var(&name) else {
                continue;
            };
            let host = t.to_host();
            match self.vars.iter_mut().find(|v| v.path == name) {
                Some(v) => v.value = host,
                None => {
                    self.train.opt_state.insert(name, host);
                }
            }
        }
    }

    /// Brings the host variables up to date (after training).
    pub(crate) fn sync_host(&mut self) {
        self.pull_live();
    }

    /// Runs a prepared program; `updates` marks programs that change variables.
    fn run_prepared(
        &mut self,
        purpose: Purpose,
        batch: usize,
        feeds: &[(String, Feed<'_>)],
    ) -> Result<Logs> {
        let key = (purpose, batch);
        let updates = matches!(purpose, Purpose::Train | Purpose::Apply);
        let lr = self
            .train
            .compiled
            .as_ref()
            .map(|c| c.optimizer.learning_rate.at(self.train.iterations))
            .unwrap_or(0.0);
        let it = [self.train.iterations as f32];
        let lr = [lr];
        let step = [self.train.iterations as i32];
        let Some(c) = self.train.programs.get_mut(&key) else {
            return Err(Error::Compile {
                purpose: purpose.name().into(),
                message: "program was not prepared".into(),
            });
        };
        let mut all: Vec<(&str, Feed<'_>)> = feeds.iter().map(|(n, f)| (n.as_str(), *f)).collect();
        if updates {
            all.push((LR_INPUT, Feed::F32(&lr)));
            all.push((ITERATION_INPUT, Feed::F32(&it)));
        }
        if c.info.needs_rng {
            all.push((RNG_STEP_INPUT, Feed::I32(&step)));
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
        if updates {
            self.train.iterations += 1;
            self.train.version += 1;
            if let Some(c) = self.train.programs.get_mut(&key) {
                c.loaded = self.train.version;
            }
            self.train.live = Some(key);
        }
        Ok(logs)
    }

    /// Checks data against the model and converts target dtypes.
    fn prepare_data<'a>(
        &self,
        x: &'a [HostTensor],
        y: Option<&'a [HostTensor]>,
    ) -> Result<Prepared<'a>> {
        if x.len() != self.inputs.len() {
            return Err(Error::data(
                "x",
                format!(
                    "model '{}' has {} input(s) {:?}, got {} array(s)",
                    self.name,
                    self.inputs.len(),
                    self.input_names(),
                    x.len()
                ),
            ));
        }
        let n = x
            .first()
            .and_then(|t| t.shape().first().copied())
            .unwrap_or(0);
        let mut xs = Vec::new();
        for (i, t) in x.iter().enumerate() {
            let want: usize = self.values[self.inputs[i].value].shape.iter().product();
            let name = self.input_feed_name(i);
            if t.shape().first() != Some(&n) || per_sample(t) != want {
                return Err(Error::data(
                    name,
                    format!(
                        "expected {n} samples of shape {:?}, got an array of shape {:?}",
                        self.values[self.inputs[i].value].shape,
                        t.shape()
                    ),
                ));
            }
            xs.push(if t.ty.dtype == DType::F32 {
                Cow::Borrowed(t)
            } else {
                Cow::Owned(convert(t, DType::F32))
            });
        }
        let mut ys = Vec::new();
        if let Some(y) = y {
            let cfg = self.compiled("using targets")?;
            if y.len() != self.outputs.len() {
                return Err(Error::data(
                    "y",
                    format!(
                        "model '{}' has {} output(s) {:?}, got {} target array(s)",
                        self.name,
                        self.outputs.len(),
                        self.output_names(),
                        y.len()
                    ),
                ));
            }
            for (i, t) in y.iter().enumerate() {
                let mut pshape = vec![1];
                pshape.extend_from_slice(&self.values[self.outputs[i].1].shape);
                let tty = cfg.outputs[i].loss.target_type(&TensorType::f32(&pshape));
                let want = tty.numel();
                if t.shape().first() != Some(&n) || per_sample(t) != want {
                    return Err(Error::data(
                        self.target_feed_name(i),
                        format!(
                            "expected {n} targets of {} element(s) each for output '{}' ({}), got an array of shape {:?}",
                            want,
                            self.outputs[i].0,
                            cfg.outputs[i].loss.name(),
                            t.shape()
                        ),
                    ));
                }
                ys.push(if t.ty.dtype == tty.dtype {
                    Cow::Borrowed(t)
                } else {
                    Cow::Owned(convert(t, tty.dtype))
                });
            }
        }
        if n == 0 {
            return Err(Error::data("x", "no samples"));
        }
        Ok(Prepared { x: xs, y: ys, n })
    }

    fn feeds<'a>(
        &self,
        data: &'a Prepared<'_>,
        start: usize,
        end: usize,
    ) -> Vec<(String, Feed<'a>)> {
        let mut f = Vec::new();
        for (i, t) in data.x.iter().enumerate() {
            f.push((self.input_feed_name(i), rows(t, start, end)));
        }
        for (i, t) in data.y.iter().enumerate() {
            f.push((self.target_feed_name(i), rows(t, start, end)));
        }
        f
    }

    /// One optimiser step on one batch (all samples of `x`/`y`). Returns the
    /// batch's losses at the weights *before* the update (Keras's `train_on_batch`).
    pub fn train_on_batch(&mut self, x: &[HostTensor], y: &[HostTensor]) -> Result<Logs> {
        self.compiled("train_on_batch")?;
        let data = self.prepare_data(x, Some(y))?;
        let n = data.n;
        self.prepare(Purpose::Train, n)?;
        let feeds = self.feeds(&data, 0, n);
        let logs = self.run_prepared(Purpose::Train, n, &feeds);
        drop(feeds);
        self.sync_host();
        logs
    }

    /// Losses and metrics over the data, batch-size-weighted means (regularisation included, as Keras).
    pub fn evaluate(
        &mut self,
        x: &[HostTensor],
        y: &[HostTensor],
        batch_size: usize,
    ) -> Result<Logs> {
        self.compiled("evaluate")?;
        let data = self.prepare_data(x, Some(y))?;
        self.evaluate_prepared(&data, batch_size)
    }

    fn evaluate_prepared(&mut self, data: &Prepared<'_>, batch_size: usize) -> Result<Logs> {
        let bs = batch_size.max(1);
        let mut acc = Accumulator::default();
        let mut start = 0;
        while start < data.n {
            let end = (start + bs).min(data.n);
            self.prepare(Purpose::Evaluate, end - start)?;
            let feeds = self.feeds(data, start, end);
            let logs = self.run_prepared(Purpose::Evaluate, end - start, &feeds)?;
            acc.add(&logs, end - start);
            start = end;
        }
        Ok(acc.mean())
    }

    /// Predictions for every output, each of shape `[N, ...]`.
    pub fn predict(&mut self, x: &[HostTensor], batch_size: usize) -> Result<Vec<HostTensor>> {
        let data = self.prepare_data(x, None)?;
        let bs = batch_size.max(1);
        let mut outs: Vec<Vec<f32>> = vec![Vec::new(); self.outputs.len()];
        let mut start = 0;
        while start < data.n {
            let end = (start + bs).min(data.n);
            self.prepare(Purpose::Predict, end - start)?;
            let feeds = self.feeds(&data, start, end);
            self.run_prepared(Purpose::Predict, end - start, &feeds)?;
            let c = &self.train.programs[&(Purpose::Predict, end - start)];
            for (i, (name, _)) in self.outputs.iter().enumerate() {
                let t = c
                    .program
                    .output(&lossgraph_ir::names::pred(name))
                    .ok_or_else(|| Error::Compile {
                        purpose: "predict".into(),
                        message: format!("missing output pred/{name}"),
                    })?;
                outs[i].extend_from_slice(t.as_f32().unwrap_or(&[]));
            }
            start = end;
        }
        Ok(self
            .outputs
            .iter()
            .zip(outs)
            .map(|((_, v), data)| {
                let mut shape =
                    vec![data.len() / self.values[*v].shape.iter().product::<usize>().max(1)];
                shape.extend_from_slice(&self.values[*v].shape);
                HostTensor {
                    ty: TensorType::f32(&shape),
                    data: Data::F32(data),
                }
            })
            .collect())
    }

    /// Gradients of the total loss (compiled + added) for one batch, at the current weights.
    pub fn compute_gradients(&mut self, x: &[HostTensor], y: &[HostTensor]) -> Result<Gradients> {
        self.compiled("compute_gradients")?;
        let data = self.prepare_data(x, Some(y))?;
        let n = data.n;
        self.prepare(Purpose::Gradients, n)?;
        let feeds = self.feeds(&data, 0, n);
        let logs = self.run_prepared(Purpose::Gradients, n, &feeds)?;
        let c = &self.train.programs[&(Purpose::Gradients, n)];
        let mut grads = Vec::new();
        for v in self.vars.iter().filter(|v| v.trainable) {
            let t = c
                .program
                .output(&lossgraph_ir::names::grad(&v.path))
                .ok_or_else(|| Error::Compile {
                    purpose: "gradients".into(),
                    message: format!("missing output grad/{}", v.path),
                })?;
            grads.push((v.path.clone(), t.to_host()));
        }
        Ok(Gradients { logs, grads })
    }

    /// Applies gradients with the compiled optimiser (one step; advances the iteration count).
    /// Every trainable variable needs a gradient of its own shape.
    pub fn apply_gradients(&mut self, grads: &[(String, HostTensor)]) -> Result<()> {
        self.compiled("apply_gradients")?;
        let mut feeds = Vec::new();
        for v in self.vars.iter().filter(|v| v.trainable) {
            let Some((_, g)) = grads.iter().find(|(n, _)| *n == v.path) else {
                return Err(Error::data(
                    lossgraph_ir::names::grad(&v.path),
                    "no gradient given for this trainable variable",
                ));
            };
            if g.ty != v.value.ty {
                return Err(Error::data(
                    lossgraph_ir::names::grad(&v.path),
                    format!("expected {}, got {}", v.value.ty, g.ty),
                ));
            }
            feeds.push((lossgraph_ir::names::grad(&v.path), Feed::of(g)));
        }
        self.prepare(Purpose::Apply, 0)?;
        self.run_prepared(Purpose::Apply, 0, &feeds)?;
        self.sync_host();
        Ok(())
    }

    /// Trains for `opts.epochs` epochs with a progress bar showing the running
    /// loss and its breakdown (compiled loss and each added loss). Returns the
    /// per-epoch history (validation values prefixed `val_`).
    pub fn fit(
        &mut self,
        x: &[HostTensor],
        y: &[HostTensor],
        mut opts: FitOptions,
    ) -> Result<History> {
        self.compiled("fit")?;
        let all = self.prepare_data(x, Some(y))?;
        let (train_x, train_y, val): (Vec<HostTensor>, Vec<HostTensor>, Option<ValData>) =
            match &opts.validation {
                Validation::None => (
                    all.x.iter().map(|c| c.clone().into_owned()).collect(),
                    all.y.iter().map(|c| c.clone().into_owned()).collect(),
                    None,
                ),
                Validation::Split(f) => {
                    if !(0.0..1.0).contains(f) {
                        return Err(Error::config(
                            "validation split",
                            format!("must be in [0, 1), got {f}"),
                        ));
                    }
                    let split = (all.n as f64 * (1.0 - *f as f64)) as usize;
                    let cut = |ts: &[Cow<'_, HostTensor>], a: usize, b: usize| -> Vec<HostTensor> {
                        ts.iter().map(|t| slice_samples(t, a, b)).collect()
                    };
                    (
                        cut(&all.x, 0, split),
                        cut(&all.y, 0, split),
                        (split < all.n)
                            .then(|| (cut(&all.x, split, all.n), cut(&all.y, split, all.n))),
                    )
                }
                Validation::Data(vx, vy) => (
                    all.x.iter().map(|c| c.clone().into_owned()).collect(),
                    all.y.iter().map(|c| c.clone().into_owned()).collect(),
                    Some((vx.clone(), vy.clone())),
                ),
            };
        drop(all);
        let n = train_x
            .first()
            .and_then(|t| t.shape().first().copied())
            .unwrap_or(0);
        if n == 0 {
            return Err(Error::data("x", "no training samples"));
        }
        let bs = opts.batch_size.max(1);
        let steps = n.div_ceil(bs);
        let mut rng = Rng::new(opts.seed);
        let mut history = History::default();
        for cb in opts.callbacks.iter_mut() {
            cb.on_train_begin();
        }
        let mut stop = false;
        for epoch in 0..opts.epochs {
            let (ex, ey) = if opts.shuffle {
                let perm = rng.permutation(n);
                (
                    train_x.iter().map(|t| gather(t, &perm)).collect::<Vec<_>>(),
                    train_y.iter().map(|t| gather(t, &perm)).collect::<Vec<_>>(),
                )
            } else {
                (train_x.clone(), train_y.clone())
            };
            let data = Prepared {
                x: ex.iter().map(Cow::Borrowed).collect(),
                y: ey.iter().map(Cow::Borrowed).collect(),
                n,
            };
            let pb = if opts.verbose {
                ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr())
            } else {
                ProgressBar::hidden()
            };
            if let Ok(style) = ProgressStyle::with_template(
                "Epoch {prefix} [{bar:25.cyan/blue}] {pos}/{len} {elapsed_precise} {msg}",
            ) {
                pb.set_style(style.progress_chars("=> "));
            }
            pb.set_prefix(format!("{}/{}", epoch + 1, opts.epochs));
            let mut acc = Accumulator::default();
            for s in 0..steps {
                let start = s * bs;
                let end = (start + bs).min(n);
                self.prepare(Purpose::Train, end - start)?;
                let feeds = self.feeds(&data, start, end);
                let logs = self.run_prepared(Purpose::Train, end - start, &feeds)?;
                acc.add(&logs, end - start);
                let running = acc.mean();
                pb.set_message(running.render());
                pb.inc(1);
                for cb in opts.callbacks.iter_mut() {
                    if cb.on_batch_end(s, &logs) == Control::Stop {
                        stop = true;
                    }
                }
                if stop {
                    break;
                }
            }
            let mut epoch_logs = acc.mean();
            if let Some((vx, vy)) = &val {
                let vdata = self.prepare_data(vx, Some(vy))?;
                let vdata = Prepared {
                    x: vdata
                        .x
                        .into_iter()
                        .map(|c| Cow::Owned(c.into_owned()))
                        .collect(),
                    y: vdata
                        .y
                        .into_iter()
                        .map(|c| Cow::Owned(c.into_owned()))
                        .collect(),
                    n: vdata.n,
                };
                let vlogs = self.evaluate_prepared(&vdata, bs)?;
                for (k, v) in vlogs.entries() {
                    epoch_logs.set(&format!("val_{k}"), *v);
                }
            }
            pb.finish_with_message(epoch_logs.render());
            for cb in opts.callbacks.iter_mut() {
                if cb.on_epoch_end(epoch, &epoch_logs) == Control::Stop {
                    stop = true;
                }
            }
            history.epochs.push(epoch_logs);
            if stop {
                break;
            }
        }
        self.sync_host();
        Ok(history)
    }
}

/// Adds the output `compiled_loss` = Σ weight·`loss/<o>` (for the breakdown).
fn add_compiled_total(g: &mut Graph, purpose: &str) -> Result<()> {
    let parts: Vec<_> = g
        .outputs()
        .iter()
        .filter(|o| lossgraph_ir::names::is_output_loss(&o.0))
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
        b.output("compiled_loss", &t);
    }
    *g = b.finish().map_err(|e| Error::Compile {
        purpose: purpose.into(),
        message: e.to_string(),
    })?;
    Ok(())
}

/// Batch-size-weighted running means of logs (Keras's `Mean` metrics).
#[derive(Default)]
struct Accumulator {
    sums: Vec<(String, f64)>,
    count: usize,
}

impl Accumulator {
    fn add(&mut self, logs: &Logs, n: usize) {
        for (k, v) in logs.entries() {
            match self.sums.iter_mut().find(|e| e.0 == *k) {
                Some(e) => e.1 += v * n as f64,
                None => self.sums.push((k.clone(), v * n as f64)),
            }
        }
        self.count += n;
    }

    fn mean(&self) -> Logs {
        let c = self.count.max(1) as f64;
        Logs {
            entries: self.sums.iter().map(|(k, v)| (k.clone(), v / c)).collect(),
        }
    }
}
