//! File-driven tests (in the spirit of Cranelift's filetests and LLVM lit).
//!
//! Every `tests/filetests/**/*.lg` file is IR text (see `lossgraph_ir::text`)
//! plus directives in `;` comment lines (the full guide is `docs/filetests.md`):
//!
//! ```text
//! ; run: interpret                  run the reference interpreter
//! ; run: jit                        compile with the JIT in every configuration of
//!                                   `jit_configs` and run; same expectations
//! ; no-jit: REASON                  an interpret file the JIT does not pass: the JIT
//!                                   still runs and must fail (a stale mark fails)
//! ; run: pass dce, cse              run passes; compare the printed graph
//! ; run: fusion                     plan fusion and memory; compare the plan text
//! ; feed x = [1, 2, 3, 4]           a leaf's values, row-major (brackets may nest;
//!                                   the type comes from the graph's input/param)
//! ; expect y = [0.5, 1.5]           an output's values (nan, inf, -inf allowed)
//! ; tolerance 1e-6                  |got - want| <= tol·(1 + |want|); default 1e-6
//! ; expect-error: no feed           evaluation (or parsing) must fail with this text
//! ; expect:                         (pass and fusion modes) the printed text follows,
//! ;   graph g {                     each line prefixed by "; ", up to the first line
//! ;     ...                         that is not a comment
//! ```
//!
//! A file may list several `; run:` lines: `interpret` and `jit` together
//! (every interpret file must list `jit` too or carry a `; no-jit:` mark), and
//! `fusion` with either. `pass` stands alone.
//!
//! Pass files are also checked semantically: the input and the output graph
//! are interpreted on the same feeds (the `; feed` values, and seeded random
//! values in `[0.5, 2]` for every other leaf; `i32` leaves get `0..=2`) and
//! every output must agree to a relative `1e-5`; then both graphs are run by
//! the JIT in every configuration, with the interpreter's outputs as the
//! oracle (unless the file carries a `; no-jit:` mark).
//!
//! `LG_FILETEST=substring` runs only the files whose path contains it.
//! `LOSSGRAPH_BLESS=1` rewrites each mismatching `; expect:` block (pass and
//! fusion modes) with the actual text instead of failing; value expectations
//! are never blessed (they are the independent reference). All files run; the
//! test then fails listing every failing file with a diff-like message.

use lossgraph_compiler::fusion::{self, FusionOptions};
use lossgraph_compiler::lower_clif::nest::{kernel_body, BodyOptions, KernelBody};
use lossgraph_compiler::memplan::plan_memory;
use lossgraph_ir::{interp, text, DType, Graph, HostTensor, Op, TensorType};
use lossgraph_runtime::{Feed, GemmImpl, JitOptions, Program};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One way a file is run (a `; run:` line).
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Interpret,
    Jit,
    Pass(Vec<String>),
    Fusion,
}

/// The directives of one file.
#[derive(Debug)]
struct Spec {
    /// In file order, without duplicates.
    modes: Vec<Mode>,
    /// Why the file does not list `; run: jit` (interpret files only).
    no_jit: Option<String>,
    feeds: Vec<(String, Vec<f64>, usize)>,
    expects: Vec<(String, Vec<f64>, usize)>,
    tolerance: f64,
    expect_error: Option<String>,
    /// The printed text expected (pass and fusion modes).
    expect_text: Option<Vec<String>>,
    /// Source lines `start..end` (0-based) holding the `; expect:` block's
    /// body, for blessing.
    expect_lines: Option<(usize, usize)>,
}

impl Spec {
    fn has(&self, m: &Mode) -> bool {
        self.modes.contains(m)
    }

    fn pass_names(&self) -> Option<&[String]> {
        self.modes.iter().find_map(|m| match m {
            Mode::Pass(n) => Some(n.as_slice()),
            Mode::Interpret | Mode::Jit | Mode::Fusion => None,
        })
    }
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

/// The JIT configurations every `; run: jit` file is compiled and run with:
/// the defaults, then each code path the defaults may not reach on a small
/// graph (scalar code, kernels and GEMMs split across two threads, the
/// unfused baseline, every matmul as a GEMM call with either routine).
fn jit_configs() -> Vec<(&'static str, JitOptions)> {
    let base = JitOptions::default();
    let gemm_calls = BodyOptions {
        inline_matmul_max: 0,
    };
    vec![
        ("default", base),
        (
            "threads=1 simd=off",
            JitOptions {
                threads: 1,
                simd: false,
                ..base
            },
        ),
        (
            "threads=2 simd=on split-all",
            JitOptions {
                threads: 2,
                simd: true,
                split_min_work: 1,
                gemm_min_flops: 1,
                ..base
            },
        ),
        (
            "unfused threads=1",
            JitOptions {
                fusion: FusionOptions {
                    fuse: false,
                    ..base.fusion
                },
                threads: 1,
                ..base
            },
        ),
        (
            "gemm-calls threads=2",
            JitOptions {
                body: gemm_calls,
                threads: 2,
                gemm_min_flops: 1,
                ..base
            },
        ),
        (
            "gemm-calls gemm=crate threads=1 simd=off",
            JitOptions {
                body: gemm_calls,
                gemm: GemmImpl::Crate,
                threads: 1,
                simd: false,
                ..base
            },
        ),
    ]
}

/// The environment variable that turns `; expect:` mismatches into rewrites.
const BLESS_VAR: &str = "LOSSGRAPH_BLESS";

#[test]
fn filetests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no .lg files under {}", root.display());
    let filter = std::env::var("LG_FILETEST").ok();
    let bless = std::env::var(BLESS_VAR).is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut jit_files = 0;
    let mut no_jit = Vec::new();
    let mut blessed = Vec::new();
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
        if let Ok(spec) = parse_spec(&src) {
            if spec.has(&Mode::Jit) || spec.pass_names().is_some() && spec.no_jit.is_none() {
                jit_files += 1;
            }
            if let Some(r) = &spec.no_jit {
                no_jit.push(format!("{rel} ({r})"));
            }
        }
        match check_file(&rel, &src, bless) {
            Ok(None) => {}
            Ok(Some(new_src)) => match std::fs::write(f, new_src) {
                Ok(()) => blessed.push(rel),
                Err(e) => failures.push(format!("{rel}: cannot bless: {e}")),
            },
            Err(msg) => failures.push(msg),
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {ran} filetests failed:\n\n{}\n\n(mismatching '; expect:' blocks can be rewritten with {BLESS_VAR}=1)\n",
            failures.len(),
            failures.join("\n\n")
        );
    }
    eprintln!(
        "{ran} filetests passed ({jit_files} under the JIT in {} configurations)",
        jit_configs().len()
    );
    for n in &no_jit {
        eprintln!("  not under the JIT: {n}");
    }
    for b in &blessed {
        eprintln!("  blessed: {b}");
    }
}

/// Checks one file named `rel`; `Err` is the whole failure report, naming
/// the file. With `bless`, a mismatching `; expect:` block is not a failure:
/// `Ok(Some(src))` is the file rewritten with the actual text.
fn check_file(rel: &str, src: &str, bless: bool) -> Result<Option<String>, String> {
    run_file_with(src, bless).map_err(|msg| format!("FAIL {rel}\n{}", indent(&msg)))
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

/// Runs one file without blessing; `Err` holds the whole failure report.
fn run_file(src: &str) -> Result<(), String> {
    run_file_with(src, false).map(|_| ())
}

/// Runs every mode of one file. `Err` holds the report of every failing
/// mode, each prefixed by its name; `Ok(Some(src))` is a blessed rewrite.
fn run_file_with(src: &str, bless: bool) -> Result<Option<String>, String> {
    let spec = parse_spec(src)?;
    let g = match text::parse(src) {
        Ok(g) => g,
        Err(e) => return check_error(&spec, &format!("parse error: {e}")).map(|_| None),
    };
    let mut report = Vec::new();
    let mut got_text = None;
    if spec.has(&Mode::Interpret) {
        let r = run_values(&spec, &g, |feeds| interp::interpret(&g, feeds));
        if let Err(m) = r {
            report.push(format!("interpret: {m}"));
        }
    }
    if spec.has(&Mode::Jit) || spec.no_jit.is_some() {
        let mut failed = Vec::new();
        for (name, opts) in jit_configs() {
            if let Err(m) = run_values(&spec, &g, |feeds| run_jit(&g, feeds, &opts)) {
                failed.push(format!("jit [{name}]: {m}"));
            }
        }
        if let Err(m) = jit_verdict(&spec, failed) {
            report.push(m);
        }
    }
    if let Some(names) = spec.pass_names() {
        match run_pass_mode(&spec, &g, names) {
            Ok(t) => got_text = Some((format!("printed graph after passes {names:?}"), t)),
            Err(m) => report.push(m),
        }
    }
    if spec.has(&Mode::Fusion) {
        match fusion_text(&g) {
            Ok(t) => got_text = Some(("fusion plan".to_string(), t)),
            Err(m) => report.push(format!("fusion: {m}")),
        }
    }
    let mut blessed = None;
    if let Some((what, got)) = got_text {
        let got_lines: Vec<&str> = got.lines().map(str::trim_end).collect();
        let want_lines: Vec<&str> = spec
            .expect_text
            .iter()
            .flatten()
            .map(|l| l.trim_end())
            .collect();
        if got_lines != want_lines {
            if bless {
                blessed = Some(bless_source(src, &spec, &got_lines));
            } else if spec.expect_text.is_none() {
                report.push(format!(
                    "no '; expect:' block; the {what} is ({BLESS_VAR}=1 writes it):\n{}",
                    got_lines.join("\n")
                ));
            } else {
                report.push(format!(
                    "{what} differs (- expected, + got):\n{}",
                    line_diff(&want_lines, &got_lines)
                ));
            }
        }
    }
    if report.is_empty() {
        Ok(blessed)
    } else {
        Err(report.join("\n"))
    }
}

/// `src` with its `; expect:` block replaced by `got` (appended at the end
/// when the file has none).
fn bless_source(src: &str, spec: &Spec, got: &[&str]) -> String {
    let lines: Vec<&str> = src.lines().collect();
    let block: Vec<String> = got
        .iter()
        .map(|l| {
            if l.is_empty() {
                ";".into()
            } else {
                format!("; {l}")
            }
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    match spec.expect_lines {
        Some((start, end)) => {
            out.extend(lines[..start].iter().map(|l| l.to_string()));
            out.extend(block);
            out.extend(lines[end..].iter().map(|l| l.to_string()));
        }
        None => {
            out.extend(lines.iter().map(|l| l.to_string()));
            out.push("; expect:".into());
            out.extend(block);
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// A value mode: builds the feeds, evaluates with `eval`, checks the
/// `; expect` lines (or the `; expect-error:`).
fn run_values(
    spec: &Spec,
    g: &Graph,
    eval: impl FnOnce(&HashMap<String, HostTensor>) -> Result<Vec<(String, HostTensor)>, String>,
) -> Result<(), String> {
    let feeds = match make_feeds(g, spec, false) {
        Ok(f) => f,
        Err(e) => return check_error(spec, &e),
    };
    let out = match eval(&feeds) {
        Ok(o) => o,
        Err(e) => return check_error(spec, &e),
    };
    if let Some(want) = &spec.expect_error {
        return Err(format!(
            "expected an error containing {want:?}, but evaluation succeeded"
        ));
    }
    check_values(spec, &out)
}

/// The JIT configurations' failures, judged against the `; no-jit:` mark:
/// without it every failure counts; with it at least one configuration must
/// fail (a mark on a file the JIT passes is stale).
fn jit_verdict(spec: &Spec, failed: Vec<String>) -> Result<(), String> {
    match &spec.no_jit {
        None if failed.is_empty() => Ok(()),
        None => Err(failed.join("\n")),
        Some(why) if failed.is_empty() => Err(format!(
            "marked '; no-jit: {why}' but every JIT configuration passes: remove the mark{}",
            if spec.has(&Mode::Interpret) {
                " and add '; run: jit'"
            } else {
                ""
            }
        )),
        Some(_) => Ok(()),
    }
}

/// Compiles `g` with `opts`, sets the fed params, runs once with the fed
/// inputs and returns every output.
fn run_jit(
    g: &Graph,
    feeds: &HashMap<String, HostTensor>,
    opts: &JitOptions,
) -> Result<Vec<(String, HostTensor)>, String> {
    let mut p = Program::new_jit(g.clone(), opts).map_err(|e| e.to_string())?;
    for (name, _) in g.params() {
        if let Some(t) = feeds.get(&name) {
            p.set_var(&name, t).map_err(|e| e.to_string())?;
        }
    }
    let inputs = g.inputs();
    let run_feeds: Vec<(&str, Feed<'_>)> = inputs
        .iter()
        .filter_map(|(n, _)| feeds.get(n).map(|t| (n.as_str(), Feed::of(t))))
        .collect();
    p.run(&run_feeds).map_err(|e| e.to_string())?;
    g.outputs()
        .iter()
        .map(|(n, _)| {
            p.output(n)
                .map(|t| (n.clone(), t.to_host()))
                .ok_or_else(|| format!("the JIT program has no output '{n}'"))
        })
        .collect()
}

/// Pass mode: runs the passes, verifies, checks semantics and values, and
/// returns the printed graph for the `; expect:` comparison.
fn run_pass_mode(spec: &Spec, g: &Graph, names: &[String]) -> Result<String, String> {
    let mut after = g.clone();
    run_passes(&mut after, names)?;
    lossgraph_ir::verify(&after)
        .map_err(|e| format!("graph after passes {names:?} fails verification: {e}"))?;
    // Semantics: same outputs on the same feeds.
    let feeds = make_feeds(g, spec, true)?;
    let before =
        interp::interpret(g, &feeds).map_err(|e| format!("interpreting the input graph: {e}"))?;
    let now = interp::interpret(&after, &feeds)
        .map_err(|e| format!("interpreting the graph after passes: {e}"))?;
    compare_graph_outputs(
        &before,
        &now,
        "passes changed the graph's semantics",
        ("input graph", "graph after passes"),
    )?;
    check_values(spec, &now)?;
    // The JIT on both graphs, with the interpreter as the oracle.
    let mut failed = Vec::new();
    for (name, opts) in jit_configs() {
        for (what, graph, want) in [
            ("input graph", g, &before),
            ("graph after passes", &after, &now),
        ] {
            let r = run_jit(graph, &feeds, &opts).and_then(|got| {
                compare_graph_outputs(
                    want,
                    &got,
                    &format!("the JIT disagrees with the interpreter on the {what}"),
                    ("interpreter", "JIT"),
                )
            });
            if let Err(m) = r {
                failed.push(format!("jit [{name}]: {m}"));
            }
        }
    }
    jit_verdict(spec, failed)?;
    Ok(text::print(&after))
}

/// Fusion mode: the fused plan (`fusion::plan_text` with the default
/// `FusionOptions`), then a `lowering` block: each kernel's body with the
/// compiler's default `BodyOptions` (matmuls above 64³ call a GEMM routine;
/// fixed here so the text does not depend on the host's GEMM), and how each
/// `update/<var>` reaches its variable (computed in place, or copied after
/// the run). The runtime must plan the same kernels and the same number of
/// in-place and copied updates.
fn fusion_text(g: &Graph) -> Result<String, String> {
    lossgraph_ir::verify(g).map_err(|e| format!("graph fails verification: {e}"))?;
    let plan = fusion::plan(g, &FusionOptions::default()).map_err(|e| e.to_string())?;
    let bodies = (0..plan.kernels.len())
        .map(|k| kernel_body(&plan, k, &BodyOptions::default()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mem = plan_memory(&plan, &bodies).map_err(|e| e.to_string())?;
    let plan_text = fusion::plan_text(&plan);
    let runtime = Program::new_jit(g.clone(), &JitOptions::default())
        .map_err(|e| format!("JIT compile: {e}"))?;
    let rt = runtime
        .plan_text()
        .ok_or("the JIT program has no plan text")?;
    if rt != plan_text {
        let (want, got): (Vec<&str>, Vec<&str>) =
            (plan_text.lines().collect(), rt.lines().collect());
        return Err(format!(
            "the runtime's plan differs from fusion::plan (- compiler, + runtime):\n{}",
            line_diff(&want, &got)
        ));
    }
    let stats = runtime
        .compile_stats()
        .ok_or("the JIT program has no compile statistics")?;
    if (stats.in_place_updates, stats.copied_updates) != (mem.in_place.len(), mem.copies.len()) {
        return Err(format!(
            "the runtime computes {} update(s) in place and copies {}, the memory plan here {} and {}",
            stats.in_place_updates,
            stats.copied_updates,
            mem.in_place.len(),
            mem.copies.len()
        ));
    }
    let pg = &plan.graph;
    let var_name = |p: lossgraph_ir::NodeId| match &pg.node(p).op {
        Op::Param { name } => name.clone(),
        other => format!("%{} ({})", p.index(), other.name()),
    };
    let mut s = plan_text;
    s.push_str("lowering {\n");
    for (k, b) in bodies.iter().enumerate() {
        let _ = match b {
            KernelBody::Nests(n) => writeln!(s, "  kernel {k}: {} loop nest(s)", n.len()),
            KernelBody::SmallMatmul(c) => writeln!(
                s,
                "  kernel {k}: register-blocked matmul batch={} m={} n={} k={} trans_a={} trans_b={}",
                c.batch, c.m, c.n, c.k, c.trans_a, c.trans_b
            ),
            KernelBody::Gemm(c) => writeln!(
                s,
                "  kernel {k}: gemm call batch={} m={} n={} k={} trans_a={} trans_b={}",
                c.batch, c.m, c.n, c.k, c.trans_a, c.trans_b
            ),
            KernelBody::Conv(c) => writeln!(
                s,
                "  kernel {k}: convolution call {} image={:?}x{} window={:?} strides={:?} dilation={:?} filters={}",
                c.pass.name(), c.spatial, c.channels, c.window, c.strides, c.dilation, c.filters
            ),
            KernelBody::Pool(c) => writeln!(
                s,
                "  kernel {k}: pooling call {} image={:?}x{} window={:?} strides={:?}",
                c.pass.name(), c.spatial, c.channels, c.window, c.strides
            ),
            KernelBody::AllReduce { out, x, numel } => writeln!(
                s,
                "  kernel {k}: all_reduce_mean call numel={numel}{}",
                if mem.location[out.index()] == mem.location[x.index()] {
                    " in place"
                } else {
                    ""
                }
            ),
        };
    }
    for (p, u) in &mem.in_place {
        let _ = writeln!(
            s,
            "  update {}: in place, stored by %{}",
            var_name(*p),
            u.index()
        );
    }
    for (p, from) in &mem.copies {
        let _ = writeln!(
            s,
            "  update {}: copied after the run from %{}",
            var_name(*p),
            from.index()
        );
    }
    s.push_str("}\n");
    Ok(s)
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

/// Reads the directives and checks they make sense together. Errors name the line.
fn parse_spec(src: &str) -> Result<Spec, String> {
    let mut modes: Vec<Mode> = Vec::new();
    let mut no_jit = None;
    let mut feeds = Vec::new();
    let mut expects = Vec::new();
    let mut tolerance = 1e-6;
    let mut expect_error = None;
    let mut expect_text: Option<Vec<String>> = None;
    let mut expect_lines = None;
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
            let r = r.trim();
            let mode = if r == "interpret" {
                Mode::Interpret
            } else if r == "jit" {
                Mode::Jit
            } else if r == "fusion" {
                Mode::Fusion
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
                    "unknown run mode {r:?} (want 'interpret', 'jit', 'fusion' or 'pass NAME, …')"
                )));
            };
            if modes.contains(&mode) {
                return Err(err(format!("a second '; run: {r}' line")));
            }
            modes.push(mode);
        } else if let Some(r) = c.strip_prefix("no-jit:") {
            let r = r.trim();
            if r.is_empty() {
                return Err(err("'; no-jit:' needs a reason".into()));
            }
            no_jit = Some(r.to_string());
        } else if let Some(r) = c.strip_prefix("feed ") {
            let (name, vals) = name_values(r).map_err(err)?;
            feeds.push((name, vals, lineno));
        } else if let Some(r) = c.strip_prefix("expect-error:") {
            expect_error = Some(r.trim().to_string());
        } else if c == "expect:" {
            if expect_text.is_some() {
                return Err(err("a second '; expect:' block".into()));
            }
            let start = i;
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
            expect_lines = Some((start, i));
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
    if modes.is_empty() {
        return Err("no '; run:' line".into());
    }
    let spec = Spec {
        modes,
        no_jit,
        feeds,
        expects,
        tolerance,
        expect_error,
        expect_text,
        expect_lines,
    };
    check_modes(&spec)?;
    Ok(spec)
}

/// The combinations of modes and directives a file may use.
fn check_modes(s: &Spec) -> Result<(), String> {
    let values = s.has(&Mode::Interpret) || s.has(&Mode::Jit);
    if s.pass_names().is_some() && s.modes.len() > 1 {
        return Err("'; run: pass' cannot be combined with another '; run:' mode".into());
    }
    if s.has(&Mode::Interpret) && !s.has(&Mode::Jit) && s.no_jit.is_none() {
        return Err(
            "'; run: interpret' without '; run: jit': add it, or mark the file '; no-jit: REASON'"
                .into(),
        );
    }
    if s.no_jit.is_some()
        && (s.has(&Mode::Jit) || !(s.has(&Mode::Interpret) || s.pass_names().is_some()))
    {
        return Err(
            "'; no-jit:' marks an interpret file without '; run: jit', or a pass file".into(),
        );
    }
    if values && s.expects.is_empty() && s.expect_error.is_none() {
        return Err("no '; expect' or '; expect-error:' line: the file checks nothing".into());
    }
    if !values && s.has(&Mode::Fusion) && !s.expects.is_empty() {
        return Err(
            "'; expect NAME = …' in a fusion file needs '; run: interpret' or '; run: jit'".into(),
        );
    }
    if s.expect_text.is_some() && s.pass_names().is_none() && !s.has(&Mode::Fusion) {
        return Err("an '; expect:' block needs '; run: pass …' or '; run: fusion'".into());
    }
    Ok(())
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

/// The same named outputs with values equal to a relative `1e-5`; `Err`
/// starts with `headline`, and names `before` and `after` the two sides.
fn compare_graph_outputs(
    before: &[(String, HostTensor)],
    after: &[(String, HostTensor)],
    headline: &str,
    (b_name, a_name): (&str, &str),
) -> Result<(), String> {
    let mut report = String::new();
    for (name, b) in before {
        let Some((_, a)) = after.iter().find(|o| &o.0 == name) else {
            let _ = writeln!(report, "output '{name}' missing from the {a_name}");
            continue;
        };
        if a.ty != b.ty {
            let _ = writeln!(
                report,
                "output '{name}' has type {} in the {b_name}, {} in the {a_name}",
                b.ty, a.ty
            );
            continue;
        }
        if let Err(m) = compare(a, &b.to_f64(), 1e-5) {
            let _ = writeln!(
                report,
                "output '{name}' differs (- {b_name}, + {a_name}): {m}"
            );
        }
    }
    for (name, _) in after {
        if !before.iter().any(|o| &o.0 == name) {
            let _ = writeln!(report, "output '{name}' only in the {a_name}");
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(format!("{headline}:\n{}", report.trim_end()))
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
    assert_eq!(
        spec.modes,
        vec![Mode::Pass(vec!["dce".into(), "cse".into()])]
    );
    assert_eq!(spec.expect_text.unwrap(), vec!["graph g {", "}"]);
    assert_eq!(spec.expect_lines, Some((4, 6)));
    assert_eq!(spec.tolerance, 1e-3);
    assert!(parse_spec("; run: frobnicate\n").is_err());
    assert!(parse_spec("graph g {}\n").is_err());
    // A file that checks nothing fails.
    assert!(run_file("; run: interpret\n; run: jit\ngraph g {\n}\n").is_err());
    // An expected error that does not happen is a failure.
    let e = run_file(
        "; run: interpret\n; run: jit\n; feed x = [1, 2]\n; expect-error: boom\ngraph g {\n  %0 = input \"x\" : f32[2]\n  return y=%0\n}\n",
    )
    .unwrap_err();
    assert!(e.contains("boom"), "{e}");
}

/// A small graph `y = -x` with feed `x = [1, 2]`, run in `modes`, expecting `want`.
fn neg_file(modes: &str, want: &str) -> String {
    format!(
        "{modes}; feed x = [1, 2]\ngraph g {{\n  %0 = input \"x\" : f32[2]\n  %1 = neg %0 : f32[2]\n  return y=%1\n}}\n; expect y = {want}\n"
    )
}

/// The mode directives: combinations, duplicates, the `; no-jit:` mark.
#[test]
fn harness_modes() {
    let s = parse_spec(&neg_file("; run: interpret\n; run: jit\n", "[-1, -2]")).unwrap();
    assert_eq!(s.modes, vec![Mode::Interpret, Mode::Jit]);
    let e = parse_spec(&neg_file("; run: jit\n; run: jit\n", "[-1, -2]")).unwrap_err();
    assert!(e.contains("line 2") && e.contains("second"), "{e}");
    // An interpret file must run under the JIT too, or say why not.
    let e = parse_spec(&neg_file("; run: interpret\n", "[-1, -2]")).unwrap_err();
    assert!(e.contains("no-jit"), "{e}");
    let e = parse_spec(&neg_file("; run: pass dce\n; run: jit\n", "[-1, -2]")).unwrap_err();
    assert!(e.contains("cannot be combined"), "{e}");
    let e = parse_spec("; run: fusion\n; expect y = [1]\ngraph g {\n}\n").unwrap_err();
    assert!(e.contains("fusion file"), "{e}");
    assert!(parse_spec("; run: interpret\n; no-jit:\n; expect y = 1\n").is_err());
    // Both engines pass on a correct file.
    run_file(&neg_file("; run: interpret\n; run: jit\n", "[-1, -2]")).unwrap();
    // A '; no-jit:' mark on a file the JIT passes is stale, and fails.
    let e = run_file(&neg_file(
        "; run: interpret\n; no-jit: because\n",
        "[-1, -2]",
    ))
    .unwrap_err();
    assert!(
        e.contains("marked '; no-jit: because'") && e.contains("add '; run: jit'"),
        "{e}"
    );
    // Pass files run the JIT too, and their marks are checked the same way.
    let pass = "; run: pass dce\n; no-jit: because\ngraph g {\n  %0 = input \"x\" : f32[2]\n  return y=%0\n}\n; expect:\n; graph g {\n;   %0 = input \"x\" : f32[2]\n;   return y=%0\n; }\n";
    let e = run_file(pass).unwrap_err();
    assert!(
        e.contains("remove the mark") && !e.contains("add '; run: jit'"),
        "{e}"
    );
    run_file(&pass.replace("; no-jit: because\n", "")).unwrap();
}

/// A mismatching value fails in every mode, naming the file, the mode, the
/// line and the output, with want/got values.
#[test]
fn harness_value_mismatch() {
    let src = neg_file("; run: interpret\n; run: jit\n", "[-1, 2]");
    let e = check_file("virtual/neg.lg", &src, false).unwrap_err();
    assert!(e.starts_with("FAIL virtual/neg.lg"), "{e}");
    assert!(e.contains("interpret: line 9: expect y (f32[2])"), "{e}");
    for (name, _) in jit_configs() {
        assert!(
            e.contains(&format!("jit [{name}]: line 9: expect y")),
            "{e}"
        );
    }
    assert!(e.contains("flat 1") && e.contains("- want: [-1, 2]"), "{e}");
    assert!(e.contains("+ got:  [-1, -2]"), "{e}");
    // Blessing never rewrites value expectations.
    assert!(check_file("virtual/neg.lg", &src, true).is_err());
    // A missing output is named with the outputs there are.
    let e = check_file(
        "virtual/neg.lg",
        &neg_file("; run: jit\n", "[-1, -2]").replace("expect y", "expect z"),
        false,
    )
    .unwrap_err();
    assert!(
        e.contains("no output named 'z'") && e.contains("[\"y\"]"),
        "{e}"
    );
}

/// Pass mode reports a wrong printed graph as a line diff, and blessing
/// rewrites the block in place.
#[test]
fn harness_pass_mismatch_and_bless() {
    let src = "; run: pass dce\ngraph g {\n  %0 = input \"x\" : f32[2]\n  %1 = neg %0 : f32[2]\n  %2 = exp %0 : f32[2]\n  return y=%1\n}\n; expect:\n; graph g {\n;   %0 = input \"x\" : f32[2]\n;   %1 = exp %0 : f32[2]\n;   return y=%1\n; }\n; trailing comment kept\n";
    // The block runs up to the first non-comment line: cut it before the trailer.
    let src = src.replace("; }\n; trailing", "; }\n\n; trailing");
    let e = check_file("virtual/dce.lg", &src, false).unwrap_err();
    assert!(e.starts_with("FAIL virtual/dce.lg"), "{e}");
    assert!(
        e.contains("-   %1 = exp %0 : f32[2]") && e.contains("+   %1 = neg %0 : f32[2]"),
        "{e}"
    );
    let blessed = check_file("virtual/dce.lg", &src, true).unwrap().unwrap();
    assert!(blessed.contains(";   %1 = neg %0 : f32[2]\n"), "{blessed}");
    assert!(!blessed.contains("exp %0 : f32[2]\n;"), "{blessed}");
    assert!(
        blessed.ends_with("; }\n\n; trailing comment kept\n"),
        "{blessed}"
    );
    // The blessed file passes, and blessing it again changes nothing.
    assert_eq!(check_file("virtual/dce.lg", &blessed, true), Ok(None));
}

/// Fusion mode: a wrong plan fails with a diff naming the file; a missing
/// block fails showing the plan; blessing appends it.
#[test]
fn harness_fusion_mismatch_and_bless() {
    let graph = "graph f {\n  %0 = input \"x\" : f32[3]\n  %1 = neg %0 : f32[3]\n  %2 = exp %1 : f32[3]\n  return y=%2\n}\n";
    let src = format!("; run: fusion\n{graph}");
    let e = check_file("virtual/f.lg", &src, false).unwrap_err();
    assert!(
        e.starts_with("FAIL virtual/f.lg") && e.contains("no '; expect:' block"),
        "{e}"
    );
    assert!(e.contains("kernel 0 elementwise"), "{e}");
    let blessed = check_file("virtual/f.lg", &src, true).unwrap().unwrap();
    assert!(
        blessed.starts_with(&src) && blessed.contains("\n; expect:\n; plan f (1 kernels) {\n"),
        "{blessed}"
    );
    assert_eq!(check_file("virtual/f.lg", &blessed, false), Ok(None));
    let wrong = blessed.replace("(1 kernels)", "(2 kernels)");
    let e = check_file("virtual/f.lg", &wrong, false).unwrap_err();
    assert!(
        e.contains("fusion plan differs")
            && e.contains("- plan f (2 kernels) {")
            && e.contains("+ plan f (1 kernels) {"),
        "{e}"
    );
}

/// Each JIT configuration reaches the code path it is there for (checked
/// on the compile statistics of a graph with a 64×64 elementwise chain and
/// an 8×8·8×8 matmul): otherwise the matrix would test one path six times.
#[test]
fn harness_jit_configs_reach_their_paths() {
    let g = text::parse(
        "graph paths {\n  %0 = input \"x\" : f32[64,64]\n  %1 = exp %0 : f32[64,64]\n  %2 = neg %1 : f32[64,64]\n  %3 = input \"a\" : f32[8,8]\n  %4 = matmul %3, %3 : f32[8,8]\n  return y=%2, p=%4\n}\n",
    )
    .unwrap();
    for (name, opts) in jit_configs() {
        let p = Program::new_jit(g.clone(), &opts).unwrap();
        let s = p.compile_stats().unwrap().clone();
        let check = |ok: bool, what: &str| assert!(ok, "jit [{name}]: {what}: {s:?}");
        check(
            s.vectorized > 0 || !opts.simd,
            "simd on but nothing vectorized",
        );
        check(s.vectorized == 0 || opts.simd, "simd off but vectorized");
        check(s.split == 0 || opts.threads > 1, "split with one thread");
        if opts.split_min_work == 1 {
            check(s.split > 0, "split-all splits nothing");
        }
        if opts.body.inline_matmul_max == 0 {
            check(s.gemms == 1, "the matmul is not a GEMM call");
        }
        // Fused: the chain is one kernel, the matmul another; unfused: one each.
        let kernels = if opts.fusion.fuse { 2 } else { 3 };
        check(s.kernels == kernels, "kernel count");
    }
}
