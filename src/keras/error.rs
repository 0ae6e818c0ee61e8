//! The Keras importer's error type.

use thiserror::Error;

/// Everything that can go wrong while importing a Keras model or case.
/// Every variant names the file, layer or key involved; none is a panic.
#[derive(Debug, Error)]
pub enum KerasError {
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A file is not valid JSON.
    #[error("{path}: malformed JSON: {message}")]
    Json { path: String, message: String },
    /// A layer uses a class, key or value lossgraph does not support, or its
    /// config is malformed. `key` is the offending config key (dotted for nested keys).
    #[error("{class} layer '{name}': {key}: {message}")]
    Layer {
        class: String,
        name: String,
        key: String,
        message: String,
    },
    /// Something outside a layer config is wrong (model structure, compile
    /// settings, case files); `context` says where.
    #[error("{context}: {message}")]
    Invalid { context: String, message: String },
    /// Something inside a file is wrong (a member of a `.keras` archive):
    /// `file` is the file, `member` the archive member.
    #[error("{file}: {member}: {source}")]
    InFile {
        file: String,
        member: String,
        source: Box<KerasError>,
    },
    /// The front end rejected the imported model (building, weights, training).
    #[error(transparent)]
    Model(#[from] crate::Error),
}

impl KerasError {
    /// An [`KerasError::Invalid`] error.
    pub fn invalid(context: impl Into<String>, message: impl Into<String>) -> KerasError {
        KerasError::Invalid {
            context: context.into(),
            message: message.into(),
        }
    }
}

/// Result alias for the importer.
pub type Result<T, E = KerasError> = std::result::Result<T, E>;
