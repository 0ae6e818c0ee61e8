//! A seeded random graph generator for round-trip and differential tests.
//!
//! [`random_graph`] builds a graph through the [`Builder`], so every graph it
//! returns verifies. Across a few hundred seeds it uses every primitive: all
//! unary and binary ops (f32, and i32 where the op allows it), `select`,
//! `cast` both ways, `broadcast`, `reshape`, `transpose`, `reduce_sum` and
//! `reduce_max` over random axis subsets (including all axes and none),
//! `argmax`, rank-2 and rank-3 `matmul` with every `trans_a`/`trans_b`
//! combination, `concat` (one to three operands), `slice`, `one_hot`,
//! `stop_gradient`, `random_uniform`, f32 and i32 inputs, params and optimiser-state
//! params, splat and dense constants, every role, scopes that need quoting, and
//! several named outputs.
//!
//! Guarantees, when evaluated on [`random_feeds`] (f32 leaves uniform in
//! `[-2, 2]`, i32 leaves in their documented range):
//! - every value is finite: `log`, `sqrt`, `recip` and `div` denominators are
//!   `abs(x) + 0.5 ≥ 0.5`; `exp` only sees values with `|x| ≤ 3` (larger ones
//!   go through `tanh` first); every f32 value whose magnitude bound exceeds 16
//!   is rescaled by a power of two before further use, so intermediate
//!   magnitudes stay far below `f32::MAX`;
//! - i32 values stay within ±2·10⁴ (no overflow; i32 `div` is never emitted);
//! - discontinuous ops — comparisons, `sign`, `argmax`, f32→i32 `cast`, and
//!   `select` masks — only see *exact* values: values computed from leaves by
//!   ops whose result every correct evaluator reproduces bit for bit (data
//!   movement, `neg`, `abs`, `sign`, `max`, `min`, `reduce_max`, `select`,
//!   casts, comparisons, `one_hot`, `random_uniform`, `stop_gradient`, i32
//!   arithmetic). Evaluators that differ only by rounding in arithmetic or
//!   transcendentals therefore agree exactly on these ops' results;
//! - `one_hot` applied to a `labels{n}_{k}` input gets labels in `[0, n)` with
//!   `depth ≥ n`; other i32 operands may be out of range (giving zero rows, as
//!   the op defines);
//! - fresh shapes have rank `≤ max_rank` and extents in `1..=max_extent`,
//!   including 1 and extents that are not multiples of 4; `reshape`, `concat`,
//!   `broadcast` and rank-3 `matmul` may exceed these limits. No tensor has an
//!   extent of 0.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::builder::{Builder, Tensor};
use crate::graph::{Graph, LossReason, Role};
use crate::op::{BinaryOp, BinaryRange, Literal, UnaryOp, UnaryRange};
use crate::tensor::HostTensor;
use crate::types::{DType, TensorType};
use std::collections::HashMap;

/// Knobs of [`random_graph`].
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Stop adding ops once the graph has this many nodes (the last step may
    /// add a few more, e.g. a rescale or the operands of a `div`).
    pub max_nodes: usize,
    /// Largest rank of fresh shapes (rank-3 `matmul` operands are rank 3 regardless).
    pub max_rank: usize,
    /// Largest extent of fresh shapes (at least 1).
    pub max_extent: usize,
    /// Largest number of named outputs (at least one output is always made).
    pub max_outputs: usize,
    /// Also add unused constants holding NaN, ±inf, -0.0, a subnormal and
    /// `f32::MAX` as outputs `special/<k>` (for round-trip tests; these break
    /// the finiteness guarantee only for those outputs).
    pub special_literals: bool,
}

impl Default for GenConfig {
    fn default() -> GenConfig {
        GenConfig {
            max_nodes: 40,
            max_rank: 3,
            max_extent: 6,
            max_outputs: 4,
            special_literals: false,
        }
    }
}

use crate::rng::SplitMix64 as Rng;

/// The generator's draws on top of the shared stream.
trait Draw {
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize;
    fn chance(&mut self, p: f64) -> bool;
    fn f32_in(&mut self, lo: f32, hi: f32) -> f32;
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T;
}

impl Draw for Rng {
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit() as f32
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// FNV-1a, to derive per-name feed seeds independent of feed order.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// A generated value with what the generator knows about it.
#[derive(Clone)]
struct Val {
    t: Tensor,
    /// f32: bound on `|x|`. i32: `max(|lo|, |hi|)`.
    bound: f64,
    /// i32 value range (unused for f32).
    lo: i64,
    hi: i64,
    /// See the module docs: reproduced bit for bit by every correct evaluator.
    exact: bool,
}

impl Val {
    fn dtype(&self) -> DType {
        self.t.dtype()
    }
    fn shape(&self) -> Vec<usize> {
        self.t.shape().to_vec()
    }
    fn rank(&self) -> usize {
        self.t.rank()
    }
}

/// The kinds of step the generator takes, each chosen with equal probability.
#[derive(Clone, Copy, Debug)]
enum Step {
    Unary(UnaryOp),
    Binary(BinaryOp),
    Select,
    CastToInt,
    CastToFloat,
    Broadcast,
    Reshape,
    Transpose,
    ReduceSum,
    ReduceMax,
    ArgMax,
    MatMul2,
    MatMul3,
    Concat,
    Slice,
    OneHot,
    StopGradient,
    Random,
    Gather,
    RandomNormal,
    RandomBernoulli,
    Leaf,
}

fn all_steps() -> Vec<Step> {
    let mut v: Vec<Step> = UnaryOp::ALL.iter().map(|&u| Step::Unary(u)).collect();
    v.extend(BinaryOp::ALL.iter().map(|&b| Step::Binary(b)));
    v.extend([
        Step::Select,
        Step::CastToInt,
        Step::CastToFloat,
        Step::Broadcast,
        Step::Reshape,
        Step::Transpose,
        Step::ReduceSum,
        Step::ReduceMax,
        Step::ArgMax,
        Step::MatMul2,
        Step::MatMul3,
        Step::Concat,
        Step::Slice,
        Step::OneHot,
        Step::StopGradient,
        Step::Random,
        Step::Gather,
        Step::RandomNormal,
        Step::RandomBernoulli,
        Step::Leaf,
    ]);
    v
}

const SCOPES: [&str; 7] = [
    "dense_1",
    "encoder/dense_2",
    "conv.block-1",
    "layer norm",
    "quo\"te",
    "ünï",
    "x",
];

/// Values above this bound are rescaled before reuse.
const TAME: f64 = 16.0;
/// i32 ranges beyond this are not grown further by arithmetic.
const INT_CAP: i64 = 10_000;
/// Values with more elements are not put back into the pool.
const NUMEL_CAP: usize = 2048;

struct Gen<'c> {
    b: Builder,
    rng: Rng,
    cfg: &'c GenConfig,
    pool: Vec<Val>,
    counter: usize,
}

/// Generates a random verified graph from `seed` (same seed and config, same
/// graph). See the module docs for what it covers and guarantees.
pub fn random_graph(seed: u64, cfg: &GenConfig) -> Graph {
    let mut rng = Rng::new(seed);
    let name = *rng.pick(&["g", "train_step", "random graph", "rg.1"]);
    let mut g = Gen {
        b: Builder::new(name),
        rng,
        cfg,
        pool: Vec::new(),
        counter: 0,
    };
    let steps = all_steps();
    let mut guard = 0;
    while g.b.graph().len() < cfg.max_nodes.max(1) && guard < 10 * cfg.max_nodes + 10 {
        guard += 1;
        g.set_role_and_scope();
        let step = *g.rng.pick(&steps);
        g.step(step);
    }
    g.b.set_scope("");
    g.b.set_role(Role::Forward);
    g.outputs();
    g.b.finish()
        .expect("the generator only emits well-typed ops on its own tensors")
}

impl Gen<'_> {
    fn next_id(&mut self) -> usize {
        self.counter += 1;
        self.counter
    }

    fn extent(&mut self) -> usize {
        let max = self.cfg.max_extent.max(1);
        if self.rng.chance(0.2) {
            1
        } else {
            self.rng.range(1, max)
        }
    }

    fn shape(&mut self, min_rank: usize, max_rank: usize) -> Vec<usize> {
        let r = self.rng.range(min_rank, max_rank.max(min_rank));
        (0..r).map(|_| self.extent()).collect()
    }

    fn set_role_and_scope(&mut self) {
        let scope = if self.rng.chance(0.35) {
            String::new()
        } else {
            self.rng.pick(&SCOPES).to_string()
        };
        self.b.set_scope(scope);
        let role = match self.rng.below(12) {
            0 => Role::CompiledLoss {
                output: self.rng.pick(&["out", "out_1", "head 2"]).to_string(),
                weight: *self.rng.pick(&[1.0, 0.5, 0.25, 2.0, 0.1]),
            },
            1 => Role::AddedLoss {
                reason: *self.rng.pick(&[
                    LossReason::KernelRegularizer,
                    LossReason::BiasRegularizer,
                    LossReason::ActivityRegularizer,
                    LossReason::AddLoss,
                ]),
                call: self.rng.below(3) as u32,
            },
            2 => Role::Gradient,
            3 => Role::Update,
            4 => Role::Metric {
                name: self.rng.pick(&["acc", "mae", "top k"]).to_string(),
            },
            _ => Role::Forward,
        };
        self.b.set_role(role);
    }

    /// Adds a value to the pool (unless it is too large to reuse) and returns it.
    fn keep(&mut self, v: Val) -> Val {
        let v = self.tame(v);
        if v.t.ty().numel() <= NUMEL_CAP {
            self.pool.push(v.clone());
        }
        v
    }

    /// Rescales an f32 value by a power of two when its bound exceeds [`TAME`].
    fn tame(&mut self, v: Val) -> Val {
        if v.dtype() != DType::F32 || v.bound <= TAME {
            return v;
        }
        let s = (v.bound / 2.0).log2().ceil() as i32;
        let f = 2f32.powi(-s);
        Val {
            t: &v.t * f,
            bound: v.bound * f as f64,
            exact: false,
            ..v
        }
    }

    fn f32_val(t: Tensor, bound: f64, exact: bool) -> Val {
        Val {
            t,
            bound,
            lo: 0,
            hi: 0,
            exact,
        }
    }

    fn i32_val(t: Tensor, lo: i64, hi: i64) -> Val {
        Val {
            t,
            bound: lo.abs().max(hi.abs()) as f64,
            lo,
            hi,
            exact: true,
        }
    }

    /// A new leaf of this type: an input, param, state or constant.
    fn fresh(&mut self, dtype: DType, shape: &[usize]) -> Val {
        let ty = TensorType::new(dtype, shape);
        let k = self.next_id();
        let v = match dtype {
            DType::F32 => match self.rng.below(10) {
                0..=2 => Self::f32_val(self.b.input(&format!("x{k}"), ty), 2.0, true),
                3..=5 => {
                    let scope = self.b.scope();
                    let name = if scope.is_empty() {
                        format!("w{k}")
                    } else {
                        format!("{scope}/w{k}")
                    };
                    let t = if self.rng.chance(0.2) {
                        self.b.state(&name, ty)
                    } else {
                        self.b.param(&name, ty)
                    };
                    Self::f32_val(t, 2.0, true)
                }
                _ => {
                    let specials = [-0.0f32, 0.0, 1.0, 0.5, 1e-3, -1.5, 2.0];
                    let value = |rng: &mut Rng| {
                        if rng.chance(0.3) {
                            *rng.pick(&specials)
                        } else {
                            rng.f32_in(-2.0, 2.0)
                        }
                    };
                    let n = ty.numel();
                    let vals: Vec<f32> = if n > 1 && self.rng.chance(0.5) {
                        (0..n).map(|_| value(&mut self.rng)).collect()
                    } else {
                        vec![value(&mut self.rng)]
                    };
                    Self::f32_val(self.b.constant(Literal::F32(vals), ty), 2.0, true)
                }
            },
            DType::I32 => {
                if self.rng.chance(0.7) {
                    let n = self.rng.range(1, self.cfg.max_extent.max(1) + 1);
                    let t = self.b.input(&format!("labels{n}_{k}"), ty);
                    Self::i32_val(t, 0, n as i64 - 1)
                } else {
                    let nv = ty.numel();
                    let vals: Vec<i32> = if nv > 1 && self.rng.chance(0.5) {
                        (0..nv).map(|_| self.rng.below(7) as i32 - 3).collect()
                    } else {
                        vec![self.rng.below(7) as i32 - 3]
                    };
                    let lo = *vals.iter().min().unwrap_or(&0) as i64;
                    let hi = *vals.iter().max().unwrap_or(&0) as i64;
                    Self::i32_val(self.b.constant(Literal::I32(vals), ty), lo, hi)
                }
            }
        };
        self.keep(v)
    }

    /// A pool value matching `pred`, preferring recent ones, or `None`.
    fn find(&mut self, pred: impl Fn(&Val) -> bool) -> Option<Val> {
        let idx: Vec<usize> = (0..self.pool.len())
            .filter(|&i| pred(&self.pool[i]))
            .collect();
        if idx.is_empty() {
            return None;
        }
        let i = if self.rng.chance(0.6) {
            let k = idx.len().min(4);
            idx[idx.len() - 1 - self.rng.below(k)]
        } else {
            *self.rng.pick(&idx)
        };
        Some(self.pool[i].clone())
    }

    /// A value of `dtype` with rank in `min_rank..` (exact if asked): from the
    /// pool with probability 0.8, else a fresh leaf.
    fn any(&mut self, dtype: DType, min_rank: usize, exact: bool) -> Val {
        if self.rng.chance(0.8) {
            if let Some(v) =
                self.find(|v| v.dtype() == dtype && v.rank() >= min_rank && (v.exact || !exact))
            {
                return v;
            }
        }
        let max = self.cfg.max_rank.max(min_rank);
        let s = self.shape(min_rank, max);
        self.fresh(dtype, &s)
    }

    /// A value of exactly this type (exact if asked): pool or fresh.
    fn like(&mut self, dtype: DType, shape: &[usize], exact: bool) -> Val {
        if self.rng.chance(0.6) {
            if let Some(v) =
                self.find(|v| v.dtype() == dtype && v.t.shape() == shape && (v.exact || !exact))
            {
                return v;
            }
        }
        self.fresh(dtype, shape)
    }

    /// Any-dtype value (i32 with probability 0.25).
    fn any_dtype(&mut self, min_rank: usize) -> Val {
        let d = if self.rng.chance(0.25) {
            DType::I32
        } else {
            DType::F32
        };
        self.any(d, min_rank, false)
    }

    /// `abs(x) + 0.5`: positive and at least 0.5.
    fn positive(&mut self, x: &Val) -> Val {
        Self::f32_val(x.t.abs() + 0.5, x.bound + 0.5, false)
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Leaf => {
                let d = if self.rng.chance(0.3) {
                    DType::I32
                } else {
                    DType::F32
                };
                let s = self.shape(0, self.cfg.max_rank);
                self.fresh(d, &s);
            }
            Step::Unary(u) => self.unary(u),
            Step::Binary(op) => self.binary(op),
            Step::Select => {
                let m = self.any(DType::F32, 0, true);
                let shape = m.shape();
                let d = if self.rng.chance(0.25) {
                    DType::I32
                } else {
                    DType::F32
                };
                let a = self.like(d, &shape, false);
                let c = self.like(d, &shape, false);
                let t = m.t.select(&a.t, &c.t);
                let v = Val {
                    t,
                    bound: a.bound.max(c.bound),
                    lo: a.lo.min(c.lo),
                    hi: a.hi.max(c.hi),
                    exact: a.exact && c.exact,
                };
                self.keep(v);
            }
            Step::CastToInt => {
                let x = self.any(DType::F32, 0, true);
                let m = x.bound.floor() as i64;
                let t = x.t.cast(DType::I32);
                self.keep(Self::i32_val(t, -m, m));
            }
            Step::CastToFloat => {
                let x = self.any(DType::I32, 0, false);
                let t = x.t.cast(DType::F32);
                self.keep(Self::f32_val(t, x.bound, true));
            }
            Step::Broadcast => self.broadcast(),
            Step::Reshape => self.reshape(),
            Step::Transpose => {
                let x = self.any_dtype(0);
                let mut perm: Vec<usize> = (0..x.rank()).collect();
                for i in (1..perm.len()).rev() {
                    let j = self.rng.below(i + 1);
                    perm.swap(i, j);
                }
                let t = x.t.transpose(&perm);
                self.keep(Val { t, ..x });
            }
            Step::ReduceSum | Step::ReduceMax => {
                let sum = matches!(step, Step::ReduceSum);
                let x = if sum {
                    self.any(DType::F32, 1, false)
                } else {
                    self.any_dtype(1)
                };
                let axes: Vec<isize> = if self.rng.chance(0.3) {
                    (0..x.rank() as isize).collect()
                } else {
                    (0..x.rank() as isize)
                        .filter(|_| self.rng.chance(0.5))
                        .collect()
                };
                let keepdims = self.rng.chance(0.3);
                if sum {
                    let n: usize = axes.iter().map(|&a| x.t.shape()[a as usize]).product();
                    let t = x.t.sum(&axes, keepdims);
                    self.keep(Self::f32_val(t, x.bound * n as f64, false));
                } else {
                    let t = x.t.max(&axes, keepdims);
                    self.keep(Val { t, ..x });
                }
            }
            Step::ArgMax => {
                let x = self.any(DType::F32, 1, true);
                let axis = self.rng.below(x.rank());
                let n = x.t.shape()[axis] as i64;
                let t = x.t.argmax(axis as isize);
                self.keep(Self::i32_val(t, 0, n - 1));
            }
            Step::MatMul2 | Step::MatMul3 => self.matmul(matches!(step, Step::MatMul3)),
            Step::Concat => {
                let x = self.any_dtype(1);
                let axis = self.rng.below(x.rank());
                let parts = self.rng.range(1, 3);
                let mut vals = vec![x.clone()];
                for _ in 1..parts {
                    let mut s = x.shape();
                    s[axis] = self.extent();
                    let axis_free = |v: &Val| {
                        v.dtype() == x.dtype()
                            && v.rank() == x.rank()
                            && (0..x.rank()).all(|i| i == axis || v.t.shape()[i] == x.t.shape()[i])
                    };
                    let v = if self.rng.chance(0.5) {
                        self.find(axis_free)
                    } else {
                        None
                    };
                    let v = match v {
                        Some(v) => v,
                        None => self.fresh(x.dtype(), &s),
                    };
                    vals.push(v);
                }
                let ts: Vec<&Tensor> = vals.iter().map(|v| &v.t).collect();
                let t = self.b.concat(&ts, axis as isize);
                let v = Val {
                    t,
                    bound: vals.iter().map(|v| v.bound).fold(0.0, f64::max),
                    lo: vals.iter().map(|v| v.lo).min().unwrap_or(0),
                    hi: vals.iter().map(|v| v.hi).max().unwrap_or(0),
                    exact: vals.iter().all(|v| v.exact),
                };
                self.keep(v);
            }
            Step::Slice => {
                let x = self.any_dtype(1);
                let axis = self.rng.below(x.rank());
                let n = x.t.shape()[axis];
                let start = self.rng.below(n);
                let end = self.rng.range(start + 1, n);
                let t = x.t.slice(axis as isize, start, end);
                self.keep(Val { t, ..x });
            }
            Step::OneHot => {
                let x = self.any(DType::I32, 0, false);
                let cap = 2 * self.cfg.max_extent.max(1);
                let depth = if x.hi >= 0 {
                    (x.hi as usize + 1 + self.rng.below(2)).min(cap)
                } else {
                    self.rng.range(1, cap)
                };
                let t = x.t.one_hot(depth);
                self.keep(Self::f32_val(t, 1.0, true));
            }
            Step::StopGradient => {
                let x = self.any_dtype(0);
                let t = x.t.stop_gradient();
                self.keep(Val { t, ..x });
            }
            Step::Random => {
                let step = if self.rng.chance(0.7) {
                    self.find(|v| v.dtype() == DType::I32 && v.rank() == 0)
                } else {
                    None
                };
                let step = match step {
                    Some(s) => s,
                    None => self.fresh(DType::I32, &[]),
                };
                let seed = self.rng.next_u64() as u32;
                let s = self.shape(0, self.cfg.max_rank);
                let t = self.b.random_uniform(&step.t, seed, &s);
                self.keep(Self::f32_val(t, 1.0, true));
            }
            Step::RandomNormal => {
                let step = match self.find(|v| v.dtype() == DType::I32 && v.rank() == 0) {
                    Some(s) => s,
                    None => self.fresh(DType::I32, &[]),
                };
                let seed = self.rng.next_u64() as u32;
                let s = self.shape(0, self.cfg.max_rank);
                let t = self.b.random_normal(&step.t, seed, &s);
                // |z| ≤ √(−2·ln 2⁻²⁴) < 5.8; not exact (the engines' ln differ by ulps).
                self.keep(Self::f32_val(t, 5.8, false));
            }
            Step::RandomBernoulli => {
                let step = match self.find(|v| v.dtype() == DType::I32 && v.rank() == 0) {
                    Some(s) => s,
                    None => self.fresh(DType::I32, &[]),
                };
                // Any f32 scalar is a probability (outside [0, 1] saturates).
                let p = match self.find(|v| v.dtype() == DType::F32 && v.rank() == 0) {
                    Some(p) => p,
                    None => self.fresh(DType::F32, &[]),
                };
                let seed = self.rng.next_u64() as u32;
                let s = self.shape(0, self.cfg.max_rank);
                let t = self.b.random_bernoulli(&step.t, seed, &p.t, &s);
                self.keep(Self::f32_val(t, 1.0, true));
            }
            Step::Gather => {
                // Ids must be in range: an i32 value known to be in [0, cap).
                let cap = 2 * self.cfg.max_extent.max(1);
                let x = match self
                    .find(|v| v.dtype() == DType::I32 && v.lo >= 0 && v.hi < cap as i64)
                {
                    Some(x) => x,
                    None => {
                        let s = self.shape(0, self.cfg.max_rank.saturating_sub(1));
                        let v = self.fresh(DType::I32, &s);
                        if v.lo < 0 || v.hi >= cap as i64 {
                            return;
                        }
                        v
                    }
                };
                let rows = x.hi as usize + 1 + self.rng.below(2);
                let width = self.rng.range(1, self.cfg.max_extent.max(1));
                let table = self.fresh(DType::F32, &[rows, width]);
                let t = table.t.gather(&x.t);
                self.keep(Self::f32_val(t, table.bound, table.exact));
            }
        }
    }

    /// Applies `u` with bounds from its value-range class in the op table
    /// ([`UnaryRange`]), so a new op needs no rule here.
    fn unary(&mut self, u: UnaryOp) {
        let range = u.row().range;
        if u.accepts_int() && self.rng.chance(0.25) {
            let x = self.any(DType::I32, 0, false);
            let (lo, hi) = match range {
                UnaryRange::Negate => (-x.hi, -x.lo),
                UnaryRange::Magnitude => {
                    let lo = if x.lo >= 0 {
                        x.lo
                    } else if x.hi <= 0 {
                        -x.hi
                    } else {
                        0
                    };
                    (lo, x.lo.abs().max(x.hi.abs()))
                }
                UnaryRange::Sign => (x.lo.signum(), x.hi.signum()),
                UnaryRange::Unit
                | UnaryRange::Exp
                | UnaryRange::Log
                | UnaryRange::Sqrt
                | UnaryRange::Recip => {
                    panic!("{}: range {range:?} has no i32 interval rule", u.name())
                }
            };
            self.keep(Self::i32_val(x.t.unary(u), lo, hi));
            return;
        }
        let x = self.any(DType::F32, 0, range == UnaryRange::Sign);
        let v = match range {
            UnaryRange::Negate | UnaryRange::Magnitude => Val {
                t: x.t.unary(u),
                ..x
            },
            UnaryRange::Sign => Self::f32_val(x.t.unary(u), 1.0, true),
            UnaryRange::Unit => Self::f32_val(x.t.unary(u), 1.0, false),
            UnaryRange::Exp => {
                let (t, b) = if x.bound > 3.0 {
                    (x.t.tanh(), 1.0)
                } else {
                    (x.t.clone(), x.bound)
                };
                Self::f32_val(t.unary(u), b.exp(), false)
            }
            UnaryRange::Log => {
                let p = self.positive(&x);
                let b = p.bound.ln().abs().max(2f64.ln());
                Self::f32_val(p.t.unary(u), b, false)
            }
            UnaryRange::Sqrt => {
                let p = self.positive(&x);
                Self::f32_val(p.t.unary(u), p.bound.sqrt(), false)
            }
            UnaryRange::Recip => {
                let p = self.positive(&x);
                Self::f32_val(p.t.unary(u), 2.0, false)
            }
        };
        self.keep(v);
    }

    /// Applies `op` with bounds from its value-range class in the op table
    /// ([`BinaryRange`]), so a new op needs no rule here.
    fn binary(&mut self, op: BinaryOp) {
        let range = op.row().range;
        let cmp = range == BinaryRange::Mask;
        let int_rule = !matches!(range, BinaryRange::Quotient | BinaryRange::Power);
        if int_rule && self.rng.chance(0.25) {
            let a = self.any(DType::I32, 0, false);
            let c = if self.rng.chance(0.2) {
                a.clone()
            } else {
                self.like(DType::I32, &a.shape(), false)
            };
            let big = a.bound.max(c.bound) > INT_CAP as f64;
            // Keep i32 results within INT_CAP: large operands only meet ops that cannot grow them.
            let grows = matches!(
                range,
                BinaryRange::Sum | BinaryRange::Difference | BinaryRange::Product
            );
            let op = if grows && big {
                BinaryOp::Max
            } else if range == BinaryRange::Product && a.bound * c.bound > INT_CAP as f64 {
                BinaryOp::Add
            } else {
                op
            };
            let t = a.t.binary(op, &c.t);
            let (lo, hi) = match op.row().range {
                BinaryRange::Mask => {
                    self.keep(Self::f32_val(t, 1.0, true));
                    return;
                }
                BinaryRange::Sum => (a.lo + c.lo, a.hi + c.hi),
                BinaryRange::Difference => (a.lo - c.hi, a.hi - c.lo),
                BinaryRange::Product => {
                    let p = [a.lo * c.lo, a.lo * c.hi, a.hi * c.lo, a.hi * c.hi];
                    (*p.iter().min().unwrap_or(&0), *p.iter().max().unwrap_or(&0))
                }
                BinaryRange::Max => (a.lo.max(c.lo), a.hi.max(c.hi)),
                BinaryRange::Min => (a.lo.min(c.lo), a.hi.min(c.hi)),
                BinaryRange::Quotient | BinaryRange::Power => {
                    panic!("{}: range {range:?} is not generated on i32", op.name())
                }
            };
            self.keep(Self::i32_val(t, lo, hi));
            return;
        }
        let a = self.any(DType::F32, 0, cmp);
        let c = if self.rng.chance(0.2) {
            a.clone()
        } else {
            self.like(DType::F32, &a.shape(), cmp)
        };
        let v = match range {
            BinaryRange::Sum | BinaryRange::Difference => {
                Self::f32_val(a.t.binary(op, &c.t), a.bound + c.bound, false)
            }
            BinaryRange::Product => Self::f32_val(a.t.binary(op, &c.t), a.bound * c.bound, false),
            BinaryRange::Quotient => {
                let p = self.positive(&c);
                Self::f32_val(a.t.binary(op, &p.t), a.bound * 2.0, false)
            }
            BinaryRange::Power => {
                let p = self.positive(&a);
                let (e, eb) = if c.bound > 2.0 {
                    (c.t.tanh() * 2.0, 2.0)
                } else {
                    (c.t.clone(), c.bound)
                };
                Self::f32_val(p.t.binary(op, &e), p.bound.max(2.0).powf(eb), false)
            }
            BinaryRange::Max | BinaryRange::Min => Self::f32_val(
                a.t.binary(op, &c.t),
                a.bound.max(c.bound),
                a.exact && c.exact,
            ),
            BinaryRange::Mask => Self::f32_val(a.t.binary(op, &c.t), 1.0, true),
        };
        self.keep(v);
    }

    fn broadcast(&mut self) {
        let r = self.rng.range(1, self.cfg.max_rank.max(1));
        let target: Vec<usize> = (0..r).map(|_| self.extent()).collect();
        let mut drop = self.rng.below(r + 1);
        let mut src: Vec<usize> = target[drop..]
            .iter()
            .map(|&e| if self.rng.chance(0.5) { 1 } else { e })
            .collect();
        if src == target {
            drop = 1;
            src = target[drop..].to_vec();
        }
        let d = if self.rng.chance(0.25) {
            DType::I32
        } else {
            DType::F32
        };
        let x = self.like(d, &src, false);
        let t = x.t.broadcast_to(&target);
        self.keep(Val { t, ..x });
    }

    fn reshape(&mut self) {
        let x = self.any_dtype(0);
        let numel = x.t.ty().numel();
        let mut factors = Vec::new();
        let mut n = numel;
        let mut p = 2;
        while n > 1 {
            while n.is_multiple_of(p) {
                factors.push(p);
                n /= p;
            }
            p += 1;
        }
        let r = self
            .rng
            .range(if numel > 1 { 1 } else { 0 }, self.cfg.max_rank.max(1));
        let mut shape = vec![1usize; r];
        if r > 0 {
            for f in factors {
                let i = self.rng.below(r);
                shape[i] *= f;
            }
        }
        if shape.as_slice() == x.t.shape() {
            // Same shape: move everything into one axis, or add a unit axis.
            shape = if x.rank() == 1 {
                vec![numel, 1]
            } else {
                vec![numel]
            };
        }
        let t = x.t.reshape(&shape);
        self.keep(Val { t, ..x });
    }

    fn matmul(&mut self, rank3: bool) {
        let (ta, tb) = (self.rng.chance(0.5), self.rng.chance(0.5));
        let want = if rank3 { 3 } else { 2 };
        let a = if self.rng.chance(0.6) {
            self.find(|v| v.dtype() == DType::F32 && v.rank() == want)
        } else {
            None
        };
        let a = match a {
            Some(a) => a,
            None => {
                let s: Vec<usize> = (0..want).map(|_| self.extent()).collect();
                self.fresh(DType::F32, &s)
            }
        };
        let s = a.shape();
        let (batch, rows, cols) = if rank3 {
            (Some(s[0]), s[1], s[2])
        } else {
            (None, s[0], s[1])
        };
        let k = if ta { rows } else { cols };
        let n = self.extent();
        let mut bs: Vec<usize> = batch.into_iter().collect();
        if tb {
            bs.extend([n, k]);
        } else {
            bs.extend([k, n]);
        }
        let c = self.like(DType::F32, &bs, false);
        let t = a.t.matmul_t(&c.t, ta, tb);
        self.keep(Self::f32_val(t, k as f64 * a.bound * c.bound, false));
    }

    fn outputs(&mut self) {
        if self.pool.is_empty() {
            self.fresh(DType::F32, &[]);
        }
        let n = self.rng.range(1, self.cfg.max_outputs.max(1));
        let templates = [
            "loss",
            "loss/out_",
            "added/",
            "grad/w",
            "update/w",
            "metric/acc_",
            "pred/",
            "odd \"name\" ",
        ];
        for i in 0..n {
            let v = if self.rng.chance(0.5) {
                self.pool[self.pool.len() - 1 - self.rng.below(self.pool.len().min(3))].clone()
            } else {
                self.rng.pick(&self.pool).clone()
            };
            let name = if i == 0 && self.rng.chance(0.5) {
                "loss".to_string()
            } else {
                let t = self.rng.pick(&templates[1..]);
                format!("{t}{i}")
            };
            self.b.output(&name, &v.t);
        }
        if self.cfg.special_literals {
            let vals = vec![
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                -0.0,
                1e-40,
                f32::MAX,
            ];
            let t = self.b.constant(Literal::F32(vals), TensorType::f32([2, 3]));
            self.b.output("special/0", &t);
            let t = self.b.scalar(f32::MIN_POSITIVE);
            self.b.output("special/1", &t);
        }
    }
}

/// A value for every `input` and `param` of `g`, deterministic in `seed` and
/// the leaf's name (not in the order of the leaves): f32 leaves uniform in
/// `[-2, 2]`; i32 leaves named `labels{n}_…` uniform in `[0, n)`; other i32
/// leaves uniform in `[-2, 2]`.
pub fn random_feeds(g: &Graph, seed: u64) -> HashMap<String, HostTensor> {
    let mut feeds = HashMap::new();
    for (name, id) in g.inputs().into_iter().chain(g.params()) {
        let ty = g.node(id).ty.clone();
        let mut rng = Rng::new(seed ^ fnv1a(&name));
        let n = ty.numel();
        let t = match ty.dtype {
            DType::F32 => HostTensor {
                data: crate::tensor::Data::F32((0..n).map(|_| rng.f32_in(-2.0, 2.0)).collect()),
                ty,
            },
            DType::I32 => {
                let (lo, hi) = match label_range(&name) {
                    Some(k) => (0i64, k as i64 - 1),
                    None => (-2, 2),
                };
                HostTensor {
                    data: crate::tensor::Data::I32(
                        (0..n)
                            .map(|_| (lo + rng.below((hi - lo + 1) as usize) as i64) as i32)
                            .collect(),
                    ),
                    ty,
                }
            }
        };
        feeds.insert(name, t);
    }
    feeds
}

/// `n` for a leaf named `labels{n}_…` with `n ≥ 1`.
fn label_range(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("labels")?;
    let (n, _) = rest.split_once('_')?;
    n.parse::<usize>().ok().filter(|&n| n >= 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;
    use crate::op::Op;
    use crate::text::{parse, print};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// A node with its literal bits canonicalised (every NaN as one NaN), so
    /// that graphs compare equal exactly when the text format should keep them.
    fn canonical(n: &Node) -> Node {
        let mut n = n.clone();
        if let Op::Const(Literal::F32(v)) = &mut n.op {
            for x in v.iter_mut() {
                if x.is_nan() {
                    *x = f32::from_bits(0x7FC0_0000);
                }
            }
        }
        n
    }

    fn assert_same_graph(a: &Graph, b: &Graph) {
        let (a, b) = (a.compacted().unwrap(), b.compacted().unwrap());
        assert_eq!(a.name, b.name);
        assert_eq!(a.len(), b.len());
        for (ia, ib) in a.node_ids().into_iter().zip(b.node_ids()) {
            let (na, nb) = (canonical(a.node(ia)), canonical(b.node(ib)));
            match (&na.op, &nb.op) {
                (Op::Const(la), Op::Const(lb)) => assert_eq!(la.bits(), lb.bits()),
                _ => assert_eq!(na, nb),
            }
            assert_eq!(na.ty, nb.ty);
            assert_eq!(na.role, nb.role);
            assert_eq!(na.scope, nb.scope);
            let oa: Vec<usize> = a.operands(ia).iter().map(|o| o.index()).collect();
            let ob: Vec<usize> = b.operands(ib).iter().map(|o| o.index()).collect();
            assert_eq!(oa, ob);
        }
        assert_eq!(a.outputs(), b.outputs());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn text_round_trips_generated_graphs(
            seed in any::<u64>(),
            max_nodes in 1usize..90,
            max_rank in 0usize..5,
            max_extent in 1usize..8,
            special_literals in any::<bool>(),
        ) {
            let cfg = GenConfig { max_nodes, max_rank, max_extent, max_outputs: 5, special_literals };
            let g = random_graph(seed, &cfg);
            crate::verify(&g).unwrap();
            let text = print(&g);
            let back = match parse(&text) {
                Ok(b) => b,
                Err(e) => return Err(TestCaseError::fail(format!("{e}\n{text}"))),
            };
            prop_assert_eq!(print(&back), text);
            assert_same_graph(&g, &back);
        }
    }

    #[test]
    fn same_seed_same_graph_and_feeds() {
        let cfg = GenConfig::default();
        for seed in 0..20 {
            let a = random_graph(seed, &cfg);
            let b = random_graph(seed, &cfg);
            assert_eq!(print(&a), print(&b));
            assert_eq!(random_feeds(&a, 7), random_feeds(&b, 7));
        }
        assert_ne!(print(&random_graph(1, &cfg)), print(&random_graph(2, &cfg)));
    }

    /// Features of a graph, named independently of the generator's internals.
    fn features(g: &Graph, out: &mut BTreeSet<String>) {
        for id in g.node_ids() {
            let n = g.node(id);
            out.insert(n.op.name().to_string());
            out.insert(format!("role:{}", n.role.kind()));
            let ops = g.operands(id);
            let ins: Vec<&TensorType> = ops.iter().map(|&o| &g.node(o).ty).collect();
            match &n.op {
                Op::Input { .. } => {
                    out.insert(format!("input:{}", n.ty.dtype));
                }
                Op::Param { .. } => {
                    out.insert(format!("param:{}", n.role.kind()));
                }
                Op::Const(l) => {
                    let kind = if l.len() == 1 { "splat" } else { "dense" };
                    out.insert(format!("const:{}:{}", l.dtype(), kind));
                }
                Op::Unary(_) | Op::Binary(_) | Op::Select => {}
                Op::Cast => {
                    out.insert(format!("cast:{}->{}", ins[0].dtype, n.ty.dtype));
                }
                Op::Reduce { axes, .. } => {
                    let which = if axes.is_empty() {
                        "none"
                    } else if axes.len() == ins[0].rank() {
                        "all"
                    } else {
                        "some"
                    };
                    out.insert(format!("{}:{which}", n.op.name()));
                }
                Op::MatMul { trans_a, trans_b } => {
                    out.insert(format!("matmul:r{}:{trans_a}:{trans_b}", n.ty.rank()));
                }
                Op::Concat { .. } => {
                    out.insert(format!("concat:{}", ops.len().min(3)));
                }
                Op::Unfold { window, .. } | Op::Fold { window, .. } => {
                    out.insert(format!("{}:{}d", n.op.name(), window.len()));
                }
                Op::Broadcast
                | Op::Reshape
                | Op::Transpose { .. }
                | Op::ArgMax { .. }
                | Op::Slice { .. }
                | Op::OneHot { .. }
                | Op::StopGradient
                | Op::RandomUniform { .. }
                | Op::Gather
                | Op::ScatterAdd { .. }
                | Op::RandomNormal { .. }
                | Op::RandomBernoulli { .. }
                | Op::AllReduceMean => {}
            }
            if matches!(n.op, Op::Unary(_) | Op::Binary(_) | Op::Select) {
                out.insert(format!("{}:{}", n.op.name(), ins[ins.len() - 1].dtype));
            }
            if !n.scope.is_empty() && crate::text::quote_if_needed(&n.scope).starts_with('"') {
                out.insert("quoted_scope".into());
            }
            for &e in n.ty.shape.iter() {
                if e == 1 {
                    out.insert("extent:1".into());
                } else if e % 4 != 0 {
                    out.insert("extent:not_multiple_of_4".into());
                }
            }
        }
        if g.outputs().len() > 1 {
            out.insert("several_outputs".into());
        }
    }

    #[test]
    fn every_primitive_and_feature_appears() {
        let cfg = GenConfig::default();
        let mut seen = BTreeSet::new();
        for seed in 0..300 {
            features(&random_graph(seed, &cfg), &mut seen);
        }
        let mut want: Vec<String> = [
            "input",
            "param",
            "const",
            "neg",
            "exp",
            "log",
            "tanh",
            "sigmoid",
            "abs",
            "sqrt",
            "recip",
            "sign",
            "erf",
            "add",
            "sub",
            "mul",
            "div",
            "max",
            "min",
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
            "select",
            "cast",
            "broadcast",
            "reshape",
            "transpose",
            "reduce_sum",
            "reduce_max",
            "argmax",
            "matmul",
            "concat",
            "slice",
            "one_hot",
            "stop_gradient",
            "random_uniform",
            "gather",
            "random_normal",
            "random_bernoulli",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for u in ["neg", "abs", "sign"] {
            want.push(format!("{u}:i32"));
        }
        for bop in [
            "add", "sub", "mul", "max", "min", "eq", "ne", "lt", "le", "gt", "ge",
        ] {
            want.push(format!("{bop}:i32"));
            want.push(format!("{bop}:f32"));
        }
        want.extend(
            [
                "select:f32",
                "select:i32",
                "cast:f32->i32",
                "cast:i32->f32",
                "input:f32",
                "input:i32",
                "param:param",
                "param:state",
                "const:f32:splat",
                "const:f32:dense",
                "const:i32:splat",
                "const:i32:dense",
                "reduce_sum:all",
                "reduce_sum:some",
                "reduce_sum:none",
                "reduce_max:all",
                "reduce_max:some",
                "concat:1",
                "concat:2",
                "concat:3",
                "role:input",
                "role:param",
                "role:state",
                "role:forward",
                "role:loss",
                "role:added_loss",
                "role:gradient",
                "role:update",
                "role:metric",
                "quoted_scope",
                "extent:1",
                "extent:not_multiple_of_4",
                "several_outputs",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        for r in [2, 3] {
            for ta in [false, true] {
                for tb in [false, true] {
                    want.push(format!("matmul:r{r}:{ta}:{tb}"));
                }
            }
        }
        let missing: Vec<&String> = want.iter().filter(|w| !seen.contains(*w)).collect();
        assert!(missing.is_empty(), "never generated: {missing:?}");
    }

    #[test]
    fn feeds_cover_every_leaf_with_values_in_range() {
        let cfg = GenConfig::default();
        let mut labels_seen = 0;
        for seed in 0..50 {
            let g = random_graph(seed, &cfg);
            let feeds = random_feeds(&g, seed);
            assert_eq!(feeds.len(), g.inputs().len() + g.params().len());
            for (name, id) in g.inputs().into_iter().chain(g.params()) {
                let t = &feeds[&name];
                assert_eq!(t.ty, g.node(id).ty, "{name}");
                match &t.data {
                    crate::tensor::Data::F32(v) => {
                        assert!(v.iter().all(|x| (-2.0..=2.0).contains(x)), "{name}")
                    }
                    crate::tensor::Data::I32(v) => {
                        if let Some(n) = name
                            .strip_prefix("labels")
                            .and_then(|r| r.split('_').next())
                            .and_then(|n| n.parse::<i32>().ok())
                        {
                            labels_seen += 1;
                            assert!(v.iter().all(|x| (0..n).contains(x)), "{name}: {v:?}");
                        } else {
                            assert!(v.iter().all(|x| (-2..=2).contains(x)), "{name}");
                        }
                    }
                }
            }
        }
        assert!(labels_seen > 10);
    }

    #[test]
    fn generated_graphs_evaluate_to_tame_finite_values() {
        let cfg = GenConfig {
            max_nodes: 60,
            ..GenConfig::default()
        };
        let mut checked = 0usize;
        for seed in 0..150 {
            let g = random_graph(seed, &cfg);
            let feeds = random_feeds(&g, seed ^ 0xABCD);
            let all = g.node_ids();
            let values = crate::interp::interpret_with(&g, &feeds, &all)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", print(&g)));
            for (id, v) in &values {
                match &v.data {
                    crate::tensor::Data::F32(x) => {
                        let bad = x.iter().find(|x| !x.is_finite() || x.abs() > 1e6);
                        assert!(
                            bad.is_none(),
                            "seed {seed}: node {} = {bad:?}\n{}",
                            id.index(),
                            print(&g)
                        );
                    }
                    crate::tensor::Data::I32(x) => {
                        assert!(x.iter().all(|x| x.abs() <= 20_000), "seed {seed}");
                    }
                }
                checked += v.ty.numel();
            }
        }
        assert!(checked > 10_000, "{checked}");
    }
}
