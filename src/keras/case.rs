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
        let batch_size = num(train, &cp, "batch_size")? as usize;
        let steps = num(train, &cp, "steps")? as usize;
        if batch_size == 0 || steps == 0 {
            return Err(KerasError::invalid(
                &cp,
                "train.batch_size and train.steps must be positive",
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
        let per_output = match init.get("compiled_loss_per_output") {
            Some(Value::Object(m)) => outputs
                .iter()
                .map(|o| {
                    m.get(o)
                        .and_then(|x| x.as_f64())
                        .map(|x| (o.clone(), x))
                        .ok_or_else(|| {
                            KerasError::invalid(
                                &ctx_i,
                                format!("compiled_loss_per_output has no number for '{o}'"),
                            )
                        })
                })
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
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
                    call_index: r.get("call_index").and_then(|x| x.as_u64()).unwrap_or(0) as u32,
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
        let per_step_output_losses = match e.get("per_step_output_losses") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|step| {
                        step.as_object()
                            .map(|m| {
                                m.iter()
                                    .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                                    .collect::<Vec<_>>()
                            })
                            .ok_or_else(|| {
                                KerasError::invalid(
                                    &cp,
                                    "per_step_output_losses entries must be objects",
                                )
                            })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some(_) => {
                return Err(KerasError::invalid(
                    &cp,
                    "expected.per_step_output_losses must be null or a list",
                ))
            }
        };
        let tol = obj(e, &cp, "tolerance")?;
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
                rtol: num(tol, &cp, "rtol")?,
                atol: num(tol, &cp, "atol")?,
            },
        };
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
            data: read_tensors(&dir.join("data.safetensors"))?,
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

/// Compares values element by element with `tol`.
pub fn compare(what: &str, got: &[f64], want: &[f64], tol: Tolerance) -> Comparison {
    if got.len() != want.len() {
        return Comparison {
            what: what.into(),
            passed: false,
            worst_rel: f64::INFINITY,
            worst_ratio: f64::INFINITY,
            detail: format!("got {} values, want {}", got.len(), want.len()),
        };
    }
    let (mut worst_rel, mut worst_ratio, mut at) = (0.0f64, 0.0f64, None);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        let (rel, ratio) = if d.is_finite() {
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

fn f64s(t: &HostTensor) -> Vec<f64> {
    t.to_f64()
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
    let expected_file = format!("{}/expected.safetensors", case.dir.display());
    let mut cmp: Vec<Comparison> = Vec::new();
    macro_rules! push {
        ($what:expr, $got:expr, $want:expr) => {
            cmp.push(compare($what, $got, $want, tol))
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
        let want = Case::tensor(
            &case.tensors,
            &lossgraph_ir::names::grad(name),
            &expected_file,
        )?;
        push!(&lossgraph_ir::names::grad(name), &f64s(grad), &f64s(want));
    }
    let n_grads = case
        .tensors
        .iter()
        .filter(|t| lossgraph_ir::names::grad_variable(&t.0).is_some())
        .count();
    if n_grads != g.grads.len() {
        push!(
            "number of gradients",
            &[g.grads.len() as f64],
            &[n_grads as f64]
        );
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
        let want = Case::tensor(&case.tensors, &key("output"), &expected_file)?;
        push!(&key("output"), &f64s(train_out), &f64s(want));
        checksum += f64s(train_out).iter().sum::<f64>();
        let inference = key("inference_output");
        match case.tensors.iter().find(|t| t.0 == inference) {
            Some((_, want)) => push!(&inference, &f64s(infer_out), &f64s(want)),
            None => push!(
                &format!("{inference} (= output)"),
                &f64s(infer_out),
                &f64s(want)
            ),
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
    let check_final = |m: &Model, prefix: &str, cmp: &mut Vec<Comparison>| -> Result<()> {
        for (name, w) in m.get_weights() {
            let want = Case::tensor(&case.tensors, &format!("final/{name}"), &expected_file)?;
            cmp.push(compare(
                &format!("{prefix}final/{name}"),
                &f64s(&w),
                &f64s(want),
                tol,
            ));
        }
        Ok(())
    };
    check_final(&model, "", &mut cmp)?;

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
    check_final(&fresh, "fit ", &mut cmp)?;

    Ok(CaseReport {
        name: case.name.clone(),
        comparisons: cmp,
    })
}
