//! The benchmark harness: the standard workloads of `shared/bench/WORKLOADS.md`
//! (`tiny`, `mnist`, `wide`, `cnn`) built through the public front end, compiled, and
//! timed as repetitions of training steps on pre-generated in-memory batches.
//!
//! * Workloads are built exactly as a user would write them: a `Sequential`
//!   of `Dense` layers (or, for `cnn`, the keras.io MNIST convnet of `Conv2D`,
//!   `MaxPooling2D`, `Flatten`, `Dropout` and `Dense`) with a
//!   `kernel_regularizer` (an added loss) on every kernel, a Keras loss and
//!   optimiser, `compile`. The training graph is the one the front end
//!   compiles for `train_on_batch` ([`Model::graph`] with [`Purpose::Train`]);
//!   the harness binds it to a [`Program`] itself only to choose the thread
//!   count and to keep the timed loop free of host-side bookkeeping.
//! * Weights are Glorot-uniform, data N(0,1) (class labels uniform), all drawn
//!   from one splitmix64 stream seeded with 42; [`N_BATCHES`] distinct batches
//!   are cycled (`batch i % 4` at step `i`).
//! * Figures follow the peers' conventions: steps/s median/min/max over the
//!   repetitions, GFLOP/s by `6 · batch · multiply-adds per sample` (for an
//!   MLP, its kernel weights), compile time, peak
//!   RSS (`VmHWM`). [`BenchResult::to_json`] prints the peers' keys.
//! * Any compiled front-end model can be timed the same way
//!   ([`Session::from_model`], [`measure_session`]); [`model`] does it for an
//!   imported Keras model (`lossgraph bench --model MODEL.json`).

use lossgraph::layers::{Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D};
use lossgraph::{CompileOptions, Init, Loss, Model, Optimizer, Purpose, Regularizer, Sequential};
use lossgraph_ir::rng::SplitMix64;
use lossgraph_ir::{names, Builder, DType, Data, Graph, HostTensor, TensorType};
/// The GEMM routine choice of [`BenchOptions::gemm`].
pub use lossgraph_runtime::GemmImpl;
use lossgraph_runtime::{Engine, Feed, JitOptions, Program, RuntimeError};
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

pub mod model;

/// Number of distinct pre-generated batches, cycled during timing.
pub const N_BATCHES: usize = 4;

/// Seed of the splitmix64 stream that draws weights, then data.
pub const SEED: u64 = 42;

/// Errors of the benchmark harness.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The workload name is not one of [`WORKLOADS`].
    #[error("unknown workload '{0}' (expected one of: tiny, mnist, wide, cnn)")]
    UnknownWorkload(String),
    /// Building or compiling the model through the front end failed.
    #[error("front end, workload '{workload}': {source}")]
    Frontend {
        workload: String,
        #[source]
        source: Box<lossgraph::Error>,
    },
    /// Compiling or running the step failed.
    #[error("runtime, {context}: {source}")]
    Runtime {
        context: String,
        #[source]
        source: RuntimeError,
    },
    /// A setting or a graph did not meet the harness's expectations.
    #[error("{0}")]
    Invalid(String),
}

/// Result type of the harness.
pub type Result<T> = std::result::Result<T, BenchError>;

fn rt(context: impl Into<String>) -> impl FnOnce(RuntimeError) -> BenchError {
    let context = context.into();
    move |source| BenchError::Runtime { context, source }
}

/// The loss of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Mean squared error over batch × outputs; targets N(0,1).
    Mse,
    /// Sparse categorical crossentropy (mean) of a softmax output; labels uniform.
    SparseCe,
}

/// The optimiser of a workload (Keras defaults beyond the learning rate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKind {
    /// Plain SGD, no momentum.
    Sgd,
    /// Adam, β₁ 0.9, β₂ 0.999, ε 1e-7, bias-corrected.
    Adam,
}

/// The layers of a workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arch {
    /// A `Sequential` of `Dense` layers. Invariant: `acts.len() + 1 == sizes.len()`.
    Mlp {
        /// Input features, then the units of each `Dense` layer.
        sizes: &'static [usize],
        /// Keras activation name of each `Dense` layer.
        acts: &'static [&'static str],
    },
    /// The keras.io "Simple MNIST convnet": for each entry of `filters` a
    /// `Conv2D(filters, kernel×kernel, valid, relu)` followed by
    /// `MaxPooling2D(pool)`; then `Flatten`, `Dropout(dropout)` and
    /// `Dense(classes, softmax)`. Invariant: every conv window fits.
    Convnet {
        /// Per-sample input `(height, width, channels)`.
        image: [usize; 3],
        /// Filters of each conv block.
        filters: &'static [usize],
        /// Square conv window.
        kernel: usize,
        /// Square pooling window (strides equal to it).
        pool: usize,
        /// Dropout rate before the classifier.
        dropout: f32,
        /// Classes of the softmax classifier.
        classes: usize,
    },
}

/// The product one layer with a kernel computes per sample, as the step
/// runs it: `[rows, k] · [k, m]` — for `Dense` one row of `k` inputs, for a
/// convolution (im2col) one row of `kh·kw·cin` values per output pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerProduct {
    /// Rows per sample (1 for `Dense`, output pixels for a convolution).
    pub rows: usize,
    /// Contraction length.
    pub k: usize,
    /// Output columns (units or filters).
    pub m: usize,
    /// The kernel's shape (`[k, m]` for `Dense`, `[kh, kw, cin, m]` for `Conv2D`).
    pub kernel: Vec<usize>,
}

/// One standard workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    /// `tiny`, `mnist`, `wide` or `cnn`.
    pub name: &'static str,
    /// The layers.
    pub arch: Arch,
    /// The compiled loss.
    pub loss: LossKind,
    /// L2 factor of every kernel regulariser (`λ · Σ W²`), 0 for none.
    pub l2: f32,
    /// The optimiser.
    pub opt: OptKind,
    /// The learning rate.
    pub lr: f32,
    /// Samples per batch.
    pub batch: usize,
    /// Steps per repetition (WORKLOADS.md's S).
    pub steps: usize,
    /// Repetitions (WORKLOADS.md: 7, `wide` and `cnn` 5).
    pub reps: usize,
}

/// The four standard workloads of `shared/bench/WORKLOADS.md`.
pub const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "tiny",
        arch: Arch::Mlp {
            sizes: &[8, 32, 32, 1],
            acts: &["tanh", "tanh", "linear"],
        },
        loss: LossKind::Mse,
        l2: 1e-4,
        opt: OptKind::Sgd,
        lr: 0.01,
        batch: 32,
        steps: 500,
        reps: 7,
    },
    Workload {
        name: "mnist",
        arch: Arch::Mlp {
            sizes: &[784, 128, 10],
            acts: &["relu", "softmax"],
        },
        loss: LossKind::SparseCe,
        l2: 1e-4,
        opt: OptKind::Adam,
        lr: 1e-3,
        batch: 64,
        steps: 300,
        reps: 7,
    },
    Workload {
        name: "wide",
        arch: Arch::Mlp {
            sizes: &[1024, 2048, 2048, 1024],
            acts: &["relu", "relu", "linear"],
        },
        loss: LossKind::Mse,
        l2: 0.0,
        opt: OptKind::Sgd,
        lr: 0.01,
        batch: 256,
        steps: 20,
        reps: 5,
    },
    Workload {
        name: "cnn",
        arch: Arch::Convnet {
            image: [28, 28, 1],
            filters: &[32, 64],
            kernel: 3,
            pool: 2,
            dropout: 0.5,
            classes: 10,
        },
        loss: LossKind::SparseCe,
        l2: 1e-4,
        opt: OptKind::Adam,
        lr: 1e-3,
        batch: 128,
        steps: 20,
        reps: 5,
    },
];

/// The names of [`WORKLOADS`], comma-separated (for messages).
pub fn workload_names() -> String {
    WORKLOADS.map(|w| w.name).join(", ")
}

/// The standard workload called `name`.
pub fn workload(name: &str) -> Result<&'static Workload> {
    WORKLOADS
        .iter()
        .find(|w| w.name == name)
        .ok_or_else(|| BenchError::UnknownWorkload(name.to_string()))
}

impl Workload {
    /// The product of every layer with a kernel, in layer order.
    pub fn products(&self) -> Vec<LayerProduct> {
        match self.arch {
            Arch::Mlp { sizes, .. } => sizes
                .windows(2)
                .map(|p| LayerProduct {
                    rows: 1,
                    k: p[0],
                    m: p[1],
                    kernel: vec![p[0], p[1]],
                })
                .collect(),
            Arch::Convnet {
                image: [mut h, mut w, mut c],
                filters,
                kernel,
                pool,
                classes,
                ..
            } => {
                let mut out = Vec::with_capacity(filters.len() + 1);
                for &f in filters {
                    // A valid conv, then a pool with strides equal to its window.
                    (h, w) = (h + 1 - kernel, w + 1 - kernel);
                    out.push(LayerProduct {
                        rows: h * w,
                        k: kernel * kernel * c,
                        m: f,
                        kernel: vec![kernel, kernel, c, f],
                    });
                    (h, w, c) = (h / pool, w / pool, f);
                }
                out.push(LayerProduct {
                    rows: 1,
                    k: h * w * c,
                    m: classes,
                    kernel: vec![h * w * c, classes],
                });
                out
            }
        }
    }

    /// Number of kernel weights (Σ k·m over the layers).
    pub fn kernel_weights(&self) -> usize {
        self.products().iter().map(|p| p.k * p.m).sum()
    }

    /// Multiply-adds per sample of the forward pass (Σ rows·k·m; for an MLP
    /// its kernel weights).
    pub fn macs_per_sample(&self) -> usize {
        self.products().iter().map(|p| p.rows * p.k * p.m).sum()
    }

    /// FLOPs per step by the peers' convention: `6 · batch · multiply-adds per sample`.
    pub fn flops_per_step(&self) -> f64 {
        6.0 * self.batch as f64 * self.macs_per_sample() as f64
    }

    /// Matmul FLOPs a step really performs: forward and weight gradient of
    /// every layer, input gradient of every layer but the first.
    pub fn true_matmul_flops(&self) -> f64 {
        let b = self.batch as f64;
        self.products()
            .iter()
            .enumerate()
            .map(|(l, p)| {
                let products = if l == 0 { 2.0 } else { 3.0 };
                2.0 * b * products * (p.rows * p.k * p.m) as f64
            })
            .sum()
    }

    /// The per-sample input shape.
    pub fn input_shape(&self) -> Vec<usize> {
        match self.arch {
            Arch::Mlp { sizes, .. } => vec![sizes[0]],
            Arch::Convnet { image, .. } => image.to_vec(),
        }
    }

    fn classes(&self) -> usize {
        match self.arch {
            Arch::Mlp { sizes, .. } => sizes[sizes.len() - 1],
            Arch::Convnet { classes, .. } => classes,
        }
    }
}

/// How the targets of one output are drawn (what its loss expects).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// N(0,1) values (MSE, MAE, Huber).
    Normal,
    /// Uniform 0/1 values (binary crossentropy).
    Binary,
    /// One-hot rows over the last axis, the class uniform (categorical crossentropy).
    OneHot,
    /// Uniform class labels `[0, classes)`, i32, without the last axis
    /// (sparse categorical crossentropy).
    Labels,
}

/// The pre-generated data of a run: [`N_BATCHES`] batches, each with one
/// tensor per model input and one target tensor per model output.
/// Invariant: `xs.len() == ys.len()`; every `xs[b][i]` has shape
/// `[batch, input i's per-sample shape…]`.
#[derive(Clone, Debug)]
pub struct Batches {
    /// Samples per batch.
    pub batch: usize,
    /// `xs[b][i]`: input `i` of batch `b`, f32 N(0,1).
    pub xs: Vec<Vec<HostTensor>>,
    /// `ys[b][o]`: the targets of output `o` for batch `b`: f32 with the
    /// output's shape, or i32 class labels without its last (class) axis.
    pub ys: Vec<Vec<HostTensor>>,
}

/// A host tensor of shape `[batch, shape…]` (`data` holds its values).
fn batch_tensor(batch: usize, shape: &[usize], dtype: DType, data: Data) -> HostTensor {
    let full: Vec<usize> = std::iter::once(batch)
        .chain(shape.iter().copied())
        .collect();
    HostTensor {
        ty: TensorType::new(dtype, &full),
        data,
    }
}

/// Refuses a batch size whose [`N_BATCHES`] generated batches (inputs of
/// per-sample shapes `inputs`, one f32 or i32 target per output element)
/// overflow or exceed the memory budget, before any is drawn.
pub fn check_batch_memory(
    batch: usize,
    inputs: &[Vec<usize>],
    outputs: &[Vec<usize>],
) -> Result<()> {
    let per_sample = inputs.iter().chain(outputs).try_fold(0usize, |sum, s| {
        lossgraph_ir::types::checked_numel(s).and_then(|n| sum.checked_add(n))
    });
    let bytes = per_sample
        .and_then(|n| n.checked_mul(batch))
        .and_then(|n| n.checked_mul(4 * N_BATCHES));
    let budget = lossgraph_runtime::budget::memory_budget().map_err(BenchError::Invalid)?;
    match bytes {
        Some(b) if b as u64 <= budget => Ok(()),
        None => Err(BenchError::Invalid(format!(
            "--batch {batch}: the size of the {N_BATCHES} generated batches overflows"
        ))),
        Some(b) => Err(BenchError::Invalid(format!(
            "--batch {batch}: the {N_BATCHES} generated batches need {}, more than the memory budget of {} (set {} to change it)",
            lossgraph_runtime::budget::fmt_bytes(b as u64),
            lossgraph_runtime::budget::fmt_bytes(budget),
            lossgraph_runtime::budget::BUDGET_ENV
        ))),
    }
}

/// Draws [`N_BATCHES`] batches of `batch` samples from `rng`: per batch, every
/// input (per-sample shapes `inputs`) in order, then the targets of every
/// output (per-sample shape and [`TargetKind`]) in order.
pub fn generate_batches(
    batch: usize,
    inputs: &[Vec<usize>],
    outputs: &[(Vec<usize>, TargetKind)],
    rng: &mut SplitMix64,
) -> Batches {
    let mut xs = Vec::with_capacity(N_BATCHES);
    let mut ys = Vec::with_capacity(N_BATCHES);
    for _ in 0..N_BATCHES {
        xs.push(
            inputs
                .iter()
                .map(|shape| {
                    let n = batch * shape.iter().product::<usize>();
                    let v = (0..n).map(|_| rng.normal() as f32).collect();
                    batch_tensor(batch, shape, DType::F32, Data::F32(v))
                })
                .collect(),
        );
        ys.push(
            outputs
                .iter()
                .map(|(shape, kind)| draw_targets(batch, shape, *kind, rng))
                .collect(),
        );
    }
    Batches { batch, xs, ys }
}

/// The targets of one output: `batch` samples of per-sample shape `shape`.
fn draw_targets(
    batch: usize,
    shape: &[usize],
    kind: TargetKind,
    rng: &mut SplitMix64,
) -> HostTensor {
    let numel = batch * shape.iter().product::<usize>();
    let classes = shape.last().copied().unwrap_or(1).max(1);
    let rows = numel / classes;
    let f32s = |v: Vec<f32>| batch_tensor(batch, shape, DType::F32, Data::F32(v));
    match kind {
        TargetKind::Normal => f32s((0..numel).map(|_| rng.normal() as f32).collect()),
        TargetKind::Binary => f32s((0..numel).map(|_| rng.below(2) as f32).collect()),
        TargetKind::OneHot => {
            let mut v = vec![0.0; numel];
            for r in 0..rows {
                v[r * classes + rng.below(classes)] = 1.0;
            }
            f32s(v)
        }
        TargetKind::Labels => {
            let labels = (0..rows).map(|_| rng.below(classes) as i32).collect();
            let without_classes = &shape[..shape.len().saturating_sub(1)];
            batch_tensor(batch, without_classes, DType::I32, Data::I32(labels))
        }
    }
}

/// Draws the kernels (Glorot-uniform with Keras's fans, in layer order) and
/// then the batches of `w` from `rng`.
pub fn generate(w: &Workload, rng: &mut SplitMix64) -> (Vec<Vec<f32>>, Batches) {
    let kernels = w
        .products()
        .iter()
        .map(|p| Init::GlorotUniform.sample(&p.kernel, rng))
        .collect();
    let kind = match w.loss {
        LossKind::Mse => TargetKind::Normal,
        LossKind::SparseCe => TargetKind::Labels,
    };
    let batches = generate_batches(
        w.batch,
        &[w.input_shape()],
        &[(vec![w.classes()], kind)],
        rng,
    );
    (kernels, batches)
}

/// The workload's `compile` settings: its Keras loss and optimiser.
pub fn compile_options(w: &Workload) -> CompileOptions {
    let loss = match w.loss {
        LossKind::Mse => Loss::MeanSquaredError,
        LossKind::SparseCe => Loss::SparseCategoricalCrossentropy { from_logits: false },
    };
    let opt = match w.opt {
        OptKind::Sgd => Optimizer::sgd(w.lr),
        OptKind::Adam => Optimizer::adam(w.lr),
    };
    CompileOptions::new(opt, loss)
}

/// Builds and compiles (front-end `compile`) the model of `w` with the given
/// kernels; biases stay zero. This is the code a user writes.
pub fn build_model(w: &Workload, kernels: &[Vec<f32>]) -> Result<Model> {
    let fe = |source| BenchError::Frontend {
        workload: w.name.to_string(),
        source: Box::new(source),
    };
    let l2 = (w.l2 > 0.0).then_some(Regularizer::L2(w.l2));
    let dense = |units: usize, act: &str| match &l2 {
        Some(r) => Dense::new(units)
            .activation(act)
            .kernel_regularizer(r.clone()),
        None => Dense::new(units).activation(act),
    };
    let mut seq = Sequential::new(w.name).add(Input::new(&w.input_shape()));
    match w.arch {
        Arch::Mlp { sizes, acts } => {
            for (units, act) in sizes[1..].iter().zip(acts) {
                seq = seq.add(dense(*units, act));
            }
        }
        Arch::Convnet {
            filters,
            kernel,
            pool,
            dropout,
            classes,
            ..
        } => {
            for &f in filters {
                let conv = Conv2D::new(f, [kernel, kernel]).activation("relu");
                seq = seq.add(match &l2 {
                    Some(r) => conv.kernel_regularizer(r.clone()),
                    None => conv,
                });
                seq = seq.add(MaxPooling2D::new([pool, pool]));
            }
            seq = seq
                .add(Flatten::new())
                .add(Dropout::new(dropout))
                .add(dense(classes, "softmax"));
        }
    }
    let mut model = seq.build().map_err(fe)?;
    model.compile(compile_options(w)).map_err(fe)?;
    let kernel_paths: Vec<(String, Vec<usize>)> = model
        .variables()
        .iter()
        .filter(|v| v.name == "kernel")
        .map(|v| (v.path.clone(), v.ty.shape.to_vec()))
        .collect();
    if kernel_paths.len() != kernels.len() {
        return Err(BenchError::Invalid(format!(
            "workload '{}': model has {} kernels, expected {}",
            w.name,
            kernel_paths.len(),
            kernels.len()
        )));
    }
    for ((path, shape), k) in kernel_paths.iter().zip(kernels) {
        let t = HostTensor::f32(shape, k.clone()).ok_or_else(|| {
            BenchError::Invalid(format!(
                "kernel '{path}' has shape {shape:?}, got {} values",
                k.len()
            ))
        })?;
        model.set_weight(path, t).map_err(fe)?;
    }
    Ok(model)
}

/// Which engine runs the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// Cranelift-compiled native code.
    Jit,
    /// The reference interpreter (slow; for checking the harness).
    Interp,
}

impl EngineChoice {
    /// Parses `jit` or `interp`.
    pub fn parse(s: &str) -> Result<EngineChoice> {
        match s {
            "jit" => Ok(EngineChoice::Jit),
            "interp" | "interpreter" => Ok(EngineChoice::Interp),
            _ => Err(BenchError::Invalid(format!(
                "unknown engine '{s}' (expected jit or interp)"
            ))),
        }
    }
}

/// Compiles `graph` for `engine` with `threads` threads (0 = the engine's default).
pub fn compile_graph(graph: Graph, engine: EngineChoice, threads: usize) -> Result<Program> {
    let opts = BenchOptions::with_engine(engine, threads);
    compile_graph_tuned(graph, &opts)
}

/// [`compile_graph`] with the JIT's minimum work per split kernel (0 = its default).
pub fn compile_graph_tuned(graph: Graph, opts: &BenchOptions) -> Result<Program> {
    let name = graph.name.clone();
    match opts.engine {
        EngineChoice::Interp => {
            Program::new(graph, Engine::Interpreter).map_err(rt(format!("compiling '{name}'")))
        }
        EngineChoice::Jit => {
            let mut jit = JitOptions {
                gemm: opts.gemm,
                ..JitOptions::default()
            };
            // Off: the convolution patterns stay im2col + GEMM (the A/B baseline).
            jit.fusion.conv_calls &= opts.conv_calls;
            // Off: the pooling patterns stay unfold + argmax/one_hot (the A/B baseline).
            jit.fusion.pool_calls &= opts.pool_calls;
            if opts.threads > 0 {
                jit.threads = opts.threads;
            }
            if opts.split_min_work > 0 {
                jit.split_min_work = opts.split_min_work;
            }
            Program::new_jit(graph, &jit).map_err(rt(format!("compiling '{name}'")))
        }
    }
}

/// Threads the JIT uses when asked for `threads` (0 = its default).
pub fn effective_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        JitOptions::default().threads
    }
}

/// Where a feed of the training graph comes from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// Model input `i` of the current batch.
    X(usize),
    /// Targets of output `o` of the current batch.
    Y(usize),
    Lr,
    Iteration,
    /// The dropout step counter (`i32[]`).
    RngStep,
}

/// Most graph inputs a [`Session`] feeds (inputs, targets, `lr`, `iteration`,
/// `rng_step`); the feeds of a step live in a fixed array so that the timed
/// loop allocates nothing.
pub const MAX_FEEDS: usize = 16;

/// The scalars fed besides the batch at one step.
struct StepScalars {
    lr: [f32; 1],
    it: [f32; 1],
    rng_step: [i32; 1],
}

/// The feeds of one step: batch `i` and the step's scalars, in the order of
/// `plan`. Invariant (checked by [`Session::from_model`]): `plan.len() <= MAX_FEEDS`.
fn feeds_for<'a>(
    plan: &'a [(String, Source)],
    batches: &'a Batches,
    i: usize,
    sc: &'a StepScalars,
) -> ([(&'a str, Feed<'a>); MAX_FEEDS], usize) {
    let mut feeds: [(&str, Feed<'_>); MAX_FEEDS] = [("", Feed::F32(&[])); MAX_FEEDS];
    for (slot, (name, src)) in feeds.iter_mut().zip(plan) {
        let data = match *src {
            Source::X(k) => Feed::of(&batches.xs[i][k]),
            Source::Y(k) => Feed::of(&batches.ys[i][k]),
            Source::Lr => Feed::F32(&sc.lr),
            Source::Iteration => Feed::F32(&sc.it),
            Source::RngStep => Feed::I32(&sc.rng_step),
        };
        *slot = (name.as_str(), data);
    }
    (feeds, plan.len().min(MAX_FEEDS))
}

/// Compile-time figures of a [`Session`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CompileTimes {
    /// Tracing, losses, autodiff, optimiser and graph passes (the front end).
    pub graph_s: f64,
    /// Fusion, memory planning, Cranelift and JIT linking (the engine).
    pub engine_s: f64,
}

impl CompileTimes {
    /// Whole compile: graph plus engine.
    pub fn total_s(&self) -> f64 {
        self.graph_s + self.engine_s
    }
}

/// A compiled training step with its data, ready to time: a standard
/// workload ([`Session::new`]) or any compiled front-end model
/// ([`Session::from_model`], used for imported Keras models).
pub struct Session {
    /// The workload's name (reported as `workload`).
    pub name: String,
    /// The compiled step; its variables hold the live weights.
    pub program: Program,
    /// The data, cycled.
    pub batches: Batches,
    /// Compile figures.
    pub compile: CompileTimes,
    /// The learning rate fed at every step.
    pub lr: f32,
    /// FLOPs per step by the peers' convention (`6 · batch · kernel weights`).
    pub flops_per_step: f64,
    feeds: Vec<(String, Source)>,
    step: u64,
}

impl Session {
    /// Builds the workload through the front end, compiles its training step
    /// for `engine` with `threads` threads (0 = default) and loads the weights.
    pub fn new(w: &Workload, engine: EngineChoice, threads: usize) -> Result<Session> {
        let opts = BenchOptions::with_engine(engine, threads);
        Session::tuned(w, &opts)
    }

    /// [`Session::new`] with every engine setting of `opts`.
    pub fn tuned(w: &Workload, opts: &BenchOptions) -> Result<Session> {
        check_batch_memory(w.batch, &[w.input_shape()], &[vec![w.classes()]])?;
        let mut rng = SplitMix64::new(SEED);
        let (kernels, batches) = generate(w, &mut rng);
        let model = build_model(w, &kernels)?;
        Session::from_model(w.name, &model, batches, w.lr, w.flops_per_step(), opts)
    }

    /// Compiles the training step of `model` (already `compile`d by the
    /// front end) for `batches.batch` samples with the engine settings of
    /// `opts` and loads the model's current weights; optimiser state starts
    /// at zero. `lr` is fed as the learning rate, `flops_per_step` is what
    /// GFLOP/s are computed from. Times the graph and engine compiles.
    pub fn from_model(
        name: &str,
        model: &Model,
        batches: Batches,
        lr: f32,
        flops_per_step: f64,
        opts: &BenchOptions,
    ) -> Result<Session> {
        let t0 = Instant::now();
        let graph = model
            .graph(Purpose::Train, batches.batch)
            .map_err(|source| BenchError::Frontend {
                workload: name.to_string(),
                source: Box::new(source),
            })?;
        let t1 = Instant::now();
        let feeds = Self::feed_plan(name, &graph, model, &batches)?;
        let mut program = compile_graph_tuned(graph, opts)?;
        let t2 = Instant::now();
        for var in program.var_names() {
            let value = match model.get_weight(&var) {
                Some(v) => v,
                None => {
                    let ty = program
                        .var(&var)
                        .map(|t| t.ty.clone())
                        .ok_or_else(|| BenchError::Invalid(format!("no variable '{var}'")))?;
                    HostTensor::zeros(&ty)
                }
            };
            program
                .set_var(&var, &value)
                .map_err(rt(format!("loading variable '{var}'")))?;
        }
        Ok(Session {
            name: name.to_string(),
            program,
            batches,
            compile: CompileTimes {
                graph_s: (t1 - t0).as_secs_f64(),
                engine_s: (t2 - t1).as_secs_f64(),
            },
            lr,
            flops_per_step,
            feeds,
            step: 0,
        })
    }

    /// Where each input of the training graph `g` comes from; every input
    /// must be a model input, a target, or one of the step scalars, and
    /// `batches` must hold an array for every model input and output.
    fn feed_plan(
        name: &str,
        g: &Graph,
        model: &Model,
        batches: &Batches,
    ) -> Result<Vec<(String, Source)>> {
        let (n_in, n_out) = (model.input_names().len(), model.output_names().len());
        if batches.xs.is_empty()
            || batches.xs.len() != batches.ys.len()
            || batches
                .xs
                .iter()
                .zip(&batches.ys)
                .any(|(x, y)| x.len() != n_in || y.len() != n_out)
        {
            return Err(BenchError::Invalid(format!(
                "workload '{name}': the batches do not match the model's {n_in} input(s) and {n_out} output(s)"
            )));
        }
        let xs: Vec<String> = (0..n_in).map(|i| model.input_feed_name(i)).collect();
        let ys: Vec<String> = (0..n_out).map(|o| model.target_feed_name(o)).collect();
        let plan: Vec<(String, Source)> = g
            .inputs()
            .into_iter()
            .map(|(input, _)| {
                let src = if let Some(i) = xs.iter().position(|x| *x == input) {
                    Source::X(i)
                } else if let Some(o) = ys.iter().position(|y| *y == input) {
                    Source::Y(o)
                } else if input == names::LR_INPUT {
                    Source::Lr
                } else if input == names::ITERATION_INPUT {
                    Source::Iteration
                } else if input == names::RNG_STEP_INPUT {
                    Source::RngStep
                } else {
                    return Err(BenchError::Invalid(format!(
                        "workload '{name}': the training graph has an unexpected input '{input}'"
                    )));
                };
                Ok((input, src))
            })
            .collect::<Result<_>>()?;
        if plan.len() > MAX_FEEDS {
            return Err(BenchError::Invalid(format!(
                "workload '{name}': the training graph has {} inputs; the harness feeds at most {MAX_FEEDS}",
                plan.len()
            )));
        }
        Ok(plan)
    }

    fn scalars(&self) -> StepScalars {
        StepScalars {
            lr: [self.lr],
            it: [self.step as f32],
            rng_step: [self.step as i32],
        }
    }

    /// Runs one training step on batch `step % 4` and returns its loss (at the
    /// weights before the update, as `train_on_batch` reports it).
    pub fn step(&mut self) -> Result<f32> {
        let i = (self.step % self.batches.xs.len() as u64) as usize;
        let sc = self.scalars();
        let (feeds, n) = feeds_for(&self.feeds, &self.batches, i, &sc);
        self.program
            .run(&feeds[..n])
            .map_err(rt(format!("step {} of '{}'", self.step, self.name)))?;
        self.step += 1;
        self.program
            .output(names::LOSS)
            .and_then(|t| t.as_f32().and_then(|v| v.first().copied()))
            .ok_or_else(|| {
                BenchError::Invalid("the training graph has no f32 'loss' output".into())
            })
    }

    /// Per-step time of each part of the compiled step (kernels, GEMMs,
    /// update copies, feed copies), best of `steps` runs on batch 0, in
    /// nanoseconds, in step order. JIT engine only.
    pub fn profile(&mut self, steps: usize) -> Result<Vec<(String, f64)>> {
        let sc = self.scalars();
        let (feeds, n) = feeds_for(&self.feeds, &self.batches, 0, &sc);
        self.program
            .profile(&feeds[..n], steps)
            .map_err(rt(format!("profiling '{}'", self.name)))
    }

    /// Runs `n` steps; returns the last loss.
    pub fn run(&mut self, n: usize) -> Result<f32> {
        let mut loss = f32::NAN;
        for _ in 0..n {
            loss = self.step()?;
        }
        Ok(loss)
    }
}

/// Settings of one measurement.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Steps per repetition (0 = the workload's default).
    pub steps: usize,
    /// Repetitions (0 = the workload's default).
    pub reps: usize,
    /// Threads (0 = the engine's default).
    pub threads: usize,
    /// The engine.
    pub engine: EngineChoice,
    /// Untimed steps after the first one.
    pub warmup: usize,
    /// The JIT's minimum work per split kernel (0 = its default).
    pub split_min_work: usize,
    /// The JIT's GEMM routine for large matmuls.
    pub gemm: GemmImpl,
    /// Convolutions as implicit-GEMM calls where the host has them (false:
    /// im2col + GEMM).
    pub conv_calls: bool,
    /// Poolings as calls on the image where the host has them (false: the
    /// unfold + argmax/one_hot composite).
    pub pool_calls: bool,
}

impl BenchOptions {
    /// The defaults with `engine` and `threads` (0 = the engine's default).
    pub fn with_engine(engine: EngineChoice, threads: usize) -> BenchOptions {
        BenchOptions {
            engine,
            threads,
            ..BenchOptions::default()
        }
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            steps: 0,
            reps: 0,
            threads: 0,
            engine: EngineChoice::Jit,
            warmup: 20,
            split_min_work: 0,
            gemm: GemmImpl::Lossgraph,
            conv_calls: true,
            pool_calls: true,
        }
    }
}

/// The figures of one measurement (the peers' keys, plus a few extras).
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    /// `lossgraph` (or `lossgraph.<name>` for auxiliary rows).
    pub peer: String,
    /// The workload name.
    pub workload: String,
    /// Median of the per-repetition steps/s.
    pub steps_per_s_median: f64,
    /// Slowest repetition.
    pub steps_per_s_min: f64,
    /// Fastest repetition.
    pub steps_per_s_max: f64,
    /// `median · flops_per_step / 1e9`.
    pub gflops: f64,
    /// Graph plus engine compile time.
    pub compile_s: f64,
    /// The graph part of `compile_s` (tracing, losses, autodiff, optimiser, passes).
    pub compile_graph_s: f64,
    /// The engine part of `compile_s` (fusion, memory plan, Cranelift, JIT).
    pub compile_engine_s: f64,
    /// Wall time of the first step.
    pub first_step_s: f64,
    /// Process high-water mark (`VmHWM`), MiB; 0 where unknown.
    pub peak_rss_mib: f64,
    /// Repetitions.
    pub reps: usize,
    /// Steps per repetition.
    pub steps: usize,
    /// Threads used.
    pub threads: usize,
    /// Loss after the last step.
    pub final_loss: f64,
    /// Engine name.
    pub engine: &'static str,
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".to_string()
    }
}

/// The keys every peer script of `shared/bench` prints in its JSON line;
/// [`BenchResult::to_json`] prints them all (and a few more).
pub const PEER_KEYS: [&str; 10] = [
    "peer",
    "workload",
    "steps_per_s_median",
    "steps_per_s_min",
    "steps_per_s_max",
    "gflops",
    "compile_s",
    "peak_rss_mib",
    "reps",
    "threads",
];

impl BenchResult {
    /// One JSON line with the peers' keys (`peer`, `workload`,
    /// `steps_per_s_median/min/max`, `gflops`, `compile_s`, `peak_rss_mib`,
    /// `reps`, `threads`) plus `steps`, `first_step_s`, `final_loss`, `engine`.
    pub fn to_json(&self) -> String {
        let v = serde_json::json!({
            "peer": self.peer,
            "workload": self.workload,
            "steps_per_s_median": round(self.steps_per_s_median, 2),
            "steps_per_s_min": round(self.steps_per_s_min, 2),
            "steps_per_s_max": round(self.steps_per_s_max, 2),
            "gflops": round(self.gflops, 3),
            "compile_s": round(self.compile_s, 4),
            "compile_graph_s": round(self.compile_graph_s, 4),
            "compile_engine_s": round(self.compile_engine_s, 4),
            "first_step_s": round(self.first_step_s, 4),
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "reps": self.reps,
            "steps": self.steps,
            "threads": self.threads,
            "final_loss": if self.final_loss.is_finite() { serde_json::json!(self.final_loss) } else { serde_json::Value::Null },
            "engine": self.engine,
        });
        v.to_string()
    }
}

impl fmt::Display for BenchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {} ({} engine, {} thread(s)): {} reps × {} steps",
            self.peer, self.workload, self.engine, self.threads, self.reps, self.steps
        )?;
        writeln!(
            f,
            "  steps/s  median {:.1}  [min {:.1} – max {:.1}]",
            self.steps_per_s_median, self.steps_per_s_min, self.steps_per_s_max
        )?;
        writeln!(
            f,
            "  GFLOP/s  {:.3} (6·batch·weights convention)",
            self.gflops
        )?;
        writeln!(
            f,
            "  compile  {:.2} ms (graph {:.2} ms, engine {:.2} ms), first step {:.2} ms",
            self.compile_s * 1e3,
            self.compile_graph_s * 1e3,
            self.compile_engine_s * 1e3,
            self.first_step_s * 1e3
        )?;
        writeln!(f, "  peak RSS {:.1} MiB", self.peak_rss_mib)?;
        write!(f, "  final loss {}", json_num(self.final_loss))
    }
}

/// Median of a non-empty list (mean of the middle two for even lengths); NaN if empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The `VmHWM` line of a `/proc/<pid>/status` text, in MiB.
pub fn parse_vmhwm_mib(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line
        .trim_start_matches("VmHWM:")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// This process's peak resident set (`VmHWM`), MiB; `None` off Linux.
pub fn peak_rss_mib() -> Option<f64> {
    parse_vmhwm_mib(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// Times `reps` repetitions of `steps` calls of `f`; returns steps/s per repetition.
pub fn time_reps(
    steps: usize,
    reps: usize,
    mut f: impl FnMut(usize) -> Result<()>,
) -> Result<Vec<f64>> {
    let mut rates = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f(steps)?;
        rates.push(steps as f64 / t.elapsed().as_secs_f64());
    }
    Ok(rates)
}

/// Builds, compiles and times workload `w` (steps and repetitions: the
/// workload's defaults unless `opts` sets them).
pub fn measure(w: &Workload, opts: &BenchOptions) -> Result<BenchResult> {
    let steps = if opts.steps > 0 { opts.steps } else { w.steps };
    let reps = if opts.reps > 0 { opts.reps } else { w.reps };
    let mut s = Session::tuned(w, opts)?;
    measure_session(&mut s, steps, reps, opts)
}

/// Times a compiled session: one first step (timed alone), `opts.warmup`
/// untimed steps, then `reps` repetitions of `steps` steps ([`time_reps`]).
/// GFLOP/s are `median steps/s · s.flops_per_step / 1e9`; `opts.engine` and
/// `opts.threads` are reported as given (they must be what `s` was compiled with).
pub fn measure_session(
    s: &mut Session,
    steps: usize,
    reps: usize,
    opts: &BenchOptions,
) -> Result<BenchResult> {
    if steps == 0 || reps == 0 {
        return Err(BenchError::Invalid(format!(
            "workload '{}': steps and reps must be at least 1",
            s.name
        )));
    }
    let t = Instant::now();
    s.step()?;
    let first_step_s = t.elapsed().as_secs_f64();
    s.run(opts.warmup)?;
    let mut last = f32::NAN;
    let rates = time_reps(steps, reps, |n| {
        last = s.run(n)?;
        Ok(())
    })?;
    let med = median(&rates);
    Ok(BenchResult {
        peer: "lossgraph".into(),
        workload: s.name.clone(),
        steps_per_s_median: med,
        steps_per_s_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
        steps_per_s_max: rates.iter().copied().fold(0.0, f64::max),
        gflops: med * s.flops_per_step / 1e9,
        compile_s: s.compile.total_s(),
        compile_graph_s: s.compile.graph_s,
        compile_engine_s: s.compile.engine_s,
        first_step_s,
        peak_rss_mib: peak_rss_mib().unwrap_or(0.0),
        reps,
        steps,
        threads: match opts.engine {
            EngineChoice::Jit => effective_threads(opts.threads),
            EngineChoice::Interp => 1,
        },
        final_loss: last as f64,
        engine: match opts.engine {
            EngineChoice::Jit => "jit",
            EngineChoice::Interp => "interp",
        },
    })
}

/// A graph of params only whose outputs are the matmuls of `w`'s training
/// step with their exact shapes and transpositions ([`Workload::products`]):
/// forward `X·W`, weight gradient `Xᵀ·D`, input gradient `D·Wᵀ` (all layers
/// but the first); a convolution's `X` is its im2col matrix.
/// Running it compiled measures the GEMM routine alone, as the engine calls it.
pub fn gemm_graph(w: &Workload) -> Result<Graph> {
    let b = Builder::new(format!("{}_gemms", w.name));
    for (l, p) in w.products().iter().enumerate() {
        let (n, k, m) = (w.batch * p.rows, p.k, p.m);
        let x = b.param(&format!("x{l}"), TensorType::f32([n, k]));
        let wt = b.param(&format!("w{l}"), TensorType::f32([k, m]));
        let d = b.param(&format!("d{l}"), TensorType::f32([n, m]));
        b.output(&format!("fwd{l}"), &x.matmul(&wt));
        b.output(&format!("dw{l}"), &x.matmul_t(&d, true, false));
        if l > 0 {
            b.output(&format!("dx{l}"), &d.matmul_t(&wt, false, true));
        }
    }
    b.finish()
        .map_err(|e| BenchError::Invalid(format!("building the GEMM graph: {e}")))
}

/// Fills every f32 variable of `program` with N(0,1)/sqrt(numel of last axis) values.
pub fn randomize_vars(program: &mut Program, rng: &mut SplitMix64) -> Result<()> {
    for name in program.var_names() {
        let ty = program
            .var(&name)
            .map(|t| t.ty.clone())
            .ok_or_else(|| BenchError::Invalid(format!("no variable '{name}'")))?;
        let t = match ty.dtype {
            DType::F32 => {
                let scale = 1.0 / (ty.shape.last().copied().unwrap_or(1).max(1) as f64).sqrt();
                let v = (0..ty.numel())
                    .map(|_| (rng.normal() * scale) as f32)
                    .collect();
                HostTensor::f32(&ty.shape, v)
            }
            DType::I32 => HostTensor::i32(&ty.shape, vec![0; ty.numel()]),
        }
        .ok_or_else(|| BenchError::Invalid(format!("variable '{name}': bad value length")))?;
        program
            .set_var(&name, &t)
            .map_err(rt(format!("setting '{name}'")))?;
    }
    Ok(())
}

/// GFLOP/s of the GEMM routine alone on `w`'s training-step shapes
/// ([`gemm_graph`]), by true FLOPs; returns (median GFLOP/s, per-rep GFLOP/s).
pub fn measure_gemms(
    w: &Workload,
    threads: usize,
    steps: usize,
    reps: usize,
) -> Result<(f64, Vec<f64>)> {
    let mut p = compile_graph(gemm_graph(w)?, EngineChoice::Jit, threads)?;
    randomize_vars(&mut p, &mut SplitMix64::new(SEED))?;
    p.run(&[]).map_err(rt("GEMM graph"))?;
    let rates = time_reps(steps, reps, |n| {
        for _ in 0..n {
            p.run(&[]).map_err(rt("GEMM graph"))?;
        }
        Ok(())
    })?;
    let g: Vec<f64> = rates
        .iter()
        .map(|r| r * w.true_matmul_flops() / 1e9)
        .collect();
    Ok((median(&g), g))
}

/// The kernels benchmarked on their own (criterion benches): each is a small
/// graph that compiles to one fused kernel or one GEMM call.
pub const KERNELS: [&str; 5] = [
    "gemm_mnist",
    "gemm_wide",
    "elementwise",
    "softmax_ce",
    "adam",
];

/// The graph of kernel `name` (one of [`KERNELS`]):
/// * `gemm_mnist` / `gemm_wide`: one `x·W` of the first layer of `mnist`
///   (64×784·784×128) / the middle layer of `wide` (256×2048·2048×2048);
/// * `elementwise`: `tanh(x·0.5 + 1)·x − 0.25` over 256×1024 elements (one fused loop);
/// * `softmax_ce`: sparse categorical crossentropy from logits (64×10) and its
///   gradient, as the front end's loss emits it;
/// * `adam`: the front end's Adam update of a 784×128 kernel (m, v, weight, in place).
pub fn kernel_graph(name: &str) -> Result<Graph> {
    let b = Builder::new(name);
    match name {
        "gemm_mnist" | "gemm_wide" => {
            let (n, k, m) = if name == "gemm_mnist" {
                (64, 784, 128)
            } else {
                (256, 2048, 2048)
            };
            let x = b.param("x", TensorType::f32([n, k]));
            let w = b.param("w", TensorType::f32([k, m]));
            b.output("y", &x.matmul(&w));
        }
        "elementwise" => {
            let x = b.param("x", TensorType::f32([256, 1024]));
            let y = ((&x * 0.5 + 1.0).tanh() * &x) - 0.25;
            b.output("y", &y);
        }
        "softmax_ce" => {
            let logits = b.param("logits", TensorType::f32([64, 10]));
            let y = b.input("y", TensorType::i32([64]));
            let loss = Loss::SparseCategoricalCrossentropy { from_logits: true }.emit(&y, &logits);
            b.output(names::LOSS, &loss);
            let (lid, pid) = (loss.id(), logits.id());
            let mut g = b
                .finish()
                .map_err(|e| BenchError::Invalid(format!("kernel '{name}': {e}")))?;
            lossgraph_compiler::autodiff::append_gradients(&mut g, lid, &[pid])
                .map_err(|e| BenchError::Invalid(format!("kernel '{name}': {e}")))?;
            return Ok(g);
        }
        "adam" => {
            let w = b.param("w", TensorType::f32([784, 128]));
            let g = b.param("g", TensorType::f32([784, 128]));
            let lr = b.input(names::LR_INPUT, TensorType::scalar());
            let it = b.input(names::ITERATION_INPUT, TensorType::scalar());
            Optimizer::adam(1e-3)
                .emit_updates(&b, &[("w".to_string(), w, g)], &lr, &it)
                .map_err(|e| BenchError::Invalid(format!("kernel '{name}': {e}")))?;
        }
        _ => {
            return Err(BenchError::Invalid(format!(
                "unknown kernel '{name}' (expected one of {KERNELS:?})"
            )))
        }
    }
    b.finish()
        .map_err(|e| BenchError::Invalid(format!("kernel '{name}': {e}")))
}

/// A compiled kernel graph with random variables and fixed feeds.
pub struct KernelRunner {
    /// The compiled graph.
    pub program: Program,
    feeds: Vec<(String, HostTensor)>,
}

impl KernelRunner {
    /// Compiles kernel `name` ([`kernel_graph`]) for `engine` with `threads`
    /// (0 = default), fills its variables with random values and prepares
    /// feeds (`lr` 1e-3, `iteration` 3, labels uniform).
    pub fn new(name: &str, engine: EngineChoice, threads: usize) -> Result<KernelRunner> {
        let opts = BenchOptions::with_engine(engine, threads);
        KernelRunner::with_options(name, &opts)
    }

    /// [`KernelRunner::new`] with every engine setting of `opts` (e.g. the
    /// GEMM routine).
    pub fn with_options(name: &str, opts: &BenchOptions) -> Result<KernelRunner> {
        let g = kernel_graph(name)?;
        let mut rng = SplitMix64::new(SEED);
        let mut feeds = Vec::new();
        for (input, id) in g.inputs() {
            let ty = g.node(id).ty.clone();
            let t = if input == names::LR_INPUT {
                HostTensor::scalar(1e-3)
            } else if input == names::ITERATION_INPUT {
                HostTensor::scalar(3.0)
            } else if ty.dtype == DType::I32 {
                let v = (0..ty.numel()).map(|_| rng.below(10) as i32).collect();
                HostTensor::i32(&ty.shape, v).ok_or_else(|| {
                    BenchError::Invalid(format!("kernel '{name}': bad feed '{input}'"))
                })?
            } else {
                let v = (0..ty.numel()).map(|_| rng.normal() as f32).collect();
                HostTensor::f32(&ty.shape, v).ok_or_else(|| {
                    BenchError::Invalid(format!("kernel '{name}': bad feed '{input}'"))
                })?
            };
            feeds.push((input, t));
        }
        let mut program = compile_graph_tuned(g, opts)?;
        randomize_vars(&mut program, &mut rng)?;
        // Optimiser state starts at zero, as in training (Adam's v must be ≥ 0).
        for name in program.var_names() {
            if name.starts_with("optimizer/") {
                let ty = program
                    .var(&name)
                    .map(|t| t.ty.clone())
                    .ok_or_else(|| BenchError::Invalid(format!("no variable '{name}'")))?;
                program
                    .set_var(&name, &HostTensor::zeros(&ty))
                    .map_err(rt(format!("setting '{name}'")))?;
            }
        }
        Ok(KernelRunner { program, feeds })
    }

    /// Runs the kernel once.
    pub fn run(&mut self) -> Result<()> {
        let feeds: Vec<(&str, Feed<'_>)> = self
            .feeds
            .iter()
            .map(|(n, t)| (n.as_str(), Feed::of(t)))
            .collect();
        self.program.run(&feeds).map_err(rt("kernel"))
    }
}

/// The `bench` subcommand's arguments: a standard WORKLOAD or `--model`.
#[derive(Clone, Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["workload", "model"])))]
pub struct BenchArgs {
    /// Workload: tiny, mnist, wide or cnn (see shared/bench/WORKLOADS.md); or give --model.
    pub workload: Option<String>,
    /// Time a Keras 3 model (MODEL.json from `model.to_json()`, or MODEL.keras)
    /// instead of a standard workload; its workload name is the file stem
    /// (the folder name for `model.json`).
    #[arg(long, value_name = "MODEL.json|MODEL.keras")]
    pub model: Option<PathBuf>,
    /// With --model: loss for every output (mse, mae, huber, binary_crossentropy,
    /// categorical_crossentropy, sparse_categorical_crossentropy; `:logits` suffix
    /// for from_logits). Default: mse.
    #[arg(long, conflicts_with = "workload")]
    pub loss: Option<String>,
    /// With --model: optimizer as NAME[:LEARNING_RATE] (sgd, adam, adamw, rmsprop). Default: sgd.
    #[arg(long, conflicts_with = "workload")]
    pub optimizer: Option<String>,
    /// With --model: learning rate (overrides the optimizer's).
    #[arg(long, conflicts_with = "workload")]
    pub lr: Option<f32>,
    /// Samples per batch (default: 32 for --model, the workload's otherwise).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Steps per repetition (default: 500 tiny, 300 mnist, 20 wide and cnn, 100 --model).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Repetitions (default: 7, wide, cnn and --model 5).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Threads for kernels and GEMMs (default: the engine's, up to 2).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON line with the peers' keys.
    #[arg(long)]
    pub json: bool,
    /// Engine: jit or interp.
    #[arg(long, default_value = "jit")]
    pub engine: String,
    /// Also time the step's GEMMs alone on the same shapes (extra JSON line
    /// `lossgraph.gemm`); standard workloads only.
    #[arg(long, conflicts_with = "model")]
    pub gemm: bool,
    /// Also print where a step's time goes: each kernel, GEMM and copy
    /// (best of 50 steps), and the time spent outside JIT code.
    #[arg(long)]
    pub profile: bool,
    /// Tuning: the JIT's minimum work before a kernel is split across threads.
    #[arg(long)]
    pub split_min_work: Option<usize>,
    /// GEMM routine for large matmuls: lossgraph (own AVX-512 kernels; the
    /// gemm crate on hosts without AVX-512) or crate (the gemm crate)
    #[arg(long, default_value = "lossgraph")]
    pub gemm_impl: String,
    /// Convolutions: on (implicit-GEMM calls on the image, where the host
    /// has AVX-512) or off (im2col + GEMM)
    #[arg(long, default_value = "on")]
    pub conv_calls: String,
    /// Poolings: on (max and window-sum calls on the image) or off (the
    /// unfold + argmax/one_hot composite)
    #[arg(long, default_value = "on")]
    pub pool_calls: String,
}

/// The per-part breakdown of one step of session `s` (see
/// [`Session::profile`]) as text, with the share of the measured step time
/// (`steps_per_s`) that is spent outside the profiled parts (dispatch,
/// binding, reading the loss). Runs 5 warm-up steps, then profiles 50.
pub fn profile_report(s: &mut Session, steps_per_s: f64) -> Result<String> {
    s.run(5)?;
    let parts = s.profile(50)?;
    let total: f64 = parts.iter().map(|p| p.1).sum();
    let step_ns = 1e9 / steps_per_s;
    let mut sorted = parts.clone();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut out = format!(
        "profile of one '{}' step (best of 50, ns): parts {:.0} ns, measured step {:.0} ns, outside the parts {:.0} ns ({:.0}%)",
        s.name,
        total,
        step_ns,
        (step_ns - total).max(0.0),
        100.0 * (step_ns - total).max(0.0) / step_ns
    );
    for (name, ns) in sorted.iter().take(15) {
        out.push_str(&format!(
            "\n  {ns:>10.0} ns {:>5.1}%  {name}",
            100.0 * ns / total.max(1.0)
        ));
    }
    if let Some(p) = s.program.plan_text() {
        let kernels = p
            .lines()
            .filter(|l| l.trim_start().starts_with("kernel"))
            .count();
        out.push_str(&format!(
            "\n  ({} parts, {kernels} kernel lines in the fused plan)",
            parts.len()
        ));
    }
    Ok(out)
}

/// Runs the `bench` subcommand and returns what to print.
pub fn run_cli(a: &BenchArgs) -> Result<String> {
    let opts = BenchOptions {
        steps: a.steps.unwrap_or(0),
        reps: a.reps.unwrap_or(0),
        threads: a.threads.unwrap_or(0),
        engine: EngineChoice::parse(&a.engine)?,
        split_min_work: a.split_min_work.unwrap_or(0),
        gemm: match a.gemm_impl.as_str() {
            "lossgraph" => GemmImpl::Lossgraph,
            "crate" => GemmImpl::Crate,
            other => {
                return Err(BenchError::Invalid(format!(
                    "--gemm-impl: unknown GEMM routine '{other}' (lossgraph or crate)"
                )))
            }
        },
        conv_calls: match a.conv_calls.as_str() {
            "on" => true,
            "off" => false,
            other => {
                return Err(BenchError::Invalid(format!(
                    "--conv-calls: '{other}' (on or off)"
                )))
            }
        },
        pool_calls: match a.pool_calls.as_str() {
            "on" => true,
            "off" => false,
            other => {
                return Err(BenchError::Invalid(format!(
                    "--pool-calls: '{other}' (on or off)"
                )))
            }
        },
        ..BenchOptions::default()
    };
    let pick = |given: usize, default: usize| if given > 0 { given } else { default };
    // The session, its steps and reps, and the standard workload if any.
    let (mut s, steps, reps, standard) = match (&a.model, &a.workload) {
        (Some(path), None) => {
            let mb = model::ModelBench::from_args(
                path,
                a.loss.as_deref(),
                a.optimizer.as_deref(),
                a.lr,
                a.batch,
            )?;
            let s = mb.session(&opts)?;
            let steps = pick(opts.steps, model::DEFAULT_STEPS);
            (s, steps, pick(opts.reps, model::DEFAULT_REPS), None)
        }
        (None, Some(name)) => {
            let mut w = *workload(name)?;
            if let Some(b) = a.batch {
                if b == 0 {
                    return Err(BenchError::Invalid(
                        "--batch: the batch size must be at least 1".into(),
                    ));
                }
                w.batch = b;
            }
            let s = Session::tuned(&w, &opts)?;
            (
                s,
                pick(opts.steps, w.steps),
                pick(opts.reps, w.reps),
                Some(w),
            )
        }
        _ => {
            return Err(BenchError::Invalid(format!(
                "give either a WORKLOAD ({}) or --model MODEL.json",
                workload_names()
            )))
        }
    };
    let r = measure_session(&mut s, steps, reps, &opts)?;
    let mut out = if a.json { r.to_json() } else { r.to_string() };
    if a.profile {
        out.push('\n');
        out.push_str(&profile_report(&mut s, r.steps_per_s_median)?);
    }
    if a.gemm {
        let Some(w) = standard else {
            return Err(BenchError::Invalid(format!(
                "--gemm needs a standard workload ({})",
                workload_names()
            )));
        };
        let (g, all) = measure_gemms(&w, opts.threads, steps, reps)?;
        let step_true = r.steps_per_s_median * w.true_matmul_flops() / 1e9;
        if a.json {
            let v = serde_json::json!({
                "peer": "lossgraph.gemm",
                "workload": w.name,
                "gemm_gflops_median": round(g, 2),
                "gemm_gflops_min": round(all.iter().copied().fold(f64::INFINITY, f64::min), 2),
                "gemm_gflops_max": round(all.iter().copied().fold(0.0, f64::max), 2),
                "step_true_gflops": round(step_true, 2),
                "threads": effective_threads(opts.threads),
            });
            out.push('\n');
            out.push_str(&v.to_string());
        } else {
            out.push_str(&format!(
                "\n  GEMMs alone on the step's shapes: {g:.1} GFLOP/s (true FLOPs); step: {step_true:.1} GFLOP/s true ({:.0}% of the GEMMs)",
                100.0 * step_true / g
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_match_workloads_md() {
        // Figures copied from shared/bench/WORKLOADS.md.
        assert_eq!(workload("tiny").unwrap().kernel_weights(), 1_312);
        assert_eq!(workload("tiny").unwrap().flops_per_step(), 251_904.0);
        assert_eq!(workload("mnist").unwrap().flops_per_step(), 39_026_688.0);
        assert_eq!(workload("wide").unwrap().kernel_weights(), 8_388_608);
        assert_eq!(workload("wide").unwrap().flops_per_step(), 12_884_901_888.0);
        // wide: 2·256·(2·8388608 + 4194304 + 2097152) = 11,811,160,064 (≈ 5.5/6 of the convention).
        assert_eq!(
            workload("wide").unwrap().true_matmul_flops(),
            11_811_160_064.0
        );
        // cnn: MACs per sample 194,688 + 2,230,272 + 16,000 = 2,440,960.
        let cnn = workload("cnn").unwrap();
        assert_eq!(cnn.macs_per_sample(), 2_440_960);
        assert_eq!(cnn.flops_per_step(), 1_874_657_280.0);
        assert_eq!(cnn.input_shape(), [28, 28, 1]);
        let kernels: Vec<Vec<usize>> = cnn.products().into_iter().map(|p| p.kernel).collect();
        assert_eq!(kernels, [&[3, 3, 1, 32][..], &[3, 3, 32, 64], &[1600, 10]]);
        assert!(matches!(
            workload("huge"),
            Err(BenchError::UnknownWorkload(_))
        ));
    }

    /// The cnn workload is the keras.io convnet: its summary counts 34,826
    /// parameters (the figure keras.io prints), its kernels are Glorot-uniform
    /// with conv fans `kh·kw·cin`/`kh·kw·cout`, and a step (dropout on, L2 on
    /// every kernel) gives the same loss on the JIT and the interpreter.
    /// Batch 4 instead of 128 keeps the interpreter fast.
    #[test]
    fn cnn_builds_and_steps_on_both_engines() {
        let mut w = *workload("cnn").unwrap();
        w.batch = 4;
        let (k, _) = generate(&w, &mut SplitMix64::new(SEED));
        let lim = (6.0f64 / (9.0 + 9.0 * 32.0)).sqrt() as f32;
        assert!(k[0].iter().all(|v| v.abs() <= lim));
        assert!(k[0].iter().any(|v| v.abs() > 0.9 * lim));
        let model = build_model(&w, &k).unwrap();
        assert_eq!(model.count_params(), 34_826);
        let losses = model.losses().unwrap();
        assert_eq!(losses.len(), 3, "an L2 term per kernel: {losses:?}");
        let mut a = Session::new(&w, EngineChoice::Interp, 1).unwrap();
        let mut b = Session::new(&w, EngineChoice::Jit, 0).unwrap();
        assert!(b.feeds.iter().any(|f| matches!(f.1, Source::RngStep)));
        for step in 0..2 {
            let (la, lb) = (a.step().unwrap(), b.step().unwrap());
            assert!(
                (la - lb).abs() <= 1e-4 * la.abs().max(1.0),
                "step {step}: {la} vs {lb}"
            );
            // 10 classes from a Glorot init: near ln 10 = 2.30 (+ a tiny L2 term).
            assert!(la > 1.5 && la < 4.0, "step {step}: loss {la}");
        }
    }

    #[test]
    fn kernels_are_glorot_uniform() {
        let (k, _) = generate(workload("mnist").unwrap(), &mut SplitMix64::new(SEED));
        let lim = (6.0f64 / (784.0 + 128.0)).sqrt() as f32;
        assert!(k[0].iter().all(|v| v.abs() <= lim));
        assert!(k[0].iter().any(|v| *v > 0.9 * lim) && k[0].iter().any(|v| *v < -0.9 * lim));
    }

    #[test]
    fn generated_data_has_workload_shapes() {
        let w = workload("mnist").unwrap();
        let (k, b) = generate(w, &mut SplitMix64::new(SEED));
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].len(), 784 * 128);
        assert_eq!(b.xs.len(), N_BATCHES);
        assert_eq!(b.batch, 64);
        assert_eq!(b.xs[3].len(), 1);
        assert_eq!(b.xs[3][0].shape(), [64, 784]);
        assert_eq!(b.ys[0][0].shape(), [64]);
        let labels = b.ys[0][0].as_i32().expect("mnist has class labels");
        assert!(labels.iter().all(|c| (0..10).contains(c)));
    }

    #[test]
    fn median_and_vmhwm() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vmhwm_mib(status), Some(2.0));
        assert_eq!(parse_vmhwm_mib("VmRSS: 1 kB"), None);
    }

    #[test]
    fn json_line_has_the_peer_keys() {
        let r = BenchResult {
            peer: "lossgraph".into(),
            workload: "tiny".into(),
            steps_per_s_median: 1000.0,
            steps_per_s_min: 900.0,
            steps_per_s_max: 1100.0,
            gflops: 0.251904,
            compile_s: 0.01,
            compile_graph_s: 0.004,
            compile_engine_s: 0.006,
            first_step_s: 0.001,
            peak_rss_mib: 10.0,
            reps: 7,
            steps: 500,
            threads: 2,
            final_loss: f64::NAN,
            engine: "jit",
        };
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for k in PEER_KEYS {
            assert!(v.get(k).is_some(), "missing key {k}");
        }
        assert_eq!(v["peer"], "lossgraph");
        assert_eq!(v["steps_per_s_median"], 1000.0);
        assert!(v["final_loss"].is_null());
    }

    #[test]
    fn tiny_trains_on_the_interpreter_and_the_jit_alike() {
        let w = workload("tiny").unwrap();
        let mut a = Session::new(w, EngineChoice::Interp, 1).unwrap();
        let mut b = Session::new(w, EngineChoice::Jit, 1).unwrap();
        let mut first = None;
        for _ in 0..8 {
            let la = a.step().unwrap();
            let lb = b.step().unwrap();
            assert!((la - lb).abs() <= 1e-4 * la.abs().max(1.0), "{la} vs {lb}");
            first.get_or_insert(la);
        }
        // The loss at step 0: MSE of a Glorot MLP against N(0,1) targets plus a
        // small L2 term is of order 1 (targets' variance).
        let l0 = first.unwrap();
        assert!(l0 > 0.3 && l0 < 5.0, "initial loss {l0}");
        // 4 batches cycled: after 8 steps, batch 0 again, loss lower after SGD.
        let again = a.step().unwrap();
        assert!(again < l0, "{again} !< {l0}");
    }

    #[test]
    fn kernels_agree_with_the_interpreter() {
        for k in KERNELS {
            if k == "gemm_wide" {
                continue; // too slow on the interpreter; gemm_mnist covers the path
            }
            let mut a = KernelRunner::new(k, EngineChoice::Interp, 1).unwrap();
            let mut b = KernelRunner::new(k, EngineChoice::Jit, 1).unwrap();
            a.run().unwrap();
            b.run().unwrap();
            let outs: Vec<String> = a
                .program
                .graph()
                .outputs()
                .iter()
                .map(|o| o.0.clone())
                .collect();
            assert!(!outs.is_empty());
            for o in outs {
                let x = a.program.output(&o).unwrap().as_f32().unwrap().to_vec();
                let y = b.program.output(&o).unwrap().as_f32().unwrap().to_vec();
                assert_eq!(x.len(), y.len());
                for (p, q) in x.iter().zip(&y) {
                    assert!(
                        (p - q).abs() <= 1e-4 * p.abs().max(1.0),
                        "{k}/{o}: {p} vs {q}"
                    );
                }
            }
        }
    }

    #[test]
    fn profile_lists_kernels_gemms_and_copies() {
        let w = workload("mnist").unwrap();
        let mut s = Session::new(w, EngineChoice::Jit, 1).unwrap();
        let parts = s.profile(3).unwrap();
        assert!(parts.iter().any(|p| p.0 == "feed copies"));
        // Parts are labelled `#i kK kind @layer role type xT`.
        assert!(parts
            .iter()
            .any(|p| p.0.starts_with("#0 k0 gemm @dense forward f32[64,128] x1")));
        assert!(parts.iter().any(|p| p.0.contains(" elementwise @")));
        assert!(parts.iter().any(|p| p
            .0
            .contains(" reduce @dense added_loss(kernel_regularizer) f32[] x1")));
        assert!(parts.iter().all(|p| p.1 >= 0.0 && p.1.is_finite()));
        // Profiling runs the step: it must not disturb the loss of the next one.
        assert!(s.step().unwrap().is_finite());
    }

    #[test]
    fn gemm_graph_has_the_step_shapes() {
        let g = gemm_graph(workload("wide").unwrap()).unwrap();
        assert_eq!(g.outputs().len(), 8);
        // Layer 1 is 2048 → 2048: its input gradient is batch × 2048.
        let dx1 = g.node(g.output("dx1").unwrap()).ty.shape.to_vec();
        assert_eq!(dx1, vec![256, 2048]);
        let dx2 = g.node(g.output("dx2").unwrap()).ty.shape.to_vec();
        assert_eq!(dx2, vec![256, 2048]);
        let dw2 = g.node(g.output("dw2").unwrap()).ty.shape.to_vec();
        assert_eq!(dw2, vec![2048, 1024]);
    }
}
