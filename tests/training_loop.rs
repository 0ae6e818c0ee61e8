//! The loop around `fit` (issue 16): gradient clipping in the gradient hook,
//! learning-rate schedules and checkpoints that resume bit-identically
//! (the callbacks are tested end to end in `tests/callbacks.rs`).
//! Expected values are hand-computed from Keras 3's formulas.

// `&[x.clone()]` reads like Keras's `[x]`.
#![allow(clippy::cloned_ref_to_slice_refs)]

use lossgraph::layers::{BatchNormalization, Dense, Dropout, Input};
use lossgraph::optimizers::Clip;
use lossgraph::{
    CompileOptions, FitOptions, HostTensor, Init, LearningRate, Loss, Model, Optimizer, Sequential,
};

fn ht(shape: &[usize], v: Vec<f32>) -> HostTensor {
    HostTensor::f32(shape, v).unwrap()
}

fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

/// `y = x·w + b` with `w = [1, 1]`, `b = 0`, MSE to 0 on `x = [3, 4]`:
/// prediction 7, `L = 49`, `dL/dw = 2·7·x = [42, 56]` (norm 70), `dL/db = 14`.
fn line(opt: Optimizer) -> Model {
    let mut m = Sequential::new("line")
        .add(Input::new(&[2]))
        .add(Dense::new(1).kernel_initializer(Init::Ones).name("d"))
        .build()
        .unwrap();
    m.compile(CompileOptions::new(opt, Loss::MeanSquaredError))
        .unwrap();
    m
}

fn batch() -> (Vec<HostTensor>, Vec<HostTensor>) {
    (
        vec![ht(&[1, 2], vec![3.0, 4.0])],
        vec![ht(&[1, 1], vec![0.0])],
    )
}

fn weights(m: &Model) -> Vec<f64> {
    let mut w = m.get_weight("d/kernel").unwrap().to_f64();
    w.extend(m.get_weight("d/bias").unwrap().to_f64());
    w
}

/// One SGD(0.1) step with `clip`; returns kernel and bias.
fn clipped_step(clip: Option<Clip>) -> Vec<f64> {
    let mut opt = Optimizer::sgd(0.1);
    opt.clip = clip;
    let mut m = line(opt);
    let (x, y) = batch();
    m.train_on_batch(&x, &y).unwrap();
    weights(&m)
}

#[test]
fn gradient_clipping_follows_keras() {
    // No clipping: w = 1 - 0.1·[42, 56], b = -0.1·14.
    close(&clipped_step(None), &[-3.2, -4.6, -1.4], 1e-5);
    // clipnorm 7, per variable: kernel gradient [42, 56]·7/70 = [4.2, 5.6];
    // bias gradient 14·7/14 = 7.
    close(
        &clipped_step(Some(Clip::Norm(7.0))),
        &[1.0 - 0.42, 1.0 - 0.56, -0.7],
        1e-6,
    );
    // A norm under the threshold passes unchanged.
    close(
        &clipped_step(Some(Clip::Norm(100.0))),
        &[-3.2, -4.6, -1.4],
        1e-5,
    );
    // clipvalue 5: [5, 5] and 5.
    close(
        &clipped_step(Some(Clip::Value(5.0))),
        &[0.5, 0.5, -0.5],
        1e-6,
    );
    // global_clipnorm 7: ‖G‖ = √(42² + 56² + 14²) = √5096, every gradient
    // scaled by 7/√5096.
    let s = 7.0 / 5096f64.sqrt();
    close(
        &clipped_step(Some(Clip::GlobalNorm(7.0))),
        &[1.0 - 0.1 * 42.0 * s, 1.0 - 0.1 * 56.0 * s, -0.1 * 14.0 * s],
        1e-6,
    );
}

#[test]
fn clipping_runs_once_per_step_in_a_custom_loop() {
    let mut m = line(Optimizer::sgd(0.1).clipnorm(7.0));
    let (x, y) = batch();
    let g = m.compute_gradients(&x, &y).unwrap();
    // compute_gradients returns the hook's output: the clipped gradients.
    close(&g.grads[0].1.to_f64(), &[4.2, 5.6], 1e-6);
    close(&g.grads[1].1.to_f64(), &[7.0], 1e-6);
    // apply_gradients feeds gradients in place of the hook's output: a
    // gradient far over the threshold is applied as given (not clipped twice).
    let big = vec![
        (g.grads[0].0.clone(), ht(&[2, 1], vec![100.0, 0.0])),
        (g.grads[1].0.clone(), ht(&[1], vec![0.0])),
    ];
    m.apply_gradients(&big).unwrap();
    close(&weights(&m), &[1.0 - 10.0, 1.0, 0.0], 1e-6);
    // compute + apply of the clipped gradients equals train_on_batch.
    let mut a = line(Optimizer::sgd(0.1).clipnorm(7.0));
    let g = a.compute_gradients(&x, &y).unwrap();
    a.apply_gradients(&g.grads).unwrap();
    let mut b = line(Optimizer::sgd(0.1).clipnorm(7.0));
    b.train_on_batch(&x, &y).unwrap();
    assert_eq!(weights(&a), weights(&b));
}

#[test]
fn clipping_rejects_a_bad_threshold() {
    let mut m = Sequential::new("bad")
        .add(Input::new(&[2]))
        .add(Dense::new(1))
        .build()
        .unwrap();
    let err = m
        .compile(CompileOptions::new(
            Optimizer::adam(0.1).clipvalue(-1.0),
            Loss::MeanSquaredError,
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("gradient clipping"), "{err}");
}

fn lr(s: &LearningRate, steps: &[u64]) -> Vec<f64> {
    steps.iter().map(|&t| s.at(t) as f64).collect()
}

#[test]
fn schedules_follow_keras_formulas() {
    let exp = |staircase| LearningRate::ExponentialDecay {
        initial: 0.1,
        decay_steps: 10,
        decay_rate: 0.5,
        staircase,
    };
    // 0.1·0.5^(15/10) and, floored, 0.1·0.5^1.
    close(&lr(&exp(false), &[0, 15]), &[0.1, 0.035355339], 1e-7);
    close(&lr(&exp(true), &[9, 15, 20]), &[0.1, 0.05, 0.025], 1e-8);
    let pw = LearningRate::PiecewiseConstantDecay {
        boundaries: vec![10, 20],
        values: vec![1.0, 0.5, 0.1],
    };
    close(
        &lr(&pw, &[0, 10, 11, 20, 21, 1000]),
        &[1.0, 1.0, 0.5, 0.5, 0.1, 0.1],
        1e-8,
    );
    let poly = |cycle| LearningRate::PolynomialDecay {
        initial: 0.1,
        decay_steps: 10,
        end: 0.01,
        power: 2.0,
        cycle,
    };
    // 0.09·(1 - 5/10)² + 0.01; capped at the end value after 10 steps.
    close(&lr(&poly(false), &[0, 5, 20]), &[0.1, 0.0325, 0.01], 1e-8);
    // cycle: step 15 decays over 20 steps: 0.09·(1 - 15/20)² + 0.01.
    close(&lr(&poly(true), &[0, 15]), &[0.1, 0.015625], 1e-8);
    let inv = |staircase| LearningRate::InverseTimeDecay {
        initial: 0.1,
        decay_steps: 10,
        decay_rate: 0.5,
        staircase,
    };
    // 0.1 / (1 + 0.5·5/10), and floored 0.1 / (1 + 0.5·1).
    close(&lr(&inv(false), &[5]), &[0.08], 1e-8);
    close(&lr(&inv(true), &[15]), &[0.1 / 1.5], 1e-8);
    let cos = |alpha, warmup| LearningRate::CosineDecay {
        initial: 0.1,
        decay_steps: 100,
        alpha,
        warmup,
    };
    // ½(1 + cos(π/2)) = ½; capped at decay_steps (0 after).
    close(&lr(&cos(0.0, None), &[0, 50, 200]), &[0.1, 0.05, 0.0], 1e-8);
    // alpha 0.1: (0.9·½ + 0.1)·0.1 at the midpoint, 0.1·0.1 at the end.
    close(&lr(&cos(0.1, None), &[50, 100]), &[0.055, 0.01], 1e-8);
    // Warmup from 0.1 to 0.3 over 10 steps, then cosine from 0.3.
    close(
        &lr(&cos(0.0, Some((0.3, 10))), &[0, 5, 10, 60, 500]),
        &[0.1, 0.2, 0.3, 0.15, 0.0],
        1e-7,
    );
    let sgdr = |t_mul, m_mul| LearningRate::CosineDecayRestarts {
        initial: 0.1,
        first_decay_steps: 10,
        t_mul,
        m_mul,
        alpha: 0.0,
    };
    // t_mul 2: periods [0, 10), [10, 30), ...; the second peak is m_mul·0.1,
    // its midpoint (step 20) half of that.
    close(
        &lr(&sgdr(2.0, 0.5), &[0, 5, 10, 20]),
        &[0.1, 0.05, 0.05, 0.025],
        1e-7,
    );
    // t_mul 1: period 10; step 25 is restart 2 (peak 0.25·0.1) at its midpoint.
    close(&lr(&sgdr(1.0, 0.5), &[25]), &[0.0125], 1e-8);
}

#[test]
fn a_schedule_is_fed_per_step_without_recompiling() {
    // SGD on `line`: the first step takes lr 0.01, the second lr 0 (the
    // program compiled once, the rate fed per step).
    let s = LearningRate::PiecewiseConstantDecay {
        boundaries: vec![0],
        values: vec![0.01, 0.0],
    };
    let mut m = line(Optimizer::sgd(0.0).learning_rate(s));
    let (x, y) = batch();
    m.train_on_batch(&x, &y).unwrap();
    let after_one = weights(&m);
    close(&after_one, &[1.0 - 0.42, 1.0 - 0.56, -0.14], 1e-6);
    // Step 1 uses lr 0: nothing moves.
    m.train_on_batch(&x, &y).unwrap();
    assert_eq!(weights(&m), after_one);
    let bad = LearningRate::PiecewiseConstantDecay {
        boundaries: vec![5, 3],
        values: vec![1.0, 0.5, 0.1],
    };
    let mut m = Sequential::new("bad")
        .add(Input::new(&[2]))
        .add(Dense::new(1))
        .build()
        .unwrap();
    let err = m
        .compile(CompileOptions::new(
            Optimizer::sgd(0.0).learning_rate(bad),
            Loss::MeanSquaredError,
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("boundaries must increase"), "{err}");
}

/// A fresh directory under the system's temporary directory.
fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lossgraph_training_loop_{}_{tag}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small classifier with state (BatchNormalization's moving statistics)
/// and noise (Dropout) besides its weights. The dropout seed is fixed: like
/// Keras's `seed` argument it is part of the architecture, so the model
/// that resumes (built with another weight seed) draws the same masks.
fn stateful(opt: Optimizer, seed: u64) -> Model {
    let mut m = Sequential::new("stateful")
        .seed(seed)
        .add(Input::new(&[3]))
        .add(Dense::new(8).activation("relu"))
        .add(BatchNormalization::new())
        .add(Dropout::new(0.3).seed(5))
        .add(Dense::new(2).activation("softmax"))
        .build()
        .unwrap();
    m.compile(CompileOptions::new(
        opt,
        Loss::SparseCategoricalCrossentropy { from_logits: false },
    ))
    .unwrap();
    m
}

fn plain(opt: Optimizer, seed: u64) -> Model {
    let mut m = Sequential::new("plain")
        .seed(seed)
        .add(Input::new(&[3]))
        .add(Dense::new(6).activation("tanh"))
        .add(Dense::new(2).activation("softmax"))
        .build()
        .unwrap();
    m.compile(CompileOptions::new(
        opt,
        Loss::SparseCategoricalCrossentropy { from_logits: false },
    ))
    .unwrap();
    m
}

/// 40 samples (batches of 16: a partial last batch), labels from a linear rule.
fn classification() -> (Vec<HostTensor>, Vec<HostTensor>) {
    let n = 40;
    let x: Vec<f32> = (0..n * 3)
        .map(|i| ((i * 37 % 23) as f32 / 11.0) - 1.0)
        .collect();
    let y: Vec<f32> = (0..n)
        .map(|i| f32::from(x[3 * i] + 0.5 * x[3 * i + 1] - x[3 * i + 2] > 0.0))
        .collect();
    (vec![ht(&[n, 3], x)], vec![ht(&[n, 1], y)])
}

fn all_weights(m: &Model) -> Vec<(String, Vec<u32>)> {
    m.get_weights()
        .into_iter()
        .map(|(n, t)| (n, t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn fit_opts(epochs: usize) -> FitOptions {
    FitOptions::new()
        .epochs(epochs)
        .batch_size(16)
        .shuffle(true, 7)
        .verbose(false)
}

/// Trains 4 epochs straight, and 2 epochs + checkpoint + a fresh model
/// (other initial weights) that loads it and trains epochs 2..4: the final
/// weights, state included, must be bit-identical.
fn resume_is_bit_identical(make: fn(Optimizer, u64) -> Model, opt: fn() -> Optimizer) {
    let (x, y) = classification();
    let dir = scratch(&format!("resume_{}", opt().kind()));
    let ckpt = dir.join(format!("ckpt_{}.safetensors", make(opt(), 1).name()));
    let mut straight = make(opt(), 1);
    let h = straight.fit(&x, &y, fit_opts(4)).unwrap();
    assert_eq!(h.epochs.len(), 4);

    let mut first = make(opt(), 1);
    first.fit(&x, &y, fit_opts(2)).unwrap();
    first.save_checkpoint(&ckpt).unwrap();
    let mut resumed = make(opt(), 99);
    assert_ne!(all_weights(&resumed), all_weights(&first));
    let info = resumed.load_checkpoint(&ckpt).unwrap();
    assert_eq!(info.epoch, 2);
    assert_eq!(info.iterations, 6, "3 steps per epoch");
    assert_eq!(resumed.iterations(), 6);
    let h2 = resumed
        .fit(&x, &y, fit_opts(4).initial_epoch(info.epoch))
        .unwrap();
    assert_eq!(h2.epochs.len(), 2);
    assert_eq!(all_weights(&resumed), all_weights(&straight));
    assert_eq!(resumed.iterations(), straight.iterations());
    // The resumed epochs log exactly the uninterrupted run's last two.
    assert_eq!(h2.epochs[..], h.epochs[2..]);
}

#[test]
fn resume_from_checkpoint_is_bit_identical_with_sgd_momentum() {
    resume_is_bit_identical(plain, || Optimizer::sgd(0.1).momentum(0.9));
}

#[test]
fn resume_from_checkpoint_is_bit_identical_with_adam() {
    resume_is_bit_identical(plain, || Optimizer::adam(0.01));
}

#[test]
fn resume_from_checkpoint_is_bit_identical_with_batchnorm_and_dropout() {
    resume_is_bit_identical(stateful, || Optimizer::adam(0.01).amsgrad(true));
    resume_is_bit_identical(stateful, || {
        Optimizer::rmsprop(0.01).momentum(0.5).centered(true)
    });
}

#[test]
fn a_checkpoint_uses_keras_names_for_optimizer_variables() {
    let (x, y) = classification();
    let dir = scratch("names");
    let ckpt = dir.join("ckpt.safetensors");
    let mut m = plain(Optimizer::adam(0.01), 1);
    m.fit(&x, &y, fit_opts(1)).unwrap();
    m.save_checkpoint(&ckpt).unwrap();
    let names: Vec<String> = lossgraph::read_safetensors(&ckpt)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for want in [
        "dense/kernel",
        "dense_1/bias",
        "adam/iteration",
        "adam/learning_rate",
        "adam/dense_kernel_momentum",
        "adam/dense_kernel_velocity",
        "adam/dense_1_bias_velocity",
        "lossgraph/rng_step",
        "lossgraph/epoch",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert_eq!(names.len(), 4 + 2 + 8 + 2, "{names:?}");
    // Loading into a model compiled with another optimiser names the problem.
    let mut other = plain(Optimizer::sgd(0.1).momentum(0.9), 1);
    let err = other.load_checkpoint(&ckpt).unwrap_err().to_string();
    assert!(err.contains("SGD/iteration"), "{err}");
    assert!(err.contains("adam/dense_kernel_momentum"), "{err}");
    assert!(err.contains("this model's optimizer is 'SGD'"), "{err}");
    // A weights file is not a checkpoint.
    let w = dir.join("w.safetensors");
    m.save_weights(&w).unwrap();
    let err = other.load_checkpoint(&w).unwrap_err().to_string();
    assert!(
        err.contains("missing") && err.contains("SGD/iteration"),
        "{err}"
    );
    // Nothing changed on failure.
    assert_eq!(other.iterations(), 0);
    // Saving needs the optimiser.
    let bare = Sequential::new("bare")
        .add(Input::new(&[3]))
        .add(Dense::new(1))
        .build()
        .unwrap();
    assert!(bare.save_checkpoint(&ckpt).is_err());
}
