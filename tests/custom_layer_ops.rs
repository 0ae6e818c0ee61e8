//! A custom layer built from the `sin` and `pow` primitives (issue 14): its
//! output and its gradient (through one SGD step) against values computed
//! by hand from the formulas, in f64.

use lossgraph::layers::Input;
use lossgraph::{
    BuildCtx, CallCtx, CompileOptions, HostTensor, Init, Layer, Loss, Optimizer, Result,
    Sequential, Tensor,
};

/// `y = sin(w·x) + x^w` per feature, with one weight per feature.
struct Wave;

impl Layer for Wave {
    fn build(&mut self, ctx: &mut BuildCtx, shape: &[usize]) -> Result<()> {
        ctx.add_weight("w", &[shape[0]], Init::Ones, true)?;
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx, x: &Tensor) -> Result<Tensor> {
        let w = ctx.weight("w");
        Ok((x * w).sin() + x.pow(w))
    }
}

fn ht(shape: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::f32(shape, v.to_vec()).unwrap()
}

#[test]
fn custom_layer_with_sin_and_pow_matches_hand_values_and_gradient() {
    let mut m = Sequential::new("m")
        .add(Input::new(&[2]))
        .add(Wave)
        .build()
        .unwrap();
    let (x, w) = ([0.5f64, 2.0], [1.5f64, 0.5]);
    m.set_weight("wave/w", ht(&[2], &[w[0] as f32, w[1] as f32]))
        .unwrap();
    let xs = ht(&[1, 2], &[x[0] as f32, x[1] as f32]);
    // y_i = sin(x_i·w_i) + x_i^w_i: sin(0.75) + 0.5^1.5 and sin(1) + √2.
    let want = [
        0.75f64.sin() + 0.5f64.powf(1.5),
        1.0f64.sin() + std::f64::consts::SQRT_2,
    ];
    let got = m.predict(std::slice::from_ref(&xs), 1).unwrap();
    let got = got[0].as_f32().unwrap();
    for i in 0..2 {
        assert!(
            (f64::from(got[i]) - want[i]).abs() < 1e-6,
            "y[{i}] = {}, want {}",
            got[i],
            want[i]
        );
    }
    // MSE against 0: L = (y₀² + y₁²)/2, dL/dw_i = y_i·(x_i·cos(x_i·w_i) + ln(x_i)·x_i^w_i);
    // one SGD step with rate 0.1 moves w by -0.1·dL/dw.
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let logs = m
        .train_on_batch(&[xs], &[ht(&[1, 2], &[0.0, 0.0])])
        .unwrap();
    let loss = (want[0] * want[0] + want[1] * want[1]) / 2.0;
    let got_loss = logs.get("loss").unwrap();
    assert!(
        (got_loss - loss).abs() < 1e-5,
        "loss {got_loss}, want {loss}"
    );
    let w1 = m.get_weight("wave/w").unwrap();
    let w1 = w1.as_f32().unwrap();
    for i in 0..2 {
        let grad = want[i] * (x[i] * (x[i] * w[i]).cos() + x[i].ln() * x[i].powf(w[i]));
        let want_w = w[i] - 0.1 * grad;
        assert!(
            (f64::from(w1[i]) - want_w).abs() < 1e-5,
            "w[{i}] after one step = {}, want {want_w} (gradient {grad})",
            w1[i]
        );
    }
}
