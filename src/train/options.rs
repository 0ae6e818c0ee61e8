//! Settings: what a program is for ([`Purpose`]), `compile` settings
//! ([`CompileOptions`], resolved per output into [`Compiled`]) and `fit`
//! settings ([`FitOptions`], [`Validation`]).

use super::engine::EnginePolicy;
use crate::callbacks::{Callback, Verbosity};
use crate::error::{Error, Result};
use crate::losses::Loss;
use crate::metrics::Metric;
use crate::optimizers::{Clip, Optimizer};
use lossgraph_ir::HostTensor;
pub use lossgraph_runtime::Engine;
use lossgraph_runtime::{Communicator, SingleProcess};
use std::sync::Arc;
use std::time::Duration;

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
    /// The purpose's name (`train`, …), used in graph names and errors.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Train => "train",
            Purpose::Evaluate => "evaluate",
            Purpose::Predict => "predict",
            Purpose::Gradients => "gradients",
            Purpose::Apply => "apply",
        }
    }
}

/// What identifies a compiled program in a model's cache: its purpose, its
/// batch size and whether its compiled losses are sample-weighted (a
/// program with `sample_weight` inputs, made when `fit`, `evaluate` or
/// `train_on_batch` is given sample or class weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ProgramKey {
    pub purpose: Purpose,
    pub batch: usize,
    pub weighted: bool,
}

impl ProgramKey {
    /// The unweighted program of `purpose` at `batch`.
    pub fn new(purpose: Purpose, batch: usize) -> ProgramKey {
        ProgramKey {
            purpose,
            batch,
            weighted: false,
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
    output_metrics: Vec<(String, Metric)>,
    engine: EnginePolicy,
    distributed: Distributed,
}

/// How a model trains data-parallel: the ranks it reduces across and the
/// step watchdog. The default is one process.
#[derive(Clone, Debug)]
pub struct Distributed {
    /// The communicator whose ranks average their gradients in every step.
    pub comm: Arc<dyn Communicator>,
    /// `fit` aborts the whole job (`Communicator::abort`) when one training
    /// step, collectives included, takes longer than this: a rank stalled
    /// or died and the others wait in the all-reduce. `None`: no watchdog.
    pub watchdog: Option<Duration>,
}

impl Default for Distributed {
    fn default() -> Distributed {
        Distributed {
            comm: Arc::new(SingleProcess),
            watchdog: None,
        }
    }
}

/// Default step watchdog of a multi-rank run: generous (a step includes
/// waiting for the slowest rank, and the first step of a batch size the
/// slowest rank's JIT compile), yet seconds, not the forever of a stalled
/// collective.
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(60);

impl CompileOptions {
    /// Compile with `optimizer` and `loss` for every output.
    pub fn new(optimizer: Optimizer, loss: Loss) -> CompileOptions {
        CompileOptions {
            default_loss: Some(loss),
            ..CompileOptions::with_optimizer(optimizer)
        }
    }

    /// Compile with `optimizer` alone: outputs get a compiled loss only
    /// through [`loss_for`](Self::loss_for); the others are predictions only
    /// (take no targets). The objective may come entirely from added losses
    /// (Keras's `compile(optimizer)` for an endpoint layer that calls
    /// `add_loss`); one with no term at all is a compile error.
    pub fn with_optimizer(optimizer: Optimizer) -> CompileOptions {
        CompileOptions {
            optimizer,
            default_loss: None,
            losses: Vec::new(),
            loss_weights: Vec::new(),
            metrics: Vec::new(),
            output_metrics: Vec::new(),
            engine: EnginePolicy::default(),
            distributed: Distributed::default(),
        }
    }

    /// Trains data-parallel across the ranks of `comm`: every training step
    /// averages the gradients over the ranks (`all_reduce_mean` nodes in the
    /// compiled step) and `fit` gives each rank its slice of every global
    /// batch, so that `N` ranks produce the weights of one process on the
    /// full batch (to f32 rounding). Every rank must compile the same model
    /// and fit the same data (checked at the start of `fit`). The step
    /// watchdog is [`DEFAULT_WATCHDOG`] on more than one rank.
    pub fn distributed(self, comm: Arc<dyn Communicator>) -> CompileOptions {
        let watchdog = (comm.size() > 1).then_some(DEFAULT_WATCHDOG);
        CompileOptions {
            distributed: Distributed { comm, watchdog },
            ..self
        }
    }

    /// The step watchdog of a distributed `fit` (`None`: off); see
    /// [`Distributed::watchdog`].
    pub fn watchdog(mut self, timeout: Option<Duration>) -> CompileOptions {
        self.distributed.watchdog = timeout;
        self
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

    /// A metric computed on every output that has a loss (Keras's
    /// `metrics=["accuracy"]`).
    pub fn metric(mut self, metric: Metric) -> CompileOptions {
        self.metrics.push(metric);
        self
    }

    /// A metric computed on output `output` only (Keras's
    /// `metrics={"digits": ["accuracy"], "ink": ["mae"]}`), after the
    /// metrics of [`metric`](Self::metric). The output needs a loss (its
    /// targets are what the metric compares with).
    pub fn metric_for(mut self, output: &str, metric: Metric) -> CompileOptions {
        self.output_metrics.push((output.to_string(), metric));
        self
    }

    /// The execution engine (default [`Engine::Jit`]). With the JIT, a graph
    /// it rejects is an error naming the node and the reason, unless
    /// [`allow_interpreter_fallback`](Self::allow_interpreter_fallback) is set.
    pub fn engine(mut self, engine: Engine) -> CompileOptions {
        self.engine.engine = engine;
        self
    }

    /// Lets a program whose graph the JIT rejects run on the interpreter
    /// (default off). Each fallback prints a warning on stderr and is recorded
    /// in [`Model::interpreter_fallbacks`](crate::Model::interpreter_fallbacks).
    pub fn allow_interpreter_fallback(mut self, yes: bool) -> CompileOptions {
        self.engine.interpreter_fallback = yes;
        self
    }

    /// Checks the options against the outputs of model `model` and resolves
    /// a loss (if any) and a weight for every output, in output order.
    pub(crate) fn resolve(self, model: &str, names: &[String]) -> Result<Compiled> {
        for n in self
            .losses
            .iter()
            .map(|(n, _)| n)
            .chain(self.loss_weights.iter().map(|(n, _)| n))
            .chain(self.output_metrics.iter().map(|(n, _)| n))
        {
            if !names.contains(n) {
                return Err(Error::config(
                    "compile",
                    format!("model '{model}' has no output '{n}' (outputs: {names:?})"),
                ));
            }
        }
        let mut outputs = Vec::new();
        for name in names {
            let loss = self
                .losses
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, l)| l.clone())
                .or_else(|| self.default_loss.clone());
            let weight = self
                .loss_weights
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, w)| *w)
                .unwrap_or(1.0);
            let mut metrics: Vec<Metric> = self.metrics.clone();
            metrics.extend(
                self.output_metrics
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, m)| m.clone()),
            );
            if loss.is_none() && metrics.len() > self.metrics.len() {
                return Err(Error::config(
                    "compile",
                    format!("metrics for output '{name}', which has no loss (so no targets to compare with)"),
                ));
            }
            outputs.push(OutputConfig {
                name: name.clone(),
                loss,
                weight,
                metrics,
            });
        }
        self.optimizer.learning_rate.validate()?;
        let gradient_hook = match self.optimizer.clip {
            None => GradientHook::Identity,
            Some(c) => {
                let (Clip::Norm(v) | Clip::Value(v) | Clip::GlobalNorm(v)) = c;
                if !(v.is_finite() && v > 0.0) {
                    return Err(Error::config(
                        "gradient clipping",
                        format!("{c:?}: the threshold must be positive and finite"),
                    ));
                }
                GradientHook::Clip(c)
            }
        };
        Ok(Compiled {
            optimizer: self.optimizer,
            outputs,
            engine: self.engine,
            gradient_hook,
            distributed: self.distributed,
        })
    }
}

/// The compiled loss of one output (`None`: a prediction only, fed no target).
#[derive(Clone, Debug)]
pub(crate) struct OutputConfig {
    pub name: String,
    pub loss: Option<Loss>,
    pub weight: f32,
    /// Its metrics: the ones for every output, then its own.
    pub metrics: Vec<Metric>,
}

impl Compiled {
    /// Indices of the outputs with a compiled loss (the ones fed targets), in output order.
    pub(crate) fn targeted(&self) -> Vec<usize> {
        (0..self.outputs.len())
            .filter(|&i| self.outputs[i].loss.is_some())
            .collect()
    }
}

/// Resolved `compile` settings. Invariant: `outputs` has one entry per model
/// output, in output order.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    pub optimizer: Optimizer,
    pub outputs: Vec<OutputConfig>,
    pub engine: EnginePolicy,
    /// Rewrites the gradients between differentiation and the updates.
    pub gradient_hook: GradientHook,
    /// The ranks training averages over (one process by default).
    pub distributed: Distributed,
}

/// The gradient-hook stage of a training step (see `step`): where gradient
/// clipping, loss scaling and a cross-process allreduce go. Each variant is
/// applied exactly once per optimiser step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) enum GradientHook {
    /// Gradients pass unchanged.
    #[default]
    Identity,
    /// The optimiser's gradient clipping (a positive, finite threshold).
    Clip(Clip),
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

/// How `fit`, `evaluate` and `train_on_batch` weight samples (Keras's
/// `sample_weight` and `class_weight` arguments).
#[derive(Clone, Debug, Default)]
pub enum SampleWeights {
    /// Every sample counts once.
    #[default]
    None,
    /// `f32[N]` (or `[N, 1]`) weights: one array per output with a compiled
    /// loss, in output order, or a single array used for all of them.
    PerSample(Vec<HostTensor>),
    /// `(class, weight)` pairs: each sample is weighted by its label's class
    /// (the argmax of a one-hot target, the rounded value of a scalar one);
    /// classes not listed weigh 1. Single-output models only.
    PerClass(Vec<(usize, f32)>),
}

/// `fit` settings. Defaults: 1 epoch, batch 32, shuffle with seed 0, progress bar on.
pub struct FitOptions {
    /// Index of the last epoch + 1 (Keras's `epochs`: with `initial_epoch`
    /// k, epochs k..epochs run).
    pub epochs: usize,
    /// The epoch to start at (Keras's `initial_epoch`; resuming a run from a
    /// checkpoint: [`CheckpointInfo::epoch`](super::CheckpointInfo::epoch)).
    /// The shuffling of the skipped epochs is drawn and discarded, so epoch
    /// k sees the same sample order as in an uninterrupted run.
    pub initial_epoch: usize,
    /// Samples per step (the last batch may be smaller).
    pub batch_size: usize,
    /// Validation data or split.
    pub validation: Validation,
    /// Shuffle the training samples every epoch.
    pub shuffle: bool,
    /// Seed of the shuffling.
    pub seed: u64,
    /// Per-sample weights of the training data (Keras's `sample_weight`;
    /// validation data is unweighted).
    pub sample_weight: Option<Vec<HostTensor>>,
    /// Per-class weights of the training data (Keras's `class_weight`; not
    /// together with `sample_weight`).
    pub class_weight: Option<Vec<(usize, f32)>>,
    /// What `fit` prints (Keras's `verbose`; default [`Verbosity::Auto`]).
    pub verbose: Verbosity,
    /// Callbacks, called in this order (see [`crate::callbacks`]).
    pub callbacks: Vec<Box<dyn Callback>>,
    /// Check every training step for NaN and infinity (see
    /// [`check_numerics`](Self::check_numerics)); default off.
    pub check_numerics: bool,
}

impl Default for FitOptions {
    fn default() -> FitOptions {
        FitOptions {
            epochs: 1,
            initial_epoch: 0,
            batch_size: 32,
            validation: Validation::None,
            shuffle: true,
            seed: 0,
            sample_weight: None,
            class_weight: None,
            verbose: Verbosity::Auto,
            callbacks: Vec::new(),
            check_numerics: false,
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
    /// Sets the epoch to start at (see [`FitOptions::initial_epoch`]).
    pub fn initial_epoch(mut self, k: usize) -> FitOptions {
        self.initial_epoch = k;
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
    /// Weights each training sample's compiled losses (Keras's
    /// `sample_weight`): one `f32[N]` array per output with a compiled
    /// loss, or one for all of them. See [`SampleWeights::PerSample`].
    pub fn sample_weight(mut self, weights: Vec<HostTensor>) -> FitOptions {
        self.sample_weight = Some(weights);
        self
    }
    /// Weights each training sample by its class (Keras's `class_weight`;
    /// `fit` refuses it together with `sample_weight`, as Keras does). See
    /// [`SampleWeights::PerClass`].
    pub fn class_weight(mut self, classes: impl IntoIterator<Item = (usize, f32)>) -> FitOptions {
        self.class_weight = Some(classes.into_iter().collect());
        self
    }
    /// The training data's weighting: sample or class weights (an error when both are set).
    pub(super) fn weights(&self) -> Result<SampleWeights> {
        match (&self.sample_weight, &self.class_weight) {
            (Some(_), Some(_)) => Err(Error::config(
                "fit",
                "sample_weight and class_weight cannot be used together (as in Keras)",
            )),
            (Some(w), None) => Ok(SampleWeights::PerSample(w.clone())),
            (None, Some(c)) => Ok(SampleWeights::PerClass(c.clone())),
            (None, None) => Ok(SampleWeights::None),
        }
    }
    /// Sets what `fit` prints: a [`Verbosity`], or `true` for the default
    /// ([`Verbosity::Auto`]) and `false` for silence.
    pub fn verbose(mut self, v: impl Into<Verbosity>) -> FitOptions {
        self.verbose = v.into();
        self
    }
    /// `true`: after every training step, every loss term and every
    /// variable (weights, state, optimiser slots) must be finite, as with
    /// `jax.debug_nans`; at the first step where one is not, `fit` puts back
    /// the variables from before that step and fails with
    /// [`Error::NonFinite`](crate::Error::NonFinite), naming the step, the
    /// non-finite loss terms and the first node (layer and role) whose value
    /// went non-finite, found by replaying the step in the interpreter.
    /// Costs a copy of the variables per step.
    pub fn check_numerics(mut self, yes: bool) -> FitOptions {
        self.check_numerics = yes;
        self
    }
    /// Adds a callback.
    pub fn callback(mut self, cb: impl Callback + 'static) -> FitOptions {
        self.callbacks.push(Box::new(cb));
        self
    }
}
