//! lossgraph: a Keras-style neural-network graph compiler.
pub use lossgraph_ir as ir;
pub mod digits;
pub mod keras;
pub mod plot;
