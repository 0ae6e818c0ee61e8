//! A short run of every fuzz target with a fixed seed (2,000 inputs each;
//! 12 random graphs for the JIT, each compiled four ways), and replays of
//! the saved crashers: `fuzz/crashers/<target>/` (fixed: must not panic,
//! abort or hang) and `fuzz/crashers-known/<target>/` (not fixed yet).
//!
//! A smoke run fails on any finding except those of [`KNOWN`]: classes the
//! fuzzer found whose fix belongs to the size checks of issue 15; an entry
//! must leave the list (and its crashers move to `crashers/`) when the fix
//! lands.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Substrings of the finding keys still expected (see the module docs).
const KNOWN: [&str; 2] = [
    // A Conv2DTranspose kernel size of 2^64-1 or stride of 2^63 overflows
    // the transpose-conv geometry (`keras_transpose_geometry`, `conv_transpose`).
    "ir/src/conv.rs",
    "src/layers/conv_transpose.rs",
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

fn files(folder: &str, target: &str) -> Vec<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(folder)
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Replays every file of `folder/<target>/` in a child process under the
/// fuzzer's memory limit (2 GiB, so an abort fails the test instead of
/// ending it) and a 60 s timeout; returns the failures.
fn replay(folder: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for target in ["ir", "keras_json", "keras_archive", "safetensors", "jit"] {
        let files = files(folder, target);
        if files.is_empty() {
            continue;
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v {} && exec timeout 60 \"$0\" \"$@\"",
                2 << 20
            ))
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
    bad
}

/// The crashers found so far whose fix has landed run without a panic, an
/// abort or a hang (shape products and concat extents that overflowed,
/// Dense/Conv/Reshape sizes that reached an allocation of 20–309 GB).
#[test]
fn fixed_crashers_do_not_crash() {
    let bad = replay("crashers");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The crashers not fixed yet: Conv2DTranspose geometry overflows, and an
/// AveragePooling2D with a pool of 2^31 on a 5×5 input that takes 10 s.
#[test]
#[ignore = "not fixed yet (transpose-conv geometry overflow, slow 2^31 pool)"]
fn known_crashers_do_not_crash() {
    let bad = replay("crashers-known");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
