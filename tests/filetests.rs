//! File-driven tests (in the spirit of Cranelift's filetests and LLVM lit).
//!
//! Every `tests/filetests/**/*.lg` file is IR text (see `lossgraph_ir::text`)
//! plus directives in `;` comment lines:
//!
//! ```text
//! ; run: interpret                  run the reference interpreter
//! ; run: pass dce, cse              run passes; compare the printed graph
//! ; feed x = [1, 2, 3, 4]           a leaf's values, row-major (brackets may nest;
//!                                   the type comes from the graph's input/param)
//! ; expect y = [0.5, 1.5]           an output's values (nan, inf, -inf allowed)
//! ; tolerance 1e-6                  |got - want| <= tol·(1 + |want|); default 1e-6
//! ; expect-error: no feed           evaluation (or parsing) must fail with this text
//! ; expect:                         (pass mode) the printed graph follows, each
//! ;   graph g {                     line prefixed by "; ", up to the first line
//! ;     ...                         that is not a comment
//! ```
//!
//! Pass files are also checked semantically: the input and the output graph
//! are interpreted on the same feeds (the `; feed` values, and seeded random
//! values in `[0.5, 2]` for every other leaf; `i32` leaves get `0..=2`) and
//! every output must agree to a relative `1e-5`.
//!
//! `LG_FILETEST=substring` runs only the files whose path contains it.
//! All files run; the test then fails listing every failing file with a
//! diff-like message.

use lossgraph_ir::{interp, text, DType, Graph, HostTensor, TensorType};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How a file is run.
#[derive(Debug)]
enum Mode {
    Interpret,
    Pass(Vec<String>),
}

/// The directives of one file.
#[derive(Debug)]
struct Spec {
    mode: Mode,
    feeds: Vec<(String, Vec<f64>, usize)>,
    expects: Vec<(String, Vec<f64>, usize)>,
    tolerance: f64,
    expect_error: Option<String>,
    /// The printed graph expected after the passes (pass mode).
    expect_text: Option<Vec<String>>,
}

/// Runs the named passes, in order, on `g`.
///
/// This is the single extension point between the harness and
/// `lossgraph_compiler::passes`: everything else about pass files (parsing,
/// printing, the semantic check) lives in this file.
fn run_passes(g: &mut Graph, names: &[String]) -> Result<(), String> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let pm = lossgraph_compiler::passes::PassManager::from_names(&names)
        .map_err(|e| format!("pass pipeline {names:?}: {e}"))?;
    pm.run(g)
        .map(|_| ())
        .map_err(|e| format!("pass pipeline {names:?}: {e}"))
}

#[test]
fn filetests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no .lg files under {}", root.display());
    let filter = std::env::var("LG_FILETEST").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        if filter.as_deref().is_some_and(|s| !rel.contains(s)) {
            continue;
        }
        ran += 1;
        let src = match std::fs::read_to_string(f) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{rel}: cannot read: {e}"));
                continue;
            }
        };
        if let Err(msg) = run_file(&src) {
            failures.push(format!("FAIL {rel}\n{}", indent(&msg)));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {ran} filetests failed:\n\n{}\n",
            failures.len(),
            failures.join("\n\n")
        );
    }
    eprintln!("{ran} filetests passed");
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "lg") {
            out.push(p);
        }
    }
}

/// Runs one file; `Err` holds the whole failure report.
fn run_file(src: &str) -> Result<(), String> {
    let spec = parse_spec(src)?;
    let g = match text::parse(src) {
        Ok(g) => g,
        Err(e) => return check_error(&spec, &format!("parse error: {e}")),
    };
    match &spec.mode {
        Mode::Interpret => {
            if spec.expects.is_empty() && spec.expect_error.is_none() {
                return Err(
                    "no '; expect' or '; expect-error:' line: the file checks nothing".into(),
                );
            }
            let feeds = match make_feeds(&g, &spec, false) {
                Ok(f) => f,
                Err(e) => return check_error(&spec, &e),
            };
            let out = match interp::interpret(&g, &feeds) {
                Ok(o) => o,
                Err(e) => return check_error(&spec, &e),
            };
            if let Some(want) = &spec.expect_error {
                return Err(format!(
                    "expected an error containing {want:?}, but evaluation succeeded"
                ));
            }
            check_values(&spec, &out)
        }
        Mode::Pass(names) => {
            let Some(want_text) = &spec.expect_text else {
                return Err("pass file without an '; expect:' block".into());
            };
            let mut after = g.clone();
            run_passes(&mut after, names)?;
            lossgraph_ir::verify(&after)
                .map_err(|e| format!("graph after passes {names:?} fails verification: {e}"))?;
            let got = text::print(&after);
            let got_lines: Vec<&str> = got.lines().map(str::trim_end).collect();
            let want_lines: Vec<&str> = want_text.iter().map(|l| l.trim_end()).collect();
            if got_lines != want_lines {
                return Err(format!(
                    "printed graph after passes {names:?} differs (- expected, + got):\n{}",
                    line_diff(&want_lines, &got_lines)
                ));
            }
            // Semantics: same outputs on the same feeds.
            let feeds = make_feeds(&g, &spec, true)?;
            let before = interp::interpret(&g, &feeds)
                .map_err(|e| format!("interpreting the input graph: {e}"))?;
            let now = interp::interpret(&after, &feeds)
                .map_err(|e| format!("interpreting the graph after passes: {e}"))?;
            compare_graph_outputs(&before, &now)?;
            check_values(&spec, &now)
        }
    }
}

/// An expected failure matched `msg`, or the failure is real.
fn check_error(spec: &Spec, msg: &str) -> Result<(), String> {
    match &spec.expect_error {
        Some(want) if msg.contains(want.as_str()) => Ok(()),
        Some(want) => Err(format!(
            "expected an error containing {want:?}\n  got error: {msg}"
        )),
        None => Err(msg.to_string()),
    }
}

/// Reads the directives. Errors name the line.
fn parse_spec(src: &str) -> Result<Spec, String> {
    let mut mode = None;
    let mut feeds = Vec::new();
    let mut expects = Vec::new();
    let mut tolerance = 1e-6;
    let mut expect_error = None;
    let mut expect_text: Option<Vec<String>> = None;
    let lines: Vec<&str> = src.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let t = lines[i].trim();
        i += 1;
        let Some(c) = t.strip_prefix(';') else {
            continue;
        };
        let c = c.trim();
        let err = |m: String| format!("line {lineno}: {m}");
        if let Some(r) = c.strip_prefix("run:") {
            if mode.is_some() {
                return Err(err("a second '; run:' line".into()));
            }
            let r = r.trim();
            mode = Some(if r == "interpret" {
                Mode::Interpret
            } else if let Some(p) = r.strip_prefix("pass") {
                let names: Vec<String> = p
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if names.is_empty() {
                    return Err(err("'; run: pass' needs at least one pass name".into()));
                }
                Mode::Pass(names)
            } else {
                return Err(err(format!(
                    "unknown run mode {r:?} (want 'interpret' or 'pass NAME, …')"
                )));
            });
        } else if let Some(r) = c.strip_prefix("feed ") {
            let (name, vals) = name_values(r).map_err(err)?;
            feeds.push((name, vals, lineno));
        } else if let Some(r) = c.strip_prefix("expect-error:") {
            expect_error = Some(r.trim().to_string());
        } else if c == "expect:" {
            let mut block = Vec::new();
            while i < lines.len() {
                let l = lines[i].trim_start();
                let Some(rest) = l.strip_prefix(';') else {
                    break;
                };
                block.push(rest.strip_prefix(' ').unwrap_or(rest).to_string());
                i += 1;
            }
            if block.is_empty() {
                return Err(err("empty '; expect:' block".into()));
            }
            expect_text = Some(block);
        } else if let Some(r) = c.strip_prefix("expect ") {
            let (name, vals) = name_values(r).map_err(err)?;
            expects.push((name, vals, lineno));
        } else if let Some(r) = c.strip_prefix("tolerance ") {
            tolerance = r
                .trim()
                .parse::<f64>()
                .map_err(|e| err(format!("bad tolerance {r:?}: {e}")))?;
        }
    }
    let mode = mode.ok_or("no '; run:' line")?;
    Ok(Spec {
        mode,
        feeds,
        expects,
        tolerance,
        expect_error,
        expect_text,
    })
}

/// `name = [values]` → (name, flattened values).
fn name_values(r: &str) -> Result<(String, Vec<f64>), String> {
    let (name, vals) = r
        .split_once('=')
        .ok_or_else(|| format!("expected 'NAME = VALUES', got {r:?}"))?;
    let name = name.trim().trim_matches('"').to_string();
    let mut out = Vec::new();
    for tok in vals
        .split(|c: char| c == '[' || c == ']' || c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        let v = match tok.to_ascii_lowercase().as_str() {
            "nan" | "-nan" | "+nan" => f64::NAN,
            "inf" | "+inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => tok
                .parse::<f64>()
                .map_err(|e| format!("bad value {tok:?} for '{name}': {e}"))?,
        };
        out.push(v);
    }
    Ok((name, out))
}

/// Feeds from the `; feed` lines; with `fill`, seeded random values for
/// every other leaf (f32 in `[0.5, 2]`, i32 in `0..=2`).
fn make_feeds(g: &Graph, spec: &Spec, fill: bool) -> Result<HashMap<String, HostTensor>, String> {
    let mut feeds = HashMap::new();
    for (name, vals, line) in &spec.feeds {
        let id = g
            .input(name)
            .or_else(|| g.param(name))
            .ok_or_else(|| format!("line {line}: no input or param named '{name}'"))?;
        let ty = &g.node(id).ty;
        feeds.insert(
            name.clone(),
            tensor(ty, vals).map_err(|m| format!("line {line}: feed '{name}': {m}"))?,
        );
    }
    if fill {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            // xorshift64*: a fixed, dependency-free pseudo-random stream.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        for (name, id) in g.inputs().into_iter().chain(g.params()) {
            if feeds.contains_key(&name) {
                continue;
            }
            let ty = g.node(id).ty.clone();
            let vals: Vec<f64> = (0..ty.numel())
                .map(|_| match ty.dtype {
                    DType::F32 => 0.5 + 1.5 * next(),
                    DType::I32 => (next() * 3.0).floor().min(2.0),
                })
                .collect();
            feeds.insert(name, tensor(&ty, &vals)?);
        }
    }
    Ok(feeds)
}

fn tensor(ty: &TensorType, vals: &[f64]) -> Result<HostTensor, String> {
    if vals.len() != ty.numel() {
        return Err(format!(
            "{} values given, but {ty} has {}",
            vals.len(),
            ty.numel()
        ));
    }
    let t = match ty.dtype {
        DType::F32 => HostTensor::f32(&ty.shape, vals.iter().map(|&v| v as f32).collect()),
        DType::I32 => {
            if let Some(v) = vals.iter().find(|v| v.fract() != 0.0 || !v.is_finite()) {
                return Err(format!("{v} is not an integer, but the leaf is {ty}"));
            }
            HostTensor::i32(&ty.shape, vals.iter().map(|&v| v as i32).collect())
        }
    };
    t.ok_or_else(|| format!("cannot build a {ty}"))
}

/// Checks every `; expect NAME = …` line against the outputs.
fn check_values(spec: &Spec, out: &[(String, HostTensor)]) -> Result<(), String> {
    let mut report = String::new();
    for (name, want, line) in &spec.expects {
        let Some((_, got)) = out.iter().find(|o| &o.0 == name) else {
            let names: Vec<&str> = out.iter().map(|o| o.0.as_str()).collect();
            let _ = writeln!(
                report,
                "line {line}: no output named '{name}' (outputs: {names:?})"
            );
            continue;
        };
        if let Err(m) = compare(got, want, spec.tolerance) {
            let _ = writeln!(report, "line {line}: expect {name} ({}): {m}", got.ty);
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report.trim_end().to_string())
    }
}

/// Compares values: i32 exactly, f32 within `tol·(1+|want|)`; NaN matches
/// NaN and infinities must match exactly.
fn compare(got: &HostTensor, want: &[f64], tol: f64) -> Result<(), String> {
    let g = got.to_f64();
    let show = |v: &[f64]| {
        let items: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
        format!("[{}]", items.join(", "))
    };
    if g.len() != want.len() {
        return Err(format!(
            "{} values, expected {}\n  - want: {}\n  + got:  {}",
            g.len(),
            want.len(),
            show(want),
            show(&g)
        ));
    }
    let exact = got.ty.dtype == DType::I32;
    let bad: Vec<usize> = (0..g.len())
        .filter(|&i| !value_matches(g[i], want[i], if exact { 0.0 } else { tol }))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let first = bad[0];
    let at = unravel(first, &got.ty.shape);
    Err(format!(
        "{} element(s) differ; first at {at:?} (flat {first}): got {}, want {} (tol {tol})\n  - want: {}\n  + got:  {}",
        bad.len(),
        g[first],
        want[first],
        show(want),
        show(&g)
    ))
}

fn value_matches(got: f64, want: f64, tol: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() || got.is_nan() {
        return got == want;
    }
    (got - want).abs() <= tol * (1.0 + want.abs())
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for ax in (0..shape.len()).rev() {
        if shape[ax] > 0 {
            idx[ax] = i % shape[ax];
            i /= shape[ax];
        }
    }
    idx
}

/// The same named outputs with values equal to a relative `1e-5`.
fn compare_graph_outputs(
    before: &[(String, HostTensor)],
    after: &[(String, HostTensor)],
) -> Result<(), String> {
    let mut report = String::new();
    for (name, b) in before {
        let Some((_, a)) = after.iter().find(|o| &o.0 == name) else {
            let _ = writeln!(report, "output '{name}' disappeared");
            continue;
        };
        if a.ty != b.ty {
            let _ = writeln!(report, "output '{name}' changed type: {} → {}", b.ty, a.ty);
            continue;
        }
        if let Err(m) = compare(a, &b.to_f64(), 1e-5) {
            let _ = writeln!(
                report,
                "output '{name}' changed value (- before, + after): {m}"
            );
        }
    }
    for (name, _) in after {
        if !before.iter().any(|o| &o.0 == name) {
            let _ = writeln!(report, "output '{name}' appeared");
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "passes changed the graph's semantics:\n{}",
            report.trim_end()
        ))
    }
}

/// A line diff by longest common subsequence: ` ` common, `-` only in
/// `want`, `+` only in `got`.
fn line_diff(want: &[&str], got: &[&str]) -> String {
    let (n, m) = (want.len(), got.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if want[i] == got[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && want[i] == got[j] {
            let _ = writeln!(out, "  {}", want[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", got[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", want[i]);
            i += 1;
        }
    }
    out.trim_end().to_string()
}

/// The harness's own helpers, checked on small inputs.
#[test]
fn harness_helpers() {
    let (n, v) = name_values("y = [[1, -2.5], [nan, -inf]]").unwrap();
    assert_eq!(n, "y");
    assert_eq!(v[..2], [1.0, -2.5]);
    assert!(v[2].is_nan() && v[3] == f64::NEG_INFINITY);
    assert!(value_matches(1.0 + 1e-7, 1.0, 1e-6));
    assert!(!value_matches(1.0 + 1e-5, 1.0, 1e-6));
    assert!(!value_matches(f64::NAN, 1.0, 1e-6));
    assert!(!value_matches(f64::INFINITY, 1e300, 1e-6));
    assert_eq!(unravel(5, &[2, 3]), vec![1, 2]);
    assert_eq!(
        line_diff(&["a", "b", "c"], &["a", "x", "c"]),
        "  a\n+ x\n- b\n  c"
    );
    let spec = parse_spec(
        "; run: pass dce, cse\ngraph g {\n}\n; expect:\n; graph g {\n; }\n\n; tolerance 1e-3\n",
    )
    .unwrap();
    assert!(matches!(&spec.mode, Mode::Pass(p) if p == &["dce", "cse"]));
    assert_eq!(spec.expect_text.unwrap(), vec!["graph g {", "}"]);
    assert_eq!(spec.tolerance, 1e-3);
    assert!(parse_spec("; run: frobnicate\n").is_err());
    assert!(parse_spec("graph g {}\n").is_err());
    // A file that checks nothing fails.
    assert!(run_file("; run: interpret\ngraph g {\n}\n").is_err());
    // A wrong expectation fails with a diff-like report.
    let e = run_file(
        "; run: interpret\n; feed x = [1, 2]\ngraph g {\n  %0 = input \"x\" : f32[2]\n  %1 = neg %0 : f32[2]\n  return y=%1\n}\n; expect y = [-1, 2]\n",
    )
    .unwrap_err();
    assert!(e.contains("flat 1") && e.contains("- want: [-1, 2]"), "{e}");
    // Pass mode reports a wrong printed graph as a line diff.
    let e = run_file(
        "; run: pass dce\ngraph g {\n  %0 = input \"x\" : f32[2]\n  %1 = neg %0 : f32[2]\n  %2 = exp %0 : f32[2]\n  return y=%1\n}\n; expect:\n; graph g {\n;   %0 = input \"x\" : f32[2]\n;   %1 = exp %0 : f32[2]\n;   return y=%1\n; }\n",
    )
    .unwrap_err();
    assert!(
        e.contains("-   %1 = exp %0 : f32[2]") && e.contains("+   %1 = neg %0 : f32[2]"),
        "{e}"
    );
    // An expected error that does not happen is a failure.
    let e = run_file(
        "; run: interpret\n; feed x = [1, 2]\n; expect-error: boom\ngraph g {\n  %0 = input \"x\" : f32[2]\n  return y=%0\n}\n",
    )
    .unwrap_err();
    assert!(e.contains("boom"), "{e}");
}
