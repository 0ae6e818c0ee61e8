//! A short run of every fuzz target with a fixed seed (2,000 inputs each;
//! 12 random graphs for the JIT, each compiled four ways), and a replay of
//! the saved crashers of `fuzz/crashers/<target>/` (found by campaigns and
//! fixed: they must not panic, abort or hang).
//!
//! A smoke run fails on any finding except those of [`KNOWN`]: classes a
//! campaign found whose fix has not landed yet (none at present); an entry
//! must leave the list when its fix lands, and its crashers go to
//! `crashers/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Substrings of the finding keys still expected (see the module docs).
const KNOWN: [&str; 0] = [];

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

/// Every crasher found so far runs without a panic, an abort or a hang:
/// shape products and concat extents that overflowed, Dense/Conv/Reshape
/// sizes that reached an allocation of 20–309 GB, transposed-conv geometry
/// overflows, a 10 s AveragePooling2D of 2³¹, an 8 GiB average-pool count
/// table for a 2³¹-row input, a weights file whose group links to an
/// ancestor (stack overflow).
#[test]
fn fixed_crashers_do_not_crash() {
    let bad = replay("crashers");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
