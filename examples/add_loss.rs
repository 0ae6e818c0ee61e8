//! The seed example: Keras's `CustomDenseLayer` with an L1 penalty added via
//! `add_loss` in `build`, trained with `fit` (progress bar with the loss breakdown).
//!
//! Run with `cargo run --release --example add_loss`.

use lossgraph::layers::{Dense, Input};
use lossgraph::{
    BuildCtx, CallCtx, CompileOptions, FitOptions, HostTensor, Init, Layer, Loss, Metric,
    Optimizer, Result, Sequential, Tensor, Validation,
};

struct CustomDenseLayer {
    units: usize,
}

impl CustomDenseLayer {
    fn new(units: usize) -> Self {
        CustomDenseLayer { units }
    }
}

impl Layer for CustomDenseLayer {
    fn build(&mut self, ctx: &mut BuildCtx, input_shape: &[usize]) -> Result<()> {
        let in_features = input_shape[input_shape.len() - 1];
        ctx.add_weight(
            "kernel",
            &[in_features, self.units],
            Init::RandomNormal,
            true,
        )?;
        ctx.add_weight("bias", &[self.units], Init::Zeros, true)?;
        // Add a custom loss term (e.g. L1 regularisation).
        ctx.add_loss(|w| w.weight("kernel").abs().sum_all() * 0.01);
        Ok(())
    }

    fn call(&self, ctx: &mut CallCtx, inputs: &Tensor) -> Result<Tensor> {
        Ok(inputs.matmul(ctx.weight("kernel")) + ctx.weight("bias"))
    }
}

fn main() -> Result<()> {
    let mut model = Sequential::new("seed")
        .add(Input::new(&[3]))
        .add(CustomDenseLayer::new(4))
        .add(Dense::new(2).activation("softmax"))
        .build()?;
    model.compile(
        CompileOptions::new(
            Optimizer::from_name("adam")?,
            Loss::from_name("sparse_categorical_crossentropy")?,
        )
        .metric(Metric::Accuracy),
    )?;
    println!("Custom loss terms added: {:#?}", model.losses()?);
    print!("{}", model.summary()?);

    // Class 1 when x0 + x1 - x2 > 0, on a fixed grid of points.
    let n = 512;
    let x: Vec<f32> = (0..n * 3)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let y: Vec<i32> = (0..n)
        .map(|i| (x[3 * i] + x[3 * i + 1] - x[3 * i + 2] > 0.0) as i32)
        .collect();
    let x = HostTensor::f32(&[n, 3], x).expect("n·3 values");
    let y = HostTensor::i32(&[n], y).expect("n labels");
    let history = model.fit(
        &[x],
        &[y],
        FitOptions::new()
            .epochs(10)
            .batch_size(32)
            .validation(Validation::Split(0.2)),
    )?;
    println!("loss per epoch: {:?}", history.series("loss"));
    Ok(())
}
