//! The IR of a compiled model at each stage of the pipeline, as text or DOT
//! (`lossgraph dump-ir`, the demo's output folder).
//!
//! - `forward`: the traced model (training mode) — forward nodes plus every
//!   added-loss and state-update node (outputs `pred/<o>`, `added/<i>` and
//!   `update/<state variable>`);
//! - `train`: the training step after differentiation and optimizer updates
//!   (`loss`, `loss/<o>`, `added/<i>`, `update/<v>`; the gradients are nodes
//!   with the `gradient` role, consumed by the updates), before any pass;
//! - `optimized`: the same after the default pass pipeline (what runs);
//! - `fused`: the fusion plan of the optimized graph (kernels and their nodes);
//! - `clif`: the Cranelift IR of every kernel of the JIT-compiled step.

use crate::{Model, Purpose};
use lossgraph_compiler::fusion;
use lossgraph_ir::Graph;
use lossgraph_runtime::{Engine, JitOptions, Program};

/// A pipeline stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Forward,
    Train,
    Optimized,
    Fused,
    Clif,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 5] = [
        Stage::Forward,
        Stage::Train,
        Stage::Optimized,
        Stage::Fused,
        Stage::Clif,
    ];

    /// The stage's name (`forward`, …).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Forward => "forward",
            Stage::Train => "train",
            Stage::Optimized => "optimized",
            Stage::Fused => "fused",
            Stage::Clif => "clif",
        }
    }

    /// True for the stages that are graphs (printable as IR text and DOT).
    pub fn has_dot(self) -> bool {
        matches!(self, Stage::Forward | Stage::Train | Stage::Optimized)
    }

    /// File extension of the text dump (`lgir` for IR text, `txt` for the plan, `clif`).
    pub fn text_extension(self) -> &'static str {
        match self {
            Stage::Fused => "plan.txt",
            Stage::Clif => "clif",
            _ => "lgir",
        }
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// IR text (parses back with `lossgraph_ir::text::parse`) or the stage's own text.
    Text,
    /// Graphviz DOT (graph stages only).
    Dot,
}

/// Why a stage could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The stage or format does not exist for this build or this model.
    #[error("{0}")]
    Unavailable(String),
    /// The model failed to trace, differentiate, optimise or compile.
    #[error(transparent)]
    Model(#[from] crate::Error),
}

/// The graph of a graph stage for a batch of `batch` samples. The model must
/// be compiled for `train` and `optimized`.
pub fn graph(model: &Model, stage: Stage, batch: usize) -> Result<Graph, StageError> {
    match stage {
        Stage::Forward => Ok(model.trace(true, batch)?.finish()?),
        Stage::Train => Ok(model.graph_unoptimized(Purpose::Train, batch)?),
        Stage::Optimized => Ok(model.graph(Purpose::Train, batch)?),
        Stage::Fused | Stage::Clif => Err(StageError::Unavailable(format!(
            "stage '{}' is a kernel plan, not a graph",
            stage.name()
        ))),
    }
}

fn codegen(e: impl std::fmt::Display) -> StageError {
    StageError::Model(crate::Error::Compile {
        purpose: "train".into(),
        message: e.to_string(),
    })
}

/// The text of `stage` in `format`.
pub fn dump(
    model: &Model,
    stage: Stage,
    format: Format,
    batch: usize,
) -> Result<String, StageError> {
    if format == Format::Dot && !stage.has_dot() {
        return Err(StageError::Unavailable(format!(
            "DOT output exists for the forward, train and optimized stages, not for '{}'",
            stage.name()
        )));
    }
    match stage {
        Stage::Forward | Stage::Train | Stage::Optimized => {
            let g = graph(model, stage, batch)?;
            Ok(match format {
                Format::Text => lossgraph_ir::text::print(&g),
                Format::Dot => lossgraph_ir::dot::to_dot(&g),
            })
        }
        Stage::Fused => {
            let g = model.graph(Purpose::Train, batch)?;
            // The plan the JIT compiles (convolution calls where the host has them).
            let plan = fusion::plan(&g, &JitOptions::default().fusion).map_err(codegen)?;
            Ok(fusion::plan_text(&plan))
        }
        Stage::Clif => {
            let g = model.graph(Purpose::Train, batch)?;
            let p = Program::new(g, Engine::Jit).map_err(codegen)?;
            match p.clif_text() {
                Some(r) => r.map_err(codegen),
                None => Err(StageError::Unavailable(
                    "the JIT engine produced no code".into(),
                )),
            }
        }
    }
}
