//! The verifier: a graph is valid only if it passes [`verify`].

use crate::error::{IrError, Result};
use crate::graph::{Graph, NodeId};
use crate::op::{infer_type, Op};
use std::collections::HashSet;

/// Checks the graph invariants: acyclic; every node's operand positions are
/// exactly `0..arity`; every node's type agrees with its op and operands;
/// every named output exists and names are unique; `input`/`param` names are
/// unique. Errors name the node (`%id`), its op and its scope.
pub fn verify(g: &Graph) -> Result<()> {
    let order = g.topo_order().map_err(|n| IrError::Graph {
        graph: g.name.clone(),
        message: format!("cycle through node %{}", n.index()),
    })?;
    let mut names = HashSet::new();
    for id in order {
        verify_node(g, id)?;
        let node = g.node(id);
        if let Op::Input { name } | Op::Param { name } = &node.op {
            if !names.insert(name.clone()) {
                return Err(IrError::Graph {
                    graph: g.name.clone(),
                    message: format!("leaf name \"{name}\" is used twice (node %{})", id.index()),
                });
            }
        }
    }
    let mut outs = HashSet::new();
    for (name, id) in g.outputs() {
        if !g.contains(*id) {
            return Err(IrError::Graph {
                graph: g.name.clone(),
                message: format!("output '{name}' refers to missing node %{}", id.index()),
            });
        }
        if !outs.insert(name) {
            return Err(IrError::Graph {
                graph: g.name.clone(),
                message: format!("output name '{name}' is used twice"),
            });
        }
    }
    Ok(())
}

fn verify_node(g: &Graph, id: NodeId) -> Result<()> {
    let node = g.node(id);
    let fail = |message: String| IrError::Verify {
        node: id.index(),
        op: node.op.name().to_string(),
        scope: node.scope.clone(),
        message,
    };
    let mut edges = g.operand_edges(id);
    edges.sort_unstable_by_key(|e| e.0);
    for (i, (pos, _)) in edges.iter().enumerate() {
        if *pos as usize != i {
            return Err(fail(format!(
                "operand positions are not 0..{}: found {pos} at {i}",
                edges.len()
            )));
        }
    }
    let tys: Vec<_> = edges.iter().map(|(_, o)| &g.node(*o).ty).collect();
    infer_type(&node.op, &tys, Some(&node.ty)).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Node, Role};
    use crate::op::{BinaryOp, Literal};
    use crate::types::TensorType;

    fn leaf(g: &mut Graph, name: &str, ty: TensorType) -> NodeId {
        g.add_node(
            Node {
                op: Op::Input { name: name.into() },
                ty,
                role: Role::Input,
                scope: String::new(),
            },
            &[],
        )
    }

    fn add(g: &mut Graph, a: NodeId, b: NodeId, ty: TensorType) -> NodeId {
        g.add_node(
            Node {
                op: Op::Binary(BinaryOp::Add),
                ty,
                role: Role::Forward,
                scope: "dense_1".into(),
            },
            &[a, b],
        )
    }

    #[test]
    fn accepts_a_valid_graph() {
        let mut g = Graph::new("ok");
        let a = leaf(&mut g, "a", TensorType::f32([2]));
        let b = leaf(&mut g, "b", TensorType::f32([2]));
        let c = add(&mut g, a, b, TensorType::f32([2]));
        g.set_output("c", c);
        verify(&g).unwrap();
    }

    #[test]
    fn rejects_type_mismatch_naming_node_and_scope() {
        let mut g = Graph::new("bad");
        let a = leaf(&mut g, "a", TensorType::f32([2]));
        let b = leaf(&mut g, "b", TensorType::f32([3]));
        add(&mut g, a, b, TensorType::f32([2]));
        let e = verify(&g).unwrap_err().to_string();
        assert!(
            e.contains("%2") && e.contains("dense_1") && e.contains("f32[3]"),
            "{e}"
        );
    }

    #[test]
    fn rejects_wrong_declared_type() {
        let mut g = Graph::new("bad");
        let a = leaf(&mut g, "a", TensorType::f32([2]));
        add(&mut g, a, a, TensorType::f32([4]));
        assert!(verify(&g)
            .unwrap_err()
            .to_string()
            .contains("declares f32[4]"));
    }

    #[test]
    fn rejects_wrong_operand_count() {
        let mut g = Graph::new("bad");
        let a = leaf(&mut g, "a", TensorType::f32([2]));
        g.add_node(
            Node {
                op: Op::Binary(BinaryOp::Add),
                ty: TensorType::f32([2]),
                role: Role::Forward,
                scope: String::new(),
            },
            &[a],
        );
        assert!(verify(&g)
            .unwrap_err()
            .to_string()
            .contains("takes 2 operand"));
    }

    #[test]
    fn rejects_cycles() {
        let mut g = Graph::new("cyc");
        let a = leaf(&mut g, "a", TensorType::f32([2]));
        let b = add(&mut g, a, a, TensorType::f32([2]));
        let c = add(&mut g, b, a, TensorType::f32([2]));
        g.set_operand(b, 1, c);
        assert!(verify(&g).unwrap_err().to_string().contains("cycle"));
    }

    #[test]
    fn rejects_missing_and_duplicate_outputs_and_names() {
        let mut g = Graph::new("out");
        let a = leaf(&mut g, "a", TensorType::f32([2]));
        let c = g.add_node(
            Node {
                op: Op::Const(Literal::F32(vec![1.0])),
                ty: TensorType::f32([2]),
                role: Role::Forward,
                scope: String::new(),
            },
            &[],
        );
        g.set_output("x", c);
        g.remove_node(c);
        assert!(verify(&g).unwrap_err().to_string().contains("missing node"));
        g.remove_output("x");
        leaf(&mut g, "a", TensorType::f32([2]));
        g.set_output("a", a);
        assert!(verify(&g).unwrap_err().to_string().contains("used twice"));
    }
}
