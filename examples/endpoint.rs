//! Keras's endpoint-layer pattern (guide "Training & evaluation with the
//! built-in methods"): a `LogisticEndpoint` layer takes targets and logits,
//! adds the binary crossentropy with `add_loss` and returns the predictions.
//! The model is compiled with an optimizer only and fit without `y`: the
//! targets are a model input.
//!
//! Run with `cargo run --release --example endpoint`.

// --- model code (counted) ---
use lossgraph::ir::nn::softmax;
use lossgraph::layers::{Dense, Input};
use lossgraph::{
    CallCtx, CompileOptions, Functional, Layer, Loss, Model, Optimizer, Result, Tensor,
};

struct LogisticEndpoint;

impl Layer for LogisticEndpoint {
    fn name(&self) -> Option<&str> {
        Some("predictions")
    }
    fn call_multi(&self, ctx: &mut CallCtx, inputs: &[Tensor]) -> Result<Tensor> {
        let (targets, logits) = (&inputs[0], &inputs[1]);
        ctx.add_loss(Loss::BinaryCrossentropy { from_logits: true }.emit(targets, logits));
        Ok(softmax(logits, -1))
    }
}

fn endpoint_model() -> Result<Model> {
    let mut f = Functional::new("endpoint");
    let inputs = f.input(Input::new(&[3]).name("inputs"))?;
    let targets = f.input(Input::new(&[10]).name("targets"))?;
    let logits = f.apply(Dense::new(10), &[inputs])?;
    let predictions = f.apply(LogisticEndpoint, &[targets, logits])?;
    let mut model = f.build(&[predictions])?;
    model.compile(CompileOptions::with_optimizer(Optimizer::adam(0.001)))?; // No loss argument!
    Ok(model)
}
// --- end of model code ---

/// Deterministic stand-ins for Keras's `np.random.random` data.
fn data(n: usize) -> [lossgraph::HostTensor; 2] {
    let u = |k: usize, salt: usize| (0..n * k).map(move |i| ((i * 37 + salt) % 101) as f32 / 101.0);
    [
        lossgraph::HostTensor::f32(&[n, 3], u(3, 0).collect()).expect("n·3 values"),
        lossgraph::HostTensor::f32(&[n, 10], u(10, 7).collect()).expect("n·10 values"),
    ]
}

fn main() -> Result<()> {
    let mut model = endpoint_model()?;
    let x = data(3);
    let history = model.fit(&x, &[], lossgraph::FitOptions::new().epochs(5))?;
    println!("loss per epoch: {:?}", history.series("loss"));
    println!("predictions: {:?}", model.predict(&x, 3)?[0].to_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keras's `BinaryCrossentropy(from_logits=True)`: the mean over every
    /// element of `max(z, 0) − z·t + log(1 + e^−|z|)`.
    fn bce(t: &[f64], z: &[f64]) -> f64 {
        let s: f64 = t
            .iter()
            .zip(z)
            .map(|(t, z)| z.max(0.0) - z * t + (1.0 + (-z.abs()).exp()).ln())
            .sum();
        s / t.len() as f64
    }

    #[test]
    fn the_loss_is_the_endpoints_bce_recomputed_per_call() {
        let mut model = endpoint_model().unwrap();
        let x = data(3);
        let (xv, tv) = (x[0].to_f64(), x[1].to_f64());
        for step in 0..3 {
            let k = model.get_weight("dense/kernel").unwrap().to_f64();
            let b = model.get_weight("dense/bias").unwrap().to_f64();
            let z: Vec<f64> = (0..30)
                .map(|i| {
                    b[i % 10]
                        + (0..3)
                            .map(|j| xv[i / 10 * 3 + j] * k[j * 10 + i % 10])
                            .sum::<f64>()
                })
                .collect();
            let want = bce(&tv, &z);
            // train_on_batch reports the loss at the weights before its update.
            let got = model.train_on_batch(&x, &[]).unwrap();
            assert!(
                (got.loss() - want).abs() < 1e-5,
                "step {step}: {} vs {want}",
                got.loss()
            );
            let added = got.get("predictions/add_loss").unwrap();
            assert!(
                (added - want).abs() < 1e-5,
                "the loss is all added: {added}"
            );
        }
        let p = model.predict(&x, 3).unwrap()[0].to_f64();
        for row in p.chunks(10) {
            assert!(
                (row.iter().sum::<f64>() - 1.0).abs() < 1e-5,
                "softmax rows: {row:?}"
            );
        }
    }
}
