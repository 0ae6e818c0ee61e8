//! Front-end tests: layers, models, added losses and their order, compiled
//! losses against independent f64 references, errors, weights files.

mod common;

use common::CustomDenseLayer;
use lossgraph::ir::Role;
use lossgraph::layers::{
    ActivityRegularization, Add, Concatenate, Dense, Dropout, Flatten, Input, Reshape,
};
use lossgraph::{
    BuildCtx, CallCtx, CompileOptions, Error, Functional, HostTensor, Init, Layer, Loss,
    LossReason, Metric, Model, Optimizer, Regularizer, Result, Sequential, Tensor,
};

fn ht(shape: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::f32(shape, v.to_vec()).unwrap()
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * (1.0 + want.abs())
}

fn assert_close(what: &str, got: f64, want: f64) {
    assert!(close(got, want, 1e-5), "{what}: got {got}, want {want}");
}

/// A layer adding an auxiliary loss on its activations in `call`: 0.5·mean(x²).
struct AuxLoss;

impl Layer for AuxLoss {
    fn call(&self, ctx: &mut CallCtx, inputs: &Tensor) -> Result<Tensor> {
        ctx.add_loss((inputs * inputs).mean_all() * 0.5);
        Ok(inputs.clone())
    }
}

fn seed_model() -> Model {
    Sequential::new("seed")
        .add(Input::new(&[3]))
        .add(CustomDenseLayer { units: 4 })
        .add(Dense::new(2).activation("softmax"))
        .build()
        .unwrap()
}

#[test]
fn dense_forward_matches_hand_computation() {
    let mut m = Sequential::new("m")
        .add(Input::new(&[2]))
        .add(Dense::new(2).activation("relu").name("d"))
        .build()
        .unwrap();
    m.set_weight("d/kernel", ht(&[2, 2], &[1.0, -1.0, 2.0, 0.5]))
        .unwrap();
    m.set_weight("d/bias", ht(&[2], &[0.5, -1.0])).unwrap();
    let out = m
        .predict(&[ht(&[2, 2], &[1.0, 2.0, -1.0, 1.0])], 8)
        .unwrap();
    // row 0: [1+4, -1+1] + b = [5.5, -1] -> relu [5.5, 0]; row 1: [1, 1.5] + b = [1.5, 0.5].
    assert_eq!(out[0].as_f32().unwrap(), &[5.5, 0.0, 1.5, 0.5]);
    // Predicting in batches of 1 (a second program per batch size) gives the same.
    let out1 = m
        .predict(&[ht(&[2, 2], &[1.0, 2.0, -1.0, 1.0])], 1)
        .unwrap();
    assert_eq!(out1[0].as_f32().unwrap(), out[0].as_f32().unwrap());
}

#[test]
fn seed_example_lists_its_add_loss_and_evaluates_it() {
    let mut m = seed_model();
    let losses = m.losses().unwrap();
    assert_eq!(losses.len(), 1);
    assert_eq!(losses[0].owner, "custom_dense_layer");
    assert_eq!(losses[0].reason, LossReason::AddLoss);
    assert_eq!(losses[0].output, "added/0");
    // The nodes of the loss carry the added_loss role in the layer's scope.
    let g = m.trace(true, 5).unwrap().finish().unwrap();
    let id = g.output("added/0").unwrap();
    let n = g.node(id);
    assert_eq!(n.scope, "custom_dense_layer");
    assert_eq!(
        n.role,
        Role::AddedLoss {
            reason: LossReason::AddLoss,
            call: 0
        }
    );
    // Evaluate: the total is the compiled loss plus 0.01·Σ|kernel|.
    m.compile(CompileOptions::new(
        Optimizer::adam(0.001),
        Loss::from_name("sparse_categorical_crossentropy").unwrap(),
    ))
    .unwrap();
    let k: f64 = m
        .get_weight("custom_dense_layer/kernel")
        .unwrap()
        .as_f32()
        .unwrap()
        .iter()
        .map(|v| (*v as f64).abs())
        .sum();
    let x = ht(&[2, 3], &[0.1, 0.2, 0.3, -0.5, 0.0, 1.0]);
    let y = HostTensor::i32(&[2], vec![0, 1]).unwrap();
    let logs = m.evaluate(&[x], &[y], 2).unwrap();
    assert_close(
        "add_loss",
        logs.get("custom_dense_layer/add_loss").unwrap(),
        0.01 * k,
    );
    assert_close(
        "total",
        logs.loss(),
        logs.get("compiled_loss").unwrap() + 0.01 * k,
    );
    let s = m.summary().unwrap();
    // Keras's table wraps "custom_dense_layer (CustomDenseLayer)" at the space.
    assert!(
        s.contains("│ custom_dense_layer ") && s.contains("│ (CustomDenseLayer) "),
        "{s}"
    );
    assert!(s.contains("add_loss"), "{s}");
    assert!(s.contains("Total params: 26"), "{s}");
}

/// Builds the functional model used by the ordering test; returns it and its layer names.
fn ordering_model() -> Model {
    let mut f = Functional::new("order");
    let inp = f.input(Input::new(&[4]).name("inp")).unwrap();
    let h = f
        .apply(
            Dense::new(3)
                .activation("tanh")
                .kernel_regularizer(Regularizer::L2(0.1))
                .bias_regularizer(Regularizer::L1(0.2))
                .activity_regularizer(Regularizer::L1(0.01))
                .bias_initializer(Init::Constant(0.1))
                .name("d1"),
            &[inp],
        )
        .unwrap();
    let shared = f
        .add_layer(
            Dense::new(3)
                .activity_regularizer(Regularizer::L2(0.05))
                .kernel_regularizer(Regularizer::L1(0.3))
                .name("shared"),
        )
        .unwrap();
    let s1 = f.call(shared, &[h]).unwrap();
    let a = f.apply(AuxLoss, &[s1]).unwrap();
    let s2 = f.call(shared, &[a]).unwrap();
    let r = f
        .apply(ActivityRegularization::new(0.1, 0.0).name("ar"), &[s2])
        .unwrap();
    let out = f
        .apply(
            Dense::new(1)
                .kernel_regularizer(Regularizer::L2(0.5))
                .name("out"),
            &[r],
        )
        .unwrap();
    f.build(&[out]).unwrap()
}

#[test]
fn model_losses_follow_keras_order_and_count_every_shared_call() {
    let m = ordering_model();
    let got: Vec<(String, LossReason, u32, Option<String>)> = m
        .losses()
        .unwrap()
        .into_iter()
        .map(|l| (l.owner, l.reason, l.call, l.variable))
        .collect();
    use LossReason::*;
    let want = vec![
        ("d1", ActivityRegularizer, 0, None),
        ("shared", ActivityRegularizer, 0, None),
        ("shared", ActivityRegularizer, 1, None),
        ("aux_loss", AddLoss, 0, None),
        ("ar", ActivityRegularizer, 0, None),
        ("d1", KernelRegularizer, 0, Some("d1/kernel")),
        ("d1", BiasRegularizer, 0, Some("d1/bias")),
        ("shared", KernelRegularizer, 0, Some("shared/kernel")),
        ("out", KernelRegularizer, 0, Some("out/kernel")),
    ];
    let want: Vec<(String, LossReason, u32, Option<String>)> = want
        .into_iter()
        .map(|(o, r, c, v)| (o.to_string(), r, c, v.map(String::from)))
        .collect();
    assert_eq!(got, want);
    // In the graph, the second call's activity loss is tagged with call 1.
    let g = m.trace(true, 2).unwrap().finish().unwrap();
    let n = g.node(g.output("added/2").unwrap());
    assert_eq!(n.scope, "shared");
    assert_eq!(
        n.role,
        Role::AddedLoss {
            reason: ActivityRegularizer,
            call: 1
        }
    );
    // The aux layer's mean(x²) nodes were emitted in call(): they are retagged as added loss.
    let aux_nodes: Vec<_> = g
        .node_ids()
        .into_iter()
        .filter(|&id| g.node(id).scope == "aux_loss")
        .collect();
    assert!(!aux_nodes.is_empty());
    assert!(aux_nodes.iter().all(|&id| matches!(
        g.node(id).role,
        Role::AddedLoss {
            reason: AddLoss,
            call: 0
        }
    )));
}

fn tanh_layer(x: &[f64], k: &[f32], b: &[f32], n_in: usize, n_out: usize) -> Vec<f64> {
    let rows = x.len() / n_in;
    let mut out = vec![0.0; rows * n_out];
    for r in 0..rows {
        for j in 0..n_out {
            let mut s = b[j] as f64;
            for i in 0..n_in {
                s += x[r * n_in + i] * k[i * n_out + j] as f64;
            }
            out[r * n_out + j] = s.tanh();
        }
    }
    out
}

#[test]
fn added_loss_values_match_independent_computation() {
    let mut m = ordering_model();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let xs: Vec<f32> = (0..8).map(|i| (i as f32 - 3.5) * 0.3).collect();
    let x = ht(&[2, 4], &xs);
    let y = ht(&[2, 1], &[0.5, -0.5]);
    let logs = m.evaluate(&[x], &[y], 2).unwrap();
    let k = m
        .get_weight("d1/kernel")
        .unwrap()
        .as_f32()
        .unwrap()
        .to_vec();
    let b = m.get_weight("d1/bias").unwrap().as_f32().unwrap().to_vec();
    let xd: Vec<f64> = xs.iter().map(|v| *v as f64).collect();
    let h = tanh_layer(&xd, &k, &b, 4, 3);
    // Activity L1(0.01) of d1's output, divided by the batch size 2.
    let act: f64 = 0.01 * h.iter().map(|v| v.abs()).sum::<f64>() / 2.0;
    assert_close(
        "d1 activity",
        logs.get("d1/activity_regularizer").unwrap(),
        act,
    );
    let kl2: f64 = 0.1 * k.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
    assert_close(
        "d1 kernel L2",
        logs.get("d1/kernel_regularizer").unwrap(),
        kl2,
    );
    // Bias initialised to 0.1 everywhere: L1(0.2) = 0.2 * 3 * 0.1.
    assert_close("d1 bias L1", logs.get("d1/bias_regularizer").unwrap(), 0.06);
    // The second activity term of the shared layer is logged separately.
    assert!(logs.get("shared/activity_regularizer").is_some());
    assert!(logs.get("shared/activity_regularizer#2").is_some());
    // Total = compiled + Σ added.
    let added: f64 = logs
        .entries()
        .iter()
        .filter(|(k, _)| k.contains("_regularizer") || k.contains("add_loss"))
        .map(|(_, v)| *v)
        .sum();
    assert_close(
        "total",
        logs.loss(),
        logs.get("compiled_loss").unwrap() + added,
    );
}

/// Independent f64 references of the Keras loss formulas (per batch, reduced).
fn reference_loss(name: &str, y: &[f64], p: &[f64], classes: usize) -> f64 {
    let eps = 1e-7f64;
    let rows = p.len() / classes;
    let mut total = 0.0;
    for r in 0..rows {
        let pr = &p[r * classes..(r + 1) * classes];
        let v = match name {
            "mse" | "mae" | "huber" | "bce" | "bce_logits" => {
                let yr = &y[r * classes..(r + 1) * classes];
                let per: Vec<f64> = pr
                    .iter()
                    .zip(yr)
                    .map(|(&p, &t)| match name {
                        "mse" => (t - p).powi(2),
                        "mae" => (t - p).abs(),
                        "huber" => {
                            let e = (p - t).abs();
                            if e <= 1.0 {
                                0.5 * e * e
                            } else {
                                e - 0.5
                            }
                        }
                        "bce" => {
                            let q = p.clamp(eps, 1.0 - eps);
                            -(t * q.ln() + (1.0 - t) * (1.0 - q).ln())
                        }
                        _ => {
                            let ls = |z: f64| -(1.0 + (-z).exp()).ln();
                            -(t * ls(p) + (1.0 - t) * ls(-p))
                        }
                    })
                    .collect();
                per.iter().sum::<f64>() / classes as f64
            }
            "cce" | "cce_logits" | "scce" => {
                let t: Vec<f64> = if name == "scce" {
                    (0..classes)
                        .map(|c| if c as f64 == y[r] { 1.0 } else { 0.0 })
                        .collect()
                } else {
                    y[r * classes..(r + 1) * classes].to_vec()
                };
                let logp: Vec<f64> = if name == "cce_logits" {
                    let m = pr.iter().cloned().fold(f64::MIN, f64::max);
                    let lse = pr.iter().map(|z| (z - m).exp()).sum::<f64>().ln() + m;
                    pr.iter().map(|z| z - lse).collect()
                } else {
                    let s: f64 = pr.iter().sum();
                    pr.iter()
                        .map(|q| (q / s).clamp(eps, 1.0 - eps).ln())
                        .collect()
                };
                -t.iter().zip(&logp).map(|(a, b)| a * b).sum::<f64>()
            }
            _ => unreachable!(),
        };
        total += v;
    }
    total / rows as f64
}

fn identity_model(n: usize) -> Model {
    let mut m = Sequential::new("id")
        .add(Input::new(&[n]))
        .add(Dense::new(n).name("out"))
        .build()
        .unwrap();
    let mut eye = vec![0.0; n * n];
    for i in 0..n {
        eye[i * n + i] = 1.0;
    }
    m.set_weight("out/kernel", ht(&[n, n], &eye)).unwrap();
    m
}

#[test]
fn compiled_losses_match_keras_formulas() {
    let p: Vec<f32> = vec![
        0.2, 0.7, 0.1, 0.9, 0.05, 0.05, 1e-9, 0.5, 0.3, 0.6, 0.3, 0.1,
    ];
    let t: Vec<f32> = vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
    let logits: Vec<f32> = vec![
        2.0, -1.0, 0.5, -3.0, 4.0, 0.0, 1.5, -0.5, 2.5, 0.1, 0.2, -2.2,
    ];
    let labels = vec![1, 0, 2, 1];
    let pd: Vec<f64> = p.iter().map(|v| *v as f64).collect();
    let td: Vec<f64> = t.iter().map(|v| *v as f64).collect();
    let ld: Vec<f64> = logits.iter().map(|v| *v as f64).collect();
    let labd: Vec<f64> = labels.iter().map(|v| *v as f64).collect();
    type Case<'a> = (&'a str, Loss, &'a [f32], HostTensor, Vec<f64>, Vec<f64>);
    let cases: Vec<Case> = vec![
        (
            "mse",
            Loss::MeanSquaredError,
            &logits,
            ht(&[4, 3], &t),
            ld.clone(),
            td.clone(),
        ),
        (
            "mae",
            Loss::MeanAbsoluteError,
            &logits,
            ht(&[4, 3], &t),
            ld.clone(),
            td.clone(),
        ),
        (
            "huber",
            Loss::Huber { delta: 1.0 },
            &logits,
            ht(&[4, 3], &t),
            ld.clone(),
            td.clone(),
        ),
        (
            "bce",
            Loss::BinaryCrossentropy { from_logits: false },
            &p,
            ht(&[4, 3], &t),
            pd.clone(),
            td.clone(),
        ),
        (
            "bce_logits",
            Loss::BinaryCrossentropy { from_logits: true },
            &logits,
            ht(&[4, 3], &t),
            ld.clone(),
            td.clone(),
        ),
        (
            "cce",
            Loss::CategoricalCrossentropy { from_logits: false },
            &p,
            ht(&[4, 3], &t),
            pd.clone(),
            td.clone(),
        ),
        (
            "cce_logits",
            Loss::CategoricalCrossentropy { from_logits: true },
            &logits,
            ht(&[4, 3], &t),
            ld.clone(),
            td.clone(),
        ),
        (
            "scce",
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            &p,
            HostTensor::i32(&[4], labels.clone()).unwrap(),
            pd.clone(),
            labd.clone(),
        ),
    ];
    for (name, loss, x, y, pref, yref) in cases {
        let mut m = identity_model(3);
        m.compile(CompileOptions::new(Optimizer::sgd(0.1), loss))
            .unwrap();
        let logs = m.evaluate(&[ht(&[4, 3], x)], &[y], 4).unwrap();
        let want = reference_loss(name, &yref, &pref, 3);
        assert!(
            close(logs.loss(), want, 1e-5),
            "{name}: got {}, want {want}",
            logs.loss()
        );
    }
    // Sparse categorical from logits.
    let mut m = identity_model(3);
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::SparseCategoricalCrossentropy { from_logits: true },
    ))
    .unwrap();
    let logs = m
        .evaluate(
            &[ht(&[4, 3], &logits)],
            &[HostTensor::i32(&[4], labels.clone()).unwrap()],
            3,
        )
        .unwrap();
    let onehot: Vec<f64> = labels
        .iter()
        .flat_map(|&l| (0..3).map(move |c| if c == l { 1.0 } else { 0.0 }))
        .collect();
    assert_close(
        "scce logits",
        logs.loss(),
        reference_loss("cce_logits", &onehot, &ld, 3),
    );
}

#[test]
fn metrics_count_correct_predictions() {
    let mut m = identity_model(3);
    m.compile(
        CompileOptions::new(
            Optimizer::sgd(0.1),
            Loss::SparseCategoricalCrossentropy { from_logits: true },
        )
        .metric(Metric::Accuracy),
    )
    .unwrap();
    let x = ht(
        &[4, 3],
        &[
            2.0, -1.0, 0.5, -3.0, 4.0, 0.0, 1.5, -0.5, 2.5, 0.1, 0.2, -2.2,
        ],
    );
    // argmax per row: 0, 1, 2, 1; labels 0, 1, 0, 1 -> 3 of 4 right.
    let y = HostTensor::i32(&[4], vec![0, 1, 0, 1]).unwrap();
    let logs = m.evaluate(&[x], &[y], 4).unwrap();
    assert_close("accuracy", logs.get("accuracy").unwrap(), 0.75);

    // mae/mse metrics and binary accuracy on float targets.
    let mut m = identity_model(2);
    m.compile(
        CompileOptions::new(Optimizer::sgd(0.1), Loss::MeanSquaredError)
            .metric(Metric::MeanAbsoluteError)
            .metric(Metric::BinaryAccuracy { threshold: 0.5 }),
    )
    .unwrap();
    let x = ht(&[2, 2], &[0.9, 0.2, 0.4, 0.7]);
    let y = ht(&[2, 2], &[1.0, 0.0, 1.0, 0.0]);
    let logs = m.evaluate(&[x], &[y], 2).unwrap();
    // |errors| = 0.1, 0.2, 0.6, 0.7 -> mean 0.4; thresholded 1,0,0,1 vs 1,0,1,0 -> 0.5.
    assert_close("mae", logs.get("mae").unwrap(), 0.4);
    assert_close("binary_accuracy", logs.get("binary_accuracy").unwrap(), 0.5);
    // mse loss = (0.01 + 0.04 + 0.36 + 0.49) / 4 = 0.225.
    assert_close("mse", logs.loss(), 0.225);
}

#[test]
fn shape_errors_name_the_layer() {
    // Add on mismatched shapes.
    let mut f = Functional::new("bad");
    let a = f.input(Input::new(&[4]).name("a")).unwrap();
    let b = f.input(Input::new(&[3]).name("b")).unwrap();
    let err = f
        .apply(Add::new().name("adder"), &[a, b])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adder") && err.contains("[4]") && err.contains("[3]"),
        "{err}"
    );
    let err = f
        .apply(Concatenate::new().name("cat"), &[a])
        .unwrap_err()
        .to_string();
    assert!(err.contains("cat") && err.contains("at least 2"), "{err}");

    // A custom layer emitting an ill-shaped matmul.
    struct Bad;
    impl Layer for Bad {
        fn build(&mut self, ctx: &mut BuildCtx, _s: &[usize]) -> Result<()> {
            ctx.add_weight("kernel", &[5, 2], Init::Ones, true)?;
            Ok(())
        }
        fn call(&self, ctx: &mut CallCtx, x: &Tensor) -> Result<Tensor> {
            Ok(x.matmul(ctx.weight("kernel")))
        }
    }
    let err = Sequential::new("s")
        .add(Input::new(&[3]))
        .add(Bad)
        .build()
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Ir { ref layer, .. } if layer == "bad"),
        "{msg}"
    );
    assert!(
        msg.contains("f32[2,3]") && msg.contains("f32[5,2]"),
        "{msg}"
    );

    // An unknown weight name.
    struct NoWeight;
    impl Layer for NoWeight {
        fn call(&self, ctx: &mut CallCtx, x: &Tensor) -> Result<Tensor> {
            Ok(x * ctx.weight("scale"))
        }
    }
    let msg = Sequential::new("s")
        .add(Input::new(&[3]))
        .add(NoWeight)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("no_weight") && msg.contains("scale"), "{msg}");

    // An unknown activation name is reported when the layer is built, naming it.
    let msg = Sequential::new("s")
        .add(Input::new(&[3]))
        .add(Dense::new(2).activation("gelux").name("dd"))
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("dd") && msg.contains("gelux"), "{msg}");

    // Reshape to an incompatible size.
    let msg = Sequential::new("s")
        .add(Input::new(&[6]))
        .add(Reshape::new(&[4, -1]).name("rs"))
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("rs") && msg.contains("[4, -1]"), "{msg}");

    // Data of the wrong shape.
    let mut m = identity_model(3);
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let msg = m
        .evaluate(&[ht(&[2, 4], &[0.0; 8])], &[ht(&[2, 3], &[0.0; 6])], 2)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("'x'") && msg.contains("[2, 4]"), "{msg}");
}

#[test]
fn shape_layers_and_dropout_at_inference() {
    let mut m = Sequential::new("shapes")
        .add(Input::new(&[2, 3]))
        .add(Flatten::new())
        .add(Reshape::new(&[3, -1]))
        .add(Dropout::new(0.5))
        .add(Flatten::new())
        .build()
        .unwrap();
    assert_eq!(m.output_shapes(), vec![vec![6]]);
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let out = m.predict(&[ht(&[2, 2, 3], &x)], 2).unwrap();
    assert_eq!(out[0].as_f32().unwrap(), x.as_slice());
    assert_eq!(out[0].shape(), &[2, 6]);
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("lossgraph_frontend_{}_{name}", std::process::id()))
}

#[test]
fn weights_round_trip_and_mismatch_errors() {
    let m = seed_model();
    let path = tmp("w.safetensors");
    m.save_weights(&path).unwrap();
    let before = m.get_weights();
    let mut m2 = Sequential::new("seed2")
        .seed(99)
        .add(Input::new(&[3]))
        .add(CustomDenseLayer { units: 4 })
        .add(Dense::new(2).activation("softmax"))
        .build()
        .unwrap();
    assert_ne!(
        m2.get_weights(),
        before,
        "different seeds give different weights"
    );
    m2.load_weights(&path).unwrap();
    assert_eq!(m2.get_weights(), before);
    let names: Vec<String> = before.iter().map(|w| w.0.clone()).collect();
    assert_eq!(
        names,
        vec![
            "custom_dense_layer/kernel",
            "custom_dense_layer/bias",
            "dense/kernel",
            "dense/bias"
        ]
    );

    // A model with another architecture: every kind of mismatch is listed.
    let mut other = Sequential::new("other")
        .add(Input::new(&[5]))
        .add(CustomDenseLayer { units: 4 })
        .add(Dense::new(2).use_bias(false).name("head"))
        .build()
        .unwrap();
    let keep = other.get_weights();
    let msg = other.load_weights(&path).unwrap_err().to_string();
    assert!(msg.contains("w.safetensors"), "{msg}");
    assert!(msg.contains("missing (1): head/kernel f32[4,2]"), "{msg}");
    assert!(
        msg.contains("unexpected (2): dense/bias f32[2], dense/kernel f32[4,2]"),
        "{msg}"
    );
    assert!(
        msg.contains("custom_dense_layer/kernel: model has f32[5,4], file has f32[3,4]"),
        "{msg}"
    );
    assert_eq!(other.get_weights(), keep, "a failed load changes nothing");
    let _ = std::fs::remove_file(&path);
}
