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
    lossgraph_compiler::total_loss(g).map_err(|e| compile_err(purpose, e))
}

/// Appends `grad/<param>` outputs for each param node (the differentiation pass).
pub(crate) fn append_gradients(
    g: &mut Graph,
    loss: NodeId,
    params: &[NodeId],
    purpose: &str,
) -> Result<()> {
    lossgraph_compiler::append_gradients(g, loss, params).map_err(|e| compile_err(purpose, e))
}

/// Runs the compiler's default optimisation pipeline.
pub(crate) fn optimize(mut g: Graph, purpose: &str) -> Result<Graph> {
    lossgraph_compiler::passes::default_pipeline()
        .run(&mut g)
        .map_err(|e| compile_err(purpose, e))?;
    Ok(g)
}
