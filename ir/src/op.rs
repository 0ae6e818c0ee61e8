//! The primitive op set and its type rules.
//!
//! Everything a model computes is composed from these primitives (see
//! [`crate::nn`] for softmax, crossentropies, GELU, …). Each primitive has one
//! type rule here ([`infer_type`]), one interpreter kernel, one VJP rule and one
//! lowering.
//!
//! The op table below ([`Op::row`], [`UnaryOp::row`], [`BinaryOp::row`],
//! [`ReduceOp::row`], [`Op::attrs`]) holds every per-op property the stages
//! read; `docs/adding-an-op.md` lists the files a new op touches.
//!
//! Elementwise binary ops require operands of identical shape: broadcasting is
//! explicit in the IR (a `broadcast` node), and the builder inserts it.

// No `_ =>` over op kinds in this module (nor in the other stages that match
// on ops): a new variant must be a compile error wherever it needs a rule.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::types::{broadcastable_to, DType, Shape, TensorType};
use smallvec::{smallvec, SmallVec};

/// Defines a fieldless op enum together with its `ALL` list, so the list
/// cannot miss a variant.
macro_rules! op_enum {
    ($(#[$doc:meta])* $name:ident { $($v:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($v),+
        }

        impl $name {
            /// Every variant, in declaration order (for the text format, the
            /// generators and the conformance test).
            pub const ALL: &'static [$name] = &[$($name::$v),+];
        }
    };
}

op_enum! {
    /// Elementwise unary primitives, all defined on `f32`; those whose row
    /// says `int` (`neg`, `abs`, `sign`) also accept `i32`.
    UnaryOp {
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
        Sin,
        Cos,
    }
}

op_enum! {
    /// Elementwise binary primitives on operands of equal type. Comparisons
    /// return an `f32` mask holding 1.0 where the comparison holds and 0.0 elsewhere.
    BinaryOp {
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
        Pow,
    }
}

op_enum! {
    /// Reduction kinds.
    ReduceOp {
        Sum,
        Max,
    }
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
            Literal::F32(v) => (v.len() == 1).then(|| v[0] as f64),
            Literal::I32(v) => (v.len() == 1).then(|| v[0] as f64),
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
    /// Sliding windows (im2col) over the spatial axes of a channels-last
    /// `[N, S₁..S_r, C]` operand, `r = window.len() ≥ 1`: the result is
    /// `[N, O₁..O_r, K₁..K_r, C]` with
    /// `y[n, o.., k.., c] = x[n, (oᵢ·strideᵢ + kᵢ·dilationᵢ).., c]` and
    /// `Oᵢ = (Sᵢ - (Kᵢ-1)·dilationᵢ - 1) / strideᵢ + 1` (only whole windows;
    /// padding is explicit, a `concat` with constant blocks). Every result
    /// element is one operand element at an affine position, so consumers
    /// evaluate it as a load (a movement op). `window`, `strides` and
    /// `dilation` have length `r` and entries ≥ 1.
    Unfold {
        window: SmallVec<[usize; 4]>,
        strides: SmallVec<[usize; 4]>,
        dilation: SmallVec<[usize; 4]>,
    },
    /// The transpose of [`Op::Unfold`] (col2im): `[N, O.., K.., C]` summed back
    /// into `[N, S.., C]`, each window element added at the position `unfold`
    /// reads it from. `S` is the node's declared type (several `S` give the
    /// same `O` when a stride does not divide); cells no window covers are 0.
    Fold {
        window: SmallVec<[usize; 4]>,
        strides: SmallVec<[usize; 4]>,
        dilation: SmallVec<[usize; 4]>,
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
    RandomUniform {
        seed: u32,
    },
    /// `gather table, ids`: `f32[V, D]`, `i32[S..]` → `f32[S.., D]`, row
    /// `ids[s]` of the table at every position `s` (Keras's `take(table,
    /// ids, axis=0)`, the Embedding lookup). Every id must be in `[0, V)`:
    /// an id outside is a run-time error naming the node, the id's row
    /// (leading index), its element in the row and its value
    /// ([`crate::interp::id_out_of_range`]), on both engines: the
    /// interpreter refuses it, and the JIT's kernel reads nothing for it,
    /// records it in the program's fault slot, and the run stops with the
    /// same error. Gradient: operand 0 only, the dense `f32[V, D]`
    /// [`Op::ScatterAdd`] of the cotangent.
    Gather,
    /// `scatter_add ids, values`: `i32[S..]`, `f32[S.., D]` → `f32[rows, D]`,
    /// zeros plus `values[s, :]` added into row `ids[s]` for every `s` (a
    /// repeated id accumulates, in position order): `gather`'s VJP. Ids
    /// follow [`Op::Gather`]'s rule (an id outside `[0, rows)` is refused by
    /// both engines; the JIT writes nothing for it). Gradient: operand 1,
    /// the `gather` of the cotangent.
    ScatterAdd {
        rows: usize,
    },
    /// Counter-based standard normal noise: a pure function of `seed`, the
    /// `i32[]` stream operand and the element index (see [`random_normal`]).
    RandomNormal {
        seed: u32,
    },
    /// `random_bernoulli step, p`: a counter-based 0/1 mask, 1.0 where the
    /// uniform draw of the same `(seed, step, index)` is below the `f32[]`
    /// probability `p` (see [`random_bernoulli`]): Dropout's keep mask. `p`
    /// outside `[0, 1]` saturates (`p ≤ 0`: all zeros, `p ≥ 1`: all ones; a
    /// NaN `p` gives zeros). Not differentiable: the mask is piecewise
    /// constant in `p`, so neither operand gets a gradient.
    RandomBernoulli {
        seed: u32,
    },
    /// `all_reduce_mean x`: the elementwise mean of `x` over every process
    /// (rank) of the program's communicator; every rank gets the same
    /// result, of `x`'s type (`f32`, any shape; the gradient hook feeds it
    /// one flat buffer of all gradients). Single-process semantics (the
    /// interpreter, a one-rank run): the identity. The compiled step runs
    /// it as one external call on the buffer in place. Gradient: the mean
    /// is linear and its adjoint across ranks is itself, so the VJP is the
    /// `all_reduce_mean` of the cotangent.
    AllReduceMean,
}

// ---------------------------------------------------------------------------
// The op table: every property a stage needs, once per op. Each row is an
// exhaustive `match`, so a new variant is a compile error here until its row
// is written; the stages (interpreter, autodiff, fusion, lowering, text
// format, generators) read these rows instead of keeping their own lists.
// ---------------------------------------------------------------------------

/// What an op does with element positions: the class fusion, lowering and
/// the generators dispatch on (after tinygrad's op groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A value supplied from outside the step: `input`, `param`.
    External,
    /// A constant: `const`.
    Leaf,
    /// Result element `i` depends only on operand elements `i`: unary,
    /// binary, `select`, `cast`, `stop_gradient`.
    Elementwise,
    /// Result elements are operand elements at affine positions, unchanged:
    /// `broadcast`, `transpose`, `slice`.
    Movement,
    /// The operand's elements in the same order under another shape; shares
    /// the operand's storage: `reshape`.
    View,
    /// Computed from an operand element and the result element's own
    /// position: `one_hot`.
    Index,
    /// Combines the elements along axes, which disappear: `reduce_*`, `argmax`.
    Reduction,
    /// A sum of products over a shared axis: `matmul`.
    Contraction,
    /// Sums operand elements into result positions that are an affine,
    /// possibly many-to-one, function of the operand position: `fold`.
    Scatter,
    /// Several operands laid side by side: `concat`.
    Join,
    /// Counter-based noise (a function of the element index): `random_uniform`,
    /// `random_normal`, `random_bernoulli`.
    Random,
    /// Result elements are read from, or accumulated into, rows of a stored
    /// table at positions read from an index operand (a data-dependent
    /// address): `gather`, `scatter_add`.
    Gather,
    /// Combines a value across processes (ranks), run as an external call
    /// on a stored buffer: `all_reduce_mean`.
    Collective,
}

/// Operand count of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    /// One or more (`concat`).
    AtLeastOne,
}

/// Cost class of evaluating one element, read by fusion (an expensive value
/// is not recomputed by an expanding consumer) and by the lowering's work
/// estimate (which decides when a kernel is split across threads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cost {
    /// Loads, stores, simple arithmetic, comparisons.
    Cheap,
    /// Division, square root, reciprocal (the divider is not pipelined), a random draw.
    Slow,
    /// An inline transcendental polynomial (tens of instructions).
    Transcendental,
}

impl Cost {
    /// Extra work units per element on top of the 1 of a plain load/store.
    pub fn weight(self) -> usize {
        match self {
            Cost::Cheap => 0,
            Cost::Slow => 4,
            Cost::Transcendental => 16,
        }
    }
}

/// Which operands of an op carry gradient (when they and the result are `f32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grad {
    /// No operand: the op declares "no gradient" (zero almost everywhere, or
    /// no operands at all).
    None,
    /// Every operand.
    All,
    /// All but operand 0 (the mask of `select`).
    AllButFirst,
    /// Operand 0 only (the table of `gather`; its ids are integers).
    OnlyFirst,
}

impl Grad {
    /// True when operand `pos` carries gradient.
    pub fn carries(self, pos: usize) -> bool {
        match self {
            Grad::None => false,
            Grad::All => true,
            Grad::AllButFirst => pos > 0,
            Grad::OnlyFirst => pos == 0,
        }
    }
}

/// A hand-computed point of an elementwise op or reduction: operands and the
/// exact result (as f64), checked by the conformance test against the
/// interpreter and the JIT. Sample points avoid kinks, because the VJP is
/// checked against finite differences at the same points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub args: &'static [f64],
    pub result: f64,
}

/// `s!(&[args…], result)`: a [`Sample`] literal (a constant, so `&[s!(…)]` is `'static`).
macro_rules! s {
    ($args:expr, $result:expr) => {
        Sample {
            args: $args,
            result: $result,
        }
    };
}

/// How a unary op's result magnitude follows from its operand's: the
/// random-graph generator ([`crate::gen`]) reads it to keep values finite
/// (and exact where a comparison or `sign` needs them). A new op picks the
/// class that bounds it; only a new class needs a generator rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryRange {
    /// `y = -x`: same bound, exact when `x` is (i32: `[-hi, -lo]`).
    Negate,
    /// `|y| = |x|`: same bound, exact when `x` is (i32: the interval of `|x|`).
    Magnitude,
    /// `y ∈ {-1, 0, 1}`: needs an exact operand, exact result.
    Sign,
    /// `|y| ≤ 1` for every `x`.
    Unit,
    /// `y = eˣ`: operands above 3 are squashed first; `|y| ≤ e^bound`.
    Exp,
    /// Needs a positive operand; `|y| ≤ max(|ln bound|, ln 2)`.
    Log,
    /// Needs a positive operand; `y ≤ √bound`.
    Sqrt,
    /// Needs a positive operand (≥ 0.5); `|y| ≤ 2`.
    Recip,
}

/// How a binary op's result magnitude follows from its operands' (see
/// [`UnaryRange`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryRange {
    /// `a + c`: bounds add (i32: intervals add).
    Sum,
    /// `a - c`: bounds add (i32: `[a.lo - c.hi, a.hi - c.lo]`).
    Difference,
    /// `a · c`: bounds multiply.
    Product,
    /// `a / c`: needs a positive divisor (≥ 0.5); `|y| ≤ 2·bound(a)`. Not generated on i32.
    Quotient,
    /// `max(a, c)`: the larger bound, exact when both are.
    Max,
    /// `min(a, c)`: the larger bound, exact when both are.
    Min,
    /// A 0/1 mask: needs exact operands, exact result.
    Mask,
    /// `a^c`: needs a positive base (≥ 0.5) and an exponent with `|c| ≤ 2`;
    /// `|y| ≤ max(bound(a), 2)^bound(c)`. Not generated on i32.
    Power,
}

/// The table row of a unary op.
#[derive(Clone, Copy, Debug)]
pub struct UnaryRow {
    /// Text-format name.
    pub name: &'static str,
    /// Also defined on `i32` (all unary ops are defined on `f32`).
    pub int: bool,
    /// The operand carries gradient.
    pub grad: bool,
    pub cost: Cost,
    pub range: UnaryRange,
    /// `f32` sample points.
    pub samples: &'static [Sample],
    /// `i32` sample points (empty unless `int`).
    pub int_samples: &'static [Sample],
}

/// The table row of a binary op.
#[derive(Clone, Copy, Debug)]
pub struct BinaryRow {
    /// Text-format name.
    pub name: &'static str,
    /// A comparison: the result is an `f32` 0/1 mask.
    pub comparison: bool,
    /// `a op b` and `b op a` agree bit for bit on every input, NaN payloads
    /// and signed zeros included (so CSE may reorder the operands). `max` and
    /// `min` are not: on ties they return the second operand, which tells
    /// `0.0` from `-0.0`.
    pub commutative: bool,
    /// Both operands carry gradient (comparisons: neither).
    pub grad: bool,
    pub cost: Cost,
    pub range: BinaryRange,
    /// `f32` sample points.
    pub samples: &'static [Sample],
    /// `i32` sample points.
    pub int_samples: &'static [Sample],
}

/// The table row of a reduction.
#[derive(Clone, Copy, Debug)]
pub struct ReduceRow {
    /// Text-format name.
    pub name: &'static str,
    /// Also defined on `i32`.
    pub int: bool,
    /// Samples: `args` is the reduced vector.
    pub samples: &'static [Sample],
}

impl UnaryOp {
    /// The op's table row.
    pub const fn row(self) -> UnaryRow {
        use Cost::{Cheap, Slow, Transcendental};
        use UnaryRange as R;
        // (name, int, grad, cost, range, f32 samples, i32 samples)
        type Cols = (
            &'static str,
            bool,
            bool,
            Cost,
            UnaryRange,
            &'static [Sample],
            &'static [Sample],
        );
        let (name, int, grad, cost, range, samples, int_samples): Cols = match self {
            UnaryOp::Neg => (
                "neg",
                true,
                true,
                Cheap,
                R::Negate,
                &[s!(&[1.5], -1.5), s!(&[-0.25], 0.25)],
                &[s!(&[3.0], -3.0), s!(&[-7.0], 7.0)],
            ),
            UnaryOp::Exp => (
                "exp",
                false,
                true,
                Transcendental,
                R::Exp,
                &[
                    s!(&[1.0], std::f64::consts::E),
                    s!(&[-2.0], 0.135_335_283_236_612_7),
                ],
                &[],
            ),
            UnaryOp::Log => (
                "log",
                false,
                true,
                Transcendental,
                R::Log,
                &[
                    s!(&[2.0], std::f64::consts::LN_2),
                    s!(&[0.5], -std::f64::consts::LN_2),
                ],
                &[],
            ),
            UnaryOp::Tanh => (
                "tanh",
                false,
                true,
                Transcendental,
                R::Unit,
                &[
                    s!(&[0.5], 0.462_117_157_260_009_8),
                    s!(&[-1.0], -0.761_594_155_955_764_9),
                ],
                &[],
            ),
            UnaryOp::Sigmoid => (
                "sigmoid",
                false,
                true,
                Transcendental,
                R::Unit,
                &[s!(&[0.0], 0.5), s!(&[2.0], 0.880_797_077_977_882_3)],
                &[],
            ),
            UnaryOp::Abs => (
                "abs",
                true,
                true,
                Cheap,
                R::Magnitude,
                &[s!(&[-1.5], 1.5), s!(&[2.0], 2.0)],
                &[s!(&[-4.0], 4.0), s!(&[5.0], 5.0)],
            ),
            UnaryOp::Sqrt => (
                "sqrt",
                false,
                true,
                Slow,
                R::Sqrt,
                &[s!(&[4.0], 2.0), s!(&[2.0], std::f64::consts::SQRT_2)],
                &[],
            ),
            UnaryOp::Recip => (
                "recip",
                false,
                true,
                Slow,
                R::Recip,
                &[s!(&[4.0], 0.25), s!(&[-0.5], -2.0)],
                &[],
            ),
            UnaryOp::Sign => (
                "sign",
                true,
                false,
                Cheap,
                R::Sign,
                &[s!(&[-2.5], -1.0), s!(&[0.75], 1.0)],
                &[s!(&[-3.0], -1.0), s!(&[0.0], 0.0), s!(&[9.0], 1.0)],
            ),
            UnaryOp::Erf => (
                "erf",
                false,
                true,
                Transcendental,
                R::Unit,
                &[
                    s!(&[0.5], 0.520_499_877_813_046_5),
                    s!(&[-1.0], -0.842_700_792_949_714_9),
                ],
                &[],
            ),
            UnaryOp::Sin => (
                "sin",
                false,
                true,
                Transcendental,
                R::Unit,
                &[
                    s!(&[0.5], 0.479_425_538_604_203),
                    s!(&[-2.0], -0.909_297_426_825_681_7),
                    s!(&[10.0], -0.544_021_110_889_369_8),
                ],
                &[],
            ),
            UnaryOp::Cos => (
                "cos",
                false,
                true,
                Transcendental,
                R::Unit,
                &[
                    s!(&[0.5], 0.877_582_561_890_372_8),
                    s!(&[2.5], -0.801_143_615_546_933_7),
                    s!(&[-4.0], -0.653_643_620_863_611_9),
                ],
                &[],
            ),
        };
        UnaryRow {
            name,
            int,
            grad,
            cost,
            range,
            samples,
            int_samples,
        }
    }

    /// Text-format name.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// True for ops defined on `i32` as well as `f32`.
    pub fn accepts_int(self) -> bool {
        self.row().int
    }
}

impl BinaryOp {
    /// The op's table row.
    pub const fn row(self) -> BinaryRow {
        use BinaryRange as R;
        use Cost::{Cheap, Slow, Transcendental};
        // (name, comparison, commutative, grad, cost, range, f32 samples, i32 samples)
        type Cols = (
            &'static str,
            bool,
            bool,
            bool,
            Cost,
            BinaryRange,
            &'static [Sample],
            &'static [Sample],
        );
        let (name, comparison, commutative, grad, cost, range, samples, int_samples): Cols =
            match self {
                BinaryOp::Add => (
                    "add",
                    false,
                    true,
                    true,
                    Cheap,
                    R::Sum,
                    &[s!(&[1.5, -2.0], -0.5)],
                    &[s!(&[2.0, 3.0], 5.0)],
                ),
                BinaryOp::Sub => (
                    "sub",
                    false,
                    false,
                    true,
                    Cheap,
                    R::Difference,
                    &[s!(&[1.5, -2.0], 3.5)],
                    &[s!(&[2.0, 7.0], -5.0)],
                ),
                BinaryOp::Mul => (
                    "mul",
                    false,
                    true,
                    true,
                    Cheap,
                    R::Product,
                    &[s!(&[1.5, -2.0], -3.0)],
                    &[s!(&[-3.0, 4.0], -12.0)],
                ),
                BinaryOp::Div => (
                    "div",
                    false,
                    false,
                    true,
                    Slow,
                    R::Quotient,
                    &[s!(&[3.0, 4.0], 0.75), s!(&[-1.0, 0.5], -2.0)],
                    &[
                        s!(&[7.0, 2.0], 3.0),
                        s!(&[-7.0, 2.0], -3.0),
                        s!(&[5.0, 0.0], 0.0),
                    ],
                ),
                BinaryOp::Max => (
                    "max",
                    false,
                    false,
                    true,
                    Cheap,
                    R::Max,
                    &[s!(&[1.0, 2.5], 2.5), s!(&[3.0, -1.0], 3.0)],
                    &[s!(&[1.0, 2.0], 2.0), s!(&[3.0, -1.0], 3.0)],
                ),
                BinaryOp::Min => (
                    "min",
                    false,
                    false,
                    true,
                    Cheap,
                    R::Min,
                    &[s!(&[1.0, 2.5], 1.0), s!(&[3.0, -1.0], -1.0)],
                    &[s!(&[1.0, 2.0], 1.0), s!(&[3.0, -1.0], -1.0)],
                ),
                BinaryOp::Eq => (
                    "eq",
                    true,
                    true,
                    false,
                    Cheap,
                    R::Mask,
                    &[s!(&[2.0, 2.0], 1.0), s!(&[2.0, 3.0], 0.0)],
                    &[s!(&[4.0, 4.0], 1.0), s!(&[4.0, 5.0], 0.0)],
                ),
                BinaryOp::Ne => (
                    "ne",
                    true,
                    true,
                    false,
                    Cheap,
                    R::Mask,
                    &[s!(&[2.0, 2.0], 0.0), s!(&[2.0, 3.0], 1.0)],
                    &[s!(&[4.0, 4.0], 0.0), s!(&[4.0, 5.0], 1.0)],
                ),
                BinaryOp::Lt => (
                    "lt",
                    true,
                    false,
                    false,
                    Cheap,
                    R::Mask,
                    &[
                        s!(&[1.0, 2.0], 1.0),
                        s!(&[2.0, 2.0], 0.0),
                        s!(&[3.0, 2.0], 0.0),
                    ],
                    &[
                        s!(&[1.0, 2.0], 1.0),
                        s!(&[2.0, 2.0], 0.0),
                        s!(&[3.0, 2.0], 0.0),
                    ],
                ),
                BinaryOp::Le => (
                    "le",
                    true,
                    false,
                    false,
                    Cheap,
                    R::Mask,
                    &[
                        s!(&[1.0, 2.0], 1.0),
                        s!(&[2.0, 2.0], 1.0),
                        s!(&[3.0, 2.0], 0.0),
                    ],
                    &[
                        s!(&[1.0, 2.0], 1.0),
                        s!(&[2.0, 2.0], 1.0),
                        s!(&[3.0, 2.0], 0.0),
                    ],
                ),
                BinaryOp::Gt => (
                    "gt",
                    true,
                    false,
                    false,
                    Cheap,
                    R::Mask,
                    &[
                        s!(&[1.0, 2.0], 0.0),
                        s!(&[2.0, 2.0], 0.0),
                        s!(&[3.0, 2.0], 1.0),
                    ],
                    &[
                        s!(&[1.0, 2.0], 0.0),
                        s!(&[2.0, 2.0], 0.0),
                        s!(&[3.0, 2.0], 1.0),
                    ],
                ),
                BinaryOp::Ge => (
                    "ge",
                    true,
                    false,
                    false,
                    Cheap,
                    R::Mask,
                    &[
                        s!(&[1.0, 2.0], 0.0),
                        s!(&[2.0, 2.0], 1.0),
                        s!(&[3.0, 2.0], 1.0),
                    ],
                    &[
                        s!(&[1.0, 2.0], 0.0),
                        s!(&[2.0, 2.0], 1.0),
                        s!(&[3.0, 2.0], 1.0),
                    ],
                ),
                // f32: C/IEEE `pow` (jnp.power): `x^0 = 1` and `1^y = 1` for every
                // operand incl. NaN; `x < 0` needs an integer `y` (else NaN); `±0^y` is
                // `±0` for `y > 0`, `±inf` for `y < 0` (the sign only for odd `y`).
                // i32: exact wrapping power; a negative exponent truncates `1/xⁿ`
                // toward zero as integer division does (`1`, `±1` for `x = -1`, else
                // `0`; `0^-n = 0` as `x/0 = 0`).
                BinaryOp::Pow => (
                    "pow",
                    false,
                    false,
                    true,
                    Transcendental,
                    R::Power,
                    &[
                        s!(&[2.0, 3.0], 8.0),
                        s!(&[1.5, 0.5], 1.224_744_871_391_589),
                        s!(&[4.0, -0.5], 0.5),
                        s!(&[2.5, 1.5], 3.952_847_075_210_474),
                    ],
                    &[
                        s!(&[3.0, 4.0], 81.0),
                        s!(&[-2.0, 3.0], -8.0),
                        s!(&[5.0, 0.0], 1.0),
                        s!(&[2.0, -1.0], 0.0),
                        s!(&[-1.0, -3.0], -1.0),
                        s!(&[1.0, -2.0], 1.0),
                    ],
                ),
            };
        BinaryRow {
            name,
            comparison,
            commutative,
            grad,
            cost,
            range,
            samples,
            int_samples,
        }
    }

    /// Text-format name.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// True for comparisons, whose result is an `f32` 0/1 mask.
    pub fn is_comparison(self) -> bool {
        self.row().comparison
    }

    /// True when `a op b == b op a` bit for bit (see [`BinaryRow::commutative`]).
    pub fn is_commutative(self) -> bool {
        self.row().commutative
    }
}

impl ReduceOp {
    /// The reduction's table row.
    pub const fn row(self) -> ReduceRow {
        match self {
            ReduceOp::Sum => ReduceRow {
                name: "reduce_sum",
                int: false,
                samples: &[s!(&[1.0, 2.0, 3.5], 6.5), s!(&[-1.0, 0.25], -0.75)],
            },
            ReduceOp::Max => ReduceRow {
                name: "reduce_max",
                int: true,
                samples: &[s!(&[1.0, 4.0, -2.0], 4.0), s!(&[-3.0, -0.5], -0.5)],
            },
        }
    }

    /// Text-format name.
    pub fn name(self) -> &'static str {
        self.row().name
    }
}

/// The table row of an op (see also [`Op::attrs`], its attribute list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpRow {
    pub kind: OpKind,
    pub arity: Arity,
    /// Which operands carry gradient.
    pub grad: Grad,
    pub cost: Cost,
}

/// One attribute of an op, borrowed for reading (the printer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Attr<'a> {
    /// The quoted name of a leaf, printed right after the op name.
    Name(&'a String),
    /// A literal, printed right after the op name.
    Literal(&'a Literal),
    /// `key=N`, required.
    Usize(&'a usize),
    /// `key=N` with `N < 2³²`, required.
    U32(&'a u32),
    /// `key=[a,b,…]`, required.
    Axes(&'a SmallVec<[usize; 4]>),
    /// `key=true`, printed only when true; absent means false.
    Flag(&'a bool),
}

/// One attribute of an op, borrowed for writing (the parser).
#[derive(Debug)]
pub enum AttrMut<'a> {
    Name(&'a mut String),
    Literal(&'a mut Literal),
    Usize(&'a mut usize),
    U32(&'a mut u32),
    Axes(&'a mut SmallVec<[usize; 4]>),
    Flag(&'a mut bool),
}

/// The attribute list of every op, in text order. Expanded twice, once with
/// shared and once with mutable borrows, so the printer ([`Op::attrs`]) and
/// the parser ([`Op::attrs_mut`]) read one list.
macro_rules! attr_list {
    ($op:expr, $A:ident) => {
        match $op {
            Op::Input { name } | Op::Param { name } => smallvec![("name", $A::Name(name))],
            Op::Const(lit) => smallvec![("value", $A::Literal(lit))],
            Op::Transpose { perm } => smallvec![("perm", $A::Axes(perm))],
            Op::Reduce { axes, op: _ } => smallvec![("axes", $A::Axes(axes))],
            Op::ArgMax { axis } | Op::Concat { axis } => smallvec![("axis", $A::Usize(axis))],
            Op::MatMul { trans_a, trans_b } => {
                smallvec![
                    ("trans_a", $A::Flag(trans_a)),
                    ("trans_b", $A::Flag(trans_b))
                ]
            }
            Op::Unfold {
                window,
                strides,
                dilation,
            }
            | Op::Fold {
                window,
                strides,
                dilation,
            } => smallvec![
                ("window", $A::Axes(window)),
                ("strides", $A::Axes(strides)),
                ("dilation", $A::Axes(dilation))
            ],
            Op::Slice { axis, start, end } => smallvec![
                ("axis", $A::Usize(axis)),
                ("start", $A::Usize(start)),
                ("end", $A::Usize(end))
            ],
            Op::OneHot { depth } => smallvec![("depth", $A::Usize(depth))],
            Op::ScatterAdd { rows } => smallvec![("rows", $A::Usize(rows))],
            Op::RandomUniform { seed }
            | Op::RandomNormal { seed }
            | Op::RandomBernoulli { seed } => {
                smallvec![("seed", $A::U32(seed))]
            }
            Op::Unary(_)
            | Op::Binary(_)
            | Op::Select
            | Op::Cast
            | Op::Broadcast
            | Op::Reshape
            | Op::StopGradient
            | Op::Gather
            | Op::AllReduceMean => SmallVec::new(),
        }
    };
}

/// An op's attributes: key and value, in text order.
pub type Attrs<'a, A> = SmallVec<[(&'static str, A); 3]>;

impl Op {
    /// The op's table row.
    pub fn row(&self) -> OpRow {
        use Arity::{AtLeastOne, Exactly};
        let (kind, arity, grad, cost) = match self {
            Op::Input { .. } | Op::Param { .. } => {
                (OpKind::External, Exactly(0), Grad::None, Cost::Cheap)
            }
            Op::Const(_) => (OpKind::Leaf, Exactly(0), Grad::None, Cost::Cheap),
            Op::Unary(u) => {
                let r = u.row();
                let grad = if r.grad { Grad::All } else { Grad::None };
                (OpKind::Elementwise, Exactly(1), grad, r.cost)
            }
            Op::Binary(b) => {
                let r = b.row();
                let grad = if r.grad { Grad::All } else { Grad::None };
                (OpKind::Elementwise, Exactly(2), grad, r.cost)
            }
            Op::Select => (
                OpKind::Elementwise,
                Exactly(3),
                Grad::AllButFirst,
                Cost::Cheap,
            ),
            Op::Cast => (OpKind::Elementwise, Exactly(1), Grad::None, Cost::Cheap),
            Op::StopGradient => (OpKind::Elementwise, Exactly(1), Grad::None, Cost::Cheap),
            Op::Broadcast | Op::Transpose { .. } | Op::Slice { .. } => {
                (OpKind::Movement, Exactly(1), Grad::All, Cost::Cheap)
            }
            Op::Reshape => (OpKind::View, Exactly(1), Grad::All, Cost::Cheap),
            Op::OneHot { .. } => (OpKind::Index, Exactly(1), Grad::None, Cost::Cheap),
            Op::Reduce { .. } => (OpKind::Reduction, Exactly(1), Grad::All, Cost::Cheap),
            Op::ArgMax { .. } => (OpKind::Reduction, Exactly(1), Grad::None, Cost::Cheap),
            Op::MatMul { .. } => (OpKind::Contraction, Exactly(2), Grad::All, Cost::Cheap),
            Op::Unfold { .. } => (OpKind::Movement, Exactly(1), Grad::All, Cost::Cheap),
            Op::Fold { .. } => (OpKind::Scatter, Exactly(1), Grad::All, Cost::Cheap),
            Op::Concat { .. } => (OpKind::Join, AtLeastOne, Grad::All, Cost::Cheap),
            Op::RandomUniform { .. } => (OpKind::Random, Exactly(1), Grad::None, Cost::Slow),
            Op::Gather => (OpKind::Gather, Exactly(2), Grad::OnlyFirst, Cost::Cheap),
            Op::ScatterAdd { .. } => (OpKind::Gather, Exactly(2), Grad::AllButFirst, Cost::Cheap),
            Op::RandomNormal { .. } => {
                (OpKind::Random, Exactly(1), Grad::None, Cost::Transcendental)
            }
            Op::RandomBernoulli { .. } => (OpKind::Random, Exactly(2), Grad::None, Cost::Slow),
            Op::AllReduceMean => (OpKind::Collective, Exactly(1), Grad::All, Cost::Cheap),
        };
        OpRow {
            kind,
            arity,
            grad,
            cost,
        }
    }

    /// The op's attributes (leaf name, literal, integer and flag
    /// attributes), in text order. The text printer writes exactly these.
    pub fn attrs(&self) -> Attrs<'_, Attr<'_>> {
        attr_list!(self, Attr)
    }

    /// The same list as [`Op::attrs`], writable: the text parser starts from
    /// a [`Op::prototype`] and fills these in.
    pub fn attrs_mut(&mut self) -> Attrs<'_, AttrMut<'_>> {
        attr_list!(self, AttrMut)
    }

    /// One op of every name (attributes zero or false, leaf names empty, a
    /// `0.0` literal): the ops the text format knows and the conformance
    /// test walks. [`Op::name`] is unique across the list.
    pub fn prototypes() -> Vec<Op> {
        let mut v = vec![
            Op::Input {
                name: String::new(),
            },
            Op::Param {
                name: String::new(),
            },
            Op::Const(Literal::F32(vec![0.0])),
        ];
        v.extend(UnaryOp::ALL.iter().map(|&u| Op::Unary(u)));
        v.extend(BinaryOp::ALL.iter().map(|&b| Op::Binary(b)));
        v.extend([
            Op::Select,
            Op::Cast,
            Op::Broadcast,
            Op::Reshape,
            Op::Transpose {
                perm: SmallVec::new(),
            },
        ]);
        v.extend(ReduceOp::ALL.iter().map(|&op| Op::Reduce {
            op,
            axes: SmallVec::new(),
        }));
        v.extend([
            Op::ArgMax { axis: 0 },
            Op::MatMul {
                trans_a: false,
                trans_b: false,
            },
            Op::Unfold {
                window: SmallVec::new(),
                strides: SmallVec::new(),
                dilation: SmallVec::new(),
            },
            Op::Fold {
                window: SmallVec::new(),
                strides: SmallVec::new(),
                dilation: SmallVec::new(),
            },
            Op::Concat { axis: 0 },
            Op::Slice {
                axis: 0,
                start: 0,
                end: 0,
            },
            Op::OneHot { depth: 0 },
            Op::StopGradient,
            Op::RandomUniform { seed: 0 },
            Op::Gather,
            Op::ScatterAdd { rows: 0 },
            Op::RandomNormal { seed: 0 },
            Op::RandomBernoulli { seed: 0 },
            Op::AllReduceMean,
        ]);
        v
    }

    /// The prototype named `name` (see [`Op::prototypes`]).
    pub fn prototype(name: &str) -> Option<Op> {
        Op::prototypes().into_iter().find(|op| op.name() == name)
    }

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
            Op::Unfold { .. } => "unfold",
            Op::Fold { .. } => "fold",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::OneHot { .. } => "one_hot",
            Op::StopGradient => "stop_gradient",
            Op::RandomUniform { .. } => "random_uniform",
            Op::Gather => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::RandomNormal { .. } => "random_normal",
            Op::RandomBernoulli { .. } => "random_bernoulli",
            Op::AllReduceMean => "all_reduce_mean",
        }
    }

    /// Required operand count; `None` means one or more (`concat`).
    pub fn arity(&self) -> Option<usize> {
        match self.row().arity {
            Arity::Exactly(n) => Some(n),
            Arity::AtLeastOne => None,
        }
    }

    /// The op's kind (its column in the table).
    pub fn kind(&self) -> OpKind {
        self.row().kind
    }

    /// True for `input`, `param` and `const`.
    pub fn is_leaf(&self) -> bool {
        match self.kind() {
            OpKind::External | OpKind::Leaf => true,
            OpKind::Elementwise
            | OpKind::Movement
            | OpKind::View
            | OpKind::Index
            | OpKind::Reduction
            | OpKind::Contraction
            | OpKind::Scatter
            | OpKind::Join
            | OpKind::Random
            | OpKind::Gather
            | OpKind::Collective => false,
        }
    }

    /// True for elementwise ops (unary, binary, select, cast, stop_gradient),
    /// whose result element `i` depends only on operand elements `i`.
    pub fn is_elementwise(&self) -> bool {
        self.kind() == OpKind::Elementwise
    }

    /// True when operand `pos` carries gradient (when it and the result are `f32`).
    pub fn differentiable(&self, pos: usize) -> bool {
        self.row().grad.carries(pos)
    }

    /// Cost class of one result element.
    pub fn cost(&self) -> Cost {
        self.row().cost
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
            if !r.row().int {
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
        Op::Unfold {
            window,
            strides,
            dilation,
        } => {
            let t = operands[0];
            let spatial = window_spatial(op.name(), t, window, strides, dilation)?;
            let out = window_outputs(spatial, window, strides, dilation)
                .map_err(|m| format!("unfold of {t}: {m}"))?;
            let mut shape = Shape::new();
            shape.push(t.shape[0]);
            shape.extend(out);
            shape.extend(window.iter().copied());
            shape.push(t.shape[t.rank() - 1]);
            TensorType {
                dtype: t.dtype,
                shape,
            }
        }
        Op::Fold {
            window,
            strides,
            dilation,
        } => {
            let ty = need_declared()?;
            f32_only(&ty)?;
            let spatial = window_spatial(op.name(), &ty, window, strides, dilation)?;
            let out = window_outputs(spatial, window, strides, dilation)
                .map_err(|m| format!("fold to {ty}: {m}"))?;
            let r = window.len();
            let t = operands[0];
            let mut want = Shape::new();
            want.push(ty.shape[0]);
            want.extend(out);
            want.extend(window.iter().copied());
            want.push(ty.shape[r + 1]);
            if t.dtype != ty.dtype || t.shape != want {
                return Err(format!(
                    "fold to {ty} needs a {} operand of shape {want:?}, got {t}",
                    ty.dtype
                ));
            }
            ty
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
                shape[*axis] = shape[*axis]
                    .checked_add(t.shape[*axis])
                    .ok_or_else(|| format!("concat extent along axis {axis} overflows"))?;
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
        Op::RandomUniform { .. } | Op::RandomNormal { .. } => {
            let t = operands[0];
            if t.dtype != DType::I32 || t.rank() != 0 {
                return Err(format!(
                    "{} needs an i32[] stream operand, got {t}",
                    op.name()
                ));
            }
            let ty = need_declared()?;
            if ty.dtype != DType::F32 {
                return Err(format!("{} produces f32, declared {ty}", op.name()));
            }
            ty
        }
        Op::RandomBernoulli { .. } => {
            let (step, p) = (operands[0], operands[1]);
            if step.dtype != DType::I32 || step.rank() != 0 {
                return Err(format!(
                    "random_bernoulli needs an i32[] stream operand, got {step}"
                ));
            }
            if p.dtype != DType::F32 || p.rank() != 0 {
                return Err(format!(
                    "random_bernoulli needs an f32[] probability operand, got {p}"
                ));
            }
            let ty = need_declared()?;
            if ty.dtype != DType::F32 {
                return Err(format!("random_bernoulli produces f32, declared {ty}"));
            }
            ty
        }
        Op::AllReduceMean => {
            f32_only(operands[0])?;
            operands[0].clone()
        }
        Op::Gather => {
            let (table, ids) = (operands[0], operands[1]);
            f32_only(table)?;
            if table.rank() != 2 {
                return Err(format!(
                    "gather needs an f32[rows, width] table, got {table}"
                ));
            }
            if ids.dtype != DType::I32 {
                return Err(format!("gather needs i32 ids, got {ids}"));
            }
            let mut shape = ids.shape.clone();
            shape.push(table.shape[1]);
            TensorType {
                dtype: DType::F32,
                shape,
            }
        }
        Op::ScatterAdd { rows } => {
            let (ids, values) = (operands[0], operands[1]);
            f32_only(values)?;
            if ids.dtype != DType::I32
                || values.rank() != ids.rank() + 1
                || values.shape[..ids.rank()] != ids.shape[..]
            {
                return Err(format!(
                    "scatter_add needs i32[S..] ids and f32[S.., width] values, got {ids} and {values}"
                ));
            }
            TensorType::f32([*rows, values.shape[ids.rank()]])
        }
    };
    if inferred.checked_bytes().is_none() {
        let what = if let Op::Input { name } | Op::Param { name } = op {
            format!("{} '{name}'", op.name())
        } else {
            op.name().to_string()
        };
        return Err(format!(
            "{what} yields {inferred}, larger than {} bytes",
            crate::types::MAX_TENSOR_BYTES
        ));
    }
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

/// The spatial extents of a channels-last `[N, S.., C]` type for a window
/// op, after checking the window attributes (equal lengths, entries ≥ 1).
fn window_spatial<'a>(
    name: &str,
    t: &'a TensorType,
    window: &[usize],
    strides: &[usize],
    dilation: &[usize],
) -> Result<&'a [usize], String> {
    let r = window.len();
    if r == 0 || strides.len() != r || dilation.len() != r {
        return Err(format!(
            "{name}: window {window:?}, strides {strides:?} and dilation {dilation:?} need one \
             entry per spatial axis (at least one)"
        ));
    }
    if window
        .iter()
        .chain(strides)
        .chain(dilation)
        .any(|&v| v == 0)
    {
        return Err(format!(
            "{name}: window {window:?}, strides {strides:?} and dilation {dilation:?} must be ≥ 1"
        ));
    }
    if t.rank() != r + 2 {
        return Err(format!(
            "{name}: a {r}-d window needs a rank-{} [N, spatial.., C] tensor, got {t}",
            r + 2
        ));
    }
    Ok(&t.shape[1..=r])
}

/// Output extents of whole windows: `(S - (K-1)·d - 1) / s + 1` per spatial
/// axis, overflow-checked; an error when a window does not fit.
pub fn window_outputs(
    spatial: &[usize],
    window: &[usize],
    strides: &[usize],
    dilation: &[usize],
) -> Result<Vec<usize>, String> {
    (0..spatial.len())
        .map(|i| {
            let span = (window[i] - 1)
                .checked_mul(dilation[i])
                .and_then(|v| v.checked_add(1))
                .ok_or_else(|| format!("window span overflows on spatial axis {i}"))?;
            if span > spatial[i] {
                return Err(format!(
                    "window {} (dilation {}, span {span}) is larger than extent {} of spatial axis {i}",
                    window[i], dilation[i], spatial[i]
                ));
            }
            Ok((spatial[i] - span) / strides[i] + 1)
        })
        .collect()
}

/// The noise generator behind [`Op::RandomUniform`]: a 32-bit integer hash of
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

/// The mask behind [`Op::RandomBernoulli`]: 1.0 when
/// [`random_uniform`]`(seed, step, index) < p`, else 0.0 (an exact
/// comparison, so both engines agree bit for bit). It consumes the same
/// stream as a uniform draw of the same seed: a mask of keep probability
/// `p` is the uniform noise thresholded at `p`.
pub fn random_bernoulli(seed: u32, step: i32, index: u32, p: f32) -> f32 {
    if random_uniform(seed, step, index) < p {
        1.0
    } else {
        0.0
    }
}

/// The second uniform stream of [`random_normal`]: `seed` with these bits flipped.
pub const NORMAL_SECOND_STREAM: u32 = 0x6A09_E667;

/// Taylor coefficients of `cos x = Σ c_k·x^(2k)` up to `x^18`, as f32; on
/// `|x| ≤ π` the truncation error is below 4e-9 (f32 rounding dominates).
pub const COS_COEFFS: [f32; 10] = [
    1.0,
    -0.5,
    4.166_666_7e-2,
    -1.388_888_9e-3,
    2.480_158_7e-5,
    -2.755_732e-7,
    2.087_675_7e-9,
    -1.147_074_6e-11,
    4.779_477_3e-14,
    -1.561_920_7e-16,
];

/// `cos(2π·u)` for `u ∈ [0, 1)`: `−cos(2π·(u − ½))`, a Horner evaluation of
/// [`COS_COEFFS`] in `x²` in f32 (no fused multiply-add), the order the
/// lowering follows.
pub fn cos_turn(u: f32) -> f32 {
    let x = (u - 0.5) * std::f32::consts::TAU;
    let x2 = x * x;
    let mut p = COS_COEFFS[9];
    for c in COS_COEFFS[..9].iter().rev() {
        p = p * x2 + c;
    }
    -p
}

/// The noise generator behind [`Op::RandomNormal`]: Box–Muller on two
/// [`random_uniform`] draws of the same `(step, index)`, from `seed` and
/// `seed ^ NORMAL_SECOND_STREAM`: `√(−2·ln(1 − u₁))·cos(2π·u₂)`. `1 − u₁` is
/// in `(0, 1]`, so the result is finite, `|z| ≤ 5.8`. The interpreter uses
/// `ln` from the standard library and the JIT its inline polynomial, so the
/// two engines agree to a few ulp (each is bit-reproducible on its own).
pub fn random_normal(seed: u32, step: i32, index: u32) -> f32 {
    let u1 = random_uniform(seed, step, index);
    let u2 = random_uniform(seed ^ NORMAL_SECOND_STREAM, step, index);
    (-2.0 * (1.0 - u1).ln()).sqrt() * cos_turn(u2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_moments_and_cos() {
        for k in 0..100 {
            let u = k as f32 / 100.0;
            let want = (std::f64::consts::TAU * u as f64).cos();
            assert!((cos_turn(u) as f64 - want).abs() < 1e-6, "cos_turn({u})");
        }
        let n = 200_000u32;
        let z: Vec<f64> = (0..n).map(|i| random_normal(11, 4, i) as f64).collect();
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert!(z.iter().all(|v| v.is_finite() && v.abs() < 5.8));
    }

    fn f(shape: &[usize]) -> TensorType {
        TensorType::f32(shape)
    }

    #[test]
    fn oversized_results_are_refused() {
        let big = 1usize << 62;
        let input = Op::Input { name: "x".into() };
        let e = infer_type(&input, &[], Some(&f(&[2, big]))).unwrap_err();
        assert!(
            e.contains("input 'x' yields f32[2,4611686018427387904]"),
            "{e}"
        );
        assert!(infer_type(&input, &[], Some(&f(&[2, 1 << 40]))).is_ok());
        // Two halves whose concatenation does not fit, and an extent sum that wraps.
        let half = f(&[1, 1 << 61]);
        let e = infer_type(&Op::Concat { axis: 1 }, &[&half, &half], None).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
        let edge = f(&[0, usize::MAX]);
        let e = infer_type(&Op::Concat { axis: 1 }, &[&edge, &edge], None).unwrap_err();
        assert!(e.contains("overflows"), "{e}");
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
