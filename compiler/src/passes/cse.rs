//! Common-subexpression elimination.
//!
//! Two nodes are the same expression when they have the same op with the same
//! attributes, the same operands in the same order and the same result type.
//! Constants compare bitwise ([`Literal::bits`]: NaN equals NaN, `0.0` differs
//! from `-0.0`). Operands of `add`, `mul`, `eq` and `ne` are put in a canonical
//! order first, since IEEE addition and multiplication are exactly commutative.
//! `max`/`min` are *not* normalised: which operand wins a tie (`max(-0.0, 0.0)`)
//! or a NaN depends on the order, so `max(a, b)` and `max(b, a)` can differ.
//! `random_uniform` nodes are never merged (each draws its own noise stream by
//! design), nor are `input`/`param` leaves (their names are unique anyway).
//!
//! The surviving node is the earliest in topological order and keeps its own
//! role and scope; later duplicates are redirected to it and removed.

use super::{compact, topo, PassError};
use lossgraph_ir::graph::{Graph, NodeId};
use lossgraph_ir::op::Op;
use lossgraph_ir::{DType, TensorType};
use smallvec::SmallVec;
use std::collections::HashMap;

/// The identity of an expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    op: OpKey,
    operands: SmallVec<[NodeId; 4]>,
    ty: TensorType,
}

/// An op with its attributes, in a hashable form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum OpKey {
    /// A constant: element type and bit patterns.
    Const(DType, Vec<u32>),
    /// Any other op: its attribute-bearing debug form (attributes are integers and booleans).
    Other(String),
}

fn key(g: &Graph, id: NodeId) -> Option<Key> {
    let n = g.node(id);
    let op = match &n.op {
        Op::Input { .. }
        | Op::Param { .. }
        | Op::RandomUniform { .. }
        | Op::RandomNormal { .. }
        | Op::RandomBernoulli { .. } => return None,
        Op::Const(lit) => OpKey::Const(lit.dtype(), lit.bits()),
        other => OpKey::Other(format!("{other:?}")),
    };
    let mut operands = g.operands(id);
    if let Op::Binary(b) = n.op {
        // Operands of a bitwise-commutative op (the op table's column) are sorted.
        if b.is_commutative() {
            operands.sort_unstable();
        }
    }
    Some(Key {
        op,
        operands,
        ty: n.ty.clone(),
    })
}

/// Merges duplicate expressions into their earliest occurrence. Returns whether
/// anything was merged; a changed graph comes back compacted.
pub fn run(g: &mut Graph) -> Result<bool, PassError> {
    let order = topo(g, "cse")?;
    let mut seen: HashMap<Key, NodeId> = HashMap::new();
    let mut changed = false;
    for id in order {
        // Operands were canonicalised earlier in the order, so equal
        // expressions have equal operand ids by now.
        let Some(k) = key(g, id) else { continue };
        match seen.get(&k) {
            Some(&first) => {
                g.replace_all_uses(id, first);
                g.remove_node(id);
                changed = true;
            }
            None => {
                seen.insert(k, id);
            }
        }
    }
    if changed {
        compact(g, "cse")?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lossgraph_ir::{BinaryOp, Builder, Literal, Role, TensorType};

    fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
        g.node_ids()
            .into_iter()
            .filter(|&n| pred(&g.node(n).op))
            .count()
    }

    #[test]
    fn merges_commutative_operands_in_either_order() {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([3]));
        let y = b.input("y", TensorType::f32([3]));
        let s1 = &x + &y;
        let s2 = &y + &x;
        let p1 = &x * &y;
        let p2 = &y * &x;
        b.output("a", &(&s1 - &s2));
        b.output("b", &(&p1 - &p2));
        let mut g = b.finish().unwrap();
        assert!(run(&mut g).unwrap());
        lossgraph_ir::verify(&g).unwrap();
        assert_eq!(count(&g, |o| *o == Op::Binary(BinaryOp::Add)), 1);
        assert_eq!(count(&g, |o| *o == Op::Binary(BinaryOp::Mul)), 1);
        // Both subtractions now read the same node twice.
        let a = g.output("a").unwrap();
        let ops = g.operands(a);
        assert_eq!(ops[0], ops[1]);
    }

    #[test]
    fn keeps_operand_order_of_non_commutative_ops() {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([3]));
        let y = b.input("y", TensorType::f32([3]));
        b.output("a", &(&x - &y));
        b.output("b", &(&y - &x));
        b.output("c", &x.maximum(&y));
        b.output("d", &y.maximum(&x));
        let mut g = b.finish().unwrap();
        assert!(!run(&mut g).unwrap());
        assert_eq!(g.len(), 6);
    }

    #[test]
    fn merges_chains_and_constants_bitwise() {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([2]));
        // Two identical chains: const 2, mul, exp.
        let a = (&x * 2.0).exp();
        let c = (&x * 2.0).exp();
        // Constants differing only in the sign of zero are different.
        let z1 = b.constant(Literal::F32(vec![0.0]), TensorType::f32([2]));
        let z2 = b.constant(Literal::F32(vec![-0.0]), TensorType::f32([2]));
        // NaN constants with the same bits are equal.
        let n1 = b.constant(Literal::F32(vec![f32::NAN]), TensorType::f32([2]));
        let n2 = b.constant(Literal::F32(vec![f32::NAN]), TensorType::f32([2]));
        b.output("a", &(&a + &c));
        b.output("z", &(&z1 - &z2));
        b.output("n", &(&n1 - &n2));
        let mut g = b.finish().unwrap();
        assert!(run(&mut g).unwrap());
        lossgraph_ir::verify(&g).unwrap();
        assert_eq!(
            count(&g, |o| *o == Op::Unary(lossgraph_ir::UnaryOp::Exp)),
            1
        );
        // consts: 2.0, 0.0, -0.0, NaN.
        assert_eq!(count(&g, |o| matches!(o, Op::Const(_))), 4);
        let z = g.output("z").unwrap();
        let zo = g.operands(z);
        assert_ne!(zo[0], zo[1]);
        let n = g.output("n").unwrap();
        let no = g.operands(n);
        assert_eq!(no[0], no[1]);
    }

    #[test]
    fn attributes_and_types_distinguish() {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([2, 3]));
        b.output("a", &x.sum(&[0], false));
        b.output("b", &x.sum(&[1], false));
        b.output("c", &x.reshape(&[6]));
        b.output("d", &x.reshape(&[3, 2]));
        let c1 = b.constant(Literal::F32(vec![1.0]), TensorType::f32([2]));
        let c2 = b.constant(Literal::F32(vec![1.0]), TensorType::f32([3]));
        b.output("e", &c1);
        b.output("f", &c2);
        let mut g = b.finish().unwrap();
        assert!(!run(&mut g).unwrap());
    }

    #[test]
    fn never_merges_random() {
        let b = Builder::new("g");
        let step = b.input("step", TensorType::i32([]));
        let r1 = b.random_uniform(&step, 7, &[4]);
        let r2 = b.random_uniform(&step, 7, &[4]);
        b.output("d", &(&r1 - &r2));
        let mut g = b.finish().unwrap();
        assert!(!run(&mut g).unwrap());
        assert_eq!(count(&g, |o| matches!(o, Op::RandomUniform { .. })), 2);
    }

    #[test]
    fn survivor_is_the_earliest_and_keeps_its_role_and_scope() {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([2]));
        let f = b.with_scope("dense_1", || x.tanh());
        let gr = b.with_scope("dense_2", || b.with_role(Role::Gradient, || x.tanh()));
        b.output("pred", &f);
        b.output("grad/x", &gr);
        let mut g = b.finish().unwrap();
        assert!(run(&mut g).unwrap());
        let p = g.output("pred").unwrap();
        assert_eq!(g.output("grad/x").unwrap(), p);
        let n = g.node(p);
        assert_eq!(
            (n.role.clone(), n.scope.as_str()),
            (Role::Forward, "dense_1")
        );
    }
}
