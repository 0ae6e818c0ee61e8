//! Compiled losses with Keras 3's formulas and its default reduction,
//! `sum_over_batch_size` (the mean of the per-sample values).
//!
//! Crossentropies on probabilities follow the JAX backend: binary clips the
//! prediction to `[ε, 1-ε]` (ε = 1e-7); categorical and sparse categorical
//! first renormalise over the last axis, then clip, then take the log. With
//! `from_logits` they use `log_sigmoid` and `log_softmax`.

use crate::error::{Error, Result};
use lossgraph_ir::{nn, DType, Tensor, TensorType};
use std::fmt;
use std::rc::Rc;

/// Keras's `backend.epsilon()`.
pub const EPSILON: f32 = 1e-7;

/// A user loss: `(y_true, y_pred) -> per-sample values`.
pub type LossFn = Rc<dyn Fn(&Tensor, &Tensor) -> Tensor>;

/// A loss function comparing targets with one model output.
#[derive(Clone)]
pub enum Loss {
    /// `mean((y - ŷ)², -1)`.
    MeanSquaredError,
    /// `mean(|y - ŷ|, -1)`.
    MeanAbsoluteError,
    /// `mean(½e² if |e| ≤ δ else δ|e| - ½δ², -1)` with `e = ŷ - y`.
    Huber { delta: f32 },
    /// Binary crossentropy, `mean(…, -1)`, on probabilities or logits.
    BinaryCrossentropy { from_logits: bool },
    /// `-Σ y·log p` over the last axis, one-hot (or soft) targets.
    CategoricalCrossentropy { from_logits: bool },
    /// Categorical crossentropy with integer labels (`i32`, one per sample).
    SparseCategoricalCrossentropy { from_logits: bool },
    /// A user function `(y_true, y_pred) -> per-sample values`, reduced by the mean.
    Custom { name: String, f: LossFn },
}

impl fmt::Debug for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Loss {
    /// Keras loss names: `mse`/`mean_squared_error`, `mae`/`mean_absolute_error`,
    /// `huber`, `binary_crossentropy`, `categorical_crossentropy`,
    /// `sparse_categorical_crossentropy` (and their class names, e.g. `MeanSquaredError`).
    pub fn from_name(name: &str) -> Result<Loss> {
        let n = crate::name_key(name);
        Ok(match n.as_str() {
            "mse" | "meansquarederror" => Loss::MeanSquaredError,
            "mae" | "meanabsoluteerror" => Loss::MeanAbsoluteError,
            "huber" | "huberloss" => Loss::Huber { delta: 1.0 },
            "binarycrossentropy" | "bce" => Loss::BinaryCrossentropy { from_logits: false },
            "categoricalcrossentropy" | "cce" => {
                Loss::CategoricalCrossentropy { from_logits: false }
            }
            "sparsecategoricalcrossentropy" | "scce" => {
                Loss::SparseCategoricalCrossentropy { from_logits: false }
            }
            _ => return Err(Error::config("loss", format!("unknown loss '{name}'"))),
        })
    }

    /// A user loss returning per-sample values (the batch mean is taken).
    pub fn custom(
        name: impl Into<String>,
        f: impl Fn(&Tensor, &Tensor) -> Tensor + 'static,
    ) -> Loss {
        Loss::Custom {
            name: name.into(),
            f: Rc::new(f),
        }
    }

    /// The Keras name.
    pub fn name(&self) -> String {
        match self {
            Loss::MeanSquaredError => "mean_squared_error".into(),
            Loss::MeanAbsoluteError => "mean_absolute_error".into(),
            Loss::Huber { .. } => "huber".into(),
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy".into(),
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy".into(),
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy".into(),
            Loss::Custom { name, .. } => name.clone(),
        }
    }

    /// The target type for predictions of type `pred`: `i32` labels without the
    /// class axis for the sparse loss, the prediction's type otherwise.
    pub fn target_type(&self, pred: &TensorType) -> TensorType {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => {
                let r = pred.rank().saturating_sub(1);
                TensorType::new(DType::I32, &pred.shape[..r])
            }
            _ => pred.clone(),
        }
    }

    /// Per-sample values (the prediction's shape without its last axis).
    pub fn per_sample(&self, y_true: &Tensor, y_pred: &Tensor) -> Tensor {
        match self {
            Loss::MeanSquaredError => {
                let e = y_true - y_pred;
                (&e * &e).mean(&[-1], false)
            }
            Loss::MeanAbsoluteError => (y_true - y_pred).abs().mean(&[-1], false),
            Loss::Huber { delta } => {
                let d = *delta;
                let e = y_pred - y_true;
                let ae = e.abs();
                let quad = &e * &e * 0.5;
                let lin = &ae * d - 0.5 * d * d;
                ae.le(d).select(&quad, &lin).mean(&[-1], false)
            }
            Loss::BinaryCrossentropy { from_logits } => {
                let v = if *from_logits {
                    let pos = nn::log_sigmoid(y_pred);
                    let neg = nn::log_sigmoid(&y_pred.neg());
                    (y_true * &pos).neg() - (1.0 - y_true) * &neg
                } else {
                    let p = nn::clip(y_pred, EPSILON, 1.0 - EPSILON);
                    let pos = y_true * p.log();
                    let neg = (1.0 - y_true) * (1.0 - &p).log();
                    (pos + neg).neg()
                };
                v.mean(&[-1], false)
            }
            Loss::CategoricalCrossentropy { from_logits } => {
                categorical(y_true, y_pred, *from_logits)
            }
            Loss::SparseCategoricalCrossentropy { from_logits } => {
                let depth = y_pred.shape().last().copied().unwrap_or(1);
                let onehot = y_true.one_hot(depth);
                categorical(&onehot, y_pred, *from_logits)
            }
            Loss::Custom { f, .. } => f(y_true, y_pred),
        }
    }

    /// The reduced loss: the mean of the per-sample values (`sum_over_batch_size`).
    pub fn emit(&self, y_true: &Tensor, y_pred: &Tensor) -> Tensor {
        let v = self.per_sample(y_true, y_pred);
        if v.rank() == 0 {
            v
        } else {
            v.mean_all()
        }
    }

    /// The sample-weighted reduced loss, as Keras's `reduce_weighted_values`
    /// under `sum_over_batch_size`: `Σ wᵢ·vᵢ / count(v)` — divided by the
    /// number of values, not by `Σ w`. `w` is `f32[N]`, one weight per
    /// sample, broadcast over the trailing axes of the per-sample values
    /// (Keras's `squeeze_or_expand_to_same_rank`); a custom loss that
    /// returns a scalar is scaled by the mean weight.
    pub fn emit_weighted(&self, y_true: &Tensor, y_pred: &Tensor, w: &Tensor) -> Tensor {
        let v = self.per_sample(y_true, y_pred);
        if v.rank() == 0 {
            return v * w.mean_all();
        }
        let mut shape = vec![1usize; v.rank()];
        shape[0] = v.shape()[0];
        let wb = w.reshape(&shape).broadcast_to(v.shape());
        (v * wb).mean_all()
    }
}

fn categorical(target: &Tensor, output: &Tensor, from_logits: bool) -> Tensor {
    let logp = if from_logits {
        nn::log_softmax(output, -1)
    } else {
        let p = output / output.sum(&[-1], true);
        nn::clip(&p, EPSILON, 1.0 - EPSILON).log()
    };
    (target * &logp).sum(&[-1], false).neg()
}
