//! `FitOptions::check_numerics`: the first step that produces a NaN or an
//! infinity stops `fit` with a report naming the step, the loss terms and
//! the first non-finite node (layer, role), and the variables are put back
//! as they were before that step.

use lossgraph::layers::{Dense, Input};
use lossgraph::{
    CompileOptions, Error, FitOptions, HostTensor, Loss, Model, Optimizer, Sequential,
};

#[path = "common/variables.rs"]
mod variables;
use variables::variables;

/// Input(4) → Dense(3) "hidden" (`act`) → Dense(1) "out", Adam, MSE.
fn mlp(act: &str) -> Model {
    let mut m = Sequential::new("mlp")
        .seed(4)
        .add(Input::new(&[4]))
        .add(Dense::new(3).activation(act).name("hidden"))
        .add(Dense::new(1).name("out"))
        .build()
        .unwrap();
    m.compile(CompileOptions::new(
        Optimizer::adam(0.01),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    m
}

/// 16 samples; sample `huge` (if any) has x = 1e30 in every feature.
fn data(huge: Option<usize>) -> (HostTensor, HostTensor) {
    let mut x: Vec<f32> = (0..64)
        .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5)
        .collect();
    if let Some(h) = huge {
        x[4 * h..4 * h + 4].fill(1e30);
    }
    let y: Vec<f32> = (0..16).map(|i| (i % 3) as f32 - 1.0).collect();
    (
        HostTensor::f32(&[16, 4], x).unwrap(),
        HostTensor::f32(&[16, 1], y).unwrap(),
    )
}

fn opts() -> FitOptions {
    FitOptions::new()
        .epochs(2)
        .batch_size(4)
        .shuffle(false, 0)
        .verbose(false)
        .check_numerics(true)
}

fn non_finite_message(r: lossgraph::Result<lossgraph::History>) -> String {
    match r {
        Err(e @ Error::NonFinite { .. }) => e.to_string(),
        Err(e) => panic!("expected a check_numerics error, got {e}"),
        Ok(_) => panic!("fit trained through a non-finite value"),
    }
}

#[test]
fn a_nan_planted_in_a_weight_is_named_with_its_layer() {
    let mut m = mlp("tanh");
    let mut k = m.get_weight("hidden/kernel").unwrap();
    k.as_f32_mut().unwrap()[4] = f32::NAN; // row 1, column 1 of f32[4, 3]
    m.set_weight("hidden/kernel", k.clone()).unwrap();
    let before = variables(&m);
    let (x, y) = data(None);
    let msg = non_finite_message(m.fit(&[x], &[y], opts()));
    eprintln!("{msg}");
    assert!(msg.contains("training step 1 (epoch 1, batch 1)"), "{msg}");
    assert!(msg.contains("loss = NaN"), "{msg}");
    assert!(
        msg.contains("first non-finite value: variable 'hidden/kernel' holds NaN at [1, 1], in layer 'hidden', role param"),
        "{msg}"
    );
    // The variables (the planted NaN included) are those from before the step.
    let after = variables(&m);
    for ((n, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(b) {
            assert!(p.to_bits() == q.to_bits(), "{n}: {p} became {q}");
        }
    }
}

#[test]
fn an_overflow_in_the_third_step_keeps_the_second_steps_weights() {
    // Sample 9 sits in batch 3 (samples 8..12): through two linear layers
    // its prediction is ≈ 1e30, finite, and its squared error overflows in
    // the loss.
    let mut m = mlp("linear");
    let (x, y) = data(Some(9));
    let msg = non_finite_message(m.fit(&[x], &[y], opts()));
    eprintln!("{msg}");
    assert!(msg.contains("training step 3 (epoch 1, batch 3)"), "{msg}");
    assert!(msg.contains("loss = inf"), "{msg}");
    assert!(msg.contains("role loss("), "{msg}");
    // The same model trained on batches 1 and 2 only: bit-identical.
    let mut two = mlp("linear");
    let (x, y) = data(None);
    let first8 = |t: &HostTensor, k: usize| {
        HostTensor::f32(&[8, k], t.as_f32().unwrap()[..8 * k].to_vec()).unwrap()
    };
    two.fit(
        &[first8(&x, 4)],
        &[first8(&y, 1)],
        FitOptions::new()
            .epochs(1)
            .batch_size(4)
            .shuffle(false, 0)
            .verbose(false),
    )
    .unwrap();
    let (got, want) = (variables(&m), variables(&two));
    assert_eq!(got.len(), want.len());
    for ((n, a), (_, b)) in got.iter().zip(&want) {
        assert!(
            a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{n}: {a:?} vs {b:?}"
        );
    }
}

#[test]
fn without_the_check_fit_trains_on() {
    let mut m = mlp("linear");
    let (x, y) = data(Some(9));
    let opts = opts().check_numerics(false);
    let h = m.fit(&[x], &[y], opts).unwrap();
    assert!(h.series("loss").iter().any(|l| !l.is_finite()));
}
