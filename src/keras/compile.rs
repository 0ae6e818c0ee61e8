//! Compile settings: losses, loss weights and optimizers, from a case's
//! `case.json` (`keras.*.serialize` forms) or from short command-line names.

use super::error::Result;
use super::json::{show, Cfg, Ctx};
use serde_json::{json, Value};

/// A Keras loss function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    MeanSquaredError,
    MeanAbsoluteError,
    /// Huber with delta 1 unless given (`LossSpec::delta`).
    Huber,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
}

/// A loss with its settings (reduction is always `sum_over_batch_size`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossSpec {
    pub kind: LossKind,
    /// For the crossentropies: the prediction is logits, not probabilities.
    pub from_logits: bool,
    /// Huber's delta (1.0 by default; unused by other losses).
    pub delta: f32,
}

impl LossSpec {
    /// A loss with default settings.
    pub fn new(kind: LossKind) -> LossSpec {
        LossSpec {
            kind,
            from_logits: false,
            delta: 1.0,
        }
    }

    /// Parses a Keras loss name (`mse`, `mean_squared_error`, `huber`,
    /// `binary_crossentropy`, …); a `:logits` suffix sets `from_logits`.
    pub fn from_name(s: &str) -> Option<LossSpec> {
        let (base, logits) = match s.strip_suffix(":logits") {
            Some(b) => (b, true),
            None => (s, false),
        };
        let kind = match base {
            "mse" | "mean_squared_error" | "MeanSquaredError" => LossKind::MeanSquaredError,
            "mae" | "mean_absolute_error" | "MeanAbsoluteError" => LossKind::MeanAbsoluteError,
            "huber" | "huber_loss" | "Huber" => LossKind::Huber,
            "binary_crossentropy" | "bce" | "BinaryCrossentropy" => LossKind::BinaryCrossentropy,
            "categorical_crossentropy" | "cce" | "CategoricalCrossentropy" => {
                LossKind::CategoricalCrossentropy
            }
            "sparse_categorical_crossentropy" | "scce" | "SparseCategoricalCrossentropy" => {
                LossKind::SparseCategoricalCrossentropy
            }
            _ => return None,
        };
        let is_ce = matches!(
            kind,
            LossKind::BinaryCrossentropy
                | LossKind::CategoricalCrossentropy
                | LossKind::SparseCategoricalCrossentropy
        );
        if logits && !is_ce {
            return None;
        }
        Some(LossSpec {
            kind,
            from_logits: logits,
            delta: 1.0,
        })
    }

    /// Keras's function name (`mean_squared_error`, …).
    pub fn name(&self) -> &'static str {
        match self.kind {
            LossKind::MeanSquaredError => "mean_squared_error",
            LossKind::MeanAbsoluteError => "mean_absolute_error",
            LossKind::Huber => "huber",
            LossKind::BinaryCrossentropy => "binary_crossentropy",
            LossKind::CategoricalCrossentropy => "categorical_crossentropy",
            LossKind::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
        }
    }

    /// Parses a serialized loss: a name string or a `keras.losses.serialize` object.
    pub(crate) fn from_value(v: &Value, ctx: &Ctx, path: &str) -> Result<LossSpec> {
        if let Value::String(s) = v {
            return LossSpec::from_name(s).ok_or_else(|| {
                ctx.err(path, format!("unsupported loss '{s}' (supported: mse, mae, huber, binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy)"))
            });
        }
        let mut obj = Cfg::new(v, ctx, &format!("{path}."))?;
        obj.ignore(&["module", "registered_name"]);
        let class = obj.str("class_name")?.to_string();
        let empty = json!({});
        let config = obj.get("config").unwrap_or(&empty);
        obj.finish()?;
        let kind = match class.as_str() {
            "MeanSquaredError" => LossKind::MeanSquaredError,
            "MeanAbsoluteError" => LossKind::MeanAbsoluteError,
            "Huber" => LossKind::Huber,
            "BinaryCrossentropy" => LossKind::BinaryCrossentropy,
            "CategoricalCrossentropy" => LossKind::CategoricalCrossentropy,
            "SparseCategoricalCrossentropy" => LossKind::SparseCategoricalCrossentropy,
            other => {
                return Err(ctx.err(
                    &format!("{path}.class_name"),
                    format!("unsupported loss class '{other}'"),
                ))
            }
        };
        let mut c = Cfg::new(config, ctx, &format!("{path}.config."))?;
        c.ignore(&["name"]);
        c.only("reduction", &[json!("sum_over_batch_size"), Value::Null])?;
        c.only("dtype", &[Value::Null, json!("float32")])?;
        let mut spec = LossSpec::new(kind);
        match kind {
            LossKind::BinaryCrossentropy
            | LossKind::CategoricalCrossentropy
            | LossKind::SparseCategoricalCrossentropy => {
                spec.from_logits = c.bool_or("from_logits", false)?;
                c.only("axis", &[json!(-1)])?;
                if kind == LossKind::SparseCategoricalCrossentropy {
                    c.only("ignore_class", &[Value::Null])?;
                } else {
                    c.only("label_smoothing", &[json!(0.0), json!(0)])?;
                }
            }
            LossKind::Huber => spec.delta = c.f32_or("delta", Some(1.0))?,
            _ => {}
        }
        c.finish()?;
        Ok(spec)
    }
}

/// An optimizer with Keras's hyper-parameters (float32, as Keras stores them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerSpec {
    Sgd {
        learning_rate: f32,
        momentum: f32,
        nesterov: bool,
    },
    Adam {
        learning_rate: f32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        amsgrad: bool,
    },
    AdamW {
        learning_rate: f32,
        weight_decay: f32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        amsgrad: bool,
    },
    RmsProp {
        learning_rate: f32,
        rho: f32,
        momentum: f32,
        epsilon: f32,
        centered: bool,
    },
}

impl OptimizerSpec {
    /// Parses `NAME[:LR]` (`sgd`, `adam`, `adamw`, `rmsprop`) with Keras's defaults.
    pub fn from_arg(s: &str) -> std::result::Result<OptimizerSpec, String> {
        let (name, lr) = match s.split_once(':') {
            Some((n, lr)) => {
                let lr: f32 = lr
                    .parse()
                    .ok()
                    .filter(|x: &f32| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| format!("invalid learning rate '{lr}' in '{s}'"))?;
                (n, Some(lr))
            }
            None => (s, None),
        };
        let mut spec = match name.to_ascii_lowercase().as_str() {
            "sgd" => OptimizerSpec::Sgd {
                learning_rate: 0.01,
                momentum: 0.0,
                nesterov: false,
            },
            "adam" => OptimizerSpec::Adam {
                learning_rate: 0.001,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
                amsgrad: false,
            },
            "adamw" => OptimizerSpec::AdamW {
                learning_rate: 0.001,
                weight_decay: 0.004,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
                amsgrad: false,
            },
            "rmsprop" => OptimizerSpec::RmsProp {
                learning_rate: 0.001,
                rho: 0.9,
                momentum: 0.0,
                epsilon: 1e-7,
                centered: false,
            },
            other => {
                return Err(format!(
                    "unknown optimizer '{other}' (supported: sgd, adam, adamw, rmsprop)"
                ))
            }
        };
        if let Some(lr) = lr {
            spec.set_learning_rate(lr);
        }
        Ok(spec)
    }

    /// The learning rate.
    pub fn learning_rate(&self) -> f32 {
        match *self {
            OptimizerSpec::Sgd { learning_rate, .. }
            | OptimizerSpec::Adam { learning_rate, .. }
            | OptimizerSpec::AdamW { learning_rate, .. }
            | OptimizerSpec::RmsProp { learning_rate, .. } => learning_rate,
        }
    }

    /// Replaces the learning rate.
    pub fn set_learning_rate(&mut self, lr: f32) {
        match self {
            OptimizerSpec::Sgd { learning_rate, .. }
            | OptimizerSpec::Adam { learning_rate, .. }
            | OptimizerSpec::AdamW { learning_rate, .. }
            | OptimizerSpec::RmsProp { learning_rate, .. } => *learning_rate = lr,
        }
    }

    /// Keras's class name.
    pub fn class_name(&self) -> &'static str {
        match self {
            OptimizerSpec::Sgd { .. } => "SGD",
            OptimizerSpec::Adam { .. } => "Adam",
            OptimizerSpec::AdamW { .. } => "AdamW",
            OptimizerSpec::RmsProp { .. } => "RMSprop",
        }
    }

    /// Parses `keras.optimizers.serialize(opt)`.
    pub(crate) fn from_value(v: &Value, ctx: &Ctx, path: &str) -> Result<OptimizerSpec> {
        if let Value::String(s) = v {
            return OptimizerSpec::from_arg(s).map_err(|m| ctx.err(path, m));
        }
        let mut obj = Cfg::new(v, ctx, &format!("{path}."))?;
        obj.ignore(&["module", "registered_name"]);
        let class = obj.str("class_name")?.to_string();
        let empty = json!({});
        let config = obj.get("config").unwrap_or(&empty);
        obj.finish()?;
        let mut c = Cfg::new(config, ctx, &format!("{path}.config."))?;
        c.ignore(&["name", "ema_momentum", "ema_overwrite_frequency"]);
        for key in [
            "clipnorm",
            "global_clipnorm",
            "clipvalue",
            "loss_scale_factor",
            "gradient_accumulation_steps",
        ] {
            c.only(key, &[Value::Null])?;
        }
        c.only("use_ema", &[json!(false)])?;
        let spec = match class.as_str() {
            "SGD" => {
                c.only("weight_decay", &[Value::Null])?;
                OptimizerSpec::Sgd {
                    learning_rate: c.f32_or("learning_rate", Some(0.01))?,
                    momentum: c.f32_or("momentum", Some(0.0))?,
                    nesterov: c.bool_or("nesterov", false)?,
                }
            }
            "Adam" | "AdamW" => {
                let adamw = class == "AdamW";
                if !adamw {
                    c.only("weight_decay", &[Value::Null])?;
                }
                let learning_rate = c.f32_or("learning_rate", Some(0.001))?;
                let beta_1 = c.f32_or("beta_1", Some(0.9))?;
                let beta_2 = c.f32_or("beta_2", Some(0.999))?;
                let epsilon = c.f32_or("epsilon", Some(1e-7))?;
                let amsgrad = c.bool_or("amsgrad", false)?;
                if adamw {
                    OptimizerSpec::AdamW {
                        learning_rate,
                        weight_decay: c.f32_or("weight_decay", Some(0.004))?,
                        beta_1,
                        beta_2,
                        epsilon,
                        amsgrad,
                    }
                } else {
                    OptimizerSpec::Adam {
                        learning_rate,
                        beta_1,
                        beta_2,
                        epsilon,
                        amsgrad,
                    }
                }
            }
            "RMSprop" => {
                c.only("weight_decay", &[Value::Null])?;
                OptimizerSpec::RmsProp {
                    learning_rate: c.f32_or("learning_rate", Some(0.001))?,
                    rho: c.f32_or("rho", Some(0.9))?,
                    momentum: c.f32_or("momentum", Some(0.0))?,
                    epsilon: c.f32_or("epsilon", Some(1e-7))?,
                    centered: c.bool_or("centered", false)?,
                }
            }
            other => {
                return Err(ctx.err(
                    &format!("{path}.class_name"),
                    format!(
                        "unsupported optimizer '{other}' (supported: SGD, Adam, AdamW, RMSprop)"
                    ),
                ))
            }
        };
        c.finish()?;
        Ok(spec)
    }
}

/// What `model.compile` was given: one loss per output (in output order),
/// the loss weights, and the optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct CompileSpec {
    /// `(output name, loss, loss weight)` in the model's output order.
    pub losses: Vec<(String, LossSpec, f32)>,
    pub optimizer: OptimizerSpec,
}

impl CompileSpec {
    /// Parses a case's `compile` object for a model with `outputs` (output layer names, in order).
    pub fn from_value(v: &Value, outputs: &[String], context: &str) -> Result<CompileSpec> {
        let ctx = Ctx::Other(context.to_string());
        let mut c = Cfg::new(v, &ctx, "compile.")?;
        let opt_v = c.req("optimizer")?;
        let loss_v = c.req("loss")?;
        let weights_v = c.get("loss_weights").unwrap_or(&Value::Null);
        c.ignore(&[
            "metrics",
            "weighted_metrics",
            "run_eagerly",
            "steps_per_execution",
            "jit_compile",
            "auto_scale_loss",
        ]);
        c.finish()?;
        let optimizer = OptimizerSpec::from_value(opt_v, &ctx, "compile.optimizer")?;

        // One loss for every output, or a dict keyed by output name (no class_name).
        let per_output: Vec<LossSpec> = match loss_v {
            Value::Object(m) if !m.contains_key("class_name") => {
                if let Some(k) = m.keys().find(|k| !outputs.contains(k)) {
                    return Err(ctx.err(
                        &format!("compile.loss.{k}"),
                        format!(
                            "no model output is named '{k}' (outputs: {})",
                            outputs.join(", ")
                        ),
                    ));
                }
                outputs
                    .iter()
                    .map(|o| {
                        let lv = m.get(o).ok_or_else(|| {
                            ctx.err("compile.loss", format!("no loss for output '{o}'"))
                        })?;
                        LossSpec::from_value(lv, &ctx, &format!("compile.loss.{o}"))
                    })
                    .collect::<Result<_>>()?
            }
            Value::Array(list) => {
                if list.len() != outputs.len() {
                    return Err(ctx.err(
                        "compile.loss",
                        format!("{} losses for {} outputs", list.len(), outputs.len()),
                    ));
                }
                list.iter()
                    .enumerate()
                    .map(|(i, lv)| LossSpec::from_value(lv, &ctx, &format!("compile.loss[{i}]")))
                    .collect::<Result<_>>()?
            }
            single => {
                let l = LossSpec::from_value(single, &ctx, "compile.loss")?;
                vec![l; outputs.len()]
            }
        };
        let weights: Vec<f32> = match weights_v {
            Value::Null => vec![1.0; outputs.len()],
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| !outputs.contains(k)) {
                    return Err(ctx.err(
                        &format!("compile.loss_weights.{k}"),
                        format!("no model output is named '{k}'"),
                    ));
                }
                outputs
                    .iter()
                    .map(|o| match m.get(o) {
                        None => Ok(1.0),
                        Some(w) => w.as_f64().map(|w| w as f32).ok_or_else(|| {
                            ctx.err(
                                &format!("compile.loss_weights.{o}"),
                                format!("expected a number, got {}", show(w)),
                            )
                        }),
                    })
                    .collect::<Result<_>>()?
            }
            Value::Array(list) if list.len() == outputs.len() => list
                .iter()
                .map(|w| {
                    w.as_f64().map(|w| w as f32).ok_or_else(|| {
                        ctx.err(
                            "compile.loss_weights",
                            format!("expected numbers, got {}", show(w)),
                        )
                    })
                })
                .collect::<Result<_>>()?,
            Value::Number(n) => vec![n.as_f64().unwrap_or(1.0) as f32; outputs.len()],
            other => {
                return Err(ctx.err(
                    "compile.loss_weights",
                    format!(
                        "expected null, a number, a list or a dict, got {}",
                        show(other)
                    ),
                ))
            }
        };
        Ok(CompileSpec {
            losses: outputs
                .iter()
                .cloned()
                .zip(per_output)
                .zip(weights)
                .map(|((o, l), w)| (o, l, w))
                .collect(),
            optimizer,
        })
    }
}
