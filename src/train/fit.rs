//! Keras's training front door: `compile`, `fit`, `evaluate`, `predict`,
//! `train_on_batch`.

use super::distributed::{check_ranks_agree, checksum, global_logs, shard, Watchdog};
use super::engine::InterpreterFallback;
use super::logs::{Accumulator, History, Logs};
use super::numerics::StepPlace;
use super::options::{CompileOptions, FitOptions, Purpose, SampleWeights, Validation};
use super::run::{gather, slice_samples, Prepared};
use crate::callbacks::{Callback, FitParams, ModelHandle, ProgbarLogger, Verbosity};
use crate::error::{Error, Result};
use crate::initializers::Rng;
use crate::model::Model;
use crate::optimizers::LearningRate;
use lossgraph_ir::{names, Data, HostTensor, TensorType};
use lossgraph_runtime::Communicator;
use std::borrow::Cow;
use std::path::Path;

/// Validation inputs and targets.
type ValData = (Vec<HostTensor>, Vec<HostTensor>);

impl Model {
    /// Configures training: optimiser, losses per output (any subset, or
    /// none when added losses make the objective), loss weights, metrics and
    /// engine. Drops previously compiled programs and optimiser state. An
    /// objective with no term (no compiled loss and no added loss) is an error.
    pub fn compile(&mut self, opts: CompileOptions) -> Result<()> {
        let compiled = opts.resolve(&self.name, &self.output_names())?;
        if compiled.targeted().is_empty() && self.losses()?.is_empty() {
            return Err(Error::config(
                "compile",
                format!(
                    "model '{}' would train on an empty objective: no output has a loss \
                     (CompileOptions::new or loss_for) and no layer adds one (add_loss, regularizers)",
                    self.name
                ),
            ));
        }
        self.train.recompile(compiled, &mut self.store, &self.vars)
    }

    /// Number of optimiser steps taken since `compile`.
    pub fn iterations(&self) -> u64 {
        self.train.iterations
    }

    /// The cached programs that run on the interpreter because the JIT
    /// rejected their graphs (only with
    /// [`CompileOptions::allow_interpreter_fallback`]), in compile order.
    pub fn interpreter_fallbacks(&self) -> &[InterpreterFallback] {
        self.train.fallbacks()
    }

    /// One optimiser step on one batch (all samples of `x`/`y`). Returns the
    /// batch's losses at the weights *before* the update (Keras's `train_on_batch`).
    pub fn train_on_batch(&mut self, x: &[HostTensor], y: &[HostTensor]) -> Result<Logs> {
        self.train_on_batch_weighted(x, y, &SampleWeights::None)
    }

    /// [`train_on_batch`](Self::train_on_batch) with sample or class
    /// weights (Keras's `train_on_batch(x, y, sample_weight, class_weight)`):
    /// each compiled loss is `Σ wᵢ·lossᵢ / N` ([`crate::Loss::emit_weighted`]);
    /// added losses and metrics are unweighted, as in Keras.
    pub fn train_on_batch_weighted(
        &mut self,
        x: &[HostTensor],
        y: &[HostTensor],
        weights: &SampleWeights,
    ) -> Result<Logs> {
        self.compiled("train_on_batch")?;
        let mut data = self.prepare_data(x, Some(y))?;
        self.attach_sample_weights(&mut data, weights)?;
        let key = data.key(Purpose::Train, data.n);
        self.prepare(key)?;
        let feeds = self.feeds(&data, 0, data.n);
        let logs = self.run_prepared(key, &feeds);
        drop(feeds);
        logs
    }

    /// Losses and metrics over the data, batch-size-weighted means (regularisation included, as Keras).
    pub fn evaluate(
        &mut self,
        x: &[HostTensor],
        y: &[HostTensor],
        batch_size: usize,
    ) -> Result<Logs> {
        self.evaluate_weighted(x, y, &SampleWeights::None, batch_size)
    }

    /// [`evaluate`](Self::evaluate) with sample or class weights on the
    /// compiled losses (Keras's `evaluate(..., sample_weight=...)`).
    pub fn evaluate_weighted(
        &mut self,
        x: &[HostTensor],
        y: &[HostTensor],
        weights: &SampleWeights,
        batch_size: usize,
    ) -> Result<Logs> {
        self.compiled("evaluate")?;
        let mut data = self.prepare_data(x, Some(y))?;
        self.attach_sample_weights(&mut data, weights)?;
        self.evaluate_prepared(&data, batch_size)
    }

    fn evaluate_prepared(&mut self, data: &Prepared<'_>, batch_size: usize) -> Result<Logs> {
        let bs = batch_size.max(1);
        let mut acc = Accumulator::default();
        let mut start = 0;
        while start < data.n {
            let end = (start + bs).min(data.n);
            let key = data.key(Purpose::Evaluate, end - start);
            self.prepare(key)?;
            let feeds = self.feeds(data, start, end);
            let logs = self.run_prepared(key, &feeds)?;
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
            let key = data.key(Purpose::Predict, end - start);
            self.prepare(key)?;
            let feeds = self.feeds(&data, start, end);
            self.run_prepared(key, &feeds)?;
            for (i, (name, _)) in self.outputs.iter().enumerate() {
                let t = self.train.output(key, &self.store, &names::pred(name))?;
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

    /// Trains for `opts.epochs` epochs and returns the per-epoch history
    /// (validation values prefixed `val_`). Prints as
    /// [`FitOptions::verbose`] says: by default a progress bar with the
    /// running loss and its breakdown (compiled loss and each added loss) on
    /// a terminal, one Keras `verbose=2` line per epoch otherwise. Calls the
    /// [`callbacks`](crate::callbacks) at every boundary; one asking to stop
    /// ends training after the current batch (that epoch still ends: its
    /// means, validation and `on_epoch_end`), and one failing ends `fit`
    /// with its error.
    ///
    /// Compiled [`distributed`](super::CompileOptions::distributed) over
    /// `N > 1` ranks, every rank passes the same data and options:
    /// `batch_size` is the global batch, each rank runs its contiguous
    /// `1/N` of every batch (the order is the seed's, the same on every
    /// rank), the logs, history and callbacks see the means over all ranks'
    /// samples, and only rank 0 shows progress. At the start the ranks
    /// compare a checksum of the training graph and the data sizes (a
    /// mismatch is an [`Error::Distributed`] on every rank, rank 0's naming
    /// the values); any other error on one rank, and a step that outlasts the
    /// watchdog, abort the whole job ([`Communicator::abort`]) instead of
    /// leaving the other ranks waiting in a collective.
    pub fn fit(&mut self, x: &[HostTensor], y: &[HostTensor], opts: FitOptions) -> Result<History> {
        let dist = self.compiled("fit")?.distributed.clone();
        if dist.comm.size() <= 1 {
            return self.fit_ranks(x, y, opts, &*dist.comm, None);
        }
        let watchdog = match dist.watchdog {
            Some(t) => Some(Watchdog::start(dist.comm.clone(), t)?),
            None => None,
        };
        let result = self.fit_ranks(x, y, opts, &*dist.comm, watchdog.as_ref());
        drop(watchdog);
        self.train.shard_weight = None;
        match result {
            // Every rank returns the start-up check's error.
            Err(e @ Error::Distributed(_)) => Err(e),
            Err(e) => {
                eprintln!(
                    "lossgraph: rank {}: {e}; aborting the job",
                    dist.comm.rank()
                );
                dist.comm.abort(1)
            }
            ok => ok,
        }
    }

    /// `fit` on the ranks of `comm` (one rank: a plain single-process fit).
    fn fit_ranks(
        &mut self,
        x: &[HostTensor],
        y: &[HostTensor],
        mut opts: FitOptions,
        comm: &dyn Communicator,
        watchdog: Option<&Watchdog>,
    ) -> Result<History> {
        let (rank, ranks) = (comm.rank(), comm.size());
        let weights = opts.weights()?;
        let mut all = self.prepare_data(x, Some(y))?;
        self.attach_sample_weights(&mut all, &weights)?;
        let owned = |ts: &[Cow<'_, HostTensor>]| -> Vec<HostTensor> {
            ts.iter().map(|c| c.clone().into_owned()).collect()
        };
        let (train_x, train_y, val): (Vec<HostTensor>, Vec<HostTensor>, Option<ValData>) =
            match &opts.validation {
                Validation::None => (owned(&all.x), owned(&all.y), None),
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
                Validation::Data(vx, vy) => {
                    (owned(&all.x), owned(&all.y), Some((vx.clone(), vy.clone())))
                }
            };
        // Sample weights follow the training samples (a validation split
        // leaves the validation samples unweighted).
        let train_w: Vec<HostTensor> = match &opts.validation {
            Validation::Split(f) => {
                let split = (all.n as f64 * (1.0 - *f as f64)) as usize;
                all.w.iter().map(|t| slice_samples(t, 0, split)).collect()
            }
            Validation::None | Validation::Data(..) => owned(&all.w),
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
        if ranks > 1 {
            let graph = self.graph_unoptimized(Purpose::Train, bs.min(n))?;
            let text = lossgraph_ir::text::print(&graph);
            let order = if opts.shuffle { opts.seed } else { u64::MAX };
            check_ranks_agree(
                comm,
                &[
                    checksum(text.as_bytes()),
                    n as u64,
                    bs as u64,
                    opts.epochs as u64,
                    order,
                ],
            )?;
        }
        // Validation data is checked once, before any training.
        let val = match &val {
            Some((vx, vy)) => Some(self.prepare_data(vx, Some(vy))?),
            None => None,
        };
        let mut rng = Rng::new(opts.seed);
        let mut step_count = 0u64;
        let verbose = opts.verbose.resolve_for_stderr();
        let params = FitParams {
            epochs: opts.epochs,
            steps,
            verbose,
            rank,
        };
        let mut list = CallbackList {
            user: std::mem::take(&mut opts.callbacks),
            history: History::default(),
            progbar: (verbose != Verbosity::Silent && rank == 0).then(ProgbarLogger::new),
        };
        let mut stop = false;
        self.each_callback(&mut list, params, &mut stop, |cb, m| cb.on_train_begin(m))?;
        if opts.shuffle {
            for _ in 0..opts.initial_epoch.min(opts.epochs) {
                rng.permutation(n);
            }
        }
        let mut last_logs = Logs::default();
        for epoch in opts.initial_epoch..opts.epochs {
            self.each_callback(&mut list, params, &mut stop, |cb, m| {
                cb.on_epoch_begin(m, epoch)
            })?;
            let (ex, ey, ew) = if opts.shuffle {
                let perm = rng.permutation(n);
                let order = |ts: &[HostTensor]| -> Vec<HostTensor> {
                    ts.iter().map(|t| gather(t, &perm)).collect()
                };
                (order(&train_x), order(&train_y), order(&train_w))
            } else {
                (train_x.clone(), train_y.clone(), train_w.clone())
            };
            let data = Prepared {
                x: ex.iter().map(Cow::Borrowed).collect(),
                y: ey.iter().map(Cow::Borrowed).collect(),
                w: ew.iter().map(Cow::Borrowed).collect(),
                n,
            };
            let mut acc = Accumulator::default();
            for s in 0..steps {
                self.each_callback(&mut list, params, &mut stop, |cb, m| {
                    cb.on_train_batch_begin(m, s)
                })?;
                let start = s * bs;
                let end = (start + bs).min(n);
                let place = opts.check_numerics.then_some(StepPlace {
                    step: step_count,
                    epoch,
                    batch: s,
                });
                let logs = if ranks > 1 {
                    let part = shard(start, end, rank, ranks);
                    let local = part.end - part.start;
                    let key = data.key(Purpose::Train, local);
                    self.prepare(key)?;
                    self.train.shard_weight = Some(part.weight);
                    let feeds = self.feeds(&data, part.start, part.end);
                    if let Some(w) = watchdog {
                        w.arm(step_count);
                    }
                    let logs = self.run_train_step(key, &feeds, place)?;
                    let logs = global_logs(comm, &logs, part.counted)?;
                    if let Some(w) = watchdog {
                        w.disarm();
                    }
                    logs
                } else {
                    let key = data.key(Purpose::Train, end - start);
                    self.prepare(key)?;
                    let feeds = self.feeds(&data, start, end);
                    self.run_train_step(key, &feeds, place)?
                };
                step_count += 1;
                acc.add(&logs, end - start);
                let running = acc.mean();
                self.each_callback(&mut list, params, &mut stop, |cb, m| {
                    cb.on_train_batch_end(m, s, &running)
                })?;
                if stop {
                    break;
                }
            }
            let mut epoch_logs = acc.mean();
            if let Some(vdata) = &val {
                let vlogs = self.evaluate_prepared(vdata, bs)?;
                for (k, v) in vlogs.entries() {
                    epoch_logs.set(&format!("val_{k}"), *v);
                }
            }
            // Counted before the callbacks: a checkpoint saved at this
            // epoch's end resumes at the next one.
            self.train.epoch = epoch as u64 + 1;
            self.each_callback(&mut list, params, &mut stop, |cb, m| {
                cb.on_epoch_end(m, epoch, &mut epoch_logs)
            })?;
            last_logs = epoch_logs;
            if stop {
                break;
            }
        }
        self.each_callback(&mut list, params, &mut stop, |cb, m| {
            cb.on_train_end(m, &last_logs)
        })?;
        Ok(list.history)
    }

    /// Calls `f` on every callback of `list`, in order, with this model as
    /// their [`ModelHandle`].
    fn each_callback(
        &mut self,
        list: &mut CallbackList,
        params: FitParams,
        stop: &mut bool,
        mut f: impl FnMut(&mut dyn Callback, &mut dyn ModelHandle) -> Result<()>,
    ) -> Result<()> {
        let mut handle = FitHandle {
            model: self,
            params,
            stop,
        };
        for cb in list.user.iter_mut() {
            f(cb.as_mut(), &mut handle)?;
        }
        f(&mut list.history, &mut handle)?;
        if let Some(p) = list.progbar.as_mut() {
            f(p, &mut handle)?;
        }
        Ok(())
    }
}

/// The callbacks of one `fit`: the user's, then the history it returns,
/// then the progress printer (Keras appends `History` and `ProgbarLogger`).
struct CallbackList {
    user: Vec<Box<dyn Callback>>,
    history: History,
    progbar: Option<ProgbarLogger>,
}

/// The model being fitted, as its callbacks see it.
struct FitHandle<'a> {
    model: &'a mut Model,
    params: FitParams,
    stop: &'a mut bool,
}

impl ModelHandle for FitHandle<'_> {
    fn params(&self) -> FitParams {
        self.params
    }

    fn get_weights(&self) -> Vec<(String, HostTensor)> {
        self.model.get_weights()
    }

    fn set_weights(&mut self, weights: &[(String, HostTensor)]) -> Result<()> {
        self.model.set_weights(weights)
    }

    fn save_weights(&self, path: &Path) -> Result<()> {
        self.model.save_weights(path)
    }

    fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.model.save_checkpoint(path)
    }

    fn learning_rate(&self) -> Result<f32> {
        let train = &self.model.train;
        let c = train.compiled.as_ref().ok_or_else(|| Error::NotCompiled {
            model: self.model.name.clone(),
            action: "reading the learning rate".into(),
        })?;
        Ok(c.optimizer.learning_rate.at(train.iterations))
    }

    fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::config(
                "learning rate",
                format!("{lr} is not a learning rate (a finite value >= 0)"),
            ));
        }
        let name = self.model.name.clone();
        let c = self
            .model
            .train
            .compiled
            .as_mut()
            .ok_or_else(|| Error::NotCompiled {
                model: name,
                action: "setting the learning rate".into(),
            })?;
        if c.optimizer.learning_rate.constant().is_none() {
            return Err(Error::config(
                "learning rate",
                format!(
                    "the optimizer was compiled with the schedule {:?}: its rate cannot be set \
                     (as in Keras); compile with a constant rate to use ReduceLROnPlateau or \
                     LearningRateScheduler",
                    c.optimizer.learning_rate
                ),
            ));
        }
        c.optimizer.learning_rate = LearningRate::Constant(lr);
        Ok(())
    }

    fn iterations(&self) -> u64 {
        self.model.train.iterations
    }

    fn stop_training(&mut self) {
        *self.stop = true;
    }

    fn stop_requested(&self) -> bool {
        *self.stop
    }
}
