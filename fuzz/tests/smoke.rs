//! A short run of every fuzz target with a fixed seed (2,000 inputs each;
//! 12 random graphs for the JIT, each compiled four ways), and a replay of
//! the saved crashers under `fuzz/crashers/<target>/`.
//!
//! A smoke run fails on any finding except those of [`KNOWN`]: classes the
//! fuzzer found whose fix belongs to the size checks made before anything
//! is allocated (issue 15, "Sizes are checked before anything is
//! allocated"); an entry must leave the list when that fix lands.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Substrings of the finding keys still expected (see the module docs).
const KNOWN: [&str; 3] = [
    // A Dense/Conv size of 1e9 reaches an allocation unchecked.
    "memory allocation of",
    // Shape products of a kernel 2^62 wide wrap (`initializers.rs` sample).
    "src/initializers.rs",
    // A kernel size of 2^64-1 overflows the transpose-conv geometry.
    "ir/src/conv.rs",
];

fn out_dir(target: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "lossgraph-fuzz-smoke-{target}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `target` for `iters` inputs and returns the unexpected findings.
fn smoke(target: &str, iters: u32) -> Vec<String> {
    let dir = out_dir(target);
    let out = Command::new(env!("CARGO_BIN_EXE_lossgraph-fuzz"))
        .args([
            "run",
            target,
            "--iters",
            &iters.to_string(),
            "--seed",
            "1",
            "--seconds",
            "120",
        ])
        .arg("--out")
        .arg(&dir)
        .output()
        .expect("lossgraph-fuzz runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let _ = std::fs::remove_dir_all(&dir);
    let summary = text.lines().next().unwrap_or_default();
    assert!(
        summary.contains(&format!("{iters} executions")),
        "{target}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter(|l| l.starts_with("  ") && l.contains('×'))
        .filter(|l| !KNOWN.iter().any(|k| l.contains(k)))
        .map(str::to_string)
        .collect()
}

#[test]
fn ir_parser() {
    assert_eq!(smoke("ir", 2000), Vec::<String>::new());
}

#[test]
fn keras_json_importer() {
    assert_eq!(smoke("keras_json", 2000), Vec::<String>::new());
}

#[test]
fn keras_archive_loader() {
    assert_eq!(smoke("keras_archive", 2000), Vec::<String>::new());
}

#[test]
fn safetensors_loaders() {
    assert_eq!(smoke("safetensors", 2000), Vec::<String>::new());
}

#[test]
fn jit_against_interpreter() {
    assert_eq!(smoke("jit", 12), Vec::<String>::new());
}

fn crashers(target: &str) -> Vec<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crashers")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Every saved crasher runs without a panic or an abort (in a child
/// process, under the fuzzer's memory limit, so an abort fails the test
/// instead of ending it). Ignored until the size checks land: every crasher
/// saved so far is of a [`KNOWN`] class.
#[test]
#[ignore = "the saved crashers are of the KNOWN classes (size checks before allocation, issue 15)"]
fn saved_crashers_do_not_crash() {
    let mut bad = Vec::new();
    for target in ["ir", "keras_json", "keras_archive", "safetensors", "jit"] {
        let files = crashers(target);
        if files.is_empty() {
            continue;
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", 2 << 20))
            .arg(env!("CARGO_BIN_EXE_lossgraph-fuzz"))
            .args(["replay", target])
            .args(&files)
            .output()
            .expect("lossgraph-fuzz runs");
        if !out.status.success() {
            bad.push(format!(
                "{target}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
