//! lossgraph's runtime: executable programs over host memory.
//!
//! A [`Program`] wraps a verified graph and an engine (the reference
//! interpreter, or JIT-compiled native code). It owns the graph's variables
//! (`param` nodes: weights and optimiser state, zero-initialised), takes the
//! `input` values of one run as borrowed slices, and after each run writes
//! every output named `update/<var>` back into variable `<var>`.

mod error;
pub mod executor;
mod jit;
mod program;
mod sgemm;

pub use error::RuntimeError;
pub use executor::{CompileStats, JitOptions};
pub use jit::GemmImpl;
pub use lossgraph_ir::interp;
pub use lossgraph_ir::{Data, HostTensor};
pub use program::{Engine, Feed, Program, TensorRef};
