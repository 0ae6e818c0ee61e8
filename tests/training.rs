//! End-to-end training through the front end: the seed example, a two-output
//! functional model with regularisers and an auxiliary `add_loss`, the
//! custom-training-loop API against `train_on_batch` and finite differences,
//! callbacks, validation, dropout, schedules and the JIT engine.

// `&[x.clone()]` reads like Keras's `[x]`.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;
#[path = "common/noise.rs"]
mod noise;
use noise::noise;

use common::CustomDenseLayer;
use lossgraph::layers::{Concatenate, Dense, Dropout, Input};
use lossgraph::{
    BuildCtx, CallCtx, CompileOptions, EarlyStopping, Engine, FitOptions, Functional, HostTensor,
    Init, Layer, LearningRate, Loss, Metric, Model, Optimizer, Purpose, Regularizer, Result,
    Sequential, Tensor, TerminateOnNaN, Validation,
};

fn ht(shape: &[usize], v: Vec<f32>) -> HostTensor {
    HostTensor::f32(shape, v).unwrap()
}

/// Three-feature, two-class data: class 1 when x0 + x1 - x2 > 0.
fn seed_data(n: usize) -> (HostTensor, HostTensor) {
    let x = noise(n * 3, 7);
    let y: Vec<i32> = (0..n)
        .map(|i| (x[3 * i] + x[3 * i + 1] - x[3 * i + 2] > 0.0) as i32)
        .collect();
    (ht(&[n, 3], x), HostTensor::i32(&[n], y).unwrap())
}

#[test]
fn seed_example_trains_end_to_end() {
    let mut model = Sequential::new("seed")
        .add(Input::new(&[3]))
        .add(CustomDenseLayer { units: 4 })
        .add(Dense::new(2).activation("softmax"))
        .build()
        .unwrap();
    model
        .compile(
            CompileOptions::new(
                Optimizer::adam(0.05),
                Loss::from_name("sparse_categorical_crossentropy").unwrap(),
            )
            .metric(Metric::Accuracy),
        )
        .unwrap();
    let (x, y) = seed_data(64);
    let h = model
        .fit(
            &[x.clone()],
            &[y.clone()],
            FitOptions::new().epochs(15).batch_size(16).verbose(false),
        )
        .unwrap();
    let loss = h.series("loss");
    assert_eq!(loss.len(), 15);
    assert!(
        loss[14] < 0.6 * loss[0],
        "loss did not decrease enough: {loss:?}"
    );
    // The breakdown is logged: the add_loss term and the compiled loss sum to the total.
    let last = &h.epochs[14];
    let add = last.get("custom_dense_layer/add_loss").unwrap();
    assert!(add > 0.0);
    let acc = last.get("accuracy").unwrap();
    assert!(acc > 0.85, "accuracy {acc}");
    let ev = model.evaluate(&[x], &[y], 64).unwrap();
    let k: f64 = model
        .get_weight("custom_dense_layer/kernel")
        .unwrap()
        .to_f64()
        .iter()
        .map(|v| v.abs())
        .sum();
    assert!((ev.get("custom_dense_layer/add_loss").unwrap() - 0.01 * k).abs() < 1e-5);
}

/// A layer adding an auxiliary loss on its input activations: 0.1·mean(x²).
struct AuxPenalty;

impl Layer for AuxPenalty {
    fn call(&self, ctx: &mut CallCtx, x: &Tensor) -> Result<Tensor> {
        ctx.add_loss((x * x).mean_all() * 0.1);
        Ok(x.clone())
    }
}

fn two_output_model() -> Model {
    let mut f = Functional::new("two_out").seed(3);
    let a = f.input(Input::new(&[4]).name("a")).unwrap();
    let b = f.input(Input::new(&[3]).name("b")).unwrap();
    let ha = f
        .apply(
            Dense::new(8)
                .activation("relu")
                .kernel_regularizer(Regularizer::L2(0.001))
                .name("da"),
            &[a],
        )
        .unwrap();
    let hb = f
        .apply(Dense::new(8).activation("tanh").name("db"), &[b])
        .unwrap();
    let h = f.apply(Concatenate::new(), &[ha, hb]).unwrap();
    let h = f.apply(AuxPenalty, &[h]).unwrap();
    let t = f
        .apply(
            Dense::new(8)
                .activation("tanh")
                .activity_regularizer(Regularizer::L1(0.001))
                .bias_regularizer(Regularizer::L1(0.001))
                .name("trunk"),
            &[h],
        )
        .unwrap();
    let r = f.apply(Dense::new(1).name("reg"), &[t]).unwrap();
    let c = f.apply(Dense::new(1).name("cls"), &[t]).unwrap();
    f.build(&[r, c]).unwrap()
}

fn two_output_data(n: usize) -> (Vec<HostTensor>, Vec<HostTensor>) {
    let a = noise(n * 4, 11);
    let b = noise(n * 3, 12);
    let reg: Vec<f32> = (0..n).map(|i| a[4 * i] - 0.5 * b[3 * i + 1]).collect();
    let cls: Vec<f32> = (0..n)
        .map(|i| (a[4 * i + 2] + b[3 * i] > 0.0) as i32 as f32)
        .collect();
    (
        vec![ht(&[n, 4], a), ht(&[n, 3], b)],
        vec![ht(&[n, 1], reg), ht(&[n, 1], cls)],
    )
}

#[test]
fn two_output_functional_model_with_added_losses_trains() {
    let mut m = two_output_model();
    let losses = m.losses().unwrap();
    let owners: Vec<&str> = losses.iter().map(|l| l.owner.as_str()).collect();
    assert_eq!(owners, vec!["aux_penalty", "trunk", "da", "trunk"]);
    m.compile(
        CompileOptions::with_optimizer(Optimizer::sgd(0.1).momentum(0.9))
            .loss_for("reg", Loss::MeanSquaredError)
            .loss_for("cls", Loss::BinaryCrossentropy { from_logits: true })
            .loss_weight("cls", 0.5)
            .metric(Metric::Accuracy),
    )
    .unwrap();
    let (x, y) = two_output_data(96);
    let h = m
        .fit(
            &x,
            &y,
            FitOptions::new()
                .epochs(12)
                .batch_size(20) // 96 = 4·20 + 16: the last batch gets its own program
                .validation(Validation::Split(0.25))
                .shuffle(true, 5)
                .verbose(false),
        )
        .unwrap();
    let loss = h.series("loss");
    assert!(loss[loss.len() - 1] < 0.7 * loss[0], "{loss:?}");
    let vl = h.series("val_loss");
    assert_eq!(vl.len(), 12);
    assert!(vl[11] < vl[0], "{vl:?}");
    let e = &h.epochs[11];
    for k in [
        "reg_loss",
        "cls_loss",
        "aux_penalty/add_loss",
        "trunk/activity_regularizer",
        "da/kernel_regularizer",
        "trunk/bias_regularizer",
        "compiled_loss",
        "reg_accuracy",
    ] {
        assert!(e.get(k).is_some(), "missing {k} in {:?}", e.entries());
    }
    // Total = reg + 0.5·cls + Σ added (epoch means of per-batch identities).
    let added: f64 = [
        "aux_penalty/add_loss",
        "trunk/activity_regularizer",
        "da/kernel_regularizer",
        "trunk/bias_regularizer",
    ]
    .iter()
    .map(|k| e.get(k).unwrap())
    .sum();
    let total = e.get("reg_loss").unwrap() + 0.5 * e.get("cls_loss").unwrap() + added;
    assert!(
        (e.loss() - total).abs() < 1e-4 * (1.0 + total.abs()),
        "{} vs {total}",
        e.loss()
    );
}

#[test]
fn custom_training_loop_matches_train_on_batch_and_finite_differences() {
    let (x, y) = two_output_data(8);
    let opts = CompileOptions::with_optimizer(Optimizer::adam(0.01))
        .loss_for("reg", Loss::Huber { delta: 1.0 })
        .loss_for("cls", Loss::BinaryCrossentropy { from_logits: true });
    let mut a = two_output_model();
    let mut b = two_output_model();
    a.compile(opts.clone()).unwrap();
    b.compile(opts.clone()).unwrap();
    for _ in 0..3 {
        let g = a.compute_gradients(&x, &y).unwrap();
        a.apply_gradients(&g.grads).unwrap();
        b.train_on_batch(&x, &y).unwrap();
    }
    assert_eq!(a.iterations(), 3);
    for ((na, wa), (nb, wb)) in a.get_weights().iter().zip(b.get_weights()) {
        assert_eq!(*na, nb);
        for (p, q) in wa.to_f64().iter().zip(wb.to_f64()) {
            assert!((p - q).abs() < 1e-6, "{na}: {p} vs {q}");
        }
    }
    // Central finite differences of the evaluated total loss (f32, so a loose tolerance).
    let mut m = two_output_model();
    m.compile(opts).unwrap();
    let g = m.compute_gradients(&x, &y).unwrap();
    let h = 1e-2f32;
    for (path, idx) in [
        ("trunk/kernel", 5usize),
        ("da/kernel", 3),
        ("trunk/bias", 2),
        ("cls/bias", 0),
    ] {
        let w0 = m.get_weight(path).unwrap();
        let mut plus = w0.clone();
        plus.as_f32_mut().unwrap()[idx] += h;
        let mut minus = w0.clone();
        minus.as_f32_mut().unwrap()[idx] -= h;
        m.set_weight(path, plus).unwrap();
        let lp = m.evaluate(&x, &y, 8).unwrap().loss();
        m.set_weight(path, minus).unwrap();
        let lm = m.evaluate(&x, &y, 8).unwrap().loss();
        m.set_weight(path, w0).unwrap();
        let fd = (lp - lm) / (2.0 * h as f64);
        let an = g.grads.iter().find(|(n, _)| n == path).unwrap().1.to_f64()[idx];
        assert!(
            (fd - an).abs() < 2e-3 + 2e-2 * an.abs(),
            "{path}[{idx}]: fd {fd} vs autodiff {an}"
        );
    }
}

#[test]
fn callbacks_stop_training() {
    let (x, y) = seed_data(32);
    let mut m = Sequential::new("nan")
        .add(Input::new(&[3]))
        .add(Dense::new(1).name("d"))
        .build()
        .unwrap();
    let yf = ht(
        &[32, 1],
        y.to_f64().iter().map(|v| *v as f32 * 1e3).collect(),
    );
    m.compile(CompileOptions::new(
        Optimizer::sgd(100.0),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let h = m
        .fit(
            &[x.clone()],
            &[yf],
            FitOptions::new()
                .epochs(50)
                .batch_size(4)
                .verbose(false)
                .callback(TerminateOnNaN::new()),
        )
        .unwrap();
    assert!(
        h.epochs.len() < 50,
        "TerminateOnNaN should stop a diverging run"
    );
    assert!(!h.epochs.last().unwrap().loss().is_finite());

    // Early stopping on a loss that cannot improve (lr 0): stops after patience + 1 epochs.
    let mut m = Sequential::new("flat")
        .add(Input::new(&[3]))
        .add(Dense::new(2).activation("softmax"))
        .build()
        .unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.0),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
    ))
    .unwrap();
    let h = m
        .fit(
            &[x],
            &[y],
            FitOptions::new()
                .epochs(20)
                .batch_size(8)
                .verbose(false)
                .callback(EarlyStopping::new("loss", 2)),
        )
        .unwrap();
    assert_eq!(h.epochs.len(), 3);
}

#[test]
fn dropout_trains_with_fresh_masks_and_schedules_need_no_recompile() {
    // Dense(ones) -> Dropout(0.5): in training each element is 0 or 2·x; the mask changes per step.
    let mut m = Sequential::new("drop")
        .add(Input::new(&[64]))
        .add(Dropout::new(0.5).seed(9))
        .add(
            Dense::new(1)
                .kernel_initializer(Init::Ones)
                .use_bias(false)
                .name("sum"),
        )
        .build()
        .unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.0),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let x = ht(&[1, 64], vec![1.0; 64]);
    let y = ht(&[1, 1], vec![0.0]);
    let l0 = m.train_on_batch(&[x.clone()], &[y.clone()]).unwrap().loss();
    let l1 = m.train_on_batch(&[x.clone()], &[y.clone()]).unwrap().loss();
    // loss = (2·kept)²; kept ~ 32 of 64 so the loss is an even square near 4096 and changes between steps.
    for l in [l0, l1] {
        let s = l.sqrt();
        assert!(
            (s - s.round()).abs() < 1e-3 && s.round() as i64 % 2 == 0 && (40.0..90.0).contains(&s),
            "{l}"
        );
    }
    assert_ne!(l0, l1, "the dropout mask must change between steps");
    // At inference the layer is the identity: prediction = Σx = 64.
    assert_eq!(m.predict(&[x], 1).unwrap()[0].as_f32().unwrap(), &[64.0]);

    // An exponential-decay schedule is fed per step: SGD on L = w² (via mse to 0 with x = 1).
    let mut m = Sequential::new("sched")
        .add(Input::new(&[1]))
        .add(
            Dense::new(1)
                .use_bias(false)
                .kernel_initializer(Init::Ones)
                .name("w"),
        )
        .build()
        .unwrap();
    let lr = LearningRate::ExponentialDecay {
        initial: 0.1,
        decay_steps: 1,
        decay_rate: 0.5,
        staircase: false,
    };
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.0).learning_rate(lr),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let mut w = 1.0f64;
    for step in 0..4 {
        m.train_on_batch(&[ht(&[1, 1], vec![1.0])], &[ht(&[1, 1], vec![0.0])])
            .unwrap();
        // dL/dw = 2w; lr_t = 0.1·0.5^t.
        w -= 0.1 * 0.5f64.powi(step) * 2.0 * w;
    }
    let got = m.get_weight("w/kernel").unwrap().to_f64()[0];
    assert!((got - w).abs() < 1e-6, "{got} vs {w}");
}

#[test]
fn training_graph_has_roles_and_named_outputs() {
    let mut m = two_output_model();
    m.compile(
        CompileOptions::with_optimizer(Optimizer::rmsprop(0.01).momentum(0.5))
            .loss_for("reg", Loss::MeanSquaredError)
            .loss_for("cls", Loss::BinaryCrossentropy { from_logits: true }),
    )
    .unwrap();
    let g = m.graph(Purpose::Train, 4).unwrap();
    let outs: Vec<&str> = g.outputs().iter().map(|o| o.0.as_str()).collect();
    for want in [
        "loss",
        "loss/reg",
        "loss/cls",
        "added/0",
        "pred/reg",
        "update/trunk/kernel",
        "update/optimizer/rmsprop/velocity/trunk/kernel",
        "update/optimizer/rmsprop/momentum/da/bias",
    ] {
        assert!(outs.contains(&want), "missing output {want}: {outs:?}");
    }
    assert!(
        !outs.iter().any(|o| o.starts_with("grad/")),
        "a training step returns no gradients: {outs:?}"
    );
    assert!(g.input("lr").is_some() && g.input("iteration").is_some());
    let roles: std::collections::HashSet<&str> = g
        .node_ids()
        .iter()
        .map(|&i| g.node(i).role.kind())
        .collect();
    for r in [
        "input",
        "param",
        "state",
        "forward",
        "loss",
        "added_loss",
        "gradient",
        "update",
    ] {
        assert!(roles.contains(r), "no {r} node");
    }
}

#[test]
fn jit_engine_trains_like_the_interpreter() {
    let (x, y) = two_output_data(8);
    let opts = CompileOptions::with_optimizer(Optimizer::adamw(0.01))
        .loss_for("reg", Loss::MeanSquaredError)
        .loss_for("cls", Loss::BinaryCrossentropy { from_logits: true });
    let mut a = two_output_model();
    let mut b = two_output_model();
    a.compile(opts.clone()).unwrap();
    b.compile(opts.engine(Engine::Jit)).unwrap();
    for step in 0..3 {
        let la = a.train_on_batch(&x, &y).unwrap().loss();
        let lb = b.train_on_batch(&x, &y).unwrap().loss();
        assert!(
            (la - lb).abs() < 1e-5 * (1.0 + la.abs()),
            "step {step}: {la} vs {lb}"
        );
    }
    for ((n, wa), (_, wb)) in a.get_weights().iter().zip(b.get_weights()) {
        for (p, q) in wa.to_f64().iter().zip(wb.to_f64()) {
            assert!((p - q).abs() < 1e-5, "{n}: {p} vs {q}");
        }
    }
}

/// A layer made of two Dense sub-layers (weights `block/inner1/kernel`, …).
struct Block {
    d1: Dense,
    d2: Dense,
}

impl Layer for Block {
    fn build(&mut self, ctx: &mut BuildCtx, input_shape: &[usize]) -> Result<()> {
        ctx.build_sublayer("inner1", &mut self.d1, &[input_shape.to_vec()])?;
        ctx.build_sublayer("inner2", &mut self.d2, &[vec![self.d1.units()]])
    }

    fn call(&self, ctx: &mut CallCtx, x: &Tensor) -> Result<Tensor> {
        let h = ctx.call_sublayer("inner1", &self.d1, &[x.clone()])?;
        ctx.call_sublayer("inner2", &self.d2, &[h])
    }
}

#[test]
fn nested_layers_collect_weights_and_losses_with_scoped_names() {
    let block = Block {
        d1: Dense::new(5)
            .activation("tanh")
            .kernel_regularizer(Regularizer::L2(0.01))
            .activity_regularizer(Regularizer::L1(0.01)),
        d2: Dense::new(2),
    };
    let mut m = Sequential::new("nested")
        .add(Input::new(&[3]))
        .add(block)
        .add(Dense::new(1).name("head"))
        .build()
        .unwrap();
    let names: Vec<String> = m.get_weights().into_iter().map(|w| w.0).collect();
    assert_eq!(
        names,
        vec![
            "block/inner1/kernel",
            "block/inner1/bias",
            "block/inner2/kernel",
            "block/inner2/bias",
            "head/kernel",
            "head/bias"
        ]
    );
    let losses = m.losses().unwrap();
    assert_eq!(losses.len(), 2);
    assert_eq!(losses[0].owner, "block/inner1");
    assert_eq!(losses[0].reason, lossgraph::LossReason::ActivityRegularizer);
    assert_eq!(losses[1].variable.as_deref(), Some("block/inner1/kernel"));
    let g = m.trace(false, 2).unwrap().finish().unwrap();
    assert!(g
        .node_ids()
        .iter()
        .any(|&i| g.node(i).scope == "block/inner2"));
    let summary = m.summary().unwrap();
    assert!(
        summary.contains("activity_regularizer of block/inner1 (call 0)")
            && summary.contains("kernel_regularizer block/inner1/kernel"),
        "{summary}"
    );
    m.compile(CompileOptions::new(
        Optimizer::adam(0.05),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let x = ht(&[16, 3], noise(48, 4));
    let y = ht(&[16, 1], (0..16).map(|i| (i % 3) as f32 - 1.0).collect());
    let h = m
        .fit(
            &[x],
            &[y],
            FitOptions::new().epochs(20).batch_size(16).verbose(false),
        )
        .unwrap();
    let l = h.series("loss");
    assert!(l[19] < l[0], "{l:?}");
}

#[test]
fn frozen_layers_keep_activity_losses_but_drop_weight_regularizers() {
    let mut m = Sequential::new("frozen")
        .add(Input::new(&[3]))
        .add(
            Dense::new(4)
                .kernel_regularizer(Regularizer::L2(0.1))
                .activity_regularizer(Regularizer::L1(0.1))
                .trainable(false)
                .name("f"),
        )
        .add(Dense::new(1).name("head"))
        .build()
        .unwrap();
    let reasons = |m: &Model| -> Vec<(String, lossgraph::LossReason)> {
        m.losses()
            .unwrap()
            .into_iter()
            .map(|l| (l.owner, l.reason))
            .collect()
    };
    assert_eq!(
        reasons(&m),
        vec![("f".to_string(), lossgraph::LossReason::ActivityRegularizer)]
    );
    assert_eq!(m.trainable_weight_names(), vec!["head/kernel", "head/bias"]);
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let before = m.get_weight("f/kernel").unwrap();
    let head_before = m.get_weight("head/kernel").unwrap();
    let x = ht(&[4, 3], noise(12, 8));
    let y = ht(&[4, 1], vec![1.0, -1.0, 0.5, 0.0]);
    m.train_on_batch(&[x.clone()], &[y.clone()]).unwrap();
    assert_eq!(m.get_weight("f/kernel").unwrap(), before);
    assert_ne!(m.get_weight("head/kernel").unwrap(), head_before);
    m.set_trainable("f", true).unwrap();
    assert_eq!(reasons(&m).len(), 2);
    m.train_on_batch(&[x], &[y]).unwrap();
    assert_ne!(m.get_weight("f/kernel").unwrap(), before);
    assert!(m.set_trainable("nope", false).is_err());
}

#[test]
fn validation_data_predict_shapes_and_not_compiled_errors() {
    let mut m = two_output_model();
    let (x, y) = two_output_data(10);
    let err = m
        .fit(&x, &y, FitOptions::new().verbose(false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not compiled") && err.contains("fit"), "{err}");
    let p = m.predict(&x, 4).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].shape(), &[10, 1]);
    // Batches of 4, 4 and 2 give the same predictions as one batch of 10.
    let q = m.predict(&x, 10).unwrap();
    for (a, b) in p.iter().zip(&q) {
        for (u, v) in a.to_f64().iter().zip(b.to_f64()) {
            assert!((u - v).abs() < 1e-6);
        }
    }
    m.compile(
        CompileOptions::with_optimizer(Optimizer::sgd(0.05))
            .loss_for("reg", Loss::MeanSquaredError)
            .loss_for("cls", Loss::BinaryCrossentropy { from_logits: true }),
    )
    .unwrap();
    let (vx, vy) = two_output_data(6);
    let h = m
        .fit(
            &x,
            &y,
            FitOptions::new()
                .epochs(2)
                .batch_size(4)
                .validation(Validation::Data(vx.clone(), vy.clone()))
                .verbose(false),
        )
        .unwrap();
    // The logged validation loss is evaluate() on the validation data at the end of the epoch.
    let ev = m.evaluate(&vx, &vy, 6).unwrap();
    let last = h.series("val_loss")[1];
    assert!((last - ev.loss()).abs() < 1e-5, "{last} vs {}", ev.loss());

    // Sequential without an Input layer.
    let err = Sequential::new("no_input")
        .add(Dense::new(2))
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("needs an Input"), "{err}");
    let m = Sequential::new("with_shape")
        .add(Dense::new(2))
        .build_with_input(&[5])
        .unwrap();
    assert_eq!(m.count_params(), 12);
}
