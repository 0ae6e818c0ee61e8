//! Runs every Keras 3 reference case in `shared/keras-cases` and
//! `shared/keras-cases-layers`: the model is
//! built by hand here (the JSON importer is separate), weights and data come
//! from the case, and every expected value is checked with the case's
//! tolerance: initial losses (total, compiled, per output, each added loss in
//! `model.losses` order), predictions and their checksum, gradients, per-step
//! `train_on_batch` losses, final weights, and the `fit` epoch loss.

use lossgraph::layers::{
    ActivityRegularization, AveragePooling2D, Concatenate, Conv1D, Conv2D, Dense, Dropout, Flatten,
    GlobalAveragePooling2D, GlobalMaxPooling1D, Input, MaxPooling2D,
};
use lossgraph::{
    read_safetensors, CompileOptions, Engine, FitOptions, Functional, HostTensor, Loss, LossReason,
    Model, Optimizer, Regularizer, Sequential,
};
use serde_json::Value;
use std::path::PathBuf;

fn cases_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/keras-cases"
    ))
}

/// The convolution, pooling, normalization and embedding cases.
fn layer_cases_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/keras-cases-layers"
    ))
}

/// Cases of `keras-cases-layers` whose layers (BatchNormalization,
/// LayerNormalization, Embedding with int32 inputs) are not supported yet:
/// `not_yet_supported_cases_are_refused_by_name` checks that the importer
/// still refuses each, so an entry must leave this list when its layer lands.
/// Cases whose hand-built Rust models and JSON runs live in
/// `tests/state_layers.rs` (state, int32 ids, noise), with the file that runs them.
const ELSEWHERE: [(&str, &str); 3] = [
    ("p11_dense_batchnorm_relu_mse_sgd", "tests/state_layers.rs"),
    ("p12_layernorm_mlp_cce_adamw", "tests/state_layers.rs"),
    (
        "p13_embedding_flatten_sparse_logits_adam",
        "tests/state_layers.rs",
    ),
];

/// The folder of case `name` (in either case folder).
fn case_dir(name: &str) -> PathBuf {
    let d = cases_dir().join(name);
    if d.is_dir() {
        d
    } else {
        layer_cases_dir().join(name)
    }
}

fn f(v: &Value) -> f32 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) as f32
}

fn build(case: &str) -> Model {
    try_build(case).unwrap_or_else(|| panic!("no hand-built model for case {case}"))
}

/// The hand-built model of `case`, or `None` for a case without one.
fn try_build(case: &str) -> Option<Model> {
    let l1 = |a: f32| Regularizer::L1(a);
    let l2 = |a: f32| Regularizer::L2(a);
    let model = match case {
        "p08_conv2d_maxpool_flatten_sparse_adam" => Sequential::new("convnet")
            .add(Input::new(&[8, 8, 1]).name("convnet_input"))
            .add(
                Conv2D::new(4, [3, 3])
                    .activation("relu")
                    .kernel_regularizer(l2(0.01))
                    .name("conv"),
            )
            .add(MaxPooling2D::new([2, 2]).name("pool"))
            .add(Flatten::new().name("flat"))
            .add(Dense::new(3).activation("softmax").name("probs"))
            .build(),
        "p09_conv2d_same_stride2_avgpool_gap_mse_momentum" => Sequential::new("strided")
            .add(Input::new(&[10, 10, 2]).name("strided_input"))
            .add(
                Conv2D::new(3, [3, 3])
                    .strides(&[2, 2])
                    .padding("same")
                    .activation("tanh")
                    .bias_regularizer(l2(0.05))
                    .name("conv"),
            )
            .add(
                AveragePooling2D::new([2, 2])
                    .padding("same")
                    .name("avgpool"),
            )
            .add(GlobalAveragePooling2D::new().name("gap"))
            .add(Dense::new(2).name("out"))
            .build(),
        "p10_conv1d_globalmax_bce_rmsprop" => Sequential::new("seqconv")
            .add(Input::new(&[12, 3]).name("seqconv_input"))
            .add(
                Conv1D::new(5, 3)
                    .activation("relu")
                    .kernel_regularizer(Regularizer::L1L2 {
                        l1: 0.001,
                        l2: 0.002,
                    })
                    .name("conv"),
            )
            .add(GlobalMaxPooling1D::new().name("gmp"))
            .add(Dense::new(1).activation("sigmoid").name("prob"))
            .build(),
        "p01_relu_l2_l1_huber_sgd" => Sequential::new("p01")
            .add(Input::new(&[5]).name("seq_input"))
            .add(
                Dense::new(8)
                    .activation("relu")
                    .kernel_regularizer(l2(0.01))
                    .name("dense_1"),
            )
            .add(Dense::new(3).kernel_regularizer(l1(0.005)).name("dense_2"))
            .build(),
        "p02_tanh_l1l2_activity_mae_adam" => Sequential::new("p02")
            .add(Input::new(&[4]).name("seq_input"))
            .add(
                Dense::new(10)
                    .activation("tanh")
                    .kernel_regularizer(Regularizer::L1L2 {
                        l1: 0.001,
                        l2: 0.01,
                    })
                    .activity_regularizer(l2(0.01))
                    .name("dense_1"),
            )
            .add(Dense::new(4).bias_regularizer(l1(0.01)).name("dense_2"))
            .build(),
        "p03_gelu_actreg_bce_sgd_momentum" => Sequential::new("p03")
            .add(Input::new(&[6]).name("seq_input"))
            .add(Dense::new(6).activation("gelu").name("dense_1"))
            .add(ActivityRegularization::new(0.01, 0.0).name("act_reg"))
            .add(
                Dense::new(1)
                    .activation("sigmoid")
                    .kernel_regularizer(l2(0.02))
                    .name("dense_2"),
            )
            .build(),
        "p04_softmax_cce_dropout0_rmsprop" => Sequential::new("p04")
            .add(Input::new(&[7]).name("seq_input"))
            .add(Dense::new(12).activation("relu").name("dense_1"))
            .add(Dropout::new(0.0).name("dropout"))
            .add(
                Dense::new(5)
                    .activation("softmax")
                    .kernel_regularizer(l2(0.005))
                    .name("dense_2"),
            )
            .build(),
        "p05_sparse_logits_adamw" => Sequential::new("p05")
            .add(Input::new(&[5]).name("seq_input"))
            .add(
                Dense::new(8)
                    .activation("sigmoid")
                    .kernel_regularizer(l1(0.002))
                    .name("dense_1"),
            )
            .add(Dense::new(4).name("logits"))
            .build(),
        "p06_functional_two_in_two_out_nesterov" => {
            let mut g = Functional::new("two_tower");
            let a = g.input(Input::new(&[4]).name("input_a")).unwrap();
            let b = g.input(Input::new(&[3]).name("input_b")).unwrap();
            let ha = g
                .apply(
                    Dense::new(5)
                        .activation("relu")
                        .kernel_regularizer(l2(0.01))
                        .name("dense_a"),
                    &[a],
                )
                .unwrap();
            let hb = g
                .apply(Dense::new(5).activation("tanh").name("dense_b"), &[b])
                .unwrap();
            let c = g
                .apply(Concatenate::new().name("concat"), &[ha, hb])
                .unwrap();
            let t = g
                .apply(
                    Dense::new(8)
                        .activation("tanh")
                        .kernel_regularizer(l2(0.005))
                        .activity_regularizer(l1(0.01))
                        .name("trunk"),
                    &[c],
                )
                .unwrap();
            let r = g.apply(Dense::new(2).name("out_reg"), &[t]).unwrap();
            let k = g
                .apply(
                    Dense::new(1).bias_regularizer(l2(0.1)).name("out_cls"),
                    &[t],
                )
                .unwrap();
            g.build(&[r, k])
        }
        "p07_functional_single_sparse_softmax_adam" => {
            let mut g = Functional::new("p07");
            let x = g.input(Input::new(&[6]).name("features")).unwrap();
            let h = g
                .apply(
                    Dense::new(9)
                        .activation("relu")
                        .bias_regularizer(l2(0.05))
                        .name("dense_1"),
                    &[x],
                )
                .unwrap();
            let h = g
                .apply(
                    Dense::new(9)
                        .kernel_regularizer(Regularizer::L1L2 {
                            l1: 0.003,
                            l2: 0.003,
                        })
                        .name("dense_2"),
                    &[h],
                )
                .unwrap();
            let o = g
                .apply(Dense::new(3).activation("softmax").name("dense_3"), &[h])
                .unwrap();
            g.build(&[o])
        }
        _ => return None,
    };
    Some(model.unwrap())
}

fn parse_loss(v: &Value) -> Loss {
    if let Some(s) = v.as_str() {
        return Loss::from_name(s).unwrap();
    }
    let logits = v["config"]["from_logits"].as_bool().unwrap_or(false);
    match v["class_name"].as_str().unwrap() {
        "BinaryCrossentropy" => Loss::BinaryCrossentropy {
            from_logits: logits,
        },
        "CategoricalCrossentropy" => Loss::CategoricalCrossentropy {
            from_logits: logits,
        },
        "SparseCategoricalCrossentropy" => Loss::SparseCategoricalCrossentropy {
            from_logits: logits,
        },
        other => Loss::from_name(other).unwrap(),
    }
}

fn parse_optimizer(v: &Value) -> Optimizer {
    let c = &v["config"];
    let lr = f(&c["learning_rate"]);
    match v["class_name"].as_str().unwrap() {
        "SGD" => Optimizer::sgd(lr)
            .momentum(f(&c["momentum"]))
            .nesterov(c["nesterov"].as_bool().unwrap()),
        "Adam" | "AdamW" => {
            let mut o = Optimizer::adam(lr)
                .betas(f(&c["beta_1"]), f(&c["beta_2"]))
                .epsilon(f(&c["epsilon"]))
                .amsgrad(c["amsgrad"].as_bool().unwrap());
            if !c["weight_decay"].is_null() {
                o = o.weight_decay(Some(f(&c["weight_decay"])));
            }
            o
        }
        "RMSprop" => Optimizer::rmsprop(lr)
            .rho(f(&c["rho"]))
            .momentum(f(&c["momentum"]))
            .epsilon(f(&c["epsilon"]))
            .centered(c["centered"].as_bool().unwrap()),
        other => panic!("optimizer {other}"),
    }
}

fn compile_options(case: &Value, model: &Model) -> CompileOptions {
    let c = &case["compile"];
    let opt = parse_optimizer(&c["optimizer"]);
    let mut o = CompileOptions::with_optimizer(opt);
    let names = model.output_names();
    let loss = &c["loss"];
    let is_dict = loss.is_object() && loss.get("class_name").is_none();
    for n in &names {
        let l = if is_dict { &loss[n.as_str()] } else { loss };
        o = o.loss_for(n, parse_loss(l));
    }
    if let Some(w) = c["loss_weights"].as_object() {
        for (k, v) in w {
            o = o.loss_weight(k, f(v));
        }
    }
    o
}

/// Tracks the worst error relative to the tolerance bound and every failure.
struct Checker {
    rtol: f64,
    atol: f64,
    worst: f64,
    worst_what: String,
    failures: Vec<String>,
}

impl Checker {
    fn check(&mut self, what: &str, got: f64, want: f64) {
        let bound = self.atol + self.rtol * want.abs();
        let ratio = (got - want).abs() / bound;
        if ratio > self.worst || got.is_nan() {
            self.worst = if got.is_nan() { f64::INFINITY } else { ratio };
            self.worst_what = what.to_string();
        }
        let ok = (got - want).abs() <= bound; // false for NaN
        if !ok {
            self.failures.push(format!(
                "{what}: got {got}, want {want} (bound {bound:.3e})"
            ));
        }
    }

    fn check_tensor(&mut self, what: &str, got: &HostTensor, want: &HostTensor) {
        if got.shape() != want.shape() {
            self.failures.push(format!(
                "{what}: shape {:?} vs {:?}",
                got.shape(),
                want.shape()
            ));
            return;
        }
        let (g, w) = (got.to_f64(), want.to_f64());
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            self.check(&format!("{what}[{i}]"), *a, *b);
        }
    }
}

fn rows(t: &HostTensor, start: usize, end: usize) -> HostTensor {
    let k: usize = t.shape().iter().skip(1).product();
    let mut shape = t.shape().to_vec();
    shape[0] = end - start;
    match &t.data {
        lossgraph::ir::Data::F32(v) => {
            HostTensor::f32(&shape, v[start * k..end * k].to_vec()).unwrap()
        }
        lossgraph::ir::Data::I32(v) => {
            HostTensor::i32(&shape, v[start * k..end * k].to_vec()).unwrap()
        }
    }
}

fn get<'a>(ts: &'a [(String, HostTensor)], name: &str) -> &'a HostTensor {
    &ts.iter()
        .find(|t| t.0 == name)
        .unwrap_or_else(|| panic!("no tensor '{name}'"))
        .1
}

fn run_case(name: &str, engine: Engine) -> (f64, String) {
    let dir = case_dir(name);
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let exp = &case["expected"];
    let init = &exp["initial"];
    let data = read_safetensors(dir.join("data.safetensors")).unwrap();
    let expected = read_safetensors(dir.join("expected.safetensors")).unwrap();
    let bs = case["train"]["batch_size"].as_u64().unwrap() as usize;
    let steps = case["train"]["steps"].as_u64().unwrap() as usize;
    let mut ck = Checker {
        rtol: exp["tolerance"]["rtol"].as_f64().unwrap(),
        atol: exp["tolerance"]["atol"].as_f64().unwrap(),
        worst: 0.0,
        worst_what: String::new(),
        failures: Vec::new(),
    };

    let mut model = build(name);
    model.load_weights(dir.join("weights.safetensors")).unwrap();
    let opts = compile_options(&case, &model).engine(engine);
    model.compile(opts.clone()).unwrap();
    let inputs = model.input_names();
    let outputs = model.output_names();
    let x: Vec<HostTensor> = if inputs.len() == 1 {
        vec![get(&data, "x").clone()]
    } else {
        inputs
            .iter()
            .map(|n| get(&data, &format!("x/{n}")).clone())
            .collect()
    };
    let y: Vec<HostTensor> = if outputs.len() == 1 {
        vec![get(&data, "y").clone()]
    } else {
        outputs
            .iter()
            .map(|n| get(&data, &format!("y/{n}")).clone())
            .collect()
    };
    let batch = |i: usize, ts: &[HostTensor]| -> Vec<HostTensor> {
        ts.iter().map(|t| rows(t, i * bs, (i + 1) * bs)).collect()
    };

    // model.losses() matches Keras's list, in order.
    let losses = model.losses().unwrap();
    let want_losses = init["regularization_losses"].as_array().unwrap();
    assert_eq!(
        losses.len(),
        want_losses.len(),
        "{name}: number of added losses"
    );
    for (got, want) in losses.iter().zip(want_losses) {
        assert_eq!(got.owner, want["layer"].as_str().unwrap(), "{name}");
        match want["kind"].as_str().unwrap() {
            "activity" => {
                assert_eq!(got.reason, LossReason::ActivityRegularizer, "{name}");
                assert_eq!(
                    got.call as u64,
                    want["call_index"].as_u64().unwrap(),
                    "{name}"
                );
            }
            _ => {
                let var = want["variable"].as_str().unwrap();
                let reason = if var == "bias" {
                    LossReason::BiasRegularizer
                } else {
                    LossReason::KernelRegularizer
                };
                assert_eq!(got.reason, reason, "{name}");
                assert_eq!(
                    got.variable.as_deref(),
                    Some(format!("{}/{var}", want["layer"].as_str().unwrap()).as_str())
                );
            }
        }
    }

    // Initial values on batch 0, gradients included.
    let (x0, y0) = (batch(0, &x), batch(0, &y));
    let g = model.compute_gradients(&x0, &y0).unwrap();
    ck.check(
        "initial total",
        g.logs.loss(),
        init["total_loss"].as_f64().unwrap(),
    );
    ck.check(
        "initial compiled",
        g.logs.get("compiled_loss").unwrap(),
        init["compiled_loss"].as_f64().unwrap(),
    );
    for (out, v) in init["compiled_loss_per_output"].as_object().unwrap() {
        let got = if outputs.len() == 1 {
            g.logs.get("compiled_loss").unwrap()
        } else {
            g.logs.get(&format!("{out}_loss")).unwrap()
        };
        ck.check(&format!("initial {out}_loss"), got, v.as_f64().unwrap());
    }
    let added: Vec<f64> = g
        .logs
        .entries()
        .iter()
        .filter(|(k, _)| k.contains("_regularizer") || k.contains("/add_loss"))
        .map(|e| e.1)
        .collect();
    assert_eq!(
        added.len(),
        want_losses.len(),
        "{name}: logged added losses"
    );
    for (i, (got, want)) in added.iter().zip(want_losses).enumerate() {
        ck.check(&format!("added/{i}"), *got, want["value"].as_f64().unwrap());
    }
    for (path, grad) in &g.grads {
        ck.check_tensor(
            &format!("grad/{path}"),
            grad,
            get(&expected, &format!("grad/{path}")),
        );
    }
    assert_eq!(
        g.grads.len(),
        expected.iter().filter(|t| t.0.starts_with("grad/")).count()
    );

    // Predictions and checksum on batch 0.
    let preds = model.predict(&x0, bs).unwrap();
    let mut checksum = 0.0;
    for (o, p) in outputs.iter().zip(&preds) {
        let key = if outputs.len() == 1 {
            "output".to_string()
        } else {
            format!("output/{o}")
        };
        ck.check_tensor(&key, p, get(&expected, &key));
        checksum += p.to_f64().iter().sum::<f64>();
    }
    ck.check(
        "outputs checksum",
        checksum,
        init["outputs_checksum"].as_f64().unwrap(),
    );

    // K train_on_batch steps.
    for i in 0..steps {
        let logs = model.train_on_batch(&batch(i, &x), &batch(i, &y)).unwrap();
        ck.check(
            &format!("step {i} loss"),
            logs.loss(),
            exp["per_step_loss"][i].as_f64().unwrap(),
        );
        if let Some(per) = exp["per_step_output_losses"].as_array() {
            for (k, v) in per[i].as_object().unwrap() {
                ck.check(
                    &format!("step {i} {k}"),
                    logs.get(k).unwrap(),
                    v.as_f64().unwrap(),
                );
            }
        }
    }
    for (path, value) in model.get_weights() {
        ck.check_tensor(
            &format!("final/{path}"),
            &value,
            get(&expected, &format!("final/{path}")),
        );
    }

    // fit for one epoch, unshuffled, from the initial weights: same epoch loss and final weights.
    let mut fresh = build(name);
    fresh.load_weights(dir.join("weights.safetensors")).unwrap();
    fresh.compile(opts).unwrap();
    let n = x[0].shape()[0];
    let xs: Vec<HostTensor> = x.iter().map(|t| rows(t, 0, steps * bs)).collect();
    let ys: Vec<HostTensor> = y.iter().map(|t| rows(t, 0, steps * bs)).collect();
    assert!(n >= steps * bs);
    let h = fresh
        .fit(
            &xs,
            &ys,
            FitOptions::new()
                .epochs(1)
                .batch_size(bs)
                .shuffle(false, 0)
                .verbose(false),
        )
        .unwrap();
    ck.check(
        "fit epoch loss",
        h.series("loss")[0],
        exp["fit_epoch_loss"].as_f64().unwrap(),
    );
    for (path, value) in fresh.get_weights() {
        ck.check_tensor(
            &format!("fit final/{path}"),
            &value,
            get(&expected, &format!("final/{path}")),
        );
    }
    assert!(
        ck.failures.is_empty(),
        "{name}: {} failures:\n{}",
        ck.failures.len(),
        ck.failures.join("\n")
    );
    (ck.worst, ck.worst_what)
}

macro_rules! case {
    ($t:ident, $name:literal) => {
        #[test]
        fn $t() {
            for engine in [Engine::Interpreter, Engine::Jit] {
                let (worst, what) = run_case($name, engine);
                eprintln!(
                    "{} ({engine:?}): worst |err|/bound = {worst:.3} at {what}",
                    $name
                );
            }
        }
    };
}

case!(p01_relu_l2_l1_huber_sgd, "p01_relu_l2_l1_huber_sgd");
case!(
    p02_tanh_l1l2_activity_mae_adam,
    "p02_tanh_l1l2_activity_mae_adam"
);
case!(
    p03_gelu_actreg_bce_sgd_momentum,
    "p03_gelu_actreg_bce_sgd_momentum"
);
case!(
    p04_softmax_cce_dropout0_rmsprop,
    "p04_softmax_cce_dropout0_rmsprop"
);
case!(p05_sparse_logits_adamw, "p05_sparse_logits_adamw");
case!(
    p06_functional_two_in_two_out_nesterov,
    "p06_functional_two_in_two_out_nesterov"
);
case!(
    p07_functional_single_sparse_softmax_adam,
    "p07_functional_single_sparse_softmax_adam"
);

case!(
    p08_conv2d_maxpool_flatten_sparse_adam,
    "p08_conv2d_maxpool_flatten_sparse_adam"
);
case!(
    p09_conv2d_same_stride2_avgpool_gap_mse_momentum,
    "p09_conv2d_same_stride2_avgpool_gap_mse_momentum"
);
case!(
    p10_conv1d_globalmax_bce_rmsprop,
    "p10_conv1d_globalmax_bce_rmsprop"
);

fn folder_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: the Keras reference cases are required",
                dir.display()
            )
        })
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_case_folder_has_a_test() {
    let names = folder_names(&cases_dir());
    assert_eq!(names.len(), 7, "{names:?}");
    let layer_names = folder_names(&layer_cases_dir());
    assert_eq!(layer_names.len(), 6, "{layer_names:?}");
    for n in names.iter().chain(&layer_names) {
        let listed = ELSEWHERE.iter().any(|(c, _)| c == n);
        assert!(
            try_build(n).is_some() != listed,
            "case {n}: needs a hand-built model here or in the file ELSEWHERE names"
        );
    }
}

/// The cases of [`ELSEWHERE`] import from their JSON, and the file that
/// runs them names them.
#[test]
fn cases_run_elsewhere_import_and_are_run_there() {
    for (name, file) in ELSEWHERE {
        lossgraph::keras::case::Case::load(&layer_cases_dir().join(name))
            .and_then(|c| c.model())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let src = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(src.contains(name), "{file} does not run {name}");
    }
}

/// p08–p10 run their convolutions as convolution calls (no im2col) on a
/// host that has them: each convolution reads the model input, so the
/// training step has its forward and its filter-gradient call (no data
/// gradient), and the run above went through them. Their windowed
/// poolings run as pooling calls, forward and gradient: p08's
/// MaxPooling2D, p09's `same` AveragePooling2D (its window sums; the
/// global average is a mean, p10's global max a `reduce_max`).
#[test]
fn conv_cases_compile_to_convolution_and_pooling_calls() {
    let opts = lossgraph_runtime::JitOptions::default();
    for (case, want_pools) in [
        ("p08_conv2d_maxpool_flatten_sparse_adam", 2),
        ("p09_conv2d_same_stride2_avgpool_gap_mse_momentum", 2),
        ("p10_conv1d_globalmax_bce_rmsprop", 0),
    ] {
        let dir = case_dir(case);
        let spec: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        let bs = spec["train"]["batch_size"].as_u64().unwrap() as usize;
        let mut model = build(case);
        let copts = compile_options(&spec, &model).engine(Engine::Jit);
        model.compile(copts).unwrap();
        let g = model.graph(lossgraph::Purpose::Train, bs).unwrap();
        let p = lossgraph_runtime::Program::new_jit(g, &opts).unwrap();
        let stats = p.compile_stats().unwrap();
        if opts.fusion.pool_calls {
            assert_eq!(
                stats.pools, want_pools,
                "{case}: pooling calls in the train step"
            );
        }
        if opts.fusion.conv_calls {
            assert_eq!(
                stats.convs, 2,
                "{case}: convolution calls in the train step"
            );
        } else {
            eprintln!("no convolution calls on this host (no AVX-512): im2col only");
        }
    }
}
