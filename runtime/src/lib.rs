//! lossgraph's runtime: executable programs over host memory.
//!
//! A [`Program`] wraps a verified graph and an engine (the reference
//! interpreter, or JIT-compiled native code). The graph's variables (`param`
//! nodes: weights and optimiser state, zero-initialised) live in a
//! [`VariableStore`], the program's own or one shared by every program of a
//! model (kernels address it through a base pointer passed at each run, so
//! switching programs copies nothing). A run takes the `input` values as
//! borrowed slices and writes every output named `update/<var>` into
//! variable `<var>` of the store.

// The kernels are AVX-512 (x86-64); callers check `sgemm::available()`.
pub mod budget;
pub mod collective;
#[cfg(target_arch = "x86_64")]
#[allow(dead_code)] // registered as external calls once the executor has them
mod conv;
mod error;
pub mod executor;
mod jit;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(target_arch = "x86_64")]
mod pool;
mod program;
mod sgemm;
mod store;

pub use collective::{Communicator, SingleProcess};
pub use error::RuntimeError;
pub use executor::{CompileStats, JitOptions};
pub use jit::GemmImpl;
pub use lossgraph_ir::interp;
pub use lossgraph_ir::{Data, HostTensor};
pub use program::{Engine, Feed, Program, TensorRef};
pub use store::{CopyCount, VariableStore};
