//! The training objective: compiled losses (weighted) plus every added loss.
//!
//! Keras 3 minimises `Σ_o weight_o · loss_o + Σ_i added_i`, where each added
//! loss (a regulariser or an `add_loss` term) that is not a scalar is summed
//! first. [`total_loss`] builds exactly that sum from the graph's named
//! outputs, symbolically, so autodiff needs no special case for added losses:
//! their gradients reach exactly the weights they depend on, and a term that
//! depends on no weight simply contributes no gradient.

use crate::error::{CompileError, Result};
use lossgraph_ir::{Builder, DType, Graph, NodeId, Role, Tensor};

/// Builds the training objective from the graph's outputs: Σ weight·`loss/<o>`
/// (weight from the [`Role::CompiledLoss`] of that output's node) + Σ every
/// `added/<i>` output (a non-scalar added loss is summed, as Keras does), in
/// output order, compiled losses first. Sets the output `loss` to it (replacing
/// any previous one) and returns it.
///
/// New nodes take the role and scope of the term they fold in (the weight
/// multiply and the add of `loss/b` are `loss(b, w)` nodes in `b`'s scope; the
/// add of an added loss keeps its `added_loss` role and layer scope). A single
/// unweighted term is used as is, without new nodes.
///
/// Errors: a `loss/<o>` node without a compiled-loss role or not `f32[]`, an
/// `added/<i>` node that is not `f32`, or no loss outputs at all; each names
/// the output and node. On error the graph is left unchanged.
pub fn total_loss(g: &mut Graph) -> Result<NodeId> {
    let b = Builder::from_graph(g.clone());
    let mut total: Option<Tensor> = None;
    let mut add_term = |term: Tensor| {
        total = Some(match total.take() {
            None => term,
            Some(acc) => acc + term,
        });
    };
    let outputs = g.outputs().to_vec();
    for (name, id) in outputs
        .iter()
        .filter(|(n, _)| lossgraph_ir::names::is_output_loss(n))
    {
        let node = g.node(*id);
        let Role::CompiledLoss { weight, .. } = node.role else {
            return Err(CompileError::at_node(
                g,
                *id,
                format!(
                    "output '{name}' must be a compiled-loss node (role loss(output, weight)), \
                     but its role is {}",
                    node.role
                ),
            ));
        };
        if node.ty.dtype != DType::F32 || node.ty.rank() != 0 {
            return Err(CompileError::at_node(
                g,
                *id,
                format!("output '{name}' must be an f32[] scalar, got {}", node.ty),
            ));
        }
        b.set_scope(node.scope.clone());
        b.set_role(node.role.clone());
        let t = b.tensor(*id);
        add_term(if weight == 1.0 { t } else { t * weight });
    }
    for (name, id) in outputs
        .iter()
        .filter(|(n, _)| lossgraph_ir::names::is_added_loss(n))
    {
        let node = g.node(*id);
        if node.ty.dtype != DType::F32 {
            return Err(CompileError::at_node(
                g,
                *id,
                format!("added loss '{name}' must be f32, got {}", node.ty),
            ));
        }
        b.set_scope(node.scope.clone());
        b.set_role(node.role.clone());
        let t = b.tensor(*id);
        add_term(if node.ty.rank() == 0 { t } else { t.sum_all() });
    }
    let Some(total) = total else {
        return Err(CompileError::in_graph(
            g,
            "total_loss: the graph has no 'loss/<output>' or 'added/<i>' outputs",
        ));
    };
    b.output("loss", &total);
    let id = total.id();
    drop(total);
    *g = b.finish()?;
    Ok(id)
}
