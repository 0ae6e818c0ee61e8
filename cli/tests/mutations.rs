//! The CLI mutation test: every file of the public Keras cases (model.json,
//! case.json, weights/data/expected safetensors, model.keras) is truncated,
//! bit-flipped and mutated semantically (the mutators of `lossgraph-fuzz`:
//! numbers to huge/negative/fractional/NaN strings, wrong types, dropped
//! keys, duplicated layers; safetensors shapes, dtypes, offsets and header
//! lengths), and `lossgraph` runs `check`, `summary`, `dump-ir` and `train`
//! on it with a timeout. Each run is classified:
//! - refusal: exit 1 with an `error:` line (or `check`'s `FAIL` line);
//! - panic: exit 101 or a panic message;
//! - abort: ended by a signal;
//! - hang: still running after the timeout (then killed);
//! - silent acceptance: exit 0 on an input that must be refused, which is a
//!   truncated file that no longer parses (JSON), any truncated binary file,
//!   or a weights file one of whose tensors changed shape or went missing;
//! - accepted: exit 0 on any other mutant (a mutation may be harmless).
//!
//! The smoke run (default suite) mutates one case; `mutation_table` (ignored;
//! `cargo test --release -p lossgraph-cli --test mutations -- --ignored
//! --nocapture`) mutates every case and prints the table and the failures.

use lossgraph_fuzz::mutate;
use lossgraph_fuzz::targets::case_dirs;
use lossgraph_ir::rng::SplitMix64 as Rng;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: [&str; 6] = [
    "model.json",
    "case.json",
    "weights.safetensors",
    "data.safetensors",
    "expected.safetensors",
    "model.keras",
];

/// How one run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Refusal,
    Accepted,
    Panic,
    Abort,
    Hang,
    SilentAcceptance,
}

/// One mutant of one file: its bytes and whether every reader must refuse it.
struct Mutant {
    what: String,
    bytes: Vec<u8>,
    must_refuse: bool,
}

/// The tensor names and shapes of a safetensors file.
fn shapes(b: &[u8]) -> Option<BTreeMap<String, serde_json::Value>> {
    let (h, _) = mutate::split_safetensors(b)?;
    Some(
        h.as_object()?
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(k, v)| (k.clone(), v.get("shape").cloned().unwrap_or_default()))
            .collect(),
    )
}

fn mutants(file: &str, orig: &[u8], n: usize, rng: &mut Rng) -> Vec<Mutant> {
    let json = file.ends_with(".json");
    let mut out = Vec::new();
    for cut in [0, orig.len() / 2, orig.len().saturating_sub(1)] {
        let bytes = orig[..cut].to_vec();
        let must_refuse = !json || serde_json::from_slice::<serde_json::Value>(&bytes).is_err();
        out.push(Mutant {
            what: format!("truncated to {cut} bytes"),
            bytes,
            must_refuse,
        });
    }
    for k in 0..n {
        let (what, bytes) = match k % 3 {
            0 => {
                let mut b = orig.to_vec();
                let i = rng.below(b.len().max(1));
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
                (format!("bit flip at byte {i}"), b)
            }
            _ if json => (
                "JSON mutation".into(),
                mutate::json_text(rng, orig, &[], &[]),
            ),
            _ if file.ends_with(".keras") => {
                ("archive mutation".into(), mutate::archive(rng, orig, &[]))
            }
            _ => (
                "safetensors mutation".into(),
                mutate::safetensors(rng, orig, &[]),
            ),
        };
        let must_refuse = file == "weights.safetensors"
            && match (shapes(orig), shapes(&bytes)) {
                (Some(a), Some(b)) => a
                    .iter()
                    .any(|(k, s)| b.get(k).is_some_and(|t| t != s) || !b.contains_key(k)),
                _ => false,
            };
        out.push(Mutant {
            what,
            bytes,
            must_refuse,
        });
    }
    out
}

/// The command lines that read `file` of the case copied to `dir`.
fn commands(file: &str, dir: &Path) -> Vec<Vec<String>> {
    let d = |f: &str| dir.join(f).display().to_string();
    let loss = std::fs::read(dir.join("case.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["compile"]["loss"].as_str().map(str::to_string))
        .unwrap_or_else(|| "mse".into());
    let train = |model: &str| {
        let mut v = vec![
            "train".into(),
            d(model),
            "--data".into(),
            d("data.safetensors"),
        ];
        if model == "model.json" {
            v.extend(["--weights".into(), d("weights.safetensors")]);
        }
        v.extend([
            "--loss".into(),
            loss.clone(),
            "--optimizer".into(),
            "sgd".into(),
            "--batch-size".into(),
            "8".into(),
        ]);
        v
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match file {
        "model.json" | "model.keras" => {
            let mut c = vec![
                s(&["summary", &d(file)]),
                s(&["dump-ir", &d(file), "--stage", "optimized"]),
                train(file),
            ];
            c.push(if file == "model.keras" {
                s(&["check", "--keras", &d("")])
            } else {
                s(&["check", &d("")])
            });
            c
        }
        "weights.safetensors" | "data.safetensors" => {
            vec![s(&["check", &d("")]), train("model.json")]
        }
        _ => vec![s(&["check", &d("")])],
    }
}

/// Runs `lossgraph args` with a timeout; returns the class (before the
/// must-refuse rule) and the last stderr/stdout line.
fn run(args: &[String], timeout: Duration) -> (Class, i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lossgraph"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .spawn()
        .expect("lossgraph runs");
    let (mut o, mut e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = o.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = e.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (out, err) = (to.join().unwrap_or_default(), te.join().unwrap_or_default());
    let msg = err
        .lines()
        .chain(out.lines().filter(|l| l.starts_with("FAIL")))
        .find(|l| l.contains("error") || l.starts_with("FAIL") || l.contains("panicked"))
        .unwrap_or_else(|| err.lines().last().unwrap_or(""))
        .chars()
        .take(300)
        .collect();
    use std::os::unix::process::ExitStatusExt;
    let Some(st) = status else {
        return (Class::Hang, -1, msg);
    };
    let code = st.code().unwrap_or(-1);
    let class = if st.signal().is_some() {
        Class::Abort
    } else if code == 101 || err.contains("panicked") || err.contains("internal error") {
        Class::Panic
    } else if code == 0 {
        Class::Accepted
    } else if err.contains("error:") || out.lines().any(|l| l.starts_with("FAIL")) {
        Class::Refusal
    } else {
        Class::Panic
    };
    (class, code, msg)
}

/// Mutates `per_file` times every file of `cases`; returns the counts per
/// class and the failing runs.
fn campaign(
    cases: &[PathBuf],
    per_file: usize,
    seed: u64,
) -> (BTreeMap<Class, usize>, Vec<String>) {
    let mut rng = Rng::new(seed);
    let mut counts = BTreeMap::new();
    let mut failures = Vec::new();
    let work = std::env::temp_dir().join(format!("lossgraph-mutations-{}", std::process::id()));
    for case in cases {
        for file in FILES {
            let Ok(orig) = std::fs::read(case.join(file)) else {
                continue;
            };
            for m in mutants(file, &orig, per_file, &mut rng) {
                let _ = std::fs::remove_dir_all(&work);
                std::fs::create_dir_all(&work).unwrap();
                for f in FILES {
                    if let Ok(b) = std::fs::read(case.join(f)) {
                        std::fs::write(work.join(f), b).unwrap();
                    }
                }
                std::fs::write(work.join(file), &m.bytes).unwrap();
                for args in commands(file, &work) {
                    let (mut class, code, msg) = run(&args, Duration::from_secs(30));
                    if class == Class::Accepted && m.must_refuse {
                        class = Class::SilentAcceptance;
                    }
                    *counts.entry(class).or_insert(0) += 1;
                    if class > Class::Accepted {
                        let name = case.file_name().unwrap().to_string_lossy();
                        failures.push(format!(
                            "{class:?}: {name}/{file} {}: `lossgraph {}` exit {code}: {msg}",
                            m.what, args[0]
                        ));
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    (counts, failures)
}

fn table(counts: &BTreeMap<Class, usize>) -> String {
    let runs: usize = counts.values().sum();
    let g = |c| counts.get(&c).copied().unwrap_or(0);
    format!(
        "runs {runs}, clean refusals {}, accepted {}, panics {}, aborts {}, hangs {}, silent acceptances {}",
        g(Class::Refusal),
        g(Class::Accepted),
        g(Class::Panic),
        g(Class::Abort),
        g(Class::Hang),
        g(Class::SilentAcceptance)
    )
}

/// Smoke: one small case, 3 truncations and 2 mutations per file. Reports
/// the table; fails only if a run could not be classified as anything (the
/// classes found are reported by `mutation_table`, the fixes belong to the
/// issue's other parts).
#[test]
fn smoke_one_case() {
    let cases: Vec<PathBuf> = case_dirs()
        .into_iter()
        .filter(|c| c.ends_with("p01_relu_l2_l1_huber_sgd"))
        .collect();
    if cases.is_empty() {
        eprintln!("shared/keras-cases not found; skipped");
        return;
    }
    // The unmutated case passes every command, so refusals are the mutations'.
    for file in FILES {
        for args in commands(file, &cases[0]) {
            let (class, code, msg) = run(&args, Duration::from_secs(60));
            assert_eq!(class, Class::Accepted, "{args:?}: exit {code}: {msg}");
        }
    }
    let (counts, failures) = campaign(&cases, 2, 1);
    eprintln!("{}\n{}", table(&counts), failures.join("\n"));
    assert!(counts.values().sum::<usize>() >= 40, "{}", table(&counts));
    assert_eq!(counts.get(&Class::Hang), None, "{}", failures.join("\n"));
}

/// The long run: every case, 3 truncations and `MUTATIONS_PER_FILE`
/// (default 30) mutations per file.
#[test]
#[ignore = "long: every case, ~30 mutants per file"]
fn mutation_table() {
    let n = std::env::var("MUTATIONS_PER_FILE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let (counts, failures) = campaign(&case_dirs(), n, 7);
    println!("{}", table(&counts));
    for f in &failures {
        println!("{f}");
    }
}
