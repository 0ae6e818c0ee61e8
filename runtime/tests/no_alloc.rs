//! A JIT training step performs no heap allocation: counted with a global
//! allocator over many steps, single- and two-threaded, with every matmul a
//! JIT kernel and with every matmul on lossgraph's GEMM (which packs into
//! arena workspace). The `gemm` crate, the fallback on hosts without
//! AVX-512, allocates packing buffers per call and is not covered.

mod common;

use common::{init_params, mlp_step, Act, Loss, Opt, Rng};
use lossgraph_runtime::{Feed, GemmImpl, JitOptions, Program};
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

#[test]
fn training_steps_do_not_allocate() {
    let dims = [8, 32, 32, 1];
    let g = mlp_step(&dims, 32, Act::Tanh, Loss::Mse, 1e-4, Opt::Adam(1e-3));
    let mut configs = vec![(1, usize::MAX), (2, usize::MAX)];
    if has_avx512() {
        // Every matmul on lossgraph's GEMM, each split across both threads.
        configs.extend([(1, 0), (2, 0)]);
    } else {
        eprintln!("no AVX-512: lossgraph's GEMM path not checked on this host");
    }
    for (threads, inline_max) in configs {
        let mut opts = JitOptions {
            threads,
            split_min_work: 0,
            gemm_min_flops: 0,
            gemm: GemmImpl::Lossgraph,
            ..JitOptions::default()
        };
        opts.body.inline_matmul_max = inline_max;
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
