//! Keras 3 `.keras` archives (`model.save("m.keras")`): a zip holding
//! `config.json` (the architecture: `model.to_json()` plus the build and
//! compile configs Keras adds), `metadata.json` (Keras version, save date)
//! and `model.weights.h5` (the variables, [`super::weights_h5`]). Other
//! members (`assets/…`, used by layers lossgraph does not import) are ignored.
//!
//! Reading builds the model through the JSON importer and loads every
//! variable; errors name the archive, the member and, inside the weights, the
//! dataset path and the layer. Writing stores the members uncompressed, as
//! Keras does, and replaces the destination atomically.

use super::build::build_model;
use super::error::{KerasError, Result};
use super::nested::NameTree;
use super::spec::ModelSpec;
use super::weights_h5::{self, KerasWeights, OptimizerVariables, Saveable};
use crate::Model;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;

/// The architecture member.
pub const CONFIG: &str = "config.json";
/// The Keras version and save date.
pub const METADATA: &str = "metadata.json";
/// The variables (HDF5).
pub const WEIGHTS: &str = "model.weights.h5";

/// Largest `config.json` / `metadata.json` accepted (a guard against a
/// corrupt size field, checked before reading).
const MAX_JSON_BYTES: u64 = 256 << 20;
/// Largest `model.weights.h5` accepted.
const MAX_WEIGHTS_BYTES: u64 = 64 << 30;

/// The Keras version written into `metadata.json` when the model did not
/// come from a `.keras` file: the version whose format the importer follows.
pub const KERAS_VERSION: &str = "3.15.1";

/// A `.keras` archive's members, decoded (the weights still as HDF5 bytes:
/// reading them needs the model).
#[derive(Clone, Debug)]
pub struct KerasArchive {
    /// The file, for error messages.
    pub file: String,
    /// `config.json`, as written.
    pub config: Value,
    /// `metadata.json`.
    pub metadata: Value,
    /// The architecture parsed from `config`.
    pub spec: ModelSpec,
    /// `model.weights.h5`.
    pub weights_h5: Vec<u8>,
}

/// A model loaded from a Keras file, with what is needed to write it back.
pub struct KerasModel {
    pub model: Model,
    pub spec: ModelSpec,
    /// The Keras config (`config.json`, or the `model.json` it was built from).
    pub config: Value,
    /// The Keras version of the file, when known.
    pub keras_version: Option<String>,
    /// The optimizer variables of a model saved after compiling, as Keras wrote them.
    pub optimizer: Option<OptimizerVariables>,
    /// The config's models and layers (where the weights file keeps each layer).
    pub names: NameTree,
}

fn io_err(file: &str, e: impl std::fmt::Display) -> KerasError {
    KerasError::Io {
        path: file.to_string(),
        message: e.to_string(),
    }
}

fn in_member(file: &str, member: &str, e: KerasError) -> KerasError {
    KerasError::InFile {
        file: file.to_string(),
        member: member.to_string(),
        source: Box::new(e),
    }
}

/// Reads member `name` (at most `limit` bytes, and at most the memory
/// budget, checked against its declared size before anything is allocated)
/// from the archive.
fn member<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    file: &str,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let mut m = match zip.by_name(name) {
        Ok(m) => m,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(KerasError::invalid(
                file,
                format!(
                    "not a Keras archive: member '{name}' is missing (members: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ))
        }
        Err(e) => {
            return Err(in_member(
                file,
                name,
                KerasError::invalid("zip", e.to_string()),
            ))
        }
    };
    let size = m.size();
    let budget = lossgraph_runtime::budget::memory_budget()
        .map_err(|e| in_member(file, name, KerasError::invalid("memory budget", e)))?;
    let limit = limit.min(budget);
    if size > limit {
        return Err(in_member(
            file,
            name,
            KerasError::invalid(
                "zip",
                format!(
                    "declares {size} bytes, more than the {limit}-byte limit (the memory budget, {}, caps it)",
                    lossgraph_runtime::budget::BUDGET_ENV
                ),
            ),
        ));
    }
    let mut buf = Vec::with_capacity(size as usize);
    m.by_ref()
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            in_member(
                file,
                name,
                KerasError::invalid("zip", format!("cannot extract: {e}")),
            )
        })?;
    if buf.len() as u64 != size {
        return Err(in_member(
            file,
            name,
            KerasError::invalid(
                "zip",
                format!("holds {} bytes, its header declares {size}", buf.len()),
            ),
        ));
    }
    Ok(buf)
}

fn json_member<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    file: &str,
    name: &str,
) -> Result<Value> {
    let bytes = member(zip, file, name, MAX_JSON_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| KerasError::Json {
        path: format!("{file}: {name}"),
        message: e.to_string(),
    })
}

impl KerasArchive {
    /// Decodes the bytes of a `.keras` file; `file` names it in errors.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<KerasArchive> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
            KerasError::invalid(
                file,
                format!("not a Keras archive (a .keras file is a zip; {e})"),
            )
        })?;
        let config = json_member(&mut zip, file, CONFIG)?;
        let metadata = json_member(&mut zip, file, METADATA)?;
        let spec = ModelSpec::from_value(&config).map_err(|e| in_member(file, CONFIG, e))?;
        let weights_h5 = member(&mut zip, file, WEIGHTS, MAX_WEIGHTS_BYTES)?;
        Ok(KerasArchive {
            file: file.to_string(),
            config,
            metadata,
            spec,
            weights_h5,
        })
    }

    /// Reads a `.keras` file.
    pub fn read(path: &Path) -> Result<KerasArchive> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| io_err(&file, e))?;
        KerasArchive::from_bytes(&bytes, &file)
    }

    /// The Keras version in `metadata.json`.
    pub fn keras_version(&self) -> Option<String> {
        self.metadata
            .get("keras_version")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    /// Builds the model (`seed` seeds initialisers, all replaced from the
    /// file) and loads every variable from `model.weights.h5`.
    pub fn load(self, seed: u64) -> Result<KerasModel> {
        let mut model =
            build_model(&self.spec, seed).map_err(|e| in_member(&self.file, CONFIG, e))?;
        let names =
            super::nested::tree(&self.config).map_err(|e| in_member(&self.file, CONFIG, e))?;
        let tree = weights_h5::tree_from_names(&model, &names)
            .map_err(|e| in_member(&self.file, CONFIG, e))?;
        let label = format!("{}: {WEIGHTS}", self.file);
        let w = weights_h5::read_weights(&model, &tree, self.weights_h5, &label)?;
        model
            .set_weights(&w.weights)
            .map_err(|e| in_member(&self.file, WEIGHTS, e.into()))?;
        Ok(KerasModel {
            keras_version: self
                .metadata
                .get("keras_version")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            model,
            spec: self.spec,
            config: self.config,
            optimizer: w.optimizer,
            names,
        })
    }
}

/// Loads a `.keras` file: the architecture and every variable.
pub fn load_keras(path: &Path, seed: u64) -> Result<KerasModel> {
    KerasArchive::read(path)?.load(seed)
}

/// The weights tree of `model`: from the Keras config's `names` when the
/// model came from Keras (nested models), else the model's own layers.
fn saveables(model: &Model, names: Option<&NameTree>) -> Result<Saveable> {
    match names {
        Some(n) => weights_h5::tree_from_names(model, n),
        None => Ok(weights_h5::flat_tree(model)),
    }
}

/// Reads a Keras weights file (`.weights.h5`, as `model.save_weights` writes
/// it) for `model` without changing the model; `names` as in [`load_weights_h5`].
pub fn read_weights_h5(
    model: &Model,
    names: Option<&NameTree>,
    path: &Path,
) -> Result<KerasWeights> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| io_err(&file, e))?;
    weights_h5::read_weights(model, &saveables(model, names)?, bytes, &file)
}

/// Loads every variable of `model` from a Keras `.weights.h5` file (all or
/// nothing); returns the optimizer variables the file holds, if any.
/// `names`: the Keras config's tree ([`super::nested::tree`]) for a model
/// with nested models; `None` reads the model's layers as one flat model.
pub fn load_weights_h5(
    model: &mut Model,
    names: Option<&NameTree>,
    path: &Path,
) -> Result<Option<OptimizerVariables>> {
    let w = read_weights_h5(model, names, path)?;
    model.set_weights(&w.weights)?;
    Ok(w.optimizer)
}

/// Writes `model`'s variables as a Keras `.weights.h5` file (atomically),
/// loadable with Keras's `model.load_weights`; `names` as in [`load_weights_h5`].
pub fn save_weights_h5(model: &Model, names: Option<&NameTree>, path: &Path) -> Result<()> {
    let bytes = weights_h5::write_weights(model, &saveables(model, names)?, None)?;
    crate::io::write_atomic(path, &bytes)?;
    Ok(())
}

/// `YYYY-MM-DD@HH:MM:SS` (UTC) for seconds since the Unix epoch, Keras's
/// `date_saved` format. Days → civil date by the proleptic Gregorian
/// calendar (400-year eras of 146097 days, years starting in March).
fn date_saved(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}@{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The bytes of a `.keras` archive of `model` with Keras config `config`
/// (`config.json`; a `model.to_json()` value works too). `optimizer`
/// variables are included when given.
pub fn keras_bytes(
    model: &Model,
    config: &Value,
    keras_version: Option<&str>,
    optimizer: Option<&OptimizerVariables>,
) -> Result<Vec<u8>> {
    // The config must describe this model: parsing and building it must
    // give the same layers and variables, or Keras would load garbage.
    let spec = ModelSpec::from_value(config)?;
    let check = build_model(&spec, 0)?;
    let describe = |m: &Model| -> Vec<String> {
        m.vars
            .iter()
            .map(|v| format!("{} {}", v.path, v.ty))
            .collect()
    };
    if describe(&check) != describe(model) || check.layer_names() != model.layer_names() {
        return Err(KerasError::invalid(
            format!("model '{}'", model.name),
            format!(
                "the Keras config describes another model (config variables: {}; model variables: {})",
                describe(&check).join(", "),
                describe(model).join(", ")
            ),
        ));
    }
    let tree = weights_h5::tree_from_names(model, &super::nested::tree(config)?)?;
    let weights = weights_h5::write_weights(model, &tree, optimizer)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let metadata = serde_json::json!({
        "keras_version": keras_version.unwrap_or(KERAS_VERSION),
        "date_saved": date_saved(now),
    });
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let zerr = |e: &dyn std::fmt::Display| {
        KerasError::invalid(
            format!("model '{}'", model.name),
            format!("writing the zip: {e}"),
        )
    };
    for (name, bytes) in [
        (METADATA, metadata.to_string().into_bytes()),
        (CONFIG, config.to_string().into_bytes()),
        (WEIGHTS, weights),
    ] {
        zip.start_file(name, opts).map_err(|e| zerr(&e))?;
        zip.write_all(&bytes).map_err(|e| zerr(&e))?;
    }
    Ok(zip.finish().map_err(|e| zerr(&e))?.into_inner())
}

/// Writes `model` as a `.keras` archive (atomically); see [`keras_bytes`].
pub fn save_keras(
    model: &Model,
    config: &Value,
    keras_version: Option<&str>,
    optimizer: Option<&OptimizerVariables>,
    path: &Path,
) -> Result<()> {
    let bytes = keras_bytes(model, config, keras_version, optimizer)?;
    crate::io::write_atomic(path, &bytes)?;
    Ok(())
}

impl KerasModel {
    /// Writes the (possibly trained) model back as a `.keras` archive with
    /// its original config; the optimizer variables read from the file are
    /// not written (they describe the state before any lossgraph training).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_keras(
            &self.model,
            &self.config,
            self.keras_version.as_deref(),
            None,
            path,
        )
    }

    /// Loads the variables from a Keras `.weights.h5` file (all or nothing).
    pub fn load_weights_h5(&mut self, path: &Path) -> Result<Option<OptimizerVariables>> {
        load_weights_h5(&mut self.model, Some(&self.names), path)
    }

    /// Writes the variables as a Keras `.weights.h5` file (atomically).
    pub fn save_weights_h5(&self, path: &Path) -> Result<()> {
        save_weights_h5(&self.model, Some(&self.names), path)
    }
}

#[cfg(test)]
mod tests {
    use super::date_saved;

    #[test]
    fn date_saved_matches_known_dates() {
        // Values from `date -u -d @N +%F@%T`.
        assert_eq!(date_saved(0), "1970-01-01@00:00:00");
        assert_eq!(date_saved(951_782_400), "2000-02-29@00:00:00");
        assert_eq!(date_saved(1_796_183_244), "2026-12-02@03:47:24");
    }

    #[test]
    fn snake_case_follows_keras() {
        use super::weights_h5::snake_case;
        for (class, want) in [
            // Expected values: Keras 3.15.1 `keras.src.utils.naming.to_snake_case`.
            ("Dense", "dense"),
            ("InputLayer", "input_layer"),
            ("BatchNormalization", "batch_normalization"),
            ("Conv2D", "conv2d"),
            ("Conv1DTranspose", "conv1d_transpose"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("MaxPooling1D", "max_pooling1d"),
            ("SpatialDropout2D", "spatial_dropout2d"),
            ("Sequential", "sequential"),
            ("ActivityRegularization", "activity_regularization"),
            ("UpSampling2D", "up_sampling2d"),
            ("PReLU", "p_re_lu"),
            ("ABCLayer", "abc_layer"),
        ] {
            assert_eq!(snake_case(class), want, "{class}");
        }
    }
}
