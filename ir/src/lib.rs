//! lossgraph's symbolic IR.
//!
//! A model is a [`Graph`]: a petgraph DAG of typed [`Node`]s, each with an
//! [`Op`] from a small primitive set, a [`Role`] (forward, added loss,
//! gradient, update, …) and the layer scope that emitted it. Graphs are built
//! with the [`Builder`], checked by [`verify`], printed and parsed by
//! [`text`], drawn by [`dot`] and evaluated by the reference interpreter in
//! [`interp`].

pub mod builder;
pub mod dot;
pub mod error;
/// The random graph generator of the round-trip and differential tests:
/// behind the `testgen` feature, which only dev-dependencies enable.
#[cfg(any(test, feature = "testgen"))]
pub mod gen;
pub mod graph;
pub mod interp;
pub mod names;
pub mod nn;
pub mod op;
pub mod rng;
pub mod tensor;
pub mod text;
pub mod types;
pub mod verify;

pub use builder::{Builder, IntoOperand, Tensor};
pub use error::{IrError, Result};
pub use graph::{Graph, LossReason, Node, NodeId, Role};
pub use op::{BinaryOp, Literal, Op, ReduceOp, UnaryOp};
pub use tensor::{Data, HostTensor};
pub use types::{DType, Shape, TensorType};
pub use verify::verify;
