//! Parser tests on the shared Keras cases and on hand-written bad inputs.

use super::*;
use serde_json::json;
use std::path::PathBuf;

fn cases_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/keras-cases"
    ))
}

#[test]
fn parses_every_shared_case() {
    let dir = cases_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the Keras reference cases are required",
            dir.display()
        )
    });
    let mut n = 0;
    for e in entries.flatten() {
        let model = e.path().join("model.json");
        if !model.exists() {
            continue;
        }
        let spec = ModelSpec::from_file(&model).unwrap();
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(e.path().join("case.json")).unwrap())
                .unwrap();
        let c = CompileSpec::from_value(&case["compile"], &spec.output_names(), "case").unwrap();
        assert_eq!(c.losses.len(), spec.outputs.len());
        n += 1;
    }
    assert!(n >= 7, "found {n} cases");
}

#[test]
fn p06_structure() {
    let p = cases_dir().join("p06_functional_two_in_two_out_nesterov/model.json");
    if !p.exists() {
        return;
    }
    let spec = ModelSpec::from_file(&p).unwrap();
    assert_eq!(spec.kind, ModelKind::Functional);
    assert_eq!(spec.input_names(), vec!["input_a", "input_b"]);
    assert_eq!(spec.outputs.len(), 2);
    let trunk = spec.layer("trunk").unwrap();
    match &trunk.kind {
        LayerKind::Dense {
            units,
            activation,
            activity_regularizer,
            kernel_regularizer,
            ..
        } => {
            assert_eq!(*units, 8);
            assert_eq!(*activation, ActivationSpec::Tanh);
            assert_eq!(*activity_regularizer, Some(RegularizerSpec::L1(0.01)));
            assert_eq!(*kernel_regularizer, Some(RegularizerSpec::L2(0.005)));
        }
        k => panic!("{k:?}"),
    }
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.with_file_name("case.json")).unwrap())
            .unwrap();
    let c = CompileSpec::from_value(&case["compile"], &spec.output_names(), "case").unwrap();
    assert_eq!(
        c.optimizer,
        OptimizerSpec::Sgd {
            learning_rate: 0.05,
            momentum: 0.9,
            nesterov: true
        }
    );
    let reg = c.losses.iter().find(|l| l.0 == "out_reg").unwrap();
    assert_eq!(reg.1.kind, LossKind::MeanSquaredError);
    assert_eq!(reg.2, 1.0);
    let cls = c.losses.iter().find(|l| l.0 == "out_cls").unwrap();
    assert_eq!(cls.1.kind, LossKind::BinaryCrossentropy);
    assert!(cls.1.from_logits);
    assert_eq!(cls.2, 0.5);
}

fn seq(layers: serde_json::Value) -> serde_json::Value {
    json!({"class_name": "Sequential", "config": {"name": "s", "layers": layers}})
}

fn input(d: usize) -> serde_json::Value {
    json!({"class_name": "InputLayer", "config": {"batch_shape": [null, d], "dtype": "float32", "name": "x"}})
}

#[test]
fn sequential_chain_and_defaults() {
    let v = seq(json!([input(3), {"class_name": "Dense", "config": {"name": "d", "units": 2}}]));
    let s = ModelSpec::from_value(&v).unwrap();
    assert_eq!(
        s.layers[1].calls,
        vec![vec![TensorRef {
            layer: "x".into(),
            node: 0,
            tensor: 0
        }]]
    );
    assert_eq!(s.output_names(), vec!["d"]);
    match &s.layers[1].kind {
        LayerKind::Dense {
            activation,
            use_bias,
            ..
        } => {
            assert_eq!(*activation, ActivationSpec::Linear);
            assert!(*use_bias);
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn unknown_layer_class_names_class_and_layer() {
    let v = seq(json!([input(3), {"class_name": "LSTM", "config": {"name": "c1", "units": 2}}]));
    let e = ModelSpec::from_value(&v).unwrap_err().to_string();
    assert!(
        e.contains("LSTM") && e.contains("c1") && e.contains("class_name"),
        "{e}"
    );
}

#[test]
fn registry_builds_what_it_parses_and_names_mismatches() {
    let classes: Vec<&str> = registry::classes().map(|c| c.class).collect();
    let mut unique = classes.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        classes.len(),
        "duplicate entries: {classes:?}"
    );
    // The unsupported-class message lists exactly the registry.
    let v = seq(json!([input(3), {"class_name": "LSTM", "config": {"name": "c1"}}]));
    let e = ModelSpec::from_value(&v).unwrap_err().to_string();
    let listed = classes.join(", ");
    assert!(e.contains(&listed), "{e}\nwant the list {listed}");
    // A description of another class is an error naming the layer, not a panic.
    let e = registry::build_layer("Dense", "d", &LayerKind::Flatten)
        .err()
        .expect("a Flatten description is not a Dense")
        .to_string();
    assert!(e.starts_with("Dense layer 'd': class_name: "), "{e}");
}

#[test]
fn unsupported_key_is_named() {
    let v = seq(
        json!([input(3), {"class_name": "Dense", "config": {"name": "d", "units": 2, "frobnicate": 1}}]),
    );
    let e = ModelSpec::from_value(&v).unwrap_err().to_string();
    assert_eq!(
        e,
        "Dense layer 'd': frobnicate: unsupported config key (value 1)"
    );
    let v = seq(
        json!([input(3), {"class_name": "Dense", "config": {"name": "d", "units": 2, "kernel_constraint": {"class_name": "NonNeg", "config": {}}}}]),
    );
    let e = ModelSpec::from_value(&v).unwrap_err().to_string();
    assert!(
        e.starts_with("Dense layer 'd': kernel_constraint: unsupported value"),
        "{e}"
    );
    let v = seq(
        json!([input(3), {"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "swish"}}]),
    );
    let e = ModelSpec::from_value(&v).unwrap_err().to_string();
    assert!(
        e.contains("'d': activation: unsupported activation 'swish'"),
        "{e}"
    );
    let v = seq(
        json!([input(3), {"class_name": "Dense", "config": {"name": "d", "units": 2,
        "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.1, "l3": 1}}}}]),
    );
    let e = ModelSpec::from_value(&v).unwrap_err().to_string();
    assert!(e.contains("kernel_regularizer.config.l3"), "{e}");
    let v = seq(
        json!([input(3), {"class_name": "Dense", "config": {"name": "d", "units": 2, "dtype": "float16"}}]),
    );
    let e = ModelSpec::from_value(&v).unwrap_err().to_string();
    assert!(e.contains("'d': dtype: unsupported dtype"), "{e}");
}

#[test]
fn malformed_json_is_an_error() {
    let e = ModelSpec::from_json_str("{\"class_name\": ", "m.json").unwrap_err();
    assert!(matches!(e, KerasError::Json { .. }));
    assert!(e.to_string().starts_with("m.json: malformed JSON"));
}

#[test]
fn functional_bad_reference() {
    let v = json!({"class_name": "Functional", "config": {"name": "f",
        "layers": [
            {"class_name": "InputLayer", "name": "x", "config": {"batch_shape": [null, 2], "name": "x"}, "inbound_nodes": []},
            {"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 1},
             "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["nope", 0, 0]}}], "kwargs": {}}]}
        ],
        "input_layers": ["x", 0, 0], "output_layers": ["d", 0, 0]}});
    let e = ModelSpec::from_value(&v).unwrap_err().to_string();
    assert!(e.contains("unknown layer 'nope'"), "{e}");
}

#[test]
fn optimizer_args() {
    assert_eq!(
        OptimizerSpec::from_arg("adam:0.01").unwrap(),
        OptimizerSpec::Adam {
            learning_rate: 0.01,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            amsgrad: false
        }
    );
    assert!(OptimizerSpec::from_arg("lamb").is_err());
    assert!(OptimizerSpec::from_arg("sgd:x").is_err());
    assert_eq!(
        LossSpec::from_name("scce:logits").unwrap().kind,
        LossKind::SparseCategoricalCrossentropy
    );
    assert!(LossSpec::from_name("mse:logits").is_none());
}

#[test]
fn compile_rejects_clipnorm() {
    let v = json!({"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.1, "clipnorm": 1.0}}, "loss": "mse"});
    let e = CompileSpec::from_value(&v, &["out".into()], "case.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("compile.optimizer.config.clipnorm"), "{e}");
}

fn layer_cases_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/keras-cases-layers"
    ))
}

#[test]
fn conv_and_pooling_cases_parse() {
    use super::spatial::SpatialKind;
    use lossgraph_ir::conv::Padding;
    let p = layer_cases_dir().join("p09_conv2d_same_stride2_avgpool_gap_mse_momentum/model.json");
    let spec = ModelSpec::from_file(&p).unwrap();
    match &spec.layer("conv").unwrap().kind {
        LayerKind::Spatial(SpatialKind::Conv {
            rank,
            filters,
            kernel_size,
            strides,
            padding,
            bias_regularizer,
            ..
        }) => {
            assert_eq!((*rank, *filters), (2, 3));
            assert_eq!(
                (kernel_size.as_slice(), strides.as_slice()),
                (&[3, 3][..], &[2, 2][..])
            );
            assert_eq!(*padding, Padding::Same);
            assert_eq!(*bias_regularizer, Some(RegularizerSpec::L2(0.05)));
        }
        k => panic!("{k:?}"),
    }
    match &spec.layer("avgpool").unwrap().kind {
        LayerKind::Spatial(SpatialKind::Pool {
            max,
            pool_size,
            padding,
            ..
        }) => {
            assert!(!max);
            assert_eq!(pool_size, &vec![2, 2]);
            assert_eq!(*padding, Padding::Same);
        }
        k => panic!("{k:?}"),
    }
    for name in [
        "p08_conv2d_maxpool_flatten_sparse_adam",
        "p10_conv1d_globalmax_bce_rmsprop",
    ] {
        ModelSpec::from_file(&layer_cases_dir().join(name).join("model.json")).unwrap();
    }
}

#[test]
fn channels_first_and_bad_conv_configs_name_layer_and_key() {
    let img = json!({"class_name": "InputLayer", "config": {"batch_shape": [null, 8, 8, 1], "dtype": "float32", "name": "x"}});
    let conv = |extra: serde_json::Value| {
        let mut c = json!({"name": "c1", "filters": 2, "kernel_size": [3, 3]});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        seq(json!([img.clone(), {"class_name": "Conv2D", "config": c}]))
    };
    let e = ModelSpec::from_value(&conv(json!({"data_format": "channels_first"})))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c1") && e.contains("data_format") && e.contains("channels_first"),
        "{e}"
    );
    let e = ModelSpec::from_value(&conv(json!({"padding": "causal"})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("c1") && e.contains("padding"), "{e}");
    let e = ModelSpec::from_value(&conv(json!({"kernel_size": [3]})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("c1") && e.contains("kernel_size"), "{e}");
    let pool = seq(
        json!([img, {"class_name": "MaxPooling2D", "config": {"name": "p", "pool_size": [2, 2], "data_format": "channels_first"}}]),
    );
    let e = ModelSpec::from_value(&pool).unwrap_err().to_string();
    assert!(e.contains("'p'") && e.contains("data_format"), "{e}");
}

#[test]
fn a_tensor_index_past_the_outputs_of_a_call_is_an_error() {
    // keras_history [layer, node, tensor]: tensor indices > 0 are followed;
    // Dense returns one tensor, so index 1 names nothing.
    let v = json!({"class_name": "Functional", "config": {"name": "f",
        "layers": [
            {"class_name": "InputLayer", "name": "x", "config": {"batch_shape": [null, 2], "name": "x"}, "inbound_nodes": []},
            {"class_name": "Dense", "name": "d", "config": {"name": "d", "units": 1},
             "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}], "kwargs": {}}]}
        ],
        "input_layers": ["x", 0, 0], "output_layers": ["d", 0, 1]}});
    let spec = ModelSpec::from_value(&v).unwrap();
    let e = build::build_model(&spec, 0)
        .err()
        .expect("index 1 of Dense")
        .to_string();
    assert!(
        e.contains("keras_history [d, 0, 1] refers to output 1 of a call that returns 1 tensor(s)"),
        "{e}"
    );
}
