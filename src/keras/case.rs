//! Keras reference cases (format: `shared/keras-cases/README.md`): loading a
//! case folder and checking lossgraph against every expected value.

use super::build::{build_model, compile_options};
use super::compile::CompileSpec;
use super::error::{KerasError, Result};
use super::spec::ModelSpec;
use crate::{FitOptions, HostTensor, LossReason, Model};
use lossgraph_ir::{Data, TensorType};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `|got - want| ≤ atol + rtol·|want|`, element by element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

/// What an expected regularization loss belongs to.
#[derive(Clone, Debug, PartialEq)]
pub enum RegSource {
    /// An activity loss of call `call_index` of the layer.
    Activity { call_index: u32 },
    /// A weight regulariser of variable `kernel` or `bias`.
    Weight { variable: String },
}

/// One entry of Keras's `model.losses`, with its value on batch 0.
#[derive(Clone, Debug, PartialEq)]
pub struct RegLoss {
    pub layer: String,
    pub source: RegSource,
    pub value: f64,
}

/// The scalars a case expects (see the format description).
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub total_loss: f64,
    pub compiled_loss: f64,
    /// Unweighted compiled loss per output.
    pub per_output: Vec<(String, f64)>,
    pub regularization: Vec<RegLoss>,
    pub outputs_checksum: f64,
    pub per_step_loss: Vec<f64>,
    /// Per step, `<output>_loss` values (multi-output models only).
    pub per_step_output_losses: Option<Vec<Vec<(String, f64)>>>,
    pub fit_epoch_loss: f64,
    pub tolerance: Tolerance,
}

/// Which files of a case folder give the model (architecture and initial weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFiles {
    /// `model.json` + `weights.safetensors`.
    Json,
    /// `model.keras`, the same model saved by Keras (`config.json` + `model.weights.h5`).
    Keras,
}

/// A loaded case folder.
pub struct Case {
    pub dir: PathBuf,
    /// The folder name.
    pub name: String,
    pub spec: ModelSpec,
    pub compile: CompileSpec,
    pub batch_size: usize,
    pub steps: usize,
    pub expected: Expected,
    /// Where `spec` and `weights` come from.
    pub files: ModelFiles,
    /// The initial weights: `weights.safetensors` in file order, or those of
    /// `model.keras` in model order.
    pub weights: Vec<(String, HostTensor)>,
    /// `data.safetensors`.
    pub data: Vec<(String, HostTensor)>,
    /// `expected.safetensors` (`grad/…`, `final/…`, `output…`).
    pub tensors: Vec<(String, HostTensor)>,
}

fn num(v: &Value, ctx: &str, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(|x| x.as_f64())
        .ok_or_else(|| KerasError::invalid(ctx, format!("'{key}' must be a number")))
}

/// A count (`train.batch_size`, `train.steps`): an integer from 1 to
/// `u32::MAX`; a fraction, a negative or absurd value is an error naming the key.
fn count(v: &Value, ctx: &str, key: &str) -> Result<usize> {
    let x = v.get(key);
    x.and_then(|x| x.as_u64())
        .filter(|&n| (1..=u64::from(u32::MAX)).contains(&n))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            KerasError::invalid(
                ctx,
                format!(
                    "'{key}' must be an integer from 1 to {}, got {}",
                    u32::MAX,
                    x.map_or("nothing".to_string(), |x| x.to_string())
                ),
            )
        })
}

/// A tolerance (`rtol`, `atol`): a finite number ≥ 0.
fn tolerance(v: &Value, ctx: &str, key: &str) -> Result<f64> {
    let x = num(v, ctx, key)?;
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(KerasError::invalid(
            ctx,
            format!("'{key}' must be a finite number ≥ 0, got {x}"),
        ))
    }
}

/// The numbers of an object keyed by `keys`, in that order: a missing key,
/// a key not in `keys` or a value that is not a number is an error naming it.
fn keyed_numbers(v: &Value, ctx: &str, keys: &[String]) -> Result<Vec<(String, f64)>> {
    let m = v
        .as_object()
        .ok_or_else(|| KerasError::invalid(ctx, format!("must be an object keyed by {keys:?}")))?;
    if let Some(k) = m.keys().find(|k| !keys.contains(k)) {
        return Err(KerasError::invalid(
            ctx,
            format!("unexpected key '{k}' (the keys are {keys:?})"),
        ));
    }
    keys.iter()
        .map(|k| match m.get(k) {
            Some(x) => x.as_f64().map(|x| (k.clone(), x)).ok_or_else(|| {
                KerasError::invalid(ctx, format!("'{k}' must be a number, got {x}"))
            }),
            None => Err(KerasError::invalid(ctx, format!("missing '{k}'"))),
        })
        .collect()
}

fn obj<'a>(v: &'a Value, ctx: &str, key: &str) -> Result<&'a Value> {
    v.get(key)
        .filter(|x| x.is_object())
        .ok_or_else(|| KerasError::invalid(ctx, format!("missing object '{key}'")))
}

fn read_tensors(path: &Path) -> Result<Vec<(String, HostTensor)>> {
    if !path.exists() {
        return Err(KerasError::Io {
            path: path.display().to_string(),
            message: "file not found".into(),
        });
    }
    Ok(crate::read_safetensors(path)?)
}

impl Case {
    /// Reads `model.json`, `case.json` and the three safetensors files of `dir`.
    pub fn load(dir: &Path) -> Result<Case> {
        Case::load_from(dir, ModelFiles::Json)
    }

    /// Reads a case with the model taken from `files`: `case.json`,
    /// `data.safetensors`, `expected.safetensors`, and `model.json` +
    /// `weights.safetensors` or `model.keras`.
    pub fn load_from(dir: &Path, files: ModelFiles) -> Result<Case> {
        if !dir.is_dir() {
            return Err(KerasError::Io {
                path: dir.display().to_string(),
                message: "not a directory".into(),
            });
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let (spec, weights) = match files {
            ModelFiles::Json => (
                ModelSpec::from_file(&dir.join("model.json"))?,
                read_tensors(&dir.join("weights.safetensors"))?,
            ),
            ModelFiles::Keras => {
                let k = super::archive::load_keras(&dir.join("model.keras"), 0)?;
                (k.spec, k.model.get_weights())
            }
        };
        let case_path = dir.join("case.json");
        let cp = case_path.display().to_string();
        let text = std::fs::read_to_string(&case_path).map_err(|e| KerasError::Io {
            path: cp.clone(),
            message: e.to_string(),
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| KerasError::Json {
            path: cp.clone(),
            message: e.to_string(),
        })?;
        let outputs = spec.output_names();
        let compile = CompileSpec::from_value(obj(&v, &cp, "compile")?, &outputs, &cp)?;
        let train = obj(&v, &cp, "train")?;
        let ctx_t = format!("{cp}: train");
        let batch_size = count(train, &ctx_t, "batch_size")?;
        let steps = count(train, &ctx_t, "steps")?;
        if batch_size
            .checked_mul(steps)
            .is_none_or(|n| n > u32::MAX as usize)
        {
            return Err(KerasError::invalid(
                &ctx_t,
                format!(
                    "batch_size × steps ({batch_size} × {steps}) is more than {} samples",
                    u32::MAX
                ),
            ));
        }
        if train.get("shuffle").and_then(|s| s.as_bool()) == Some(true) {
            return Err(KerasError::invalid(
                &cp,
                "train.shuffle: only unshuffled cases are supported",
            ));
        }
        let e = obj(&v, &cp, "expected")?;
        let init = obj(e, &cp, "initial")?;
        let ctx_i = format!("{cp}: expected.initial");
        let per_output = keyed_numbers(
            init.get("compiled_loss_per_output").unwrap_or(&Value::Null),
            &format!("{ctx_i}.compiled_loss_per_output"),
            &outputs,
        )?;
        let regs = init
            .get("regularization_losses")
            .and_then(|r| r.as_array())
            .ok_or_else(|| KerasError::invalid(&ctx_i, "regularization_losses must be a list"))?;
        let mut regularization = Vec::new();
        for (i, r) in regs.iter().enumerate() {
            let c = format!("{ctx_i}.regularization_losses[{i}]");
            let layer = r
                .get("layer")
                .and_then(|l| l.as_str())
                .ok_or_else(|| KerasError::invalid(&c, "missing 'layer'"))?
                .to_string();
            let source = match r.get("kind").and_then(|k| k.as_str()) {
                Some("activity") => RegSource::Activity {
                    call_index: r
                        .get("call_index")
                        .and_then(|x| x.as_u64())
                        .and_then(|x| u32::try_from(x).ok())
                        .ok_or_else(|| {
                            KerasError::invalid(
                                &c,
                                format!("'call_index' must be an integer from 0 to {}", u32::MAX),
                            )
                        })?,
                },
                Some("weight") => RegSource::Weight {
                    variable: r
                        .get("variable")
                        .and_then(|x| x.as_str())
                        .ok_or_else(|| KerasError::invalid(&c, "missing 'variable'"))?
                        .to_string(),
                },
                _ => {
                    return Err(KerasError::invalid(
                        &c,
                        "'kind' must be \"activity\" or \"weight\"",
                    ))
                }
            };
            regularization.push(RegLoss {
                layer,
                source,
                value: num(r, &c, "value")?,
            });
        }
        let per_step_loss: Vec<f64> = e
            .get("per_step_loss")
            .and_then(|p| p.as_array())
            .and_then(|a| a.iter().map(|x| x.as_f64()).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                KerasError::invalid(&cp, "expected.per_step_loss must be a list of numbers")
            })?;
        if per_step_loss.len() != steps {
            return Err(KerasError::invalid(
                &cp,
                format!(
                    "expected.per_step_loss has {} values for {steps} steps",
                    per_step_loss.len()
                ),
            ));
        }
        let step_keys: Vec<String> = outputs.iter().map(|o| format!("{o}_loss")).collect();
        let per_step_output_losses = match e.get("per_step_output_losses") {
            None | Some(Value::Null) if outputs.len() == 1 => None,
            None | Some(Value::Null) => {
                return Err(KerasError::invalid(
                    &cp,
                    format!(
                        "expected.per_step_output_losses is missing: a model with {} outputs needs {steps} entries of {step_keys:?}",
                        outputs.len()
                    ),
                ))
            }
            Some(Value::Array(a)) if a.len() == steps => Some(
                a.iter()
                    .enumerate()
                    .map(|(i, step)| {
                        keyed_numbers(
                            step,
                            &format!("{cp}: expected.per_step_output_losses[{i}]"),
                            &step_keys,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(Value::Array(a)) => {
                return Err(KerasError::invalid(
                    &cp,
                    format!(
                        "expected.per_step_output_losses has {} entries for {steps} steps",
                        a.len()
                    ),
                ))
            }
            Some(_) => {
                return Err(KerasError::invalid(
                    &cp,
                    "expected.per_step_output_losses must be null or a list",
                ))
            }
        };
        let tol = obj(e, &cp, "tolerance")?;
        let ctx_tol = format!("{cp}: expected.tolerance");
        let expected = Expected {
            total_loss: num(init, &ctx_i, "total_loss")?,
            compiled_loss: num(init, &ctx_i, "compiled_loss")?,
            per_output,
            regularization,
            outputs_checksum: num(init, &ctx_i, "outputs_checksum")?,
            per_step_loss,
            per_step_output_losses,
            fit_epoch_loss: num(e, &cp, "fit_epoch_loss")?,
            tolerance: Tolerance {
                rtol: tolerance(tol, &ctx_tol, "rtol")?,
                atol: tolerance(tol, &ctx_tol, "atol")?,
            },
        };
        let data_path = dir.join("data.safetensors");
        let data = read_tensors(&data_path)?;
        check_data(&data, &data_path, &spec, batch_size * steps)?;
        Ok(Case {
            dir: dir.to_path_buf(),
            name,
            spec,
            compile,
            batch_size,
            steps,
            expected,
            files,
            weights,
            data,
            tensors: read_tensors(&dir.join("expected.safetensors"))?,
        })
    }

    fn tensor<'a>(
        list: &'a [(String, HostTensor)],
        name: &str,
        file: &str,
    ) -> Result<&'a HostTensor> {
        list.iter()
            .find(|t| t.0 == name)
            .map(|t| &t.1)
            .ok_or_else(|| KerasError::invalid(file, format!("no tensor named '{name}'")))
    }

    /// A fresh model with the case's initial weights, compiled with its settings.
    pub fn model(&self) -> Result<Model> {
        self.prepare(build_model(&self.spec, 0)?)
    }

    /// Loads the case's initial weights into `m` (built by the importer or
    /// by hand) and compiles it with the case's settings.
    pub fn prepare(&self, mut m: Model) -> Result<Model> {
        match self.files {
            // From the file, so that a mismatch names it.
            ModelFiles::Json => m.load_weights(self.dir.join("weights.safetensors"))?,
            ModelFiles::Keras => m.set_weights(&self.weights)?,
        }
        m.compile(compile_options(&self.compile))?;
        Ok(m)
    }

    /// Inputs (in input order) and targets (in output order) for rows `start..end`.
    fn batch(&self, start: usize, end: usize) -> Result<(Vec<HostTensor>, Vec<HostTensor>)> {
        let file = format!("{}/data.safetensors", self.dir.display());
        let pick = |prefix: &str, names: &[String]| -> Result<Vec<HostTensor>> {
            names
                .iter()
                .map(|n| {
                    let key = data_key(prefix, names, n);
                    let t = Case::tensor(&self.data, &key, &file)?;
                    rows(t, start, end).ok_or_else(|| {
                        KerasError::invalid(
                            &file,
                            format!(
                                "'{key}' has {} rows, the case needs {end}",
                                t.shape().first().copied().unwrap_or(0)
                            ),
                        )
                    })
                })
                .collect()
        };
        Ok((
            pick("x", &self.spec.input_names())?,
            pick("y", &self.spec.output_names())?,
        ))
    }
}

/// Checks that `data` (read from `path`) holds exactly one array per input
/// (`x`, `x/<input>`) and per output (`y`, `y/<output>`) of `spec`, each of
/// `samples` rows: a missing, extra or short array is an error naming it.
fn check_data(
    data: &[(String, HostTensor)],
    path: &Path,
    spec: &ModelSpec,
    samples: usize,
) -> Result<()> {
    let file = path.display().to_string();
    let (inputs, outputs) = (spec.input_names(), spec.output_names());
    let keys: Vec<String> = inputs
        .iter()
        .map(|n| data_key("x", &inputs, n))
        .chain(outputs.iter().map(|n| data_key("y", &outputs, n)))
        .collect();
    if let Some((extra, _)) = data.iter().find(|(k, _)| !keys.contains(k)) {
        return Err(KerasError::invalid(
            &file,
            format!("unexpected tensor '{extra}' (the model's data are {keys:?})"),
        ));
    }
    for key in &keys {
        let t = Case::tensor(data, key, &file)?;
        let n = t.shape().first().copied();
        if n != Some(samples) {
            return Err(KerasError::invalid(
                &file,
                format!(
                    "'{key}' has shape {:?}: the case needs batch_size × steps = {samples} rows",
                    t.shape()
                ),
            ));
        }
    }
    Ok(())
}

/// The key of the array of input or output `name` in a data file: `prefix`
/// alone when `names` (all inputs, or all outputs) has one entry, else
/// `prefix/name` (`x`, `y`, `x/left`, `y/score`).
pub fn data_key(prefix: &str, names: &[String], name: &str) -> String {
    if names.len() == 1 {
        prefix.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

/// Rows `start..end` of a tensor (first axis), or `None` if out of range.
pub fn rows(t: &HostTensor, start: usize, end: usize) -> Option<HostTensor> {
    let n = *t.shape().first()?;
    if end > n || start > end {
        return None;
    }
    let k: usize = t.shape()[1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[0] = end - start;
    let data = match &t.data {
        Data::F32(v) => Data::F32(v[start * k..end * k].to_vec()),
        Data::I32(v) => Data::I32(v[start * k..end * k].to_vec()),
    };
    Some(HostTensor {
        ty: TensorType::new(t.ty.dtype, &shape),
        data,
    })
}

/// One compared quantity.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// What was compared (`initial.total_loss`, `grad/dense/kernel`, …).
    pub what: String,
    pub passed: bool,
    /// Largest `|got - want| / max(|want|, atol)` over the elements.
    pub worst_rel: f64,
    /// Largest `|got - want| / (atol + rtol·|want|)`; ≤ 1 passes.
    pub worst_ratio: f64,
    /// For failures: the worst element, got and want.
    pub detail: String,
}

impl Tolerance {
    /// True when both are finite and ≥ 0 (a negative bound would pass anything).
    pub fn is_valid(&self) -> bool {
        [self.rtol, self.atol]
            .iter()
            .all(|t| t.is_finite() && *t >= 0.0)
    }
}

fn failed(what: &str, detail: String) -> Comparison {
    Comparison {
        what: what.into(),
        passed: false,
        worst_rel: f64::INFINITY,
        worst_ratio: f64::INFINITY,
        detail,
    }
}

/// Compares values element by element with `tol`. Different lengths, an
/// invalid tolerance ([`Tolerance::is_valid`]) and any non-finite
/// difference (NaN on either side) fail.
pub fn compare(what: &str, got: &[f64], want: &[f64], tol: Tolerance) -> Comparison {
    if !tol.is_valid() {
        return failed(
            what,
            format!(
                "invalid tolerance rtol {} atol {} (each must be finite and ≥ 0)",
                tol.rtol, tol.atol
            ),
        );
    }
    if got.len() != want.len() {
        return failed(
            what,
            format!("got {} values, want {}", got.len(), want.len()),
        );
    }
    let (mut worst_rel, mut worst_ratio, mut at) = (0.0f64, 0.0f64, None);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        let (rel, ratio) = if d == 0.0 {
            (0.0, 0.0)
        } else if d.is_finite() {
            (
                d / w.abs().max(tol.atol),
                d / (tol.atol + tol.rtol * w.abs()),
            )
        } else {
            (f64::INFINITY, f64::INFINITY)
        };
        worst_rel = worst_rel.max(rel);
        if ratio > worst_ratio || at.is_none() {
            worst_ratio = worst_ratio.max(ratio);
            at = Some(i);
        }
    }
    let passed = worst_ratio <= 1.0;
    let detail = match at {
        Some(i) if !passed => format!("element {i}: got {:.9e}, want {:.9e}", got[i], want[i]),
        _ => String::new(),
    };
    Comparison {
        what: what.into(),
        passed,
        worst_rel,
        worst_ratio,
        detail,
    }
}

/// [`compare`] on tensors: a different shape fails, naming both.
pub fn compare_tensors(
    what: &str,
    got: &HostTensor,
    want: &HostTensor,
    tol: Tolerance,
) -> Comparison {
    if got.shape() != want.shape() {
        return failed(
            what,
            format!("got shape {:?}, want {:?}", got.shape(), want.shape()),
        );
    }
    compare(what, &got.to_f64(), &want.to_f64(), tol)
}

/// The tensors of `expected.safetensors`, marking each one looked up, so that
/// an entry nothing compares is reported instead of skipped.
struct ExpectedTensors<'a> {
    list: &'a [(String, HostTensor)],
    file: String,
    used: Vec<bool>,
}

impl<'a> ExpectedTensors<'a> {
    fn new(case: &'a Case) -> Self {
        ExpectedTensors {
            list: &case.tensors,
            file: format!("{}/expected.safetensors", case.dir.display()),
            used: vec![false; case.tensors.len()],
        }
    }

    /// The entry `name`, if the file has one.
    fn find(&mut self, name: &str) -> Option<&'a HostTensor> {
        let i = self.list.iter().position(|t| t.0 == name)?;
        self.used[i] = true;
        Some(&self.list[i].1)
    }

    /// The entry `name`; its absence is an error naming it and the file.
    fn get(&mut self, name: &str) -> Result<&'a HostTensor> {
        self.find(name)
            .ok_or_else(|| KerasError::invalid(&self.file, format!("no tensor named '{name}'")))
    }

    /// A failed comparison per entry never looked up.
    fn unused(&self) -> Vec<Comparison> {
        self.list
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|((name, _), _)| {
                failed(
                    name,
                    format!(
                        "{} holds '{name}', which is no value of the model (grad/<trainable variable>, final/<variable>, output, inference_output)",
                        self.file
                    ),
                )
            })
            .collect()
    }
}

/// The outcome of checking one case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseReport {
    pub name: String,
    pub comparisons: Vec<Comparison>,
}

impl CaseReport {
    /// True when every comparison passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.comparisons.is_empty() && self.comparisons.iter().all(|c| c.passed)
    }

    /// The comparison with the largest relative error.
    pub fn worst(&self) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .max_by(|a, b| a.worst_rel.total_cmp(&b.worst_rel))
    }

    /// The failed comparisons.
    pub fn failures(&self) -> Vec<&Comparison> {
        self.comparisons.iter().filter(|c| !c.passed).collect()
    }
}

fn reg_label(l: &crate::AddedLoss) -> String {
    match &l.variable {
        Some(v) => format!("weight {v}"),
        None => format!("{} of {} (call {})", l.reason.name(), l.owner, l.call),
    }
}

/// Runs a case through lossgraph: initial losses (total, compiled, per
/// output, every regularization loss, matched to Keras's `model.losses`
/// order), predictions and their checksum, gradients, the loss of every
/// `train_on_batch` step, the final weights, and `fit`'s epoch loss and weights.
/// `Err` means the case could not be run at all (a malformed case or an
/// unsupported model); mismatches are reported in the [`CaseReport`].
pub fn run_case(case: &Case) -> Result<CaseReport> {
    run_case_with(case, || case.model())
}

/// [`run_case`] on models from `make` (fresh, with the case's initial
/// weights, compiled: [`Case::prepare`]), for models written in Rust.
pub fn run_case_with(case: &Case, make: impl Fn() -> Result<Model>) -> Result<CaseReport> {
    let tol = case.expected.tolerance;
    let exp = &case.expected;
    let b = case.batch_size;
    let mut want_t = ExpectedTensors::new(case);
    let mut cmp: Vec<Comparison> = Vec::new();
    macro_rules! push {
        ($what:expr, $got:expr, $want:expr) => {
            cmp.push(compare($what, $got, $want, tol))
        };
    }
    macro_rules! push_tensor {
        ($what:expr, $got:expr, $want:expr) => {
            cmp.push(compare_tensors($what, $got, $want, tol))
        };
    }

    let mut model = make()?;
    let outputs = case.spec.output_names();
    let multi = outputs.len() > 1;
    let (x0, y0) = case.batch(0, b)?;

    // Initial losses and gradients (batch 0, initial weights). The call is
    // a training-mode forward pass, which updates moving statistics; they
    // are restored, as the case generator restores them (SEMANTICS.md §6.1).
    let initial = model.get_weights();
    let g = model.compute_gradients(&x0, &y0)?;
    model.set_weights(&initial)?;
    let log = |name: &str| g.logs.get(name).unwrap_or(f64::NAN);
    push!(
        "initial.total_loss",
        &[log(lossgraph_ir::names::LOSS)],
        &[exp.total_loss]
    );
    push!(
        "initial.compiled_loss",
        &[log(lossgraph_ir::names::COMPILED_LOSS)],
        &[exp.compiled_loss]
    );
    for (o, want) in &exp.per_output {
        let got = if multi {
            log(&format!("{o}_loss"))
        } else {
            let w = case
                .compile
                .losses
                .first()
                .map(|l| l.2 as f64)
                .unwrap_or(1.0);
            log(lossgraph_ir::names::COMPILED_LOSS) / w
        };
        push!(
            &format!("initial.compiled_loss_per_output.{o}"),
            &[got],
            &[*want]
        );
    }
    let losses = model.losses()?;
    let added: Vec<f64> = g
        .logs
        .entries()
        .iter()
        .filter(|(k, _)| k.contains('/'))
        .map(|(_, v)| *v)
        .collect();
    if losses.len() != exp.regularization.len() || added.len() != losses.len() {
        cmp.push(Comparison {
            what: "model.losses".into(),
            passed: false,
            worst_rel: f64::INFINITY,
            worst_ratio: f64::INFINITY,
            detail: format!(
                "lossgraph has {} added losses ({}), Keras has {}",
                losses.len(),
                losses.iter().map(reg_label).collect::<Vec<_>>().join(", "),
                exp.regularization.len()
            ),
        });
    } else {
        for (i, ((l, want), got)) in losses
            .iter()
            .zip(&exp.regularization)
            .zip(&added)
            .enumerate()
        {
            let same = match &want.source {
                RegSource::Activity { call_index } => {
                    l.reason == LossReason::ActivityRegularizer
                        && l.owner == want.layer
                        && l.call == *call_index
                }
                RegSource::Weight { variable } => {
                    l.variable.as_deref() == Some(&format!("{}/{variable}", want.layer))
                }
            };
            let what = format!("model.losses[{i}] ({})", reg_label(l));
            if same {
                push!(&what, &[*got], &[want.value]);
            } else {
                cmp.push(Comparison {
                    what,
                    passed: false,
                    worst_rel: f64::INFINITY,
                    worst_ratio: f64::INFINITY,
                    detail: format!(
                        "Keras lists {:?} of layer '{}' here",
                        want.source, want.layer
                    ),
                });
            }
        }
    }
    for (name, grad) in &g.grads {
        let key = lossgraph_ir::names::grad(name);
        push_tensor!(&key, grad, want_t.get(&key)?);
    }

    // Predictions on batch 0: `output` in training mode (the gradient
    // call's forward pass), `inference_output` (cases with state) from predict.
    let preds = model.predict(&x0, b)?;
    let mut checksum = 0.0;
    for (i, o) in outputs.iter().enumerate() {
        let key = |base: &str| {
            if multi {
                format!("{base}/{o}")
            } else {
                base.to_string()
            }
        };
        let (train_out, infer_out) = (&g.outputs[i], &preds[i]);
        let want = want_t.get(&key("output"))?;
        push_tensor!(&key("output"), train_out, want);
        checksum += train_out.to_f64().iter().sum::<f64>();
        let inference = key("inference_output");
        match want_t.find(&inference) {
            Some(want) => push_tensor!(&inference, infer_out, want),
            None => push_tensor!(&format!("{inference} (= output)"), infer_out, want),
        }
    }
    push!(
        "initial.outputs_checksum",
        &[checksum],
        &[exp.outputs_checksum]
    );

    // train_on_batch, one step per consecutive batch.
    let mut step_losses = Vec::new();
    for i in 0..case.steps {
        let (x, y) = case.batch(i * b, (i + 1) * b)?;
        let logs = model.train_on_batch(&x, &y)?;
        step_losses.push(logs.loss());
        if let Some(per) = exp.per_step_output_losses.as_ref().and_then(|p| p.get(i)) {
            for (k, want) in per {
                push!(
                    &format!("per_step_output_losses[{i}].{k}"),
                    &[logs.get(k).unwrap_or(f64::NAN)],
                    &[*want]
                );
            }
        }
    }
    push!("per_step_loss", &step_losses, &exp.per_step_loss);
    let check_final = |m: &Model,
                       prefix: &str,
                       cmp: &mut Vec<Comparison>,
                       want_t: &mut ExpectedTensors|
     -> Result<()> {
        for (name, w) in m.get_weights() {
            let key = format!("final/{name}");
            cmp.push(compare_tensors(
                &format!("{prefix}{key}"),
                &w,
                want_t.get(&key)?,
                tol,
            ));
        }
        Ok(())
    };
    check_final(&model, "", &mut cmp, &mut want_t)?;

    // fit for one epoch, unshuffled, on a fresh model.
    let mut fresh = make()?;
    let (x, y) = case.batch(0, case.steps * b)?;
    let h = fresh.fit(
        &x,
        &y,
        FitOptions::new()
            .epochs(1)
            .batch_size(b)
            .shuffle(false, 0)
            .verbose(false),
    )?;
    let fit_loss = h.epochs.first().map(|l| l.loss()).unwrap_or(f64::NAN);
    cmp.push(compare(
        "fit_epoch_loss",
        &[fit_loss],
        &[exp.fit_epoch_loss],
        tol,
    ));
    check_final(&fresh, "fit ", &mut cmp, &mut want_t)?;
    cmp.extend(want_t.unused());

    Ok(CaseReport {
        name: case.name.clone(),
        comparisons: cmp,
    })
}
