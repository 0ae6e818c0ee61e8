//! `lossgraph bench --model MODEL.json`: the training step of any imported
//! Keras 3 model, timed exactly like the standard workloads.
//!
//! * The model is read with [`keras::model_file::load`] (MODEL.json or
//!   MODEL.keras), built by the importer
//!   ([`keras::build::build_model`], initialisers seeded with [`SEED`]) and
//!   compiled by the front end with one loss for every output and the given
//!   optimiser — the code path of `lossgraph train`.
//! * Data: [`N_BATCHES`](super::N_BATCHES) batches drawn from one splitmix64
//!   stream seeded with [`SEED`]: inputs N(0,1) with the model's input shapes,
//!   targets as the loss expects them ([`target_kind`]).
//! * GFLOP/s follow the standard workloads' convention: `6 · batch · kernel
//!   weights`, counting every `kernel` variable (the `Dense` layers) once,
//!   so a shared layer called twice counts once and non-matmul work is not
//!   counted.

use super::SEED;
use super::{
    check_batch_memory, generate_batches, BenchError, BenchOptions, Result, Session, TargetKind,
};
use lossgraph::keras::{self, LossKind, LossSpec, OptimizerSpec};
use lossgraph::Model;
use lossgraph_ir::rng::SplitMix64;
use std::path::{Path, PathBuf};

/// Samples per batch when `--batch` is not given (Keras's default batch size).
pub const DEFAULT_BATCH: usize = 32;

/// Steps per repetition when `--steps` is not given.
pub const DEFAULT_STEPS: usize = 100;

/// Repetitions when `--reps` is not given.
pub const DEFAULT_REPS: usize = 5;

/// What to time: a Keras model file, its loss (for every output), optimiser
/// and batch size. Invariant: `batch >= 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelBench {
    /// The `model.to_json()` file.
    pub path: PathBuf,
    /// The loss of every output.
    pub loss: LossSpec,
    /// The optimiser (its learning rate is fed at every step).
    pub optimizer: OptimizerSpec,
    /// Samples per batch.
    pub batch: usize,
}

/// Parses a `--loss` name as `lossgraph train` does ([`LossSpec::from_name`]).
pub fn parse_loss(s: &str) -> Result<LossSpec> {
    LossSpec::from_name(s).ok_or_else(|| {
        BenchError::Invalid(format!(
            "--loss: unknown loss '{s}' (supported: mse, mae, huber, binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy, with an optional ':logits' suffix for the crossentropies)"
        ))
    })
}

/// How the targets of an output trained with `loss` are drawn: class labels
/// for sparse categorical crossentropy, one-hot rows for categorical
/// crossentropy, 0/1 for binary crossentropy, N(0,1) for the regression losses.
pub fn target_kind(loss: &LossSpec) -> TargetKind {
    match loss.kind {
        LossKind::MeanSquaredError | LossKind::MeanAbsoluteError | LossKind::Huber => {
            TargetKind::Normal
        }
        LossKind::BinaryCrossentropy => TargetKind::Binary,
        LossKind::CategoricalCrossentropy => TargetKind::OneHot,
        LossKind::SparseCategoricalCrossentropy => TargetKind::Labels,
    }
}

/// Number of kernel weights of `model`: the elements of every variable named
/// `kernel` (the `Dense` layers' matrices), each counted once.
pub fn kernel_weights(model: &Model) -> usize {
    model
        .variables()
        .iter()
        .filter(|v| v.name == "kernel")
        .map(|v| v.ty.numel())
        .sum()
}

/// The workload name of a model file: its stem, or the name of the folder
/// holding it when the stem is the generic `model` (as in the Keras case
/// folders, `p01_relu…/model.json` → `p01_relu…`).
pub fn workload_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem == "model" || stem.is_empty() {
        let parent = path.canonicalize().ok().and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_os_string())
        });
        if let Some(dir) = parent {
            return dir.to_string_lossy().into_owned();
        }
    }
    if stem.is_empty() {
        "model".to_string()
    } else {
        stem
    }
}

/// An importer error as one line that names the model file.
fn import_error(path: &Path, e: impl std::fmt::Display) -> BenchError {
    let p = path.display().to_string();
    let msg = e.to_string().replace('\n', "; ");
    if msg.starts_with(&p) {
        BenchError::Invalid(msg)
    } else {
        BenchError::Invalid(format!("{p}: {msg}"))
    }
}

impl ModelBench {
    /// The settings from command-line values: `loss` a Keras loss name
    /// (default `mse`), `optimizer` `NAME[:LR]` as for `lossgraph train`
    /// (default `sgd`), `lr` overriding the learning rate, `batch` (default
    /// [`DEFAULT_BATCH`]). Checks the values only; the file is read by
    /// [`ModelBench::session`].
    pub fn from_args(
        path: &Path,
        loss: Option<&str>,
        optimizer: Option<&str>,
        lr: Option<f32>,
        batch: Option<usize>,
    ) -> Result<ModelBench> {
        let loss = parse_loss(loss.unwrap_or("mse"))?;
        let mut optimizer = OptimizerSpec::from_arg(optimizer.unwrap_or("sgd"))
            .map_err(|m| BenchError::Invalid(format!("--optimizer: {m}")))?;
        if let Some(lr) = lr {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(BenchError::Invalid(format!(
                    "--lr: the learning rate must be a positive number, got {lr}"
                )));
            }
            optimizer.set_learning_rate(lr);
        }
        let batch = batch.unwrap_or(DEFAULT_BATCH);
        if batch == 0 {
            return Err(BenchError::Invalid(
                "--batch: the batch size must be at least 1".into(),
            ));
        }
        Ok(ModelBench {
            path: path.to_path_buf(),
            loss,
            optimizer,
            batch,
        })
    }

    /// The workload name reported for this model ([`workload_name`]).
    pub fn name(&self) -> String {
        workload_name(&self.path)
    }

    /// Reads, builds and compiles the model through the front end (weights
    /// from a `.keras` archive, or for a JSON model from its initialisers,
    /// seeded with [`SEED`]).
    pub fn build(&self) -> Result<Model> {
        let km = keras::model_file::load(&self.path, None, SEED)
            .map_err(|e| import_error(&self.path, e))?;
        let (spec, mut model) = (km.spec, km.model);
        let compile = keras::CompileSpec {
            losses: spec
                .output_names()
                .into_iter()
                .map(|o| (o, self.loss, 1.0))
                .collect(),
            optimizer: self.optimizer,
        };
        model
            .compile(keras::build::compile_options(&compile))
            .map_err(|e| import_error(&self.path, e))?;
        Ok(model)
    }

    /// Builds the model ([`ModelBench::build`]), draws its batches from
    /// splitmix64 seeded with [`SEED`] and compiles its training step with
    /// the engine settings of `opts`.
    pub fn session(&self, opts: &BenchOptions) -> Result<Session> {
        let model = self.build()?;
        let kind = target_kind(&self.loss);
        let outputs: Vec<(Vec<usize>, TargetKind)> = model
            .output_shapes()
            .into_iter()
            .map(|s| (s, kind))
            .collect();
        check_batch_memory(self.batch, &model.input_shapes(), &model.output_shapes())?;
        let batches = generate_batches(
            self.batch,
            &model.input_shapes(),
            &outputs,
            &mut SplitMix64::new(SEED),
        );
        let flops = 6.0 * self.batch as f64 * kernel_weights(&model) as f64;
        Session::from_model(
            &self.name(),
            &model,
            batches,
            self.optimizer.learning_rate(),
            flops,
            opts,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::EngineChoice;
    use super::*;
    use lossgraph::layers::{Dense, Dropout, Input};
    use lossgraph::{CompileOptions, HostTensor, Loss, Optimizer, Sequential};

    const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/keras-cases");

    fn case(name: &str) -> PathBuf {
        let p = Path::new(CASES).join(name).join("model.json");
        assert!(p.is_file(), "{} is missing", p.display());
        p
    }

    #[test]
    fn targets_have_the_form_their_loss_expects() {
        let outputs = [
            (vec![4], TargetKind::OneHot),
            (vec![3], TargetKind::Labels),
            (vec![2], TargetKind::Binary),
            (vec![2], TargetKind::Normal),
        ];
        let b = generate_batches(5, &[vec![3], vec![2, 2]], &outputs, &mut SplitMix64::new(1));
        assert_eq!(b.xs.len(), super::super::N_BATCHES);
        let mut binary = Vec::new();
        for (xs, ys) in b.xs.iter().zip(&b.ys) {
            let shapes: Vec<&[usize]> = xs.iter().map(HostTensor::shape).collect();
            assert_eq!(shapes, [&[5, 3][..], &[5, 2, 2]]);
            let shapes: Vec<&[usize]> = ys.iter().map(HostTensor::shape).collect();
            assert_eq!(shapes, [&[5, 4][..], &[5], &[5, 2], &[5, 2]]);
            let (Some(onehot), Some(labels), Some(bin), Some(normal)) = (
                ys[0].as_f32(),
                ys[1].as_i32(),
                ys[2].as_f32(),
                ys[3].as_f32(),
            ) else {
                panic!("wrong target dtypes: {ys:?}");
            };
            assert_eq!(onehot.len(), 20);
            for row in onehot.chunks(4) {
                assert_eq!(row.iter().filter(|v| **v == 1.0).count(), 1, "{row:?}");
                assert_eq!(row.iter().filter(|v| **v == 0.0).count(), 3, "{row:?}");
            }
            assert_eq!(labels.len(), 5);
            assert!(labels.iter().all(|l| (0..3).contains(l)), "{labels:?}");
            assert_eq!(bin.len(), 10);
            binary.extend_from_slice(bin);
            assert_eq!(normal.len(), 10);
            assert!(normal
                .iter()
                .all(|v| v.is_finite() && *v != 0.0 && *v != 1.0));
        }
        assert!(binary.iter().all(|v| *v == 0.0 || *v == 1.0));
        assert!(binary.contains(&0.0) && binary.contains(&1.0));
    }

    #[test]
    fn names_kernels_and_arguments() {
        assert_eq!(workload_name(Path::new("some/where/mlp.json")), "mlp");
        let p = case("p06_functional_two_in_two_out_nesterov");
        assert_eq!(workload_name(&p), "p06_functional_two_in_two_out_nesterov");
        // p06: dense_a 4×5, dense_b 3×5, trunk (5+5)×8, out_reg 8×2, out_cls 8×1.
        let mb = ModelBench::from_args(&p, None, None, None, None).unwrap();
        assert_eq!(mb.batch, DEFAULT_BATCH);
        assert_eq!(mb.loss, LossSpec::new(LossKind::MeanSquaredError));
        assert_eq!(mb.optimizer.learning_rate(), 0.01);
        assert_eq!(kernel_weights(&mb.build().unwrap()), 20 + 15 + 80 + 16 + 8);
        let mb = ModelBench::from_args(
            &p,
            Some("cce:logits"),
            Some("adam:0.5"),
            Some(0.25),
            Some(3),
        );
        let mb = mb.unwrap();
        assert!(mb.loss.from_logits && mb.loss.kind == LossKind::CategoricalCrossentropy);
        assert_eq!(mb.optimizer.learning_rate(), 0.25);
        assert_eq!(mb.optimizer.class_name(), "Adam");
        for (loss, opt, lr, batch, needle) in [
            (Some("foo"), None, None, None, "--loss: unknown loss 'foo'"),
            (Some("mse:logits"), None, None, None, "'mse:logits'"),
            (
                None,
                Some("nadam"),
                None,
                None,
                "--optimizer: unknown optimizer 'nadam'",
            ),
            (None, None, Some(-1.0), None, "--lr"),
            (None, None, None, Some(0), "--batch"),
        ] {
            let e = ModelBench::from_args(&p, loss, opt, lr, batch).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        let e = ModelBench::from_args(Path::new("/no/such/m.json"), None, None, None, None)
            .unwrap()
            .build()
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("/no/such/m.json: "), "{e}");
        assert_eq!(e.lines().count(), 1);
    }

    /// The session's losses over three steps (batches 0, 1, 2) must equal
    /// what the front end's own `train_on_batch` reports on the same data,
    /// starting from the same weights: checks the feed plan (which array goes
    /// to which input and target), the learning rate and the step counter.
    fn assert_matches_train_on_batch(mut model: lossgraph::Model, mut s: Session) {
        for b in 0..3 {
            let (x, y) = (&s.batches.xs[b], &s.batches.ys[b]);
            let want = model.train_on_batch(x, y).unwrap().loss();
            let got = s.step().unwrap() as f64;
            assert!(
                (want - got).abs() <= 1e-5 * want.abs().max(1.0),
                "{} step {b}: session {got} vs train_on_batch {want}",
                s.name
            );
        }
    }

    #[test]
    fn imported_sessions_match_the_front_end() {
        let opts = BenchOptions {
            engine: EngineChoice::Interp,
            ..BenchOptions::default()
        };
        for (dir, loss, opt) in [
            ("p06_functional_two_in_two_out_nesterov", "mse", "sgd:0.05"),
            ("p07_functional_single_sparse_softmax_adam", "scce", "adam"),
            ("p04_softmax_cce_dropout0_rmsprop", "cce", "rmsprop"),
        ] {
            let mb =
                ModelBench::from_args(&case(dir), Some(loss), Some(opt), None, Some(6)).unwrap();
            let s = mb.session(&opts).unwrap();
            assert_eq!(s.name, dir);
            assert_matches_train_on_batch(mb.build().unwrap(), s);
        }
    }

    #[test]
    fn dropout_steps_match_the_front_end() {
        let build = || {
            let mut m = Sequential::new("drop")
                .seed(7)
                .add(Input::new(&[3]))
                .add(Dense::new(8).activation("relu"))
                .add(Dropout::new(0.5))
                .add(Dense::new(2))
                .build()
                .unwrap();
            m.compile(CompileOptions::new(
                Optimizer::sgd(0.1),
                Loss::MeanSquaredError,
            ))
            .unwrap();
            m
        };
        let model = build();
        let batches = generate_batches(
            4,
            &model.input_shapes(),
            &[(vec![2], TargetKind::Normal)],
            &mut SplitMix64::new(SEED),
        );
        let s = Session::from_model("drop", &model, batches, 0.1, 0.0, &BenchOptions::default())
            .unwrap();
        assert!(s
            .feeds
            .iter()
            .any(|f| matches!(f.1, super::super::Source::RngStep)));
        assert_matches_train_on_batch(build(), s);
    }
}
