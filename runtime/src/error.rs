//! The runtime's error type.

use thiserror::Error;

/// Errors from building or running a program; each names the tensor involved.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Ir(#[from] lossgraph_ir::IrError),
    /// A feed or variable had the wrong type, shape, or name.
    #[error("{name}: {message}")]
    Binding { name: String, message: String },
    /// The engine failed while running the graph.
    #[error("execution failed: {0}")]
    Exec(String),
    /// A program or model would exceed the memory budget ([`crate::budget`]),
    /// or its size overflows.
    #[error("memory budget: {0}")]
    Budget(String),
    /// Compilation to native code failed.
    #[error("compilation failed: {0}")]
    Compile(String),
}
