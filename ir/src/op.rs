//! The primitive op set and its type rules.
//!
//! Everything a model computes is composed from these primitives (see
//! [`crate::nn`] for softmax, crossentropies, GELU, …). Each primitive has one
//! type rule here ([`infer_type`]), one interpreter kernel, one VJP rule and one
//! lowering; adding an op touches one file per stage.
//!
//! Elementwise binary ops require operands of identical shape: broadcasting is
//! explicit in the IR (a `broadcast` node), and the builder inserts it.

use crate::types::{broadcastable_to, DType, Shape, TensorType};
use smallvec::SmallVec;

/// Elementwise unary primitives. All take and return `f32` except `neg`,
/// `abs` and `sign`, which also accept `i32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Abs,
    Sqrt,
    Recip,
    Sign,
    Erf,
}

/// Elementwise binary primitives on operands of equal type. Comparisons
/// return an `f32` mask holding 1.0 where the comparison holds and 0.0 elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Reduction kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// Constant data. A single value is a splat over the node's whole shape;
/// otherwise there is exactly one value per element, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl Literal {
    /// The literal's element type.
    pub fn dtype(&self) -> DType {
        match self {
            Literal::F32(_) => DType::F32,
            Literal::I32(_) => DType::I32,
        }
    }

    /// Number of stored values (1 for a splat).
    pub fn len(&self) -> usize {
        match self {
            Literal::F32(v) => v.len(),
            Literal::I32(v) => v.len(),
        }
    }

    /// True when no value is stored (never valid in a verified graph).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The splat value as f64, if this literal is a single value.
    pub fn splat(&self) -> Option<f64> {
        match self {
            Literal::F32(v) if v.len() == 1 => Some(v[0] as f64),
            Literal::I32(v) if v.len() == 1 => Some(v[0] as f64),
            _ => None,
        }
    }

    /// Bitwise identity (so NaN equals NaN and 0.0 differs from -0.0); used by CSE.
    pub fn bits(&self) -> Vec<u32> {
        match self {
            Literal::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
            Literal::I32(v) => v.iter().map(|x| *x as u32).collect(),
        }
    }
}

/// One primitive operation. Leaves (`Input`, `Param`, `Const`) take no
/// operands; all other ops take the operands listed in [`Op::arity`].
///
/// `Broadcast`, `Reshape` and `Cast` carry no attributes: their target is the
/// node's result type.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A value fed per step (a batch, a label, the learning rate).
    Input {
        name: String,
    },
    /// A persistent variable (a weight, or optimiser state): read at the start
    /// of a step and written back through an `update/<name>` output.
    Param {
        name: String,
    },
    /// A constant.
    Const(Literal),
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `select mask, a, b`: `a` where `mask != 0`, else `b`. All three share a shape.
    Select,
    /// Convert between `f32` and `i32` (f32 → i32 truncates toward zero).
    Cast,
    /// NumPy broadcast (right-aligned; extents equal or 1) to the result shape.
    Broadcast,
    /// Same elements, another shape of equal size.
    Reshape,
    /// Permute axes: result axis `i` is operand axis `perm[i]`.
    Transpose {
        perm: SmallVec<[usize; 4]>,
    },
    /// Reduce over `axes` (sorted, distinct); the reduced axes are removed.
    Reduce {
        op: ReduceOp,
        axes: SmallVec<[usize; 4]>,
    },
    /// Index of the first maximum along `axis` (removed), as `i32`.
    ArgMax {
        axis: usize,
    },
    /// `[.., m, k] × [.., k, n] → [.., m, n]` on rank-2 or rank-3 operands with
    /// equal batch extent; `trans_a`/`trans_b` transpose the last two axes first.
    MatMul {
        trans_a: bool,
        trans_b: bool,
    },
    /// Join operands along `axis`; other extents must agree.
    Concat {
        axis: usize,
    },
    /// Elements `start..end` of `axis`.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// `i32[..] → f32[.., depth]`: 1.0 at the label's position. Out-of-range labels give all zeros.
    OneHot {
        depth: usize,
    },
    /// Identity whose gradient is zero.
    StopGradient,
    /// Counter-based uniform noise in `[0, 1)`: a pure function of `seed`,
    /// the `i32[]` step operand and the element index (see [`random_uniform`]).
    Random {
        seed: u32,
    },
}

impl UnaryOp {
    /// All unary ops, for tests and generators.
    pub const ALL: [UnaryOp; 10] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Abs,
        UnaryOp::Sqrt,
        UnaryOp::Recip,
        UnaryOp::Sign,
        UnaryOp::Erf,
    ];

    /// Text-format name.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Abs => "abs",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Recip => "recip",
            UnaryOp::Sign => "sign",
            UnaryOp::Erf => "erf",
        }
    }

    /// True for ops defined on `i32` as well as `f32`.
    pub fn accepts_int(self) -> bool {
        matches!(self, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign)
    }
}

impl BinaryOp {
    /// All binary ops, for tests and generators.
    pub const ALL: [BinaryOp; 12] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
    ];

    /// Text-format name.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
        }
    }

    /// True for comparisons, whose result is an `f32` 0/1 mask.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }

    /// True when `a op b == b op a`.
    pub fn is_commutative(self) -> bool {
        matches!(
            self,
            BinaryOp::Add
                | BinaryOp::Mul
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::Eq
                | BinaryOp::Ne
        )
    }
}

impl ReduceOp {
    /// Text-format name.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "reduce_sum",
            ReduceOp::Max => "reduce_max",
        }
    }
}

impl Op {
    /// The op's name in the text format.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::Const(_) => "const",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Select => "select",
            Op::Cast => "cast",
            Op::Broadcast => "broadcast",
            Op::Reshape => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Reduce { op, .. } => op.name(),
            Op::ArgMax { .. } => "argmax",
            Op::MatMul { .. } => "matmul",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::OneHot { .. } => "one_hot",
            Op::StopGradient => "stop_gradient",
            Op::Random { .. } => "random",
        }
    }

    /// Required operand count; `None` means one or more (`concat`).
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Input { .. } | Op::Param { .. } | Op::Const(_) => 0,
            Op::Binary(_) | Op::MatMul { .. } => 2,
            Op::Select => 3,
            Op::Concat { .. } => return None,
            _ => 1,
        })
    }

    /// True for `input`, `param` and `const`.
    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Input { .. } | Op::Param { .. } | Op::Const(_))
    }

    /// True for elementwise ops (unary, binary, select, cast, stop_gradient),
    /// whose result element `i` depends only on operand elements `i`.
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Unary(_) | Op::Binary(_) | Op::Select | Op::Cast | Op::StopGradient
        )
    }
}

/// Checks an op against its operand types and returns its result type.
///
/// `declared` is the node's recorded type; it is required for ops whose
/// target lives in the type (`const`, `input`, `param`, `broadcast`,
/// `reshape`, `cast`) and checked against the inferred type otherwise.
/// Errors are plain messages; callers add the node and scope.
pub fn infer_type(
    op: &Op,
    operands: &[&TensorType],
    declared: Option<&TensorType>,
) -> Result<TensorType, String> {
    if let Some(n) = op.arity() {
        if operands.len() != n {
            return Err(format!(
                "{} takes {} operand(s), got {}",
                op.name(),
                n,
                operands.len()
            ));
        }
    } else if operands.is_empty() {
        return Err(format!("{} takes at least one operand", op.name()));
    }
    let need_declared = || {
        declared
            .cloned()
            .ok_or_else(|| format!("{} needs a result type", op.name()))
    };
    let f32_only = |t: &TensorType| {
        if t.dtype == DType::F32 {
            Ok(())
        } else {
            Err(format!("{} needs f32 operands, got {}", op.name(), t))
        }
    };
    let inferred = match op {
        Op::Input { .. } | Op::Param { .. } => need_declared()?,
        Op::Const(lit) => {
            let ty = need_declared()?;
            if lit.dtype() != ty.dtype {
                return Err(format!(
                    "const literal is {} but the type is {}",
                    lit.dtype(),
                    ty
                ));
            }
            if lit.len() != 1 && lit.len() != ty.numel() {
                return Err(format!(
                    "const has {} values; {} needs 1 (a splat) or {}",
                    lit.len(),
                    ty,
                    ty.numel()
                ));
            }
            ty
        }
        Op::Unary(u) => {
            let t = operands[0];
            if !u.accepts_int() {
                f32_only(t)?;
            }
            t.clone()
        }
        Op::Binary(b) => {
            let (a, c) = (operands[0], operands[1]);
            if a != c {
                return Err(format!("{} operands differ: {} vs {}", b.name(), a, c));
            }
            if b.is_comparison() {
                a.with_dtype(DType::F32)
            } else {
                a.clone()
            }
        }
        Op::Select => {
            let (m, a, b) = (operands[0], operands[1], operands[2]);
            f32_only(m)?;
            if m.shape != a.shape || a != b {
                return Err(format!("select operands differ: mask {m}, {a}, {b}"));
            }
            a.clone()
        }
        Op::Cast => {
            let ty = need_declared()?;
            if ty.shape != operands[0].shape {
                return Err(format!("cast changes shape: {} to {}", operands[0], ty));
            }
            ty
        }
        Op::StopGradient => operands[0].clone(),
        Op::Broadcast => {
            let ty = need_declared()?;
            let from = operands[0];
            if from.dtype != ty.dtype || !broadcastable_to(&from.shape, &ty.shape) {
                return Err(format!("cannot broadcast {from} to {ty}"));
            }
            ty
        }
        Op::Reshape => {
            let ty = need_declared()?;
            let from = operands[0];
            if from.dtype != ty.dtype || from.numel() != ty.numel() {
                return Err(format!("cannot reshape {from} to {ty}"));
            }
            ty
        }
        Op::Transpose { perm } => {
            let t = operands[0];
            let mut seen = vec![false; t.rank()];
            if perm.len() != t.rank()
                || perm
                    .iter()
                    .any(|&p| p >= t.rank() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!(
                    "perm {:?} is not a permutation of the axes of {t}",
                    perm.as_slice()
                ));
            }
            TensorType {
                dtype: t.dtype,
                shape: perm.iter().map(|&p| t.shape[p]).collect(),
            }
        }
        Op::Reduce { op: r, axes } => {
            let t = operands[0];
            if *r == ReduceOp::Sum {
                f32_only(t)?;
            }
            if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= t.rank()) {
                return Err(format!(
                    "{} axes {:?} must be sorted, distinct and within the rank of {t}",
                    r.name(),
                    axes.as_slice()
                ));
            }
            TensorType {
                dtype: t.dtype,
                shape: (0..t.rank())
                    .filter(|i| !axes.contains(i))
                    .map(|i| t.shape[i])
                    .collect(),
            }
        }
        Op::ArgMax { axis } => {
            let t = operands[0];
            f32_only(t)?;
            if *axis >= t.rank() {
                return Err(format!("argmax axis {axis} out of range for {t}"));
            }
            TensorType {
                dtype: DType::I32,
                shape: (0..t.rank())
                    .filter(|i| i != axis)
                    .map(|i| t.shape[i])
                    .collect(),
            }
        }
        Op::MatMul { trans_a, trans_b } => {
            let (a, b) = (operands[0], operands[1]);
            f32_only(a)?;
            f32_only(b)?;
            let r = a.rank();
            if !(r == 2 || r == 3) || b.rank() != r {
                return Err(format!(
                    "matmul needs two rank-2 or two rank-3 operands, got {a} and {b}"
                ));
            }
            if r == 3 && a.shape[0] != b.shape[0] {
                return Err(format!("matmul batch extents differ: {a} and {b}"));
            }
            let (m, ka) = if *trans_a {
                (a.shape[r - 1], a.shape[r - 2])
            } else {
                (a.shape[r - 2], a.shape[r - 1])
            };
            let (kb, n) = if *trans_b {
                (b.shape[r - 1], b.shape[r - 2])
            } else {
                (b.shape[r - 2], b.shape[r - 1])
            };
            if ka != kb {
                return Err(format!(
                    "matmul contraction extents differ: {a} and {b} ({ka} vs {kb})"
                ));
            }
            let mut shape = Shape::new();
            if r == 3 {
                shape.push(a.shape[0]);
            }
            shape.push(m);
            shape.push(n);
            TensorType {
                dtype: DType::F32,
                shape,
            }
        }
        Op::Concat { axis } => {
            let first = operands[0];
            if *axis >= first.rank() {
                return Err(format!("concat axis {axis} out of range for {first}"));
            }
            let mut shape = first.shape.clone();
            for t in &operands[1..] {
                let same_other = t.rank() == first.rank()
                    && (0..t.rank()).all(|i| i == *axis || t.shape[i] == first.shape[i]);
                if t.dtype != first.dtype || !same_other {
                    return Err(format!(
                        "concat operands disagree off axis {axis}: {first} and {t}"
                    ));
                }
                shape[*axis] += t.shape[*axis];
            }
            TensorType {
                dtype: first.dtype,
                shape,
            }
        }
        Op::Slice { axis, start, end } => {
            let t = operands[0];
            if *axis >= t.rank() || start > end || *end > t.shape[*axis] {
                return Err(format!(
                    "slice axis {axis} [{start}..{end}) out of range for {t}"
                ));
            }
            let mut shape = t.shape.clone();
            shape[*axis] = end - start;
            TensorType {
                dtype: t.dtype,
                shape,
            }
        }
        Op::OneHot { depth } => {
            let t = operands[0];
            if t.dtype != DType::I32 {
                return Err(format!("one_hot needs i32 labels, got {t}"));
            }
            let mut shape = t.shape.clone();
            shape.push(*depth);
            TensorType {
                dtype: DType::F32,
                shape,
            }
        }
        Op::Random { .. } => {
            let t = operands[0];
            if t.dtype != DType::I32 || t.rank() != 0 {
                return Err(format!("random needs an i32[] step operand, got {t}"));
            }
            let ty = need_declared()?;
            if ty.dtype != DType::F32 {
                return Err(format!("random produces f32, declared {ty}"));
            }
            ty
        }
    };
    if let Some(d) = declared {
        if *d != inferred {
            return Err(format!(
                "{} yields {} but the node declares {}",
                op.name(),
                inferred,
                d
            ));
        }
    }
    Ok(inferred)
}

/// The noise generator behind [`Op::Random`]: a 32-bit integer hash of
/// `(seed, step, index)` mapped to `[0, 1)` with 24 bits of precision.
/// Interpreter and codegen must both follow this definition exactly.
pub fn random_uniform(seed: u32, step: i32, index: u32) -> f32 {
    let mut h = seed ^ (step as u32).wrapping_mul(0x9E37_79B9) ^ index.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 16;
    h = h.wrapping_mul(0x7FEB_352D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846C_A68B);
    h ^= h >> 16;
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize]) -> TensorType {
        TensorType::f32(shape)
    }

    #[test]
    fn matmul_types() {
        let mm = Op::MatMul {
            trans_a: false,
            trans_b: false,
        };
        assert_eq!(
            infer_type(&mm, &[&f(&[2, 3]), &f(&[3, 4])], None).unwrap(),
            f(&[2, 4])
        );
        let tn = Op::MatMul {
            trans_a: true,
            trans_b: false,
        };
        assert_eq!(
            infer_type(&tn, &[&f(&[3, 2]), &f(&[3, 4])], None).unwrap(),
            f(&[2, 4])
        );
        let nt = Op::MatMul {
            trans_a: false,
            trans_b: true,
        };
        assert_eq!(
            infer_type(&nt, &[&f(&[5, 2, 3]), &f(&[5, 4, 3])], None).unwrap(),
            f(&[5, 2, 4])
        );
        let err = infer_type(&mm, &[&f(&[2, 3]), &f(&[4, 4])], None).unwrap_err();
        assert!(
            err.contains("f32[2,3]") && err.contains("f32[4,4]"),
            "{err}"
        );
        assert!(infer_type(&mm, &[&f(&[2, 2, 3]), &f(&[3, 3, 4])], None).is_err());
    }

    #[test]
    fn reduce_and_argmax_drop_axes() {
        let r = Op::Reduce {
            op: ReduceOp::Sum,
            axes: SmallVec::from_slice(&[0, 2]),
        };
        assert_eq!(infer_type(&r, &[&f(&[2, 3, 4])], None).unwrap(), f(&[3]));
        let bad = Op::Reduce {
            op: ReduceOp::Sum,
            axes: SmallVec::from_slice(&[2, 0]),
        };
        assert!(infer_type(&bad, &[&f(&[2, 3, 4])], None).is_err());
        let am = Op::ArgMax { axis: 1 };
        assert_eq!(
            infer_type(&am, &[&f(&[2, 3])], None).unwrap(),
            TensorType::i32([2])
        );
    }

    #[test]
    fn structural_ops() {
        let t = Op::Transpose {
            perm: SmallVec::from_slice(&[1, 0]),
        };
        assert_eq!(infer_type(&t, &[&f(&[2, 3])], None).unwrap(), f(&[3, 2]));
        assert!(infer_type(
            &Op::Transpose {
                perm: SmallVec::from_slice(&[0, 0])
            },
            &[&f(&[2, 3])],
            None
        )
        .is_err());
        let c = Op::Concat { axis: 1 };
        assert_eq!(
            infer_type(&c, &[&f(&[2, 3]), &f(&[2, 1])], None).unwrap(),
            f(&[2, 4])
        );
        assert!(infer_type(&c, &[&f(&[2, 3]), &f(&[3, 1])], None).is_err());
        let s = Op::Slice {
            axis: 0,
            start: 1,
            end: 3,
        };
        assert_eq!(infer_type(&s, &[&f(&[4, 2])], None).unwrap(), f(&[2, 2]));
        assert!(infer_type(
            &Op::Slice {
                axis: 0,
                start: 1,
                end: 5
            },
            &[&f(&[4, 2])],
            None
        )
        .is_err());
        let oh = Op::OneHot { depth: 10 };
        assert_eq!(
            infer_type(&oh, &[&TensorType::i32([8])], None).unwrap(),
            f(&[8, 10])
        );
        assert!(infer_type(&oh, &[&f(&[8])], None).is_err());
        assert!(infer_type(&Op::Broadcast, &[&f(&[3])], Some(&f(&[2, 3]))).is_ok());
        assert!(infer_type(&Op::Broadcast, &[&f(&[2])], Some(&f(&[2, 3]))).is_err());
        assert!(infer_type(&Op::Reshape, &[&f(&[2, 3])], Some(&f(&[6]))).is_ok());
        assert!(infer_type(&Op::Reshape, &[&f(&[2, 3])], Some(&f(&[5]))).is_err());
    }

    #[test]
    fn elementwise_rules() {
        let add = Op::Binary(BinaryOp::Add);
        assert!(infer_type(&add, &[&f(&[2]), &f(&[3])], None).is_err());
        let gt = Op::Binary(BinaryOp::Gt);
        assert_eq!(
            infer_type(&gt, &[&TensorType::i32([2]), &TensorType::i32([2])], None).unwrap(),
            f(&[2])
        );
        assert!(infer_type(&Op::Unary(UnaryOp::Exp), &[&TensorType::i32([2])], None).is_err());
        assert!(infer_type(&Op::Unary(UnaryOp::Neg), &[&TensorType::i32([2])], None).is_ok());
        let c = Op::Const(Literal::F32(vec![1.0, 2.0]));
        assert!(infer_type(&c, &[], Some(&f(&[3]))).is_err());
        assert!(infer_type(&Op::Const(Literal::F32(vec![1.0])), &[], Some(&f(&[3]))).is_ok());
        assert!(infer_type(&add, &[&f(&[2]), &f(&[2])], Some(&f(&[3]))).is_err());
    }

    #[test]
    fn random_is_uniform_and_deterministic() {
        let n = 100_000u32;
        let mean: f64 = (0..n).map(|i| random_uniform(7, 3, i) as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((0..n).all(|i| (0.0..1.0).contains(&random_uniform(7, 3, i))));
        assert_eq!(random_uniform(1, 2, 3), random_uniform(1, 2, 3));
        assert_ne!(random_uniform(1, 2, 3), random_uniform(1, 3, 3));
    }
}
