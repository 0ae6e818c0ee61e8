//! lossgraph's compiler: reverse-mode differentiation, training objectives,
//! gradient checking, optimisation passes, fusion, memory planning and
//! Cranelift lowering.

pub mod autodiff;
pub mod clif_math;
pub mod conv_calls;
pub mod error;
pub mod fusion;
pub mod gradcheck;
pub mod lower_clif;
pub mod memplan;
pub mod objective;
pub mod passes;
pub mod pool_calls;

pub use autodiff::{append_gradients, grad};
pub use error::{CompileError, Result};
pub use gradcheck::{check_gradients, GradCheckOptions, GradCheckReport, Stencil, VarReport};
pub use objective::total_loss;
