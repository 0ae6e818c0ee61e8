//! Algebraic simplification and gradient clean-ups.
//!
//! Rules (`c` is a *splat* value: a splat `const`, or a `broadcast`,
//! `reshape` or `transpose` of one — the form the ones/zeros seeds of autodiff
//! take):
//!
//! | pattern | result |
//! |---|---|
//! | `x*1`, `1*x`, `x/1`, `x+0`, `0+x`, `x-0` | `x` |
//! | `x*-1`, `-1*x`, `x/-1`, `0-x` | `neg x` |
//! | `x*0`, `0*x`, `x-x` with `x` known finite | `0` |
//! | `neg(neg x)` | `x` |
//! | `x + neg y`, `neg y + x` | `x - y` |
//! | `x - neg y` | `x + y` |
//! | `x * recip y`, `recip y * x` | `x / y` |
//! | `max(x,x)`, `min(x,x)`, `select(m,x,x)` | `x` |
//! | `select(c,a,b)` | `a` if `c != 0`, else `b` |
//! | `transpose(transpose x)` | one transpose, or `x` if the perms cancel |
//! | identity `transpose`/`reshape`/`broadcast`/`cast` | `x` |
//! | `reshape(reshape x)`, `broadcast(broadcast x)` | one reshape / broadcast |
//! | `broadcast`/`reshape`/`transpose` of a splat | a splat `const` of the result type |
//! | `reduce_*` over no axes or only extent-1 axes | `reshape` |
//!
//! **Finite-preserving rule for `x*0`.** `inf*0` and `NaN*0` are NaN, so
//! `x*0 → 0` is applied only when `x` is provably finite: a constant whose
//! values are all finite; any `i32` value; a comparison mask, `one_hot` or
//! `random_uniform` result; or `neg`/`abs`/`sign`/`tanh`/`sigmoid`/`erf`,
//! `max`/`min`/`select` (value operands), `broadcast`/`reshape`/`transpose`/
//! `slice`/`concat`/`stop_gradient`/`cast` of provably finite operands.
//! `input`s and `param`s may hold inf/NaN, and any arithmetic (`add`, `exp`,
//! `matmul`, reductions, …) may overflow, so those are never assumed finite —
//! even `tanh(x)` of an input is NaN when the input is.
//!
//! **Deviations.** The rewrites are exact in IEEE arithmetic except: `x+0 → x`
//! and `0-x → neg x` and `x*0 → +0` may flip the sign of a zero result; and
//! `x*recip(y) → x/y` rounds once instead of twice (≤ 1 ulp difference).
//!
//! A replacement node the pass creates takes the role and scope of the node
//! it replaces; an existing node that takes over keeps its own.

use super::{add_like, compact_ranked, replace, splat_value, topo, PassError, Ranks};
use lossgraph_ir::graph::{Graph, NodeId};
use lossgraph_ir::op::{BinaryOp, Literal, Op, UnaryOp};
use lossgraph_ir::{DType, TensorType};
use smallvec::SmallVec;

/// Sweeps over the graph until no rule applies (at most this many times).
const MAX_SWEEPS: usize = 32;

/// Applies the rules until none fires. Returns whether anything changed; a
/// changed graph comes back compacted.
pub fn run(g: &mut Graph) -> Result<bool, PassError> {
    let mut changed = false;
    let mut ranks = Ranks::of(g, "simplify")?;
    for _ in 0..MAX_SWEEPS {
        let mut any = false;
        for id in topo(g, "simplify")? {
            if !g.contains(id) {
                continue;
            }
            let before = g.len();
            if let Some(r) = rewrite(g, id) {
                debug_assert_ne!(r, id, "a rewrite never returns the node itself");
                // A rule creates at most one node, and returns it.
                if g.len() > before {
                    ranks.inherit(r, id);
                }
                replace(g, id, r);
                any = true;
            }
        }
        if !any {
            break;
        }
        changed = true;
    }
    if changed {
        compact_ranked(g, &ranks, "simplify")?;
    }
    Ok(changed)
}

/// True when the literal is a splat equal to `v` (so both `0.0` and `-0.0` are 0).
fn is(lit: &Option<Literal>, v: f64) -> bool {
    lit.as_ref().and_then(|l| l.splat()) == Some(v)
}

/// The single operand of a unary-shaped node with op `op`, if `id` is one.
fn unary_operand(g: &Graph, id: NodeId, u: UnaryOp) -> Option<NodeId> {
    (g.node(id).op == Op::Unary(u)).then(|| g.operands(id)[0])
}

/// A zero splat of `ty`.
fn zero(ty: &TensorType) -> Literal {
    match ty.dtype {
        DType::F32 => Literal::F32(vec![0.0]),
        DType::I32 => Literal::I32(vec![0]),
    }
}

/// Whether the value of `id` is provably finite (see the module docs).
pub fn is_finite(g: &Graph, id: NodeId) -> bool {
    finite(g, id, 16)
}

fn finite(g: &Graph, id: NodeId, depth: usize) -> bool {
    let n = g.node(id);
    if n.ty.dtype == DType::I32 {
        return true;
    }
    if depth == 0 {
        return false;
    }
    let ops = g.operands(id);
    let all = |ids: &[NodeId]| ids.iter().all(|&o| finite(g, o, depth - 1));
    match &n.op {
        Op::Const(Literal::F32(v)) => v.iter().all(|x| x.is_finite()),
        Op::Const(Literal::I32(_)) => true,
        Op::Binary(b) if b.is_comparison() => true,
        Op::OneHot { .. }
        | Op::RandomUniform { .. }
        | Op::RandomNormal { .. }
        | Op::RandomBernoulli { .. } => true,
        Op::Cast => ops.iter().all(|&o| g.node(o).ty.dtype == DType::I32) || all(&ops),
        Op::Unary(
            UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Sign
            | UnaryOp::Tanh
            | UnaryOp::Sigmoid
            | UnaryOp::Erf
            | UnaryOp::Sin
            | UnaryOp::Cos,
        )
        | Op::Binary(BinaryOp::Max | BinaryOp::Min)
        | Op::Broadcast
        | Op::Reshape
        | Op::Transpose { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::StopGradient => all(&ops),
        Op::Select => all(&ops[1..]),
        _ => false,
    }
}

/// The replacement for `id`, if a rule applies.
fn rewrite(g: &mut Graph, id: NodeId) -> Option<NodeId> {
    if g.node(id).op.is_leaf() {
        // No rule rewrites a leaf (and cloning a big constant would be waste).
        return None;
    }
    let node = g.node(id).clone();
    let ops = g.operands(id);
    match &node.op {
        Op::Binary(b) => binary(g, id, *b, ops[0], ops[1]),
        Op::Unary(UnaryOp::Neg) => unary_operand(g, ops[0], UnaryOp::Neg),
        Op::Select => {
            let (m, a, b) = (ops[0], ops[1], ops[2]);
            if a == b {
                return Some(a);
            }
            let mv = splat_value(g, m)?;
            let nonzero = match mv {
                Literal::F32(v) => v[0] != 0.0,
                Literal::I32(v) => v[0] != 0,
            };
            Some(if nonzero { a } else { b })
        }
        Op::Cast | Op::Reshape | Op::Broadcast if g.node(ops[0]).ty == node.ty => Some(ops[0]),
        Op::Reshape | Op::Broadcast => {
            let x = ops[0];
            if let Some(v) = splat_value(g, x) {
                return Some(add_like(g, id, Op::Const(v), node.ty.clone(), &[]));
            }
            if g.node(x).op == node.op {
                let inner = g.operands(x)[0];
                if g.node(inner).ty == node.ty {
                    return Some(inner);
                }
                return Some(add_like(g, id, node.op.clone(), node.ty.clone(), &[inner]));
            }
            None
        }
        Op::Transpose { perm } => {
            let x = ops[0];
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                return Some(x);
            }
            if let Some(v) = splat_value(g, x) {
                return Some(add_like(g, id, Op::Const(v), node.ty.clone(), &[]));
            }
            if let Op::Transpose { perm: inner_perm } = &g.node(x).op {
                let composed: SmallVec<[usize; 4]> = perm.iter().map(|&p| inner_perm[p]).collect();
                let inner = g.operands(x)[0];
                if composed.iter().enumerate().all(|(i, &p)| i == p) {
                    return Some(inner);
                }
                return Some(add_like(
                    g,
                    id,
                    Op::Transpose { perm: composed },
                    node.ty.clone(),
                    &[inner],
                ));
            }
            None
        }
        Op::Reduce { axes, .. } => {
            let x = ops[0];
            let xt = &g.node(x).ty;
            if axes.iter().all(|&a| xt.shape[a] == 1) {
                if xt == &node.ty {
                    return Some(x);
                }
                return Some(add_like(g, id, Op::Reshape, node.ty.clone(), &[x]));
            }
            None
        }
        _ => None,
    }
}

fn binary(g: &mut Graph, id: NodeId, op: BinaryOp, a: NodeId, b: NodeId) -> Option<NodeId> {
    let ty = g.node(id).ty.clone();
    let (ca, cb) = (splat_value(g, a), splat_value(g, b));
    let neg_a = unary_operand(g, a, UnaryOp::Neg);
    let neg_b = unary_operand(g, b, UnaryOp::Neg);
    let new = |g: &mut Graph, op: Op, operands: &[NodeId]| -> NodeId {
        add_like(g, id, op, ty.clone(), operands)
    };
    match op {
        BinaryOp::Add => {
            if is(&cb, 0.0) {
                Some(a)
            } else if is(&ca, 0.0) {
                Some(b)
            } else if let Some(y) = neg_b {
                Some(new(g, Op::Binary(BinaryOp::Sub), &[a, y]))
            } else {
                neg_a.map(|y| new(g, Op::Binary(BinaryOp::Sub), &[b, y]))
            }
        }
        BinaryOp::Sub => {
            if is(&cb, 0.0) {
                Some(a)
            } else if let Some(y) = neg_b {
                Some(new(g, Op::Binary(BinaryOp::Add), &[a, y]))
            } else if is(&ca, 0.0) {
                Some(new(g, Op::Unary(UnaryOp::Neg), &[b]))
            } else if a == b && is_finite(g, a) {
                Some(new(g, Op::Const(zero(&ty)), &[]))
            } else {
                None
            }
        }
        BinaryOp::Mul => {
            if is(&cb, 1.0) {
                Some(a)
            } else if is(&ca, 1.0) {
                Some(b)
            } else if is(&cb, -1.0) {
                Some(new(g, Op::Unary(UnaryOp::Neg), &[a]))
            } else if is(&ca, -1.0) {
                Some(new(g, Op::Unary(UnaryOp::Neg), &[b]))
            } else if (is(&cb, 0.0) && is_finite(g, a)) || (is(&ca, 0.0) && is_finite(g, b)) {
                Some(new(g, Op::Const(zero(&ty)), &[]))
            } else if let Some(y) = unary_operand(g, b, UnaryOp::Recip) {
                Some(new(g, Op::Binary(BinaryOp::Div), &[a, y]))
            } else {
                unary_operand(g, a, UnaryOp::Recip)
                    .map(|y| new(g, Op::Binary(BinaryOp::Div), &[b, y]))
            }
        }
        BinaryOp::Div => {
            if is(&cb, 1.0) {
                Some(a)
            } else if is(&cb, -1.0) {
                Some(new(g, Op::Unary(UnaryOp::Neg), &[a]))
            } else {
                None
            }
        }
        BinaryOp::Max | BinaryOp::Min if a == b => Some(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lossgraph_ir::{Builder, Role, Tensor};

    fn f(shape: &[usize]) -> TensorType {
        TensorType::f32(shape)
    }

    /// Builds `out = body(x)` with `x: f32[2,3]` and simplifies it.
    fn simplified(body: impl Fn(&Builder, &Tensor) -> Tensor) -> Graph {
        let b = Builder::new("g");
        let x = b.input("x", f(&[2, 3]));
        let y = b.with_scope("layer", || b.with_role(Role::Gradient, || body(&b, &x)));
        b.output("out", &y);
        let mut g = b.finish().unwrap();
        run(&mut g).unwrap();
        lossgraph_ir::verify(&g).unwrap();
        g
    }

    fn out(g: &Graph) -> &lossgraph_ir::Node {
        g.node(g.output("out").unwrap())
    }

    fn is_input_x(g: &Graph) -> bool {
        matches!(&out(g).op, Op::Input { name } if name == "x")
    }

    #[test]
    fn identities_disappear() {
        assert!(is_input_x(&simplified(|_, x| x * 1.0)));
        assert!(is_input_x(&simplified(|_, x| 1.0 * x)));
        assert!(is_input_x(&simplified(|_, x| x + 0.0)));
        assert!(is_input_x(&simplified(|_, x| 0.0 + x)));
        assert!(is_input_x(&simplified(|_, x| x - 0.0)));
        assert!(is_input_x(&simplified(|_, x| x / 1.0)));
        assert!(is_input_x(&simplified(|_, x| x.neg().neg())));
        assert!(is_input_x(&simplified(|_, x| x.t().t())));
        assert!(is_input_x(&simplified(|_, x| x
            .reshape(&[6])
            .reshape(&[2, 3]))));
        assert!(is_input_x(&simplified(|_, x| x.maximum(x))));
        assert!(is_input_x(&simplified(|_, x| x.gt(0.0).select(x, x))));
        // Only the input survives.
        assert_eq!(simplified(|_, x| ((x * 1.0) + 0.0).neg().neg()).len(), 1);
    }

    #[test]
    fn ones_and_zeros_seeds_of_any_shape_fold_away() {
        // The seed shapes autodiff writes: broadcast(1) and a reshaped zero.
        let g = simplified(|b, x| {
            let ones = b.scalar(1.0).broadcast_to(&[2, 3]);
            let zeros = b.full(0.0, &[6]).reshape(&[2, 3]);
            &(x * &ones) + &zeros
        });
        assert!(is_input_x(&g));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn times_zero_only_for_finite_operands() {
        // x may be inf or NaN: keep the multiplication.
        let g = simplified(|_, x| x * 0.0);
        assert_eq!(out(&g).op, Op::Binary(BinaryOp::Mul));
        // tanh(x) is NaN when x is: still kept.
        let g = simplified(|_, x| x.tanh() * 0.0);
        assert_eq!(out(&g).op, Op::Binary(BinaryOp::Mul));
        // exp of a finite value can overflow: kept.
        let g = simplified(|b, _| b.full(100.0, &[2, 3]).exp() * 0.0);
        assert_eq!(out(&g).op, Op::Binary(BinaryOp::Mul));
        // A comparison mask is 0/1 even for NaN: folded to a zero splat with the node's role/scope.
        let g = simplified(|_, x| x.gt(0.0) * 0.0);
        let n = out(&g);
        assert_eq!(n.op, Op::Const(Literal::F32(vec![0.0])));
        assert_eq!(
            (n.role.clone(), n.scope.as_str()),
            (Role::Gradient, "layer")
        );
        assert_eq!(n.ty, f(&[2, 3]));
        // tanh of a finite constant is finite.
        let g = simplified(|b, x| &b.full(3.0, &[2, 3]).tanh() * 0.0 + x);
        assert!(is_input_x(&g));
        // x - x: kept for x, folded for a mask.
        let g = simplified(|_, x| x - x);
        assert_eq!(out(&g).op, Op::Binary(BinaryOp::Sub));
        let g = simplified(|_, x| {
            let m = x.lt(1.0);
            &m - &m
        });
        assert!(matches!(out(&g).op, Op::Const(_)));
    }

    #[test]
    fn negation_and_reciprocal_forms() {
        let b = Builder::new("g");
        let x = b.input("x", f(&[3]));
        let y = b.input("y", f(&[3]));
        b.output("a", &(&x + &y.neg()));
        b.output("b", &(&y.neg() + &x));
        b.output("c", &(&x - &y.neg()));
        b.output("d", &(&x * &y.recip()));
        b.output("e", &(&y.recip() * &x));
        b.output("f", &(&x * -1.0));
        b.output("h", &(0.0 - &x));
        let mut g = b.finish().unwrap();
        assert!(run(&mut g).unwrap());
        lossgraph_ir::verify(&g).unwrap();
        let (xi, yi) = (g.input("x").unwrap(), g.input("y").unwrap());
        let shape = |name: &str| {
            let o = g.output(name).unwrap();
            (g.node(o).op.clone(), g.operands(o).to_vec())
        };
        assert_eq!(shape("a"), (Op::Binary(BinaryOp::Sub), vec![xi, yi]));
        assert_eq!(shape("b"), (Op::Binary(BinaryOp::Sub), vec![xi, yi]));
        assert_eq!(shape("c"), (Op::Binary(BinaryOp::Add), vec![xi, yi]));
        assert_eq!(shape("d"), (Op::Binary(BinaryOp::Div), vec![xi, yi]));
        assert_eq!(shape("e"), (Op::Binary(BinaryOp::Div), vec![xi, yi]));
        assert_eq!(shape("f"), (Op::Unary(UnaryOp::Neg), vec![xi]));
        assert_eq!(shape("h"), (Op::Unary(UnaryOp::Neg), vec![xi]));
    }

    #[test]
    fn structural_chains_merge() {
        // transpose ∘ transpose with perms that do not cancel.
        let g = simplified(|_, x| {
            x.reshape(&[1, 2, 3])
                .transpose(&[1, 0, 2])
                .transpose(&[0, 2, 1])
        });
        let n = out(&g);
        // t1: [2,1,3] (axes 1,0,2 of [1,2,3]); t2 takes t1 axes 0,2,1 → x axes 1,2,0.
        assert_eq!(
            n.op,
            Op::Transpose {
                perm: SmallVec::from_slice(&[1, 2, 0])
            }
        );
        assert_eq!(n.ty, f(&[2, 3, 1]));
        assert_eq!(
            (n.role.clone(), n.scope.as_str()),
            (Role::Gradient, "layer")
        );
        // reshape ∘ reshape → one reshape from x.
        let g = simplified(|_, x| x.reshape(&[6]).reshape(&[3, 2]));
        assert_eq!(out(&g).op, Op::Reshape);
        assert_eq!(g.len(), 2);
        // broadcast ∘ broadcast → one broadcast.
        let g = simplified(|_, x| x.broadcast_to(&[4, 2, 3]).broadcast_to(&[5, 4, 2, 3]));
        assert_eq!(out(&g).op, Op::Broadcast);
        assert_eq!(g.len(), 2);
        // broadcast of a splat const → a splat const of the big shape.
        let g = simplified(|b, _| b.scalar(2.5).broadcast_to(&[4, 5]));
        assert_eq!(out(&g).op, Op::Const(Literal::F32(vec![2.5])));
        assert_eq!(out(&g).ty, f(&[4, 5]));
        // sum over extent-1 axes → reshape.
        let g = simplified(|_, x| x.reshape(&[2, 1, 3]).sum(&[1], false));
        assert!(is_input_x(&g));
        let g = simplified(|_, x| x.reshape(&[1, 2, 3]).max(&[0], false).reshape(&[6]));
        assert_eq!(out(&g).op, Op::Reshape);
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn select_with_constant_mask() {
        let g = simplified(|b, x| b.full(1.0, &[2, 3]).select(x, 0.0));
        assert!(is_input_x(&g));
        let g = simplified(|b, x| b.full(0.0, &[2, 3]).select(0.0, x));
        assert!(is_input_x(&g));
        // A mask computed from data stays.
        let g = simplified(|_, x| x.gt(0.0).select(x, 0.0));
        assert_eq!(out(&g).op, Op::Select);
    }

    #[test]
    fn existing_replacement_keeps_its_own_role_and_scope() {
        let b = Builder::new("g");
        let x = b.input("x", f(&[3]));
        let h = b.with_scope("dense_1", || x.tanh());
        let y = b.with_scope("grad", || b.with_role(Role::Gradient, || &h * 1.0));
        b.output("pred", &h);
        b.output("y", &y);
        let mut g = b.finish().unwrap();
        assert!(run(&mut g).unwrap());
        let y = g.output("y").unwrap();
        assert_eq!(Some(y), g.output("pred"));
        let n = g.node(y);
        assert_eq!(
            (n.role.clone(), n.scope.as_str()),
            (Role::Forward, "dense_1")
        );
    }
}
