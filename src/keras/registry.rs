//! The Keras layer classes lossgraph imports, one [`LayerClass`] entry each:
//! how a call's inputs are counted, how the layer's `config` is parsed into
//! a [`LayerKind`] and how the front-end layer is built from it. Adding a
//! Keras layer is one entry in [`LAYER_CLASSES`] (plus its [`LayerKind`]
//! variant); the parser ([`super::spec`]) and the builder ([`super::build`])
//! only look classes up here.
//!
//! Parse functions read every key they understand from the layer's config;
//! the caller rejects the keys they leave (naming the layer and the key).

use super::build::{activation, initializer, regularizer};
use super::error::{KerasError, Result};
use super::json::{show, Cfg};
use super::spec::{self, check_dtype, common, feature_dims, InitializerSpec, LayerKind};
use crate::layers;
use crate::Layer;
use serde_json::{json, Value};

/// How many input tensors one call of a layer takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// A model input: never called.
    Input,
    /// Exactly one tensor.
    One,
    /// Two or more tensors (merge layers; not usable in a Sequential model).
    Merge,
}

/// One importable Keras layer class.
pub struct LayerClass {
    /// The Keras class name (`"Dense"`).
    pub class: &'static str,
    /// The inputs of one call.
    pub arity: Arity,
    /// Parses the layer's `config` (its `name` already taken).
    pub(crate) parse: fn(&mut Cfg<'_>) -> Result<LayerKind>,
    /// The front-end layer named `name` for a kind `parse` returned; `None`
    /// when `kind` is another class's (an importer bug, reported by
    /// [`build_layer`]).
    pub(crate) build: fn(&LayerKind, &str) -> Option<Box<dyn Layer>>,
}

/// Every importable layer class.
pub const LAYER_CLASSES: [LayerClass; 9] = [
    LayerClass {
        class: "InputLayer",
        arity: Arity::Input,
        parse: parse_input,
        build: |k, n| match k {
            LayerKind::Input { shape } => Some(Box::new(layers::Input::new(shape).name(n))),
            _ => None,
        },
    },
    LayerClass {
        class: "Dense",
        arity: Arity::One,
        parse: parse_dense,
        build: build_dense,
    },
    LayerClass {
        class: "Activation",
        arity: Arity::One,
        parse: |cfg| {
            common(cfg)?;
            Ok(LayerKind::Activation {
                activation: spec::activation(cfg, "activation", false)?,
            })
        },
        build: |k, n| match k {
            LayerKind::Activation { activation: a } => {
                Some(Box::new(layers::Activation::new(activation(*a)).name(n)))
            }
            _ => None,
        },
    },
    LayerClass {
        class: "Dropout",
        arity: Arity::One,
        parse: |cfg| {
            common(cfg)?;
            let rate = cfg.f32("rate")?;
            if !(0.0..1.0).contains(&rate) {
                return Err(cfg.err("rate", format!("must be in [0, 1), got {rate}")));
            }
            let seed = cfg.seed("seed")?;
            cfg.only("noise_shape", &[Value::Null])?;
            Ok(LayerKind::Dropout { rate, seed })
        },
        build: |k, n| match k {
            LayerKind::Dropout { rate, seed } => {
                let mut d = layers::Dropout::new(*rate).name(n);
                if let Some(s) = seed {
                    d = d.seed(*s as u32);
                }
                Some(Box::new(d))
            }
            _ => None,
        },
    },
    LayerClass {
        class: "ActivityRegularization",
        arity: Arity::One,
        parse: |cfg| {
            common(cfg)?;
            let l1 = cfg.f32_or("l1", Some(0.0))?;
            let l2 = cfg.f32_or("l2", Some(0.0))?;
            Ok(LayerKind::ActivityRegularization { l1, l2 })
        },
        build: |k, n| match k {
            LayerKind::ActivityRegularization { l1, l2 } => Some(Box::new(
                layers::ActivityRegularization::new(*l1, *l2).name(n),
            )),
            _ => None,
        },
    },
    LayerClass {
        class: "Add",
        arity: Arity::Merge,
        parse: |cfg| {
            common(cfg)?;
            Ok(LayerKind::Add)
        },
        build: |k, n| match k {
            LayerKind::Add => Some(Box::new(layers::Add::new().name(n))),
            _ => None,
        },
    },
    LayerClass {
        class: "Concatenate",
        arity: Arity::Merge,
        parse: |cfg| {
            common(cfg)?;
            let axis = match cfg.get("axis") {
                None => -1,
                Some(_) => cfg.i64("axis")?,
            };
            Ok(LayerKind::Concatenate { axis })
        },
        build: |k, n| match k {
            LayerKind::Concatenate { axis } => Some(Box::new(
                layers::Concatenate::new().axis(*axis as isize).name(n),
            )),
            _ => None,
        },
    },
    LayerClass {
        class: "Flatten",
        arity: Arity::One,
        parse: |cfg| {
            common(cfg)?;
            cfg.only("data_format", &[json!("channels_last"), Value::Null])?;
            Ok(LayerKind::Flatten)
        },
        build: |k, n| match k {
            LayerKind::Flatten => Some(Box::new(layers::Flatten::new().name(n))),
            _ => None,
        },
    },
    LayerClass {
        class: "Reshape",
        arity: Arity::One,
        parse: parse_reshape,
        build: |k, n| match k {
            LayerKind::Reshape { target_shape } => {
                let t: Vec<isize> = target_shape.iter().map(|&d| d as isize).collect();
                Some(Box::new(layers::Reshape::new(&t).name(n)))
            }
            _ => None,
        },
    },
];

/// The entry of Keras class `class`.
pub fn lookup(class: &str) -> Option<&'static LayerClass> {
    LAYER_CLASSES.iter().find(|c| c.class == class)
}

/// The entry of `class`, or an error naming layer `name` and listing the
/// supported classes.
pub fn entry(class: &str, name: &str) -> Result<&'static LayerClass> {
    lookup(class).ok_or_else(|| {
        let known: Vec<&str> = LAYER_CLASSES.iter().map(|c| c.class).collect();
        KerasError::Layer {
            class: class.to_string(),
            name: name.to_string(),
            key: "class_name".into(),
            message: format!(
                "unsupported layer class '{class}' (lossgraph imports {})",
                known.join(", ")
            ),
        }
    })
}

/// The front-end layer of class `class` named `name` with description `kind`.
pub fn build_layer(class: &str, name: &str, kind: &LayerKind) -> Result<Box<dyn Layer>> {
    (entry(class, name)?.build)(kind, name).ok_or_else(|| KerasError::Layer {
        class: class.to_string(),
        name: name.to_string(),
        key: "class_name".into(),
        message: format!("the layer's description is not a {class}: {kind:?}"),
    })
}

fn parse_input(cfg: &mut Cfg<'_>) -> Result<LayerKind> {
    cfg.only("sparse", &[json!(false)])?;
    cfg.only("ragged", &[json!(false)])?;
    cfg.only("optional", &[json!(false)])?;
    check_dtype(cfg, "dtype")?;
    let shape = match (cfg.get("batch_shape"), cfg.get("batch_input_shape")) {
        (Some(s), _) | (None, Some(s)) => {
            let a = s.as_array().ok_or_else(|| {
                cfg.err("batch_shape", format!("expected a list, got {}", show(s)))
            })?;
            feature_dims(a).map_err(|m| cfg.err("batch_shape", m))?
        }
        (None, None) => match cfg.get("shape") {
            Some(s) => {
                let mut a = vec![Value::Null];
                a.extend(s.as_array().cloned().unwrap_or_default());
                feature_dims(&a).map_err(|m| cfg.err("shape", m))?
            }
            None => return Err(cfg.err("batch_shape", "missing required config key")),
        },
    };
    Ok(LayerKind::Input { shape })
}

fn parse_dense(cfg: &mut Cfg<'_>) -> Result<LayerKind> {
    common(cfg)?;
    let units = cfg.usize("units")?;
    if units == 0 {
        return Err(cfg.err("units", "must be positive"));
    }
    let activation = spec::activation(cfg, "activation", true)?;
    let use_bias = cfg.bool_or("use_bias", true)?;
    let kernel_initializer = spec::initializer(
        cfg,
        "kernel_initializer",
        InitializerSpec::GlorotUniform { seed: None },
    )?;
    let bias_initializer = spec::initializer(cfg, "bias_initializer", InitializerSpec::Zeros)?;
    let kernel_regularizer = spec::regularizer(cfg, "kernel_regularizer")?;
    let bias_regularizer = spec::regularizer(cfg, "bias_regularizer")?;
    let activity_regularizer = spec::regularizer(cfg, "activity_regularizer")?;
    for key in [
        "kernel_constraint",
        "bias_constraint",
        "quantization_config",
        "lora_rank",
        "lora_alpha",
    ] {
        cfg.only(key, &[Value::Null])?;
    }
    Ok(LayerKind::Dense {
        units,
        activation,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        activity_regularizer,
    })
}

fn build_dense(kind: &LayerKind, name: &str) -> Option<Box<dyn Layer>> {
    let LayerKind::Dense {
        units,
        activation: a,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        activity_regularizer,
    } = kind
    else {
        return None;
    };
    let mut d = layers::Dense::new(*units)
        .activation(activation(*a))
        .use_bias(*use_bias)
        .kernel_initializer(initializer(*kernel_initializer))
        .bias_initializer(initializer(*bias_initializer))
        .name(name);
    if let Some(r) = kernel_regularizer {
        d = d.kernel_regularizer(regularizer(*r));
    }
    if let Some(r) = bias_regularizer {
        d = d.bias_regularizer(regularizer(*r));
    }
    if let Some(r) = activity_regularizer {
        d = d.activity_regularizer(regularizer(*r));
    }
    Some(Box::new(d))
}

fn parse_reshape(cfg: &mut Cfg<'_>) -> Result<LayerKind> {
    common(cfg)?;
    let v = cfg.req("target_shape")?;
    let target_shape = v
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|d| d.as_i64().filter(|&d| d > 0 || d == -1))
                .collect::<Option<Vec<_>>>()
        })
        .filter(|t| t.iter().filter(|&&d| d == -1).count() <= 1)
        .ok_or_else(|| {
            cfg.err(
                "target_shape",
                format!(
                    "expected a list of positive sizes (at most one -1), got {}",
                    show(v)
                ),
            )
        })?;
    Ok(LayerKind::Reshape { target_shape })
}
