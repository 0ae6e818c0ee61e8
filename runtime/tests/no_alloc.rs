//! A JIT training step performs no heap allocation: counted with a global
//! allocator over many steps, single- and two-threaded, with every matmul a
//! JIT kernel and with every matmul on lossgraph's GEMM (which packs into
//! arena workspace). The `gemm` crate, the fallback on hosts without
//! AVX-512, allocates packing buffers per call and is not covered. Programs
//! on one shared variable store, switched every step, do not allocate either.

mod common;

use common::{init_params, mlp_step, Act, Loss, Opt, Rng};
use lossgraph_runtime::{Engine, Feed, GemmImpl, JitOptions, Program, VariableStore};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Whether this host runs lossgraph's GEMM (AVX-512F).
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `(threads, inline_matmul_max)` to check: JIT matmul loops, and (with
/// AVX-512) every matmul on lossgraph's GEMM, each split across both threads.
fn configs() -> Vec<(usize, usize)> {
    let mut configs = vec![(1, usize::MAX), (2, usize::MAX)];
    if has_avx512() {
        configs.extend([(1, 0), (2, 0)]);
    } else {
        eprintln!("no AVX-512: lossgraph's GEMM path not checked on this host");
    }
    configs
}

fn options(threads: usize, inline_max: usize) -> JitOptions {
    let mut opts = JitOptions {
        threads,
        split_min_work: 0,
        gemm_min_flops: 0,
        gemm: GemmImpl::Lossgraph,
        ..JitOptions::default()
    };
    opts.body.inline_matmul_max = inline_max;
    opts
}

/// The one test of this binary: the allocation counter is global and
/// counts every thread, the test harness's too — it allocates when it
/// reports a finished test, so a second test finishing while one counts
/// would be counted (seen: 4 allocations in 200 steps). The checks run in
/// turn inside this test.
#[test]
fn jit_steps_do_not_allocate() {
    training_steps_do_not_allocate();
    switching_programs_on_a_shared_store_does_not_allocate();
    id_checking_steps_do_not_allocate();
}

fn training_steps_do_not_allocate() {
    let dims = [8, 32, 32, 1];
    let g = mlp_step(&dims, 32, Act::Tanh, Loss::Mse, 1e-4, Opt::Adam(1e-3));
    for (threads, inline_max) in configs() {
        let opts = options(threads, inline_max);
        let mut p = Program::new_jit(g.clone(), &opts).unwrap();
        assert_eq!(
            p.compile_stats().map_or(0, |s| s.gemms) > 0,
            inline_max == 0
        );
        init_params(&mut p, &dims, 1);
        let mut rng = Rng::new(9);
        let x: Vec<f32> = (0..32 * 8).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let t: Vec<f32> = (0..32).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let feeds = [("x", Feed::F32(&x)), ("t", Feed::F32(&t))];
        p.run(&feeds).unwrap(); // warm-up (thread start-up)
        let before = ALLOCS.load(Ordering::SeqCst);
        let mut loss = 0.0;
        for _ in 0..200 {
            p.run(&feeds).unwrap();
            loss = p.output("loss").unwrap().as_f32().unwrap()[0];
        }
        let after = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(
            after - before,
            0,
            "threads={threads} inline_max={inline_max}: allocations during 200 steps"
        );
        assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    }
}

fn switching_programs_on_a_shared_store_does_not_allocate() {
    let dims = [8, 32, 32, 1];
    let big = mlp_step(&dims, 32, Act::Tanh, Loss::Mse, 1e-4, Opt::Adam(1e-3));
    let small = mlp_step(&dims, 8, Act::Tanh, Loss::Mse, 1e-4, Opt::Adam(1e-3));
    for (threads, inline_max) in configs() {
        let opts = options(threads, inline_max);
        let mut store = VariableStore::new();
        let mut p32 = Program::with_store(big.clone(), Engine::Jit, &opts, &mut store).unwrap();
        let mut p8 = Program::with_store(small.clone(), Engine::Jit, &opts, &mut store).unwrap();
        let mut rng = Rng::new(3);
        let w: Vec<f32> = (0..8 * 32).map(|_| rng.uniform(-0.5, 0.5)).collect();
        store
            .set(
                "dense_0/kernel",
                &lossgraph_runtime::HostTensor::f32(&[8, 32], w).unwrap(),
            )
            .unwrap();
        let x: Vec<f32> = (0..32 * 8).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let t: Vec<f32> = (0..32).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let f32s = [("x", Feed::F32(&x)), ("t", Feed::F32(&t))];
        let f8s = [("x", Feed::F32(&x[..8 * 8])), ("t", Feed::F32(&t[..8]))];
        p32.run_with(&mut store, &f32s).unwrap(); // warm-up (thread start-up)
        p8.run_with(&mut store, &f8s).unwrap();
        let before = ALLOCS.load(Ordering::SeqCst);
        let mut loss = 0.0;
        for _ in 0..100 {
            p32.run_with(&mut store, &f32s).unwrap();
            p8.run_with(&mut store, &f8s).unwrap();
            loss = p8.output_with(&store, "loss").unwrap().as_f32().unwrap()[0];
        }
        let after = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(
            after - before,
            0,
            "threads={threads} inline_max={inline_max}: allocations during 200 switched steps"
        );
        assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    }
}

/// A step whose gather and scatter_add check computed ids (the fault slots
/// are looked at after each such kernel) allocates nothing either.
fn id_checking_steps_do_not_allocate() {
    let b = lossgraph_ir::Builder::new("emb");
    let x = b.input("x", lossgraph_ir::TensorType::f32([16, 4]));
    let table = b.param("table", lossgraph_ir::TensorType::f32([10, 8]));
    let ids = (x * 9.0).cast(lossgraph_ir::DType::I32);
    let rows = table.gather(&ids);
    let grad = rows.scatter_add(&ids, 10);
    b.output(
        &lossgraph_ir::names::update("table"),
        &(table - grad * 0.01),
    );
    let g = b.finish().unwrap();
    for (threads, inline_max) in configs() {
        let mut p = Program::new_jit(g.clone(), &options(threads, inline_max)).unwrap();
        let mut rng = Rng::new(3);
        let x: Vec<f32> = (0..64).map(|_| rng.uniform(0.0, 1.0)).collect();
        let feeds = [("x", Feed::F32(&x))];
        p.run(&feeds).unwrap();
        let before = ALLOCS.load(Ordering::SeqCst);
        for _ in 0..200 {
            p.run(&feeds).unwrap();
        }
        let after = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(
            after - before,
            0,
            "threads={threads}: allocations during 200 steps"
        );
    }
}
