//! The `lossgraph` binary with Keras files: every subcommand that takes
//! MODEL.json also takes MODEL.keras, `train --save` writes the Keras forms,
//! `convert` moves a model between `.keras`, JSON + safetensors and
//! `.weights.h5` without changing a bit of any weight, and bad Keras files
//! give one-line errors.

use lossgraph::ir::Data;
use lossgraph::keras::archive::load_keras;
use lossgraph::keras::model_file;
use lossgraph::{read_safetensors, HostTensor};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/keras-cases");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/keras");

fn case(name: &str) -> PathBuf {
    let p = PathBuf::from(CASES).join(name);
    assert!(p.is_dir(), "{} is missing", p.display());
    p
}

fn run(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossgraph"))
        .args(args)
        .output()
        .expect("the lossgraph binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    out
}

/// Exit 1, one `error: …` line holding every needle, no panic.
fn user_error(o: &Output, needles: &[&str]) {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "'{n}' missing from: {err}");
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "lossgraph-cli-keras-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn bits(ws: &[(String, HostTensor)]) -> Vec<(String, Vec<u32>)> {
    let mut v: Vec<(String, Vec<u32>)> = ws
        .iter()
        .map(|(n, t)| {
            let b = match &t.data {
                Data::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
                Data::I32(v) => v.iter().map(|&x| x as u32).collect(),
            };
            (n.clone(), b)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn summary_and_dump_ir_take_a_keras_file() {
    let m = case("p06_functional_two_in_two_out_nesterov").join("model.keras");
    let json = case("p06_functional_two_in_two_out_nesterov").join("model.json");
    let from_keras = ok(&run(&[&p("summary"), &m]));
    assert_eq!(from_keras, ok(&run(&[&p("summary"), &json])));
    assert!(from_keras.contains("Total params: 160"), "{from_keras}");
    let ir = ok(&run(&[&p("dump-ir"), &m, &p("--stage"), &p("forward")]));
    assert_eq!(
        ir,
        ok(&run(&[&p("dump-ir"), &json, &p("--stage"), &p("forward")]))
    );
}

#[test]
fn check_takes_models_from_model_keras() {
    let o = run(&[&p("check"), &p("--keras"), &p(CASES)]);
    let out = ok(&o);
    assert!(out.contains("7 passed, 0 failed"), "{out}");
}

#[test]
fn train_a_keras_file_and_save_it_as_keras() {
    let c = case("p01_relu_l2_l1_huber_sgd");
    let d = temp_dir("train");
    for out in ["trained.keras", "trained.weights.h5", "trained.safetensors"] {
        let o = run(&[
            &p("train"),
            &c.join("model.keras"),
            &p("--data"),
            &c.join("data.safetensors"),
            &p("--loss"),
            &p("huber"),
            &p("--optimizer"),
            &p("sgd:0.1"),
            &p("--batch-size"),
            &p("8"),
            &p("--save"),
            &d.join(out),
        ]);
        assert!(ok(&o).contains("final loss:"));
    }
    let trained = load_keras(&d.join("trained.keras"), 0).expect("trained.keras");
    let initial = read_safetensors(c.join("weights.safetensors")).expect("weights");
    let got = bits(&trained.model.get_weights());
    assert_ne!(got, bits(&initial), "training moved the weights");
    // The three outputs hold the same trained weights.
    let st = read_safetensors(d.join("trained.safetensors")).expect("safetensors");
    assert_eq!(got, bits(&st));
    let mut km = model_file::load(&c.join("model.json"), None, 5).expect("json");
    km.load_weights_h5(&d.join("trained.weights.h5"))
        .expect("weights.h5");
    assert_eq!(got, bits(&km.model.get_weights()));
    // A .json cannot hold trained weights.
    let o = run(&[
        &p("train"),
        &c.join("model.keras"),
        &p("--data"),
        &c.join("data.safetensors"),
        &p("--loss"),
        &p("huber"),
        &p("--optimizer"),
        &p("sgd"),
        &p("--save"),
        &d.join("x.json"),
    ]);
    user_error(&o, &["x.json", "no weights"]);
}

#[test]
fn convert_moves_between_every_form_bit_exactly() {
    let c = case("p06_functional_two_in_two_out_nesterov");
    let d = temp_dir("convert");
    let want = bits(&read_safetensors(c.join("weights.safetensors")).expect("weights"));
    // JSON + safetensors → .keras → JSON + .weights.h5 → safetensors → .keras.
    ok(&run(&[
        &p("convert"),
        &c.join("model.json"),
        &d.join("a.keras"),
        &p("--weights"),
        &c.join("weights.safetensors"),
    ]));
    ok(&run(&[
        &p("convert"),
        &d.join("a.keras"),
        &d.join("b.json"),
        &p("--out-weights"),
        &d.join("b.weights.h5"),
    ]));
    ok(&run(&[
        &p("convert"),
        &d.join("b.json"),
        &d.join("c.safetensors"),
        &p("--weights"),
        &d.join("b.weights.h5"),
    ]));
    assert_eq!(
        bits(&read_safetensors(d.join("c.safetensors")).expect("c")),
        want
    );
    ok(&run(&[
        &p("convert"),
        &d.join("a.keras"),
        &d.join("d.weights.h5"),
    ]));
    ok(&run(&[
        &p("convert"),
        &d.join("b.json"),
        &d.join("e.keras"),
        &p("--weights"),
        &d.join("d.weights.h5"),
    ]));
    let e = load_keras(&d.join("e.keras"), 0).expect("e.keras");
    assert_eq!(bits(&e.model.get_weights()), want);
    // The architecture survives: b.json is a.keras's config.json.
    let a = load_keras(&d.join("a.keras"), 0).expect("a.keras");
    let b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("b.json")).expect("b.json"))
            .expect("json");
    assert_eq!(a.config, b);
    // Keras-written files convert too (nested models included).
    ok(&run(&[
        &p("convert"),
        &Path::new(DATA).join("nested_shared.keras"),
        &d.join("n.json"),
        &p("--out-weights"),
        &d.join("n.safetensors"),
    ]));
    let n = load_keras(&Path::new(DATA).join("nested_shared.keras"), 0).expect("nested");
    assert_eq!(
        bits(&read_safetensors(d.join("n.safetensors")).expect("n")),
        bits(&n.model.get_weights())
    );
}

#[test]
fn bad_keras_files_give_one_line_errors() {
    let d = temp_dir("bad");
    let c = case("p01_relu_l2_l1_huber_sgd");
    // Not a zip.
    let fake = d.join("fake.keras");
    std::fs::write(&fake, b"not a zip").expect("write");
    user_error(&run(&[&p("summary"), &fake]), &["fake.keras", "zip"]);
    // A truncated archive.
    let bytes = std::fs::read(c.join("model.keras")).expect("model.keras");
    let cut = d.join("cut.keras");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    user_error(&run(&[&p("summary"), &cut]), &["cut.keras"]);
    // Weights of another model.
    let o = run(&[
        &p("convert"),
        &c.join("model.json"),
        &d.join("x.keras"),
        &p("--weights"),
        &Path::new(DATA).join("conv.weights.h5"),
    ]);
    user_error(&o, &["conv.weights.h5", "layers/"]);
    assert!(!d.join("x.keras").exists(), "nothing written on error");
    // JSON without weights, unknown endings, weights as the model.
    user_error(
        &run(&[&p("convert"), &c.join("model.json"), &d.join("y.keras")]),
        &["--weights"],
    );
    user_error(
        &run(&[&p("convert"), &c.join("model.keras"), &d.join("y.onnx")]),
        &["y.onnx", "unknown file type"],
    );
    user_error(
        &run(&[&p("summary"), &c.join("weights.safetensors")]),
        &["weights file"],
    );
}
