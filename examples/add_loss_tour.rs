//! The `add_loss` programs of Keras's guides, section by section:
//! - "Making new layers and models via subclassing": an
//!   `ActivityRegularizationLayer` nested in an `OuterLayer` (its loss is
//!   collected through the nesting and recomputed on every call);
//! - Keras 2's model-level `model.add_loss(tf.reduce_sum(x1) * 0.1)` on a
//!   symbolic tensor of a functional model ("Training & evaluation with the
//!   built-in methods");
//! - a multi-task model: two outputs with their own losses and
//!   `loss_weights`, an auxiliary added loss and per-output metrics.
//!
//! Run with `cargo run --release --example add_loss_tour`.

// --- model code (counted) ---
use lossgraph::layers::{Dense, Input};
use lossgraph::{CallCtx, CompileOptions, Functional, Layer, Loss, Metric, Model, Optimizer};
use lossgraph::{Result, Sequential, Sublayer, Tensor};

struct ActivityRegularizationLayer {
    rate: f32,
}

impl Layer for ActivityRegularizationLayer {
    fn call(&self, ctx: &mut CallCtx, inputs: &Tensor) -> Result<Tensor> {
        ctx.add_loss(inputs.mean_all() * self.rate);
        Ok(inputs.clone())
    }
}

struct OuterLayer {
    activity_reg: Sublayer<ActivityRegularizationLayer>,
}

impl Layer for OuterLayer {
    fn call(&self, ctx: &mut CallCtx, inputs: &Tensor) -> Result<Tensor> {
        ctx.call(&self.activity_reg, inputs)
    }
}

fn outer_layer() -> OuterLayer {
    OuterLayer {
        activity_reg: Sublayer::new(ActivityRegularizationLayer { rate: 1e-2 }),
    }
}

fn nested_model() -> Result<Model> {
    Sequential::new("nested")
        .add(Input::new(&[4]))
        .add(Dense::new(3))
        .add(outer_layer())
        .build()
}

fn model_level_add_loss() -> Result<Model> {
    let mut f = Functional::new("model_level");
    let inputs = f.input(Input::new(&[8]).name("digits"))?;
    let x1 = f.apply(Dense::new(16).activation("relu").name("dense_1"), &[inputs])?;
    let x2 = f.apply(Dense::new(16).activation("relu").name("dense_2"), &[x1])?;
    let outputs = f.apply(Dense::new(10).name("predictions"), &[x2])?;
    f.add_loss(&[x1], |x1| x1[0].sum_all() * 0.1)?;
    f.build(&[outputs])
}

fn multi_task() -> Result<Model> {
    let mut f = Functional::new("multi_task");
    let pixels = f.input(Input::new(&[8]).name("pixels"))?;
    let h = f.apply(Dense::new(16).activation("relu").name("trunk"), &[pixels])?;
    let h = f.apply(outer_layer(), &[h])?; // the auxiliary loss: 0.01·mean(h)
    let digit = f.apply(Dense::new(3).activation("softmax").name("digit"), &[h])?;
    let ink = f.apply(Dense::new(1).name("ink"), &[h])?;
    let mut model = f.build(&[digit, ink])?;
    model.compile(
        CompileOptions::with_optimizer(Optimizer::adam(0.01))
            .loss_for(
                "digit",
                Loss::SparseCategoricalCrossentropy { from_logits: false },
            )
            .loss_for("ink", Loss::MeanSquaredError)
            .loss_weight("ink", 0.5)
            .metric_for("digit", Metric::Accuracy)
            .metric_for("ink", Metric::MeanAbsoluteError),
    )?;
    Ok(model)
}
// --- end of model code ---

use lossgraph::{FitOptions, HostTensor};

/// Deterministic features in [0, 1) and the targets of the multi-task
/// model: the class of the row's largest of three feature sums, and the
/// row's mean "ink".
fn data(n: usize, salt: usize) -> (HostTensor, HostTensor, HostTensor) {
    let x: Vec<f32> = (0..n * 8)
        .map(|i| ((i * 37 + salt * 13) % 101) as f32 / 101.0)
        .collect();
    let class = |r: &[f32]| {
        let s = [r[0] + r[1], r[2] + r[3] + r[4], r[5] + r[6] + r[7]];
        (0..3).fold(0, |b, k| if s[k] > s[b] { k } else { b }) as i32
    };
    let labels: Vec<i32> = x.chunks(8).map(class).collect();
    let ink: Vec<f32> = x.chunks(8).map(|r| r.iter().sum::<f32>() / 8.0).collect();
    (
        HostTensor::f32(&[n, 8], x).expect("n·8 values"),
        HostTensor::i32(&[n], labels).expect("n labels"),
        HostTensor::f32(&[n, 1], ink).expect("n values"),
    )
}

fn main() -> Result<()> {
    let nested = nested_model()?;
    println!("nested model losses: {:#?}", nested.losses()?);
    let level = model_level_add_loss()?;
    println!("model-level losses: {:#?}", level.losses()?);
    let mut model = multi_task()?;
    print!("{}", model.summary()?);
    let (x, labels, ink) = data(256, 0);
    let history = model.fit(
        &[x],
        &[labels, ink],
        FitOptions::new().epochs(20).batch_size(32),
    )?;
    for k in [
        "loss",
        "digit_loss",
        "ink_loss",
        "outer_layer/activity_regularization_layer/add_loss",
        "digit_accuracy",
        "ink_mae",
    ] {
        println!(
            "{k:>52}: {:.4}",
            history.series(k).last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lossgraph::LossReason;

    fn w(m: &Model, p: &str) -> Vec<f64> {
        m.get_weight(p)
            .unwrap_or_else(|| panic!("no weight {p}"))
            .to_f64()
    }

    /// `x·K + b` over the rows of `x`.
    fn dense(x: &[f64], k: &[f64], b: &[f64]) -> Vec<f64> {
        let (d, di) = (b.len(), k.len() / b.len());
        (0..x.len() / di * d)
            .map(|i| {
                b[i % d]
                    + (0..di)
                        .map(|j| x[i / d * di + j] * k[j * d + i % d])
                        .sum::<f64>()
            })
            .collect()
    }

    fn relu(v: Vec<f64>) -> Vec<f64> {
        v.into_iter().map(|x| x.max(0.0)).collect()
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    fn close(got: Option<f64>, want: f64, what: &str) {
        let got = got.unwrap_or_else(|| panic!("{what}: not logged"));
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{what}: {got} vs {want}"
        );
    }

    #[test]
    fn the_nested_activity_loss_is_collected_and_recomputed_per_call() {
        let mut m = nested_model().unwrap();
        let losses = m.losses().unwrap();
        assert_eq!(losses.len(), 1);
        assert_eq!(losses[0].owner, "outer_layer/activity_regularization_layer");
        m.compile(CompileOptions::new(
            Optimizer::sgd(0.1),
            Loss::MeanSquaredError,
        ))
        .unwrap();
        for salt in [1, 2] {
            let x = HostTensor::f32(
                &[5, 4],
                (0..20)
                    .map(|i| ((i * 7 + salt * 3) % 11) as f32 / 5.0 - 1.0)
                    .collect(),
            )
            .unwrap();
            let y = HostTensor::f32(&[5, 3], vec![0.0; 15]).unwrap();
            let logs = m.evaluate(std::slice::from_ref(&x), &[y], 5).unwrap();
            let h = dense(&x.to_f64(), &w(&m, "dense/kernel"), &w(&m, "dense/bias"));
            close(
                logs.get("outer_layer/activity_regularization_layer/add_loss"),
                0.01 * mean(&h),
                "0.01·mean(h)",
            );
            let mse = mean(&h.iter().map(|v| v * v).collect::<Vec<_>>());
            close(Some(logs.loss()), mse + 0.01 * mean(&h), "total");
        }
    }

    #[test]
    fn a_model_level_loss_on_a_symbolic_tensor() {
        let mut m = model_level_add_loss().unwrap();
        let losses = m.losses().unwrap();
        assert_eq!(
            (losses[0].owner.as_str(), losses[0].reason),
            ("model_level", LossReason::AddLoss)
        );
        m.compile(CompileOptions::new(
            Optimizer::sgd(0.01),
            Loss::SparseCategoricalCrossentropy { from_logits: true },
        ))
        .unwrap();
        let (x, labels, _) = data(6, 3);
        let logs = m.evaluate(std::slice::from_ref(&x), &[labels], 6).unwrap();
        let x1 = relu(dense(
            &x.to_f64(),
            &w(&m, "dense_1/kernel"),
            &w(&m, "dense_1/bias"),
        ));
        close(
            logs.get("model_level/add_loss"),
            0.1 * x1.iter().sum::<f64>(),
            "0.1·Σ x1",
        );
    }

    #[test]
    fn multi_task_total_is_weighted_compiled_plus_added_with_per_output_metrics() {
        let mut m = multi_task().unwrap();
        let (x, labels, ink) = data(12, 5);
        let logs = m
            .evaluate(std::slice::from_ref(&x), &[labels.clone(), ink.clone()], 12)
            .unwrap();
        let h = relu(dense(
            &x.to_f64(),
            &w(&m, "trunk/kernel"),
            &w(&m, "trunk/bias"),
        ));
        let z = dense(&h, &w(&m, "digit/kernel"), &w(&m, "digit/bias"));
        let pi = dense(&h, &w(&m, "ink/kernel"), &w(&m, "ink/bias"));
        let (lab, inkv) = (labels.to_f64(), ink.to_f64());
        let mut ce = 0.0;
        let mut hits = 0.0;
        for (r, row) in z.chunks(3).enumerate() {
            let mx = row.iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = row.iter().map(|v| (v - mx).exp()).sum();
            let p = (row[lab[r] as usize] - mx).exp() / s;
            ce -= p.max(1e-7).ln();
            let arg = (0..3).fold(0, |b, k| if row[k] > row[b] { k } else { b });
            hits += (arg == lab[r] as usize) as u8 as f64;
        }
        let (ce, acc) = (ce / 12.0, hits / 12.0);
        let err: Vec<f64> = pi.iter().zip(&inkv).map(|(p, t)| p - t).collect();
        let mse = mean(&err.iter().map(|e| e * e).collect::<Vec<_>>());
        let mae = mean(&err.iter().map(|e| e.abs()).collect::<Vec<_>>());
        let aux = 0.01 * mean(&h);
        close(logs.get("digit_loss"), ce, "digit_loss");
        close(logs.get("ink_loss"), mse, "ink_loss (unweighted)");
        close(logs.get("digit_accuracy"), acc, "digit_accuracy");
        close(logs.get("ink_mae"), mae, "ink_mae");
        close(
            logs.get("outer_layer/activity_regularization_layer/add_loss"),
            aux,
            "auxiliary",
        );
        close(
            Some(logs.loss()),
            ce + 0.5 * mse + aux,
            "Σ weighted compiled + Σ added",
        );
        assert!(
            logs.get("ink_accuracy").is_none() && logs.get("digit_mae").is_none(),
            "{logs:?}"
        );
        let before = logs.loss();
        m.fit(
            std::slice::from_ref(&x),
            &[labels.clone(), ink.clone()],
            FitOptions::new().epochs(10).batch_size(12).verbose(false),
        )
        .unwrap();
        let after = m.evaluate(&[x], &[labels, ink], 12).unwrap().loss();
        assert!(after < before, "{before} → {after}");
    }
}
