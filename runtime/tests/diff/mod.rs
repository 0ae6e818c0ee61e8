//! The JIT-against-interpreter comparison shared by `jit_vs_interp.rs` and
//! the `jit` fuzz target of `fuzz/` (which includes this file by path).
//!
//! Every graph runs on the interpreter and on several JIT configurations
//! (fused + SIMD with the default matmul strategy; unfused scalar with every
//! matmul in the gemm crate; every matmul on lossgraph's GEMM split across two
//! threads; fused with two threads splitting every splittable kernel and
//! every matmul as JIT loops), for two steps, so variable updates (in place
//! or copied) are exercised; all outputs and all variables are compared.

use lossgraph_ir::gen::{random_feeds, random_graph, GenConfig};
use lossgraph_ir::{Graph, HostTensor};
use lossgraph_runtime::{Engine, Feed, GemmImpl, JitOptions, Program};

/// Tolerance: |jit - interp| <= atol + rtol·|interp|.
#[derive(Clone, Copy)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
}

/// Graphs with reductions or matmuls.
pub const REDUCE: Tol = Tol {
    rtol: 1e-4,
    atol: 1e-4,
};

/// Compares `got` (JIT) with `want` (interpreter): NaN where `want` is NaN,
/// equal infinities, else within `tol`.
pub fn close(what: &str, got: &[f64], want: &[f64], tol: Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: length {} vs {}", got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= tol.atol + tol.rtol * w.abs()
        };
        if !ok {
            return Err(format!("{what}[{i}]: jit {g} vs interpreter {w}"));
        }
    }
    Ok(())
}

/// The JIT configurations every graph runs on.
pub fn configs() -> Vec<(&'static str, JitOptions)> {
    let base = JitOptions::default();
    let mut unfused = base;
    unfused.fusion.fuse = false;
    unfused.simd = false;
    unfused.threads = 1;
    unfused.body.inline_matmul_max = 0; // every matmul a GEMM call
    unfused.gemm = GemmImpl::Crate;
    let mut gemm2 = base;
    gemm2.body.inline_matmul_max = 0; // every matmul on lossgraph's GEMM,
    gemm2.threads = 2; // split across both threads
    gemm2.gemm_min_flops = 0;
    let mut threaded = base;
    threaded.body.inline_matmul_max = usize::MAX; // every matmul as JIT loops
    threaded.threads = 2;
    threaded.split_min_work = 0;
    threaded.gemm_min_flops = 0;
    vec![
        ("fused", base),
        ("unfused", unfused),
        ("gemm2", gemm2),
        ("threads2", threaded),
    ]
}

/// Runs `g` for two steps on the interpreter and every JIT configuration
/// with the given input and variable values and compares every output and
/// variable.
pub fn check_values(
    g: &Graph,
    tol: Tol,
    feeds: &[(String, HostTensor)],
    vars: &[(String, HostTensor)],
) -> Result<(), String> {
    let feed_refs: Vec<(&str, Feed<'_>)> = feeds
        .iter()
        .map(|(n, t)| (n.as_str(), Feed::of(t)))
        .collect();
    let mut reference = Program::new(g.clone(), Engine::Interpreter).map_err(|e| e.to_string())?;
    for (n, v) in vars {
        reference.set_var(n, v).map_err(|e| e.to_string())?;
    }
    let mut progs = Vec::new();
    for (name, opts) in configs() {
        let mut p = Program::new_jit(g.clone(), &opts).map_err(|e| format!("{name}: {e}"))?;
        for (n, v) in vars {
            p.set_var(n, v).map_err(|e| e.to_string())?;
        }
        progs.push((name, p));
    }
    for step in 0..2 {
        reference.run(&feed_refs).map_err(|e| e.to_string())?;
        for (name, p) in &mut progs {
            p.run(&feed_refs).map_err(|e| format!("{name}: {e}"))?;
            for (out, _) in g.outputs() {
                let want = reference.output(out).unwrap().to_host().to_f64();
                let got = p
                    .output(out)
                    .ok_or_else(|| format!("{name}: no output {out}"))?
                    .to_host()
                    .to_f64();
                close(
                    &format!("{name} step {step} output {out}"),
                    &got,
                    &want,
                    tol,
                )
                .map_err(|e| format!("{e}\nplan:\n{}", p.plan_text().unwrap_or_default()))?;
            }
            for (v, _) in vars {
                let want = reference.var(v).unwrap().to_host().to_f64();
                let got = p.var(v).unwrap().to_host().to_f64();
                close(&format!("{name} step {step} var {v}"), &got, &want, tol)?;
            }
        }
    }
    Ok(())
}

/// Generates [`random_graph`] `seed` (at most `nodes` nodes, extents at most
/// `extent`) and checks the JIT against the interpreter on
/// [`random_feeds`]; a graph with an ill-typed `update/<var>` must be
/// refused by the JIT.
pub fn random_graph_matches(seed: u64, nodes: usize, extent: usize) -> Result<(), String> {
    let cfg = GenConfig {
        max_nodes: nodes,
        max_extent: extent,
        ..GenConfig::default()
    };
    let g = random_graph(seed, &cfg);
    // An `update/<var>` of another element count or type is not a valid
    // training step: both engines must reject it (the JIT at compile time).
    let bad_update = g.outputs().iter().any(|(name, id)| {
        name.strip_prefix("update/")
            .and_then(|v| g.param(v))
            .is_some_and(|p| {
                let (pt, ut) = (&g.node(p).ty, &g.node(*id).ty);
                pt.dtype != ut.dtype || pt.numel() != ut.numel()
            })
    });
    if bad_update {
        return match Program::new(g, Engine::Jit) {
            Err(_) => Ok(()),
            Ok(_) => Err(format!("seed {seed}: JIT accepted an ill-typed update")),
        };
    }
    let values = random_feeds(&g, seed ^ 0x5EED);
    let mut feeds = Vec::new();
    let mut vars = Vec::new();
    for (name, _) in g.inputs() {
        feeds.push((name.clone(), values[&name].clone()));
    }
    for (name, _) in g.params() {
        vars.push((name.clone(), values[&name].clone()));
    }
    check_values(&g, REDUCE, &feeds, &vars).map_err(|e| {
        format!(
            "seed {seed}: {e}\ngraph:\n{}",
            lossgraph_ir::text::print(&g)
        )
    })
}
