//! Metrics: accuracy variants, mae, mse. Each is emitted as a batch mean
//! (role `metric`, output `metric/<name>`); `fit` averages them over an epoch
//! weighted by batch size, as Keras's `Mean` metrics do.

use crate::error::{Error, Result};
use crate::losses::Loss;
use lossgraph_ir::{DType, Tensor};

/// A metric on one model output.
#[derive(Clone, Debug, PartialEq)]
pub enum Metric {
    /// Keras's `"accuracy"`: resolved from the shapes like Keras — sparse
    /// categorical for integer labels, binary for one-unit outputs, else categorical.
    Accuracy,
    /// `mean(ŷ > threshold == y)`.
    BinaryAccuracy { threshold: f32 },
    /// `mean(argmax ŷ == argmax y)`.
    CategoricalAccuracy,
    /// `mean(argmax ŷ == y)` with integer labels.
    SparseCategoricalAccuracy,
    /// `mean(|y - ŷ|)`.
    MeanAbsoluteError,
    /// `mean((y - ŷ)²)`.
    MeanSquaredError,
}

impl Metric {
    /// Keras metric names (`accuracy`/`acc`, `binary_accuracy`, `categorical_accuracy`,
    /// `sparse_categorical_accuracy`, `mae`, `mse`, …).
    pub fn from_name(name: &str) -> Result<Metric> {
        Ok(match name {
            "accuracy" | "acc" => Metric::Accuracy,
            "binary_accuracy" => Metric::BinaryAccuracy { threshold: 0.5 },
            "categorical_accuracy" => Metric::CategoricalAccuracy,
            "sparse_categorical_accuracy" => Metric::SparseCategoricalAccuracy,
            "mae" | "mean_absolute_error" => Metric::MeanAbsoluteError,
            "mse" | "mean_squared_error" => Metric::MeanSquaredError,
            _ => return Err(Error::config("metric", format!("unknown metric '{name}'"))),
        })
    }

    /// The Keras name (as shown in logs).
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BinaryAccuracy { .. } => "binary_accuracy",
            Metric::CategoricalAccuracy => "categorical_accuracy",
            Metric::SparseCategoricalAccuracy => "sparse_categorical_accuracy",
            Metric::MeanAbsoluteError => "mae",
            Metric::MeanSquaredError => "mse",
        }
    }

    /// Resolves `Accuracy` for this loss and these types, as Keras's `get_metric` does.
    pub fn resolve(&self, loss: &Loss, y_true: &Tensor, y_pred: &Tensor) -> Metric {
        if *self != Metric::Accuracy {
            return self.clone();
        }
        let last = y_pred.shape().last().copied().unwrap_or(1);
        if y_true.dtype() == DType::I32
            || matches!(loss, Loss::SparseCategoricalCrossentropy { .. })
            || (y_true.rank() < y_pred.rank())
        {
            Metric::SparseCategoricalAccuracy
        } else if last == 1 {
            Metric::BinaryAccuracy { threshold: 0.5 }
        } else {
            Metric::CategoricalAccuracy
        }
    }

    /// Emits the batch mean of the metric (call [`Metric::resolve`] first for `Accuracy`).
    pub fn emit(&self, y_true: &Tensor, y_pred: &Tensor) -> Tensor {
        match self {
            Metric::Accuracy | Metric::CategoricalAccuracy => {
                y_pred.argmax(-1).eq(y_true.argmax(-1)).mean_all()
            }
            Metric::SparseCategoricalAccuracy => {
                let labels = if y_true.dtype() == DType::I32 {
                    y_true.clone()
                } else {
                    y_true.cast(DType::I32)
                };
                let pred = y_pred.argmax(-1);
                let labels = labels.reshape(pred.shape());
                pred.eq(&labels).mean_all()
            }
            Metric::BinaryAccuracy { threshold } => y_pred.gt(*threshold).eq(y_true).mean_all(),
            Metric::MeanAbsoluteError => (y_true - y_pred).abs().mean_all(),
            Metric::MeanSquaredError => {
                let e = y_true - y_pred;
                (&e * &e).mean_all()
            }
        }
    }
}
