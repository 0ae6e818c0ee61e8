//! Programs sharing one `VariableStore`: training steps at two batch sizes
//! (every matmul on the GEMM call step, so its operands are store slots)
//! see each other's updates without any copy, matching separate programs
//! whose variables are copied across by hand, and the interpreter on a
//! shared store matches the JIT.

mod common;

use common::{mlp_step, Act, Loss, Opt, Rng};
use lossgraph_runtime::{CopyCount, Engine, Feed, HostTensor, JitOptions, Program, VariableStore};

const DIMS: [usize; 4] = [8, 32, 32, 1];

/// Glorot-uniform kernels, as `common::init_params`, as host tensors.
fn kernels(seed: u64) -> Vec<(String, HostTensor)> {
    let mut rng = Rng::new(seed);
    (0..DIMS.len() - 1)
        .map(|i| {
            let lim = (6.0 / (DIMS[i] + DIMS[i + 1]) as f32).sqrt();
            let w = (0..DIMS[i] * DIMS[i + 1])
                .map(|_| rng.uniform(-lim, lim))
                .collect();
            let t = HostTensor::f32(&[DIMS[i], DIMS[i + 1]], w).unwrap();
            (format!("dense_{i}/kernel"), t)
        })
        .collect()
}

fn batch(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let x = (0..n * DIMS[0]).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let t = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    (x, t)
}

fn gemm_opts() -> JitOptions {
    let mut opts = JitOptions {
        gemm_min_flops: 0,
        ..JitOptions::default()
    };
    opts.body.inline_matmul_max = 0;
    opts
}

/// Named variable values.
type Vars = Vec<(String, Vec<f32>)>;

/// Losses of a step at batch 32, then one at batch 8, then the variables,
/// on one shared store with `engine`; the store's copy counts after setting
/// the kernels and at the end.
fn shared(engine: Engine) -> (Vec<f32>, Vars, CopyCount, CopyCount) {
    let mut store = VariableStore::new();
    let g32 = mlp_step(&DIMS, 32, Act::Tanh, Loss::Mse, 1e-4, Opt::Adam(1e-2));
    let g8 = mlp_step(&DIMS, 8, Act::Tanh, Loss::Mse, 1e-4, Opt::Adam(1e-2));
    let mut p32 = Program::with_store(g32, engine, &gemm_opts(), &mut store).unwrap();
    let mut p8 = Program::with_store(g8, engine, &gemm_opts(), &mut store).unwrap();
    if engine == Engine::Jit {
        assert!(p32.compile_stats().unwrap().gemms > 0);
    }
    for (n, t) in kernels(1) {
        store.set(&n, &t).unwrap();
    }
    let after_init = store.copies();
    let mut losses = Vec::new();
    for (small, n, seed) in [(false, 32, 5), (true, 8, 6), (false, 32, 7)] {
        let p = if small { &mut p8 } else { &mut p32 };
        let (x, t) = batch(n, seed);
        p.run_with(&mut store, &[("x", Feed::F32(&x)), ("t", Feed::F32(&t))])
            .unwrap();
        losses.push(p.output_with(&store, "loss").unwrap().item().unwrap() as f32);
    }
    let vars = p32
        .var_names()
        .into_iter()
        .map(|n| {
            let v = store.get(&n).unwrap().as_f32().unwrap().to_vec();
            (n, v)
        })
        .collect();
    (losses, vars, after_init, store.copies())
}

/// The same sequence on programs with stores of their own, variables copied
/// between them by hand (what a front end did before the shared store).
fn copied() -> (Vec<f32>, Vars) {
    let g32 = mlp_step(&DIMS, 32, Act::Tanh, Loss::Mse, 1e-4, Opt::Adam(1e-2));
    let g8 = mlp_step(&DIMS, 8, Act::Tanh, Loss::Mse, 1e-4, Opt::Adam(1e-2));
    let mut p32 = Program::new_jit(g32, &gemm_opts()).unwrap();
    let mut p8 = Program::new_jit(g8, &gemm_opts()).unwrap();
    for (n, t) in kernels(1) {
        p32.set_var(&n, &t).unwrap();
    }
    let copy = |from: &Program, to: &mut Program| {
        for n in from.var_names() {
            let t = from.var(&n).unwrap().to_host();
            to.set_var(&n, &t).unwrap();
        }
    };
    let mut losses = Vec::new();
    let (x, t) = batch(32, 5);
    p32.run(&[("x", Feed::F32(&x)), ("t", Feed::F32(&t))])
        .unwrap();
    losses.push(p32.output("loss").unwrap().item().unwrap() as f32);
    copy(&p32, &mut p8);
    let (x, t) = batch(8, 6);
    p8.run(&[("x", Feed::F32(&x)), ("t", Feed::F32(&t))])
        .unwrap();
    losses.push(p8.output("loss").unwrap().item().unwrap() as f32);
    copy(&p8, &mut p32);
    let (x, t) = batch(32, 7);
    p32.run(&[("x", Feed::F32(&x)), ("t", Feed::F32(&t))])
        .unwrap();
    losses.push(p32.output("loss").unwrap().item().unwrap() as f32);
    let vars = p32
        .var_names()
        .into_iter()
        .map(|n| (n.clone(), p32.var(&n).unwrap().as_f32().unwrap().to_vec()))
        .collect();
    (losses, vars)
}

#[test]
fn programs_on_one_store_share_updates_without_copies() {
    let (losses, vars, after_init, after_runs) = shared(Engine::Jit);
    let (want_losses, want_vars) = copied();
    // Same kernels, same order: bit-identical.
    assert_eq!(losses, want_losses);
    assert_eq!(vars, want_vars);
    assert_eq!(after_init.count, 3, "one set per kernel");
    assert_eq!(after_runs, after_init, "runs copy no variable");
}

#[test]
fn interpreter_on_a_shared_store_matches_the_jit() {
    let (jit_losses, jit_vars, ..) = shared(Engine::Jit);
    let (losses, vars, ..) = shared(Engine::Interpreter);
    for (a, b) in losses.iter().zip(&jit_losses) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "loss {a} vs {b}");
    }
    for ((n, a), (_, b)) in vars.iter().zip(&jit_vars) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-4, "{n}: {x} vs {y}");
        }
    }
}

#[test]
fn a_program_runs_only_with_its_store() {
    let g = mlp_step(&DIMS, 8, Act::Tanh, Loss::Mse, 0.0, Opt::Sgd(0.1));
    let mut store = VariableStore::new();
    let mut other = VariableStore::new();
    let mut p = Program::with_store(g.clone(), Engine::Jit, &gemm_opts(), &mut store).unwrap();
    let (x, t) = batch(8, 1);
    let feeds = [("x", Feed::F32(&x)), ("t", Feed::F32(&t))];
    assert!(p.run_with(&mut other, &feeds).is_err());
    assert!(
        p.run(&feeds).is_err(),
        "a shared-store program has no store of its own"
    );
    // A variable registered with another type is refused.
    let mut bad = VariableStore::new();
    bad.register("dense_0/kernel", &lossgraph_ir::TensorType::f32([3]))
        .unwrap();
    assert!(Program::with_store(g, Engine::Jit, &gemm_opts(), &mut bad).is_err());
}

#[test]
fn a_store_grown_after_compiling_keeps_programs_right() {
    let run = |grow: bool| {
        let g = mlp_step(&DIMS, 8, Act::Tanh, Loss::Mse, 0.0, Opt::Sgd(0.1));
        let mut store = VariableStore::new();
        let mut p = Program::with_store(g, Engine::Jit, &gemm_opts(), &mut store).unwrap();
        for (n, t) in kernels(3) {
            store.set(&n, &t).unwrap();
        }
        if grow {
            // Far larger than the store: the allocation moves.
            store
                .register("extra", &lossgraph_ir::TensorType::f32([1 << 20]))
                .unwrap();
        }
        let (x, t) = batch(8, 2);
        let feeds = [("x", Feed::F32(&x)), ("t", Feed::F32(&t))];
        p.run_with(&mut store, &feeds).unwrap();
        p.run_with(&mut store, &feeds).unwrap();
        let k = store
            .get("dense_1/kernel")
            .unwrap()
            .as_f32()
            .unwrap()
            .to_vec();
        (p.output_with(&store, "loss").unwrap().item().unwrap(), k)
    };
    assert_eq!(run(true), run(false));
}
