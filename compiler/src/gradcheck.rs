//! A finite-difference gradient checker for any graph.
//!
//! [`check_gradients`] compares the gradients that [`crate::autodiff::grad`]
//! appends (evaluated on the reference interpreter) with numerical
//! derivatives of the same graph, also on the interpreter.
//!
//! # Method and expected precision
//! The interpreter computes in `f32`. Each variable element `x` is perturbed
//! by a *relative* step `h = step · max(|x|, 1)`, and the central difference
//! `D(h) = (f(x+h) − f(x−h)) / ((x+h) − (x−h))` is formed with the
//! perturbed points as actually rounded to `f32` (so the step's own
//! representation error cancels). By default ([`Stencil::FivePoint`]) two of
//! them are combined by Richardson extrapolation, `(4·D(h) − D(2h)) / 3`,
//! which cancels the `h²` term: the truncation error is about `h⁴·|f⁽⁵⁾|/30`
//! and the rounding error about `ε·|f|/h` (`ε = 2⁻²³`; `f` is rounded to `f32`
//! once by the interpreter, which accumulates sums in `f64`). With the
//! default `step = 2⁻⁵` both are around `1e-6`..`1e-5` for a well-scaled
//! function (`|f|`, `|f'|` of order 1), so correct gradients typically agree
//! to a relative error of `1e-5`..`1e-3`, and the default tolerance `1e-2`
//! separates them clearly from wrong ones (whose error is of order 1).
//! [`Stencil::Central`] uses `D(h)` alone (truncation `h²·|f'''|/6`; use a
//! smaller step such as `2⁻⁸`, see [`GradCheckOptions::central`]), at half
//! the cost and with a smaller footprint around `x`.
//!
//! Gradient components near zero are compared against a floor instead of
//! their own magnitude, so rounding noise there does not count as a failure:
//! the larger of `floor` and `100·ε·F/h`, where `F = Σ|r·of|` at the
//! evaluation point (`|of|` for a scalar) bounds the rounding of the
//! objective. A component is thus only judged wrong when its error clearly
//! exceeds what `f32` rounding of the function values can explain.
//! The evaluation points span `x ± 2h` (`x ± h` for central differences):
//! points that close to a kink (`relu` at 0, a tie of `max`/`min`/`reduce_max`,
//! `|x|` at 0) give meaningless differences, so check at points away from
//! kinks.
//!
//! A non-scalar `of` is contracted with a fixed pseudo-random cotangent `r`
//! (`|r| ∈ [0.5, 1.5)`, random signs): the analytic side differentiates
//! `Σ of·r` in the graph, and the numerical side forms `Σ of·r` in `f64` on
//! the host, so only the rounding of `of` itself adds noise. This checks the
//! whole vector-Jacobian product rather than only its sum.

use crate::autodiff::grad;
use crate::error::{CompileError, Result};
use lossgraph_ir::interp::interpret;
use lossgraph_ir::{Builder, DType, Graph, HostTensor, Literal, NodeId, Shape, TensorType};
use std::collections::HashMap;
use std::fmt;

/// The finite-difference formula of [`check_gradients`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stencil {
    /// `(f(x+h) − f(x−h)) / 2h`: error `O(h²)`, two evaluations per element.
    Central,
    /// Richardson-extrapolated central differences over `x ± h, x ± 2h`:
    /// error `O(h⁴)`, four evaluations per element.
    FivePoint,
}

/// Settings of [`check_gradients`].
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckOptions {
    /// Relative finite-difference step: `h = step · max(|x|, 1)`. Must be > 0.
    pub step: f32,
    /// The difference formula.
    pub stencil: Stencil,
    /// Smallest denominator of the relative error `|a−n| / max(|a|, |n|, floor)`.
    pub floor: f32,
    /// At most this many elements are checked per variable (an evenly strided
    /// sample, always including the first element).
    pub max_elements: usize,
}

impl Default for GradCheckOptions {
    /// Five-point stencil, `step = 2⁻⁵`, `floor = 1e-3`, `max_elements = 256`.
    fn default() -> Self {
        GradCheckOptions {
            step: 1.0 / 32.0,
            stencil: Stencil::FivePoint,
            floor: 1e-3,
            max_elements: 256,
        }
    }
}

impl GradCheckOptions {
    /// Plain central differences with `step = 2⁻⁸` (close to `ε^{1/3}`, which
    /// balances their truncation and rounding errors); other fields default.
    pub fn central() -> Self {
        GradCheckOptions {
            step: 1.0 / 256.0,
            stencil: Stencil::Central,
            ..GradCheckOptions::default()
        }
    }
}

/// The comparison for one variable.
#[derive(Clone, Debug, PartialEq)]
pub struct VarReport {
    /// The input or param name.
    pub name: String,
    /// The variable's shape.
    pub shape: Shape,
    /// False when `grad` found no differentiable dependence (analytic gradient
    /// taken as zero).
    pub differentiable: bool,
    /// Number of elements compared.
    pub checked: usize,
    /// Worst relative error `|a−n| / max(|a|, |n|, floor)` (infinite for NaN).
    pub worst_rel_error: f64,
    /// Row-major index of the element with the worst error.
    pub worst_index: usize,
    /// Analytic gradient at the worst element.
    pub analytic: f64,
    /// Numerical gradient at the worst element.
    pub numeric: f64,
    /// Largest absolute difference over the checked elements.
    pub max_abs_error: f64,
}

impl VarReport {
    /// The worst element's multi-index (`[i, j, …]`).
    pub fn worst_position(&self) -> Vec<usize> {
        let mut rest = self.worst_index;
        let mut pos = vec![0; self.shape.len()];
        for (p, &d) in pos.iter_mut().zip(self.shape.iter()).rev() {
            if d > 0 {
                *p = rest % d;
                rest /= d;
            }
        }
        pos
    }
}

/// The result of [`check_gradients`]: one [`VarReport`] per variable, in the
/// order they were requested.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckReport {
    /// The output whose gradient was checked.
    pub of: String,
    /// The relative step used.
    pub step: f32,
    /// The difference formula used.
    pub stencil: Stencil,
    /// Per-variable results.
    pub vars: Vec<VarReport>,
}

impl GradCheckReport {
    /// True when every variable's worst relative error is at most `tol`
    /// (NaN never passes).
    pub fn passed(&self, tol: f64) -> bool {
        self.vars.iter().all(|v| v.worst_rel_error <= tol)
    }

    /// The variable with the largest worst relative error.
    pub fn worst(&self) -> Option<&VarReport> {
        self.vars
            .iter()
            .max_by(|a, b| a.worst_rel_error.total_cmp(&b.worst_rel_error))
    }

    /// The report for one variable.
    pub fn var(&self, name: &str) -> Option<&VarReport> {
        self.vars.iter().find(|v| v.name == name)
    }
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gradient check of '{}' ({}, relative step {:.2e}):",
            self.of,
            match self.stencil {
                Stencil::Central => "central differences",
                Stencil::FivePoint => "five-point differences",
            },
            self.step
        )?;
        // Padded by hand: a format width is limited to u16::MAX, a name is not.
        let width = self.vars.iter().map(|v| v.name.chars().count()).max();
        for v in &self.vars {
            let ty = TensorType::new(DType::F32, &v.shape);
            let pad = width.unwrap_or(0) - v.name.chars().count();
            write!(
                f,
                "  {}{}  {:<12} {:>5} checked  worst rel err {:.2e} at {:?} \
                 (analytic {:.6e}, numeric {:.6e})",
                v.name,
                " ".repeat(pad),
                ty.to_string(),
                v.checked,
                v.worst_rel_error,
                v.worst_position(),
                v.analytic,
                v.numeric,
            )?;
            if !v.differentiable {
                write!(f, "  [no differentiable path: analytic gradient is zero]")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

const OBJECTIVE: &str = "gradcheck/objective";

/// Checks the gradients of output `of` with respect to the inputs or params
/// named in `wrt` at the point given by `feeds` (which must supply every
/// input and param the output needs, and every `wrt` variable).
///
/// Analytic gradients come from [`grad`] evaluated by the reference
/// interpreter; numerical ones from central differences (see the module
/// docs for the step and the precision to expect). `g` is not modified.
///
/// Errors: unknown output or variable, an `i32` variable, a missing or
/// mistyped feed, or an interpreter failure.
pub fn check_gradients(
    g: &Graph,
    of: &str,
    wrt: &[&str],
    feeds: &HashMap<String, HostTensor>,
    opts: &GradCheckOptions,
) -> Result<GradCheckReport> {
    if !(opts.step > 0.0 && opts.step.is_finite()) {
        return Err(CompileError::in_graph(
            g,
            format!("check_gradients: step must be positive, got {}", opts.step),
        ));
    }
    let Some(of_id) = g.output(of) else {
        let names: Vec<&str> = g.outputs().iter().map(|o| o.0.as_str()).collect();
        return Err(CompileError::in_graph(
            g,
            format!("check_gradients: no output '{of}' (outputs: {names:?})"),
        ));
    };
    let mut vars = Vec::with_capacity(wrt.len());
    for &name in wrt {
        let Some(id) = g.input(name).or_else(|| g.param(name)) else {
            return Err(CompileError::in_graph(
                g,
                format!("check_gradients: no input or param named '{name}'"),
            ));
        };
        let ty = &g.node(id).ty;
        if ty.dtype != DType::F32 {
            return Err(CompileError::at_node(
                g,
                id,
                format!("'{name}' is {ty}; integer values have no gradient"),
            ));
        }
        match feeds.get(name) {
            Some(t) if t.ty == *ty => {}
            Some(t) => {
                return Err(CompileError::at_node(
                    g,
                    id,
                    format!("the feed for '{name}' is {}, expected {ty}", t.ty),
                ))
            }
            None => {
                return Err(CompileError::at_node(
                    g,
                    id,
                    format!("no feed for '{name}'"),
                ))
            }
        }
        vars.push((name, id));
    }
    let ids: Vec<NodeId> = vars.iter().map(|v| v.1).collect();

    // Numerical side: `of` as the only output (the interpreter evaluates only
    // what the outputs need); a non-scalar `of` is contracted with the
    // cotangent on the host, in f64, so only `of`'s own rounding adds noise.
    let of_ty = g.node(of_id).ty.clone();
    if of_ty.dtype != DType::F32 {
        return Err(CompileError::at_node(
            g,
            of_id,
            format!("check_gradients needs an f32 output, got {of_ty}"),
        ));
    }
    let cotangent = (of_ty.rank() > 0).then(|| cotangent(of_ty.numel()));
    let mut base = g.clone();
    let names: Vec<String> = base.outputs().iter().map(|o| o.0.clone()).collect();
    for n in names {
        base.remove_output(&n);
    }
    base.set_output(OBJECTIVE, of_id);

    // Analytic side: grad of `of` (or of `Σ of·r`).
    let (mut with_grads, objective) = match &cotangent {
        None => (base.clone(), of_id),
        Some(r) => {
            let b = Builder::from_graph(base.clone());
            b.set_scope("gradcheck");
            let rt = b.constant(Literal::F32(r.clone()), of_ty.clone());
            let s = (b.tensor(of_id) * rt).sum_all();
            let id = s.id();
            (b.finish()?, id)
        }
    };
    let grads = grad(&mut with_grads, objective, &ids)?;
    for (i, gid) in grads.iter().enumerate() {
        if let Some(gid) = gid {
            with_grads.set_output(format!("gradcheck/grad/{i}"), *gid);
        }
    }
    let results = interpret(&with_grads, feeds).map_err(CompileError::Interp)?;
    let by_name: HashMap<&str, &HostTensor> =
        results.iter().map(|(n, t)| (n.as_str(), t)).collect();

    let scale = objective_scale(&base, feeds, cotangent.as_deref())?;
    let mut work = feeds.clone();
    let mut reports = Vec::with_capacity(vars.len());
    for (i, (name, id)) in vars.iter().enumerate() {
        let ty = g.node(*id).ty.clone();
        let numel = ty.numel();
        let analytic: Vec<f32> = match grads[i] {
            Some(_) => {
                let key = format!("gradcheck/grad/{i}");
                let t = by_name.get(key.as_str()).ok_or_else(|| {
                    CompileError::Interp(format!("the interpreter did not return '{key}'"))
                })?;
                t.as_f32()
                    .filter(|v| v.len() == numel)
                    .ok_or_else(|| {
                        CompileError::Interp(format!(
                            "gradient of '{name}' came back as {}, expected {ty}",
                            t.ty
                        ))
                    })?
                    .to_vec()
            }
            None => vec![0.0; numel],
        };
        let mut report = VarReport {
            name: name.to_string(),
            shape: ty.shape.clone(),
            differentiable: grads[i].is_some(),
            checked: 0,
            worst_rel_error: 0.0,
            worst_index: 0,
            analytic: analytic.first().copied().unwrap_or(0.0) as f64,
            numeric: 0.0,
            max_abs_error: 0.0,
        };
        let picks = sample(numel, opts.max_elements.max(1));
        for j in picks {
            let x0 = feed_value(&work, name, j)?;
            let h = opts.step * x0.abs().max(1.0);
            let mut d = |h: f32| -> Result<f64> {
                let (xp, xm) = (x0 + h, x0 - h);
                set_feed_value(&mut work, name, j, xp)?;
                let fp = eval_objective(&base, &work, cotangent.as_deref());
                set_feed_value(&mut work, name, j, xm)?;
                let fm = eval_objective(&base, &work, cotangent.as_deref());
                set_feed_value(&mut work, name, j, x0)?;
                Ok((fp? - fm?) / (xp as f64 - xm as f64))
            };
            let numeric = match opts.stencil {
                Stencil::Central => d(h)?,
                Stencil::FivePoint => (4.0 * d(h)? - d(2.0 * h)?) / 3.0,
            };
            let a = analytic[j] as f64;
            let diff = (a - numeric).abs();
            let noise = 100.0 * f32::EPSILON as f64 * scale / h as f64;
            let denom = a.abs().max(numeric.abs()).max(opts.floor as f64).max(noise);
            let rel = if diff.is_nan() {
                f64::INFINITY
            } else {
                diff / denom
            };
            report.checked += 1;
            report.max_abs_error =
                report
                    .max_abs_error
                    .max(if diff.is_nan() { f64::INFINITY } else { diff });
            if report.checked == 1 || rel > report.worst_rel_error {
                report.worst_rel_error = rel;
                report.worst_index = j;
                report.analytic = a;
                report.numeric = numeric;
            }
        }
        reports.push(report);
    }
    Ok(GradCheckReport {
        of: of.to_string(),
        step: opts.step,
        stencil: opts.stencil,
        vars: reports,
    })
}

/// The fixed pseudo-random cotangent for a non-scalar output: `n` values
/// with magnitude in `[0.5, 1.5)` and random sign (xorshift64).
fn cotangent(n: usize) -> Vec<f32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            let sign = if state & 1 == 0 { 1.0 } else { -1.0 };
            sign * (0.5 + u)
        })
        .collect()
}

/// Evenly strided element indices: all of `0..n` when `n <= max`.
fn sample(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        (0..n).collect()
    } else {
        (0..max).map(|k| k * n / max).collect()
    }
}

fn feed_value(feeds: &HashMap<String, HostTensor>, name: &str, j: usize) -> Result<f32> {
    feeds
        .get(name)
        .and_then(|t| t.as_f32())
        .and_then(|v| v.get(j).copied())
        .ok_or_else(|| CompileError::Interp(format!("feed '{name}' has no f32 element {j}")))
}

fn set_feed_value(
    feeds: &mut HashMap<String, HostTensor>,
    name: &str,
    j: usize,
    x: f32,
) -> Result<()> {
    let slot = feeds
        .get_mut(name)
        .and_then(|t| t.as_f32_mut())
        .and_then(|v| v.get_mut(j))
        .ok_or_else(|| CompileError::Interp(format!("feed '{name}' has no f32 element {j}")))?;
    *slot = x;
    Ok(())
}

/// Evaluates the objective: the `of` output itself, or `Σ of·r` in f64.
/// The objective's elements at `feeds`, widened to `f64`.
fn objective_values(g: &Graph, feeds: &HashMap<String, HostTensor>) -> Result<Vec<f64>> {
    let out = interpret(g, feeds).map_err(CompileError::Interp)?;
    out.iter()
        .find(|(n, _)| n == OBJECTIVE)
        .map(|(_, t)| t.to_f64())
        .ok_or_else(|| CompileError::Interp(format!("no '{OBJECTIVE}' output")))
}

/// `Σ|r·of|` (or `|of|` for a scalar): the magnitude whose `f32` rounding
/// limits the precision of the finite differences.
fn objective_scale(
    g: &Graph,
    feeds: &HashMap<String, HostTensor>,
    cotangent: Option<&[f32]>,
) -> Result<f64> {
    let v = objective_values(g, feeds)?;
    Ok(match cotangent {
        None => v.first().map_or(0.0, |x| x.abs()),
        Some(r) => v.iter().zip(r).map(|(a, &b)| (a * b as f64).abs()).sum(),
    })
}

/// The objective `of` (or `Σ of·r`), contracted in `f64`.
fn eval_objective(
    g: &Graph,
    feeds: &HashMap<String, HostTensor>,
    cotangent: Option<&[f32]>,
) -> Result<f64> {
    let v = objective_values(g, feeds)?;
    match cotangent {
        None => v
            .first()
            .copied()
            .ok_or_else(|| CompileError::Interp("empty objective".into())),
        Some(r) => Ok(v.iter().zip(r).map(|(a, &b)| a * b as f64).sum()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feeds(pairs: &[(&str, &[usize], Vec<f32>)]) -> HashMap<String, HostTensor> {
        pairs
            .iter()
            .map(|(n, s, v)| (n.to_string(), HostTensor::f32(s, v.clone()).unwrap()))
            .collect()
    }

    /// `l = Σ w·x²` (correct gradients) and `bad = Σ stop_gradient(w)·w`,
    /// whose analytic gradient (w) is half the true derivative (2w).
    fn graph() -> Graph {
        let b = Builder::new("gc");
        let x = b.input("x", TensorType::f32([2, 3]));
        let w = b.param("w", TensorType::f32([2, 3]));
        let k = b.input("k", TensorType::i32([2]));
        b.output("l", &(&w * &x * &x).sum_all());
        b.output("bad", &(w.stop_gradient() * &w).sum_all());
        b.output("vec", &(&w * &x).exp());
        b.output("int", &k);
        b.finish().unwrap()
    }

    fn point() -> HashMap<String, HostTensor> {
        feeds(&[
            ("x", &[2, 3], vec![0.5, -1.0, 1.5, 2.0, -0.25, 1.0]),
            ("w", &[2, 3], vec![1.0, 2.0, -3.0, 0.5, 1.5, -1.0]),
        ])
    }

    #[test]
    fn correct_gradients_pass_for_scalar_and_vector_outputs() {
        let g = graph();
        for stencil_opts in [GradCheckOptions::default(), GradCheckOptions::central()] {
            for of in ["l", "vec"] {
                let r = check_gradients(&g, of, &["w", "x"], &point(), &stencil_opts).unwrap();
                assert!(r.passed(1e-3), "{r}");
                assert_eq!(r.vars.len(), 2);
                assert!(r.vars.iter().all(|v| v.checked == 6 && v.differentiable));
            }
        }
    }

    #[test]
    fn a_wrong_gradient_is_reported_where_it_occurs() {
        let g = graph();
        let r = check_gradients(&g, "bad", &["w"], &point(), &GradCheckOptions::default()).unwrap();
        assert!(!r.passed(1e-2), "{r}");
        let v = r.var("w").unwrap();
        // analytic w, numeric 2w: relative error |w − 2w| / |2w| = 0.5 everywhere;
        // the first element attaining it is kept.
        assert!((v.worst_rel_error - 0.5).abs() < 1e-4, "{r}");
        assert_eq!(v.worst_position(), vec![0, 0]);
        assert!((v.analytic - 1.0).abs() < 1e-6 && (v.numeric - 2.0).abs() < 1e-3);
        let text = r.to_string();
        assert!(text.contains("gradient check of 'bad'"), "{text}");
        assert!(
            text.contains("w  f32[2,3]") && text.contains("at [0, 0]"),
            "{text}"
        );
        assert_eq!(r.worst().unwrap().name, "w");
    }

    #[test]
    fn sampling_limits_the_number_of_elements() {
        let g = graph();
        let opts = GradCheckOptions {
            max_elements: 4,
            ..GradCheckOptions::default()
        };
        let r = check_gradients(&g, "l", &["w"], &point(), &opts).unwrap();
        assert_eq!(r.vars[0].checked, 4);
        assert_eq!(sample(6, 4), vec![0, 1, 3, 4]);
        assert_eq!(sample(3, 4), vec![0, 1, 2]);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let g = graph();
        let o = GradCheckOptions::default();
        let e = |of: &str, wrt: &[&str], f: &HashMap<String, HostTensor>| {
            check_gradients(&g, of, wrt, f, &o).unwrap_err().to_string()
        };
        assert!(e("nope", &["w"], &point()).contains("no output 'nope'"));
        assert!(e("l", &["zz"], &point()).contains("no input or param named 'zz'"));
        assert!(e("l", &["k"], &point()).contains("integer"));
        assert!(e("int", &["w"], &point()).contains("f32 output"));
        let mut missing = point();
        missing.remove("x");
        assert!(e("l", &["x"], &missing).contains("no feed for 'x'"));
        let mut wrong = point();
        wrong.insert("w".into(), HostTensor::f32(&[6], vec![0.0; 6]).unwrap());
        assert!(e("l", &["w"], &wrong).contains("expected f32[2,3]"));
        // a missing feed the objective needs (not a checked variable) is the interpreter's error
        assert!(e("l", &["w"], &missing).contains("interpreter"));
    }
}
