//! Compile time against model size: Sequential stacks of N `Dense(4, tanh)`
//! layers (SGD, mse, batch 8), each stage of the pipeline timed. A
//! measurement, not a timed assert (the machine is shared); run with
//!
//! ```sh
//! cargo test --release -p lossgraph-cli --test compile_scaling -- --ignored --nocapture
//! ```
//!
//! (`COMPILE_SCALING_N=250,500` picks the sizes). The non-timed regression
//! test of the fix is `compiler/tests/fusion_limits.rs`. The numbers are in
//! `benches/README.md`.

use lossgraph::layers::{Dense, Input};
use lossgraph::optimizers::Optimizer;
use lossgraph::{CompileOptions, Loss, Model, Purpose, Sequential};
use lossgraph_cli::bench::{generate_batches, BenchOptions, EngineChoice, Session, TargetKind};
use lossgraph_compiler::fusion::{self, FusionOptions};
use lossgraph_compiler::lower_clif::nest::kernel_body;
use lossgraph_compiler::memplan::plan_memory;
use lossgraph_compiler::passes;
use lossgraph_ir::rng::SplitMix64;
use lossgraph_runtime::{JitOptions, Program};
use std::time::Instant;

const BATCH: usize = 8;

fn deep(n: usize) -> Model {
    let mut s = Sequential::new(format!("deep{n}")).add(Input::new(&[4]));
    for _ in 0..n {
        s = s.add(Dense::new(4).activation("tanh"));
    }
    let mut m = s.build().unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.01),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    m
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Per-stage seconds of one compile of `model`'s training step.
fn stages(model: &Model) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let t = Instant::now();
    model.trace(true, BATCH).unwrap().finish().unwrap();
    out.push(("trace".to_string(), secs(t)));
    let t = Instant::now();
    let mut g = model.graph_unoptimized(Purpose::Train, BATCH).unwrap();
    // Trace again + losses, autodiff and optimiser updates.
    out.push(("trace+autodiff+updates".to_string(), secs(t)));
    // The default pipeline's passes, run as `default_pipeline` runs them.
    let pipeline = ["dce", "fold", "simplify", "cse", "dce"];
    let mut per_pass = vec![0.0; pipeline.len()];
    for _ in 0..4 {
        let mut any = false;
        for (i, name) in pipeline.iter().enumerate() {
            let f = passes::lookup(name).unwrap();
            let t = Instant::now();
            any |= f(&mut g).unwrap();
            per_pass[i] += secs(t);
        }
        if !any {
            break;
        }
    }
    for (i, name) in pipeline.iter().enumerate() {
        out.push((format!("pass {i} {name}"), per_pass[i]));
    }
    let t = Instant::now();
    let plan = fusion::plan(&g, &FusionOptions::default()).unwrap();
    out.push(("fusion".to_string(), secs(t)));
    let t = Instant::now();
    let body = JitOptions::default().body;
    let bodies: Vec<_> = (0..plan.kernels.len())
        .map(|k| kernel_body(&plan, k, &body))
        .collect::<Result<_, _>>()
        .unwrap();
    out.push(("kernel bodies".to_string(), secs(t)));
    let t = Instant::now();
    plan_memory(&plan, &bodies).unwrap();
    out.push(("memory plan".to_string(), secs(t)));
    let p = Program::new_jit(g, &JitOptions::default()).unwrap();
    let st = p.compile_stats().unwrap();
    out.push(("codegen (CLIF)".to_string(), st.codegen_ms / 1e3));
    out.push(("Cranelift + JIT".to_string(), st.jit_ms / 1e3));
    out
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn deep_dense_stacks() {
    let sizes: Vec<usize> = std::env::var("COMPILE_SCALING_N")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().parse().unwrap()).collect())
        .unwrap_or_else(|| vec![250, 500, 1000, 2000]);
    for n in sizes {
        let model = deep(n);
        for (stage, s) in stages(&model) {
            println!("N={n:5}  {stage:<24} {:8.1} ms", s * 1e3);
        }
        // The harness's path: graph + engine compile, then one step.
        let batches = generate_batches(
            BATCH,
            &model.input_shapes(),
            &[(vec![4], TargetKind::Normal)],
            &mut SplitMix64::new(42),
        );
        let opts = BenchOptions::with_engine(EngineChoice::Jit, 0);
        let t = Instant::now();
        let mut s = Session::from_model("deep", &model, batches, 0.01, 0.0, &opts).unwrap();
        let compile = secs(t);
        let t = Instant::now();
        let loss = s.step().unwrap();
        let step = secs(t);
        assert!(loss.is_finite(), "N={n}: loss {loss}");
        println!(
            "N={n:5}  total compile {:.3} s (graph {:.3} s, engine {:.3} s), first step {:.2} ms",
            compile,
            s.compile.graph_s,
            s.compile.engine_s,
            step * 1e3
        );
    }
}
