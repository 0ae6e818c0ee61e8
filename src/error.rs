//! The front end's error type: every variant says what went wrong and where
//! (layer name, shapes, file and tensor key).

use lossgraph_ir::IrError;
use lossgraph_runtime::RuntimeError;
use thiserror::Error;

/// Everything that can go wrong while building, tracing, training or saving a model.
#[derive(Debug, Error)]
pub enum Error {
    /// A layer's `build` or `call` failed, or emitted ill-typed IR.
    #[error("layer '{layer}': {message}")]
    Layer { layer: String, message: String },
    /// The IR builder rejected an op emitted by a layer (the IR error names op, scope and shapes).
    #[error("layer '{layer}': {source}")]
    Ir {
        layer: String,
        #[source]
        source: IrError,
    },
    /// A configuration value is invalid (unknown activation or loss name, bad factor, …).
    #[error("invalid {what}: {message}")]
    Config { what: String, message: String },
    /// Data fed to `fit`/`evaluate`/`predict` does not match the model.
    #[error("data '{name}': {message}")]
    Data { name: String, message: String },
    /// A weights file does not match the model.
    #[error("weights file '{file}' does not match the model:\n{details}")]
    WeightsMismatch { file: String, details: String },
    /// A safetensors file could not be read or written.
    #[error("safetensors file '{file}': {message}")]
    SafeTensors { file: String, message: String },
    /// An I/O error on a file.
    #[error("file '{file}': {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// An operation needs `compile` first.
    #[error("model '{model}' is not compiled: call compile() before {action}")]
    NotCompiled { model: String, action: String },
    /// Graph compilation (autodiff, passes) failed.
    #[error("compiling the {purpose} graph: {message}")]
    Compile { purpose: String, message: String },
    /// Data-parallel training failed: the ranks disagree (model, data) or a
    /// collective outside the step failed.
    #[error("data-parallel training: {0}")]
    Distributed(String),
    /// A training step produced a NaN or infinity under
    /// [`FitOptions::check_numerics`](crate::FitOptions::check_numerics):
    /// the message names the step, the loss terms and the first
    /// non-finite node (layer and role).
    #[error("check_numerics: {message}")]
    NonFinite { message: String },
    /// The runtime failed to build or run a program.
    #[error("runtime ({purpose}): {source}")]
    Runtime {
        purpose: String,
        #[source]
        source: RuntimeError,
    },
}

impl Error {
    /// A layer error with a formatted message.
    pub fn layer(layer: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Layer {
            layer: layer.into(),
            message: message.into(),
        }
    }

    /// A configuration error.
    pub fn config(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config {
            what: what.into(),
            message: message.into(),
        }
    }

    /// A data error naming the array.
    pub fn data(name: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Data {
            name: name.into(),
            message: message.into(),
        }
    }

    pub(crate) fn runtime(purpose: impl Into<String>, source: RuntimeError) -> Error {
        Error::Runtime {
            purpose: purpose.into(),
            source,
        }
    }
}

/// Where element `k` (row-major) of an array of `shape` is, for errors:
/// `row r` for one value per row, else `row r, element e` (`e` counted
/// within the row).
pub(crate) fn position(shape: &[usize], k: usize) -> String {
    let per: usize = shape.iter().skip(1).product();
    if shape.len() <= 1 || per == 1 {
        format!("row {k}")
    } else {
        format!("row {}, element {}", k / per, k % per)
    }
}

/// `v` narrowed to `i32`, or the index and value of its first element
/// outside the `i32` range (the readers name it with [`position`]).
pub(crate) fn narrow_to_i32<T: Copy>(v: &[T]) -> std::result::Result<Vec<i32>, (usize, T)>
where
    i32: TryFrom<T>,
{
    v.iter()
        .enumerate()
        .map(|(k, &x)| i32::try_from(x).map_err(|_| (k, x)))
        .collect()
}

/// Result alias for the front end.
pub type Result<T, E = Error> = std::result::Result<T, E>;
