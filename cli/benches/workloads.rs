//! Criterion benches of the four standard training steps (`tiny`, `mnist`,
//! `wide`, `cnn` of shared/bench/WORKLOADS.md), built through the front end and
//! compiled by the JIT. Short by default (10 samples); the figures that go
//! into the README come from `lossgraph bench` and `benches/compare.sh`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lossgraph_cli::bench::{workload, EngineChoice, Session};
use std::time::Duration;

fn steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for name in ["tiny", "mnist", "wide", "cnn"] {
        let w = workload(name).expect("a standard workload");
        let mut s = Session::new(w, EngineChoice::Jit, 0).expect("the workload compiles");
        s.run(5).expect("warm-up steps run");
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| b.iter(|| s.step().expect("a step runs")));
    }
    group.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
