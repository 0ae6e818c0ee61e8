//! The compiler crate's error type.

use lossgraph_ir::{Graph, IrError, NodeId};
use thiserror::Error;

/// Everything that can go wrong while differentiating, building objectives,
/// checking gradients or running passes. Each variant says what and where.
#[derive(Debug, Error)]
pub enum CompileError {
    /// An IR-level failure (type error while appending nodes, verification).
    #[error(transparent)]
    Ir(#[from] IrError),
    /// A problem with one node (`%id` is the node's index in the graph).
    #[error("node %{node} ({op}) in scope '{scope}': {message}")]
    Node {
        node: usize,
        op: String,
        scope: String,
        message: String,
    },
    /// A graph-level problem (missing outputs or names, inconsistent requests).
    #[error("graph '{graph}': {message}")]
    Graph { graph: String, message: String },
    /// An optimisation pass or the pass pipeline failed.
    #[error(transparent)]
    Pass(#[from] crate::passes::PassError),
    /// The reference interpreter failed (its message says where).
    #[error("interpreter: {0}")]
    Interp(String),
}

impl CompileError {
    /// A [`CompileError::Node`] naming `id`'s index, op and scope in `g`
    /// (or just the index when `id` is not a live node).
    pub fn at_node(g: &Graph, id: NodeId, message: impl Into<String>) -> CompileError {
        let (op, scope) = match g.get(id) {
            Some(n) => (n.op.name().to_string(), n.scope.clone()),
            None => ("<missing>".to_string(), String::new()),
        };
        CompileError::Node {
            node: id.index(),
            op,
            scope,
            message: message.into(),
        }
    }

    /// A [`CompileError::Graph`] for `g`.
    pub fn in_graph(g: &Graph, message: impl Into<String>) -> CompileError {
        CompileError::Graph {
            graph: g.name.clone(),
            message: message.into(),
        }
    }
}

/// Result alias for the compiler crate.
pub type Result<T, E = CompileError> = std::result::Result<T, E>;
