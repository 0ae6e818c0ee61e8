//! Weights as safetensors files: one tensor per variable, named
//! `<layer>/<variable>` (the Keras reference cases use the same names), plus
//! helpers to read and write any safetensors file of f32/i32 tensors.

use crate::error::{narrow_to_i32, position, Error, Result};
use crate::model::Model;
use lossgraph_ir::{DType, Data, HostTensor, TensorType};
use lossgraph_runtime::budget;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::fmt::Write as _;
use std::path::Path;

fn st_err(file: &Path, e: impl std::fmt::Display) -> Error {
    Error::SafeTensors {
        file: file.display().to_string(),
        message: e.to_string(),
    }
}

/// Reads every tensor of a safetensors file, in file order. Supports F32 and
/// I32; F64 and I64 are narrowed to F32 and I32, and a value the narrow type
/// cannot hold (an i64 outside the i32 range, a finite f64 beyond the f32
/// range) is an error naming the tensor, the row and the value. A file larger than the
/// memory budget ([`lossgraph_runtime::budget`]) is refused before it is read.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Vec<(String, HostTensor)>> {
    let path = path.as_ref();
    let len = std::fs::metadata(path)
        .map_err(|e| Error::Io {
            file: path.display().to_string(),
            source: e,
        })?
        .len();
    let budget = budget::memory_budget().map_err(|m| Error::config("memory budget", m))?;
    if len > budget {
        return Err(st_err(
            path,
            format!(
                "the file holds {}, more than the memory budget of {} (set {} to change it)",
                budget::fmt_bytes(len),
                budget::fmt_bytes(budget),
                budget::BUDGET_ENV
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        file: path.display().to_string(),
        source: e,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e))?;
    let mut out = Vec::new();
    let mut entries = st.tensors();
    entries.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    for (name, view) in entries {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => Data::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::F64 => {
                let mut v = Vec::with_capacity(raw.len() / 8);
                for (k, c) in raw.chunks_exact(8).enumerate() {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    let x = f64::from_le_bytes(a);
                    let y = x as f32;
                    if x.is_finite() && !y.is_finite() {
                        return Err(st_err(
                            path,
                            format!(
                                "tensor '{name}': {} holds {x:e}, beyond the f32 range lossgraph reads f64 into",
                                position(&shape, k)
                            ),
                        ));
                    }
                    v.push(y);
                }
                Data::F32(v)
            }
            Dtype::I32 => Data::I32(
                raw.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::I64 => {
                let wide: Vec<i64> = raw
                    .chunks_exact(8)
                    .map(|c| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(c);
                        i64::from_le_bytes(a)
                    })
                    .collect();
                Data::I32(narrow_to_i32(&wide).map_err(|(k, x)| {
                    st_err(
                        path,
                        format!(
                            "tensor '{name}': {} holds {x}, outside the i32 range lossgraph reads i64 into ({} to {})",
                            position(&shape, k),
                            i32::MIN,
                            i32::MAX
                        ),
                    )
                })?)
            }
            other => {
                return Err(st_err(
                    path,
                    format!(
                        "tensor '{name}' has unsupported dtype {other:?} (f32, f64, i32, i64 only)"
                    ),
                ))
            }
        };
        let dtype = match data {
            Data::F32(_) => DType::F32,
            Data::I32(_) => DType::I32,
        };
        out.push((
            name,
            HostTensor {
                ty: TensorType::new(dtype, &shape),
                data,
            },
        ));
    }
    Ok(out)
}

/// Writes tensors to a safetensors file (F32 or I32, little-endian),
/// atomically ([`crate::io::write_atomic`]).
pub fn write_safetensors(path: impl AsRef<Path>, tensors: &[(String, HostTensor)]) -> Result<()> {
    let path = path.as_ref();
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let (dt, raw) = match &t.data {
                Data::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                Data::I32(v) => (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            };
            (n.clone(), dt, t.shape().to_vec(), raw)
        })
        .collect();
    let mut views = Vec::new();
    for (n, dt, shape, raw) in &bytes {
        let v = TensorView::new(*dt, shape.clone(), raw).map_err(|e| st_err(path, e))?;
        views.push((n.clone(), v));
    }
    let buf = safetensors::serialize(views, None).map_err(|e| st_err(path, e))?;
    crate::io::write_atomic(path, &buf)
}

impl Model {
    /// Every variable as `(name, value)`, in trainable-weight order (copies
    /// read from the model's store).
    pub fn get_weights(&self) -> Vec<(String, HostTensor)> {
        // The store holds every variable (the `Model` invariant).
        self.vars
            .iter()
            .filter_map(|v| Some((v.path.clone(), self.store.read(&v.path)?)))
            .collect()
    }

    /// Replaces variables from `(name, value)` pairs. All or nothing: fails,
    /// changing nothing, if any variable is missing, any name is unknown, or
    /// any type differs; the error lists every problem.
    pub fn set_weights(&mut self, weights: &[(String, HostTensor)]) -> Result<()> {
        self.set_weights_from("<memory>", weights)
    }

    pub(crate) fn set_weights_from(
        &mut self,
        file: &str,
        weights: &[(String, HostTensor)],
    ) -> Result<()> {
        let mut missing = Vec::new();
        let mut wrong = Vec::new();
        for v in &self.vars {
            match weights.iter().find(|(n, _)| *n == v.path) {
                None => missing.push(format!("{} {}", v.path, v.ty)),
                Some((_, t)) if t.ty != v.ty => {
                    wrong.push(format!("{}: model has {}, file has {}", v.path, v.ty, t.ty))
                }
                Some(_) => {}
            }
        }
        let mut unexpected: Vec<String> = weights
            .iter()
            .filter(|(n, _)| !self.vars.iter().any(|v| v.path == *n))
            .map(|(n, t)| format!("{n} {}", t.ty))
            .collect();
        unexpected.sort();
        if !(missing.is_empty() && wrong.is_empty() && unexpected.is_empty()) {
            let mut d = String::new();
            if !missing.is_empty() {
                let _ = writeln!(d, "  missing ({}): {}", missing.len(), missing.join(", "));
            }
            if !unexpected.is_empty() {
                let _ = writeln!(
                    d,
                    "  unexpected ({}): {}",
                    unexpected.len(),
                    unexpected.join(", ")
                );
            }
            if !wrong.is_empty() {
                let _ = writeln!(
                    d,
                    "  wrong shape or dtype ({}): {}",
                    wrong.len(),
                    wrong.join("; ")
                );
            }
            return Err(Error::WeightsMismatch {
                file: file.to_string(),
                details: d.trim_end().to_string(),
            });
        }
        for v in &self.vars {
            if let Some((_, t)) = weights.iter().find(|(n, _)| *n == v.path) {
                self.store
                    .set(&v.path, t)
                    .map_err(|e| Error::runtime("set_weights", e))?;
            }
        }
        Ok(())
    }

    /// Saves every variable to a safetensors file (`<layer>/<variable>` names).
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        write_safetensors(path, &self.get_weights())
    }

    /// Loads variables from a safetensors file; see [`Model::set_weights`] for the checks.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let tensors = read_safetensors(path)?;
        self.set_weights_from(&path.display().to_string(), &tensors)
    }
}
