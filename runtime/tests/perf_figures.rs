//! Measured figures for the JIT (run explicitly; they assert only sanity):
//! `cargo test -p lossgraph-runtime --test perf_figures -- --ignored --nocapture`
//! (add `--release` for release-built Rust code; JIT code and the GEMM
//! routines are optimised either way).

mod common;

use common::{init_params, mlp_step, Act, Loss, Opt, Rng};
use lossgraph_runtime::{Feed, JitOptions, Program};
use std::time::Instant;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
}

fn steps_per_s(p: &mut Program, feeds: &[(&str, Feed<'_>)], steps: usize) -> f64 {
    p.run(feeds).unwrap();
    let t = Instant::now();
    for _ in 0..steps {
        p.run(feeds).unwrap();
    }
    steps as f64 / t.elapsed().as_secs_f64()
}

/// Best steps/s of each program over `reps` alternating repetitions of
/// `steps` steps (alternation and the best-of filter tame a loaded machine).
fn best_alternating(
    progs: &mut [Program],
    feeds: &[(&str, Feed<'_>)],
    steps: usize,
    reps: usize,
) -> Vec<f64> {
    let mut best = vec![0.0f64; progs.len()];
    for p in progs.iter_mut() {
        p.run(feeds).unwrap();
    }
    for _ in 0..reps {
        for (i, p) in progs.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..steps {
                p.run(feeds).unwrap();
            }
            best[i] = best[i].max(steps as f64 / t.elapsed().as_secs_f64());
        }
    }
    best
}

fn compile(g: lossgraph_ir::Graph, threads: usize) -> (Program, f64) {
    let opts = JitOptions {
        threads,
        ..JitOptions::default()
    };
    let t = Instant::now();
    let p = Program::new_jit(g, &opts).unwrap();
    (p, t.elapsed().as_secs_f64() * 1e3)
}

#[test]
#[ignore]
fn tiny_mlp_steps_per_second() {
    let dims = [8, 32, 32, 1];
    let g = mlp_step(&dims, 32, Act::Tanh, Loss::Mse, 1e-4, Opt::Sgd(0.01));
    let (mut p, ms) = compile(g, 1);
    init_params(&mut p, &dims, 1);
    let x = data(32 * 8, 2);
    let t = data(32, 3);
    let feeds = [("x", Feed::F32(&x)), ("t", Feed::F32(&t))];
    let sps = steps_per_s(&mut p, &feeds, 20_000);
    let loss = p.output("loss").unwrap().item().unwrap();
    let st = p.compile_stats().unwrap();
    println!(
        "tiny: {sps:.0} steps/s ({:.2} us/step), compile {ms:.1} ms, {} kernels / {} functions / {} gemms, loss {loss:.4}",
        1e6 / sps,
        st.kernels,
        st.functions,
        st.gemms
    );
    assert!(loss.is_finite());
    let prof = p.profile(&feeds, 5000).unwrap();
    let total: f64 = prof.iter().map(|p| p.1).sum();
    let gemm: f64 = prof
        .iter()
        .filter(|p| p.0.starts_with("gemm"))
        .map(|p| p.1)
        .sum();
    let jit: f64 = prof
        .iter()
        .filter(|p| p.0.starts_with("kernel"))
        .map(|p| p.1)
        .sum();
    let best = best_alternating(std::slice::from_mut(&mut p), &feeds, 2000, 7)[0];
    let plan = p.plan_text().unwrap();
    println!(
        "tiny best-of-7 {best:.0} steps/s ({:.2} us/step); per-step minima: JIT kernels {:.2} us, gemm calls {:.2} us, copies+rest {:.2} us",
        1e6 / best,
        jit / 1e3,
        gemm / 1e3,
        (total - jit - gemm) / 1e3
    );
    println!("tiny profile (minimum ns per step over 5000 runs, sum {total:.0}):");
    for (l, t) in &prof {
        println!("  {l}: {t:.0}");
    }
    println!("{plan}");
}

#[test]
#[ignore]
fn mnist_compile_time_and_steps() {
    let dims = [784, 128, 10];
    let g = mlp_step(&dims, 64, Act::Relu, Loss::SparseCe, 1e-4, Opt::Adam(1e-3));
    for threads in [1, 2] {
        let (mut p, ms) = compile(g.clone(), threads);
        init_params(&mut p, &dims, 1);
        let x = data(64 * 784, 2);
        let labels: Vec<i32> = (0..64).map(|i| i * 7 % 10).collect();
        let feeds = [("x", Feed::F32(&x)), ("t", Feed::I32(&labels))];
        let sps = steps_per_s(&mut p, &feeds, 300);
        let st = p.compile_stats().unwrap();
        println!(
            "mnist threads={threads}: compile {ms:.1} ms (plan {:.1}, clif {:.1}, cranelift {:.1}), {sps:.0} steps/s, {:.2} GFLOP/s, arena {:.2} MiB, {} kernels, {} in-place updates",
            st.plan_ms,
            st.codegen_ms,
            st.jit_ms,
            sps * 39_026_688.0 / 1e9,
            st.arena_bytes as f64 / (1 << 20) as f64,
            st.kernels,
            st.in_place_updates
        );
        assert!(p.output("loss").unwrap().item().unwrap().is_finite());
    }
}

#[test]
#[ignore]
fn wide_step_gflops_vs_gemm() {
    let dims = [1024, 2048, 2048, 1024];
    let batch = 256;
    let flop = 12_884_901_888.0;
    let g = mlp_step(&dims, batch, Act::Relu, Loss::Mse, 0.0, Opt::Sgd(0.01));
    for threads in [1, 2] {
        let (mut p, ms) = compile(g.clone(), threads);
        init_params(&mut p, &dims, 1);
        let x = data(batch * 1024, 2);
        let t = data(batch * 1024, 3);
        let feeds = [("x", Feed::F32(&x)), ("t", Feed::F32(&t))];
        let sps = steps_per_s(&mut p, &feeds, 5);
        println!(
            "wide threads={threads}: compile {ms:.1} ms, {sps:.2} steps/s, {:.1} GFLOP/s (6·batch·weights convention)",
            sps * flop / 1e9
        );
        // The same matmul shapes alone: forward, dW and dX for each layer.
        let mut shapes = Vec::new();
        for i in 0..3 {
            let (k, n) = (dims[i], dims[i + 1]);
            shapes.push((batch, k, n, false, false)); // x·W
            shapes.push((k, batch, n, true, false)); // xᵀ·dy
            shapes.push((batch, n, k, false, true)); // dy·Wᵀ
        }
        let mut bufs: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = shapes
            .iter()
            .map(|&(m, k, n, _, _)| (data(m * k, 5), data(k * n, 6), vec![0.0; m * n]))
            .collect();
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let reps = 5;
        let t0 = Instant::now();
        for _ in 0..reps {
            for (&(m, k, n, ta, tb), (a, b, c)) in shapes.iter().zip(bufs.iter_mut()) {
                let (ars, acs) = if ta { (1, m as isize) } else { (k as isize, 1) };
                let (brs, bcs) = if tb { (1, k as isize) } else { (n as isize, 1) };
                // SAFETY: a is m×k, b is k×n, c is m×n with the strides given.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        acs,
                        ars,
                        b.as_ptr(),
                        bcs,
                        brs,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        par,
                    )
                };
            }
        }
        let gemm_flop: f64 = shapes
            .iter()
            .map(|&(m, k, n, _, _)| 2.0 * (m * k * n) as f64)
            .sum();
        let gs = reps as f64 * gemm_flop / t0.elapsed().as_secs_f64() / 1e9;
        println!(
            "wide threads={threads}: gemm alone on the step's 9 matmul shapes: {gs:.1} GFLOP/s (true FLOPs; step uses 7 of them: first layer's dX is dead)"
        );
        assert!(sps > 0.0);
    }
}

/// The matmul strategy measurement behind `BodyOptions::inline_matmul_max`:
/// one square matmul (plus its input copies) as JIT loops vs the default
/// GEMM routine (lossgraph's sgemm with AVX-512, else the gemm crate).
#[test]
#[ignore]
fn matmul_inline_vs_gemm() {
    for n in [8usize, 16, 32, 48, 64, 96, 128] {
        let b = lossgraph_ir::Builder::new("mm");
        let x = b.input("a", lossgraph_ir::TensorType::f32([n, n]));
        let w = b.input("b", lossgraph_ir::TensorType::f32([n, n]));
        b.output("c", &x.matmul(&w));
        let g = b.finish().unwrap();
        let a = data(n * n, 1);
        let bb = data(n * n, 2);
        let feeds = [("a", Feed::F32(&a)), ("b", Feed::F32(&bb))];
        let mut progs: Vec<Program> = [true, false]
            .iter()
            .map(|&inline| {
                let mut opts = JitOptions {
                    threads: 1,
                    ..JitOptions::default()
                };
                opts.body.inline_matmul_max = if inline { usize::MAX } else { 0 };
                Program::new_jit(g.clone(), &opts).unwrap()
            })
            .collect();
        let steps = (200_000 / (n * n * n)).clamp(5, 5_000);
        let row: Vec<f64> = best_alternating(&mut progs, &feeds, steps, 7)
            .into_iter()
            .map(|sps| 1e6 / sps)
            .collect();
        println!(
            "matmul {n}x{n}x{n}: JIT loops {:.2} us, GEMM routine {:.2} us (ratio gemm/jit {:.2})",
            row[0],
            row[1],
            row[1] / row[0]
        );
    }
}

/// Whole steps under each matmul strategy, in the same run.
#[test]
#[ignore]
fn step_matmul_strategy() {
    for (name, dims, batch, act, loss, opt) in [
        (
            "tiny",
            vec![8, 32, 32, 1],
            32,
            Act::Tanh,
            Loss::Mse,
            Opt::Sgd(0.01),
        ),
        (
            "mnist",
            vec![784, 128, 10],
            64,
            Act::Relu,
            Loss::SparseCe,
            Opt::Adam(1e-3),
        ),
    ] {
        let g = mlp_step(&dims, batch, act, loss, 1e-4, opt);
        let limits = [0usize, 16 * 16 * 16, 64 * 64 * 64, 128 * 128 * 128];
        let mut progs: Vec<Program> = limits
            .iter()
            .map(|&limit| {
                let mut opts = JitOptions {
                    threads: 1,
                    ..JitOptions::default()
                };
                opts.body.inline_matmul_max = limit;
                let mut p = Program::new_jit(g.clone(), &opts).unwrap();
                init_params(&mut p, &dims, 1);
                p
            })
            .collect();
        let x = data(batch * dims[0], 2);
        let t = data(batch * dims[dims.len() - 1], 3);
        let labels: Vec<i32> = (0..batch as i32).map(|i| i * 7 % 10).collect();
        let feeds = match loss {
            Loss::Mse => [("x", Feed::F32(&x)), ("t", Feed::F32(&t))],
            Loss::SparseCe => [("x", Feed::F32(&x)), ("t", Feed::I32(&labels))],
        };
        let steps = if name == "tiny" { 2000 } else { 100 };
        let best = best_alternating(&mut progs, &feeds, steps, 7);
        for (limit, sps) in limits.iter().zip(best) {
            println!(
                "{name}: inline matmuls up to {limit} mults: {sps:.0} steps/s ({:.1} us/step, best of 7)",
                1e6 / sps
            );
        }
    }
}

#[test]
#[ignore]
fn print_mnist_plan() {
    let g = mlp_step(
        &[784, 128, 10],
        64,
        Act::Relu,
        Loss::SparseCe,
        1e-4,
        Opt::Adam(1e-3),
    );
    let p = Program::new_jit(g, &JitOptions::default()).unwrap();
    println!("{}", p.plan_text().unwrap());
}

#[test]
#[ignore]
fn mnist_clif_size() {
    let g = mlp_step(
        &[784, 128, 10],
        64,
        Act::Relu,
        Loss::SparseCe,
        1e-4,
        Opt::Adam(1e-3),
    );
    let p = Program::new_jit(g, &JitOptions::default()).unwrap();
    let clif = p.clif_text().unwrap().unwrap();
    let mut sizes: Vec<(usize, String)> = Vec::new();
    for f in clif.split("; kernel").skip(1) {
        let n = f
            .lines()
            .filter(|l| l.contains(" = ") || l.trim_start().starts_with("store"))
            .count();
        sizes.push((n, f.lines().next().unwrap_or("").to_string()));
    }
    let total: usize = sizes.iter().map(|s| s.0).sum();
    sizes.sort();
    println!(
        "mnist: {} functions, {total} CLIF instructions",
        sizes.len()
    );
    for (n, l) in sizes.iter().rev().take(8) {
        println!("  {n:5} {l}");
    }
}

#[test]
#[ignore]
fn wide_compile_breakdown() {
    let dims = [1024, 2048, 2048, 1024];
    let g = mlp_step(&dims, 256, Act::Relu, Loss::Mse, 0.0, Opt::Sgd(0.01));
    let t = Instant::now();
    let p = Program::new_jit(g, &JitOptions::default()).unwrap();
    let st = p.compile_stats().unwrap();
    println!(
        "wide: compile {:.1} ms total (plan {:.1}, clif {:.1}, cranelift {:.1}), arena {:.1} MiB",
        t.elapsed().as_secs_f64() * 1e3,
        st.plan_ms,
        st.codegen_ms,
        st.jit_ms,
        st.arena_bytes as f64 / (1 << 20) as f64
    );
}

/// The Embedding gradient (`gather`'s VJP) on the JIT (one thread): the
/// one-hot matmul `onehot(ids, V)ᵀ·C̄` against the `scatter_add` op autodiff
/// emits, and a plain Rust scatter-add loop over the same data.
#[test]
#[ignore]
fn gather_vjp_onehot_matmul_vs_scatter_add() {
    use lossgraph_ir::TensorType;
    // (ids M, rows V, width D): p13 (batch 8 × 6 tokens, 20 × 4), an
    // MNIST-sized batch (128 × 28 tokens, 256 × 32), and a wide vocabulary.
    for (m, v, d) in [
        (48usize, 20usize, 4usize),
        (3584, 256, 32),
        (3584, 4096, 32),
    ] {
        let b = lossgraph_ir::Builder::new("gather_vjp");
        let ids = b.input("ids", TensorType::i32([m]));
        let cot = b.input("cot", TensorType::f32([m, d]));
        b.output("grad", &ids.one_hot(v).matmul_t(&cot, true, false));
        let g = b.finish().unwrap();
        let bs = lossgraph_ir::Builder::new("scatter");
        let ids_s = bs.input("ids", TensorType::i32([m]));
        let cot_s = bs.input("cot", TensorType::f32([m, d]));
        bs.output("grad", &cot_s.scatter_add(&ids_s, v));
        let gs = bs.finish().unwrap();
        let mut r = Rng::new(5);
        let id: Vec<i32> = (0..m)
            .map(|_| (r.uniform(0.0, 1.0) * v as f32) as i32 % v as i32)
            .collect();
        let c = data(m * d, 6);
        let feeds = [("ids", Feed::I32(&id)), ("cot", Feed::F32(&c))];
        let (mut p, _) = compile(g, 1);
        let steps = (20_000_000 / (m * v * d)).clamp(5, 20_000);
        let jit_us = 1e6 / best_alternating(std::slice::from_mut(&mut p), &feeds, steps, 5)[0];
        let (mut ps, _) = compile(gs, 1);
        let steps = (2_000_000 / (m * d)).clamp(5, 100_000);
        let scatter_us = 1e6 / best_alternating(std::slice::from_mut(&mut ps), &feeds, steps, 5)[0];
        let mut out = vec![0.0f32; v * d];
        let reps = (2_000_000 / (m * d)).clamp(5, 100_000);
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                out.iter_mut().for_each(|x| *x = 0.0);
                for (k, &row) in id.iter().enumerate() {
                    let dst = &mut out[row as usize * d..(row as usize + 1) * d];
                    for (o, s) in dst.iter_mut().zip(&c[k * d..(k + 1) * d]) {
                        *o += s;
                    }
                }
                std::hint::black_box(&out);
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e6 / reps as f64);
        }
        println!(
            "gather VJP M={m} V={v} D={d}: one-hot matmul (JIT) {jit_us:.2} us, scatter_add (JIT) {scatter_us:.2} us, Rust loop {best:.2} us"
        );
    }
}
