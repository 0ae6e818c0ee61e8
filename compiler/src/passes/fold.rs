//! Constant folding.
//!
//! A node whose operands are all constants is evaluated at compile time with
//! the reference interpreter's kernel ([`lossgraph_ir::interp::eval_op`]), so
//! folding can never disagree with interpretation. The result becomes a splat
//! `const` when all its values are bitwise equal, else a dense `const` —
//! only up to [`MAX_DENSE`] elements, so folding never bloats the graph with
//! big literal tensors (a larger non-uniform result keeps its node).
//!
//! Splats are folded without materialising them: an elementwise op on splat
//! operands is evaluated once on scalars, and `broadcast`/`reshape`/
//! `transpose`/`slice`/`stop_gradient` of a splat (or `concat` of equal
//! splats) is the splat at the new type, whatever its size. Other ops are
//! evaluated only when operands and result have at most [`MAX_EVAL`] elements.
//! A dense constant whose values are all equal is turned into a splat.
//!
//! `input`, `param` and `random_uniform` with a non-constant step are never folded.
//! When the kernel reports an error, the node is left as it is: the runtime
//! reports the failure with its context when the node actually runs.
//! The folded constant takes the role and scope of the node it replaces.

use super::{add_like, compact_ranked, replace, topo, PassError, Ranks};
use lossgraph_ir::graph::{Graph, NodeId};
use lossgraph_ir::interp::eval_op;
use lossgraph_ir::op::{Literal, Op};
use lossgraph_ir::{Data, HostTensor, TensorType};

/// The largest non-uniform result folded into a dense constant, in elements.
pub const MAX_DENSE: usize = 4096;

/// The largest operand or result evaluated at compile time, in elements.
pub const MAX_EVAL: usize = 1 << 16;

/// Folds constant subexpressions. Returns whether anything changed; a
/// changed graph comes back compacted.
pub fn run(g: &mut Graph) -> Result<bool, PassError> {
    let mut changed = false;
    let mut ranks = Ranks::of(g, "fold")?;
    for id in topo(g, "fold")? {
        if !g.contains(id) {
            continue;
        }
        let Some(lit) = fold_node(g, id) else {
            continue;
        };
        let ty = g.node(id).ty.clone();
        let c = add_like(g, id, Op::Const(lit), ty, &[]);
        ranks.inherit(c, id);
        replace(g, id, c);
        changed = true;
    }
    if changed {
        compact_ranked(g, &ranks, "fold")?;
    }
    Ok(changed)
}

/// The literal of a constant operand.
fn literal(g: &Graph, id: NodeId) -> Option<&Literal> {
    match &g.node(id).op {
        Op::Const(lit) => Some(lit),
        _ => None,
    }
}

/// The splat literal of `lit` if all its values are bitwise equal.
fn uniform(lit: &Literal) -> Option<Literal> {
    let bits = lit.bits();
    if bits.is_empty() || bits.windows(2).any(|w| w[0] != w[1]) {
        return None;
    }
    Some(match lit {
        Literal::F32(v) => Literal::F32(vec![v[0]]),
        Literal::I32(v) => Literal::I32(vec![v[0]]),
    })
}

/// A host tensor of type `ty` holding `lit` (splats expanded).
fn host(lit: &Literal, ty: &TensorType) -> HostTensor {
    let n = ty.numel();
    let data = match lit {
        Literal::F32(v) if v.len() == 1 => Data::F32(vec![v[0]; n]),
        Literal::I32(v) if v.len() == 1 => Data::I32(vec![v[0]; n]),
        Literal::F32(v) => Data::F32(v.clone()),
        Literal::I32(v) => Data::I32(v.clone()),
    };
    HostTensor {
        ty: ty.clone(),
        data,
    }
}

/// The literal holding a host tensor's values (splat when uniform).
fn to_literal(t: HostTensor) -> Literal {
    let lit = match t.data {
        Data::F32(v) => Literal::F32(v),
        Data::I32(v) => Literal::I32(v),
    };
    uniform(&lit).unwrap_or(lit)
}

/// The folded value of `id`, if it folds.
fn fold_node(g: &Graph, id: NodeId) -> Option<Literal> {
    let node = g.node(id);
    if let Op::Const(lit) = &node.op {
        // Canonicalise a uniform dense constant to a splat.
        return if lit.len() > 1 { uniform(lit) } else { None };
    }
    if node.op.is_leaf() {
        return None;
    }
    let ops = g.operands(id);
    let lits: Vec<&Literal> = ops
        .iter()
        .map(|&o| literal(g, o))
        .collect::<Option<Vec<_>>>()?;
    let all_splat = lits.iter().all(|l| l.len() == 1);
    match &node.op {
        Op::Broadcast
        | Op::Reshape
        | Op::Transpose { .. }
        | Op::Slice { .. }
        | Op::StopGradient
            if all_splat =>
        {
            return Some(lits[0].clone());
        }
        Op::Concat { .. } if all_splat && lits.iter().all(|l| l.bits() == lits[0].bits()) => {
            return Some(lits[0].clone());
        }
        op if op.is_elementwise() && all_splat => {
            // Evaluate once, on scalars of the operands' element types.
            let scalars: Vec<HostTensor> = ops
                .iter()
                .zip(&lits)
                .map(|(&o, l)| host(l, &TensorType::new(g.node(o).ty.dtype, [])))
                .collect();
            let refs: Vec<&HostTensor> = scalars.iter().collect();
            let out = eval_op(op, &TensorType::new(node.ty.dtype, []), &refs).ok()?;
            return Some(to_literal(out));
        }
        _ => {}
    }
    let too_big = |ty: &TensorType| ty.numel() > MAX_EVAL;
    if too_big(&node.ty) || ops.iter().any(|&o| too_big(&g.node(o).ty)) {
        return None;
    }
    let tensors: Vec<HostTensor> = ops
        .iter()
        .zip(&lits)
        .map(|(&o, l)| host(l, &g.node(o).ty))
        .collect();
    let refs: Vec<&HostTensor> = tensors.iter().collect();
    let out = eval_op(&node.op, &node.ty, &refs).ok()?;
    if out.ty != node.ty {
        return None;
    }
    let lit = to_literal(out);
    (lit.len() == 1 || lit.len() <= MAX_DENSE).then_some(lit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lossgraph_ir::{Builder, Role, Tensor};

    fn f(shape: &[usize]) -> TensorType {
        TensorType::f32(shape)
    }

    /// Builds `out = body(b)` in scope `layer` with role gradient, folds it.
    fn folded(body: impl Fn(&Builder) -> Tensor) -> Graph {
        let b = Builder::new("g");
        let y = b.with_scope("layer", || b.with_role(Role::Gradient, || body(&b)));
        b.output("out", &y);
        let mut g = b.finish().unwrap();
        run(&mut g).unwrap();
        lossgraph_ir::verify(&g).unwrap();
        g
    }

    fn out(g: &Graph) -> &lossgraph_ir::Node {
        g.node(g.output("out").unwrap())
    }

    #[test]
    fn structural_ops_of_splats_fold_without_evaluation() {
        let g = folded(|b| {
            b.scalar(1.5)
                .broadcast_to(&[1000, 1000])
                .reshape(&[1000, 10, 100])
                .transpose(&[2, 1, 0])
                .slice(0, 0, 10)
        });
        assert_eq!(g.len(), 1);
        let n = out(&g);
        assert_eq!(n.op, Op::Const(Literal::F32(vec![1.5])));
        assert_eq!(n.ty, f(&[10, 10, 1000]));
        assert_eq!(
            (n.role.clone(), n.scope.as_str()),
            (Role::Gradient, "layer")
        );
    }

    #[test]
    fn uniform_dense_constants_become_splats() {
        let g = folded(|b| b.constant(Literal::F32(vec![2.0; 6]), f(&[2, 3])));
        assert_eq!(out(&g).op, Op::Const(Literal::F32(vec![2.0])));
        // -0.0 and 0.0 differ bitwise: stays dense.
        let g = folded(|b| b.constant(Literal::F32(vec![0.0, -0.0]), f(&[2])));
        assert_eq!(out(&g).op, Op::Const(Literal::F32(vec![0.0, -0.0])));
    }

    #[test]
    fn non_constant_operands_block_folding() {
        let b = Builder::new("g");
        let x = b.input("x", f(&[2]));
        let y = &x * 2.0;
        b.output("out", &y);
        let mut g = b.finish().unwrap();
        // The broadcast of 2.0 folds to a splat; the mul stays.
        assert!(run(&mut g).unwrap());
        assert_eq!(g.len(), 3);
        assert!(!run(&mut g).unwrap());
    }

    #[test]
    fn large_non_uniform_results_are_not_folded() {
        // 5000 distinct values: beyond MAX_DENSE.
        let vals: Vec<f32> = (0..5000).map(|i| i as f32).collect();
        let g = folded(|b| {
            b.constant(Literal::F32(vals.clone()), f(&[50, 100]))
                .transpose(&[1, 0])
        });
        assert!(matches!(out(&g).op, Op::Transpose { .. }));
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn elementwise_splats_evaluate_once() {
        // exp(0) * 3 - 1 = 2 over a big shape, as one splat.
        let g = folded(|b| &(&b.full(0.0, &[512, 512]).exp() * 3.0) - 1.0);
        assert_eq!(g.len(), 1);
        assert_eq!(out(&g).op, Op::Const(Literal::F32(vec![2.0])));
        assert_eq!(out(&g).ty, f(&[512, 512]));
        // A comparison of splats: 2 > 1 is 1.0.
        let g = folded(|b| b.full(2.0, &[3]).gt(1.0));
        assert_eq!(out(&g).op, Op::Const(Literal::F32(vec![1.0])));
    }

    #[test]
    fn dense_results_within_the_limit_fold() {
        let g = folded(|b| {
            let a = b.constant(Literal::F32(vec![1.0, 2.0, 3.0, 4.0]), f(&[2, 2]));
            let c = b.constant(Literal::F32(vec![10.0, 20.0, 30.0, 40.0]), f(&[2, 2]));
            // [[1,2],[3,4]] @ [[10,20],[30,40]] = [[70,100],[150,220]]; row sums 170, 370.
            a.matmul(&c).sum(&[1], false)
        });
        assert_eq!(g.len(), 1);
        assert_eq!(out(&g).op, Op::Const(Literal::F32(vec![170.0, 370.0])));
        // Sum of four 0.5s is exactly 2.
        let g = folded(|b| b.full(0.5, &[4]).sum_all());
        assert_eq!(out(&g).op, Op::Const(Literal::F32(vec![2.0])));
        // Integer ops fold too: one_hot of label 1 with depth 3.
        let g = folded(|b| {
            b.constant(Literal::I32(vec![1]), TensorType::i32([]))
                .one_hot(3)
        });
        assert_eq!(out(&g).op, Op::Const(Literal::F32(vec![0.0, 1.0, 0.0])));
    }
}
