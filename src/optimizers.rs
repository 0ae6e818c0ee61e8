//! Optimisers with Keras 3's exact update formulas and defaults, emitted as
//! IR (role `update`, scope `optimizer`) so the compiler fuses them with the
//! rest of the step. The learning rate and the iteration count are runtime
//! `f32[]` inputs (`lr`, `iteration`), so schedules need no recompilation.
//!
//! Per variable, in Keras's order: decoupled weight decay
//! `w ← w - w·wd·lr` (AdamW; every variable, biases included), then the
//! update step. State variables are named `optimizer/<kind>/<slot>/<param>`
//! and start at zero; each new value is the output `update/<name>`.

use crate::error::{Error, Result};
use lossgraph_ir::{Builder, Role, Tensor, TensorType};
use std::fmt;
use std::rc::Rc;

/// Name of the `f32[]` input holding the number of completed steps (Keras's `iterations`).
pub use lossgraph_ir::names::ITERATION_INPUT;
/// Name of the `f32[]` learning-rate input of training graphs.
pub use lossgraph_ir::names::LR_INPUT;

/// A learning rate: constant or a function of the iteration count.
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
            LearningRate::Schedule(_) => f.write_str("schedule"),
        }
    }
}

impl LearningRate {
    /// The rate used at step `iteration` (0-based).
    pub fn at(&self, iteration: u64) -> f32 {
        match self {
            LearningRate::Constant(v) => *v,
            LearningRate::ExponentialDecay {
                initial,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = iteration as f64 / (*decay_steps).max(1) as f64;
                if *staircase {
                    p = p.floor();
                }
                (*initial as f64 * (*decay_rate as f64).powf(p)) as f32
            }
            LearningRate::Schedule(f) => f(iteration),
        }
    }
}

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
        let kind = self.kind();
        let state = |slot: &str, name: &str, ty: &TensorType| -> Tensor {
            b.state(&format!("optimizer/{kind}/{slot}/{name}"), ty.clone())
        };
        let set = |slot: &str, name: &str, t: &Tensor| {
            b.output(
                &lossgraph_ir::names::update(&format!("optimizer/{kind}/{slot}/{name}")),
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
                    let m = state("m", name, w.ty());
                    let v = state("v", name, w.ty());
                    let m_new = &m + (g - &m) * (1.0 - *beta_1);
                    let v_new = &v + (g * g - &v) * (1.0 - *beta_2);
                    set("m", name, &m_new);
                    set("v", name, &v_new);
                    let denom_v = if *amsgrad {
                        let vh = state("vhat", name, w.ty());
                        let vh_new = vh.maximum(&v_new);
                        set("vhat", name, &vh_new);
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
                        let a = state("average_grad", name, w.ty());
                        let a_new = &a * *rho + g * (1.0 - *rho);
                        set("average_grad", name, &a_new);
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
