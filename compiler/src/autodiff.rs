//! Reverse-mode differentiation: appends gradient nodes to a graph.
//!
//! [`grad`] walks the graph backwards from a scalar, applying one
//! vector-Jacobian product (VJP) rule per primitive and accumulating the
//! cotangents of values used more than once by adding them. The gradient
//! nodes it appends are ordinary IR nodes with role [`Role::Gradient`] and
//! the scope of the forward node whose VJP produced them, so the result
//! prints, verifies, optimises and interprets like any other graph.
//!
//! Which paths carry gradient:
//! - only `f32` values: integer tensors never get a gradient;
//! - not through `stop_gradient`, `argmax`, comparisons, `one_hot`, `cast`,
//!   `random_uniform`, `sign`, nor into the mask operand of `select` (their
//!   derivatives are zero almost everywhere, and treated as exactly zero).
//!
//! Conventions at non-differentiable points:
//! - binary `max(a, b)` sends the gradient to `a` only where `a > b`, and to
//!   `b` otherwise: ties go to the **second** operand (`min` likewise sends
//!   it to `a` only where `a < b`). So `relu(x) = max(x, 0)` has
//!   `relu'(0) = 0`, exactly like `jax.nn.relu` and `tf.nn.relu` (and hence
//!   Keras's `relu` on either backend), and `clip` has zero gradient where it
//!   is active, boundaries included. For a general tie `max(a, b)` with
//!   `a == b` the frameworks differ among themselves: `tf.maximum` gives the
//!   whole gradient to the *first* operand (its mask is `x >= y`) and
//!   `jax.lax.max` splits it half and half; this IR's convention is fixed by
//!   the relu case above;
//! - `abs'(0) = sign(0) = 0` (as JAX and TF);
//! - `reduce_max` splits the gradient equally among all elements equal to
//!   the maximum (as `jax.numpy.max` does);
//! - `sqrt'(0)`, `log'(0)` and `recip'(0)` are infinite, as the formulas give.
//!
//! The emitted graph is kept lean without a separate pass: the all-ones seed
//! is never materialised unless a rule needs it as a tensor (`1·t` is just
//! `t`, `sum` of ones over broadcast axes is a constant), `x*x` gets one
//! contribution `c·(x+x)` instead of two, reductions over leading axes are
//! undone by a broadcast alone, and nothing is accumulated with a
//! zero. Remaining redundancy (shared subexpressions, constant chains) is
//! left to the optimisation passes.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::error::{CompileError, Result};
use lossgraph_ir::{
    BinaryOp, Builder, DType, Graph, Literal, Node, NodeId, Op, ReduceOp, Role, Tensor, TensorType,
    UnaryOp,
};
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};

/// A cotangent under construction for one node.
#[derive(Clone)]
enum Cot {
    /// All ones of the node's type: the seed, and what flows unchanged from it
    /// through adds, reshapes, transposes and sums. Not yet a node.
    Ones(TensorType),
    /// A node holding the cotangent.
    T(Tensor),
}

impl Cot {
    /// The cotangent as a node (materialises an all-ones constant if needed).
    fn tensor(&self, b: &Builder) -> Tensor {
        match self {
            Cot::Ones(ty) => b.full(1.0, &ty.shape),
            Cot::T(t) => t.clone(),
        }
    }

    /// `cot · t` for `t` of the node's shape (`t` itself for the ones seed).
    fn times(&self, t: &Tensor) -> Tensor {
        match self {
            Cot::Ones(_) => t.clone(),
            Cot::T(c) => c * t,
        }
    }

    /// `cot / t` for `t` of the node's shape (`1/t` for the ones seed).
    fn over(&self, t: &Tensor) -> Tensor {
        match self {
            Cot::Ones(_) => t.recip(),
            Cot::T(c) => c / t,
        }
    }

    /// `-cot`.
    fn neg(&self, b: &Builder) -> Tensor {
        match self {
            Cot::Ones(ty) => b.full(-1.0, &ty.shape),
            Cot::T(c) => c.neg(),
        }
    }

    /// The cotangent reshaped to `shape` (same element count).
    fn reshape(&self, shape: &[usize]) -> Cot {
        match self {
            Cot::Ones(_) => Cot::Ones(TensorType::f32(shape)),
            Cot::T(c) => Cot::T(c.reshape(shape)),
        }
    }
}

/// Appends nodes (role [`Role::Gradient`], scope = scope of the forward node
/// being differentiated) computing `d(of)/d(w)` for each `w` in `wrt`.
///
/// `of` must be an `f32[]` scalar; `wrt` may name any nodes (params, inputs,
/// intermediate values). Returns `None` for a `w` that `of` does not depend
/// on differentiably (an `i32` value, only paths through `stop_gradient`,
/// `argmax`, comparisons, `one_hot`, `cast`, …, or no path at all). A returned
/// id may be an existing node when the gradient is one (`d(a·b)/da = b`).
/// On error the graph is left unchanged.
pub fn grad(g: &mut Graph, of: NodeId, wrt: &[NodeId]) -> Result<Vec<Option<NodeId>>> {
    let Some(of_node) = g.get(of) else {
        return Err(CompileError::in_graph(
            g,
            format!("grad: no node %{} to differentiate", of.index()),
        ));
    };
    if of_node.ty != TensorType::scalar() {
        return Err(CompileError::at_node(
            g,
            of,
            format!(
                "grad differentiates an f32[] scalar, but this node is {}",
                of_node.ty
            ),
        ));
    }
    if let Some(w) = wrt.iter().find(|w| !g.contains(**w)) {
        return Err(CompileError::in_graph(
            g,
            format!(
                "grad: no node %{} to differentiate with respect to",
                w.index()
            ),
        ));
    }
    let order = g
        .topo_order()
        .map_err(|n| CompileError::at_node(g, n, "the graph has a cycle through this node"))?;

    // Forward sweep: which f32 nodes depend differentiably on some `wrt` node.
    let targets: HashSet<NodeId> = wrt
        .iter()
        .copied()
        .filter(|&w| g.node(w).ty.dtype == DType::F32)
        .collect();
    let mut active: HashSet<NodeId> = HashSet::new();
    let mut operands: HashMap<NodeId, SmallVec<[NodeId; 4]>> = HashMap::new();
    for &id in &order {
        let node = g.node(id);
        let ops = g.operands(id);
        if node.ty.dtype == DType::F32
            && (targets.contains(&id)
                || ops
                    .iter()
                    .enumerate()
                    .any(|(p, o)| node.op.differentiable(p) && active.contains(o)))
        {
            active.insert(id);
        }
        operands.insert(id, ops);
    }

    // Backward sweep in reverse topological order: a node's cotangent is
    // complete before it is read, because all of its users come later.
    let b = Builder::from_graph(g.clone());
    b.set_role(Role::Gradient);
    let mut cots: HashMap<NodeId, Cot> = HashMap::new();
    if active.contains(&of) {
        cots.insert(of, Cot::Ones(TensorType::scalar()));
    }
    for &id in order.iter().rev() {
        let Some(cot) = cots.get(&id).cloned() else {
            continue;
        };
        let node = g.node(id);
        let ops = &operands[&id];
        let wanted: SmallVec<[bool; 4]> = ops
            .iter()
            .enumerate()
            .map(|(p, o)| node.op.differentiable(p) && active.contains(o))
            .collect();
        if !wanted.iter().any(|&w| w) {
            continue;
        }
        b.set_scope(node.scope.clone());
        for (pos, c) in vjp(&b, g, id, node, ops, &wanted, &cot) {
            let target = ops[pos];
            let acc = match cots.remove(&target) {
                None => c,
                Some(prev) => {
                    b.set_scope(g.node(target).scope.clone());
                    let sum = prev.tensor(&b) + c.tensor(&b);
                    b.set_scope(node.scope.clone());
                    Cot::T(sum)
                }
            };
            cots.insert(target, acc);
        }
    }

    let mut result = Vec::with_capacity(wrt.len());
    for w in wrt {
        result.push(match cots.get(w) {
            Some(Cot::T(t)) => Some(t.id()),
            Some(ones @ Cot::Ones(_)) => {
                b.set_scope(g.node(*w).scope.clone());
                Some(ones.tensor(&b).id())
            }
            None => None,
        });
    }
    *g = b.finish()?;
    Ok(result)
}

/// The VJP of one node: `(operand position, cotangent)` for every wanted
/// operand. A position may appear twice (e.g. `concat x, x`); the caller adds.
fn vjp(
    b: &Builder,
    g: &Graph,
    id: NodeId,
    node: &Node,
    ops: &[NodeId],
    wanted: &[bool],
    cot: &Cot,
) -> Vec<(usize, Cot)> {
    let x = |i: usize| b.tensor(ops[i]);
    let y = || b.tensor(id);
    let zeros = |ty: &TensorType| b.full(0.0, &ty.shape);
    let mut out: Vec<(usize, Cot)> = Vec::with_capacity(ops.len());
    macro_rules! push {
        ($pos:expr, $t:expr) => {
            out.push(($pos, Cot::T($t)))
        };
    }
    match &node.op {
        Op::Unary(u) => {
            let x0 = x(0);
            let d = match u {
                UnaryOp::Neg => cot.neg(b),
                UnaryOp::Exp => cot.times(&y()),
                UnaryOp::Log => cot.over(&x0),
                UnaryOp::Tanh => {
                    let y = y();
                    cot.times(&(1.0 - &y * &y))
                }
                UnaryOp::Sigmoid => {
                    let y = y();
                    cot.times(&(&y * (1.0 - &y)))
                }
                UnaryOp::Abs => cot.times(&x0.sign()),
                UnaryOp::Sqrt => cot.over(&(y() * 2.0)),
                UnaryOp::Recip => {
                    let y = y();
                    cot.times(&(&y * &y)).neg()
                }
                UnaryOp::Erf => {
                    let slope = (&x0 * &x0).neg().exp() * std::f32::consts::FRAC_2_SQRT_PI;
                    cot.times(&slope)
                }
                UnaryOp::Sin => cot.times(&x0.cos()),
                UnaryOp::Cos => cot.times(&x0.sin()).neg(),
                UnaryOp::Sign => return out,
            };
            push!(0, d);
        }
        Op::Binary(op) => {
            let same = ops[0] == ops[1];
            match op {
                BinaryOp::Add => {
                    for (p, &w) in wanted.iter().enumerate() {
                        if w {
                            out.push((p, cot.clone()));
                        }
                    }
                }
                BinaryOp::Sub => {
                    if wanted[0] {
                        out.push((0, cot.clone()));
                    }
                    if wanted[1] {
                        push!(1, cot.neg(b));
                    }
                }
                BinaryOp::Mul if same => {
                    let x0 = x(0);
                    push!(0, cot.times(&(&x0 + &x0)))
                }
                BinaryOp::Mul => {
                    if wanted[0] {
                        push!(0, cot.times(&x(1)));
                    }
                    if wanted[1] {
                        push!(1, cot.times(&x(0)));
                    }
                }
                BinaryOp::Div => {
                    // y = a/b: da = c/b, db = -c·a/b² = -(da·y).
                    let da = cot.over(&x(1));
                    if wanted[1] {
                        push!(1, (&da * &y()).neg());
                    }
                    if wanted[0] {
                        push!(0, da);
                    }
                }
                BinaryOp::Pow => {
                    // JAX's rules (lax.pow's JVPs): dx = y·x^(y−1), but 0 where y = 0
                    // (so 0^0 has slope 0, not 0·inf); dy = ln(x)·x^y with ln 0 taken
                    // as 0 (dy = 0 at x = 0). For x < 0, dy is NaN (ln of a negative),
                    // as in JAX; dx is finite there for integer y.
                    let (a, c) = (x(0), x(1));
                    if wanted[0] {
                        let slope = c.eq(0.0).select(0.0, &c * a.pow(&c - 1.0));
                        push!(0, cot.times(&slope));
                    }
                    if wanted[1] {
                        let ln = a.eq(0.0).select(1.0, &a).log();
                        push!(1, cot.times(&(ln * y())));
                    }
                }
                BinaryOp::Max | BinaryOp::Min => {
                    // The first operand wins only strictly; ties go to the second.
                    let (a, c) = (x(0), x(1));
                    let first = if *op == BinaryOp::Max {
                        a.gt(&c)
                    } else {
                        a.lt(&c)
                    };
                    match cot {
                        Cot::Ones(_) => {
                            if wanted[0] {
                                push!(0, first.clone());
                            }
                            if wanted[1] {
                                push!(1, 1.0 - &first);
                            }
                        }
                        Cot::T(ct) => {
                            let z = zeros(&node.ty);
                            if wanted[0] {
                                push!(0, first.select(ct, &z));
                            }
                            if wanted[1] {
                                push!(1, first.select(&z, ct));
                            }
                        }
                    }
                }
                // Comparisons: no differentiable edge (their row declares no gradient).
                BinaryOp::Eq
                | BinaryOp::Ne
                | BinaryOp::Lt
                | BinaryOp::Le
                | BinaryOp::Gt
                | BinaryOp::Ge => {}
            }
        }
        Op::Select => {
            let m = x(0);
            let c = cot.tensor(b);
            let z = zeros(&node.ty);
            if wanted[1] {
                push!(1, m.select(&c, &z));
            }
            if wanted[2] {
                push!(2, m.select(&z, &c));
            }
        }
        Op::Broadcast => {
            let from = g.node(ops[0]).ty.shape.clone();
            let to = &node.ty.shape;
            let lead = to.len() - from.len();
            let axes: Vec<usize> = (0..to.len())
                .filter(|&i| i < lead || (from[i - lead] == 1 && to[i] != 1))
                .collect();
            if axes.is_empty() {
                out.push((0, cot.reshape(&from)));
            } else {
                match cot {
                    Cot::Ones(_) => {
                        let factor: usize = axes.iter().map(|&i| to[i]).product();
                        push!(0, b.full(factor as f32, &from));
                    }
                    Cot::T(c) => {
                        let ax: Vec<isize> = axes.iter().map(|&i| i as isize).collect();
                        push!(0, c.sum(&ax, false).reshape(&from));
                    }
                }
            }
        }
        Op::Reshape => {
            let from = g.node(ops[0]).ty.shape.clone();
            out.push((0, cot.reshape(&from)));
        }
        Op::Transpose { perm } => {
            let mut inv = vec![0usize; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            match cot {
                Cot::Ones(_) => out.push((0, Cot::Ones(g.node(ops[0]).ty.clone()))),
                Cot::T(c) => push!(0, c.transpose(&inv)),
            }
        }
        Op::Reduce { op, axes } => {
            let xt = &g.node(ops[0]).ty;
            let keep: Vec<usize> = (0..xt.rank())
                .map(|i| if axes.contains(&i) { 1 } else { xt.shape[i] })
                .collect();
            match (op, cot) {
                (ReduceOp::Sum, Cot::Ones(_)) => out.push((0, Cot::Ones(xt.clone()))),
                (ReduceOp::Sum, Cot::T(c)) => {
                    // Reduced leading axes come back by right-aligned
                    // broadcasting alone; others need their extent-1 axes.
                    let leading = axes.iter().enumerate().all(|(i, &a)| i == a);
                    let c = if leading { c.clone() } else { c.reshape(&keep) };
                    push!(0, c.broadcast_to(&xt.shape))
                }
                (ReduceOp::Max, cot) => {
                    // Split equally among the elements equal to the maximum.
                    let xv = x(0);
                    let mask = xv.eq(y().reshape(&keep));
                    let ax: Vec<isize> = axes.iter().map(|&i| i as isize).collect();
                    let count = mask.sum(&ax, true);
                    let share = cot.reshape(&keep).over(&count);
                    push!(0, mask * share);
                }
            }
        }
        Op::MatMul { trans_a, trans_b } => {
            let (ta, tb) = (*trans_a, *trans_b);
            let c = cot.tensor(b);
            let (a, bb) = (x(0), x(1));
            if wanted[0] {
                // op(A) = A or Aᵀ; d op(A) = C̄·op(B)ᵀ.
                let da = if ta {
                    bb.matmul_t(&c, tb, true)
                } else {
                    c.matmul_t(&bb, false, !tb)
                };
                push!(0, da);
            }
            if wanted[1] {
                // d op(B) = op(A)ᵀ·C̄.
                let db = if tb {
                    c.matmul_t(&a, true, ta)
                } else {
                    a.matmul_t(&c, !ta, false)
                };
                push!(1, db);
            }
        }
        Op::Unfold {
            window,
            strides,
            dilation,
        } => {
            let image = &g.node(ops[0]).ty.shape;
            push!(0, cot.tensor(b).fold(image, window, strides, dilation));
        }
        Op::Fold {
            window,
            strides,
            dilation,
        } => push!(0, cot.tensor(b).unfold(window, strides, dilation)),
        Op::Concat { axis } => {
            let mut offset = 0usize;
            for (p, &o) in ops.iter().enumerate() {
                let ty = &g.node(o).ty;
                let len = ty.shape[*axis];
                if wanted[p] {
                    match cot {
                        Cot::Ones(_) => out.push((p, Cot::Ones(ty.clone()))),
                        Cot::T(c) => push!(p, c.slice(*axis as isize, offset, offset + len)),
                    }
                }
                offset += len;
            }
        }
        Op::Slice { axis, start, end } => {
            let xt = &g.node(ops[0]).ty;
            let full = xt.shape[*axis];
            let c = cot.tensor(b);
            if *start == 0 && *end == full {
                push!(0, c);
            } else {
                let part = |len: usize| {
                    let mut s = xt.shape.clone();
                    s[*axis] = len;
                    b.full(0.0, &s)
                };
                let mut parts: Vec<Tensor> = Vec::with_capacity(3);
                if *start > 0 {
                    parts.push(part(*start));
                }
                parts.push(c);
                if *end < full {
                    parts.push(part(full - end));
                }
                let refs: Vec<&Tensor> = parts.iter().collect();
                push!(0, b.concat(&refs, *axis as isize));
            }
        }
        Op::Gather => {
            // The dense `f32[V, D]` scatter-add of the cotangent rows into
            // the rows the ids select (a repeated id accumulates, an
            // unselected row gets 0). A scatter-add, not the one-hot matmul
            // onehot(ids)ᵀ·C̄: measured with `perf_figures -- --ignored
            // gather_vjp` (one thread, JIT, debug-built test), one-hot matmul
            // vs scatter_add: 3.7 vs 0.26 µs at p13's M=48 ids, V=20, D=4;
            // 9.5 ms vs 109 µs at M=3584, V=256, D=32 (an MNIST-sized batch
            // of 128 × 28 tokens); 160 ms vs 127 µs at V=4096.
            let rows = g.node(ops[0]).ty.shape[0];
            push!(0, cot.tensor(b).scatter_add(&x(1), rows));
        }
        Op::ScatterAdd { .. } => {
            // Each value row went to row ids[s]: its gradient is that row.
            push!(1, cot.tensor(b).gather(&x(0)));
        }
        Op::AllReduceMean => {
            // y_r = (1/N)·Σ_s x_s on every rank r, so ∂L/∂x_s = Σ_r (1/N)·ȳ_r:
            // the mean is its own adjoint across ranks.
            push!(0, cot.tensor(b).all_reduce_mean());
        }
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Const(_)
        | Op::Cast
        | Op::ArgMax { .. }
        | Op::OneHot { .. }
        | Op::StopGradient
        | Op::RandomUniform { .. }
        | Op::RandomNormal { .. }
        | Op::RandomBernoulli { .. } => {}
    }
    out
}

/// For each param node id, adds the output `grad/<param name>`: the gradient
/// of `loss` (an `f32[]` scalar), or a zeros constant of the param's type
/// (role gradient, the param's scope) when the loss does not depend on it.
/// Errors name the offending node; on error the graph is left unchanged.
pub fn append_gradients(g: &mut Graph, loss: NodeId, params: &[NodeId]) -> Result<()> {
    let mut names = Vec::with_capacity(params.len());
    for &p in params {
        match g.get(p).map(|n| &n.op) {
            Some(Op::Param { name }) => names.push(name.clone()),
            Some(_) => {
                return Err(CompileError::at_node(
                    g,
                    p,
                    "append_gradients: expected a param node",
                ))
            }
            None => {
                return Err(CompileError::in_graph(
                    g,
                    format!("append_gradients: no param node %{}", p.index()),
                ))
            }
        }
    }
    let grads = grad(g, loss, params)?;
    for ((&p, name), gid) in params.iter().zip(names).zip(grads) {
        let id = match gid {
            Some(id) => id,
            None => {
                let pn = g.node(p);
                let lit = match pn.ty.dtype {
                    DType::F32 => Literal::F32(vec![0.0]),
                    DType::I32 => Literal::I32(vec![0]),
                };
                let zero = Node {
                    op: Op::Const(lit),
                    ty: pn.ty.clone(),
                    role: Role::Gradient,
                    scope: pn.scope.clone(),
                };
                g.add_node(zero, &[])
            }
        };
        g.set_output(lossgraph_ir::names::grad(&name), id);
    }
    Ok(())
}
