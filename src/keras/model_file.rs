//! A model named by its file, the way the CLI takes it: a `.keras` archive
//! (architecture and weights), or a `model.to_json()` file with an optional
//! weights file (`.safetensors` with `<layer>/<variable>` tensors, or a Keras
//! `.weights.h5`); and writing a model to any of these forms. The format is
//! told by the file name's ending.

use super::archive::{self, KerasModel};
use super::build::build_model;
use super::error::{KerasError, Result};
use super::nested;
use super::spec::ModelSpec;
use serde_json::Value;
use std::path::Path;

/// What a model or weights file holds, by its name's ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `.keras`: architecture and weights.
    Keras,
    /// `.json`: the architecture (`model.to_json()` or `config.json`).
    Json,
    /// `.safetensors`: weights named `<layer>/<variable>`.
    Safetensors,
    /// `.h5` (`.weights.h5`): Keras's weights layout.
    WeightsH5,
}

impl FileKind {
    /// The kind of `path`, or an error listing the endings understood.
    pub fn of(path: &Path) -> Result<FileKind> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        Ok(if name.ends_with(".keras") {
            FileKind::Keras
        } else if name.ends_with(".json") {
            FileKind::Json
        } else if name.ends_with(".safetensors") {
            FileKind::Safetensors
        } else if name.ends_with(".h5") {
            FileKind::WeightsH5
        } else {
            return Err(KerasError::invalid(
                path.display().to_string(),
                "unknown file type: expected a name ending in .keras, .json, .safetensors or .weights.h5",
            ));
        })
    }

    fn holds_weights(self) -> bool {
        matches!(self, FileKind::Safetensors | FileKind::WeightsH5)
    }
}

/// Loads the model of `model` (`.keras` or `.json`), then, if given, the
/// variables of `weights` (`.safetensors` or `.weights.h5`; for a `.keras`
/// they replace the archive's). A JSON model without a weights file keeps
/// its initial values (seeded by `seed`).
pub fn load(model: &Path, weights: Option<&Path>, seed: u64) -> Result<KerasModel> {
    // A safetensors file is read (and its size checked) before the model is
    // built, so a bad one fails before any initialiser runs.
    let early = match weights {
        Some(w) if FileKind::of(w)? == FileKind::Safetensors => {
            Some((w, crate::read_safetensors(w)?))
        }
        _ => None,
    };
    let mut km = match FileKind::of(model)? {
        FileKind::Keras => archive::load_keras(model, seed)?,
        FileKind::Json => {
            let p = model.display().to_string();
            let text = std::fs::read_to_string(model).map_err(|e| KerasError::Io {
                path: p.clone(),
                message: e.to_string(),
            })?;
            let config: Value = serde_json::from_str(&text).map_err(|e| KerasError::Json {
                path: p.clone(),
                message: e.to_string(),
            })?;
            let spec = ModelSpec::from_value(&config)?;
            KerasModel {
                model: build_model(&spec, seed)?,
                names: nested::tree(&config)?,
                spec,
                config,
                keras_version: None,
                optimizer: None,
            }
        }
        FileKind::Safetensors | FileKind::WeightsH5 => {
            return Err(KerasError::invalid(
                model.display().to_string(),
                "is a weights file; the model must be a .keras or a .json architecture",
            ))
        }
    };
    match (early, weights) {
        (Some((w, tensors)), _) => km
            .model
            .set_weights_from(&w.display().to_string(), &tensors)?,
        (None, Some(w)) => load_weights(&mut km, w)?,
        (None, None) => {}
    }
    Ok(km)
}

/// Loads every variable from a `.safetensors` or `.weights.h5` file (all or nothing).
pub fn load_weights(km: &mut KerasModel, path: &Path) -> Result<()> {
    match FileKind::of(path)? {
        FileKind::Safetensors => km.model.load_weights(path)?,
        FileKind::WeightsH5 => {
            km.load_weights_h5(path)?;
        }
        FileKind::Keras | FileKind::Json => {
            return Err(KerasError::invalid(
                path.display().to_string(),
                "is not a weights file (expected .safetensors or .weights.h5)",
            ))
        }
    }
    Ok(())
}

/// Writes the model to `path` in the form its name says: `.keras` (config
/// and weights), `.json` (the architecture only), `.safetensors` or
/// `.weights.h5` (the weights only). Every form is written atomically.
pub fn save(km: &KerasModel, path: &Path) -> Result<()> {
    match FileKind::of(path)? {
        FileKind::Keras => km.save(path),
        FileKind::Json => {
            let text = serde_json::to_string_pretty(&km.config)
                .map_err(|e| KerasError::invalid(path.display().to_string(), e.to_string()))?;
            crate::io::write_atomic(path, text.as_bytes())?;
            Ok(())
        }
        FileKind::Safetensors => Ok(km.model.save_weights(path)?),
        FileKind::WeightsH5 => km.save_weights_h5(path),
    }
}

/// True when `path` names a weights-only file (`.safetensors`, `.weights.h5`).
pub fn is_weights_file(path: &Path) -> bool {
    FileKind::of(path).is_ok_and(FileKind::holds_weights)
}
