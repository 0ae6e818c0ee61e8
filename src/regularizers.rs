//! Weight and activity regularisers with Keras 3's formulas: `L1(a) = a·Σ|x|`,
//! `L2(b) = b·Σx²` (no ½), `L1L2` = both (a zero factor skips its term), or a
//! user closure.

use crate::error::{Error, Result};
use lossgraph_ir::{nn, Tensor};
use std::fmt;
use std::rc::Rc;

/// A regulariser: maps a tensor to a scalar penalty.
#[derive(Clone)]
pub enum Regularizer {
    /// `l1 · Σ|x|`.
    L1(f32),
    /// `l2 · Σx²`.
    L2(f32),
    /// `l1 · Σ|x| + l2 · Σx²`; a term whose factor is 0 is not emitted.
    L1L2 { l1: f32, l2: f32 },
    /// A user function returning a scalar (a non-scalar result is summed).
    Custom {
        name: String,
        f: Rc<dyn Fn(&Tensor) -> Tensor>,
    },
}

impl Regularizer {
    /// A user closure regulariser, shown as `name` in summaries.
    pub fn custom(name: impl Into<String>, f: impl Fn(&Tensor) -> Tensor + 'static) -> Regularizer {
        Regularizer::Custom {
            name: name.into(),
            f: Rc::new(f),
        }
    }

    /// Keras's class name (`L1`, `L2`, `L1L2`) plus factors: `"l1"`, `"l2"` and
    /// `"l1_l2"` take the Keras default factor 0.01.
    pub fn from_name(name: &str) -> Result<Regularizer> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "l1" => Regularizer::L1(0.01),
            "l2" => Regularizer::L2(0.01),
            "l1l2" | "l1_l2" => Regularizer::L1L2 { l1: 0.01, l2: 0.01 },
            _ => {
                return Err(Error::config(
                    "regularizer",
                    format!("unknown regularizer '{name}' (expected l1, l2 or l1_l2)"),
                ))
            }
        })
    }

    /// Emits the penalty for `x` as a scalar tensor (in the caller's role and scope).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        match self {
            Regularizer::L1(a) => nn::l1(x, *a),
            Regularizer::L2(b) => nn::l2(x, *b),
            Regularizer::L1L2 { l1, l2 } => match (*l1 != 0.0, *l2 != 0.0) {
                (true, true) => nn::l1(x, *l1) + nn::l2(x, *l2),
                (true, false) => nn::l1(x, *l1),
                (false, true) => nn::l2(x, *l2),
                (false, false) => x.builder().scalar(0.0),
            },
            Regularizer::Custom { f, .. } => {
                let v = f(x);
                if v.rank() > 0 {
                    v.sum_all()
                } else {
                    v
                }
            }
        }
    }

    /// A short description (`L2(0.01)`).
    pub fn describe(&self) -> String {
        match self {
            Regularizer::L1(a) => format!("L1({a})"),
            Regularizer::L2(b) => format!("L2({b})"),
            Regularizer::L1L2 { l1, l2 } => format!("L1L2({l1}, {l2})"),
            Regularizer::Custom { name, .. } => name.clone(),
        }
    }

    /// The penalty evaluated on host values in `f64` (used by tests and summaries).
    pub fn eval_host(&self, x: &[f32]) -> Option<f64> {
        let s1: f64 = x.iter().map(|v| (*v as f64).abs()).sum();
        let s2: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum();
        match self {
            Regularizer::L1(a) => Some(*a as f64 * s1),
            Regularizer::L2(b) => Some(*b as f64 * s2),
            Regularizer::L1L2 { l1, l2 } => Some(*l1 as f64 * s1 + *l2 as f64 * s2),
            Regularizer::Custom { .. } => None,
        }
    }
}

impl fmt::Debug for Regularizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PartialEq for Regularizer {
    fn eq(&self, other: &Regularizer) -> bool {
        match (self, other) {
            (Regularizer::L1(a), Regularizer::L1(b)) => a == b,
            (Regularizer::L2(a), Regularizer::L2(b)) => a == b,
            (Regularizer::L1L2 { l1: a, l2: b }, Regularizer::L1L2 { l1: c, l2: d }) => {
                a == c && b == d
            }
            (Regularizer::Custom { f: a, .. }, Regularizer::Custom { f: b, .. }) => {
                Rc::ptr_eq(a, b)
            }
            _ => false,
        }
    }
}
