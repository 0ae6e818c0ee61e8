//! The subcommands: each is a few calls into the library.

use super::{fail, CliError, ConvertArgs, Format, Stage, TrainArgs};
use lossgraph::keras::model_file::{self, FileKind};
use lossgraph::keras::{self, case, LossSpec, ModelSpec, OptimizerSpec};
use lossgraph::runtime::{Communicator, SingleProcess};
use lossgraph::stages;
use lossgraph_cli::demo;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `lossgraph summary MODEL.json|MODEL.keras`.
pub fn summary(model: &Path) -> Result<ExitCode, CliError> {
    let m = model_file::load(model, None, 0)?.model;
    print!("{}", m.summary()?);
    Ok(ExitCode::SUCCESS)
}

/// The case folders named by `dirs`: a folder holding `case.json` is one
/// case; a folder without one stands for its sub-folders that hold one (in
/// name order), so `check shared/keras-cases` runs every case there. Anything
/// else is kept as given, to be reported as a failing case.
fn expand_case_dirs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        if dir.is_dir() && !dir.join("case.json").exists() {
            let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.join("case.json").is_file())
                        .collect()
                })
                .unwrap_or_default();
            if !subs.is_empty() {
                subs.sort();
                out.extend(subs);
                continue;
            }
        }
        out.push(dir.clone());
    }
    out
}

/// `lossgraph check [--keras] CASE_DIR...`: one line per case, then `N passed, M failed`.
pub fn check(dirs: &[PathBuf], keras: bool, verbose: bool) -> Result<ExitCode, CliError> {
    let files = if keras {
        case::ModelFiles::Keras
    } else {
        case::ModelFiles::Json
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for dir in &expand_case_dirs(dirs) {
        let label = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let result = case::Case::load_from(dir, files).and_then(|c| case::run_case(&c));
        match result {
            Ok(report) => {
                let worst = report.worst();
                let (rel, at) = worst
                    .map(|w| (w.worst_rel, w.what.as_str()))
                    .unwrap_or((f64::NAN, "-"));
                if report.passed() {
                    passed += 1;
                    println!(
                        "PASS {label}: worst relative error {rel:.2e} ({at}), {} values checked",
                        report.comparisons.len()
                    );
                } else {
                    failed += 1;
                    let fails = report.failures();
                    let first = fails[0];
                    println!(
                        "FAIL {label}: worst relative error {rel:.2e} ({at}); {} of {} checks failed, first: {} ({})",
                        fails.len(),
                        report.comparisons.len(),
                        first.what,
                        first.detail
                    );
                    if verbose {
                        for f in fails {
                            println!(
                                "    {}: {} (error {:.2}x tolerance)",
                                f.what, f.detail, f.worst_ratio
                            );
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {label}: {}", e.to_string().replace('\n', "; "));
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn parse_loss(s: &str) -> Result<LossSpec, CliError> {
    LossSpec::from_name(s).ok_or_else(|| {
        CliError(format!(
            "unknown loss '{s}' (supported: mse, mae, huber, binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy, with an optional ':logits' suffix for the crossentropies)"
        ))
    })
}

fn parse_optimizer(s: &str) -> Result<OptimizerSpec, CliError> {
    OptimizerSpec::from_arg(s).map_err(CliError)
}

fn compile_spec(
    spec: &ModelSpec,
    loss: &str,
    optimizer: &str,
) -> Result<keras::CompileSpec, CliError> {
    let l = parse_loss(loss)?;
    Ok(keras::CompileSpec {
        losses: spec
            .output_names()
            .into_iter()
            .map(|o| (o, l, 1.0))
            .collect(),
        optimizer: parse_optimizer(optimizer)?,
    })
}

/// The ranks of this process's job: `MPI_COMM_WORLD` when an MPI launcher
/// started it (a build with the `mpi` feature), else one process.
fn communicator() -> Result<Arc<dyn Communicator>, CliError> {
    let launched = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !launched {
        return Ok(Arc::new(SingleProcess));
    }
    #[cfg(feature = "mpi")]
    {
        let comm = lossgraph::runtime::mpi::Mpi::init().map_err(CliError)?;
        Ok(Arc::new(comm))
    }
    #[cfg(not(feature = "mpi"))]
    {
        let size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
            .iter()
            .find_map(|v| std::env::var(v).ok())
            .unwrap_or_default();
        if size.is_empty() || size == "1" {
            return Ok(Arc::new(SingleProcess));
        }
        Err(CliError(format!(
            "started by an MPI launcher on {size} ranks, but this lossgraph was built \
             without MPI support (build it with `--features mpi`)"
        )))
    }
}

/// `lossgraph train`: one process, or data-parallel on every rank of an
/// MPI job (the same command under `mpirun -np N` gives the same weights).
/// On more than one rank an error on any rank aborts the whole job (the
/// others would wait in a collective), except a mismatch of the ranks'
/// models or data, which every rank reports (rank 0 naming the values).
pub fn train(a: &TrainArgs) -> Result<ExitCode, CliError> {
    let comm = communicator()?;
    if comm.size() <= 1 {
        return train_on(a, comm);
    }
    match train_on(a, comm.clone()) {
        Err(e) => {
            eprintln!("error: rank {}: {}", comm.rank(), e.0.replace('\n', "; "));
            comm.abort(1)
        }
        ok => ok,
    }
}

fn train_on(a: &TrainArgs, comm: Arc<dyn Communicator>) -> Result<ExitCode, CliError> {
    if a.batch_size == 0 || a.epochs == 0 {
        return fail("--batch-size and --epochs must be at least 1");
    }
    if !(a.watchdog.is_finite() && a.watchdog > 0.0) {
        return fail("--watchdog must be a positive number of seconds");
    }
    let lead = comm.rank() == 0;
    // Bad flags and an unwritable log fail before any work.
    let fit = fit_options(a)?;
    // Refuse an unwritable output before any work, not after training.
    if let (Some(out), true) = (&a.save, lead) {
        if FileKind::of(out)? == FileKind::Json {
            return fail(format!(
                "--save {}: a .json holds no weights; save to .keras, .weights.h5 or .safetensors",
                out.display()
            ));
        }
        lossgraph::io::check_writable(out)?;
    }
    let mut km = model_file::load(&a.model, a.weights.as_deref(), 0)?;
    let spec = km.spec.clone();
    let compile = compile_spec(&spec, &a.loss, &a.optimizer)?;
    let ranks = comm.size();
    let mut options = keras::build::compile_options(&compile);
    if ranks > 1 {
        options = options
            .distributed(comm)
            .watchdog(Some(Duration::from_secs_f64(a.watchdog)));
    }
    km.model.compile(options)?;
    let mut fit = fit;
    if let Some(ckpt) = &a.resume {
        let info = km.model.load_checkpoint(ckpt)?;
        fit = fit.initial_epoch(info.epoch);
    }
    let tensors = lossgraph::read_safetensors(&a.data)?;
    let pick = |prefix: &str, names: &[String]| -> Result<Vec<lossgraph::HostTensor>, CliError> {
        names
            .iter()
            .map(|n| {
                let key = case::data_key(prefix, names, n);
                tensors
                    .iter()
                    .find(|t| t.0 == key)
                    .map(|t| t.1.clone())
                    .ok_or_else(|| {
                        CliError(format!(
                            "{}: no tensor named '{key}' (found: {})",
                            a.data.display(),
                            tensors
                                .iter()
                                .map(|t| t.0.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
            })
            .collect()
    };
    let x = pick("x", &spec.input_names())?;
    let y = pick("y", &spec.output_names())?;
    let fitted = km.model.fit(&x, &y, fit);
    let h = match fitted {
        // The ranks disagree: every rank knows it, none waits; rank 0's
        // message names the values. Exit normally (no abort that could cut
        // rank 0's report short).
        Err(e @ lossgraph::Error::Distributed(_)) => {
            eprintln!("error: {}", e.to_string().replace('\n', "; "));
            return Ok(ExitCode::from(1));
        }
        r => r?,
    };
    if !lead {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(last) = h.epochs.last() {
        println!("final loss: {:.6}", last.loss());
    }
    if let Some(out) = &a.save {
        model_file::save(&km, out)?;
        println!("saved the trained model to {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The `fit` settings and callbacks of `lossgraph train`'s flags.
fn fit_options(a: &TrainArgs) -> Result<lossgraph::FitOptions, CliError> {
    use lossgraph::callbacks::Mode;
    use lossgraph::{
        CSVLogger, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN, Validation,
        Verbosity,
    };
    let verbose = Verbosity::from_name(&a.verbose)?;
    // The callbacks' own messages (early stopping, rate reductions) follow --verbose.
    let say = verbose != Verbosity::Silent;
    let mut o = lossgraph::FitOptions::new()
        .epochs(a.epochs)
        .batch_size(a.batch_size)
        .shuffle(true, 0)
        .verbose(verbose);
    if let Some(f) = a.validation_split {
        if !(f > 0.0 && f < 1.0) {
            return fail(format!("--validation-split must be in (0, 1), got {f}"));
        }
        o = o.validation(Validation::Split(f));
    }
    let monitor = a.monitor.clone().unwrap_or_else(|| {
        if a.validation_split.is_some() {
            "val_loss".into()
        } else {
            "loss".into()
        }
    });
    let mode = Mode::from_name(&a.mode)?;
    // First, so that a non-finite loss fails before any callback saves it.
    if !a.no_terminate_on_nan {
        o = o.callback(TerminateOnNaN::new().raise_error(true));
    }
    o = o.check_numerics(a.check_numerics);
    if let Some(path) = &a.checkpoint {
        o = o.callback(
            ModelCheckpoint::new(path.clone())
                .monitor(&monitor, mode)
                .save_best_only(a.save_best_only)
                .save_weights_only(a.save_weights_only),
        );
    }
    if let Some(patience) = a.early_stopping {
        o = o.callback(
            EarlyStopping::new(&monitor, patience)
                .mode(mode)
                .restore_best_weights(a.restore_best_weights)
                .verbose(say),
        );
    }
    if let Some(patience) = a.reduce_lr_on_plateau {
        o = o.callback(
            ReduceLROnPlateau::new(&monitor)
                .mode(mode)
                .factor(a.lr_factor)?
                .patience(patience)
                .min_lr(a.min_lr)
                .verbose(say),
        );
    }
    if let Some(path) = &a.csv_log {
        lossgraph::io::check_writable(path)?;
        o = o.callback(CSVLogger::new(path));
    }
    Ok(o)
}

/// `lossgraph convert IN OUT`.
pub fn convert(a: &ConvertArgs) -> Result<ExitCode, CliError> {
    let out_kind = FileKind::of(&a.output)?;
    if a.out_weights.is_some() && out_kind != FileKind::Json {
        return fail("--out-weights is for a .json output (the other forms hold the weights)");
    }
    if FileKind::of(&a.input)? == FileKind::Json
        && a.weights.is_none()
        && out_kind != FileKind::Json
    {
        return fail(format!(
            "{} holds no weights: give them with --weights FILE (.safetensors or .weights.h5)",
            a.input.display()
        ));
    }
    for out in std::iter::once(&a.output).chain(&a.out_weights) {
        lossgraph::io::check_writable(out)?;
    }
    if let Some(w) = &a.out_weights {
        if !model_file::is_weights_file(w) {
            return fail(format!(
                "--out-weights {}: expected a .safetensors or .weights.h5 name",
                w.display()
            ));
        }
    }
    let km = model_file::load(&a.input, a.weights.as_deref(), 0)?;
    model_file::save(&km, &a.output)?;
    println!("wrote {}", a.output.display());
    if let Some(w) = &a.out_weights {
        model_file::save(&km, w)?;
        println!("wrote {}", w.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `lossgraph dump-ir`.
pub fn dump_ir(
    model: &Path,
    stage: Stage,
    format: Format,
    loss: Option<&str>,
    optimizer: &str,
    batch_size: usize,
    output: Option<&Path>,
) -> Result<ExitCode, CliError> {
    if batch_size == 0 {
        return fail("--batch-size must be at least 1");
    }
    if let Some(out) = output {
        lossgraph::io::check_writable(out)?;
    }
    let km = model_file::load(model, None, 0)?;
    let compile = compile_spec(&km.spec, loss.unwrap_or("mse"), optimizer)?;
    let mut m = km.model;
    m.compile(keras::build::compile_options(&compile))?;
    let stage = match stage {
        Stage::Forward => stages::Stage::Forward,
        Stage::Train => stages::Stage::Train,
        Stage::Optimized => stages::Stage::Optimized,
        Stage::Fused => stages::Stage::Fused,
        Stage::Clif => stages::Stage::Clif,
    };
    let format = match format {
        Format::Text => stages::Format::Text,
        Format::Dot => stages::Format::Dot,
    };
    let text = stages::dump(&m, stage, format, batch_size)?;
    write_out(output, &text)?;
    Ok(ExitCode::SUCCESS)
}

/// `lossgraph demo [mlp|cnn]`: `out` and `epochs` default to the kind's.
pub fn demo(
    kind: demo::DemoKind,
    out: Option<&Path>,
    epochs: Option<usize>,
    seed: u64,
) -> Result<ExitCode, CliError> {
    let mut opts = demo::DemoOptions::new(kind);
    if let Some(e) = epochs {
        if e == 0 {
            return fail("--epochs must be at least 1");
        }
        opts.epochs = e;
    }
    if let Some(o) = out {
        opts.out = o.to_path_buf();
    }
    opts.seed = seed;
    println!(
        "lossgraph demo: digits (UCI, CC BY 4.0), {}",
        kind.description()
    );
    let r = demo::run(&opts)?;
    let last: Vec<String> = r
        .history
        .iter()
        .filter(|(k, _)| !k.starts_with("val_") || k == "val_loss" || k == "val_accuracy")
        .filter_map(|(k, v)| v.last().map(|x| format!("{k} {x:.4}")))
        .collect();
    println!("epoch {}: {}", opts.epochs, last.join(", "));
    println!("test accuracy: {:.1}%", 100.0 * r.test_accuracy);
    println!(
        "compile time: {:.3} s (trace, differentiate, optimise, build, first step)",
        r.compile_seconds
    );
    println!("training speed: {:.0} steps/s", r.steps_per_second);
    println!("wrote to {}:", opts.out.display());
    for f in &r.files {
        println!("  {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `lossgraph demo vae`: `out` defaults to `lossgraph-demo-vae`, `epochs` to 30.
pub fn demo_vae(
    out: Option<&Path>,
    epochs: Option<usize>,
    seed: u64,
) -> Result<ExitCode, CliError> {
    let epochs = epochs.unwrap_or(30);
    if epochs == 0 {
        return fail("--epochs must be at least 1");
    }
    let out = out.unwrap_or(Path::new("lossgraph-demo-vae"));
    let opts = demo::DemoOptions {
        out: out.to_path_buf(),
        epochs,
        seed,
        batch_size: 64,
        learning_rate: 0.003,
        ..demo::DemoOptions::default()
    };
    println!(
        "lossgraph demo vae: digits (UCI, CC BY 4.0), the Keras guide's variational autoencoder \
         (64 → 64 → latent {} → 64 → 64); loss = reconstruction mse + KL via add_loss",
        demo::VAE_LATENT
    );
    let r = demo::run_vae(&opts)?;
    let last: Vec<String> = r
        .history
        .iter()
        .filter_map(|(k, v)| v.last().map(|x| format!("{k} {x:.4}")))
        .collect();
    println!("epoch {epochs}: {}", last.join(", "));
    println!("wrote to {}:", out.display());
    for f in &r.files {
        println!("  {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_out(path: Option<&Path>, text: &str) -> Result<(), CliError> {
    match path {
        Some(p) => Ok(lossgraph::io::write_atomic(p, text.as_bytes())?),
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes())?;
            Ok(())
        }
    }
}
