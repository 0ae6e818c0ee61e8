//! Optimisers with Keras 3's exact update formulas and defaults, emitted as
//! IR (role `update`, scope `optimizer`) so the compiler fuses them with the
//! rest of the step. The learning rate and the iteration count are runtime
//! `f32[]` inputs (`lr`, `iteration`), so schedules need no recompilation.
//!
//! Per variable, in Keras's order: decoupled weight decay
//! `w ← w - w·wd·lr` (AdamW; every variable, biases included), then the
//! update step. State variables are named `optimizer/<kind>/<slot>/<param>`
//! with Keras's slot names (`momentum`, `velocity`, `velocity_hat`,
//! `average_gradient`) and start at zero; each new value is the output
//! `update/<name>`. Checkpoints name the optimiser's variables as Keras
//! does ([`Optimizer::keras_slot_name`], [`Optimizer::keras_variable`]).

use crate::error::{Error, Result};
use lossgraph_ir::{Builder, Role, Tensor, TensorType};
use std::fmt;
use std::rc::Rc;

/// Name of the `f32[]` input holding the number of completed steps (Keras's `iterations`).
pub use lossgraph_ir::names::ITERATION_INPUT;
/// Name of the `f32[]` learning-rate input of training graphs.
pub use lossgraph_ir::names::LR_INPUT;

/// A learning rate: constant, one of Keras's schedules, or any function of
/// the iteration count. Schedules are evaluated on the host before every
/// optimiser step (`step` = the iteration count, 0 for the first step) and
/// fed as the `lr` input, so no schedule needs a recompilation. Formulas are
/// Keras 3's (`keras.optimizers.schedules`), evaluated in f64.
#[derive(Clone)]
pub enum LearningRate {
    /// A fixed rate.
    Constant(f32),
    /// `initial · rate^(step / decay_steps)` (floored exponent when `staircase`), as Keras's `ExponentialDecay`.
    ExponentialDecay {
        initial: f32,
        decay_steps: u64,
        decay_rate: f32,
        staircase: bool,
    },
    /// `values[0]` while `step ≤ boundaries[0]`, `values[i]` while
    /// `boundaries[i-1] < step ≤ boundaries[i]`, the last value after the last
    /// boundary (Keras's `PiecewiseConstantDecay`; one more value than boundaries).
    PiecewiseConstantDecay {
        boundaries: Vec<u64>,
        values: Vec<f32>,
    },
    /// `(initial - end)·(1 - s/d)^power + end` with `s = min(step, d)`; with
    /// `cycle`, `d` is `decay_steps · ⌈step / decay_steps⌉` (1 at step 0)
    /// and `s = step` (Keras's `PolynomialDecay`).
    PolynomialDecay {
        initial: f32,
        decay_steps: u64,
        end: f32,
        power: f32,
        cycle: bool,
    },
    /// `initial / (1 + decay_rate · step / decay_steps)` (floored quotient when
    /// `staircase`), as Keras's `InverseTimeDecay`.
    InverseTimeDecay {
        initial: f32,
        decay_steps: u64,
        decay_rate: f32,
        staircase: bool,
    },
    /// Keras's `CosineDecay`: with `warmup` = `Some((target, warmup_steps))`,
    /// a linear ramp from `initial` to `target` over the warmup steps, then
    /// `from · ((1-α)·½(1 + cos(π·s/decay_steps)) + α)` with `s` the steps
    /// after the warmup (capped at `decay_steps`) and `from` the target
    /// (`initial` without warmup).
    CosineDecay {
        initial: f32,
        decay_steps: u64,
        alpha: f32,
        warmup: Option<(f32, u64)>,
    },
    /// Keras's `CosineDecayRestarts` (SGDR): cosine decay over periods that
    /// start at `first_decay_steps` and grow by `t_mul`, each restart scaling
    /// the peak by `m_mul`.
    CosineDecayRestarts {
        initial: f32,
        first_decay_steps: u64,
        t_mul: f32,
        m_mul: f32,
        alpha: f32,
    },
    /// Any schedule of the iteration count (0 for the first step).
    Schedule(Rc<dyn Fn(u64) -> f32>),
}

impl fmt::Debug for LearningRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LearningRate::Constant(v) => write!(f, "{v}"),
            LearningRate::ExponentialDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            } => write!(
                f,
                "ExponentialDecay({initial}, {decay_steps}, {decay_rate}, staircase={staircase})"
            ),
            LearningRate::PiecewiseConstantDecay { boundaries, values } => {
                write!(f, "PiecewiseConstantDecay({boundaries:?}, {values:?})")
            }
            LearningRate::PolynomialDecay {
                initial,
                decay_steps,
                end,
                power,
                cycle,
            } => write!(
                f,
                "PolynomialDecay({initial}, {decay_steps}, end={end}, power={power}, cycle={cycle})"
            ),
            LearningRate::InverseTimeDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            } => write!(
                f,
                "InverseTimeDecay({initial}, {decay_steps}, {decay_rate}, staircase={staircase})"
            ),
            LearningRate::CosineDecay {
                initial,
                decay_steps,
                alpha,
                warmup,
            } => write!(
                f,
                "CosineDecay({initial}, {decay_steps}, alpha={alpha}, warmup={warmup:?})"
            ),
            LearningRate::CosineDecayRestarts {
                initial,
                first_decay_steps,
                t_mul,
                m_mul,
                alpha,
            } => write!(
                f,
                "CosineDecayRestarts({initial}, {first_decay_steps}, t_mul={t_mul}, m_mul={m_mul}, alpha={alpha})"
            ),
            LearningRate::Schedule(_) => f.write_str("schedule"),
        }
    }
}

/// `(1-α)·½(1 + cos(π·fraction))·scale + α` (Keras's cosine decay factor).
fn cosine(fraction: f64, alpha: f64, scale: f64) -> f64 {
    (1.0 - alpha) * 0.5 * scale * (1.0 + (std::f64::consts::PI * fraction).cos()) + alpha
}

impl LearningRate {
    /// The rate when it is a constant — the one case where the rate is
    /// state of its own (a checkpoint stores it, as Keras's
    /// `learning_rate` variable); a schedule is a function of the
    /// iteration.
    pub fn constant(&self) -> Option<f32> {
        match self {
            LearningRate::Constant(v) => Some(*v),
            // Listed, not `_`: a new schedule must decide whether it is state.
            LearningRate::ExponentialDecay { .. }
            | LearningRate::PiecewiseConstantDecay { .. }
            | LearningRate::PolynomialDecay { .. }
            | LearningRate::InverseTimeDecay { .. }
            | LearningRate::CosineDecay { .. }
            | LearningRate::CosineDecayRestarts { .. }
            | LearningRate::Schedule(_) => None,
        }
    }

    /// The rate used at step `iteration` (0-based).
    pub fn at(&self, iteration: u64) -> f32 {
        let step = iteration as f64;
        let steps = |d: &u64| (*d).max(1) as f64;
        let r = match self {
            LearningRate::Constant(v) => *v as f64,
            LearningRate::ExponentialDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = step / steps(decay_steps);
                if *staircase {
                    p = p.floor();
                }
                *initial as f64 * (*decay_rate as f64).powf(p)
            }
            LearningRate::PiecewiseConstantDecay { boundaries, values } => {
                let i = boundaries.iter().take_while(|b| iteration > **b).count();
                values.get(i).or(values.last()).copied().unwrap_or(f32::NAN) as f64
            }
            LearningRate::PolynomialDecay {
                initial,
                decay_steps,
                end,
                power,
                cycle,
            } => {
                let mut d = steps(decay_steps);
                let s = if *cycle {
                    d *= (step / d).ceil().max(1.0);
                    step
                } else {
                    step.min(d)
                };
                (*initial as f64 - *end as f64) * (1.0 - s / d).powf(*power as f64) + *end as f64
            }
            LearningRate::InverseTimeDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = step / steps(decay_steps);
                if *staircase {
                    p = p.floor();
                }
                *initial as f64 / (1.0 + *decay_rate as f64 * p)
            }
            LearningRate::CosineDecay {
                initial,
                decay_steps,
                alpha,
                warmup,
            } => {
                let d = steps(decay_steps);
                let alpha = *alpha as f64;
                match warmup {
                    None => *initial as f64 * cosine(step.min(d) / d, alpha, 1.0),
                    Some((target, w)) => {
                        let w = *w as f64;
                        let s = step.min(d + w);
                        if s < w {
                            (*target as f64 - *initial as f64) * (s / w) + *initial as f64
                        } else {
                            *target as f64 * cosine((s - w) / d, alpha, 1.0)
                        }
                    }
                }
            }
            LearningRate::CosineDecayRestarts {
                initial,
                first_decay_steps,
                t_mul,
                m_mul,
                alpha,
            } => {
                let fraction = step / steps(first_decay_steps);
                let t_mul = *t_mul as f64;
                let (restart, fraction) = if t_mul == 1.0 {
                    let i = fraction.floor();
                    (i, fraction - i)
                } else {
                    let i = ((1.0 - fraction * (1.0 - t_mul)).ln() / t_mul.ln()).floor();
                    let done = (1.0 - t_mul.powf(i)) / (1.0 - t_mul);
                    (i, (fraction - done) / t_mul.powf(i))
                };
                let scale = (*m_mul as f64).powf(restart);
                *initial as f64 * cosine(fraction, *alpha as f64, scale)
            }
            LearningRate::Schedule(f) => return f(iteration),
        };
        r as f32
    }

    /// Checks the schedule's parameters (at `compile`): positive step counts,
    /// one more value than boundaries, increasing boundaries.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::config("learning rate", format!("{self:?}: {m}")));
        match self {
            LearningRate::ExponentialDecay { decay_steps, .. }
            | LearningRate::PolynomialDecay { decay_steps, .. }
            | LearningRate::InverseTimeDecay { decay_steps, .. }
            | LearningRate::CosineDecay { decay_steps, .. }
            | LearningRate::CosineDecayRestarts {
                first_decay_steps: decay_steps,
                ..
            } if *decay_steps == 0 => bad("the decay steps must be positive".into()),
            LearningRate::CosineDecay {
                warmup: Some((_, 0)),
                ..
            } => bad("the warmup steps must be positive".into()),
            LearningRate::PiecewiseConstantDecay { boundaries, values }
                if values.len() != boundaries.len() + 1 =>
            {
                bad(format!(
                    "{} boundaries need {} values, got {}",
                    boundaries.len(),
                    boundaries.len() + 1,
                    values.len()
                ))
            }
            LearningRate::PiecewiseConstantDecay { boundaries, .. }
                if boundaries.windows(2).any(|w| w[0] >= w[1]) =>
            {
                bad("the boundaries must increase".into())
            }
            // Listed, not `_`: a new schedule must decide what it validates.
            LearningRate::Constant(_)
            | LearningRate::ExponentialDecay { .. }
            | LearningRate::PiecewiseConstantDecay { .. }
            | LearningRate::PolynomialDecay { .. }
            | LearningRate::InverseTimeDecay { .. }
            | LearningRate::CosineDecay { .. }
            | LearningRate::CosineDecayRestarts { .. }
            | LearningRate::Schedule(_) => Ok(()),
        }
    }
}

/// Gradient clipping with Keras's semantics (at most one kind per
/// optimiser, as Keras requires). Applied once per optimiser step, between
/// differentiation and the update (the step's gradient hook).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip {
    /// `clipnorm`: each gradient `g ← g·c / max(‖g‖₂, c)` (per variable).
    Norm(f32),
    /// `clipvalue`: each element clamped to `[-c, c]`.
    Value(f32),
    /// `global_clipnorm`: every gradient scaled by `c · min(1/‖G‖, 1/c)`,
    /// with `‖G‖` the norm of all gradients together.
    GlobalNorm(f32),
}

/// Every optimiser slot name (Keras's), in the order a checkpoint lists them.
pub const SLOT_NAMES: [&str; 4] = ["momentum", "velocity", "velocity_hat", "average_gradient"];

/// The update rule and its hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// SGD: `w -= lr·g`; with momentum μ: `m = μm - lr·g`, `w += m` (nesterov: `w += μm - lr·g`).
    Sgd { momentum: f32, nesterov: bool },
    /// Adam with ε added to the un-corrected `√v`, `α = lr·√(1-β₂ᵗ)/(1-β₁ᵗ)`.
    Adam {
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        amsgrad: bool,
    },
    /// RMSprop with ε inside the square root.
    RmsProp {
        rho: f32,
        momentum: f32,
        epsilon: f32,
        centered: bool,
    },
}

/// An optimiser: a rule, a learning rate and optional decoupled weight decay.
#[derive(Clone, Debug)]
pub struct Optimizer {
    /// The update rule.
    pub rule: Rule,
    /// The learning rate or schedule.
    pub learning_rate: LearningRate,
    /// Decoupled weight decay (`w -= w·wd·lr` before the step), `None` for off.
    pub weight_decay: Option<f32>,
    /// Gradient clipping, `None` for off.
    pub clip: Option<Clip>,
}

impl Optimizer {
    /// Keras `SGD(learning_rate)`: momentum 0, no nesterov.
    pub fn sgd(lr: f32) -> Optimizer {
        Optimizer {
            rule: Rule::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            learning_rate: LearningRate::Constant(lr),
            weight_decay: None,
            clip: None,
        }
    }

    /// Keras `Adam(learning_rate)`: β₁ 0.9, β₂ 0.999, ε 1e-7.
    pub fn adam(lr: f32) -> Optimizer {
        Optimizer {
            rule: Rule::Adam {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
                amsgrad: false,
            },
            learning_rate: LearningRate::Constant(lr),
            weight_decay: None,
            clip: None,
        }
    }

    /// Keras `AdamW(learning_rate)`: Adam's defaults plus weight decay 0.004.
    pub fn adamw(lr: f32) -> Optimizer {
        Optimizer {
            weight_decay: Some(0.004),
            ..Optimizer::adam(lr)
        }
    }

    /// Keras `RMSprop(learning_rate)`: ρ 0.9, momentum 0, ε 1e-7, not centered.
    pub fn rmsprop(lr: f32) -> Optimizer {
        Optimizer {
            rule: Rule::RmsProp {
                rho: 0.9,
                momentum: 0.0,
                epsilon: 1e-7,
                centered: false,
            },
            learning_rate: LearningRate::Constant(lr),
            weight_decay: None,
            clip: None,
        }
    }

    /// A Keras optimiser by name with its default learning rate
    /// (`sgd` 0.01, `adam`/`adamw`/`rmsprop` 0.001).
    pub fn from_name(name: &str) -> Result<Optimizer> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "sgd" => Optimizer::sgd(0.01),
            "adam" => Optimizer::adam(0.001),
            "adamw" => Optimizer::adamw(0.001),
            "rmsprop" => Optimizer::rmsprop(0.001),
            _ => {
                return Err(Error::config(
                    "optimizer",
                    format!("unknown optimizer '{name}' (sgd, adam, adamw, rmsprop)"),
                ))
            }
        })
    }

    /// Sets the SGD/RMSprop momentum.
    pub fn momentum(mut self, m: f32) -> Optimizer {
        match &mut self.rule {
            Rule::Sgd { momentum, .. } | Rule::RmsProp { momentum, .. } => *momentum = m,
            Rule::Adam { .. } => {}
        }
        self
    }

    /// Enables Nesterov momentum (SGD).
    pub fn nesterov(mut self, yes: bool) -> Optimizer {
        if let Rule::Sgd { nesterov, .. } = &mut self.rule {
            *nesterov = yes;
        }
        self
    }

    /// Sets Adam's β₁ and β₂.
    pub fn betas(mut self, b1: f32, b2: f32) -> Optimizer {
        if let Rule::Adam { beta_1, beta_2, .. } = &mut self.rule {
            *beta_1 = b1;
            *beta_2 = b2;
        }
        self
    }

    /// Sets ε (Adam, RMSprop).
    pub fn epsilon(mut self, eps: f32) -> Optimizer {
        match &mut self.rule {
            Rule::Adam { epsilon, .. } | Rule::RmsProp { epsilon, .. } => *epsilon = eps,
            Rule::Sgd { .. } => {}
        }
        self
    }

    /// Enables AMSGrad (Adam).
    pub fn amsgrad(mut self, yes: bool) -> Optimizer {
        if let Rule::Adam { amsgrad, .. } = &mut self.rule {
            *amsgrad = yes;
        }
        self
    }

    /// Sets RMSprop's ρ.
    pub fn rho(mut self, r: f32) -> Optimizer {
        if let Rule::RmsProp { rho, .. } = &mut self.rule {
            *rho = r;
        }
        self
    }

    /// Centered RMSprop.
    pub fn centered(mut self, yes: bool) -> Optimizer {
        if let Rule::RmsProp { centered, .. } = &mut self.rule {
            *centered = yes;
        }
        self
    }

    /// Decoupled weight decay (None disables it).
    pub fn weight_decay(mut self, wd: Option<f32>) -> Optimizer {
        self.weight_decay = wd;
        self
    }

    /// Keras's `clipnorm`: clips each gradient to L2 norm `c`.
    pub fn clipnorm(mut self, c: f32) -> Optimizer {
        self.clip = Some(Clip::Norm(c));
        self
    }

    /// Keras's `clipvalue`: clamps every gradient element to `[-c, c]`.
    pub fn clipvalue(mut self, c: f32) -> Optimizer {
        self.clip = Some(Clip::Value(c));
        self
    }

    /// Keras's `global_clipnorm`: scales all gradients so that their joint L2 norm is at most `c`.
    pub fn global_clipnorm(mut self, c: f32) -> Optimizer {
        self.clip = Some(Clip::GlobalNorm(c));
        self
    }

    /// Replaces the learning rate with a schedule.
    pub fn learning_rate(mut self, lr: LearningRate) -> Optimizer {
        self.learning_rate = lr;
        self
    }

    /// The rule's short name, used in state-variable names (`sgd`, `adam`, `rmsprop`).
    pub fn kind(&self) -> &'static str {
        match self.rule {
            Rule::Sgd { .. } => "sgd",
            Rule::Adam { .. } => "adam",
            Rule::RmsProp { .. } => "rmsprop",
        }
    }

    /// Keras's default name of the optimiser (`SGD`, `adam`, `rmsprop`): the
    /// scope of its variables in a Keras model (`adam/iteration`).
    pub fn keras_name(&self) -> &'static str {
        match self.rule {
            Rule::Sgd { .. } => "SGD",
            Rule::Adam { .. } => "adam",
            Rule::RmsProp { .. } => "rmsprop",
        }
    }

    /// The slots the rule keeps per trainable variable, in [`SLOT_NAMES`]
    /// order: SGD `momentum` (momentum > 0); Adam `momentum`, `velocity`
    /// (and `velocity_hat` with AMSGrad); RMSprop `velocity` (and `momentum`
    /// with momentum > 0, `average_gradient` when centered).
    pub fn slots(&self) -> Vec<&'static str> {
        let has = |slot: &str| match &self.rule {
            Rule::Sgd { momentum, .. } => slot == "momentum" && *momentum != 0.0,
            Rule::Adam { amsgrad, .. } => {
                matches!(slot, "momentum" | "velocity") || (*amsgrad && slot == "velocity_hat")
            }
            Rule::RmsProp {
                momentum, centered, ..
            } => {
                slot == "velocity"
                    || (*momentum > 0.0 && slot == "momentum")
                    || (*centered && slot == "average_gradient")
            }
        };
        SLOT_NAMES.into_iter().filter(|s| has(s)).collect()
    }

    /// The variable-store name of slot `slot` of parameter `param`
    /// (`optimizer/adam/momentum/dense_1/kernel`).
    pub fn slot_variable(&self, slot: &str, param: &str) -> String {
        format!("optimizer/{}/{slot}/{param}", self.kind())
    }

    /// Keras's path of slot `slot` of parameter `param`: the parameter's
    /// path with `/` replaced by `_`, then `_<slot>`, in the optimiser's
    /// scope (`adam/dense_1_kernel_momentum`).
    pub fn keras_slot_name(&self, slot: &str, param: &str) -> String {
        format!("{}/{}_{slot}", self.keras_name(), param.replace('/', "_"))
    }

    /// Keras's path of the optimiser's own variable `name` (`iteration`,
    /// `learning_rate`): `adam/iteration`.
    pub fn keras_variable(&self, name: &str) -> String {
        format!("{}/{name}", self.keras_name())
    }

    /// Emits the update of every `(param name, value, gradient)` into `b`:
    /// outputs `update/<param>` and `update/<state var>`. `lr` and
    /// `iteration` are `f32[]` tensors (normally the `lr` and `iteration` inputs).
    pub fn emit_updates(
        &self,
        b: &Builder,
        vars: &[(String, Tensor, Tensor)],
        lr: &Tensor,
        iteration: &Tensor,
    ) -> Result<()> {
        let prev_role = b.set_role(Role::Update);
        let prev_scope = b.set_scope("optimizer");
        let state = |slot: &str, name: &str, ty: &TensorType| -> Tensor {
            b.state(&self.slot_variable(slot, name), ty.clone())
        };
        let set = |slot: &str, name: &str, t: &Tensor| {
            b.output(
                &lossgraph_ir::names::update(&self.slot_variable(slot, name)),
                t,
            );
        };
        // Bias corrections shared by every variable (Adam).
        let t = iteration + 1.0;
        for (name, w, g) in vars {
            let mut w = w.clone();
            if let Some(wd) = self.weight_decay {
                w = &w - &w * wd * lr;
            }
            let new_w = match &self.rule {
                Rule::Sgd { momentum, nesterov } => {
                    if *momentum == 0.0 {
                        &w - g * lr
                    } else {
                        let m = state("momentum", name, w.ty());
                        let m_new = (g * lr).neg() + &m * *momentum;
                        set("momentum", name, &m_new);
                        if *nesterov {
                            &w + ((g * lr).neg() + &m_new * *momentum)
                        } else {
                            &w + &m_new
                        }
                    }
                }
                Rule::Adam {
                    beta_1,
                    beta_2,
                    epsilon,
                    amsgrad,
                } => {
                    let b1p = (&t * (*beta_1 as f64).ln() as f32).exp();
                    let b2p = (&t * (*beta_2 as f64).ln() as f32).exp();
                    let alpha = lr * (1.0 - &b2p).sqrt() / (1.0 - &b1p);
                    let m = state("momentum", name, w.ty());
                    let v = state("velocity", name, w.ty());
                    let m_new = &m + (g - &m) * (1.0 - *beta_1);
                    let v_new = &v + (g * g - &v) * (1.0 - *beta_2);
                    set("momentum", name, &m_new);
                    set("velocity", name, &v_new);
                    let denom_v = if *amsgrad {
                        let vh = state("velocity_hat", name, w.ty());
                        let vh_new = vh.maximum(&v_new);
                        set("velocity_hat", name, &vh_new);
                        vh_new
                    } else {
                        v_new
                    };
                    &w - (&m_new * &alpha) / (denom_v.sqrt() + *epsilon)
                }
                Rule::RmsProp {
                    rho,
                    momentum,
                    epsilon,
                    centered,
                } => {
                    let v = state("velocity", name, w.ty());
                    let v_new = &v * *rho + g * g * (1.0 - *rho);
                    set("velocity", name, &v_new);
                    let denom = if *centered {
                        let a = state("average_gradient", name, w.ty());
                        let a_new = &a * *rho + g * (1.0 - *rho);
                        set("average_gradient", name, &a_new);
                        &v_new - &a_new * &a_new + *epsilon
                    } else {
                        &v_new + *epsilon
                    };
                    let inc = g * lr / denom.sqrt();
                    if *momentum > 0.0 {
                        let mo = state("momentum", name, w.ty());
                        let mo_new = &mo * *momentum + &inc;
                        set("momentum", name, &mo_new);
                        &w - &mo_new
                    } else {
                        &w - &inc
                    }
                }
            };
            b.output(&lossgraph_ir::names::update(name), &new_w);
        }
        b.set_role(prev_role);
        b.set_scope(prev_scope);
        b.check().map_err(|e| Error::Compile {
            purpose: "optimizer update".into(),
            message: e.to_string(),
        })
    }
}
