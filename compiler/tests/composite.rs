//! Composite training graphs, built the way the front end builds them
//! (compiled losses as `loss/<o>` with their weights, added losses as
//! `added/<i>`), then `total_loss` + `append_gradients`, checked by finite
//! differences on every parameter: softmax cross-entropy, an MLP with L1 and
//! L2 kernel regularisers, an activity regulariser on a hidden layer (divided
//! by the batch size, as Keras 3 does), a custom added loss depending on
//! weights and activations, and a two-output model with loss weights.
//!
//! ReLU models are evaluated at points whose hidden pre-activations are all
//! at least `MARGIN` away from the kink, further than any checker step can
//! move them (seeds are tried in order until that holds).

mod common;

use common::{run, t, values, Draws, Rng};
use lossgraph_compiler::passes::default_pipeline;
use lossgraph_compiler::{append_gradients, check_gradients, total_loss, GradCheckOptions};
use lossgraph_ir::{
    nn, text, verify, Builder, Graph, HostTensor, LossReason, Role, Tensor, TensorType,
};
use std::collections::HashMap;

const TOL: f64 = 1e-2;
const BATCH: usize = 6;
/// |pre-activation| lower bound at the check point. The widest checker
/// perturbation is 2h = 2·2⁻⁵·max(|w|, 1) = 0.0625 of one weight, multiplied by
/// an input of magnitude ≤ 1 (hidden activations here stay below 1.5).
const MARGIN: f32 = 0.1;

fn compiled(output: &str, weight: f32) -> Role {
    Role::CompiledLoss {
        output: output.into(),
        weight,
    }
}

fn added(reason: LossReason) -> Role {
    Role::AddedLoss { reason, call: 0 }
}

/// A dense layer `x·W + b` in scope `name`, with params `name/kernel`, `name/bias`.
fn dense(b: &Builder, name: &str, x: &Tensor, units: usize) -> (Tensor, Tensor, Tensor) {
    let din = x.shape()[1];
    b.with_scope(name, || {
        let w = b.param(&format!("{name}/kernel"), TensorType::f32([din, units]));
        let bias = b.param(&format!("{name}/bias"), TensorType::f32([units]));
        (x.matmul(&w) + &bias, w, bias)
    })
}

/// Mean softmax cross-entropy of `logits` against integer `labels`.
fn softmax_ce(logits: &Tensor, labels: &Tensor) -> Tensor {
    let depth = logits.shape()[1];
    let logp = nn::log_softmax(logits, -1);
    (labels.one_hot(depth) * logp)
        .sum(&[-1], false)
        .mean_all()
        .neg()
}

/// Random feeds for every input and param of `g`: params with magnitude in
/// [0.1, 0.8) (away from L1's kink), f32 inputs in [-1, 1), labels in range.
fn random_feeds(g: &Graph, seed: u64, classes: usize) -> HashMap<String, HostTensor> {
    let mut rng = Rng::new(seed);
    let mut f = HashMap::new();
    for (name, id) in g.inputs().into_iter().chain(g.params()) {
        let ty = &g.node(id).ty;
        let n = ty.numel();
        let v = match (ty.dtype, g.node(id).role.clone()) {
            (lossgraph_ir::DType::I32, _) => HostTensor::i32(
                &ty.shape,
                (0..n).map(|_| rng.below(classes) as i32).collect(),
            )
            .unwrap(),
            (_, Role::Parameter) => t(&ty.shape, rng.away_from_zero(n, 0.1, 0.8)),
            _ => t(&ty.shape, rng.vec(n, -1.0, 1.0)),
        };
        f.insert(name, v);
    }
    f
}

/// The first seed whose feeds keep every `probe/*` output at least MARGIN from 0.
fn feeds_away_from_kinks(g: &Graph, classes: usize) -> HashMap<String, HostTensor> {
    for seed in 1..10_000u64 {
        let f = random_feeds(g, seed, classes);
        let out = run(g, &f);
        let ok = out
            .iter()
            .filter(|(n, _)| n.starts_with("probe/"))
            .all(|(_, v)| v.as_f32().unwrap().iter().all(|z| z.abs() >= MARGIN));
        if ok {
            return f;
        }
    }
    panic!("no seed keeps the pre-activations away from the ReLU kink");
}

/// total_loss + append_gradients over all params; checks the result verifies,
/// round-trips through the text format, and has finite-difference-correct
/// gradients for every param. Returns the training graph.
fn train_and_check(mut g: Graph, f: &HashMap<String, HostTensor>) -> Graph {
    let loss = total_loss(&mut g).unwrap();
    let params: Vec<_> = g.params().into_iter().map(|p| p.1).collect();
    append_gradients(&mut g, loss, &params).unwrap();
    verify(&g).unwrap();
    let printed = text::print(&g);
    assert_eq!(text::print(&text::parse(&printed).unwrap()), printed);
    let names: Vec<String> = g.params().into_iter().map(|p| p.0).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let r = check_gradients(&g, "loss", &refs, f, &GradCheckOptions::default()).unwrap();
    assert!(r.passed(TOL), "{r}");
    assert!(r.vars.iter().all(|v| v.differentiable), "{r}");
    // The analytic gradients the graph outputs are the ones the checker saw.
    let out = run(&g, f);
    for v in &r.vars {
        let grad = values(&out, &format!("grad/{}", v.name));
        assert_eq!(grad[v.worst_index] as f64, v.analytic, "{}", v.name);
    }
    g
}

#[test]
fn softmax_crossentropy() {
    let b = Builder::new("softmax_ce");
    let x = b.input("x", TensorType::f32([BATCH, 5]));
    let y = b.input("y", TensorType::i32([BATCH]));
    let (logits, _, _) = dense(&b, "dense", &x, 4);
    b.set_scope("dense");
    b.set_role(compiled("out", 1.0));
    let ce = softmax_ce(&logits, &y);
    b.output("loss/out", &ce);
    let g = b.finish().unwrap();
    let f = random_feeds(&g, 7, 4);
    let g = train_and_check(g, &f);
    // And w.r.t. the input x, for custom loops: grad of 'loss/out' in x.
    let r = check_gradients(&g, "loss/out", &["x"], &f, &GradCheckOptions::default()).unwrap();
    assert!(r.passed(TOL), "{r}");
}

/// x → dense_1 (relu) → dense_2 → softmax CE, L2(0.05) on dense_1's kernel
/// and L1(0.03) on dense_2's kernel. Returns the forward graph.
fn mlp_with_regularisers() -> Graph {
    let b = Builder::new("mlp");
    let x = b.input("x", TensorType::f32([BATCH, 4]));
    let y = b.input("y", TensorType::i32([BATCH]));
    let (z1, w1, _) = dense(&b, "dense_1", &x, 8);
    b.output("probe/z1", &z1);
    let h = b.with_scope("dense_1", || nn::relu(&z1));
    let (logits, w2, _) = dense(&b, "dense_2", &h, 3);
    b.set_scope("dense_2");
    b.set_role(compiled("out", 1.0));
    let ce = softmax_ce(&logits, &y);
    b.output("loss/out", &ce);
    b.set_scope("dense_1");
    b.set_role(added(LossReason::KernelRegularizer));
    b.output("added/0", &nn::l2(&w1, 0.05));
    b.set_scope("dense_2");
    b.set_role(added(LossReason::KernelRegularizer));
    b.output("added/1", &nn::l1(&w2, 0.03));
    b.finish().unwrap()
}

#[test]
fn mlp_with_l1_and_l2_kernel_regularisers() {
    let g = mlp_with_regularisers();
    let forward = g.len();
    let f = feeds_away_from_kinks(&g, 3);
    let out = run(&g, &f);
    let train = train_and_check(g.clone(), &f);
    let trained_out = run(&train, &f);
    // loss = CE + 0.05·Σw1² + 0.03·Σ|w2|, each computed independently here.
    let w1 = f["dense_1/kernel"].as_f32().unwrap();
    let w2 = f["dense_2/kernel"].as_f32().unwrap();
    let l2: f64 = 0.05 * w1.iter().map(|w| (*w as f64).powi(2)).sum::<f64>();
    let l1: f64 = 0.03 * w2.iter().map(|w| (*w as f64).abs()).sum::<f64>();
    let ce = values(&out, "loss/out")[0] as f64;
    let total = values(&trained_out, "loss")[0] as f64;
    assert!(
        (total - (ce + l1 + l2)).abs() < 1e-5,
        "{total} vs {}",
        ce + l1 + l2
    );

    // Node counts: forward, + objective, + gradients, after the default pipeline.
    let mut objective = g.clone();
    total_loss(&mut objective).unwrap();
    let mut opt = train.clone();
    let stats = default_pipeline().run(&mut opt).unwrap();
    verify(&opt).unwrap();
    eprintln!(
        "MLP node counts: forward {forward}, with total loss {}, with gradients {} \
         ({} gradient nodes), after default pipeline {}",
        objective.len(),
        train.len(),
        train
            .node_ids()
            .iter()
            .filter(|&&i| train.node(i).role == Role::Gradient)
            .count(),
        opt.len()
    );
    eprintln!("{stats:?}");
    if std::env::var("PRINT_MLP").is_ok() {
        eprintln!("{}", text::print(&train));
    }
    assert!(opt.len() < train.len());
    // The optimised graph computes the same gradients.
    let opt_out = run(&opt, &f);
    for (name, _) in train.outputs() {
        if name.starts_with("grad/") {
            let (a, o) = (values(&trained_out, name), values(&opt_out, name));
            for (x, y) in a.iter().zip(&o) {
                assert!(
                    (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                    "{name}: {a:?} vs {o:?}"
                );
            }
        }
    }
}

#[test]
fn activity_regulariser_on_hidden_layer() {
    // Keras 3 divides an activity regulariser by the batch size:
    // added = 0.02·Σh² / batch on dense_1's post-activation output.
    let b = Builder::new("activity");
    let x = b.input("x", TensorType::f32([BATCH, 4]));
    let y = b.input("y", TensorType::i32([BATCH]));
    let (z1, _, _) = dense(&b, "dense_1", &x, 5);
    b.output("probe/z1", &z1);
    let h = b.with_scope("dense_1", || nn::relu(&z1));
    b.set_scope("dense_1");
    b.set_role(added(LossReason::ActivityRegularizer));
    let act = nn::l2(&h, 0.02) / BATCH as f32;
    b.output("added/0", &act);
    b.set_role(Role::Forward);
    let (logits, _, _) = dense(&b, "dense_2", &h, 3);
    b.set_scope("dense_2");
    b.set_role(compiled("out", 1.0));
    b.output("loss/out", &softmax_ce(&logits, &y));
    let g = b.finish().unwrap();
    let f = feeds_away_from_kinks(&g, 3);
    let out = run(&g, &f);
    let z = values(&out, "probe/z1");
    let want: f64 =
        0.02 * z.iter().map(|&v| (v.max(0.0) as f64).powi(2)).sum::<f64>() / BATCH as f64;
    assert!((values(&out, "added/0")[0] as f64 - want).abs() < 1e-6);
    train_and_check(g, &f);
}

#[test]
fn custom_added_loss_on_weights_and_activations() {
    // add_loss(0.1 · mean(tanh(h)) · Σ W₂²) inside a custom layer.
    let b = Builder::new("custom");
    let x = b.input("x", TensorType::f32([BATCH, 3]));
    let target = b.input("target", TensorType::f32([BATCH, 2]));
    let (z1, _, _) = dense(&b, "dense_1", &x, 4);
    let h = b.with_scope("dense_1", || z1.tanh());
    let (pred, w2, _) = dense(&b, "custom", &h, 2);
    b.set_scope("custom");
    b.set_role(added(LossReason::AddLoss));
    let custom = h.tanh().mean_all() * (&w2 * &w2).sum_all() * 0.1;
    b.output("added/0", &custom);
    b.set_role(compiled("out", 1.0));
    let mse = nn::square(&(&pred - &target)).mean_all();
    b.output("loss/out", &mse);
    let g = b.finish().unwrap();
    let f = random_feeds(&g, 11, 2);
    train_and_check(g, &f);
}

#[test]
fn two_outputs_with_loss_weights() {
    // Shared trunk, head a: softmax CE (weight 1.0), head b: MSE (weight 0.5),
    // plus an L2 regulariser on the trunk (never weighted).
    let b = Builder::new("two_out");
    let x = b.input("x", TensorType::f32([BATCH, 4]));
    let ya = b.input("ya", TensorType::i32([BATCH]));
    let yb = b.input("yb", TensorType::f32([BATCH, 1]));
    let (z, wt, _) = dense(&b, "trunk", &x, 5);
    let h = b.with_scope("trunk", || z.sigmoid());
    let (la_logits, _, _) = dense(&b, "head_a", &h, 3);
    let (lb_pred, _, _) = dense(&b, "head_b", &h, 1);
    b.set_scope("head_a");
    b.set_role(compiled("a", 1.0));
    b.output("loss/a", &softmax_ce(&la_logits, &ya));
    b.set_scope("head_b");
    b.set_role(compiled("b", 0.5));
    b.output("loss/b", &nn::square(&(&lb_pred - &yb)).mean_all());
    b.set_scope("trunk");
    b.set_role(added(LossReason::KernelRegularizer));
    b.output("added/0", &nn::l2(&wt, 0.01));
    let g = b.finish().unwrap();
    let f = random_feeds(&g, 3, 3);
    let train = train_and_check(g, &f);
    let out = run(&train, &f);
    let (la, lb, a0) = (
        values(&out, "loss/a")[0],
        values(&out, "loss/b")[0],
        values(&out, "added/0")[0],
    );
    let total = values(&out, "loss")[0];
    assert!((total - (la + 0.5 * lb + a0)).abs() < 1e-6, "{total}");
    // Head b's kernel only sees loss/b: its gradient is 0.5·d(loss/b)/dW.
    let mut single = train.clone();
    let lb_id = single.output("loss/b").unwrap();
    let wb = single.param("head_b/kernel").unwrap();
    let r = lossgraph_compiler::grad(&mut single, lb_id, &[wb]).unwrap();
    single.set_output("d_lb", r[0].unwrap());
    let out2 = run(&single, &f);
    let (gw, gl) = (values(&out2, "grad/head_b/kernel"), values(&out2, "d_lb"));
    for (a, b) in gw.iter().zip(&gl) {
        assert!((a - 0.5 * b).abs() <= 1e-6, "{gw:?} vs 0.5·{gl:?}");
    }
}
