//! Metrics: accuracy variants, mae, mse. Each is emitted as a batch mean
//! (role `metric`, output `metric/<name>`); `fit` averages them over an epoch
//! weighted by batch size, as Keras's `Mean` metrics do.

use crate::error::{Error, Result};
use crate::losses::{Loss, LossFn};
use lossgraph_ir::{DType, Tensor};
use std::fmt;
use std::rc::Rc;

/// A metric on one model output.
#[derive(Clone)]
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
    /// A closure `f(y_true, y_pred)` (Keras's custom metric function),
    /// logged under `name`; a non-scalar result is averaged.
    Custom { name: String, f: LossFn },
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::BinaryAccuracy { threshold } => {
                write!(f, "BinaryAccuracy {{ threshold: {threshold} }}")
            }
            Metric::Custom { name, .. } => write!(f, "Custom({name})"),
            Metric::Accuracy
            | Metric::CategoricalAccuracy
            | Metric::SparseCategoricalAccuracy
            | Metric::MeanAbsoluteError
            | Metric::MeanSquaredError => f.write_str(self.name()),
        }
    }
}

/// Built-in metrics compare by kind; custom ones by name and closure identity.
impl PartialEq for Metric {
    fn eq(&self, other: &Metric) -> bool {
        match (self, other) {
            (Metric::Custom { name: a, f: fa }, Metric::Custom { name: b, f: fb }) => {
                a == b && Rc::ptr_eq(fa, fb)
            }
            (Metric::BinaryAccuracy { threshold: a }, Metric::BinaryAccuracy { threshold: b }) => {
                a == b
            }
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
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

    /// A custom metric: `f(y_true, y_pred)`, logged as `name` (Keras's
    /// `metrics=[my_metric_fn]`).
    pub fn custom(
        name: impl Into<String>,
        f: impl Fn(&Tensor, &Tensor) -> Tensor + 'static,
    ) -> Metric {
        Metric::Custom {
            name: name.into(),
            f: Rc::new(f),
        }
    }

    /// The Keras name (as shown in logs).
    pub fn name(&self) -> &str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BinaryAccuracy { .. } => "binary_accuracy",
            Metric::CategoricalAccuracy => "categorical_accuracy",
            Metric::SparseCategoricalAccuracy => "sparse_categorical_accuracy",
            Metric::MeanAbsoluteError => "mae",
            Metric::MeanSquaredError => "mse",
            Metric::Custom { name, .. } => name,
        }
    }

    /// Resolves `Accuracy` for this loss and these types, as Keras's `get_metric` does.
    pub fn resolve(&self, loss: &Loss, y_true: &Tensor, y_pred: &Tensor) -> Metric {
        if !matches!(self, Metric::Accuracy) {
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
            Metric::Custom { f, .. } => {
                let v = f(y_true, y_pred);
                if v.rank() == 0 {
                    v
                } else {
                    v.mean_all()
                }
            }
        }
    }
}
