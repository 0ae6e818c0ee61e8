//! The reference interpreter: the oracle every other engine is checked against.
//!
//! It is written for obviousness, not speed: every kernel is a direct loop over
//! row-major data, and structural ops (broadcast, transpose, slice) are a
//! gather through an explicit list of source indices. Transcendental functions
//! are computed in `f64` and rounded once to `f32`; sums and matrix products
//! accumulate in `f64`.
//!
//! Semantics chosen where IEEE or the op docs leave room (see also [`Op`]):
//! - `max`/`min` propagate NaN (like `jnp.maximum`); on ties (including
//!   `±0`) they return the SECOND operand, matching the gradient convention.
//! - `reduce_max` propagates NaN; over an empty set it is `-inf` (`i32::MIN`
//!   for `i32`). `reduce_sum` over an empty set is `0`.
//! - `argmax` returns the first maximal index and treats NaN as maximal (the
//!   first NaN wins, like NumPy); an empty axis is an error.
//! - Comparisons follow IEEE (any comparison with NaN is false except `ne`).
//! - `i32` arithmetic wraps (`add`, `sub`, `mul`, `neg`, `abs`); `div`
//!   truncates toward zero, `i32::MIN / -1` wraps to `i32::MIN`, and division
//!   by zero yields `0` (no trap).
//! - `cast` f32→i32 truncates toward zero, saturating, NaN→0 (Rust `as`);
//!   i32→f32 rounds to nearest.
//! - `sign(±0) = 0`, `sign(NaN) = NaN`.
//! - `sigmoid` is evaluated stably (`e^x/(1+e^x)` for `x < 0`), so it never
//!   yields NaN for finite input.
//! - `one_hot` gives an all-zero row for labels outside `[0, depth)`.
//! - `random_uniform` element `i` (row-major) is `random_uniform(seed, step, i)`;
//!   `random_normal` element `i` is `random_normal(seed, step, i)`;
//!   `random_bernoulli` element `i` is `random_bernoulli(seed, step, i, p)`.
//! - `gather` and `scatter_add` refuse an id outside `[0, rows)`, naming its
//!   row, the element in the row and the value ([`id_out_of_range`]).
#![deny(clippy::wildcard_enum_match_arm)]

use crate::graph::{Graph, Node, NodeId};
use crate::op::{
    random_bernoulli, random_normal, random_uniform, BinaryOp, Literal, Op, ReduceOp, UnaryOp,
};
use crate::tensor::{Data, HostTensor};
use crate::types::{strides, DType, TensorType};
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};

/// Evaluates one non-leaf op (or a `const`) on host operands; `ty` is the
/// node's result type. The operand types are checked against the op's type
/// rule first, so a mismatch is an error, never a panic. `input` and `param`
/// cannot be evaluated here (they come from feeds).
pub fn eval_op(op: &Op, ty: &TensorType, operands: &[&HostTensor]) -> Result<HostTensor, String> {
    for (i, t) in operands.iter().enumerate() {
        let len = match &t.data {
            Data::F32(v) => v.len(),
            Data::I32(v) => v.len(),
        };
        let dtype_ok = matches!(
            (&t.data, t.ty.dtype),
            (Data::F32(_), DType::F32) | (Data::I32(_), DType::I32)
        );
        if len != t.ty.numel() || !dtype_ok {
            return Err(format!(
                "{}: operand {i} holds {len} {} values but claims type {}",
                op.name(),
                match &t.data {
                    Data::F32(_) => "f32",
                    Data::I32(_) => "i32",
                },
                t.ty
            ));
        }
    }
    let tys: SmallVec<[&TensorType; 4]> = operands.iter().map(|t| &t.ty).collect();
    let checked = crate::op::infer_type(op, &tys, Some(ty))?;
    let ty = &checked;
    let data = match op {
        Op::Input { name } | Op::Param { name } => {
            return Err(format!(
                "{} '{name}' is a leaf: its value must be fed",
                op.name()
            ))
        }
        Op::Const(lit) => eval_const(lit, ty),
        Op::Unary(u) => eval_unary(*u, &operands[0].data)?,
        Op::Binary(b) => eval_binary(*b, &operands[0].data, &operands[1].data),
        Op::Select => {
            let m = f32s(operands[0])?;
            match (&operands[1].data, &operands[2].data) {
                (Data::F32(a), Data::F32(b)) => Data::F32(select(m, a, b)),
                (Data::I32(a), Data::I32(b)) => Data::I32(select(m, a, b)),
                (Data::F32(_), Data::I32(_)) | (Data::I32(_), Data::F32(_)) => {
                    return Err("select: branches differ in dtype".into())
                }
            }
        }
        Op::Cast => match (&operands[0].data, ty.dtype) {
            (Data::F32(v), DType::I32) => Data::I32(v.iter().map(|&x| x as i32).collect()),
            (Data::I32(v), DType::F32) => Data::F32(v.iter().map(|&x| x as f32).collect()),
            (d, _) => d.clone(),
        },
        // `all_reduce_mean` over the interpreter's single process: the mean
        // of one value is the value.
        Op::StopGradient | Op::Reshape | Op::AllReduceMean => operands[0].data.clone(),
        Op::Broadcast => gather(
            &operands[0].data,
            &broadcast_indices(operands[0].shape(), &ty.shape),
        ),
        Op::Transpose { perm } => gather(
            &operands[0].data,
            &transpose_indices(operands[0].shape(), perm),
        ),
        Op::Slice { axis, start, .. } => gather(
            &operands[0].data,
            &slice_indices(operands[0].shape(), &ty.shape, *axis, *start),
        ),
        Op::Reduce { op: r, axes } => eval_reduce(*r, axes, operands[0])?,
        Op::ArgMax { axis } => Data::I32(argmax(f32s(operands[0])?, operands[0].shape(), *axis)?),
        Op::MatMul { trans_a, trans_b } => Data::F32(matmul(
            operands[0],
            operands[1],
            *trans_a,
            *trans_b,
            &ty.shape,
        )?),
        Op::Unfold {
            strides: st,
            dilation,
            ..
        } => gather(
            &operands[0].data,
            &unfold_indices(operands[0].shape(), &ty.shape, st, dilation),
        ),
        Op::Fold {
            strides: st,
            dilation,
            ..
        } => {
            let idx = unfold_indices(&ty.shape, operands[0].shape(), st, dilation);
            let mut acc = vec![0.0f64; ty.numel()];
            for (&i, &v) in idx.iter().zip(f32s(operands[0])?) {
                acc[i] += v as f64;
            }
            Data::F32(acc.into_iter().map(|v| v as f32).collect())
        }
        Op::Concat { axis } => concat(operands, *axis),
        Op::OneHot { depth } => {
            let labels = operands[0].as_i32().ok_or("one_hot: labels must be i32")?;
            let mut out = vec![0.0f32; labels.len() * depth];
            for (i, &l) in labels.iter().enumerate() {
                if l >= 0 && (l as usize) < *depth {
                    out[i * depth + l as usize] = 1.0;
                }
            }
            Data::F32(out)
        }
        Op::RandomUniform { seed } => Data::F32(draw(op, ty, operands[0], |step, i| {
            random_uniform(*seed, step, i)
        })?),
        Op::RandomNormal { seed } => Data::F32(draw(op, ty, operands[0], |step, i| {
            random_normal(*seed, step, i)
        })?),
        Op::RandomBernoulli { seed } => {
            let p = f32s(operands[1])?
                .first()
                .copied()
                .ok_or("random_bernoulli: the probability operand must be an f32 scalar")?;
            Data::F32(draw(op, ty, operands[0], |step, i| {
                random_bernoulli(*seed, step, i, p)
            })?)
        }
        Op::Gather => {
            let table = f32s(operands[0])?;
            let ids = operands[1].as_i32().ok_or("gather: ids must be i32")?;
            let (rows, width) = (operands[0].shape()[0], operands[0].shape()[1]);
            let mut out = Vec::with_capacity(ids.len() * width);
            for (pos, &id) in ids.iter().enumerate() {
                if id < 0 || id as usize >= rows {
                    return Err(id_out_of_range(op, &operands[1].ty, pos, id, rows));
                }
                let r = id as usize * width;
                out.extend_from_slice(&table[r..r + width]);
            }
            Data::F32(out)
        }
        Op::ScatterAdd { rows } => {
            let ids = operands[0].as_i32().ok_or("scatter_add: ids must be i32")?;
            let values = f32s(operands[1])?;
            let width = ty.shape[1];
            let mut out = vec![0.0f32; rows * width];
            for (pos, &id) in ids.iter().enumerate() {
                if id < 0 || id as usize >= *rows {
                    return Err(id_out_of_range(op, &operands[0].ty, pos, id, *rows));
                }
                let dst = &mut out[id as usize * width..(id as usize + 1) * width];
                for (o, v) in dst.iter_mut().zip(&values[pos * width..(pos + 1) * width]) {
                    *o += v;
                }
            }
            Data::F32(out)
        }
    };
    Ok(HostTensor {
        ty: ty.clone(),
        data,
    })
}

/// How an engine names node `node` in an error: `node %N (op) in scope
/// '…'`, `N` its number in the text format ([`crate::text::print`]: the
/// position in [`Graph::topo_order`], which is also its id in
/// [`Graph::compacted`], the graph the JIT compiles).
pub fn node_at(num: usize, node: &Node) -> String {
    format!("node %{num} ({}) in scope '{}'", node.op.name(), node.scope)
}

/// The error for an id outside `[0, rows)` at row-major position `pos` of
/// the `ids` operand of `op` (`gather`, `scatter_add`), naming the row (the
/// leading axis, the batch row of an Embedding's ids), the element in it
/// and the value. The interpreter and the JIT's fault check (after
/// [`node_at`]) both report with these words.
pub fn id_out_of_range(op: &Op, ids: &TensorType, pos: usize, id: i32, rows: usize) -> String {
    let per = ids.shape[1..].iter().product::<usize>().max(1);
    let at = if ids.rank() == 0 {
        "the only id".to_string()
    } else {
        format!("row {} (element {} of its row)", pos / per, pos % per)
    };
    format!(
        "{}: {at} of ids {ids} holds id {id} outside [0, {rows})",
        op.name()
    )
}

/// Evaluates a verified graph. `feeds` supplies every `input` and `param` by
/// name; returns the named outputs in graph order. Only the nodes the outputs
/// depend on are evaluated, so unused leaves need no feed; unused feeds are
/// ignored. A missing feed, or one whose type differs from its leaf's, is an
/// error naming the leaf and the expected type.
pub fn interpret(
    g: &Graph,
    feeds: &HashMap<String, HostTensor>,
) -> Result<Vec<(String, HostTensor)>, String> {
    let want: Vec<NodeId> = g.outputs().iter().map(|o| o.1).collect();
    let values = interpret_with(g, feeds, &want)?;
    g.outputs()
        .iter()
        .map(|(name, id)| {
            values
                .get(id)
                .cloned()
                .map(|v| (name.clone(), v))
                .ok_or_else(|| format!("output '{name}' was not evaluated"))
        })
        .collect()
}

/// Evaluates the nodes `want` and everything they depend on. Returns the
/// value of every evaluated node (so at least one entry per wanted node).
/// Feeds work as in [`interpret`].
pub fn interpret_with(
    g: &Graph,
    feeds: &HashMap<String, HostTensor>,
    want: &[NodeId],
) -> Result<HashMap<NodeId, HostTensor>, String> {
    for &w in want {
        if !g.contains(w) {
            let name = g
                .outputs()
                .iter()
                .find(|o| o.1 == w)
                .map(|o| format!(" (output '{}')", o.0))
                .unwrap_or_default();
            return Err(format!(
                "graph '{}': node %{}{name} does not exist",
                g.name,
                w.index()
            ));
        }
    }
    let order = g
        .topo_order()
        .map_err(|n| format!("graph '{}': cycle through node %{}", g.name, n.index()))?;
    // Nodes the wanted ones depend on (reverse reachability).
    let mut needed: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> = want.to_vec();
    while let Some(n) = stack.pop() {
        if needed.insert(n) {
            stack.extend(g.operands(n));
        }
    }
    let mut values: HashMap<NodeId, HostTensor> = HashMap::with_capacity(needed.len());
    // `num` is the node's number in the text format (its topological position).
    for (num, id) in order.into_iter().enumerate() {
        if !needed.contains(&id) {
            continue;
        }
        let node = g.node(id);
        let at = || node_at(num, node);
        let value = match &node.op {
            Op::Input { name } | Op::Param { name } => {
                let v = feeds.get(name).ok_or_else(|| {
                    format!(
                        "{}: no feed for {} '{name}' (expected {})",
                        at(),
                        node.op.name(),
                        node.ty
                    )
                })?;
                let len_ok = match &v.data {
                    Data::F32(d) => v.ty.dtype == DType::F32 && d.len() == v.ty.numel(),
                    Data::I32(d) => v.ty.dtype == DType::I32 && d.len() == v.ty.numel(),
                };
                if v.ty != node.ty || !len_ok {
                    return Err(format!(
                        "{}: feed for {} '{name}' has type {} (data {} values), expected {}",
                        at(),
                        node.op.name(),
                        v.ty,
                        match &v.data {
                            Data::F32(d) => d.len(),
                            Data::I32(d) => d.len(),
                        },
                        node.ty
                    ));
                }
                v.clone()
            }
            op @ (Op::Const(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Select
            | Op::Cast
            | Op::Broadcast
            | Op::Reshape
            | Op::Transpose { .. }
            | Op::Reduce { .. }
            | Op::ArgMax { .. }
            | Op::MatMul { .. }
            | Op::Unfold { .. }
            | Op::Fold { .. }
            | Op::Concat { .. }
            | Op::Slice { .. }
            | Op::OneHot { .. }
            | Op::StopGradient
            | Op::RandomUniform { .. }
            | Op::Gather
            | Op::ScatterAdd { .. }
            | Op::RandomNormal { .. }
            | Op::RandomBernoulli { .. }
            | Op::AllReduceMean) => {
                let ops = g.operands(id);
                let args: Vec<&HostTensor> = ops
                    .iter()
                    .map(|o| {
                        values
                            .get(o)
                            .ok_or_else(|| format!("{}: operand %{} has no value", at(), o.index()))
                    })
                    .collect::<Result<_, _>>()?;
                eval_op(op, &node.ty, &args).map_err(|m| format!("{}: {m}", at()))?
            }
        };
        values.insert(id, value);
    }
    Ok(values)
}

/// The error function in `f64`, within a few ulp (so, rounded to `f32`, it
/// is correctly rounded in all but rare cases).
///
/// - `|x| < 2.5`: the everywhere-convergent series with positive terms
///   `erf(x) = 2/√π · e^{-x²} · Σ_{n≥0} x·(2x²)ⁿ / (1·3·…·(2n+1))`
///   (no cancellation).
/// - `2.5 ≤ |x| < 6`: `1 - erfc(x)` with Laplace's continued fraction
///   `erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`,
///   evaluated bottom-up from 80 levels (converged to f64 precision here).
/// - `|x| ≥ 6`: `±1` (`erfc(6) ≈ 2e-17` is below half an ulp of 1).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a >= 6.0 {
        1.0
    } else if a >= 2.5 {
        let mut f = a;
        for n in (1..=80).rev() {
            f = a + (n as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    } else {
        let x2 = a * a;
        let mut term = a;
        let mut sum = a;
        let mut n = 0.0f64;
        // Terms grow until n ≈ x² and then shrink geometrically; the loop
        // converges in well under 100 steps for |x| < 2.5.
        for _ in 0..400 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        (2.0 / std::f64::consts::PI.sqrt() * (-x2).exp() * sum).min(1.0)
    };
    r.copysign(x)
}

/// The logistic sigmoid in `f64`, stable for all inputs.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn f32s(t: &HostTensor) -> Result<&[f32], String> {
    t.as_f32()
        .ok_or_else(|| format!("expected an f32 operand, got {}", t.ty))
}

fn eval_const(lit: &Literal, ty: &TensorType) -> Data {
    let n = ty.numel();
    match lit {
        Literal::F32(v) if v.len() == 1 => Data::F32(vec![v[0]; n]),
        Literal::F32(v) => Data::F32(v.clone()),
        Literal::I32(v) if v.len() == 1 => Data::I32(vec![v[0]; n]),
        Literal::I32(v) => Data::I32(v.clone()),
    }
}

/// Errors for an op the type rule admits on `i32` but that has no `i32` kernel.
/// The draws of a random op of type `ty`: `f(step, i)` for element `i`,
/// `step` the value of the `i32[]` stream operand.
fn draw(
    op: &Op,
    ty: &TensorType,
    stream: &HostTensor,
    f: impl Fn(i32, u32) -> f32,
) -> Result<Vec<f32>, String> {
    let step = stream
        .as_i32()
        .and_then(|s| s.first().copied())
        .ok_or_else(|| format!("{}: the stream operand must be an i32 scalar", op.name()))?;
    let n = ty.numel();
    if n > u32::MAX as usize + 1 {
        return Err(format!(
            "{}: {ty} has more elements than a u32 index",
            op.name()
        ));
    }
    Ok((0..n).map(|i| f(step, i as u32)).collect())
}

fn eval_unary(u: UnaryOp, d: &Data) -> Result<Data, String> {
    match d {
        Data::F32(v) => {
            let f: fn(f32) -> f32 = match u {
                UnaryOp::Neg => |x| -x,
                UnaryOp::Exp => |x| (x as f64).exp() as f32,
                UnaryOp::Log => |x| (x as f64).ln() as f32,
                UnaryOp::Tanh => |x| (x as f64).tanh() as f32,
                UnaryOp::Sigmoid => |x| sigmoid(x as f64) as f32,
                UnaryOp::Abs => |x| x.abs(),
                UnaryOp::Sqrt => |x| x.sqrt(),
                UnaryOp::Recip => |x| 1.0 / x,
                UnaryOp::Sign => |x| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else if x == 0.0 {
                        0.0
                    } else {
                        x // NaN
                    }
                },
                UnaryOp::Erf => |x| erf(x as f64) as f32,
                UnaryOp::Sin => |x| (x as f64).sin() as f32,
                UnaryOp::Cos => |x| (x as f64).cos() as f32,
            };
            Ok(Data::F32(v.iter().map(|&x| f(x)).collect()))
        }
        Data::I32(v) => {
            // The type rule admits only the ops whose row says `int`.
            let f: fn(i32) -> i32 = match u {
                UnaryOp::Neg => |x| x.wrapping_neg(),
                UnaryOp::Abs => |x| x.wrapping_abs(),
                UnaryOp::Sign => |x| x.signum(),
                UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Tanh
                | UnaryOp::Sigmoid
                | UnaryOp::Sqrt
                | UnaryOp::Recip
                | UnaryOp::Erf
                | UnaryOp::Sin
                | UnaryOp::Cos => return Err(format!("{}: no i32 kernel", u.name())),
            };
            Ok(Data::I32(v.iter().map(|&x| f(x)).collect()))
        }
    }
}

/// `x^e` on i32: the wrapping power for `e ≥ 0`; for `e < 0`, `1/xᵉ` truncated
/// toward zero as integer division truncates (`1` for `x = 1`, `±1` for
/// `x = -1`, else `0`, including `0^e = 0` as `x/0 = 0`).
fn int_pow(x: i32, e: i32) -> i32 {
    if e >= 0 {
        x.wrapping_pow(e.unsigned_abs())
    } else if x == 1 || (x == -1 && e % 2 == 0) {
        1
    } else if x == -1 {
        -1
    } else {
        0
    }
}

fn bool_f32(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn eval_binary(b: BinaryOp, l: &Data, r: &Data) -> Data {
    match (l, r) {
        (Data::F32(x), Data::F32(y)) => {
            let f: fn(f32, f32) -> f32 = match b {
                BinaryOp::Add => |a, b| a + b,
                BinaryOp::Sub => |a, b| a - b,
                BinaryOp::Mul => |a, b| a * b,
                BinaryOp::Div => |a, b| a / b,
                BinaryOp::Max => |a, b| {
                    if a.is_nan() || b.is_nan() {
                        f32::NAN
                    } else if a > b {
                        a
                    } else {
                        b
                    }
                },
                BinaryOp::Min => |a, b| {
                    if a.is_nan() || b.is_nan() {
                        f32::NAN
                    } else if a < b {
                        a
                    } else {
                        b
                    }
                },
                BinaryOp::Eq => |a, b| bool_f32(a == b),
                BinaryOp::Ne => |a, b| bool_f32(a != b),
                BinaryOp::Lt => |a, b| bool_f32(a < b),
                BinaryOp::Le => |a, b| bool_f32(a <= b),
                BinaryOp::Gt => |a, b| bool_f32(a > b),
                BinaryOp::Ge => |a, b| bool_f32(a >= b),
                // C's pow on f64 (exact for f32 operands bar one rounding): its
                // special cases are the op's (see the table row).
                BinaryOp::Pow => |a, b| (a as f64).powf(b as f64) as f32,
            };
            Data::F32(x.iter().zip(y).map(|(&a, &b)| f(a, b)).collect())
        }
        (Data::I32(x), Data::I32(y)) => {
            let arith = |f: fn(i32, i32) -> i32| {
                Data::I32(x.iter().zip(y).map(|(&a, &b)| f(a, b)).collect())
            };
            let compare = |f: fn(i32, i32) -> bool| {
                Data::F32(x.iter().zip(y).map(|(&a, &b)| bool_f32(f(a, b))).collect())
            };
            match b {
                BinaryOp::Add => arith(|a, b| a.wrapping_add(b)),
                BinaryOp::Sub => arith(|a, b| a.wrapping_sub(b)),
                BinaryOp::Mul => arith(|a, b| a.wrapping_mul(b)),
                BinaryOp::Div => arith(|a, b| if b == 0 { 0 } else { a.wrapping_div(b) }),
                BinaryOp::Max => arith(|a, b| if a > b { a } else { b }),
                BinaryOp::Min => arith(|a, b| if a < b { a } else { b }),
                BinaryOp::Eq => compare(|a, b| a == b),
                BinaryOp::Ne => compare(|a, b| a != b),
                BinaryOp::Lt => compare(|a, b| a < b),
                BinaryOp::Le => compare(|a, b| a <= b),
                BinaryOp::Gt => compare(|a, b| a > b),
                BinaryOp::Ge => compare(|a, b| a >= b),
                BinaryOp::Pow => arith(int_pow),
            }
        }
        // Unreachable after `infer_type` (operand types are identical); kept total.
        (Data::F32(x), Data::I32(_)) | (Data::I32(_), Data::F32(x)) => {
            Data::F32(vec![f32::NAN; x.len()])
        }
    }
}

fn select<T: Copy>(m: &[f32], a: &[T], b: &[T]) -> Vec<T> {
    m.iter()
        .zip(a.iter().zip(b))
        .map(|(&m, (&a, &b))| if m != 0.0 { a } else { b })
        .collect()
}

/// Picks `d[i]` for each `i` of `idx`.
fn gather(d: &Data, idx: &[usize]) -> Data {
    match d {
        Data::F32(v) => Data::F32(idx.iter().map(|&i| v[i]).collect()),
        Data::I32(v) => Data::I32(idx.iter().map(|&i| v[i]).collect()),
    }
}

/// For every element of `out_shape` (row-major), `offset + Σ coordᵢ·src_strideᵢ`.
fn strided_indices(out_shape: &[usize], src_strides: &[usize], offset: usize) -> Vec<usize> {
    let n: usize = out_shape.iter().product();
    let mut idx = Vec::with_capacity(n);
    let mut coord = vec![0usize; out_shape.len()];
    let mut cur = offset;
    for _ in 0..n {
        idx.push(cur);
        // Odometer increment, innermost axis fastest.
        for ax in (0..out_shape.len()).rev() {
            coord[ax] += 1;
            cur += src_strides[ax];
            if coord[ax] < out_shape[ax] {
                break;
            }
            cur -= src_strides[ax] * coord[ax];
            coord[ax] = 0;
        }
    }
    idx
}

/// Source indices of a NumPy broadcast from `from` to `to` (right-aligned;
/// axes of extent 1 and missing leading axes get stride 0).
fn broadcast_indices(from: &[usize], to: &[usize]) -> Vec<usize> {
    let fs = strides(from);
    let lead = to.len() - from.len();
    let src: Vec<usize> = (0..to.len())
        .map(|i| {
            if i < lead || from[i - lead] == 1 {
                0
            } else {
                fs[i - lead]
            }
        })
        .collect();
    strided_indices(to, &src, 0)
}

/// Source indices of a transpose: result axis `i` is operand axis `perm[i]`.
fn transpose_indices(from: &[usize], perm: &[usize]) -> Vec<usize> {
    let fs = strides(from);
    let out: Vec<usize> = perm.iter().map(|&p| from[p]).collect();
    let src: Vec<usize> = perm.iter().map(|&p| fs[p]).collect();
    strided_indices(&out, &src, 0)
}

/// Source indices of `start..` along `axis` with result shape `out`.
fn slice_indices(from: &[usize], out: &[usize], axis: usize, start: usize) -> Vec<usize> {
    let fs = strides(from);
    strided_indices(out, &fs, start * fs[axis])
}

/// For every element of the `unfold` result `windows` (`[N, O.., K.., C]`),
/// the row-major index of the element of `image` (`[N, S.., C]`) it reads:
/// `n, (oᵢ·strideᵢ + kᵢ·dilationᵢ).., c`. `fold` adds at the same indices.
fn unfold_indices(
    image: &[usize],
    windows: &[usize],
    st: &[usize],
    dilation: &[usize],
) -> Vec<usize> {
    let r = st.len();
    let xs = strides(image);
    let mut src = Vec::with_capacity(windows.len());
    src.push(xs[0]);
    src.extend((0..r).map(|i| st[i] * xs[1 + i]));
    src.extend((0..r).map(|i| dilation[i] * xs[1 + i]));
    src.push(1);
    strided_indices(windows, &src, 0)
}

fn eval_reduce(r: ReduceOp, axes: &[usize], x: &HostTensor) -> Result<Data, String> {
    let shape = x.shape();
    let out_shape: Vec<usize> = (0..shape.len())
        .filter(|i| !axes.contains(i))
        .map(|i| shape[i])
        .collect();
    let os = strides(&out_shape);
    // Stride into the output of each input axis: 0 for reduced axes.
    let mut k = 0;
    let dst: Vec<usize> = (0..shape.len())
        .map(|i| {
            if axes.contains(&i) {
                0
            } else {
                k += 1;
                os[k - 1]
            }
        })
        .collect();
    // `targets[i]` is the output element input element `i` folds into.
    let targets = strided_indices(shape, &dst, 0);
    let n_out: usize = out_shape.iter().product();
    Ok(match (r, &x.data) {
        (ReduceOp::Sum, Data::F32(v)) => {
            let mut acc = vec![0.0f64; n_out];
            for (&t, &e) in targets.iter().zip(v) {
                acc[t] += e as f64;
            }
            Data::F32(acc.into_iter().map(|a| a as f32).collect())
        }
        (ReduceOp::Max, Data::F32(v)) => {
            let mut acc = vec![f32::NEG_INFINITY; n_out];
            for (&t, &e) in targets.iter().zip(v) {
                if e.is_nan() || e > acc[t] {
                    acc[t] = if acc[t].is_nan() { acc[t] } else { e };
                }
            }
            Data::F32(acc)
        }
        (ReduceOp::Max, Data::I32(v)) => {
            let mut acc = vec![i32::MIN; n_out];
            for (&t, &e) in targets.iter().zip(v) {
                acc[t] = acc[t].max(e);
            }
            Data::I32(acc)
        }
        (ReduceOp::Sum, Data::I32(_)) => return Err("reduce_sum needs f32".into()),
    })
}

fn argmax(v: &[f32], shape: &[usize], axis: usize) -> Result<Vec<i32>, String> {
    let extent = shape[axis];
    if extent == 0 {
        return Err(format!("argmax over empty axis {axis}"));
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| v[(o * extent + j) * inner + i];
            let mut best = 0usize;
            for j in 1..extent {
                if at(best).is_nan() {
                    break;
                }
                if at(j).is_nan() || at(j) > at(best) {
                    best = j;
                }
            }
            out.push(best as i32);
        }
    }
    Ok(out)
}

/// `[b?, m, k] × [b?, k, n]` after optional transposes of the last two axes.
/// Operands are first copied into canonical (untransposed) layout; the
/// product is a plain `i, p, j` loop accumulating rows in `f64`.
fn matmul(
    a: &HostTensor,
    b: &HostTensor,
    trans_a: bool,
    trans_b: bool,
    out_shape: &[usize],
) -> Result<Vec<f32>, String> {
    let canon = |t: &HostTensor, trans: bool| -> Result<(Vec<f32>, usize, usize), String> {
        let v = f32s(t)?;
        let s = t.shape();
        let r = s.len();
        let (rows, cols) = (s[r - 2], s[r - 1]);
        if !trans {
            return Ok((v.to_vec(), rows, cols));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        let idx = transpose_indices(s, &perm);
        Ok((idx.iter().map(|&i| v[i]).collect(), cols, rows))
    };
    let (av, m, k) = canon(a, trans_a)?;
    let (bv, _, n) = canon(b, trans_b)?;
    let batch = if out_shape.len() == 3 {
        out_shape[0]
    } else {
        1
    };
    let mut out = vec![0.0f32; batch * m * n];
    let mut row = vec![0.0f64; n];
    for bi in 0..batch {
        let ab = &av[bi * m * k..(bi + 1) * m * k];
        let bb = &bv[bi * k * n..(bi + 1) * k * n];
        for i in 0..m {
            row.iter_mut().for_each(|r| *r = 0.0);
            for p in 0..k {
                let x = ab[i * k + p] as f64;
                for (r, &y) in row.iter_mut().zip(&bb[p * n..(p + 1) * n]) {
                    *r += x * y as f64;
                }
            }
            let o = &mut out[(bi * m + i) * n..(bi * m + i + 1) * n];
            for (o, &r) in o.iter_mut().zip(&row) {
                *o = r as f32;
            }
        }
    }
    Ok(out)
}

/// Joins operands along `axis`: for each outer index, the blocks of every
/// operand in turn.
fn concat(operands: &[&HostTensor], axis: usize) -> Data {
    let shape0 = operands[0].shape();
    let outer: usize = shape0[..axis].iter().product();
    let blocks: Vec<usize> = operands
        .iter()
        .map(|t| t.shape()[axis..].iter().product())
        .collect();
    match &operands[0].data {
        Data::F32(_) => {
            let mut out = Vec::new();
            for o in 0..outer {
                for (t, &bl) in operands.iter().zip(&blocks) {
                    if let Some(v) = t.as_f32() {
                        out.extend_from_slice(&v[o * bl..(o + 1) * bl]);
                    }
                }
            }
            Data::F32(out)
        }
        Data::I32(_) => {
            let mut out = Vec::new();
            for o in 0..outer {
                for (t, &bl) in operands.iter().zip(&blocks) {
                    if let Some(v) = t.as_i32() {
                        out.extend_from_slice(&v[o * bl..(o + 1) * bl]);
                    }
                }
            }
            Data::I32(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{LossReason, Role};
    use crate::{nn, Builder};

    fn f(shape: &[usize], v: &[f32]) -> HostTensor {
        HostTensor::f32(shape, v.to_vec()).unwrap()
    }
    fn i(shape: &[usize], v: &[i32]) -> HostTensor {
        HostTensor::i32(shape, v.to_vec()).unwrap()
    }
    /// `x[i,j,k] = 12i + 4j + k` on shape [2,3,4]: the values 0..24 row-major.
    fn iota234() -> HostTensor {
        f(&[2, 3, 4], &(0..24).map(|v| v as f32).collect::<Vec<_>>())
    }
    fn ev(op: Op, ty: TensorType, args: &[&HostTensor]) -> HostTensor {
        eval_op(&op, &ty, args).unwrap()
    }
    fn un(u: UnaryOp, x: &HostTensor) -> HostTensor {
        ev(Op::Unary(u), x.ty.clone(), &[x])
    }
    fn bin(b: BinaryOp, x: &HostTensor, y: &HostTensor) -> HostTensor {
        let ty = if b.is_comparison() {
            x.ty.with_dtype(DType::F32)
        } else {
            x.ty.clone()
        };
        ev(Op::Binary(b), ty, &[x, y])
    }
    fn vf(t: &HostTensor) -> Vec<f32> {
        t.as_f32().unwrap().to_vec()
    }
    fn vi(t: &HostTensor) -> Vec<i32> {
        t.as_i32().unwrap().to_vec()
    }
    /// Equality where NaN equals NaN.
    fn same(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
    }
    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
        }
    }
    fn axes(a: &[usize]) -> SmallVec<[usize; 4]> {
        SmallVec::from_slice(a)
    }

    #[test]
    fn const_splat_and_full() {
        let t = ev(
            Op::Const(Literal::F32(vec![2.5])),
            TensorType::f32([2, 2]),
            &[],
        );
        assert_eq!(vf(&t), vec![2.5; 4]);
        let t = ev(
            Op::Const(Literal::I32(vec![1, 2, 3])),
            TensorType::i32([3]),
            &[],
        );
        assert_eq!(vi(&t), vec![1, 2, 3]);
        // A wrongly sized literal is an error, not a panic.
        assert!(eval_op(
            &Op::Const(Literal::F32(vec![1.0, 2.0])),
            &TensorType::f32([3]),
            &[]
        )
        .is_err());
    }

    #[test]
    fn unary_f32() {
        let x = f(&[4], &[0.0, 1.0, -2.0, 4.0]);
        assert_eq!(vf(&un(UnaryOp::Neg, &x)), vec![-0.0, -1.0, 2.0, -4.0]);
        assert_eq!(vf(&un(UnaryOp::Abs, &x)), vec![0.0, 1.0, 2.0, 4.0]);
        // sqrt(-2) is NaN.
        assert!(same(
            &vf(&un(UnaryOp::Sqrt, &x)),
            &[0.0, 1.0, f32::NAN, 2.0]
        ));
        // 1/0 = inf, 1/-2 = -0.5.
        assert_eq!(
            vf(&un(UnaryOp::Recip, &x)),
            vec![f32::INFINITY, 1.0, -0.5, 0.25]
        );
        assert_eq!(
            vf(&un(UnaryOp::Recip, &f(&[1], &[-0.0]))),
            vec![f32::NEG_INFINITY]
        );
        // e^0 = 1, e^1 = 2.718281828…, e^-2 = 0.1353352832…, e^4 = 54.59815003…
        close(
            &vf(&un(UnaryOp::Exp, &x)),
            &[1.0, std::f32::consts::E, 0.135_335_28, 54.598_15],
            1e-7,
        );
        // e^100 overflows f32 to inf; e^-200 underflows to 0.
        assert_eq!(
            vf(&un(UnaryOp::Exp, &f(&[2], &[100.0, -200.0]))),
            vec![f32::INFINITY, 0.0]
        );
        // ln 1 = 0, ln 0 = -inf, ln -1 = NaN, ln 4 = 1.3862943611…
        let l = vf(&un(UnaryOp::Log, &f(&[4], &[1.0, 0.0, -1.0, 4.0])));
        assert!(same(&l, &[0.0, f32::NEG_INFINITY, f32::NAN, 1.386_294_4]));
        // tanh 0 = 0, tanh 1 = 0.7615941559…, tanh(±50) = ±1.
        assert_eq!(
            vf(&un(UnaryOp::Tanh, &f(&[4], &[0.0, 1.0, 50.0, -50.0]))),
            vec![0.0, 0.761_594_2, 1.0, -1.0]
        );
        // sign(±0) = 0, sign(NaN) = NaN.
        let s = vf(&un(
            UnaryOp::Sign,
            &f(&[6], &[3.0, -0.5, 0.0, -0.0, f32::NAN, f32::NEG_INFINITY]),
        ));
        assert!(same(&s, &[1.0, -1.0, 0.0, 0.0, f32::NAN, -1.0]));
        // NaN propagates through every unary op.
        for &u in UnaryOp::ALL {
            let r = vf(&un(u, &f(&[1], &[f32::NAN])));
            assert!(r[0].is_nan(), "{u:?}");
        }
    }

    #[test]
    fn sigmoid_is_stable() {
        // σ(0) = 0.5, σ(2) = 1/(1+e^-2) = 0.8807970779…, σ(-2) = 0.1192029220…
        // σ(100) = 1 in f32; σ(-100) = e^-100/(1+e^-100) ≈ 3.72e-44 (a subnormal).
        let s = vf(&un(
            UnaryOp::Sigmoid,
            &f(&[6], &[0.0, 2.0, -2.0, 100.0, -100.0, -1000.0]),
        ));
        assert_eq!(&s[..4], &[0.5, 0.880_797_1, 0.119_202_92, 1.0]);
        assert!(s[4] > 0.0 && s[4] < 1e-43 && (s[4] / 3.72e-44 - 1.0).abs() < 0.05);
        assert_eq!(s[5], 0.0);
        assert!(s.iter().all(|v| !v.is_nan()));
    }

    #[test]
    fn erf_known_points() {
        // Reference values of erf to 16 digits.
        let pts = [
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (-3.0, -0.999_977_909_503_001_4),
            (0.1, 0.112_462_916_018_284_9),
            (3.5, 0.999_999_256_901_627_6),
            (5.0, 0.999_999_999_998_462_6),
            (0.0, 0.0),
        ];
        for (x, want) in pts {
            let got = erf(x);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                "erf({x}) = {got}, want {want}"
            );
            // The f32 kernel rounds the f64 value once: exact to the nearest f32.
            let k = vf(&un(UnaryOp::Erf, &f(&[1], &[x as f32])))[0];
            assert_eq!(k, erf(x as f32 as f64) as f32);
            assert!(((k as f64) - want).abs() <= want.abs() * f32::EPSILON as f64);
        }
        // Tiny arguments: erf(x) ≈ 2x/√π = 1.1283791670955126·x.
        assert!((erf(1e-10) / 1e-10 - std::f64::consts::FRAC_2_SQRT_PI).abs() < 1e-15);
        // Tails saturate; infinities and NaN behave.
        for x in [6.0, 10.0, 1e30, f64::INFINITY] {
            assert_eq!(erf(x), 1.0);
            assert_eq!(erf(-x), -1.0);
        }
        assert!(erf(f64::NAN).is_nan());
        let t = vf(&un(UnaryOp::Erf, &f(&[2], &[4.5, -9.0])));
        assert_eq!(t, vec![1.0, -1.0]);
        // Odd symmetry and monotonicity on a grid.
        let mut prev = -1.0;
        for k in -700..=700 {
            let x = k as f64 / 100.0;
            assert_eq!(erf(x), -erf(-x));
            assert!(erf(x) >= prev, "not monotone at {x}");
            prev = erf(x);
        }
    }

    #[test]
    fn unary_i32_wraps() {
        let x = i(&[4], &[5, -3, 0, i32::MIN]);
        assert_eq!(vi(&un(UnaryOp::Neg, &x)), vec![-5, 3, 0, i32::MIN]);
        assert_eq!(vi(&un(UnaryOp::Abs, &x)), vec![5, 3, 0, i32::MIN]);
        assert_eq!(vi(&un(UnaryOp::Sign, &x)), vec![1, -1, 0, -1]);
        // exp is f32-only: an error, not a panic.
        assert!(eval_op(&Op::Unary(UnaryOp::Exp), &x.ty, &[&x]).is_err());
    }

    #[test]
    fn binary_f32() {
        let a = f(&[4], &[1.0, 2.0, 3.0, -4.0]);
        let b = f(&[4], &[4.0, 2.0, 1.0, 0.0]);
        assert_eq!(vf(&bin(BinaryOp::Add, &a, &b)), vec![5.0, 4.0, 4.0, -4.0]);
        assert_eq!(vf(&bin(BinaryOp::Sub, &a, &b)), vec![-3.0, 0.0, 2.0, -4.0]);
        assert_eq!(vf(&bin(BinaryOp::Mul, &a, &b)), vec![4.0, 4.0, 3.0, -0.0]);
        // -4/0 = -inf.
        assert_eq!(
            vf(&bin(BinaryOp::Div, &a, &b)),
            vec![0.25, 1.0, 3.0, f32::NEG_INFINITY]
        );
        assert_eq!(vf(&bin(BinaryOp::Max, &a, &b)), vec![4.0, 2.0, 3.0, 0.0]);
        assert_eq!(vf(&bin(BinaryOp::Min, &a, &b)), vec![1.0, 2.0, 1.0, -4.0]);
        // 0/0 = NaN, inf - inf = NaN.
        let z = f(&[2], &[0.0, f32::INFINITY]);
        assert!(vf(&bin(BinaryOp::Div, &z, &z))[0].is_nan());
        assert!(vf(&bin(BinaryOp::Sub, &z, &z))[1].is_nan());
    }

    #[test]
    fn max_min_propagate_nan_and_ties_go_second() {
        let a = f(&[4], &[f32::NAN, 1.0, f32::INFINITY, -0.0]);
        let b = f(&[4], &[1.0, f32::NAN, 2.0, 0.0]);
        let mx = vf(&bin(BinaryOp::Max, &a, &b));
        assert!(mx[0].is_nan() && mx[1].is_nan());
        assert_eq!(mx[2], f32::INFINITY);
        // max(-0, +0) is the second operand, +0.
        assert!(mx[3] == 0.0 && mx[3].is_sign_positive());
        let mn = vf(&bin(BinaryOp::Min, &a, &b));
        assert!(mn[0].is_nan() && mn[1].is_nan());
        assert_eq!(mn[2], 2.0);
        // min(-0, +0): tie, so the second operand, +0.
        assert!(mn[3] == 0.0 && mn[3].is_sign_positive());
        let mx2 = vf(&bin(BinaryOp::Max, &b, &a));
        assert!(mx2[3] == 0.0 && mx2[3].is_sign_negative());
    }

    #[test]
    fn comparisons() {
        let a = f(&[5], &[1.0, 2.0, 3.0, f32::NAN, f32::NEG_INFINITY]);
        let b = f(&[5], &[2.0, 2.0, 2.0, f32::NAN, f32::NEG_INFINITY]);
        let cases = [
            (BinaryOp::Eq, [0.0, 1.0, 0.0, 0.0, 1.0]),
            (BinaryOp::Ne, [1.0, 0.0, 1.0, 1.0, 0.0]),
            (BinaryOp::Lt, [1.0, 0.0, 0.0, 0.0, 0.0]),
            (BinaryOp::Le, [1.0, 1.0, 0.0, 0.0, 1.0]),
            (BinaryOp::Gt, [0.0, 0.0, 1.0, 0.0, 0.0]),
            (BinaryOp::Ge, [0.0, 1.0, 1.0, 0.0, 1.0]),
        ];
        for (op, want) in cases {
            assert_eq!(vf(&bin(op, &a, &b)), want.to_vec(), "{op:?}");
        }
        // i32 comparisons yield an f32 mask.
        let x = i(&[3], &[1, 2, 3]);
        let y = i(&[3], &[2, 2, 2]);
        let r = bin(BinaryOp::Lt, &x, &y);
        assert_eq!(r.ty, TensorType::f32([3]));
        assert_eq!(vf(&r), vec![1.0, 0.0, 0.0]);
        assert_eq!(vf(&bin(BinaryOp::Ge, &x, &y)), vec![0.0, 1.0, 1.0]);
    }

    #[test]
    fn binary_i32_wraps_and_div_by_zero_is_zero() {
        let a = i(&[6], &[i32::MAX, i32::MIN, 65536, 7, -7, i32::MIN]);
        let b = i(&[6], &[1, 1, 65536, 2, 2, -1]);
        assert_eq!(
            vi(&bin(BinaryOp::Add, &a, &b)),
            vec![i32::MIN, i32::MIN + 1, 131072, 9, -5, i32::MAX]
        );
        assert_eq!(
            vi(&bin(BinaryOp::Sub, &a, &b)),
            vec![i32::MAX - 1, i32::MAX, 0, 5, -9, i32::MIN + 1]
        );
        // 65536² = 2^32 wraps to 0; MIN·-1 wraps to MIN.
        assert_eq!(
            vi(&bin(BinaryOp::Mul, &a, &b)),
            vec![i32::MAX, i32::MIN, 0, 14, -14, i32::MIN]
        );
        // Truncating division; MIN / -1 wraps to MIN.
        assert_eq!(
            vi(&bin(BinaryOp::Div, &a, &b)),
            vec![i32::MAX, i32::MIN, 1, 3, -3, i32::MIN]
        );
        let z = i(&[2], &[5, -5]);
        let zero = i(&[2], &[0, 0]);
        assert_eq!(vi(&bin(BinaryOp::Div, &z, &zero)), vec![0, 0]);
        assert_eq!(vi(&bin(BinaryOp::Max, &z, &zero)), vec![5, 0]);
        assert_eq!(vi(&bin(BinaryOp::Min, &z, &zero)), vec![0, -5]);
    }

    #[test]
    fn binary_rejects_mismatched_operands() {
        let a = f(&[2], &[1.0, 2.0]);
        let b = f(&[3], &[1.0, 2.0, 3.0]);
        let e = eval_op(&Op::Binary(BinaryOp::Add), &a.ty, &[&a, &b]).unwrap_err();
        assert!(e.contains("f32[2]") && e.contains("f32[3]"), "{e}");
        assert!(eval_op(&Op::Binary(BinaryOp::Add), &a.ty, &[&a]).is_err());
        // Data that contradicts its type is caught too.
        let bad = HostTensor {
            ty: TensorType::f32([3]),
            data: Data::F32(vec![1.0]),
        };
        assert!(eval_op(&Op::Unary(UnaryOp::Neg), &bad.ty, &[&bad]).is_err());
    }

    #[test]
    fn select_picks_a_where_mask_nonzero() {
        // NaN != 0, so a NaN mask picks `a`.
        let m = f(&[4], &[1.0, 0.0, -2.0, f32::NAN]);
        let a = f(&[4], &[10.0, 11.0, 12.0, 13.0]);
        let b = f(&[4], &[20.0, 21.0, 22.0, 23.0]);
        assert_eq!(
            vf(&ev(Op::Select, a.ty.clone(), &[&m, &a, &b])),
            vec![10.0, 21.0, 12.0, 13.0]
        );
        let ai = i(&[4], &[1, 2, 3, 4]);
        let bi = i(&[4], &[5, 6, 7, 8]);
        assert_eq!(
            vi(&ev(Op::Select, ai.ty.clone(), &[&m, &ai, &bi])),
            vec![1, 6, 3, 4]
        );
    }

    #[test]
    fn cast_edge_cases() {
        // Truncation toward zero, saturation, NaN → 0.
        let x = f(
            &[8],
            &[
                1.9,
                -1.9,
                0.5,
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                3e9,
                -3e9,
            ],
        );
        assert_eq!(
            vi(&ev(Op::Cast, TensorType::i32([8]), &[&x])),
            vec![1, -1, 0, 0, i32::MAX, i32::MIN, i32::MAX, i32::MIN]
        );
        // i32 → f32 rounds to nearest: 16777217 = 2^24 + 1 is not representable,
        // it rounds (to even) to 2^24.
        let y = i(&[3], &[16_777_217, -3, i32::MIN]);
        assert_eq!(
            vf(&ev(Op::Cast, TensorType::f32([3]), &[&y])),
            vec![16_777_216.0, -3.0, -2_147_483_648.0]
        );
        // Cast cannot change the shape.
        assert!(eval_op(&Op::Cast, &TensorType::i32([2, 4]), &[&x]).is_err());
    }

    #[test]
    fn broadcast_size1_and_missing_axes() {
        let row = f(&[3], &[1.0, 2.0, 3.0]);
        assert_eq!(
            vf(&ev(Op::Broadcast, TensorType::f32([2, 3]), &[&row])),
            vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
        );
        let col = f(&[2, 1], &[1.0, 2.0]);
        assert_eq!(
            vf(&ev(Op::Broadcast, TensorType::f32([2, 3]), &[&col])),
            vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
        );
        let s = f(&[], &[7.0]);
        assert_eq!(
            vf(&ev(Op::Broadcast, TensorType::f32([2, 2]), &[&s])),
            vec![7.0; 4]
        );
        // [1,3] → [2,2,3]: a missing leading axis and a size-1 axis at once.
        let r13 = i(&[1, 3], &[4, 5, 6]);
        assert_eq!(
            vi(&ev(Op::Broadcast, TensorType::i32([2, 2, 3]), &[&r13])),
            vec![4, 5, 6, 4, 5, 6, 4, 5, 6, 4, 5, 6]
        );
        // [2,1,2] → [2,3,2]: the middle axis repeats.
        let m = f(&[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            vf(&ev(Op::Broadcast, TensorType::f32([2, 3, 2]), &[&m])),
            vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0]
        );
        assert!(eval_op(&Op::Broadcast, &TensorType::f32([2, 4]), &[&row]).is_err());
    }

    #[test]
    fn reshape_keeps_elements() {
        let x = f(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let r = ev(Op::Reshape, TensorType::f32([3, 2]), &[&x]);
        assert_eq!(r.shape(), &[3, 2]);
        assert_eq!(vf(&r), vf(&x));
    }

    #[test]
    fn transpose_rank3() {
        let x = iota234();
        // perm [2,0,1]: out[a,b,c] = x[b,c,a] = 12b + 4c + a, shape [4,2,3].
        let t = ev(
            Op::Transpose {
                perm: axes(&[2, 0, 1]),
            },
            TensorType::f32([4, 2, 3]),
            &[&x],
        );
        let mut want = Vec::new();
        for a in 0..4 {
            for b in 0..2 {
                for c in 0..3 {
                    want.push((12 * b + 4 * c + a) as f32);
                }
            }
        }
        assert_eq!(vf(&t), want);
        // Spot checks by hand: out[1,0,2] = x[0,2,1] = 9; out[3,1,0] = x[1,0,3] = 15.
        assert_eq!(vf(&t)[6 + 2], 9.0);
        assert_eq!(vf(&t)[3 * 6 + 3], 15.0);
        // perm [1,0,2] swaps the outer two axes: out[j,i,k] = x[i,j,k];
        // the first eight elements are x[0,0,:], x[1,0,:] = 0..4, 12..16.
        let s = ev(
            Op::Transpose {
                perm: axes(&[1, 0, 2]),
            },
            TensorType::f32([3, 2, 4]),
            &[&x],
        );
        assert_eq!(&vf(&s)[..8], &[0.0, 1.0, 2.0, 3.0, 12.0, 13.0, 14.0, 15.0]);
        // Rank-2 transpose of i32.
        let m = i(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(
            vi(&ev(
                Op::Transpose {
                    perm: axes(&[1, 0])
                },
                TensorType::i32([3, 2]),
                &[&m]
            )),
            vec![1, 4, 2, 5, 3, 6]
        );
    }

    fn reduce(op: ReduceOp, ax: &[usize], x: &HostTensor) -> HostTensor {
        let shape: Vec<usize> = (0..x.ty.rank())
            .filter(|i| !ax.contains(i))
            .map(|i| x.shape()[i])
            .collect();
        ev(
            Op::Reduce { op, axes: axes(ax) },
            TensorType::new(x.ty.dtype, shape),
            &[x],
        )
    }

    #[test]
    fn reduce_sum_every_axis_combination() {
        // x[i,j,k] = 12i + 4j + k.
        let x = iota234();
        let fl = |v: &[i32]| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
        // No axes: identity.
        assert_eq!(vf(&reduce(ReduceOp::Sum, &[], &x)), vf(&x));
        // Over i: (4j+k) + (12+4j+k) = 12 + 8j + 2k.
        assert_eq!(
            vf(&reduce(ReduceOp::Sum, &[0], &x)),
            fl(&[12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34])
        );
        // Over j: 3(12i+k) + 4(0+1+2) = 36i + 3k + 12.
        assert_eq!(
            vf(&reduce(ReduceOp::Sum, &[1], &x)),
            fl(&[12, 15, 18, 21, 48, 51, 54, 57])
        );
        // Over k: 4(12i+4j) + (0+1+2+3) = 48i + 16j + 6.
        assert_eq!(
            vf(&reduce(ReduceOp::Sum, &[2], &x)),
            fl(&[6, 22, 38, 54, 70, 86])
        );
        // Over i,j: 3·12·(0+1) + 2·4·(0+1+2) + 6k = 60 + 6k.
        assert_eq!(
            vf(&reduce(ReduceOp::Sum, &[0, 1], &x)),
            fl(&[60, 66, 72, 78])
        );
        // Over i,k: 4·12 + 8·4j + 2·6 = 60 + 32j.
        assert_eq!(vf(&reduce(ReduceOp::Sum, &[0, 2], &x)), fl(&[60, 92, 124]));
        // Over j,k: 12·12i + 4·4·3 + 3·6 = 144i + 66.
        assert_eq!(vf(&reduce(ReduceOp::Sum, &[1, 2], &x)), fl(&[66, 210]));
        // Everything: 0+…+23 = 23·24/2 = 276.
        let all = reduce(ReduceOp::Sum, &[0, 1, 2], &x);
        assert_eq!(all.shape(), &[] as &[usize]);
        assert_eq!(vf(&all), vec![276.0]);
    }

    #[test]
    fn reduce_max_every_axis_combination() {
        let x = iota234();
        let fl = |v: &[i32]| v.iter().map(|&a| a as f32).collect::<Vec<_>>();
        // The maximum is at the largest index of each reduced axis.
        assert_eq!(vf(&reduce(ReduceOp::Max, &[], &x)), vf(&x));
        // i=1: 12 + 4j + k.
        assert_eq!(
            vf(&reduce(ReduceOp::Max, &[0], &x)),
            fl(&[12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23])
        );
        // j=2: 12i + 8 + k.
        assert_eq!(
            vf(&reduce(ReduceOp::Max, &[1], &x)),
            fl(&[8, 9, 10, 11, 20, 21, 22, 23])
        );
        // k=3: 12i + 4j + 3.
        assert_eq!(
            vf(&reduce(ReduceOp::Max, &[2], &x)),
            fl(&[3, 7, 11, 15, 19, 23])
        );
        assert_eq!(
            vf(&reduce(ReduceOp::Max, &[0, 1], &x)),
            fl(&[20, 21, 22, 23])
        );
        assert_eq!(vf(&reduce(ReduceOp::Max, &[0, 2], &x)), fl(&[15, 19, 23]));
        assert_eq!(vf(&reduce(ReduceOp::Max, &[1, 2], &x)), fl(&[11, 23]));
        assert_eq!(vf(&reduce(ReduceOp::Max, &[0, 1, 2], &x)), fl(&[23]));
    }

    #[test]
    fn reduce_edge_cases() {
        // Empty reduced axis: sum 0, max -inf.
        let e = f(&[2, 0], &[]);
        assert_eq!(vf(&reduce(ReduceOp::Sum, &[1], &e)), vec![0.0, 0.0]);
        assert_eq!(
            vf(&reduce(ReduceOp::Max, &[1], &e)),
            vec![f32::NEG_INFINITY; 2]
        );
        // NaN propagates through reduce_max wherever it sits; -inf rows stay -inf.
        let n = f(
            &[3, 3],
            &[
                1.0,
                f32::NAN,
                3.0,
                f32::NAN,
                5.0,
                2.0,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
            ],
        );
        let m = vf(&reduce(ReduceOp::Max, &[1], &n));
        assert!(m[0].is_nan() && m[1].is_nan());
        assert_eq!(m[2], f32::NEG_INFINITY);
        assert!(vf(&reduce(ReduceOp::Sum, &[1], &n))[0].is_nan());
        // i32 reduce_max.
        let xi = i(&[2, 2], &[-5, -7, 3, 9]);
        assert_eq!(vi(&reduce(ReduceOp::Max, &[1], &xi)), vec![-5, 9]);
        assert_eq!(vi(&reduce(ReduceOp::Max, &[0], &xi)), vec![3, 9]);
        // reduce_sum of i32 is rejected by the type rule.
        assert!(eval_op(
            &Op::Reduce {
                op: ReduceOp::Sum,
                axes: axes(&[0])
            },
            &TensorType::i32([2]),
            &[&xi]
        )
        .is_err());
    }

    #[test]
    fn argmax_first_max_and_nan_is_maximal() {
        let x = f(
            &[3, 3],
            &[1.0, 3.0, 3.0, f32::NAN, 5.0, f32::NAN, 2.0, 1.0, 0.0],
        );
        let r = ev(Op::ArgMax { axis: 1 }, TensorType::i32([3]), &[&x]);
        // Row 0: tie 3,3 → first (1). Row 1: first NaN (0). Row 2: 2 at index 0.
        assert_eq!(vi(&r), vec![1, 0, 0]);
        // Axis 0 of the same: columns (1,NaN,2) → 1, (3,5,1) → 1, (3,NaN,0) → 1.
        let c = ev(Op::ArgMax { axis: 0 }, TensorType::i32([3]), &[&x]);
        assert_eq!(vi(&c), vec![1, 1, 1]);
        // A NaN after the maximum still wins; -inf everywhere gives 0.
        let y = f(
            &[2, 3],
            &[
                1.0,
                9.0,
                f32::NAN,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
            ],
        );
        assert_eq!(
            vi(&ev(Op::ArgMax { axis: 1 }, TensorType::i32([2]), &[&y])),
            vec![2, 0]
        );
        // Middle axis of the iota tensor: always the last j (2).
        let z = ev(
            Op::ArgMax { axis: 1 },
            TensorType::i32([2, 4]),
            &[&iota234()],
        );
        assert_eq!(vi(&z), vec![2; 8]);
        // An empty axis is an error.
        let e = f(&[2, 0], &[]);
        assert!(eval_op(&Op::ArgMax { axis: 1 }, &TensorType::i32([2]), &[&e]).is_err());
    }

    fn mm(a: &HostTensor, b: &HostTensor, ta: bool, tb: bool, out: &[usize]) -> Vec<f32> {
        vf(&ev(
            Op::MatMul {
                trans_a: ta,
                trans_b: tb,
            },
            TensorType::f32(out),
            &[a, b],
        ))
    }

    #[test]
    fn matmul_all_transposes() {
        // A = [[1,2,3],[4,5,6]], B = [[7,8],[9,10],[11,12]]:
        // AB = [[7+18+33, 8+20+36], [28+45+66, 32+50+72]] = [[58,64],[139,154]].
        let a = f(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let at = f(&[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let b = f(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        let bt = f(&[2, 3], &[7.0, 9.0, 11.0, 8.0, 10.0, 12.0]);
        let want = vec![58.0, 64.0, 139.0, 154.0];
        assert_eq!(mm(&a, &b, false, false, &[2, 2]), want);
        assert_eq!(mm(&at, &b, true, false, &[2, 2]), want);
        assert_eq!(mm(&a, &bt, false, true, &[2, 2]), want);
        assert_eq!(mm(&at, &bt, true, true, &[2, 2]), want);
        // BA is 3x3: row0 = 7·[1,2,3] + 8·[4,5,6] = [39,54,69].
        assert_eq!(&mm(&b, &a, false, false, &[3, 3])[..3], &[39.0, 54.0, 69.0]);
        // A contraction mismatch is an error.
        assert!(eval_op(
            &Op::MatMul {
                trans_a: false,
                trans_b: false
            },
            &TensorType::f32([2, 2]),
            &[&a, &a]
        )
        .is_err());
        // 0·inf = NaN propagates (no zero-skipping).
        let z = f(&[1, 1], &[0.0]);
        let inf = f(&[1, 1], &[f32::INFINITY]);
        assert!(mm(&z, &inf, false, false, &[1, 1])[0].is_nan());
    }

    #[test]
    fn matmul_batched() {
        // Batch 0: A,B as above → [[58,64],[139,154]].
        // Batch 1: A1 = [[1,0,0],[0,0,1]] selects rows 0 and 2 of B → [[7,8],[11,12]].
        let a = f(
            &[2, 2, 3],
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        );
        let b = f(
            &[2, 3, 2],
            &[
                7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
            ],
        );
        let want = vec![58.0, 64.0, 139.0, 154.0, 7.0, 8.0, 11.0, 12.0];
        assert_eq!(mm(&a, &b, false, false, &[2, 2, 2]), want);
        // Same with both operands stored transposed per batch.
        let at = f(
            &[2, 3, 2],
            &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        );
        let bt = f(
            &[2, 2, 3],
            &[
                7.0, 9.0, 11.0, 8.0, 10.0, 12.0, 7.0, 9.0, 11.0, 8.0, 10.0, 12.0,
            ],
        );
        assert_eq!(mm(&at, &bt, true, true, &[2, 2, 2]), want);
        assert_eq!(mm(&a, &bt, false, true, &[2, 2, 2]), want);
        assert_eq!(mm(&at, &b, true, false, &[2, 2, 2]), want);
    }

    #[test]
    fn concat_and_slice_inner_axes() {
        let a = f(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = f(&[2, 1], &[5.0, 6.0]);
        assert_eq!(
            vf(&ev(
                Op::Concat { axis: 1 },
                TensorType::f32([2, 3]),
                &[&a, &b]
            )),
            vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0]
        );
        let c = i(&[1, 2], &[7, 8]);
        let d = i(&[2, 2], &[1, 2, 3, 4]);
        assert_eq!(
            vi(&ev(
                Op::Concat { axis: 0 },
                TensorType::i32([3, 2]),
                &[&d, &c]
            )),
            vec![1, 2, 3, 4, 7, 8]
        );
        // Rank 3 along the last axis: [2,1,2] ++ [2,1,1] → [2,1,3].
        let p = f(&[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]);
        let q = f(&[2, 1, 1], &[9.0, 8.0]);
        assert_eq!(
            vf(&ev(
                Op::Concat { axis: 2 },
                TensorType::f32([2, 1, 3]),
                &[&p, &q]
            )),
            vec![1.0, 2.0, 9.0, 3.0, 4.0, 8.0]
        );
        // A single operand is the identity.
        assert_eq!(vf(&ev(Op::Concat { axis: 0 }, a.ty.clone(), &[&a])), vf(&a));
        // Slices of x[i,j,k] = 12i+4j+k.
        let x = iota234();
        let s = ev(
            Op::Slice {
                axis: 1,
                start: 1,
                end: 3,
            },
            TensorType::f32([2, 2, 4]),
            &[&x],
        );
        let want: Vec<f32> = (4..12).chain(16..24).map(|v| v as f32).collect();
        assert_eq!(vf(&s), want);
        let s = ev(
            Op::Slice {
                axis: 2,
                start: 2,
                end: 4,
            },
            TensorType::f32([2, 3, 2]),
            &[&x],
        );
        assert_eq!(
            vf(&s),
            [2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23]
                .iter()
                .map(|&v| v as f32)
                .collect::<Vec<_>>()
        );
        // An empty slice.
        let s = ev(
            Op::Slice {
                axis: 0,
                start: 1,
                end: 1,
            },
            TensorType::f32([0, 3, 4]),
            &[&x],
        );
        assert!(vf(&s).is_empty());
        // Out of range is an error.
        assert!(eval_op(
            &Op::Slice {
                axis: 0,
                start: 1,
                end: 3
            },
            &TensorType::f32([2, 3, 4]),
            &[&x]
        )
        .is_err());
    }

    #[test]
    fn one_hot_out_of_range_rows_are_zero() {
        let l = i(&[4], &[0, 2, -1, 3]);
        let r = ev(Op::OneHot { depth: 3 }, TensorType::f32([4, 3]), &[&l]);
        assert_eq!(
            vf(&r),
            vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        let l2 = i(&[1, 2], &[1, 0]);
        let r2 = ev(Op::OneHot { depth: 2 }, TensorType::f32([1, 2, 2]), &[&l2]);
        assert_eq!(vf(&r2), vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn stop_gradient_and_random() {
        let x = f(&[2], &[1.0, -1.0]);
        assert_eq!(vf(&ev(Op::StopGradient, x.ty.clone(), &[&x])), vf(&x));
        let step = i(&[], &[3]);
        let r = ev(
            Op::RandomUniform { seed: 7 },
            TensorType::f32([2, 3]),
            &[&step],
        );
        let v = vf(&r);
        // Element index is row-major: element [1,2] is index 5.
        assert_eq!(v[5], random_uniform(7, 3, 5));
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let r2 = ev(
            Op::RandomUniform { seed: 7 },
            TensorType::f32([2, 3]),
            &[&i(&[], &[4])],
        );
        assert_ne!(vf(&r2), v);
        // An f32 step is rejected.
        let fs = f(&[], &[3.0]);
        assert!(eval_op(
            &Op::RandomUniform { seed: 7 },
            &TensorType::f32([2]),
            &[&fs]
        )
        .is_err());
    }

    #[test]
    fn gather_rows_and_refuses_out_of_range_ids() {
        let table = HostTensor::f32(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let ids = HostTensor::i32(&[2], vec![2, 2]).unwrap();
        let r = eval_op(&Op::Gather, &TensorType::f32([2, 2]), &[&table, &ids]).unwrap();
        assert_eq!(r.as_f32().unwrap(), &[5.0, 6.0, 5.0, 6.0]);
        for bad in [3, -1] {
            let ids = HostTensor::i32(&[2], vec![0, bad]).unwrap();
            let e = eval_op(&Op::Gather, &TensorType::f32([2, 2]), &[&table, &ids]).unwrap_err();
            let want = format!(
                "gather: row 1 (element 0 of its row) of ids i32[2] holds id {bad} outside [0, 3)"
            );
            assert_eq!(e, want);
        }
        // (N, T) ids: the row is the leading index, the element the rest.
        let ids = HostTensor::i32(&[2, 3], vec![0, 1, 2, 1, 9, 0]).unwrap();
        let e = eval_op(&Op::Gather, &TensorType::f32([2, 3, 2]), &[&table, &ids]).unwrap_err();
        assert!(
            e.contains("row 1 (element 1 of its row)") && e.contains("id 9"),
            "{e}"
        );
    }

    #[test]
    fn feeds_are_checked_and_only_needed_nodes_run() {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([2]));
        let unused = b.input("unused", TensorType::f32([5]));
        let y = &x * 2.0;
        b.output("y", &y);
        let _ = unused.exp();
        let g = b.finish().unwrap();
        let mut feeds = HashMap::new();
        // Missing feed names the leaf and the expected type.
        let e = interpret(&g, &feeds).unwrap_err();
        assert!(e.contains("'x'") && e.contains("f32[2]"), "{e}");
        // Mistyped feed.
        feeds.insert("x".to_string(), f(&[3], &[1.0, 2.0, 3.0]));
        let e = interpret(&g, &feeds).unwrap_err();
        assert!(
            e.contains("'x'") && e.contains("f32[2]") && e.contains("f32[3]"),
            "{e}"
        );
        feeds.insert("x".to_string(), i(&[2], &[1, 2]));
        assert!(interpret(&g, &feeds).unwrap_err().contains("i32[2]"));
        // `unused` need not be fed.
        feeds.insert("x".to_string(), f(&[2], &[1.5, -2.0]));
        let out = interpret(&g, &feeds).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "y");
        assert_eq!(vf(&out[0].1), vec![3.0, -4.0]);
        // interpret_with evaluates only the wanted cone.
        let vals = interpret_with(&g, &feeds, &[y.id()]).unwrap();
        assert!(!vals.contains_key(&unused.id()));
        assert_eq!(vf(&vals[&x.id()]), vec![1.5, -2.0]);
    }

    /// log_softmax of large logits keeps its relative precision: the f64
    /// reference is `(x − max) − ln Σ exp(x − max)` evaluated in f64.
    #[test]
    fn log_softmax_of_large_logits_matches_f64() {
        let rows: [[f64; 3]; 3] = [
            [1e4, 9999.0, 9998.0],
            [-3e4, -3e4, -3.0001e4],
            [0.5, 0.0, -0.25],
        ];
        let b = Builder::new("lsm");
        let x = b.input("x", TensorType::f32([3, 3]));
        b.output("y", &nn::log_softmax(&x, -1));
        let g = b.finish().unwrap();
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let feeds = HashMap::from([("x".to_string(), f(&[3, 3], &flat))]);
        let out = interpret(&g, &feeds).unwrap();
        let got = vf(&out[0].1);
        for (r, row) in rows.iter().enumerate() {
            // The f32 inputs, widened: the reference sees what the graph sees.
            let xs: Vec<f64> = row.iter().map(|&v| v as f32 as f64).collect();
            let m = xs.iter().cloned().fold(f64::MIN, f64::max);
            let lse = xs.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            for (j, v) in xs.iter().enumerate() {
                let want = (v - m) - lse;
                let e = (got[3 * r + j] as f64 - want).abs() / want.abs();
                assert!(
                    e <= 1e-6,
                    "row {r} col {j}: {} vs {want} (rel {e:e})",
                    got[3 * r + j]
                );
            }
        }
    }

    // A one-layer MLP with softmax crossentropy and an L2 kernel regulariser.
    //
    // x = [[1, 0, -1], [0.5, 1, 0]], W = [[1,-1],[0,1],[1,0]], b = [0.5,-0.5],
    // labels = [0, 1].
    // xW: row0 = [1+0-1, -1+0+0] = [0, -1]; row1 = [0.5+0+0, -0.5+1+0] = [0.5, 0.5].
    // + b: [[0.5, -1.5], [1.0, 0.0]]; relu: logits = [[0.5, 0], [1, 0]].
    // log_softmax row0 = [0.5, 0] - ln(e^0.5 + 1) = [0.5, 0] - 0.9740769841801067
    //   → -logp[label 0] = 0.4740769841801067.
    // row1 = [1, 0] - ln(e + 1) = [1, 0] - 1.3132616875182228
    //   → -logp[label 1] = 1.3132616875182228.
    // CE = mean = (0.4740769841801067 + 1.3132616875182228) / 2 = 0.8936693358491648.
    // L2 = 0.01 · Σw² = 0.01 · (1+1+0+1+1+0) = 0.04. Total = 0.9336693358491648.
    // softmax row0 = [e^0.5, 1]/(e^0.5+1) = [0.6224593312018546, 0.3775406687981454];
    // argmax = [0, 0].
    #[test]
    fn mlp_with_regularized_loss() {
        let b = Builder::new("mlp");
        let x = b.input("x", TensorType::f32([2, 3]));
        let labels = b.input("labels", TensorType::i32([2]));
        let (w, bias, logits) = b.with_scope("dense", || {
            let w = b.param("dense/kernel", TensorType::f32([3, 2]));
            let bias = b.param("dense/bias", TensorType::f32([2]));
            let logits = nn::relu(&(x.matmul(&w) + &bias));
            (w, bias, logits)
        });
        let _ = bias;
        let ce = b.with_role(
            Role::CompiledLoss {
                output: "out".into(),
                weight: 1.0,
            },
            || {
                let logp = nn::log_softmax(&logits, -1);
                (labels.one_hot(2) * logp)
                    .sum(&[-1], false)
                    .neg()
                    .mean_all()
            },
        );
        let l2 = b.with_scope("dense", || {
            b.with_role(
                Role::AddedLoss {
                    reason: LossReason::KernelRegularizer,
                    call: 0,
                },
                || nn::l2(&w, 0.01),
            )
        });
        let total = &ce + &l2;
        b.output("loss", &total);
        b.output("loss/out", &ce);
        b.output("added/0", &l2);
        b.output("pred/out", &nn::softmax(&logits, -1));
        b.output("metric/argmax", &logits.argmax(-1));
        let g = b.finish().unwrap();

        let feeds: HashMap<String, HostTensor> = [
            ("x", f(&[2, 3], &[1.0, 0.0, -1.0, 0.5, 1.0, 0.0])),
            ("labels", i(&[2], &[0, 1])),
            ("dense/kernel", f(&[3, 2], &[1.0, -1.0, 0.0, 1.0, 1.0, 0.0])),
            ("dense/bias", f(&[2], &[0.5, -0.5])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let out = interpret(&g, &feeds).unwrap();
        let names: Vec<&str> = out.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(
            names,
            vec!["loss", "loss/out", "added/0", "pred/out", "metric/argmax"]
        );
        close(&vf(&out[0].1), &[0.933_669_3], 1e-6);
        close(&vf(&out[1].1), &[0.893_669_34], 1e-6);
        close(&vf(&out[2].1), &[0.04], 1e-6);
        close(
            &vf(&out[3].1),
            &[
                0.622_459_3,
                0.377_540_67,
                0.731_058_6, // e/(e+1) = 0.7310585786300049
                0.268_941_42,
            ],
            1e-6,
        );
        assert_eq!(vi(&out[4].1), vec![0, 0]);
    }
}
