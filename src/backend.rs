//! The seam between the front end and the compiler crates: the training
//! objective, differentiation and the optimisation pipeline. Kept in one
//! module so the front end's public API does not change as the compiler grows.

use crate::error::{Error, Result};
use lossgraph_ir::{Graph, NodeId};

fn compile_err(purpose: &str, e: impl std::fmt::Display) -> Error {
    Error::Compile {
        purpose: purpose.into(),
        message: e.to_string(),
    }
}

/// Adds the output `loss` = Σ weight·`loss/<o>` + Σ `added/<i>` and returns its node.
pub(crate) fn total_loss(g: &mut Graph, purpose: &str) -> Result<NodeId> {
    use lossgraph_ir::{Builder, Role, Tensor};
    let b = Builder::from_graph(g.clone());
    let mut total: Option<Tensor> = None;
    for (name, id) in g.outputs().to_vec() {
        let node = g.node(id).clone();
        let term = if name.starts_with("loss/") {
            let Role::CompiledLoss { weight, .. } = node.role else {
                return Err(compile_err(purpose, format!("output '{name}' is not a compiled loss")));
            };
            b.set_scope(node.scope.clone());
            b.set_role(node.role.clone());
            let t = b.tensor(id);
            if weight == 1.0 {
                t
            } else {
                t * weight
            }
        } else if name.starts_with("added/") {
            b.set_scope(node.scope.clone());
            b.set_role(node.role.clone());
            b.tensor(id)
        } else {
            continue;
        };
        total = Some(match total.take() {
            None => term,
            Some(acc) => acc + term,
        });
    }
    let Some(total) = total else {
        return Err(compile_err(purpose, "the model has no loss"));
    };
    b.output("loss", &total);
    let id = total.id();
    *g = b.finish().map_err(|e| compile_err(purpose, e))?;
    Ok(id)
}

/// Appends `grad/<param>` outputs for each param node (differentiation pass).
pub(crate) fn append_gradients(
    g: &mut Graph,
    loss: NodeId,
    params: &[NodeId],
    purpose: &str,
) -> Result<()> {
    let _ = (g, loss, params);
    Err(compile_err(
        purpose,
        "the differentiation pass is not available in this build yet",
    ))
}

/// Runs the compiler's optimisation pipeline, when there is one.
pub(crate) fn optimize(g: Graph, _purpose: &str) -> Result<Graph> {
    Ok(g)
}
