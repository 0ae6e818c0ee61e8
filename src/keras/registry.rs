//! The Keras layer classes lossgraph imports, one [`LayerClass`] entry each:
//! how a call's inputs are counted, how the layer's `config` is parsed into
//! a [`LayerKind`] and how the front-end layer is built from it. Adding a
//! Keras layer is one entry in [`LAYER_CLASSES`] (plus its [`LayerKind`]
//! variant); the parser ([`super::spec`]) and the builder ([`super::build`])
//! only look classes up here.
//!
//! Parse functions read every key they understand from the layer's config;
//! the caller rejects the keys they leave (naming the layer and the key).

use super::build::{activation, initializer, kernel_keys, regularizer};
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

impl LayerClass {
    /// A class whose call takes one tensor.
    pub(crate) const fn one_input(
        class: &'static str,
        parse: fn(&mut Cfg<'_>) -> Result<LayerKind>,
        build: fn(&LayerKind, &str) -> Option<Box<dyn Layer>>,
    ) -> LayerClass {
        LayerClass {
            class,
            arity: Arity::One,
            parse,
            build,
        }
    }
}

/// Every importable layer class.
pub const LAYER_CLASSES: &[LayerClass] = &[
    LayerClass {
        class: "InputLayer",
        arity: Arity::Input,
        parse: parse_input,
        build: |k, n| match k {
            LayerKind::Input { shape, dtype } => {
                Some(Box::new(layers::Input::new(shape).dtype(*dtype).name(n)))
            }
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
            let seed = cfg.seed32("seed")?;
            cfg.only("noise_shape", &[Value::Null])?;
            Ok(LayerKind::Dropout { rate, seed })
        },
        build: |k, n| match k {
            LayerKind::Dropout { rate, seed } => {
                let mut d = layers::Dropout::new(*rate).name(n);
                if let Some(s) = seed {
                    d = d.seed(*s);
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
    LayerClass {
        class: "BatchNormalization",
        arity: Arity::One,
        parse: parse_batch_normalization,
        build: build_batch_normalization,
    },
    LayerClass {
        class: "LayerNormalization",
        arity: Arity::One,
        parse: parse_layer_normalization,
        build: build_layer_normalization,
    },
    LayerClass {
        class: "GroupNormalization",
        arity: Arity::One,
        parse: parse_group_normalization,
        build: build_group_normalization,
    },
    LayerClass {
        class: "UnitNormalization",
        arity: Arity::One,
        parse: |cfg| {
            common(cfg)?;
            Ok(LayerKind::UnitNormalization {
                axis: axis_list(cfg, "axis")?,
            })
        },
        build: |k, n| match k {
            LayerKind::UnitNormalization { axis } => Some(Box::new(
                layers::UnitNormalization::new().axis(&isizes(axis)).name(n),
            )),
            _ => None,
        },
    },
    LayerClass {
        class: "Embedding",
        arity: Arity::One,
        parse: parse_embedding,
        build: build_embedding,
    },
    LayerClass {
        class: "GaussianNoise",
        arity: Arity::One,
        parse: |cfg| parse_noise(cfg, "stddev", false),
        build: |k, n| {
            noise(
                k,
                |a| layers::GaussianNoise::new(a).name(n),
                |l, s| l.seed(s),
            )
        },
    },
    LayerClass {
        class: "GaussianDropout",
        arity: Arity::One,
        parse: |cfg| parse_noise(cfg, "rate", true),
        build: |k, n| {
            noise(
                k,
                |a| layers::GaussianDropout::new(a).name(n),
                |l, s| l.seed(s),
            )
        },
    },
    LayerClass {
        class: "SpatialDropout1D",
        arity: Arity::One,
        parse: |cfg| parse_noise(cfg, "rate", true),
        build: |k, n| {
            noise(
                k,
                |a| layers::SpatialDropout::new_1d(a).name(n),
                |l, s| l.seed(s),
            )
        },
    },
    LayerClass {
        class: "SpatialDropout2D",
        arity: Arity::One,
        parse: |cfg| {
            cfg.only("data_format", &[json!("channels_last"), Value::Null])?;
            parse_noise(cfg, "rate", true)
        },
        build: |k, n| {
            noise(
                k,
                |a| layers::SpatialDropout::new_2d(a).name(n),
                |l, s| l.seed(s),
            )
        },
    },
    LayerClass {
        class: "AlphaDropout",
        arity: Arity::One,
        parse: |cfg| {
            cfg.only("noise_shape", &[Value::Null])?;
            parse_noise(cfg, "rate", true)
        },
        build: |k, n| {
            noise(
                k,
                |a| layers::AlphaDropout::new(a).name(n),
                |l, s| l.seed(s),
            )
        },
    },
];

/// Every importable class: [`LAYER_CLASSES`], then the convolution and
/// pooling classes of [`super::spatial::SPATIAL_CLASSES`], then the padding,
/// cropping and upsampling classes of [`super::reshaping::RESHAPING_CLASSES`].
pub fn classes() -> impl Iterator<Item = &'static LayerClass> {
    LAYER_CLASSES
        .iter()
        .chain(super::spatial::SPATIAL_CLASSES.iter())
        .chain(super::reshaping::RESHAPING_CLASSES.iter())
}

/// The entry of Keras class `class`.
pub fn lookup(class: &str) -> Option<&'static LayerClass> {
    classes().find(|c| c.class == class)
}

/// The entry of `class`, or an error naming layer `name` and listing the
/// supported classes.
pub fn entry(class: &str, name: &str) -> Result<&'static LayerClass> {
    lookup(class).ok_or_else(|| {
        let known: Vec<&str> = classes().map(|c| c.class).collect();
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
    // Token ids are int32; everything else is float32.
    let dtype = if cfg.get("dtype") == Some(&json!("int32")) {
        lossgraph_ir::DType::I32
    } else {
        check_dtype(cfg, "dtype")?;
        lossgraph_ir::DType::F32
    };
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
    Ok(LayerKind::Input { shape, dtype })
}

fn parse_dense(cfg: &mut Cfg<'_>) -> Result<LayerKind> {
    common(cfg)?;
    let units = cfg.usize("units")?;
    if units == 0 {
        return Err(cfg.err("units", "must be positive"));
    }
    let spec::KernelKeys {
        activation,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        activity_regularizer,
    } = spec::kernel_keys(cfg)?;
    cfg.only("quantization_config", &[Value::Null])?;
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
    Some(Box::new(kernel_keys!(
        layers::Dense::new(*units),
        name,
        a,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        activity_regularizer
    )))
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

/// Keys no imported layer supports in a non-default form (constraints).
fn no_constraints(cfg: &mut Cfg<'_>, keys: &[&str]) -> Result<()> {
    for key in keys {
        cfg.only(key, &[Value::Null])?;
    }
    Ok(())
}

/// An axis list (`[-1]`); a bare integer is accepted as a one-axis list.
fn axis_list(cfg: &mut Cfg<'_>, key: &str) -> Result<Vec<i64>> {
    let v = cfg.req(key)?;
    match v {
        Value::Number(n) => n.as_i64().map(|a| vec![a]),
        Value::Array(a) if !a.is_empty() => a.iter().map(Value::as_i64).collect(),
        _ => None,
    }
    .ok_or_else(|| {
        cfg.err(
            key,
            format!("expected an axis or a list of axes, got {}", show(v)),
        )
    })
}

fn isizes(v: &[i64]) -> Vec<isize> {
    v.iter().map(|&a| a as isize).collect()
}

fn parse_batch_normalization(cfg: &mut Cfg<'_>) -> Result<LayerKind> {
    common(cfg)?;
    let axis = match cfg.get("axis") {
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_i64().ok_or_else(|| {
            cfg.err(
                "axis",
                format!("expected an integer axis, got {}", show(&a[0])),
            )
        })?,
        Some(_) => cfg.i64("axis")?,
        None => -1,
    };
    let momentum = cfg.f32_or("momentum", Some(0.99))?;
    let epsilon = cfg.f32_or("epsilon", Some(1e-3))?;
    let center = cfg.bool_or("center", true)?;
    let scale = cfg.bool_or("scale", true)?;
    let beta_initializer = spec::initializer(cfg, "beta_initializer", InitializerSpec::Zeros)?;
    let gamma_initializer = spec::initializer(cfg, "gamma_initializer", InitializerSpec::Ones)?;
    let moving_mean_initializer =
        spec::initializer(cfg, "moving_mean_initializer", InitializerSpec::Zeros)?;
    let moving_variance_initializer =
        spec::initializer(cfg, "moving_variance_initializer", InitializerSpec::Ones)?;
    let beta_regularizer = spec::regularizer(cfg, "beta_regularizer")?;
    let gamma_regularizer = spec::regularizer(cfg, "gamma_regularizer")?;
    no_constraints(
        cfg,
        &["beta_constraint", "gamma_constraint", "renorm_clipping"],
    )?;
    let synchronized = cfg.bool_or("synchronized", false)?;
    cfg.only("renorm", &[json!(false)])?;
    cfg.ignore(&["renorm_momentum"]);
    Ok(LayerKind::BatchNormalization {
        axis,
        momentum,
        epsilon,
        center,
        scale,
        beta_initializer,
        gamma_initializer,
        moving_mean_initializer,
        moving_variance_initializer,
        beta_regularizer,
        gamma_regularizer,
        synchronized,
    })
}

fn build_batch_normalization(kind: &LayerKind, name: &str) -> Option<Box<dyn Layer>> {
    let LayerKind::BatchNormalization {
        axis,
        momentum,
        epsilon,
        center,
        scale,
        beta_initializer,
        gamma_initializer,
        moving_mean_initializer,
        moving_variance_initializer,
        beta_regularizer,
        gamma_regularizer,
        synchronized,
    } = kind
    else {
        return None;
    };
    let mut l = layers::BatchNormalization::new()
        .synchronized(*synchronized)
        .axis(*axis as isize)
        .momentum(*momentum)
        .epsilon(*epsilon)
        .center(*center)
        .scale(*scale)
        .beta_initializer(initializer(*beta_initializer))
        .gamma_initializer(initializer(*gamma_initializer))
        .moving_mean_initializer(initializer(*moving_mean_initializer))
        .moving_variance_initializer(initializer(*moving_variance_initializer))
        .name(name);
    if let Some(r) = beta_regularizer {
        l = l.beta_regularizer(regularizer(*r));
    }
    if let Some(r) = gamma_regularizer {
        l = l.gamma_regularizer(regularizer(*r));
    }
    Some(Box::new(l))
}

fn parse_layer_normalization(cfg: &mut Cfg<'_>) -> Result<LayerKind> {
    common(cfg)?;
    let axis = match cfg.get("axis") {
        None => vec![-1],
        Some(_) => axis_list(cfg, "axis")?,
    };
    let epsilon = cfg.f32_or("epsilon", Some(1e-3))?;
    let center = cfg.bool_or("center", true)?;
    let scale = cfg.bool_or("scale", true)?;
    let rms_scaling = cfg.bool_or("rms_scaling", false)?;
    let beta_initializer = spec::initializer(cfg, "beta_initializer", InitializerSpec::Zeros)?;
    let gamma_initializer = spec::initializer(cfg, "gamma_initializer", InitializerSpec::Ones)?;
    let beta_regularizer = spec::regularizer(cfg, "beta_regularizer")?;
    let gamma_regularizer = spec::regularizer(cfg, "gamma_regularizer")?;
    no_constraints(cfg, &["beta_constraint", "gamma_constraint"])?;
    Ok(LayerKind::LayerNormalization {
        axis,
        epsilon,
        center,
        scale,
        rms_scaling,
        beta_initializer,
        gamma_initializer,
        beta_regularizer,
        gamma_regularizer,
    })
}

fn build_layer_normalization(kind: &LayerKind, name: &str) -> Option<Box<dyn Layer>> {
    let LayerKind::LayerNormalization {
        axis,
        epsilon,
        center,
        scale,
        rms_scaling,
        beta_initializer,
        gamma_initializer,
        beta_regularizer,
        gamma_regularizer,
    } = kind
    else {
        return None;
    };
    let mut l = layers::LayerNormalization::new()
        .axis(&isizes(axis))
        .epsilon(*epsilon)
        .center(*center)
        .scale(*scale)
        .rms_scaling(*rms_scaling)
        .beta_initializer(initializer(*beta_initializer))
        .gamma_initializer(initializer(*gamma_initializer))
        .name(name);
    if let Some(r) = beta_regularizer {
        l = l.beta_regularizer(regularizer(*r));
    }
    if let Some(r) = gamma_regularizer {
        l = l.gamma_regularizer(regularizer(*r));
    }
    Some(Box::new(l))
}

fn parse_group_normalization(cfg: &mut Cfg<'_>) -> Result<LayerKind> {
    common(cfg)?;
    let groups = match cfg.get("groups") {
        None => 32,
        Some(_) => cfg.usize("groups")?,
    };
    let axis = match cfg.get("axis") {
        None => -1,
        Some(_) => cfg.i64("axis")?,
    };
    let epsilon = cfg.f32_or("epsilon", Some(1e-3))?;
    let center = cfg.bool_or("center", true)?;
    let scale = cfg.bool_or("scale", true)?;
    let beta_initializer = spec::initializer(cfg, "beta_initializer", InitializerSpec::Zeros)?;
    let gamma_initializer = spec::initializer(cfg, "gamma_initializer", InitializerSpec::Ones)?;
    let beta_regularizer = spec::regularizer(cfg, "beta_regularizer")?;
    let gamma_regularizer = spec::regularizer(cfg, "gamma_regularizer")?;
    no_constraints(cfg, &["beta_constraint", "gamma_constraint"])?;
    Ok(LayerKind::GroupNormalization {
        groups,
        axis,
        epsilon,
        center,
        scale,
        beta_initializer,
        gamma_initializer,
        beta_regularizer,
        gamma_regularizer,
    })
}

fn build_group_normalization(kind: &LayerKind, name: &str) -> Option<Box<dyn Layer>> {
    let LayerKind::GroupNormalization {
        groups,
        axis,
        epsilon,
        center,
        scale,
        beta_initializer,
        gamma_initializer,
        beta_regularizer,
        gamma_regularizer,
    } = kind
    else {
        return None;
    };
    let mut l = layers::GroupNormalization::new(*groups)
        .axis(*axis as isize)
        .epsilon(*epsilon)
        .center(*center)
        .scale(*scale)
        .beta_initializer(initializer(*beta_initializer))
        .gamma_initializer(initializer(*gamma_initializer))
        .name(name);
    if let Some(r) = beta_regularizer {
        l = l.beta_regularizer(regularizer(*r));
    }
    if let Some(r) = gamma_regularizer {
        l = l.gamma_regularizer(regularizer(*r));
    }
    Some(Box::new(l))
}

fn parse_embedding(cfg: &mut Cfg<'_>) -> Result<LayerKind> {
    common(cfg)?;
    let input_dim = cfg.usize("input_dim")?;
    let output_dim = cfg.usize("output_dim")?;
    if input_dim == 0 || output_dim == 0 {
        return Err(cfg.err("input_dim", "input_dim and output_dim must be positive"));
    }
    let embeddings_initializer = spec::initializer(
        cfg,
        "embeddings_initializer",
        InitializerSpec::RandomUniform {
            minval: -0.05,
            maxval: 0.05,
            seed: None,
        },
    )?;
    let embeddings_regularizer = spec::regularizer(cfg, "embeddings_regularizer")?;
    no_constraints(
        cfg,
        &[
            "activity_regularizer",
            "embeddings_constraint",
            "quantization_config",
        ],
    )?;
    cfg.only("mask_zero", &[json!(false)])?;
    cfg.only("sparse", &[json!(false)])?;
    cfg.only("input_length", &[Value::Null])?;
    cfg.only("lora_rank", &[Value::Null])?;
    Ok(LayerKind::Embedding {
        input_dim,
        output_dim,
        embeddings_initializer,
        embeddings_regularizer,
    })
}

fn build_embedding(kind: &LayerKind, name: &str) -> Option<Box<dyn Layer>> {
    let LayerKind::Embedding {
        input_dim,
        output_dim,
        embeddings_initializer,
        embeddings_regularizer,
    } = kind
    else {
        return None;
    };
    let mut l = layers::Embedding::new(*input_dim, *output_dim)
        .embeddings_initializer(initializer(*embeddings_initializer))
        .name(name);
    if let Some(r) = embeddings_regularizer {
        l = l.embeddings_regularizer(regularizer(*r));
    }
    Some(Box::new(l))
}

/// A noise layer's config: its amount (`stddev` or `rate`, a rate in
/// `[0, 1)`) and `seed`.
fn parse_noise(cfg: &mut Cfg<'_>, key: &str, rate: bool) -> Result<LayerKind> {
    common(cfg)?;
    let amount = cfg.f32(key)?;
    let ok = if rate {
        (0.0..1.0).contains(&amount)
    } else {
        amount >= 0.0
    };
    if !ok {
        let want = if rate { "in [0, 1)" } else { "≥ 0" };
        return Err(cfg.err(key, format!("must be {want}, got {amount}")));
    }
    let seed = cfg.seed32("seed")?;
    Ok(LayerKind::Noise { amount, seed })
}

/// Builds a noise layer from [`LayerKind::Noise`]: `make(amount)`, then
/// `with_seed` when the JSON fixes a seed.
fn noise<L: Layer + 'static>(
    kind: &LayerKind,
    make: impl Fn(f32) -> L,
    with_seed: impl Fn(L, u32) -> L,
) -> Option<Box<dyn Layer>> {
    let LayerKind::Noise { amount, seed } = kind else {
        return None;
    };
    let l = make(*amount);
    Some(Box::new(match seed {
        Some(s) => with_seed(l, *s),
        None => l,
    }))
}
