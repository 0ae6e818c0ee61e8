//! Horizontal fusion is bounded: the size of every kernel (and so of every
//! Cranelift function) stays independent of the model's size, which keeps
//! compile time linear in it (an unbounded optimiser-update kernel made the
//! register allocator superlinear: 1000 `Dense(4)` layers took 11 s).

use lossgraph_compiler::fusion::{self, FusionOptions, KernelKind, MAX_ROOTS};
use lossgraph_ir::{Builder, TensorType};

/// `n` same-shape elementwise updates `w_i - lr·w_i`, each reading only leaves,
/// so every one of them may join any earlier update kernel.
fn updates(n: usize) -> lossgraph_ir::Graph {
    let b = Builder::new("updates");
    let lr = b.input("lr", TensorType::f32([4, 4]));
    for i in 0..n {
        let w = b.param(&format!("w{i}"), TensorType::f32([4, 4]));
        let u = &w - &(&lr * &w);
        b.output(&format!("u{i}"), &u);
    }
    b.finish().unwrap()
}

#[test]
fn same_shape_updates_fuse_in_chunks_of_max_roots() {
    for n in [1, MAX_ROOTS, MAX_ROOTS + 1, 5 * MAX_ROOTS + 3] {
        let plan = fusion::plan(&updates(n), &FusionOptions::default()).unwrap();
        let sizes: Vec<usize> = plan.kernels.iter().map(|k| k.roots.len()).collect();
        assert!(plan
            .kernels
            .iter()
            .all(|k| k.kind == KernelKind::Elementwise));
        // Hand-computed: full chunks of MAX_ROOTS, then the remainder.
        let mut want = vec![MAX_ROOTS; n / MAX_ROOTS];
        if n % MAX_ROOTS != 0 {
            want.push(n % MAX_ROOTS);
        }
        assert_eq!(sizes, want, "n = {n}");
        // Each update root is stored exactly once.
        assert_eq!(sizes.iter().sum::<usize>(), n);
    }
}

#[test]
fn work_per_kernel_is_independent_of_the_model_size() {
    // The nodes a kernel evaluates (roots and inlined) bound its function's size.
    let largest = |n: usize| {
        let plan = fusion::plan(&updates(n), &FusionOptions::default()).unwrap();
        plan.kernels
            .iter()
            .map(|k| k.roots.len() + k.inlined.len())
            .max()
            .unwrap()
    };
    assert_eq!(largest(10 * MAX_ROOTS), largest(100 * MAX_ROOTS));
}
