//! Saves survive a crash: `train --checkpoint` rewrites a weights file
//! after every epoch while the process is killed with SIGKILL at random
//! moments; after every kill the file must still be a complete, valid
//! weights file of the model (the old one or the new one, never a torn
//! one), as the atomic write (temp file in the same directory, fsync,
//! rename) promises.

use lossgraph::{read_safetensors, write_safetensors, HostTensor};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/common/noise.rs"]
mod noise;
use noise::noise;

/// A Keras 3 `Sequential` JSON: Input(256) → Dense(1024) relu → Dense(1024)
/// relu → Dense(8): 1.32 M weights, a 5.3 MB weights file, so that a good
/// share of every epoch is spent writing it.
fn model_json() -> String {
    let dense = |name: &str, units: usize, act: &str| {
        format!(
            r#"{{"module": "keras.layers", "class_name": "Dense", "config": {{"name": "{name}",
            "trainable": true, "units": {units}, "activation": "{act}", "use_bias": true,
            "kernel_initializer": {{"module": "keras.initializers", "class_name": "GlorotUniform",
            "config": {{"seed": null}}, "registered_name": null}},
            "bias_initializer": {{"module": "keras.initializers", "class_name": "Zeros",
            "config": {{}}, "registered_name": null}}, "kernel_regularizer": null,
            "bias_regularizer": null, "kernel_constraint": null, "bias_constraint": null}},
            "registered_name": null}}"#
        )
    };
    format!(
        r#"{{"module": "keras", "class_name": "Sequential", "config": {{"name": "big",
        "trainable": true, "layers": [
        {{"module": "keras.layers", "class_name": "InputLayer", "config": {{"batch_shape":
        [null, 256], "dtype": "float32", "sparse": false, "name": "big_input"}},
        "registered_name": null}}, {}, {}, {}]}}, "registered_name": null}}"#,
        dense("h1", 1024, "relu"),
        dense("h2", 1024, "relu"),
        dense("out", 8, "linear")
    )
}

/// (name, shape) of every weight of [`model_json`], in order.
const WEIGHTS: [(&str, &[usize]); 6] = [
    ("h1/kernel", &[256, 1024]),
    ("h1/bias", &[1024]),
    ("h2/kernel", &[1024, 1024]),
    ("h2/bias", &[1024]),
    ("out/kernel", &[1024, 8]),
    ("out/bias", &[8]),
];

/// `path` holds every weight of the model, with its shape and finite values.
fn check_valid(path: &Path, kill: usize) {
    let tensors = read_safetensors(path)
        .unwrap_or_else(|e| panic!("after kill {kill}: {} is not valid: {e}", path.display()));
    assert_eq!(tensors.len(), WEIGHTS.len(), "after kill {kill}");
    for (name, shape) in WEIGHTS {
        let t = &tensors
            .iter()
            .find(|t| t.0 == name)
            .unwrap_or_else(|| panic!("after kill {kill}: no {name}"))
            .1;
        assert_eq!(t.shape(), shape, "after kill {kill}: {name}");
        assert!(t.as_f32().unwrap().iter().all(|v| v.is_finite()));
    }
}

fn train(dir: &Path, out: &Path, epochs: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lossgraph"));
    c.args(["train", dir.join("model.json").to_str().unwrap()])
        .args(["--data", dir.join("data.safetensors").to_str().unwrap()])
        .args(["--loss", "mse", "--optimizer", "sgd:0.001"])
        .args(["--batch-size", "32", "--epochs", epochs, "--verbose", "0"])
        .args(["--checkpoint", out.to_str().unwrap(), "--save-weights-only"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[test]
fn sigkill_during_repeated_saves_leaves_a_valid_file() {
    let dir: PathBuf = std::env::temp_dir().join(format!("lossgraph-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.json"), model_json()).unwrap();
    let x = HostTensor::f32(&[32, 256], noise(32 * 256, 1)).unwrap();
    let y = HostTensor::f32(&[32, 8], noise(32 * 8, 2)).unwrap();
    write_safetensors(
        dir.join("data.safetensors"),
        &[("x".into(), x), ("y".into(), y)],
    )
    .unwrap();
    let out = dir.join("weights.safetensors");
    // A valid file to save over, and the time a run of 3 epochs takes.
    let t = Instant::now();
    assert!(train(&dir, &out, "3").status().unwrap().success());
    let run3 = t.elapsed();
    check_valid(&out, 0);
    let kills: usize = std::env::var("LOSSGRAPH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    // Kill moments spread over [run3/2, run3/2 + 40 epochs' worth): past
    // start-up and compilation, while epochs (a step and a 5.3 MB save
    // each) follow each other.
    let epoch = run3 / 3;
    let moments = noise(kills, 7);
    let mut killed_running = 0;
    for (k, u) in moments.iter().enumerate() {
        let wait = run3 / 2 + epoch.mul_f64((u + 1.0) as f64 * 20.0);
        let mut child = train(&dir, &out, "100000").spawn().unwrap();
        std::thread::sleep(wait.min(Duration::from_secs(20)));
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        check_valid(&out, k + 1);
    }
    eprintln!(
        "{kills} SIGKILLs ({killed_running} while training and saving), epoch ≈ {epoch:?}: \
         the weights file was valid after every one"
    );
    assert_eq!(killed_running, kills, "every kill hit a running process");
    let _ = std::fs::remove_dir_all(&dir);
}
