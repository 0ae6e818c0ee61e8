//! Criterion benches of the kernels that decide the training step's speed:
//! a GEMM call (mnist's first layer and wide's middle layer), a fused
//! elementwise chain, softmax-crossentropy with its gradient, and the Adam
//! update of one kernel (see `lossgraph_cli::bench::kernel_graph`). Each is run
//! on one thread and on the engine's default thread count; the GEMMs also on
//! the `gemm` crate (`…/crate`), the baseline lossgraph's own GEMM replaced.

use criterion::{criterion_group, criterion_main, Criterion};
use lossgraph_cli::bench::{BenchOptions, EngineChoice, GemmImpl, KernelRunner, KERNELS};
use std::time::Duration;

fn kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernel");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for name in KERNELS {
        for threads in [1, 0] {
            let mut k =
                KernelRunner::new(name, EngineChoice::Jit, threads).expect("the kernel compiles");
            k.run().expect("the kernel runs");
            let label = if threads == 1 {
                format!("{name}/1t")
            } else {
                format!("{name}/default")
            };
            group.bench_function(label, |b| b.iter(|| k.run().expect("the kernel runs")));
        }
        if name.starts_with("gemm") {
            let opts = BenchOptions {
                gemm: GemmImpl::Crate,
                ..BenchOptions::default()
            };
            let mut k = KernelRunner::with_options(name, &opts).expect("the kernel compiles");
            k.run().expect("the kernel runs");
            group.bench_function(format!("{name}/crate"), |b| {
                b.iter(|| k.run().expect("the kernel runs"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
