//! Argument definitions (clap derive) and the dispatch to each subcommand.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

mod commands;

/// A command-line failure: one line, printed as `error: …`.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError(e.to_string())
    }
}

/// Shorthand for building a [`CliError`].
pub fn fail<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

/// lossgraph: a Keras-style neural-network graph compiler with first-class `add_loss`.
#[derive(Parser, Debug)]
#[command(name = "lossgraph", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Which demo `lossgraph demo` runs: the two that share
/// [`lossgraph_cli::demo::run`] and the VAE.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DemoChoice {
    /// The MLP with three kinds of added loss.
    Mlp,
    /// The convnet for 8×8 images.
    Cnn,
    /// The Keras guide's variational autoencoder.
    Vae,
}

/// A pipeline stage to print with `dump-ir`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Stage {
    /// The forward graph with compiled-loss and added-loss nodes.
    Forward,
    /// The training step after differentiation and optimizer updates.
    Train,
    /// The training step after the optimisation passes.
    Optimized,
    /// The fused kernel plan.
    Fused,
    /// The Cranelift IR of each kernel.
    Clif,
}

/// Output format of `dump-ir`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The IR text format (parses back with `lossgraph_ir::text::parse`).
    Text,
    /// Graphviz DOT, added-loss nodes highlighted.
    Dot,
}

/// Arguments of `lossgraph train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The model: MODEL.keras (architecture and weights, as Keras's
    /// `model.save`) or MODEL.json (`model.to_json()`).
    pub model: PathBuf,
    /// Initial weights: .safetensors (tensors named `<layer>/<variable>`) or a
    /// Keras .weights.h5. Default: those of MODEL.keras; for MODEL.json, the
    /// initialisers.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Training data (safetensors: `x` and `y`, or `x/<input>` and `y/<output>`).
    #[arg(long)]
    pub data: PathBuf,
    /// Loss for every output (see `dump-ir --help` for the names).
    #[arg(long)]
    pub loss: String,
    /// Optimizer as NAME[:LEARNING_RATE] (sgd, adam, adamw, rmsprop).
    #[arg(long)]
    pub optimizer: String,
    /// Samples per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Passes over the data.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Write the trained model: OUT.keras (architecture and weights, loads
    /// in Keras), OUT.weights.h5 (Keras weights) or OUT.safetensors (rank 0 only
    /// under `mpirun`).
    #[arg(long, value_name = "OUT")]
    pub save: Option<PathBuf>,
    /// Under `mpirun -np N` (a build with the `mpi` feature): abort the
    /// job when one training step takes longer than this many seconds (a
    /// stalled rank). `--batch-size` stays the global batch: each rank
    /// trains on its 1/N of every batch.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub watchdog: f64,
    /// What to print on stderr, as Keras's `verbose`: 0 nothing, 1 a
    /// progress bar, 2 one line per epoch; auto is 1 on a terminal, 2
    /// otherwise (a file or a pipe).
    #[arg(long, value_name = "0|1|2|auto", default_value = "auto")]
    pub verbose: String,
    /// Hold out this fraction of the samples (the last ones, as Keras's
    /// `validation_split`) and log `val_` values each epoch.
    #[arg(long, value_name = "FRACTION")]
    pub validation_split: Option<f32>,
    /// The value the callbacks below watch (Keras's `monitor`). Default:
    /// `val_loss` with --validation-split, else `loss`.
    #[arg(long, value_name = "NAME")]
    pub monitor: Option<String>,
    /// Whether lower or higher --monitor values are better (auto: from the name).
    #[arg(long, value_name = "auto|min|max", default_value = "auto")]
    pub mode: String,
    /// Save during training (Keras's ModelCheckpoint) to PATH, formatted
    /// from `{epoch}` and the logged values (`ckpt-{epoch:02d}-{val_loss:.4f}.safetensors`):
    /// a checkpoint that resumes training exactly, or the weights with
    /// --save-weights-only. Every epoch, or with --save-best-only only when
    /// --monitor improves.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<String>,
    /// Resume from a checkpoint written by --checkpoint (without
    /// --save-weights-only): its weights, optimizer state and counters, from
    /// the epoch after the one it was saved at (Keras's `initial_epoch`), to
    /// --epochs; the weights are bit-identical to an uninterrupted run's.
    #[arg(long, value_name = "CHECKPOINT")]
    pub resume: Option<PathBuf>,
    /// With --checkpoint: save only when --monitor improves.
    #[arg(long, requires = "checkpoint")]
    pub save_best_only: bool,
    /// With --checkpoint: save the weights only (safetensors).
    #[arg(long, requires = "checkpoint")]
    pub save_weights_only: bool,
    /// Stop when --monitor has not improved for PATIENCE epochs (Keras's EarlyStopping).
    #[arg(long, value_name = "PATIENCE")]
    pub early_stopping: Option<usize>,
    /// With --early-stopping: end with the weights of the best epoch.
    #[arg(long, requires = "early_stopping")]
    pub restore_best_weights: bool,
    /// Multiply the learning rate by --lr-factor when --monitor has not
    /// improved for PATIENCE epochs (Keras's ReduceLROnPlateau; needs a
    /// constant learning rate).
    #[arg(long, value_name = "PATIENCE")]
    pub reduce_lr_on_plateau: Option<usize>,
    /// With --reduce-lr-on-plateau: the factor, in (0, 1).
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = 0.1,
        requires = "reduce_lr_on_plateau"
    )]
    pub lr_factor: f64,
    /// With --reduce-lr-on-plateau: the rate is never reduced below this.
    #[arg(
        long,
        value_name = "LR",
        default_value_t = 0.0,
        requires = "reduce_lr_on_plateau"
    )]
    pub min_lr: f64,
    /// Write one CSV row per epoch to PATH (Keras's CSVLogger).
    #[arg(long, value_name = "PATH")]
    pub csv_log: Option<PathBuf>,
    /// Keep training through a NaN or infinite loss. By default a
    /// non-finite loss ends `train` with an error naming the epoch and the
    /// batch, and nothing is saved (Keras's TerminateOnNaN with raise_error).
    #[arg(long)]
    pub no_terminate_on_nan: bool,
    /// Check every training step for NaN and infinity (like
    /// jax.debug_nans): the first step that produces one ends `train` with
    /// an error naming the step, the non-finite loss terms and the first
    /// layer and node (scope, role) where a value went non-finite; the
    /// weights stay those from before that step and nothing is saved.
    /// Costs a copy of the weights per step.
    #[arg(long)]
    pub check_numerics: bool,
}

/// Arguments of `lossgraph convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The model: IN.keras, or IN.json (with --weights).
    pub input: PathBuf,
    /// What to write, by its ending: OUT.keras (architecture and weights),
    /// OUT.json (architecture; add --out-weights for the weights),
    /// OUT.safetensors or OUT.weights.h5 (weights).
    pub output: PathBuf,
    /// The weights of IN.json (.safetensors or .weights.h5); for IN.keras
    /// they replace the archive's.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// With OUT.json: also write the weights here (.safetensors or .weights.h5).
    #[arg(long, value_name = "FILE")]
    pub out_weights: Option<PathBuf>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a Keras-style summary of a Keras 3 model (layers, shapes, parameters, added losses).
    Summary {
        /// The model: MODEL.keras or MODEL.json (`model.to_json()`).
        model: PathBuf,
    },
    /// Print the IR of a Keras 3 model at one stage of the pipeline.
    DumpIr {
        /// The model: MODEL.keras or MODEL.json (`model.to_json()`).
        model: PathBuf,
        /// Which stage to print.
        #[arg(long, value_enum, default_value = "forward")]
        stage: Stage,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Loss for every output (mse, mae, huber, binary_crossentropy,
        /// categorical_crossentropy, sparse_categorical_crossentropy; append
        /// `:logits` for from_logits). Default: mse.
        #[arg(long)]
        loss: Option<String>,
        /// Optimizer as NAME[:LEARNING_RATE] (sgd, adam, adamw, rmsprop).
        #[arg(long, default_value = "sgd")]
        optimizer: String,
        /// Batch size the graph is traced for.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Train a Keras 3 model on tensors from a safetensors file.
    Train(TrainArgs),
    /// Convert a model between .keras, JSON + safetensors and .weights.h5.
    Convert(ConvertArgs),
    /// Run Keras reference cases (folders with model.json, case.json, *.safetensors).
    Check {
        /// Case folders, each checked independently; a folder without case.json
        /// stands for every case folder inside it.
        #[arg(required = true, value_name = "CASE_DIR")]
        dirs: Vec<PathBuf>,
        /// Take each case's model from its model.keras (saved by Keras)
        /// instead of model.json + weights.safetensors.
        #[arg(long)]
        keras: bool,
        /// Also print every failing comparison.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Train a model on the embedded digits data and write its IR, plots and
    /// weights: the add_loss MLP (default), the convnet (`demo cnn`) or the
    /// Keras guide's VAE with its KL term via add_loss (`demo vae`).
    Demo {
        /// Which demo: mlp (an MLP with three kinds of added loss), cnn (the
        /// keras.io MNIST convnet sized for 8×8) or vae (the Keras guide's
        /// variational autoencoder).
        #[arg(value_enum, default_value_t = DemoChoice::Mlp)]
        which: DemoChoice,
        /// Output folder, created if missing (default: lossgraph-demo, with
        /// -cnn or -vae appended for those demos).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Training epochs (default: 30).
        #[arg(long)]
        epochs: Option<usize>,
        /// Seed for the split, the initial weights and the shuffles.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Time a training step: a standard workload (tiny, mnist, wide, cnn of
    /// shared/bench/WORKLOADS.md) or a Keras 3 model (--model MODEL.json).
    Bench(lossgraph_cli::bench::BenchArgs),
}

/// Runs one parsed command line; `Ok` carries the exit code.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Bench(a) => {
            println!("{}", lossgraph_cli::bench::run_cli(&a)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Summary { model } => commands::summary(&model),
        Command::Check {
            dirs,
            keras,
            verbose,
        } => commands::check(&dirs, keras, verbose),
        Command::DumpIr {
            model,
            stage,
            format,
            loss,
            optimizer,
            batch_size,
            output,
        } => commands::dump_ir(
            &model,
            stage,
            format,
            loss.as_deref(),
            &optimizer,
            batch_size,
            output.as_deref(),
        ),
        Command::Train(a) => commands::train(&a),
        Command::Demo {
            which,
            out,
            epochs,
            seed,
        } => match which {
            DemoChoice::Mlp => commands::demo(
                lossgraph_cli::demo::DemoKind::Mlp,
                out.as_deref(),
                epochs,
                seed,
            ),
            DemoChoice::Cnn => commands::demo(
                lossgraph_cli::demo::DemoKind::Cnn,
                out.as_deref(),
                epochs,
                seed,
            ),
            DemoChoice::Vae => commands::demo_vae(out.as_deref(), epochs, seed),
        },
        Command::Convert(a) => commands::convert(&a),
    }
}
