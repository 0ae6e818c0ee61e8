//! The variational autoencoder of Keras's guide "Making new layers and
//! models via subclassing" (model code in `cli/src/vae.rs`, beside the
//! Keras original in the README), trained on the embedded digits
//! (`original_dim` = 64) with `compile(Adam, MSE)` + the KL `add_loss`.
//!
//! Run with `cargo run --release --example vae`; `lossgraph demo vae` also
//! writes the loss curves and decoded samples.

use lossgraph::{CompileOptions, FitOptions, HostTensor, Loss, Optimizer, Result};
use lossgraph_cli::{digits, vae::vae};

fn digits_tensor(n: Option<usize>) -> Result<HostTensor> {
    let d = digits::load().map_err(|m| lossgraph::Error::data("digits", m))?;
    let n = n.unwrap_or(d.len()).min(d.len());
    let x = d.x[..n * digits::FEATURES].to_vec();
    HostTensor::f32(&[n, digits::FEATURES], x)
        .ok_or_else(|| lossgraph::Error::data("digits", "shape"))
}

fn main() -> Result<()> {
    let original_dim = digits::FEATURES;
    let mut model = vae(original_dim, 64, 16, 0)?;
    model.compile(CompileOptions::new(
        Optimizer::adam(1e-3),
        Loss::MeanSquaredError,
    ))?;
    let x = digits_tensor(None)?;
    let history = model.fit(
        std::slice::from_ref(&x),
        std::slice::from_ref(&x),
        FitOptions::new().epochs(20).batch_size(64),
    )?;
    for (k, name) in [
        ("total", "loss"),
        ("reconstruction", "compiled_loss"),
        ("KL", "variational_auto_encoder/add_loss"),
    ] {
        println!(
            "{k:>14}: {:?}",
            history
                .series(name)
                .iter()
                .map(|v| format!("{v:.4}"))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(m: &lossgraph::Model, p: &str) -> Vec<f64> {
        m.get_weight(&format!("variational_auto_encoder/encoder/{p}"))
            .unwrap_or_else(|| panic!("no weight {p}"))
            .to_f64()
    }

    /// `x·K + b` over `n` rows.
    fn dense(x: &[f64], k: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let (di, d) = (k.len() / b.len(), b.len());
        (0..n * d)
            .map(|i| {
                b[i % d]
                    + (0..di)
                        .map(|j| x[i / d * di + j] * k[j * d + i % d])
                        .sum::<f64>()
            })
            .collect()
    }

    #[test]
    fn weights_nest_under_their_layers_and_the_kl_term_matches_a_hand_computation() {
        let mut m = vae(digits::FEATURES, 64, 4, 0).unwrap();
        let shapes: Vec<(String, Vec<usize>)> = m
            .variables()
            .iter()
            .map(|v| (v.path.clone(), v.ty.shape.to_vec()))
            .collect();
        let enc = "variational_auto_encoder/encoder";
        let dec = "variational_auto_encoder/decoder";
        assert_eq!(
            shapes[..6],
            [
                (format!("{enc}/dense/kernel"), vec![64, 64]),
                (format!("{enc}/dense/bias"), vec![64]),
                (format!("{enc}/dense_1/kernel"), vec![64, 4]),
                (format!("{enc}/dense_1/bias"), vec![4]),
                (format!("{enc}/dense_2/kernel"), vec![64, 4]),
                (format!("{enc}/dense_2/bias"), vec![4]),
            ]
        );
        assert_eq!(shapes[6].0, format!("{dec}/dense/kernel"));
        assert_eq!(shapes[8], (format!("{dec}/dense_1/kernel"), vec![64, 64]));
        m.compile(CompileOptions::new(
            Optimizer::adam(1e-3),
            Loss::MeanSquaredError,
        ))
        .unwrap();
        let n = 32;
        let x = digits_tensor(Some(n)).unwrap();
        for _ in 0..2 {
            let logs = m
                .evaluate(std::slice::from_ref(&x), std::slice::from_ref(&x), n)
                .unwrap();
            let h: Vec<f64> = dense(&x.to_f64(), &w(&m, "dense/kernel"), &w(&m, "dense/bias"), n)
                .into_iter()
                .map(|v| v.max(0.0))
                .collect();
            let mu = dense(&h, &w(&m, "dense_1/kernel"), &w(&m, "dense_1/bias"), n);
            let lv = dense(&h, &w(&m, "dense_2/kernel"), &w(&m, "dense_2/bias"), n);
            let kl = -0.5
                * mu.iter()
                    .zip(&lv)
                    .map(|(m, l)| l - m * m - l.exp() + 1.0)
                    .sum::<f64>()
                / mu.len() as f64;
            let got = logs.get("variational_auto_encoder/add_loss").unwrap();
            assert!((got - kl).abs() < 1e-5 * (1.0 + kl), "KL {got} vs {kl}");
            let total = logs.get("compiled_loss").unwrap() + got;
            assert!(
                (logs.loss() - total).abs() < 1e-6,
                "loss = reconstruction + KL"
            );
            m.fit(
                std::slice::from_ref(&x),
                std::slice::from_ref(&x),
                FitOptions::new().epochs(3).batch_size(16).verbose(false),
            )
            .unwrap();
        }
    }
}
