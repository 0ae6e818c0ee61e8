//! Measures `fit` step time of a 64-128-10 MLP (batch 32) on each engine.
//!
//! Run with `cargo run --release --example step_timing`.

use lossgraph::layers::{Dense, Input};
use lossgraph::{
    CompileOptions, Engine, FitOptions, HostTensor, Loss, Optimizer, Regularizer, Sequential,
};
use std::time::Instant;

fn main() -> lossgraph::Result<()> {
    let n = 1024;
    let x: Vec<f32> = (0..n * 64)
        .map(|i| ((i * 7919 % 1000) as f32) / 1000.0)
        .collect();
    let y: Vec<i32> = (0..n).map(|i| (i % 10) as i32).collect();
    let xs = [HostTensor::f32(&[n, 64], x).expect("n·64 values")];
    let ys = [HostTensor::i32(&[n], y).expect("n labels")];
    for engine in [Engine::Interpreter, Engine::Jit] {
        let mut m = Sequential::new("mlp")
            .add(Input::new(&[64]))
            .add(
                Dense::new(128)
                    .activation("relu")
                    .kernel_regularizer(Regularizer::L2(1e-4)),
            )
            .add(Dense::new(10))
            .build()?;
        m.compile(
            CompileOptions::new(
                Optimizer::adam(1e-3),
                Loss::SparseCategoricalCrossentropy { from_logits: true },
            )
            .engine(engine),
        )?;
        // First epoch includes compilation.
        let t0 = Instant::now();
        m.fit(
            &xs,
            &ys,
            FitOptions::new().epochs(1).batch_size(32).verbose(false),
        )?;
        let first = t0.elapsed();
        let t1 = Instant::now();
        let epochs = 5;
        let h = m.fit(
            &xs,
            &ys,
            FitOptions::new()
                .epochs(epochs)
                .batch_size(32)
                .verbose(false),
        )?;
        let per_step = t1.elapsed().as_secs_f64() / (epochs * n / 32) as f64;
        println!(
            "{engine:?}: first epoch (with compile) {:.3}s, then {:.1} µs/step, loss {:.4}",
            first.as_secs_f64(),
            per_step * 1e6,
            h.series("loss").last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
