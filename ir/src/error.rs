//! The IR crate's error type.

use thiserror::Error;

/// Everything that can go wrong while building, verifying or parsing a graph.
/// Each variant says what and where.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum IrError {
    /// An op was applied to operands of the wrong type or shape.
    #[error("{op} in scope '{scope}': {message}")]
    Type {
        op: String,
        scope: String,
        message: String,
    },
    /// A graph failed verification at a node (`%id` as printed).
    #[error("node %{node} ({op}) in scope '{scope}': {message}")]
    Verify {
        node: usize,
        op: String,
        scope: String,
        message: String,
    },
    /// A graph-level verification failure (cycle, missing output, duplicate names).
    #[error("graph '{graph}': {message}")]
    Graph { graph: String, message: String },
    /// The text format could not be parsed.
    #[error("line {line}, column {col}: {message}")]
    Parse {
        line: usize,
        col: usize,
        message: String,
    },
}

/// Result alias for the IR crate.
pub type Result<T, E = IrError> = std::result::Result<T, E>;
