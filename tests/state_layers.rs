//! Layers with state, indices and randomness: BatchNormalization's moving
//! statistics (hand values from SEMANTICS.md §6.5, through train_on_batch,
//! the custom loop, predict, save/load and `trainable = false`), the
//! normalization layers against hand-computed values, Embedding (int32
//! inputs, a shared table's summed gradient, out-of-range ids refused), the
//! noise layers (off at inference, fresh per training step, reproducible
//! per seed), and the reference cases p11–p13 of `shared/keras-cases-layers`
//! through the JSON importer and through the same models written in Rust.

// `&[x.clone()]` reads like Keras's `[x]`.
#![allow(clippy::cloned_ref_to_slice_refs)]

use lossgraph::keras::case::{run_case, run_case_with, Case, CaseReport};
use lossgraph::layers::{
    Activation, Add, AlphaDropout, BatchNormalization, Dense, Dropout, Embedding, Flatten,
    GaussianDropout, GaussianNoise, GroupNormalization, Input, LayerNormalization, SpatialDropout,
    UnitNormalization,
};
use lossgraph::{
    CompileOptions, DType, Functional, HostTensor, Init, Loss, Model, Optimizer, Regularizer,
    Sequential,
};
use std::path::PathBuf;

fn t(shape: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::f32(shape, v.to_vec()).expect("shape")
}

fn vals(m: &Model, path: &str) -> Vec<f32> {
    m.get_weight(path)
        .unwrap_or_else(|| panic!("no variable {path}"))
        .as_f32()
        .expect("f32")
        .to_vec()
}

fn close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

/// Input(2) → BatchNormalization "bn", MSE against zeros, SGD with lr 0 (so
/// gamma and beta stay 1 and 0 and only the moving statistics move).
fn bn_model(bn: BatchNormalization) -> Model {
    let mut m = Sequential::new("bnm")
        .add(Input::new(&[2]))
        .add(bn.name("bn"))
        .build()
        .expect("build");
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.0),
        Loss::MeanSquaredError,
    ))
    .expect("compile");
    m
}

fn bn_batch() -> (HostTensor, HostTensor) {
    (t(&[2, 2], &[1., 2., 3., 5.]), t(&[2, 2], &[0.; 4]))
}

#[test]
fn batch_norm_moving_statistics_follow_keras_by_hand() {
    // SEMANTICS.md §6.5: one training call on [[1,2],[3,5]] from (0, 1)
    // gives moving_mean [0.02, 0.035] and moving_variance [1.0, 1.0125].
    let mut m = bn_model(BatchNormalization::new());
    let (x, y) = bn_batch();
    assert_eq!(
        m.trainable_weight_names(),
        vec!["bn/gamma".to_string(), "bn/beta".to_string()]
    );
    let summary = m.summary().expect("summary");
    assert!(summary.contains("Trainable params: 4"), "{summary}");
    assert!(summary.contains("Non-trainable params: 4"), "{summary}");
    // Training mode: batch statistics, biased variance [1, 2.25].
    let g = m
        .compute_gradients(&[x.clone()], &[y.clone()])
        .expect("grads");
    let eps = 1e-3f64;
    // (x, its column's batch mean, its column's biased variance), row-major.
    let want_train: Vec<f64> = [(1., 2., 1.), (2., 3.5, 2.25), (3., 2., 1.), (5., 3.5, 2.25)]
        .iter()
        .map(|(v, mean, var): &(f64, f64, f64)| (v - mean) / (var + eps).sqrt())
        .collect();
    close(g.outputs[0].as_f32().unwrap(), &want_train, 1e-5);
    // The custom loop's gradient call ran the update.
    close(&vals(&m, "bn/moving_mean"), &[0.02, 0.035], 1e-7);
    close(&vals(&m, "bn/moving_variance"), &[1.0, 1.0125], 1e-6);
    // train_on_batch: a second update from the same batch.
    m.train_on_batch(&[x.clone()], &[y.clone()]).expect("train");
    let mm2 = [0.02 * 0.99 + 2.0 * 0.01, 0.035 * 0.99 + 3.5 * 0.01];
    let mv2 = [0.99 + 0.01, 1.0125 * 0.99 + 2.25 * 0.01];
    close(&vals(&m, "bn/moving_mean"), &mm2, 1e-6);
    close(&vals(&m, "bn/moving_variance"), &mv2, 1e-6);
    // Inference: the moving statistics, and no update.
    let p = m.predict(&[x.clone()], 2).expect("predict");
    let want: Vec<f64> = [1., 2., 3., 5.]
        .iter()
        .enumerate()
        .map(|(i, v)| (v - mm2[i % 2]) / (mv2[i % 2] + eps).sqrt())
        .collect();
    close(p[0].as_f32().unwrap(), &want, 1e-5);
    close(&vals(&m, "bn/moving_mean"), &mm2, 1e-6);
    // State survives save/load.
    let dir = std::env::temp_dir().join(format!("lossgraph_state_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bn.safetensors");
    m.save_weights(&file).expect("save");
    let mut n = bn_model(BatchNormalization::new());
    n.load_weights(&file).expect("load");
    assert_eq!(
        vals(&n, "bn/moving_variance"),
        vals(&m, "bn/moving_variance")
    );
    assert_eq!(n.predict(&[x], 2).unwrap()[0], p[0]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn frozen_batch_norm_normalizes_with_moving_statistics_in_training() {
    for freeze_later in [false, true] {
        let mut m = if freeze_later {
            let mut m = bn_model(BatchNormalization::new());
            m.set_trainable("bn", false).unwrap();
            m.compile(CompileOptions::new(
                Optimizer::sgd(0.0),
                Loss::MeanSquaredError,
            ))
            .unwrap();
            m
        } else {
            bn_model(BatchNormalization::new().trainable(false))
        };
        let (x, y) = bn_batch();
        assert!(m.trainable_weight_names().is_empty());
        let g = m.compute_gradients(&[x.clone()], &[y.clone()]).unwrap();
        let s = (1.0f64 + 1e-3).sqrt();
        close(
            g.outputs[0].as_f32().unwrap(),
            &[1. / s, 2. / s, 3. / s, 5. / s],
            1e-6,
        );
        m.train_on_batch(&[x], &[y]).unwrap();
        assert_eq!(vals(&m, "bn/moving_mean"), vec![0.0, 0.0]);
        assert_eq!(vals(&m, "bn/moving_variance"), vec![1.0, 1.0]);
    }
}

#[test]
fn batch_norm_over_images_and_sequences_without_center_or_scale() {
    // (N, T, C) = (2, 2, 1): statistics over N and T; no gamma, no beta.
    let mut m = Sequential::new("seq")
        .add(Input::new(&[2, 1]))
        .add(
            BatchNormalization::new()
                .center(false)
                .scale(false)
                .name("bn"),
        )
        .build()
        .unwrap();
    assert_eq!(m.variables().len(), 2);
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let x = t(&[2, 2, 1], &[1., 2., 3., 6.]);
    let g = m
        .compute_gradients(&[x.clone()], &[t(&[2, 2, 1], &[0.; 4])])
        .unwrap();
    let (mean, var) = (3.0f64, (4.0f64 + 1. + 0. + 9.) / 4.);
    let want: Vec<f64> = [1., 2., 3., 6.]
        .iter()
        .map(|v| (v - mean) / (var + 1e-3).sqrt())
        .collect();
    close(g.outputs[0].as_f32().unwrap(), &want, 1e-5);
    close(&vals(&m, "bn/moving_mean"), &[0.03], 1e-7);
    // Images (N, H, W, C) = (1, 2, 1, 2), axis -1: per channel over N, H, W.
    let mut m = Sequential::new("img")
        .add(Input::new(&[2, 1, 2]))
        .add(BatchNormalization::new().momentum(0.5).name("bn"))
        .build()
        .unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.0),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let x = t(&[1, 2, 1, 2], &[1., 10., 3., 20.]);
    m.train_on_batch(&[x], &[t(&[1, 2, 1, 2], &[0.; 4])])
        .unwrap();
    close(&vals(&m, "bn/moving_mean"), &[1.0, 7.5], 1e-6);
    close(&vals(&m, "bn/moving_variance"), &[1.0, 13.0], 1e-5);
}

#[test]
fn normalization_layers_match_hand_values() {
    let run = |layer: Box<dyn lossgraph::Layer>, shape: &[usize], x: &[f32]| -> Vec<f32> {
        let mut s = Sequential::new("n").add(Input::new(&shape[1..]));
        s.push(layer);
        let mut m = s.build().unwrap();
        m.predict(&[t(shape, x)], shape[0]).unwrap()[0]
            .as_f32()
            .unwrap()
            .to_vec()
    };
    let x = [1.0f32, 2., 3., 5.];
    let xd = x.map(f64::from);
    let ln = run(Box::new(LayerNormalization::new()), &[1, 4], &x);
    let (mean, var) = (2.75f64, (3.0625f64 + 0.5625 + 0.0625 + 5.0625) / 4.);
    let want: Vec<f64> = xd
        .iter()
        .map(|v| (v - mean) / (var + 1e-3).sqrt())
        .collect();
    close(&ln, &want, 1e-5);
    let rms = run(
        Box::new(LayerNormalization::new().rms_scaling(true)),
        &[1, 4],
        &x,
    );
    // Keras 3's rms_scaling divides the uncentred x by √(var + ε) (its own
    // deprecation warning: "scales the input by the variance").
    let want: Vec<f64> = xd.iter().map(|v| v / (var + 1e-3).sqrt()).collect();
    close(&rms, &want, 1e-5);
    // Two groups of two channels: [1, 2] and [3, 5].
    let gn = run(Box::new(GroupNormalization::new(2)), &[1, 4], &x);
    let s1 = (0.25f64 + 1e-3).sqrt();
    let s2 = (1.0f64 + 1e-3).sqrt();
    close(&gn, &[-0.5 / s1, 0.5 / s1, -1. / s2, 1. / s2], 1e-5);
    let un = run(
        Box::new(UnitNormalization::new()),
        &[2, 2],
        &[3., 4., 0., 0.],
    );
    close(&un, &[0.6, 0.8, 0.0, 0.0], 1e-6);
}

/// Ids the graph computes (here cast from a float input, as Keras's
/// Embedding casts) are not checked before the run: an id outside the table
/// is refused at run time by both engines with the same error — the JIT's
/// kernel records it in the program's fault slot — naming the layer's
/// gather node, the batch row and the value, never clamped to a valid row.
/// A refused training step changes no weight; the next runs work.
#[test]
fn embedding_refuses_computed_ids_outside_the_table_at_run_time() {
    let mut errors = Vec::new();
    let mut outputs = Vec::new();
    for engine in [lossgraph::Engine::Interpreter, lossgraph::Engine::Jit] {
        let mut m = Sequential::new("computed")
            .seed(3)
            .add(Input::new(&[2]))
            .add(Embedding::new(5, 2).name("emb"))
            .add(Flatten::new())
            .add(Dense::new(1).name("out"))
            .build()
            .unwrap();
        m.compile(CompileOptions::new(Optimizer::sgd(0.1), Loss::MeanSquaredError).engine(engine))
            .unwrap();
        let ok = m.predict(&[t(&[1, 2], &[4.0, 0.0])], 1).unwrap();
        assert_eq!(ok[0].shape(), &[1, 1]);
        let err = m
            .predict(&[t(&[2, 2], &[1.0, 0.0, 7.0, 2.0])], 2)
            .expect_err("id 7 of a 5-row table")
            .to_string();
        assert!(
            err.contains("(gather) in scope 'emb'")
                && err.contains(
                    "row 1 (element 0 of its row) of ids i32[2,2] holds id 7 outside [0, 5)"
                ),
            "{engine:?}: {err}"
        );
        // A refused training step leaves every weight as it was.
        let before = (vals(&m, "emb/embeddings"), vals(&m, "out/kernel"));
        let (bad, y) = (t(&[2, 2], &[1.0, -3.0, 0.0, 2.0]), t(&[2, 1], &[1.0, 0.0]));
        let e = m
            .train_on_batch(&[bad], &[y.clone()])
            .expect_err("id -3")
            .to_string();
        assert!(
            e.contains("row 0 (element 1 of its row)") && e.contains("holds id -3"),
            "{e}"
        );
        assert_eq!(
            (vals(&m, "emb/embeddings"), vals(&m, "out/kernel")),
            before,
            "{engine:?}"
        );
        errors.push((err, e));
        // The model still runs, and trains, on good ids afterwards.
        let good = t(&[2, 2], &[3.0, 1.0, 4.9, 0.0]);
        m.train_on_batch(&[good.clone()], &[y])
            .unwrap_or_else(|e| panic!("{engine:?} after a refused run: {e}"));
        let p = m.predict(&[good], 2).unwrap()[0].as_f32().unwrap().to_vec();
        outputs.push((p, vals(&m, "emb/embeddings")));
    }
    assert_eq!(
        errors[0], errors[1],
        "the engines word the fault differently"
    );
    close(
        &outputs[1].0,
        &outputs[0].0.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-6,
    );
    close(
        &outputs[1].1,
        &outputs[0].1.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        1e-6,
    );
}

#[test]
fn shared_embedding_is_one_variable_with_summed_gradients() {
    let mut f = Functional::new("shared");
    let a = f
        .input(Input::new(&[1]).dtype(DType::I32).name("a"))
        .unwrap();
    let b = f
        .input(Input::new(&[1]).dtype(DType::I32).name("b"))
        .unwrap();
    let emb = f
        .add_layer(
            Embedding::new(3, 2)
                .embeddings_initializer(Init::Ones)
                .name("emb"),
        )
        .unwrap();
    let ea = f.call(emb, &[a]).unwrap();
    let eb = f.call(emb, &[b]).unwrap();
    let s = f.apply(Add::new(), &[ea, eb]).unwrap();
    let out = f.apply(Flatten::new(), &[s]).unwrap();
    let mut m = f.build(&[out]).unwrap();
    assert_eq!(m.variables().len(), 1);
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let ids = HostTensor::i32(&[1, 1], vec![1]).unwrap();
    let y = t(&[1, 2], &[0., 0.]);
    // out = E[1] + E[1] = [2, 2]; d mean(out²)/d out = out = [2, 2]; row 1
    // collects it from both calls: 4; rows 0 and 2 get nothing.
    let g = m
        .compute_gradients(&[ids.clone(), ids.clone()], &[y.clone()])
        .unwrap();
    assert_eq!(g.grads.len(), 1);
    close(
        g.grads[0].1.as_f32().unwrap(),
        &[0., 0., 4., 4., 0., 0.],
        1e-6,
    );
    // An id outside [0, input_dim) is refused, naming the sample and value.
    let bad = HostTensor::i32(&[2, 1], vec![0, 3]).unwrap();
    let err = m
        .predict(&[bad, HostTensor::i32(&[2, 1], vec![0, 0]).unwrap()], 2)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sample 1") && err.contains("id 3") && err.contains("emb"),
        "{err}"
    );
}

/// Input(6) → `noise` → Dense(1) with kernel ones and no bias, MSE, SGD 0.
fn noisy(noise: Box<dyn lossgraph::Layer>, seed: u64) -> Model {
    let mut s = Sequential::new("noisy").seed(seed).add(Input::new(&[2, 3]));
    s.push(noise);
    let mut m = s
        .add(Flatten::new())
        .add(Dense::new(1).use_bias(false).kernel_initializer(Init::Ones))
        .build()
        .unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.01),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    m
}

/// Makes a fresh layer.
type MakeLayer = fn() -> Box<dyn lossgraph::Layer>;

fn noise_layers() -> Vec<(&'static str, MakeLayer)> {
    vec![
        ("dropout", || Box::new(Dropout::new(0.5))),
        ("gaussian_noise", || Box::new(GaussianNoise::new(0.7))),
        ("gaussian_dropout", || Box::new(GaussianDropout::new(0.4))),
        ("spatial_dropout", || Box::new(SpatialDropout::new_1d(0.5))),
        ("alpha_dropout", || Box::new(AlphaDropout::new(0.3))),
    ]
}

#[test]
fn noise_is_off_at_inference_fresh_per_step_and_reproducible_per_seed() {
    let x = t(
        &[4, 2, 3],
        &(0..24).map(|i| 0.1 * i as f32 + 0.5).collect::<Vec<_>>(),
    );
    let y = t(&[4, 1], &[1., 2., 3., 4.]);
    let plain: Vec<f32> = (0..4)
        .map(|r| (0..6).map(|k| 0.1 * (6 * r + k) as f32 + 0.5).sum())
        .collect();
    for (name, make) in noise_layers() {
        let mut m = noisy(make(), 7);
        // Inference: no noise, so two predicts agree with the plain sum.
        let p1 = m.predict(&[x.clone()], 4).unwrap();
        let p2 = m.predict(&[x.clone()], 4).unwrap();
        assert_eq!(p1, p2, "{name}");
        let p = p1[0].as_f32().unwrap();
        for (g, w) in p.iter().zip(&plain) {
            assert!((g - w).abs() < 1e-4, "{name}: {p:?} vs {plain:?}");
        }
        // Training: two steps see different noise.
        let a = m.compute_gradients(&[x.clone()], &[y.clone()]).unwrap();
        let b = m.compute_gradients(&[x.clone()], &[y.clone()]).unwrap();
        assert_ne!(a.outputs[0], b.outputs[0], "{name}: same noise twice");
        assert_ne!(a.outputs[0], p1[0], "{name}: no noise in training");
        // The same seed gives bit-identical weights after training; another differs.
        let train = |seed: u64| {
            let mut m = noisy(make(), seed);
            for _ in 0..3 {
                m.train_on_batch(&[x.clone()], &[y.clone()]).unwrap();
            }
            vals(&m, "dense/kernel")
        };
        let (w1, w2, w3) = (train(11), train(11), train(12));
        assert_eq!(
            w1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            w2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}"
        );
        assert_ne!(w1, w3, "{name}: the seed does not reach the noise");
    }
}

#[test]
fn dropout_masks_scale_and_spatial_masks_cover_whole_channels() {
    let x = t(&[4, 2, 3], &[1.0; 24]);
    let y = t(&[4, 1], &[0.; 4]);
    // Inverted dropout: each output is 2 × (the number of kept ones).
    let mut m = noisy(Box::new(Dropout::new(0.5)), 3);
    let out = m
        .compute_gradients(&[x.clone()], &[y.clone()])
        .unwrap()
        .outputs[0]
        .clone();
    for v in out.as_f32().unwrap() {
        assert!(
            v.fract() == 0.0 && (*v as i32) % 2 == 0 && *v <= 12.0,
            "{out:?}"
        );
    }
    // SpatialDropout1D on (N, T=2, C=3): a channel is kept or dropped at both
    // steps, so every output is 2·2·(kept channels).
    let mut m = noisy(Box::new(SpatialDropout::new_1d(0.5)), 3);
    let out = m.compute_gradients(&[x], &[y]).unwrap().outputs[0].clone();
    for v in out.as_f32().unwrap() {
        assert!(v.fract() == 0.0 && (*v as i32) % 4 == 0, "{out:?}");
    }
}

fn case(name: &str) -> Case {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/keras-cases-layers"
    ))
    .join(name);
    Case::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_passed(r: &CaseReport, how: &str) {
    let failures: Vec<String> = r
        .failures()
        .iter()
        .map(|c| format!("{}: {}", c.what, c.detail))
        .collect();
    assert!(r.passed(), "{} ({how}):\n{}", r.name, failures.join("\n"));
}

/// p11–p13 written in Rust, with the names the cases use.
fn rust_model(name: &str) -> Model {
    let m = match name {
        "p11_dense_batchnorm_relu_mse_sgd" => Sequential::new("bnmlp")
            .add(Input::new(&[6]).name("bnmlp_input"))
            .add(Dense::new(8).name("dense_1"))
            .add(BatchNormalization::new().name("bn"))
            .add(Activation::new("relu").name("relu"))
            .add(Dense::new(2).name("out"))
            .build(),
        "p12_layernorm_mlp_cce_adamw" => Sequential::new("lnmlp")
            .add(Input::new(&[5]).name("lnmlp_input"))
            .add(Dense::new(8).activation("relu").name("dense_1"))
            .add(LayerNormalization::new().name("ln"))
            .add(Dense::new(4).activation("softmax").name("probs"))
            .build(),
        "p13_embedding_flatten_sparse_logits_adam" => Sequential::new("bow")
            .add(Input::new(&[6]).dtype(DType::I32).name("bow_input"))
            .add(
                Embedding::new(20, 4)
                    .embeddings_regularizer(Regularizer::L2(0.01))
                    .name("emb"),
            )
            .add(Flatten::new().name("flat"))
            .add(Dense::new(3).name("logits"))
            .build(),
        other => panic!("no Rust model for {other}"),
    };
    m.unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn keras_cases_p11_to_p13_import_and_rust() {
    for name in [
        "p11_dense_batchnorm_relu_mse_sgd",
        "p12_layernorm_mlp_cce_adamw",
        "p13_embedding_flatten_sparse_logits_adam",
    ] {
        let c = case(name);
        let imported = run_case(&c).unwrap_or_else(|e| panic!("{name} (import): {e}"));
        assert_passed(&imported, "JSON importer");
        let rust = run_case_with(&c, || c.prepare(rust_model(name)))
            .unwrap_or_else(|e| panic!("{name} (Rust): {e}"));
        assert_passed(&rust, "written in Rust");
    }
}

/// A Keras functional JSON with what the README describes beyond p11–p13:
/// two int32 inputs sharing one Embedding, LayerNormalization over the last
/// axis of the `(N, T, C)` sequence, a BatchNormalization over N and T with
/// center and scale off, and a frozen (`trainable: false`) BatchNormalization.
const FUNCTIONAL_JSON: &str = r#"{
 "class_name": "Functional", "module": "keras.src.models.functional", "registered_name": "Functional",
 "config": {"name": "combo", "trainable": true,
  "layers": [
   {"class_name": "InputLayer", "name": "a", "config": {"batch_shape": [null, 3], "dtype": "int32", "sparse": false, "ragged": false, "name": "a", "optional": false}, "inbound_nodes": []},
   {"class_name": "InputLayer", "name": "b", "config": {"batch_shape": [null, 3], "dtype": "int32", "sparse": false, "ragged": false, "name": "b", "optional": false}, "inbound_nodes": []},
   {"class_name": "Embedding", "name": "emb", "config": {"name": "emb", "trainable": true, "dtype": "float32", "input_dim": 5, "output_dim": 2,
     "embeddings_initializer": {"module": "keras.initializers", "class_name": "RandomUniform", "config": {"seed": null, "minval": -0.05, "maxval": 0.05}, "registered_name": null},
     "embeddings_regularizer": null, "activity_regularizer": null, "embeddings_constraint": null, "mask_zero": false},
    "inbound_nodes": [
     {"args": [{"class_name": "__keras_tensor__", "config": {"shape": [null, 3], "dtype": "int32", "keras_history": ["a", 0, 0]}}], "kwargs": {}},
     {"args": [{"class_name": "__keras_tensor__", "config": {"shape": [null, 3], "dtype": "int32", "keras_history": ["b", 0, 0]}}], "kwargs": {}}]},
   {"class_name": "Add", "name": "add", "config": {"name": "add", "trainable": true, "dtype": "float32"},
    "inbound_nodes": [{"args": [[
      {"class_name": "__keras_tensor__", "config": {"shape": [null, 3, 2], "dtype": "float32", "keras_history": ["emb", 0, 0]}},
      {"class_name": "__keras_tensor__", "config": {"shape": [null, 3, 2], "dtype": "float32", "keras_history": ["emb", 1, 0]}}]], "kwargs": {}}]},
   {"class_name": "LayerNormalization", "name": "ln", "config": {"name": "ln", "trainable": true, "dtype": "float32", "axis": [-1], "epsilon": 0.001, "center": true, "scale": true, "rms_scaling": false,
     "beta_initializer": "zeros", "gamma_initializer": "ones", "beta_regularizer": null, "gamma_regularizer": null, "beta_constraint": null, "gamma_constraint": null},
    "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"shape": [null, 3, 2], "dtype": "float32", "keras_history": ["add", 0, 0]}}], "kwargs": {}}]},
   {"class_name": "BatchNormalization", "name": "bn_plain", "config": {"name": "bn_plain", "trainable": true, "dtype": "float32", "axis": -1, "momentum": 0.9, "epsilon": 0.001, "center": false, "scale": false,
     "moving_mean_initializer": "zeros", "moving_variance_initializer": "ones", "beta_regularizer": null, "gamma_regularizer": null, "synchronized": false, "renorm": false},
    "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"shape": [null, 3, 2], "dtype": "float32", "keras_history": ["ln", 0, 0]}}], "kwargs": {}}]},
   {"class_name": "BatchNormalization", "name": "bn_frozen", "config": {"name": "bn_frozen", "trainable": false, "dtype": "float32", "axis": -1, "momentum": 0.99, "epsilon": 0.001, "center": true, "scale": true,
     "beta_regularizer": null, "gamma_regularizer": null},
    "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"shape": [null, 3, 2], "dtype": "float32", "keras_history": ["bn_plain", 0, 0]}}], "kwargs": {}}]}
  ],
  "input_layers": [["a", 0, 0], ["b", 0, 0]],
  "output_layers": ["bn_frozen", 0, 0]}
}"#;

#[test]
fn keras_import_shared_embedding_sequence_norms_and_frozen_batch_norm() {
    use lossgraph::keras::build::build_model;
    use lossgraph::keras::ModelSpec;
    let spec = ModelSpec::from_json_str(FUNCTIONAL_JSON, "combo.json").unwrap();
    let mut m = build_model(&spec, 1).unwrap();
    let names: Vec<String> = m.variables().iter().map(|v| v.path.clone()).collect();
    assert_eq!(
        names,
        [
            "emb/embeddings",
            "ln/gamma",
            "ln/beta",
            "bn_plain/moving_mean",
            "bn_plain/moving_variance",
            "bn_frozen/gamma",
            "bn_frozen/beta",
            "bn_frozen/moving_mean",
            "bn_frozen/moving_variance"
        ]
    );
    assert_eq!(m.input_dtypes(), vec![DType::I32, DType::I32]);
    assert_eq!(
        m.trainable_weight_names(),
        ["emb/embeddings", "ln/gamma", "ln/beta"]
    );
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let a = HostTensor::i32(&[2, 3], vec![0, 1, 2, 3, 4, 0]).unwrap();
    let b = HostTensor::i32(&[2, 3], vec![4, 4, 1, 0, 2, 3]).unwrap();
    let y = t(&[2, 3, 2], &[0.5; 12]);
    m.train_on_batch(&[a.clone(), b.clone()], &[y.clone()])
        .unwrap();
    // bn_plain trained: momentum 0.9 from (0, 1) towards the batch statistics
    // over N and T of LayerNormalization's output, which per sample and step
    // is (−s, s) or (s, −s) with s ≤ 1: mean 0.1·m, variance 0.9 + 0.1·v.
    let mm = vals(&m, "bn_plain/moving_mean");
    let mv = vals(&m, "bn_plain/moving_variance");
    assert!(mm.iter().all(|v| v.abs() <= 0.1), "{mm:?}");
    assert!((mm[0] + mm[1]).abs() < 1e-6, "{mm:?}");
    assert!(
        mv.iter().all(|v| (0.9..=1.0).contains(v)) && mv[0] != 1.0,
        "{mv:?}"
    );
    // bn_frozen: no update in training.
    assert_eq!(vals(&m, "bn_frozen/moving_mean"), vec![0.0, 0.0]);
    assert_eq!(vals(&m, "bn_frozen/moving_variance"), vec![1.0, 1.0]);
}

/// A custom layer that reads Keras's `training` argument: identity in
/// training, ×3 at inference.
struct TripleAtInference;

impl lossgraph::Layer for TripleAtInference {
    fn call(
        &self,
        ctx: &mut lossgraph::CallCtx,
        x: &lossgraph::Tensor,
    ) -> lossgraph::Result<lossgraph::Tensor> {
        Ok(if ctx.training() { x.clone() } else { x * 3.0 })
    }
}

#[test]
fn the_training_flag_reaches_custom_layers_in_every_entry_point() {
    // x·kernel = 1·0.5 + 2·0.25 = 1; the target is 0, so mse = (value)².
    let mut m = Sequential::new("flag")
        .add(Input::new(&[2]))
        .add(TripleAtInference)
        .add(Dense::new(1).use_bias(false).name("d"))
        .build()
        .expect("build");
    m.set_weight("d/kernel", t(&[2, 1], &[0.5, 0.25]))
        .expect("kernel");
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.0),
        Loss::MeanSquaredError,
    ))
    .expect("compile");
    let (x, y) = (t(&[1, 2], &[1., 2.]), t(&[1, 1], &[0.]));
    // Inference: predict and evaluate see 3·x.
    let p = m.predict(&[x.clone()], 1).expect("predict");
    close(p[0].as_f32().unwrap(), &[3.0], 1e-6);
    let e = m.evaluate(&[x.clone()], &[y.clone()], 1).expect("evaluate");
    assert!((e.loss() - 9.0).abs() < 1e-5, "evaluate {e:?}");
    // Training: train_on_batch and the custom loop see x itself.
    let l = m.train_on_batch(&[x.clone()], &[y.clone()]).expect("train");
    assert!((l.loss() - 1.0).abs() < 1e-6, "train_on_batch {l:?}");
    let g = m
        .compute_gradients(&[x.clone()], &[y.clone()])
        .expect("grads");
    // d/dk (x·k)² = 2·(x·k)·x = [2, 4] in training mode ([18, 36] at inference).
    let (_, dk) = g.grads.iter().find(|(p, _)| p == "d/kernel").expect("grad");
    close(dk.as_f32().unwrap(), &[2.0, 4.0], 1e-5);
}

/// Adds standard normal noise in every mode, as a VAE's sampling layer does
/// in `predict`, with a seed taken from the model's seed in `build`.
#[derive(Default)]
struct AlwaysNoisy {
    seed: u32,
}

impl lossgraph::Layer for AlwaysNoisy {
    fn build(&mut self, ctx: &mut lossgraph::BuildCtx, _: &[usize]) -> lossgraph::Result<()> {
        self.seed = ctx.seed();
        Ok(())
    }

    fn call(
        &self,
        ctx: &mut lossgraph::CallCtx,
        x: &lossgraph::Tensor,
    ) -> lossgraph::Result<lossgraph::Tensor> {
        let shape = x.shape().to_vec();
        Ok(x + ctx.random_normal(self.seed, &shape))
    }
}

#[test]
fn noise_drawn_at_inference_is_fresh_per_predict_and_reproducible_per_seed() {
    let run = |seed: u64| {
        let mut m = Sequential::new("sampler")
            .seed(seed)
            .add(Input::new(&[64]))
            .add(AlwaysNoisy::default())
            .build()
            .expect("build");
        let x = t(&[2, 64], &[0.0; 128]);
        let a = m.predict(&[x.clone()], 2).expect("predict")[0].clone();
        let b = m.predict(&[x], 2).expect("predict")[0].clone();
        (a.as_f32().unwrap().to_vec(), b.as_f32().unwrap().to_vec())
    };
    let (a, b) = run(1);
    assert_ne!(a, b, "two predict calls drew the same noise");
    // Standard normal: 128 draws have a mean near 0 and a variance near 1.
    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / 128.0;
    let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 128.0;
    assert!(
        mean.abs() < 0.3 && (0.6..1.5).contains(&var),
        "mean {mean} var {var}"
    );
    assert_eq!(run(1), (a.clone(), b), "the same seed gave other draws");
    assert_ne!(run(2).0, a, "another seed gave the same draws");
}
