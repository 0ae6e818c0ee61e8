//! Composite functions built from primitives (softmax, GELU, crossentropy
//! pieces, regularisers). Nothing here is a primitive: autodiff, passes and
//! codegen see only the ops these functions emit.

use crate::builder::Tensor;

/// `max(x, 0)`. Its gradient at 0 is 0 (as `jax.nn.relu`): `max` sends ties to its second operand.
pub fn relu(x: &Tensor) -> Tensor {
    x.maximum(0.0)
}

/// `x²`.
pub fn square(x: &Tensor) -> Tensor {
    x * x
}

/// `log Σ exp(x)` over `axis`, kept as extent 1, stabilised by the (gradient-free) maximum.
pub fn logsumexp(x: &Tensor, axis: isize) -> Tensor {
    let m = x.max(&[axis], true).stop_gradient();
    (x - &m).exp().sum(&[axis], true).log() + m
}

/// `log softmax(x)` along `axis`, as `(x − m) − log Σ exp(x − m)` with `m`
/// the (gradient-free) maximum: the shifted values are exact differences
/// near the maximum, so the result keeps its relative precision for large
/// logits (`x − logsumexp(x)` would subtract two values of size `|x|`,
/// losing `ε·|x|` — 1.6e-4 relative at logits around 1e4).
pub fn log_softmax(x: &Tensor, axis: isize) -> Tensor {
    let m = x.max(&[axis], true).stop_gradient();
    let shifted = x - &m;
    let lse = shifted.exp().sum(&[axis], true).log();
    shifted - lse
}

/// `exp(x) / Σ exp(x)` along `axis`, stabilised by the maximum.
pub fn softmax(x: &Tensor, axis: isize) -> Tensor {
    let m = x.max(&[axis], true).stop_gradient();
    let e = (x - &m).exp();
    let s = e.sum(&[axis], true);
    e / s
}

/// Exact GELU: `0.5·x·(1 + erf(x/√2))` (Keras's `gelu`, `approximate=False`).
pub fn gelu(x: &Tensor) -> Tensor {
    x * 0.5 * ((x * std::f32::consts::FRAC_1_SQRT_2).erf() + 1.0)
}

/// `log(1 + e^x)`, computed as `max(x,0) + log(1 + e^{-|x|})` so it never overflows.
pub fn softplus(x: &Tensor) -> Tensor {
    relu(x) + ((x.abs().neg()).exp() + 1.0).log()
}

/// `log σ(x) = -softplus(-x)`.
pub fn log_sigmoid(x: &Tensor) -> Tensor {
    softplus(&x.neg()).neg()
}

/// Clamps to `[lo, hi]`; the gradient is zero where the clamp is active.
pub fn clip(x: &Tensor, lo: f32, hi: f32) -> Tensor {
    x.maximum(lo).minimum(hi)
}

/// `factor · Σ|w|` (Keras `L1`).
pub fn l1(w: &Tensor, factor: f32) -> Tensor {
    w.abs().sum_all() * factor
}

/// `factor · Σw²` (Keras `L2`, no ½).
pub fn l2(w: &Tensor, factor: f32) -> Tensor {
    square(w).sum_all() * factor
}
