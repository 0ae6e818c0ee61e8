//! Measures the training-step cost of added losses (used by `docs/add_loss.md`).
//!
//! `cargo run --release --example add_loss_cost [steps]`
//!
//! One MLP (64 → 256 → 256 → 10, batch 128, Adam, JIT engine) in five
//! variants: no added loss; an L1 kernel penalty added with `add_loss` in
//! `build` (the seed's custom layer); an L2 activity regulariser; a custom
//! loss added in `call` (a penalty on the mean activation); all three. Prints
//! the median step time of each and its ratio to the baseline.

use lossgraph::layers::{Dense, Input};
use lossgraph::{
    BuildCtx, CallCtx, CompileOptions, Engine, HostTensor, Init, Layer, Loss, Optimizer,
    Regularizer, Result, Sequential, Tensor,
};
use std::time::Instant;

/// Dense + ReLU whose optional extras are the added losses under test.
struct Hidden {
    units: usize,
    l1_kernel: Option<f32>,
    custom: Option<f32>,
}

impl Layer for Hidden {
    fn class_name(&self) -> String {
        "Hidden".into()
    }

    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let fan_in = input_shape.last().copied().unwrap_or(1);
        ctx.add_weight("kernel", &[fan_in, self.units], Init::GlorotUniform, true)?;
        ctx.add_weight("bias", &[self.units], Init::Zeros, true)?;
        if let Some(a) = self.l1_kernel {
            ctx.add_loss(move |w| w.weight("kernel").abs().sum_all() * a);
        }
        Ok(())
    }

    fn call(&self, ctx: &mut CallCtx<'_>, x: &Tensor) -> Result<Tensor> {
        let h = (x.matmul(ctx.weight("kernel")) + ctx.weight("bias")).maximum(0.0);
        if let Some(c) = self.custom {
            // A custom loss on activations: push the mean activation towards 0.1.
            let m = h.mean_all() - 0.1;
            ctx.add_loss(&m * &m * c);
        }
        Ok(h)
    }
}

struct Dense2 {
    inner: Hidden,
    activity: Option<Regularizer>,
}

impl Layer for Dense2 {
    fn class_name(&self) -> String {
        "Hidden".into()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, s: &[usize]) -> Result<()> {
        self.inner.build(ctx, s)
    }
    fn call(&self, ctx: &mut CallCtx<'_>, x: &Tensor) -> Result<Tensor> {
        self.inner.call(ctx, x)
    }
    fn activity_regularizer(&self) -> Option<&Regularizer> {
        self.activity.as_ref()
    }
}

fn model(l1: bool, activity: bool, custom: bool) -> Result<lossgraph::Model> {
    let hidden = |_: usize| Dense2 {
        inner: Hidden {
            units: 256,
            l1_kernel: l1.then_some(1e-5),
            custom: custom.then_some(1e-3),
        },
        activity: activity.then_some(Regularizer::L2(1e-5)),
    };
    let mut m = Sequential::new("cost")
        .seed(1)
        .add(Input::new(&[64]))
        .add(hidden(0))
        .add(hidden(1))
        .add(Dense::new(10))
        .build()?;
    m.compile(
        CompileOptions::new(
            Optimizer::adam(1e-3),
            Loss::SparseCategoricalCrossentropy { from_logits: true },
        )
        .engine(Engine::Jit),
    )?;
    Ok(m)
}

fn main() -> Result<()> {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let batch = 128;
    let x = HostTensor::f32(
        &[batch, 64],
        (0..batch * 64)
            .map(|i| ((i * 37) % 17) as f32 / 16.0)
            .collect(),
    )
    .expect("batch×64 values");
    let y = HostTensor::i32(&[batch], (0..batch).map(|i| (i % 10) as i32).collect())
        .expect("batch labels");
    let (xs, ys) = (vec![x], vec![y]);
    let variants = [
        ("no added loss", false, false, false),
        ("L1 kernel via add_loss (build)", true, false, false),
        ("L2 activity regularizer", false, true, false),
        ("custom loss via add_loss (call)", false, false, true),
        ("all three", true, true, true),
    ];
    // Variants are timed in interleaved rounds and each keeps its best round
    // median, so load from other processes affects all of them alike.
    let mut models = Vec::new();
    for (_, l1, act, custom) in variants {
        let mut m = model(l1, act, custom)?;
        for _ in 0..20 {
            m.train_on_batch(&xs, &ys)?;
        }
        models.push(m);
    }
    let rounds = 10;
    let per_round = steps.div_ceil(rounds).max(1);
    let mut best = vec![f64::INFINITY; models.len()];
    for _ in 0..rounds {
        for (i, m) in models.iter_mut().enumerate() {
            let mut times = Vec::with_capacity(per_round);
            for _ in 0..per_round {
                let t = Instant::now();
                m.train_on_batch(&xs, &ys)?;
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            best[i] = best[i].min(times[times.len() / 2]);
        }
    }
    println!("MLP 64-256-256-10, batch {batch}, Adam, JIT; best of {rounds} interleaved round medians, {per_round} steps each");
    println!("| variant | added losses | step time (µs) | ratio |");
    println!("| --- | --- | --- | --- |");
    for (i, (name, ..)) in variants.iter().enumerate() {
        let n_added = models[i].losses()?.len();
        println!(
            "| {name} | {n_added} | {:.0} | {:.3} |",
            best[i],
            best[i] / best[0]
        );
    }
    Ok(())
}
