//! The Keras model vocabulary: layers returning several tensors, models used
//! as layers (in a model and inside a custom layer), sub-layers built on
//! their first call, loss-free compile and fit without targets, model-level
//! `add_loss`. Every expected number is recomputed here in f64 from the
//! model's weights, independently of the traced graph.

// `&[x.clone()]` reads like Keras's `[x]`.
#![allow(clippy::cloned_ref_to_slice_refs)]

use lossgraph::layers::{Dense, Input};
use lossgraph::{
    CallCtx, CompileOptions, FitOptions, Functional, HostTensor, Layer, Loss, LossReason, Model,
    Optimizer, Regularizer, Result, SampleWeights, Sequential, Sublayer, Tensor,
};

/// Deterministic inputs in [-1, 1).
fn data(n: usize, d: usize, salt: usize) -> Vec<f64> {
    (0..n * d)
        .map(|i| ((i * 37 + salt * 11) % 101) as f64 / 50.0 - 1.0)
        .collect()
}

fn host(shape: &[usize], v: &[f64]) -> HostTensor {
    HostTensor::f32(shape, v.iter().map(|x| *x as f32).collect()).unwrap()
}

fn weight(m: &Model, path: &str) -> Vec<f64> {
    m.get_weight(path)
        .unwrap_or_else(|| panic!("no weight {path}"))
        .to_f64()
}

/// `x·K + b` for `n` rows of `d_in` features.
fn dense(x: &[f64], k: &[f64], b: &[f64], n: usize, d_in: usize) -> Vec<f64> {
    let d_out = b.len();
    assert_eq!(k.len(), d_in * d_out);
    let mut y = vec![0.0; n * d_out];
    for r in 0..n {
        for o in 0..d_out {
            y[r * d_out + o] = b[o]
                + (0..d_in)
                    .map(|i| x[r * d_in + i] * k[i * d_out + o])
                    .sum::<f64>();
        }
    }
    y
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn mse(pred: &[f64], target: &[f64]) -> f64 {
    mean(
        &pred
            .iter()
            .zip(target)
            .map(|(p, t)| (p - t) * (p - t))
            .collect::<Vec<_>>(),
    )
}

fn sum_sq(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
        "{what}: got {got}, want {want}"
    );
}

/// Returns `(x[:, :2], 2·x[:, 2:])`: a layer with two outputs.
struct Split;

impl Layer for Split {
    fn call_outputs(&self, _ctx: &mut CallCtx, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &inputs[0];
        let d = x.shape()[1];
        Ok(vec![x.slice(1, 0, 2), x.slice(1, 2, d) * 2.0])
    }
}

#[test]
fn a_layer_returns_several_tensors_and_the_functional_api_indexes_them() {
    let mut f = Functional::new("split_model");
    let x = f.input(Input::new(&[5])).unwrap();
    let err = f.apply(Split, &[x]).expect_err("two outputs").to_string();
    assert!(
        err.contains("returns 2 tensors") && err.contains("call_outputs"),
        "{err}"
    );
    let parts = f.apply_outputs(Split, &[x]).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(f.shape(parts[0]), &[2]);
    assert_eq!(f.shape(parts[1]), &[3]);
    let head = f.apply(Dense::new(1).name("head"), &[parts[1]]).unwrap();
    let mut m = f.build(&[parts[0], head]).unwrap();
    assert_eq!(m.output_names(), ["split_1_0", "head"]);
    let n = 4;
    let xv = data(n, 5, 0);
    let out = m.predict(&[host(&[n, 5], &xv)], n).unwrap();
    let first: Vec<f64> = (0..n).flat_map(|r| xv[r * 5..r * 5 + 2].to_vec()).collect();
    let second: Vec<f64> = (0..n)
        .flat_map(|r| {
            xv[r * 5 + 2..r * 5 + 5]
                .iter()
                .map(|v| v * 2.0)
                .collect::<Vec<_>>()
        })
        .collect();
    for (g, w) in out[0].to_f64().iter().zip(&first) {
        close(*g, *w, "first output");
    }
    let want = dense(
        &second,
        &weight(&m, "head/kernel"),
        &weight(&m, "head/bias"),
        n,
        3,
    );
    for (g, w) in out[1].to_f64().iter().zip(&want) {
        close(*g, *w, "head of the second output");
    }
}

/// `Sequential("encoder")`: Dense(4, tanh) with an L2 kernel penalty.
fn encoder() -> Model {
    Sequential::new("encoder")
        .seed(7)
        .add(Input::new(&[3]))
        .add(
            Dense::new(4)
                .activation("tanh")
                .kernel_regularizer(Regularizer::L2(0.01)),
        )
        .build()
        .unwrap()
}

#[test]
fn a_built_model_is_a_layer_of_another_model() {
    let enc = encoder();
    let enc_kernel = weight(&enc, "dense/kernel");
    let mut f = Functional::new("outer");
    let x = f.input(Input::new(&[3])).unwrap();
    let h = f.apply(enc, &[x]).unwrap();
    let y = f.apply(Dense::new(2).name("head"), &[h]).unwrap();
    let mut m = f.build(&[y]).unwrap();
    let names: Vec<&str> = m.variables().iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "encoder/dense/kernel",
            "encoder/dense/bias",
            "head/kernel",
            "head/bias"
        ]
    );
    // The nested model brings its current weights and its regulariser.
    assert_eq!(weight(&m, "encoder/dense/kernel"), enc_kernel);
    let losses = m.losses().unwrap();
    assert_eq!(losses.len(), 1);
    assert_eq!(losses[0].variable.as_deref(), Some("encoder/dense/kernel"));
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let n = 6;
    let xv = data(n, 3, 1);
    let tv = data(n, 2, 2);
    let logs = m
        .evaluate(&[host(&[n, 3], &xv)], &[host(&[n, 2], &tv)], n)
        .unwrap();
    let hv: Vec<f64> = dense(&xv, &enc_kernel, &weight(&m, "encoder/dense/bias"), n, 3)
        .iter()
        .map(|v| v.tanh())
        .collect();
    let pred = dense(
        &hv,
        &weight(&m, "head/kernel"),
        &weight(&m, "head/bias"),
        n,
        4,
    );
    let want = mse(&pred, &tv) + 0.01 * sum_sq(&enc_kernel);
    close(logs.loss(), want, "total = mse + 0.01·Σ kernel²");
}

/// Keras's pattern: a custom layer holding a model and a layer, built on
/// first call, adding a loss on the code in `call`.
struct AutoEncoderLayer {
    encoder: Sublayer<Model>,
    decoder: Sublayer<Dense>,
}

impl Layer for AutoEncoderLayer {
    fn name(&self) -> Option<&str> {
        Some("vae")
    }
    fn call(&self, ctx: &mut CallCtx, x: &Tensor) -> Result<Tensor> {
        let z = ctx.call(&self.encoder, x)?;
        ctx.add_loss((&z * &z).mean_all() * 0.5);
        ctx.call(&self.decoder, &z)
    }
}

#[test]
fn a_model_inside_a_custom_layer_collects_weights_and_losses_under_its_name() {
    let layer = AutoEncoderLayer {
        encoder: Sublayer::new(encoder()),
        decoder: Sublayer::new(Dense::new(3)),
    };
    let mut m = Sequential::new("model")
        .add(Input::new(&[3]))
        .add(layer)
        .build()
        .unwrap();
    let vars: Vec<(&str, Vec<usize>)> = m
        .variables()
        .iter()
        .map(|v| (v.path.as_str(), v.ty.shape.to_vec()))
        .collect();
    // The decoder was built on its first call with the shape it got: [4].
    assert_eq!(
        vars,
        [
            ("vae/encoder/dense/kernel", vec![3, 4]),
            ("vae/encoder/dense/bias", vec![4]),
            ("vae/dense/kernel", vec![4, 3]),
            ("vae/dense/bias", vec![3]),
        ]
    );
    let losses = m.losses().unwrap();
    let kinds: Vec<(String, LossReason)> =
        losses.iter().map(|l| (l.owner.clone(), l.reason)).collect();
    assert_eq!(
        kinds,
        [
            ("vae".to_string(), LossReason::AddLoss),
            (
                "vae/encoder/dense".to_string(),
                LossReason::KernelRegularizer
            )
        ]
    );
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.05),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    // Losses are recomputed per batch, not accumulated: two batches, two
    // independent hand computations.
    for salt in [3, 4] {
        let n = 5;
        let xv = data(n, 3, salt);
        let logs = m
            .evaluate(&[host(&[n, 3], &xv)], &[host(&[n, 3], &xv)], n)
            .unwrap();
        let k = weight(&m, "vae/encoder/dense/kernel");
        let z: Vec<f64> = dense(&xv, &k, &weight(&m, "vae/encoder/dense/bias"), n, 3)
            .iter()
            .map(|v| v.tanh())
            .collect();
        let out = dense(
            &z,
            &weight(&m, "vae/dense/kernel"),
            &weight(&m, "vae/dense/bias"),
            n,
            4,
        );
        let recon = mse(&out, &xv);
        let code = 0.5 * mean(&z.iter().map(|v| v * v).collect::<Vec<_>>());
        let reg = 0.01 * sum_sq(&k);
        close(logs.get("compiled_loss").unwrap(), recon, "compiled part");
        close(logs.get("vae/add_loss").unwrap(), code, "added code loss");
        close(
            logs.loss(),
            recon + code + reg,
            "total = compiled + Σ added",
        );
    }
}

/// Keras's `LogisticEndpoint`: takes targets and logits, adds the BCE as a
/// loss and returns the probabilities.
struct LogisticEndpoint;

impl Layer for LogisticEndpoint {
    fn call_multi(&self, ctx: &mut CallCtx, inputs: &[Tensor]) -> Result<Tensor> {
        let (targets, logits) = (&inputs[0], &inputs[1]);
        let bce = Loss::BinaryCrossentropy { from_logits: true }.emit(targets, logits);
        ctx.add_loss(bce);
        Ok(logits.sigmoid())
    }
}

fn endpoint_model() -> Model {
    let mut f = Functional::new("endpoint").seed(3);
    let inputs = f.input(Input::new(&[3]).name("inputs")).unwrap();
    let targets = f.input(Input::new(&[2]).name("targets")).unwrap();
    let logits = f.apply(Dense::new(2).name("logits"), &[inputs]).unwrap();
    let preds = f.apply(LogisticEndpoint, &[targets, logits]).unwrap();
    f.build(&[preds]).unwrap()
}

fn bce_with_logits(t: &[f64], z: &[f64]) -> f64 {
    mean(
        &t.iter()
            .zip(z)
            .map(|(t, z)| z.max(0.0) - z * t + (1.0 + (-z.abs()).exp()).ln())
            .collect::<Vec<_>>(),
    )
}

#[test]
fn compile_with_an_optimizer_only_and_fit_without_targets() {
    let mut m = endpoint_model();
    m.compile(CompileOptions::with_optimizer(Optimizer::sgd(0.5)))
        .unwrap();
    let n = 8;
    let xv = data(n, 3, 5);
    let tv: Vec<f64> = (0..n * 2)
        .map(|i| ((i * 7) % 3 == 0) as u8 as f64)
        .collect();
    let x = [host(&[n, 3], &xv), host(&[n, 2], &tv)];
    let z = dense(
        &xv,
        &weight(&m, "logits/kernel"),
        &weight(&m, "logits/bias"),
        n,
        3,
    );
    let want = bce_with_logits(&tv, &z);
    // train_on_batch reports the loss before its update.
    let logs = m.train_on_batch(&x, &[]).unwrap();
    close(logs.loss(), want, "loss = the endpoint's added BCE");
    close(
        logs.get("logistic_endpoint/add_loss").unwrap(),
        want,
        "the added term",
    );
    let before = m.evaluate(&x, &[], n).unwrap().loss();
    let hist = m
        .fit(
            &x,
            &[],
            FitOptions::new().epochs(30).batch_size(n).verbose(false),
        )
        .unwrap();
    let after = m.evaluate(&x, &[], n).unwrap().loss();
    assert!(
        after < before,
        "fit without y lowers the added loss: {before} → {after}"
    );
    assert_eq!(hist.epochs.len(), 30);
    // Targets given to a model with no compiled loss are refused by name.
    let e = m
        .evaluate(&x, &[host(&[n, 2], &tv)], n)
        .unwrap_err()
        .to_string();
    assert!(e.contains("takes 0 target array(s)"), "{e}");
}

#[test]
fn an_objective_with_no_term_is_a_compile_error() {
    let mut m = Sequential::new("plain")
        .add(Input::new(&[3]))
        .add(Dense::new(2))
        .build()
        .unwrap();
    let e = m
        .compile(CompileOptions::with_optimizer(Optimizer::sgd(0.1)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty objective"), "{e}");
}

#[test]
fn losses_for_some_outputs_plus_a_model_level_add_loss() {
    let mut f = Functional::new("multi").seed(11);
    let x = f.input(Input::new(&[5])).unwrap();
    let parts = f.apply_outputs(Split, &[x]).unwrap();
    let a = f.apply(Dense::new(1).name("a"), &[parts[0]]).unwrap();
    let b = f.apply(Dense::new(1).name("b"), &[parts[1]]).unwrap();
    // Keras 2's model.add_loss on symbolic tensors: 0.1·mean(s1²).
    f.add_loss(&[parts[1]], |t| (&t[0] * &t[0]).mean_all() * 0.1)
        .unwrap();
    let mut m = f.build(&[a, b]).unwrap();
    let losses = m.losses().unwrap();
    assert_eq!(losses.len(), 1);
    assert_eq!(
        (losses[0].owner.as_str(), losses[0].reason),
        ("multi", LossReason::AddLoss)
    );
    // Only `a` has a loss (weighted 2); `b` is a prediction only.
    m.compile(
        CompileOptions::with_optimizer(Optimizer::sgd(0.1))
            .loss_for("a", Loss::MeanSquaredError)
            .loss_weight("a", 2.0),
    )
    .unwrap();
    for salt in [6, 7] {
        let n = 4;
        let xv = data(n, 5, salt);
        let ta = data(n, 1, salt + 1);
        let logs = m
            .evaluate(&[host(&[n, 5], &xv)], &[host(&[n, 1], &ta)], n)
            .unwrap();
        let s0: Vec<f64> = (0..n).flat_map(|r| xv[r * 5..r * 5 + 2].to_vec()).collect();
        let s1: Vec<f64> = (0..n)
            .flat_map(|r| {
                xv[r * 5 + 2..r * 5 + 5]
                    .iter()
                    .map(|v| v * 2.0)
                    .collect::<Vec<_>>()
            })
            .collect();
        let pa = dense(&s0, &weight(&m, "a/kernel"), &weight(&m, "a/bias"), n, 2);
        let la = mse(&pa, &ta);
        let added = 0.1 * mean(&s1.iter().map(|v| v * v).collect::<Vec<_>>());
        close(logs.get("a_loss").unwrap(), la, "unweighted a_loss");
        close(
            logs.get("compiled_loss").unwrap(),
            2.0 * la,
            "weighted compiled part",
        );
        close(
            logs.get("multi/add_loss").unwrap(),
            added,
            "model-level loss",
        );
        close(
            logs.loss(),
            2.0 * la + added,
            "total = Σ weighted compiled + Σ added",
        );
        assert!(logs.get("b_loss").is_none(), "b has no loss: {logs:?}");
    }
}

/// Predicts `model` on `xs` (one array per input) in one batch, first output.
fn predict1(m: &mut Model, xs: &[HostTensor]) -> Vec<f64> {
    let n = xs[0].shape()[0];
    m.predict(xs, n).unwrap()[0].to_f64()
}

#[test]
fn elementwise_merge_layers_match_their_definitions() {
    use lossgraph::layers::{Average, Maximum, Minimum, Multiply, Subtract};
    let n = 3;
    let (a, b, c) = (data(n, 4, 1), data(n, 4, 2), data(n, 4, 3));
    type Case = (&'static str, Box<dyn Fn(f64, f64, f64) -> f64>, usize);
    let cases: Vec<Case> = vec![
        ("subtract", Box::new(|a, b, _| a - b), 2),
        ("multiply", Box::new(|a, b, c| a * b * c), 3),
        ("average", Box::new(|a, b, c| (a + b + c) / 3.0), 3),
        ("maximum", Box::new(|a, b, c| a.max(b).max(c)), 3),
        ("minimum", Box::new(|a, b, c| a.min(b).min(c)), 3),
    ];
    for (name, want, arity) in cases {
        let mut f = Functional::new(name);
        let ins: Vec<_> = (0..arity)
            .map(|i| f.input(Input::new(&[4]).name(format!("in{i}"))).unwrap())
            .collect();
        let out = match name {
            "subtract" => f.apply(Subtract::new(), &ins),
            "multiply" => f.apply(Multiply::new(), &ins),
            "average" => f.apply(Average::new(), &ins),
            "maximum" => f.apply(Maximum::new(), &ins),
            _ => f.apply(Minimum::new(), &ins),
        }
        .unwrap();
        let mut m = f.build(&[out]).unwrap();
        let xs: Vec<HostTensor> = [&a, &b, &c][..arity]
            .iter()
            .map(|v| host(&[n, 4], v))
            .collect();
        let got = predict1(&mut m, &xs);
        for i in 0..n * 4 {
            close(got[i], want(a[i], b[i], c[i]), name);
        }
    }
    let mut f = Functional::new("bad");
    let ins: Vec<_> = (0..3)
        .map(|i| f.input(Input::new(&[4]).name(format!("in{i}"))).unwrap())
        .collect();
    let e = f.apply(Subtract::new(), &ins).err().unwrap().to_string();
    assert!(e.contains("Subtract needs exactly 2 inputs, got 3"), "{e}");
}

#[test]
fn dot_contracts_the_chosen_axes_with_optional_normalisation() {
    use lossgraph::layers::Dot;
    let n = 2;
    // Rank 1 per sample: [n, 3]·[n, 3] → [n, 1], plain and cosine.
    let (a, b) = (data(n, 3, 4), data(n, 3, 5));
    for normalize in [false, true] {
        let mut f = Functional::new("dot");
        let x = f.input(Input::new(&[3]).name("x")).unwrap();
        let y = f.input(Input::new(&[3]).name("y")).unwrap();
        let d = f.apply(Dot::new(1).normalize(normalize), &[x, y]).unwrap();
        let mut m = f.build(&[d]).unwrap();
        assert_eq!(m.output_shapes(), vec![vec![1]]);
        let got = predict1(&mut m, &[host(&[n, 3], &a), host(&[n, 3], &b)]);
        for r in 0..n {
            let (u, v) = (&a[r * 3..r * 3 + 3], &b[r * 3..r * 3 + 3]);
            let dot: f64 = u.iter().zip(v).map(|(p, q)| p * q).sum();
            let want = if normalize {
                dot / (sum_sq(u).sqrt() * sum_sq(v).sqrt())
            } else {
                dot
            };
            close(got[r], want, "dot");
        }
    }
    // Rank 2 per sample, axes (1, 1): [n, 2, 3] and [n, 2, 4] → [n, 3, 4].
    let (a, b) = (data(n, 6, 6), data(n, 8, 7));
    let mut f = Functional::new("batch_dot");
    let x = f.input(Input::new(&[2, 3]).name("x")).unwrap();
    let y = f.input(Input::new(&[2, 4]).name("y")).unwrap();
    let d = f.apply(Dot::new(1), &[x, y]).unwrap();
    let mut m = f.build(&[d]).unwrap();
    assert_eq!(m.output_shapes(), vec![vec![3, 4]]);
    let got = predict1(&mut m, &[host(&[n, 2, 3], &a), host(&[n, 2, 4], &b)]);
    for s in 0..n {
        for i in 0..3 {
            for j in 0..4 {
                let want: f64 = (0..2)
                    .map(|k| a[s * 6 + k * 3 + i] * b[s * 8 + k * 4 + j])
                    .sum();
                close(got[s * 12 + i * 4 + j], want, "batch dot");
            }
        }
    }
}

#[test]
fn a_lambda_layer_applies_its_closure() {
    use lossgraph::layers::Lambda;
    let mut f = Functional::new("lambda");
    let x = f.input(Input::new(&[3]).name("x")).unwrap();
    let y = f.input(Input::new(&[3]).name("y")).unwrap();
    let sq = f.apply(Lambda::new(|t| t * t), &[x]).unwrap();
    let out = f
        .apply(
            Lambda::multi(|ts| &ts[0] - &ts[1] * 0.5).name("diff"),
            &[sq, y],
        )
        .unwrap();
    let mut m = f.build(&[out]).unwrap();
    let (a, b) = (data(2, 3, 8), data(2, 3, 9));
    let got = predict1(&mut m, &[host(&[2, 3], &a), host(&[2, 3], &b)]);
    for i in 0..6 {
        close(got[i], a[i] * a[i] - 0.5 * b[i], "lambda");
    }
}

/// Input(1) → Dense(1, no bias) with kernel `k`, MSE, SGD(`lr`): the
/// prediction is `k·x`, each sample's loss `(k·x − t)²`.
fn scalar_model(k: f32, lr: f32) -> Model {
    let mut m = Sequential::new("scalar")
        .add(Input::new(&[1]))
        .add(Dense::new(1).use_bias(false).name("d"))
        .build()
        .unwrap();
    m.set_weight("d/kernel", host(&[1, 1], &[k as f64]))
        .unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(lr),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    m
}

#[test]
fn sample_weights_scale_each_samples_loss_and_divide_by_the_batch_size() {
    // Keras's sum_over_batch_size: Σ wᵢ·xᵢ² / 4 with k = 1 and targets 0,
    // = (1·1 + 0·4 + 2·9 + 0.5·16) / 4 = 27/4 (not divided by Σw = 3.5).
    let x = host(&[4, 1], &[1., 2., 3., 4.]);
    let t = host(&[4, 1], &[0.; 4]);
    let w = SampleWeights::PerSample(vec![host(&[4], &[1., 0., 2., 0.5])]);
    let mut m = scalar_model(1.0, 0.1);
    let e = m
        .evaluate_weighted(&[x.clone()], &[t.clone()], &w, 2)
        .unwrap();
    close(e.loss(), 6.75, "evaluate over two batches of 2");
    close(
        m.evaluate(&[x.clone()], &[t.clone()], 4).unwrap().loss(),
        7.5,
        "unweighted mean of 1, 4, 9, 16",
    );
    let l = m
        .train_on_batch_weighted(&[x.clone()], &[t.clone()], &w)
        .unwrap();
    close(l.loss(), 6.75, "train_on_batch, weights before the step");
    // d/dk Σ wᵢ(k·xᵢ)²/4 = 2k·27/4 = 13.5; SGD 0.1 → k = 1 − 1.35.
    close(
        weight(&m, "d/kernel")[0],
        -0.35,
        "kernel after the weighted step",
    );
    // [n, 1] weights are accepted as well.
    let w1 = SampleWeights::PerSample(vec![host(&[4, 1], &[1., 0., 2., 0.5])]);
    let mut m = scalar_model(1.0, 0.1);
    close(
        m.evaluate_weighted(&[x], &[t], &w1, 4).unwrap().loss(),
        6.75,
        "weights of shape [n, 1]",
    );
}

#[test]
fn fit_with_sample_weights_matches_the_equivalent_unweighted_runs() {
    let n = 8;
    let xv = data(n, 1, 3);
    let tv = data(n, 1, 4);
    let (x, t) = (host(&[n, 1], &xv), host(&[n, 1], &tv));
    let opts = || {
        FitOptions::new()
            .epochs(3)
            .batch_size(4)
            .verbose(false)
            .shuffle(true, 5)
    };
    // Weight 2 everywhere doubles every gradient exactly: the same run as
    // lr·2 without weights, bit for bit.
    let mut a = scalar_model(0.7, 0.05);
    a.fit(
        &[x.clone()],
        &[t.clone()],
        opts().sample_weight(vec![host(&[n], &[2.0; 8])]),
    )
    .unwrap();
    let mut b = scalar_model(0.7, 0.1);
    b.fit(&[x.clone()], &[t.clone()], opts()).unwrap();
    assert_eq!(weight(&a, "d/kernel"), weight(&b, "d/kernel"));
    // Zero weights on the last half of each batch: each step is the step of
    // the first half alone at half the learning rate (the sum is divided by
    // the batch of 4, not by the 2 weighted samples).
    let mut c = scalar_model(0.7, 0.1);
    let w: Vec<f64> = (0..n).map(|i| if i % 4 < 2 { 1.0 } else { 0.0 }).collect();
    c.fit(
        &[x.clone()],
        &[t.clone()],
        FitOptions::new()
            .epochs(2)
            .batch_size(4)
            .verbose(false)
            .shuffle(false, 0)
            .sample_weight(vec![host(&[n], &w)]),
    )
    .unwrap();
    let keep: Vec<usize> = (0..n).filter(|i| i % 4 < 2).collect();
    let xk: Vec<f64> = keep.iter().map(|&i| xv[i]).collect();
    let tk: Vec<f64> = keep.iter().map(|&i| tv[i]).collect();
    let mut d = scalar_model(0.7, 0.05);
    d.fit(
        &[host(&[4, 1], &xk)],
        &[host(&[4, 1], &tk)],
        FitOptions::new()
            .epochs(2)
            .batch_size(2)
            .verbose(false)
            .shuffle(false, 0),
    )
    .unwrap();
    close(
        weight(&c, "d/kernel")[0],
        weight(&d, "d/kernel")[0],
        "zero-weighted samples only shrink the step",
    );
}

/// Input(2) → Dense(2, no bias) logits, sparse or one-hot crossentropy from logits.
fn two_class_model(loss: Loss) -> Model {
    let mut m = Sequential::new("classes")
        .add(Input::new(&[2]))
        .add(Dense::new(2).use_bias(false).name("d"))
        .build()
        .unwrap();
    m.compile(CompileOptions::new(Optimizer::sgd(0.0), loss))
        .unwrap();
    m
}

#[test]
fn class_weights_weight_each_sample_by_its_label() {
    // All-zero inputs give logits (0, 0): every sample's loss is ln 2, so
    // with class 1 weighted 3 the mean over labels [0, 1, 1] is 7/3·ln 2.
    let x = host(&[3, 2], &[0.; 6]);
    let want = 7.0 / 3.0 * std::f64::consts::LN_2;
    let cw = SampleWeights::PerClass(vec![(1, 3.0)]);
    let mut sparse = two_class_model(Loss::SparseCategoricalCrossentropy { from_logits: true });
    let labels = HostTensor::i32(&[3], vec![0, 1, 1]).unwrap();
    let e = sparse
        .evaluate_weighted(&[x.clone()], &[labels], &cw, 3)
        .unwrap();
    close(e.loss(), want, "sparse labels");
    // One-hot targets take the class of their argmax.
    let mut onehot = two_class_model(Loss::CategoricalCrossentropy { from_logits: true });
    let y = host(&[3, 2], &[1., 0., 0., 1., 0., 1.]);
    let e = onehot
        .evaluate_weighted(&[x.clone()], &[y.clone()], &cw, 3)
        .unwrap();
    close(e.loss(), want, "one-hot targets");
    // fit refuses sample and class weights together, as Keras does.
    let err = onehot
        .fit(
            &[x.clone()],
            &[y.clone()],
            FitOptions::new()
                .verbose(false)
                .class_weight([(1, 3.0)])
                .sample_weight(vec![host(&[3], &[1.0; 3])]),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("sample_weight and class_weight"), "{err}");
    let err = onehot
        .evaluate_weighted(
            &[x],
            &[y],
            &SampleWeights::PerClass(vec![(1, 3.0), (1, 2.0)]),
            3,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("class 1 is listed twice"), "{err}");
}

#[test]
fn bad_sample_weights_are_refused_naming_the_array_and_row() {
    let mut m = scalar_model(1.0, 0.1);
    let (x, t) = (host(&[3, 1], &[1., 2., 3.]), host(&[3, 1], &[0.; 3]));
    let refuse = |m: &mut Model, w: Vec<HostTensor>| {
        m.evaluate_weighted(&[x.clone()], &[t.clone()], &SampleWeights::PerSample(w), 3)
            .unwrap_err()
            .to_string()
    };
    let e = refuse(&mut m, vec![host(&[3], &[1., f64::NAN, 1.])]);
    assert!(
        e.contains("sample_weight") && e.contains("row 1") && e.contains("NaN"),
        "{e}"
    );
    let e = refuse(&mut m, vec![host(&[2], &[1., 1.])]);
    assert!(
        e.contains("expected 3 sample weights") && e.contains("[2]"),
        "{e}"
    );
    let e = refuse(&mut m, vec![host(&[3], &[1.; 3]), host(&[3], &[1.; 3])]);
    assert!(e.contains("one sample-weight array per output"), "{e}");
}

/// Two inputs `a` (2 features) and `b` (3), two outputs `sum_a` and `sum_b`:
/// Dense(1) of each input.
fn two_io_model() -> Model {
    let mut f = Functional::new("two_io").seed(2);
    let a = f.input(Input::new(&[2]).name("a")).unwrap();
    let b = f.input(Input::new(&[3]).name("b")).unwrap();
    let oa = f.apply(Dense::new(1).name("sum_a"), &[a]).unwrap();
    let ob = f.apply(Dense::new(1).name("sum_b"), &[b]).unwrap();
    let mut m = f.build(&[oa, ob]).unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.0),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    m
}

#[test]
fn inputs_targets_and_sample_weights_by_name() {
    let mut m = two_io_model();
    let n = 3;
    let (av, bv) = (data(n, 2, 1), data(n, 3, 2));
    let (ta, tb) = (data(n, 1, 3), data(n, 1, 4));
    // Given in the other order, by name.
    let x = m
        .inputs_by_name([("b", host(&[n, 3], &bv)), ("a", host(&[n, 2], &av))])
        .unwrap();
    let y = m
        .targets_by_name([("sum_b", host(&[n, 1], &tb)), ("sum_a", host(&[n, 1], &ta))])
        .unwrap();
    let w = m
        .sample_weights_by_name([
            ("sum_a", host(&[n], &[1., 2., 3.])),
            ("sum_b", host(&[n], &[0., 1., 0.])),
        ])
        .unwrap();
    let logs = m
        .evaluate_weighted(&x, &y, &SampleWeights::PerSample(w), n)
        .unwrap();
    let pa = dense(
        &av,
        &weight(&m, "sum_a/kernel"),
        &weight(&m, "sum_a/bias"),
        n,
        2,
    );
    let pb = dense(
        &bv,
        &weight(&m, "sum_b/kernel"),
        &weight(&m, "sum_b/bias"),
        n,
        3,
    );
    let wsq = |p: &[f64], t: &[f64], w: &[f64]| {
        (0..n).map(|i| w[i] * (p[i] - t[i]).powi(2)).sum::<f64>() / n as f64
    };
    let (la, lb) = (wsq(&pa, &ta, &[1., 2., 3.]), wsq(&pb, &tb, &[0., 1., 0.]));
    close(logs.get("sum_a_loss").unwrap(), la, "weighted sum_a_loss");
    close(logs.get("sum_b_loss").unwrap(), lb, "weighted sum_b_loss");
    close(logs.loss(), la + lb, "total");
    // Unknown, repeated and missing names are refused, naming them.
    let e = m
        .inputs_by_name([("c", host(&[n, 2], &av))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no input is named 'c'") && e.contains("[\"a\", \"b\"]"),
        "{e}"
    );
    let e = m
        .inputs_by_name([("a", host(&[n, 2], &av)), ("a", host(&[n, 2], &av))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'a' is given twice"), "{e}");
    let e = m
        .targets_by_name([("sum_a", host(&[n, 1], &ta))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no array for the output with a compiled loss 'sum_b'"),
        "{e}"
    );
}

#[test]
fn crossentropy_from_large_logits_is_accurate() {
    // Dense(3) with the identity kernel and no bias passes the logits
    // through; the compiled (JIT) evaluate is checked against f64:
    // −log softmax(z)[k] = ln Σ exp(z − max) − (z_k − max).
    let mut m = Sequential::new("logits")
        .add(Input::new(&[3]))
        .add(Dense::new(3).use_bias(false).name("id"))
        .build()
        .unwrap();
    let eye = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    m.set_weight("id/kernel", host(&[3, 3], &eye)).unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.0),
        Loss::CategoricalCrossentropy { from_logits: true },
    ))
    .unwrap();
    let z = [1e4, 9999.0, 9998.0];
    for k in 0..3 {
        let mut t = [0.0; 3];
        t[k] = 1.0;
        let got = m
            .evaluate(&[host(&[1, 3], &z)], &[host(&[1, 3], &t)], 1)
            .unwrap()
            .loss();
        let lse = z.iter().map(|v| (v - 1e4).exp()).sum::<f64>().ln();
        let want = lse - (z[k] - 1e4);
        let e = (got - want).abs() / want;
        // Keras's tolerance for these cases is 1e-4; this is f32 rounding.
        assert!(e <= 1e-6, "class {k}: {got} vs {want} (relative {e:e})");
    }
}
