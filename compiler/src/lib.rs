//! lossgraph's compiler: autodiff, optimisation passes, fusion, memory planning, Cranelift lowering.

pub mod passes;
