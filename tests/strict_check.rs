//! `check` is strict (issue 15): every malformed value of a case folder is an
//! error naming the file and the key, and every expected tensor is compared
//! with its shape; a missing, extra or short expected entry is an error or
//! a failed comparison naming the entry, never a silent pass. Each test
//! mutates one thing in a copy of a public case (the unmutated copy passes).

use lossgraph::ir::TensorType;
use lossgraph::keras::case::{compare, run_case, Case, Tolerance};
use lossgraph::{read_safetensors, write_safetensors, HostTensor};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn shared_case(name: &str) -> PathBuf {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/keras-cases"
    ))
    .join(name);
    assert!(p.is_dir(), "{} is missing", p.display());
    p
}

/// A fresh copy of public case `name`.
fn copy_case(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "lossgraph-strict-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for e in std::fs::read_dir(shared_case(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
    }
    d
}

/// Edits the copy's `case.json` with `f`.
fn edit_case_json(dir: &Path, f: impl FnOnce(&mut Value)) {
    let p = dir.join("case.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

/// Edits the tensors of the copy's `file` with `f`.
fn edit_tensors(dir: &Path, file: &str, f: impl FnOnce(&mut Vec<(String, HostTensor)>)) {
    let p = dir.join(file);
    let mut t = read_safetensors(&p).unwrap();
    f(&mut t);
    write_safetensors(&p, &t).unwrap();
}

/// The error of loading `dir` (which must fail to load).
fn load_error(dir: &Path) -> String {
    match Case::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// The error of running `dir` (loads, then fails to run).
fn run_error(dir: &Path) -> String {
    let c = Case::load(dir).unwrap_or_else(|e| panic!("load: {e}"));
    match run_case(&c) {
        Ok(r) => panic!("ran: {:?}", r.comparisons.last()),
        Err(e) => e.to_string(),
    }
}

/// The failed comparisons of running `dir`, as `what: detail`.
fn failures(dir: &Path) -> Vec<String> {
    let c = Case::load(dir).unwrap_or_else(|e| panic!("load: {e}"));
    let r = run_case(&c).unwrap_or_else(|e| panic!("run: {e}"));
    assert!(!r.passed(), "the mutated case passed");
    r.failures()
        .iter()
        .map(|f| format!("{}: {}", f.what, f.detail))
        .collect()
}

fn assert_has(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "'{n}' missing from: {text}");
    }
}

const P01: &str = "p01_relu_l2_l1_huber_sgd";

#[test]
fn the_unmutated_copy_passes() {
    let d = copy_case(P01);
    let r = run_case(&Case::load(&d).unwrap()).unwrap();
    assert!(r.passed(), "{:?}", r.failures());
}

#[test]
fn negative_or_non_numeric_tolerances_are_errors() {
    for (key, value, shown) in [
        ("rtol", json!(-1e-4), "-0.0001"),
        ("atol", json!(-1.0), "-1"),
    ] {
        let d = copy_case(P01);
        edit_case_json(&d, |v| v["expected"]["tolerance"][key] = value.clone());
        let e = load_error(&d);
        let want = format!(
            "case.json: expected.tolerance: '{key}' must be a finite number ≥ 0, got {shown}"
        );
        assert_has(&e, &[&want]);
    }
    // JSON has no non-finite numbers: an overflowing literal does not parse.
    let d = copy_case(P01);
    let p = d.join("case.json");
    let text = std::fs::read_to_string(&p).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let rtol = v["expected"]["tolerance"]["rtol"].to_string();
    let text = text.replacen(&format!("\"rtol\": {rtol}"), "\"rtol\": 1e999", 1);
    assert!(text.contains("1e999"), "{text}");
    std::fs::write(&p, text).unwrap();
    assert_has(
        &load_error(&d),
        &["case.json: malformed JSON: number out of range"],
    );
    // A string ("NaN", "inf": what JSON has instead of non-finite numbers).
    let d = copy_case(P01);
    edit_case_json(&d, |v| v["expected"]["tolerance"]["atol"] = json!("NaN"));
    assert_has(
        &load_error(&d),
        &["case.json: expected.tolerance: 'atol' must be a number"],
    );
}

#[test]
fn compare_fails_with_an_invalid_tolerance() {
    // A negative bound would make every difference "within tolerance".
    let bad = Tolerance {
        rtol: -1.0,
        atol: 0.0,
    };
    let c = compare("v", &[1.0], &[2.0], bad);
    assert!(!c.passed);
    assert_has(&c.detail, &["invalid tolerance rtol -1 atol 0"]);
    let nan = Tolerance {
        rtol: f64::NAN,
        atol: 1e-5,
    };
    assert!(!compare("v", &[1.0], &[1.0], nan).passed);
    // Exact tolerances: equal values pass, a different one fails.
    let exact = Tolerance {
        rtol: 0.0,
        atol: 0.0,
    };
    assert!(compare("v", &[0.0, 1.5], &[0.0, 1.5], exact).passed);
    assert!(!compare("v", &[0.0], &[1e-30], exact).passed);
    // NaN on either side fails.
    let tol = Tolerance {
        rtol: 1e-4,
        atol: 1e-5,
    };
    assert!(!compare("v", &[f64::NAN], &[1.0], tol).passed);
    assert!(!compare("v", &[1.0], &[f64::NAN], tol).passed);
}

#[test]
fn fractional_negative_or_huge_counts_are_errors() {
    for (key, value, shown) in [
        ("batch_size", json!(8.5), "8.5"),
        ("batch_size", json!(8.0), "8.0"),
        ("batch_size", json!(0), "0"),
        ("steps", json!(-3), "-3"),
        ("steps", json!(2.5), "2.5"),
        ("steps", json!(1e20), "1e+20"),
        ("batch_size", json!(4294967296u64), "4294967296"),
        ("steps", json!("3"), "\"3\""),
    ] {
        let d = copy_case(P01);
        edit_case_json(&d, |v| v["train"][key] = value.clone());
        let want = format!(
            "case.json: train: '{key}' must be an integer from 1 to 4294967295, got {shown}"
        );
        assert_has(&load_error(&d), &[&want]);
    }
    let d = copy_case(P01);
    edit_case_json(&d, |v| {
        v["train"]["batch_size"] = json!(65536);
        v["train"]["steps"] = json!(65536);
    });
    assert_has(
        &load_error(&d),
        &["case.json: train: batch_size × steps (65536 × 65536) is more than 4294967295 samples"],
    );
}

#[test]
fn a_batch_size_that_does_not_match_the_data_is_an_error() {
    // 24 rows: batch 6 × 3 steps needs 18, batch 9 needs 27.
    for (b, need) in [(6, 18), (9, 27)] {
        let d = copy_case(P01);
        edit_case_json(&d, |v| v["train"]["batch_size"] = json!(b));
        let want =
            format!("'x' has shape [24, 5]: the case needs batch_size × steps = {need} rows");
        assert_has(&load_error(&d), &["data.safetensors", &want]);
    }
}

#[test]
fn missing_or_extra_data_arrays_are_errors() {
    let d = copy_case(P01);
    edit_tensors(&d, "data.safetensors", |t| {
        let y = t.iter().find(|t| t.0 == "y").unwrap().1.clone();
        t.push(("y/extra".into(), y));
    });
    assert_has(
        &load_error(&d),
        &[
            "data.safetensors",
            "unexpected tensor 'y/extra' (the model's data are [\"x\", \"y\"])",
        ],
    );
    let d = copy_case(P01);
    edit_tensors(&d, "data.safetensors", |t| t.retain(|t| t.0 != "y"));
    assert_has(
        &load_error(&d),
        &["data.safetensors", "no tensor named 'y'"],
    );
}

#[test]
fn compiled_loss_per_output_must_name_every_output_exactly() {
    let d = copy_case(P01);
    edit_case_json(&d, |v| {
        v["expected"]["initial"]
            .as_object_mut()
            .unwrap()
            .remove("compiled_loss_per_output");
    });
    assert_has(
        &load_error(&d),
        &["case.json: expected.initial.compiled_loss_per_output: must be an object keyed by [\"dense_2\"]"],
    );
    let d = copy_case(P01);
    edit_case_json(&d, |v| {
        v["expected"]["initial"]["compiled_loss_per_output"]["ghost"] = json!(1.0)
    });
    assert_has(
        &load_error(&d),
        &["case.json: expected.initial.compiled_loss_per_output: unexpected key 'ghost'"],
    );
    let d = copy_case(P01);
    edit_case_json(&d, |v| {
        v["expected"]["initial"]["compiled_loss_per_output"] = json!({});
    });
    assert_has(
        &load_error(&d),
        &["case.json: expected.initial.compiled_loss_per_output: missing 'dense_2'"],
    );
}

#[test]
fn per_step_output_losses_must_cover_every_step_and_output() {
    const P06: &str = "p06_functional_two_in_two_out_nesterov";
    let d = copy_case(P06);
    edit_case_json(&d, |v| {
        v["expected"]["per_step_output_losses"][1]
            .as_object_mut()
            .unwrap()
            .remove("out_cls_loss");
    });
    assert_has(
        &load_error(&d),
        &["case.json: expected.per_step_output_losses[1]: missing 'out_cls_loss'"],
    );
    let d = copy_case(P06);
    edit_case_json(&d, |v| {
        v["expected"]["per_step_output_losses"][2]["out_cls_loss"] = json!("0.6")
    });
    assert_has(
        &load_error(&d),
        &["case.json: expected.per_step_output_losses[2]: 'out_cls_loss' must be a number, got \"0.6\""],
    );
    let d = copy_case(P06);
    edit_case_json(&d, |v| {
        v["expected"]["per_step_output_losses"][0]["loss"] = json!(1.0)
    });
    assert_has(
        &load_error(&d),
        &["case.json: expected.per_step_output_losses[0]: unexpected key 'loss'"],
    );
    let d = copy_case(P06);
    edit_case_json(&d, |v| {
        v["expected"]["per_step_output_losses"]
            .as_array_mut()
            .unwrap()
            .pop();
    });
    assert_has(
        &load_error(&d),
        &["case.json: expected.per_step_output_losses has 2 entries for 3 steps"],
    );
    let d = copy_case(P06);
    edit_case_json(&d, |v| {
        v["expected"]["per_step_output_losses"] = Value::Null
    });
    assert_has(
        &load_error(&d),
        &["case.json: expected.per_step_output_losses is missing: a model with 2 outputs needs 3 entries of [\"out_reg_loss\", \"out_cls_loss\"]"],
    );
}

#[test]
fn an_activity_loss_needs_its_call_index() {
    let d = copy_case("p02_tanh_l1l2_activity_mae_adam");
    edit_case_json(&d, |v| {
        let regs = v["expected"]["initial"]["regularization_losses"]
            .as_array_mut()
            .unwrap();
        let a = regs.iter_mut().find(|r| r["kind"] == "activity").unwrap();
        a["call_index"] = json!(4294967296u64);
    });
    assert_has(
        &load_error(&d),
        &["case.json: expected.initial.regularization_losses[0]: 'call_index' must be an integer from 0 to 4294967295"],
    );
}

#[test]
fn expected_shapes_are_compared() {
    // The same 40 values as (8, 5) instead of the kernel's (5, 8).
    let d = copy_case(P01);
    edit_tensors(&d, "expected.safetensors", |t| {
        let g = &mut t
            .iter_mut()
            .find(|t| t.0 == "grad/dense_1/kernel")
            .unwrap()
            .1;
        assert_eq!(g.shape(), [5, 8]);
        g.ty = TensorType::f32([8, 5]);
    });
    let f = failures(&d);
    assert_eq!(
        f,
        ["grad/dense_1/kernel: got shape [5, 8], want [8, 5]"],
        "{f:?}"
    );
    // The output (8, 3) as (24,), and a final bias as (3, 1).
    let d = copy_case(P01);
    edit_tensors(&d, "expected.safetensors", |t| {
        for (name, shape) in [("output", vec![24]), ("final/dense_2/bias", vec![3, 1])] {
            t.iter_mut().find(|t| t.0 == name).unwrap().1.ty = TensorType::f32(shape);
        }
    });
    let f = failures(&d);
    assert_eq!(
        f,
        [
            "output: got shape [8, 3], want [24]",
            "inference_output (= output): got shape [8, 3], want [24]",
            "final/dense_2/bias: got shape [3], want [3, 1]",
            "fit final/dense_2/bias: got shape [3], want [3, 1]",
        ],
        "{f:?}"
    );
}

#[test]
fn a_short_expected_tensor_fails() {
    let d = copy_case(P01);
    edit_tensors(&d, "expected.safetensors", |t| {
        let b = &mut t
            .iter_mut()
            .find(|t| t.0 == "final/dense_1/bias")
            .unwrap()
            .1;
        *b = HostTensor::f32(&[3], b.as_f32().unwrap()[..3].to_vec()).unwrap();
    });
    let f = failures(&d);
    assert_eq!(
        f,
        [
            "final/dense_1/bias: got shape [8], want [3]",
            "fit final/dense_1/bias: got shape [8], want [3]"
        ]
    );
}

#[test]
fn missing_expected_entries_are_errors_naming_them() {
    for name in ["grad/dense_2/kernel", "final/dense_1/kernel", "output"] {
        let d = copy_case(P01);
        edit_tensors(&d, "expected.safetensors", |t| t.retain(|t| t.0 != name));
        let e = run_error(&d);
        assert_has(
            &e,
            &["expected.safetensors", &format!("no tensor named '{name}'")],
        );
    }
}

#[test]
fn extra_expected_entries_fail_naming_them() {
    let d = copy_case(P01);
    edit_tensors(&d, "expected.safetensors", |t| {
        let k = t
            .iter()
            .find(|t| t.0 == "grad/dense_1/kernel")
            .unwrap()
            .1
            .clone();
        t.push(("grad/ghost/kernel".into(), k.clone()));
        t.push(("final/dense_1/ghost".into(), k.clone()));
        t.push(("outputs".into(), k));
    });
    let mut f = failures(&d);
    f.sort();
    assert_eq!(f.len(), 3, "{f:?}");
    for (got, name) in f
        .iter()
        .zip(["final/dense_1/ghost", "grad/ghost/kernel", "outputs"])
    {
        assert!(
            got.starts_with(&format!("{name}: "))
                && got.contains(&format!("holds '{name}', which is no value of the model")),
            "{got}"
        );
    }
}
