//! Dead-code elimination.
//!
//! Keeps every node a named output depends on, plus every `input` and `param`
//! leaf even when unused: the feeds and variables of a program are its
//! interface, and a pass must not change which names a caller has to supply
//! or which variables a checkpoint holds. Everything else (unused constants,
//! forward code no output needs, gradient code of dropped outputs) is removed.

use super::{compact, PassError};
use lossgraph_ir::graph::{Graph, NodeId};
use lossgraph_ir::op::Op;
use std::collections::HashSet;

/// Removes every node that no named output depends on, except `input`/`param` leaves.
/// Returns whether anything was removed; a changed graph comes back compacted.
pub fn run(g: &mut Graph) -> Result<bool, PassError> {
    let mut live: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> = g.outputs().iter().map(|o| o.1).collect();
    while let Some(n) = stack.pop() {
        if !g.contains(n) || !live.insert(n) {
            continue;
        }
        stack.extend(g.operands(n));
    }
    let dead: Vec<NodeId> = g
        .node_ids()
        .into_iter()
        .filter(|&n| {
            !live.contains(&n) && !matches!(g.node(n).op, Op::Input { .. } | Op::Param { .. })
        })
        .collect();
    if dead.is_empty() {
        return Ok(false);
    }
    for n in dead {
        g.remove_node(n);
    }
    compact(g, "dce")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lossgraph_ir::{Builder, Role, TensorType};

    #[test]
    fn removes_unreachable_code_and_keeps_the_interface() {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([2, 3]));
        let w = b.param("w", TensorType::f32([3, 4]));
        let unused_in = b.input("unused", TensorType::f32([5]));
        let unused_p = b.param("frozen", TensorType::f32([5]));
        let y = x.matmul(&w);
        let _dead = (&y * 2.0).exp(); // const, broadcast, mul, exp: 4 dead nodes
        let _dead2 = unused_in.neg() + &unused_p; // neg + add: 2 dead nodes
        let s = y.sum_all();
        b.output("s", &s);
        let mut g = b.finish().unwrap();
        assert_eq!(g.len(), 4 + 1 + 4 + 2 + 1);
        assert!(run(&mut g).unwrap());
        // x, w, unused, frozen, matmul, reduce_sum.
        assert_eq!(g.len(), 6);
        assert!(g.input("unused").is_some() && g.param("frozen").is_some());
        let s = g.output("s").unwrap();
        assert!(matches!(g.node(s).op, Op::Reduce { .. }));
        // Compacted: ids are 0..n.
        assert!(g.node_ids().iter().enumerate().all(|(i, n)| n.index() == i));
        lossgraph_ir::verify(&g).unwrap();
        assert!(!run(&mut g).unwrap(), "a second run finds nothing");
    }

    #[test]
    fn keeps_roles_and_scopes_of_survivors() {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([2]));
        let y = b.with_scope("dense_1", || b.with_role(Role::Gradient, || x.tanh()));
        let _dead = x.exp();
        b.output("y", &y);
        let mut g = b.finish().unwrap();
        assert!(run(&mut g).unwrap());
        let y = g.node(g.output("y").unwrap());
        assert_eq!(
            (y.role.clone(), y.scope.as_str()),
            (Role::Gradient, "dense_1")
        );
    }
}
