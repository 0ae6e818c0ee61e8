//! lossgraph: a Keras-style neural-network graph compiler.
pub use lossgraph_ir as ir;
