//! Keras files in and out: `.keras` archives and `.weights.h5` files.
//!
//! Reading is checked against Keras's own values: the reference cases'
//! `model.keras` (the same models as their `model.json` +
//! `weights.safetensors`, saved by Keras) must give exactly the safetensors
//! weights and pass every check of the case; the committed files of
//! `tests/data/keras/` (written by `tools/keras_testdata.py`) must give the
//! variables and predictions Keras recorded beside them. Bad archives must
//! fail with errors naming the member, the dataset and the layer. Writing is
//! checked by reading back here, and by Keras itself in
//! `keras_loads_what_lossgraph_writes` (needs `LOSSGRAPH_KERAS_PYTHON`, a
//! Python with Keras 3 and JAX; skipped with a note otherwise).

use lossgraph::ir::Data;
use lossgraph::keras::archive::{
    keras_bytes, load_keras, load_weights_h5, save_keras, save_weights_h5, KerasArchive,
};
use lossgraph::keras::case::{run_case, Case, ModelFiles};
use lossgraph::{read_safetensors, HostTensor, Model};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn shared(folder: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")).join(folder)
}

/// Every reference case folder (both shared folders), in name order.
fn case_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for folder in ["keras-cases", "keras-cases-layers"] {
        let root = shared(folder);
        let mut sub: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .map(|e| e.expect("entry").path())
            .filter(|p| p.join("case.json").is_file())
            .collect();
        sub.sort();
        dirs.extend(sub);
    }
    assert!(dirs.len() >= 13, "found only {} cases", dirs.len());
    dirs
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keras")).join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lossgraph-kf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn bits(t: &HostTensor) -> Vec<u32> {
    match &t.data {
        Data::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
        Data::I32(v) => v.iter().map(|&x| x as u32).collect(),
    }
}

/// Asserts two weight lists hold the same names with bit-identical values.
fn same_weights(got: &[(String, HostTensor)], want: &[(String, HostTensor)], what: &str) {
    let mut g: Vec<_> = got
        .iter()
        .map(|(n, t)| (n.clone(), t.ty.clone(), bits(t)))
        .collect();
    let mut w: Vec<_> = want
        .iter()
        .map(|(n, t)| (n.clone(), t.ty.clone(), bits(t)))
        .collect();
    g.sort_by(|a, b| a.0.cmp(&b.0));
    w.sort_by(|a, b| a.0.cmp(&b.0));
    let gn: Vec<_> = g.iter().map(|x| &x.0).collect();
    let wn: Vec<_> = w.iter().map(|x| &x.0).collect();
    assert_eq!(gn, wn, "{what}: variable names");
    for (a, b) in g.iter().zip(&w) {
        assert_eq!(a.1, b.1, "{what}: type of {}", a.0);
        assert!(a.2 == b.2, "{what}: values of {} differ", a.0);
    }
}

#[test]
fn every_case_model_keras_holds_the_safetensors_weights() {
    for dir in case_dirs() {
        let k = load_keras(&dir.join("model.keras"), 0)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let want = read_safetensors(dir.join("weights.safetensors")).expect("weights");
        same_weights(&k.model.get_weights(), &want, &dir.display().to_string());
        assert_eq!(
            k.keras_version.as_deref(),
            Some("3.15.1"),
            "{}",
            dir.display()
        );
        // model.keras was saved before compile(): no optimizer variables.
        assert!(k.optimizer.is_none(), "{}", dir.display());
    }
}

#[test]
fn every_case_passes_check_from_model_keras() {
    for dir in case_dirs() {
        let case = Case::load_from(&dir, ModelFiles::Keras)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let report = run_case(&case).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let fails: Vec<String> = report
            .failures()
            .iter()
            .map(|c| format!("{}: {}", c.what, c.detail))
            .collect();
        assert!(report.passed(), "{}: {fails:?}", dir.display());
    }
}

/// A tensor of an `expected.json` (`{"dtype", "shape", "data"}`).
fn json_tensor(v: &Value) -> HostTensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let data = v["data"].as_array().expect("data");
    if v["dtype"].as_str().expect("dtype").starts_with("int") {
        HostTensor::i32(
            &shape,
            data.iter()
                .map(|x| x.as_i64().expect("int") as i32)
                .collect(),
        )
        .expect("int tensor")
    } else {
        HostTensor::f32(
            &shape,
            data.iter()
                .map(|x| x.as_f64().expect("float") as f32)
                .collect(),
        )
        .expect("float tensor")
    }
}

fn expected(name: &str) -> Value {
    let p = data(&format!("{name}.expected.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).expect("expected.json")).expect("json")
}

fn expected_weights(e: &Value) -> Vec<(String, HostTensor)> {
    e["weights"]
        .as_object()
        .expect("weights")
        .iter()
        .map(|(k, v)| (k.clone(), json_tensor(v)))
        .collect()
}

/// Inputs in the model's input order.
fn expected_inputs(e: &Value, m: &Model) -> Vec<HostTensor> {
    let inputs = e["inputs"].as_object().expect("inputs");
    if inputs.len() == 1 {
        // One input: keyed by the generator, whatever Keras named the layer.
        return inputs.values().map(json_tensor).collect();
    }
    m.input_names()
        .iter()
        .map(|n| json_tensor(&inputs[n.as_str()]))
        .collect()
}

/// Predictions agree with Keras's to float32 rounding: |Δ| ≤ 1e-5 + 1e-5·|want|.
fn assert_predicts(m: &mut Model, e: &Value, what: &str) {
    let x = expected_inputs(e, m);
    let got = m
        .predict(&x, 64)
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    for (o, g) in m.output_names().iter().zip(&got) {
        let want = json_tensor(&e["outputs"][o.as_str()]);
        assert_eq!(g.shape(), want.shape(), "{what}: output {o}");
        let (g, w) = (g.to_f64(), want.to_f64());
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-5 * b.abs(),
                "{what}: output {o}[{i}]: lossgraph {a}, Keras {b}"
            );
        }
    }
}

const COMMITTED: [&str; 6] = [
    "mlp",
    "two_inputs_bn",
    "conv",
    "embedding",
    "nested",
    "nested_shared",
];

#[test]
fn committed_keras_files_give_keras_weights_and_predictions() {
    for name in COMMITTED {
        let e = expected(name);
        let mut k = load_keras(&data(&format!("{name}.keras")), 0)
            .unwrap_or_else(|err| panic!("{name}.keras: {err}"));
        same_weights(&k.model.get_weights(), &expected_weights(&e), name);
        assert_predicts(&mut k.model, &e, name);
        let n_opt = e["optimizer_variables"].as_u64().expect("count") as usize;
        assert_eq!(
            k.optimizer.as_ref().map(|o| o.values.len()).unwrap_or(0),
            n_opt,
            "{name}: optimizer variables"
        );
        // The same variables from the `.weights.h5` Keras wrote beside it,
        // loaded into a model built from the archive's config.
        let mut fresh = lossgraph::keras::build::build_model(&k.spec, 1).expect("build");
        let opt = load_weights_h5(
            &mut fresh,
            Some(&k.names),
            &data(&format!("{name}.weights.h5")),
        )
        .unwrap_or_else(|err| panic!("{name}.weights.h5: {err}"));
        same_weights(&fresh.get_weights(), &expected_weights(&e), name);
        assert_eq!(opt.map(|o| o.values.len()).unwrap_or(0), n_opt);
    }
}

#[test]
fn a_trained_keras_optimizer_state_is_read_in_keras_order() {
    // mlp was trained with Adam for 2 steps: iterations = 2, the learning
    // rate, then (momentum, velocity) per trainable variable in order.
    let k = load_keras(&data("mlp.keras"), 0).expect("mlp");
    let o = k.optimizer.expect("optimizer variables");
    assert_eq!(o.name.as_deref(), Some("adam"));
    assert_eq!(o.values[0].1.data, Data::I32(vec![2]));
    assert_eq!(o.values[1].1.as_f32().expect("lr"), &[0.01f32]);
    let shapes: Vec<Vec<usize>> = o.values[2..]
        .iter()
        .map(|(_, t)| t.shape().to_vec())
        .collect();
    assert_eq!(
        shapes,
        vec![
            vec![4, 5],
            vec![4, 5],
            vec![5],
            vec![5],
            vec![5, 3],
            vec![5, 3],
            vec![3],
            vec![3]
        ]
    );
}

// ---- bad archives ----------------------------------------------------------

/// The members of a zip, in order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).expect("member");
            let mut b = Vec::new();
            f.read_to_end(&mut b).expect("read");
            (f.name().map(|n| n.into_owned()).expect("member name"), b)
        })
        .collect()
}

fn rezip(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (n, b) in members {
        z.start_file(n.as_str(), zip::write::SimpleFileOptions::default())
            .expect("start");
        z.write_all(b).expect("write");
    }
    z.finish().expect("finish").into_inner()
}

/// The error of loading `members` as a `.keras` archive.
fn load_err(members: &[(String, Vec<u8>)]) -> String {
    let bytes = rezip(members);
    match KerasArchive::from_bytes(&bytes, "bad.keras").and_then(|a| a.load(0)) {
        Ok(_) => panic!("a bad archive loaded"),
        Err(e) => e.to_string(),
    }
}

fn mlp_members() -> Vec<(String, Vec<u8>)> {
    unzip(&std::fs::read(data("mlp.keras")).expect("mlp.keras"))
}

fn edit_config(members: &mut [(String, Vec<u8>)], edit: impl Fn(&mut Value)) {
    let c = members
        .iter_mut()
        .find(|m| m.0 == "config.json")
        .expect("config.json");
    let mut v: Value = serde_json::from_slice(&c.1).expect("json");
    edit(&mut v);
    c.1 = v.to_string().into_bytes();
}

#[test]
fn a_missing_member_is_named() {
    for missing in ["config.json", "metadata.json", "model.weights.h5"] {
        let m: Vec<_> = mlp_members()
            .into_iter()
            .filter(|m| m.0 != missing)
            .collect();
        let e = load_err(&m);
        assert!(
            e.contains("bad.keras") && e.contains(missing) && e.contains("missing"),
            "{missing}: {e}"
        );
    }
    let e = match KerasArchive::from_bytes(b"PK\x03\x04 not really", "x.keras") {
        Ok(_) => panic!("garbage loaded"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("x.keras") && e.contains("zip"), "{e}");
}

#[test]
fn a_truncated_weights_file_is_named() {
    let full = mlp_members();
    let h5 = &full
        .iter()
        .find(|m| m.0 == "model.weights.h5")
        .expect("h5")
        .1;
    for keep in [h5.len() / 10, h5.len() / 2, h5.len() * 9 / 10, h5.len() - 1] {
        let m: Vec<_> = full
            .iter()
            .map(|(n, b)| {
                if n == "model.weights.h5" {
                    (n.clone(), b[..keep].to_vec())
                } else {
                    (n.clone(), b.clone())
                }
            })
            .collect();
        let e = load_err(&m);
        assert!(
            e.contains("bad.keras: model.weights.h5"),
            "truncated to {keep}: {e}"
        );
    }
    // A truncated archive: the zip directory is at the end.
    let bytes = std::fs::read(data("mlp.keras")).expect("mlp");
    let e = KerasArchive::from_bytes(&bytes[..bytes.len() / 2], "cut.keras")
        .expect_err("a truncated archive must fail")
        .to_string();
    assert!(e.contains("cut.keras"), "{e}");
}

#[test]
fn a_weight_of_the_wrong_shape_names_dataset_and_layer() {
    let mut m = mlp_members();
    edit_config(&mut m, |v| {
        v["config"]["layers"][1]["config"]["units"] = Value::from(6);
    });
    let e = load_err(&m);
    assert!(
        e.contains("layers/dense/vars/0")
            && e.contains("'hidden'")
            && e.contains("kernel")
            && e.contains("[4, 5]")
            && e.contains("[4, 6]"),
        "{e}"
    );
}

#[test]
fn an_unsupported_layer_is_named_with_the_member() {
    let mut m = mlp_members();
    edit_config(&mut m, |v| {
        v["config"]["layers"][1]["class_name"] = Value::from("LSTM");
    });
    let e = load_err(&m);
    assert!(
        e.contains("bad.keras: config.json") && e.contains("LSTM") && e.contains("hidden"),
        "{e}"
    );
}

#[test]
fn weights_of_another_model_are_refused() {
    // conv's weights into the mlp: the first group already disagrees.
    let mut mlp = load_keras(&data("mlp.keras"), 0).expect("mlp").model;
    let before = mlp.get_weights();
    let e = load_weights_h5(&mut mlp, None, &data("conv.weights.h5"))
        .expect_err("conv weights must not load into the mlp")
        .to_string();
    assert!(
        e.contains("conv.weights.h5") && e.contains("layers/"),
        "{e}"
    );
    same_weights(
        &mlp.get_weights(),
        &before,
        "unchanged after a refused load",
    );
    // A layer renamed in the config: the group's name attribute disagrees.
    let mut m = mlp_members();
    edit_config(&mut m, |v| {
        v["config"]["layers"][3]["config"]["name"] = Value::from("renamed");
    });
    let e = load_err(&m);
    assert!(e.contains("'probs'") && e.contains("'renamed'"), "{e}");
}

#[test]
fn a_group_linking_to_its_ancestor_is_refused() {
    // mlp.weights.h5 plus a hard link `layers/dense/loop` to `layers`
    // (h5py: `f["layers/dense/loop"] = f["layers"]`): walking every
    // group path used to recurse without end (stack overflow).
    let mut mlp = load_keras(&data("mlp.keras"), 0).expect("mlp").model;
    let before = mlp.get_weights();
    let e = load_weights_h5(&mut mlp, None, &data("mlp_cyclic.weights.h5"))
        .expect_err("a weights file with a looping group must be refused")
        .to_string();
    assert!(
        e.contains("mlp_cyclic.weights.h5: layers/dense/loop") && e.contains("belongs to no layer"),
        "{e}"
    );
    same_weights(
        &mlp.get_weights(),
        &before,
        "unchanged after a refused load",
    );
}

// ---- writing ---------------------------------------------------------------

#[test]
fn written_files_read_back_identically() {
    let dir = scratch("roundtrip");
    for name in COMMITTED {
        let k = load_keras(&data(&format!("{name}.keras")), 0).expect("load");
        let out = dir.join(format!("{name}.keras"));
        k.save(&out).expect("save");
        let back = load_keras(&out, 0).expect("reload");
        same_weights(&back.model.get_weights(), &k.model.get_weights(), name);
        assert_eq!(back.config, k.config, "{name}: config.json kept as read");
        assert_eq!(back.keras_version, k.keras_version);
        let h5 = dir.join(format!("{name}.weights.h5"));
        k.save_weights_h5(&h5).expect("save weights");
        let mut fresh = lossgraph::keras::build::build_model(&k.spec, 3).expect("build");
        load_weights_h5(&mut fresh, Some(&k.names), &h5).expect("load weights");
        same_weights(&fresh.get_weights(), &k.model.get_weights(), name);
    }
}

#[test]
fn a_config_for_another_model_is_refused_on_export() {
    let mlp = load_keras(&data("mlp.keras"), 0).expect("mlp");
    let conv = load_keras(&data("conv.keras"), 0).expect("conv");
    let e = keras_bytes(&mlp.model, &conv.config, None, None)
        .expect_err("mismatched config")
        .to_string();
    assert!(e.contains("another model"), "{e}");
}

// ---- Keras reads what lossgraph writes --------------------------------------

/// The Python with Keras 3 + JAX named by `LOSSGRAPH_KERAS_PYTHON`, or `None`
/// (with a note) when it is unset.
fn keras_python() -> Option<PathBuf> {
    match std::env::var_os("LOSSGRAPH_KERAS_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!(
                "note: skipping the Keras round trip: set LOSSGRAPH_KERAS_PYTHON to a Python \
                 with Keras 3 and JAX (python3 -m venv V; V/bin/pip install keras jax jaxlib)"
            );
            None
        }
    }
}

fn tensor_json(t: &HostTensor) -> Value {
    let data: Vec<Value> = match &t.data {
        Data::F32(v) => v.iter().map(|&x| Value::from(x as f64)).collect(),
        Data::I32(v) => v.iter().map(|&x| Value::from(x)).collect(),
    };
    serde_json::json!({
        "dtype": match t.data { Data::F32(_) => "float32", Data::I32(_) => "int32" },
        "shape": t.shape(),
        "data": data,
    })
}

/// Writes what Keras must reproduce for `m`: inputs, lossgraph's
/// predictions, every variable.
fn write_expectation(m: &mut Model, x: &[HostTensor], path: &Path) {
    let y = m.predict(x, 64).expect("predict");
    let v = serde_json::json!({
        "inputs": m.input_names().iter().zip(x).map(|(n, t)| (n.clone(), tensor_json(t))).collect::<serde_json::Map<_, _>>(),
        "outputs": m.output_names().iter().zip(&y).map(|(n, t)| (n.clone(), tensor_json(t))).collect::<serde_json::Map<_, _>>(),
        "weights": m.get_weights().iter().map(|(n, t)| (n.clone(), tensor_json(t))).collect::<serde_json::Map<_, _>>(),
    });
    std::fs::write(path, v.to_string()).expect("write expectation");
}

#[test]
fn keras_loads_what_lossgraph_writes() {
    let Some(python) = keras_python() else {
        return;
    };
    let dir = scratch("python");
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tools/keras_roundtrip.py"
    ));
    let mut jobs: Vec<(String, PathBuf, PathBuf, PathBuf)> = Vec::new();
    // Imported from .keras and trained in lossgraph, so that every variable
    // (BatchNormalization's moving statistics included) differs from the file.
    for name in COMMITTED {
        let mut k = load_keras(&data(&format!("{name}.keras")), 0).expect("load");
        let e = expected(name);
        let x = expected_inputs(&e, &k.model);
        // Targets off the model's own predictions, so the step moves every weight.
        let y: Vec<HostTensor> = k
            .model
            .predict(&x, 64)
            .expect("predict")
            .into_iter()
            .map(|t| {
                let v: Vec<f32> = t.as_f32().expect("f32").iter().map(|v| v + 0.5).collect();
                HostTensor::f32(t.shape(), v).expect("target")
            })
            .collect();
        k.model
            .compile(lossgraph::CompileOptions::new(
                lossgraph::Optimizer::sgd(0.05),
                lossgraph::Loss::MeanSquaredError,
            ))
            .expect("compile");
        k.model.train_on_batch(&x, &y).expect("train");
        let before = k.model.get_weights();
        let out = dir.join(format!("{name}.keras"));
        k.save(&out).expect("save .keras");
        let h5 = dir.join(format!("{name}.weights.h5"));
        k.save_weights_h5(&h5).expect("save .weights.h5");
        let exp = dir.join(format!("{name}.json"));
        write_expectation(&mut k.model, &x, &exp);
        assert!(
            before
                .iter()
                .zip(
                    load_keras(&data(&format!("{name}.keras")), 0)
                        .expect("orig")
                        .model
                        .get_weights()
                )
                .any(|(a, b)| bits(&a.1) != bits(&b.1)),
            "{name}: training changed nothing"
        );
        jobs.push((name.to_string(), out, h5, exp));
    }
    // A model.json + weights.safetensors pair (no build or compile config)
    // converted to .keras.
    let case = shared("keras-cases").join("p06_functional_two_in_two_out_nesterov");
    let spec = lossgraph::keras::ModelSpec::from_file(&case.join("model.json")).expect("spec");
    let mut m = lossgraph::keras::build::build_model(&spec, 0).expect("build");
    m.load_weights(case.join("weights.safetensors"))
        .expect("weights");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("model.json")).expect("json"))
            .expect("json");
    let out = dir.join("p06.keras");
    save_keras(&m, &config, None, None, &out).expect("save p06");
    let h5 = dir.join("p06.weights.h5");
    save_weights_h5(&m, None, &h5).expect("save p06 weights");
    let batch = read_safetensors(case.join("data.safetensors")).expect("data");
    let pick = |k: &str| {
        let t = &batch.iter().find(|t| t.0 == k).expect("input").1;
        lossgraph::keras::case::rows(t, 0, 4).expect("rows")
    };
    let x: Vec<HostTensor> = m
        .input_names()
        .iter()
        .map(|n| pick(&format!("x/{n}")))
        .collect();
    let exp = dir.join("p06.json");
    write_expectation(&mut m, &x, &exp);
    jobs.push(("p06".into(), out, h5, exp));

    for (name, keras_file, h5, exp) in jobs {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(&keras_file)
            .arg(&h5)
            .arg(&exp)
            .env("KERAS_BACKEND", "jax")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{name}: Keras round trip failed:\n{text}"
        );
        assert!(text.contains("round trip OK"), "{name}: {text}");
        println!(
            "{name}: {}",
            text.lines()
                .filter(|l| l.contains("round trip"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}
