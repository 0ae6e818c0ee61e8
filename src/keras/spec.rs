//! `model.to_json()` → a typed, validated description of the model
//! ([`ModelSpec`]). Parsing is strict: every key of every layer config is
//! either understood, accepted as harmless metadata, or reported as
//! unsupported with the layer's class, its name and the key.

use super::error::{KerasError, Result};
use super::json::{show, Cfg, Ctx};
use super::registry::{self, Arity};
use serde_json::{json, Value};
use std::collections::HashMap;

/// An activation function by its Keras name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationSpec {
    Linear,
    Relu,
    Tanh,
    Sigmoid,
    Softmax,
    /// The exact erf form (Keras's string `"gelu"`).
    Gelu,
}

impl ActivationSpec {
    /// Parses a Keras activation name.
    pub fn from_name(s: &str) -> Option<ActivationSpec> {
        Some(match s {
            "linear" | "identity" => ActivationSpec::Linear,
            "relu" => ActivationSpec::Relu,
            "tanh" => ActivationSpec::Tanh,
            "sigmoid" => ActivationSpec::Sigmoid,
            "softmax" => ActivationSpec::Softmax,
            "gelu" => ActivationSpec::Gelu,
            _ => return None,
        })
    }

    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            ActivationSpec::Linear => "linear",
            ActivationSpec::Relu => "relu",
            ActivationSpec::Tanh => "tanh",
            ActivationSpec::Sigmoid => "sigmoid",
            ActivationSpec::Softmax => "softmax",
            ActivationSpec::Gelu => "gelu",
        }
    }
}

/// A weight or activity regulariser; factors are float32 as Keras stores them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RegularizerSpec {
    /// `l1 · Σ|x|`.
    L1(f32),
    /// `l2 · Σx²` (no ½).
    L2(f32),
    /// The sum of both; a zero factor drops its term.
    L1L2 { l1: f32, l2: f32 },
}

/// A weight initialiser (used only when no weights file supplies the values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InitializerSpec {
    GlorotUniform {
        seed: Option<u64>,
    },
    HeNormal {
        seed: Option<u64>,
    },
    RandomNormal {
        mean: f32,
        stddev: f32,
        seed: Option<u64>,
    },
    RandomUniform {
        minval: f32,
        maxval: f32,
        seed: Option<u64>,
    },
    Zeros,
    Ones,
}

/// What a layer is, with its typed configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// A model input; `shape` excludes the batch axis; `dtype` is `F32`,
    /// or `I32` for token ids.
    Input {
        shape: Vec<usize>,
        dtype: lossgraph_ir::DType,
    },
    Dense {
        units: usize,
        activation: ActivationSpec,
        use_bias: bool,
        kernel_initializer: InitializerSpec,
        bias_initializer: InitializerSpec,
        kernel_regularizer: Option<RegularizerSpec>,
        bias_regularizer: Option<RegularizerSpec>,
        /// Applied to the output after the activation, divided by the batch size.
        activity_regularizer: Option<RegularizerSpec>,
    },
    Activation {
        activation: ActivationSpec,
    },
    /// Training-only inverted dropout.
    Dropout {
        rate: f32,
        seed: Option<u32>,
    },
    /// Identity plus an activity loss `L1L2(l1, l2)` on its output.
    ActivityRegularization {
        l1: f32,
        l2: f32,
    },
    Add,
    /// Joins along `axis` (negative counts from the end).
    Concatenate {
        axis: i64,
    },
    Flatten,
    /// `target_shape` excludes the batch axis; one entry may be -1.
    Reshape {
        target_shape: Vec<i64>,
    },
    /// A convolution or pooling layer ([`super::spatial`]).
    Spatial(super::spatial::SpatialKind),
    /// A zero-padding, cropping or upsampling layer ([`super::reshaping`]).
    Resize(super::reshaping::ResizeKind),
    /// Batch statistics in training, moving statistics at inference.
    BatchNormalization {
        axis: i64,
        momentum: f32,
        epsilon: f32,
        center: bool,
        scale: bool,
        beta_initializer: InitializerSpec,
        gamma_initializer: InitializerSpec,
        moving_mean_initializer: InitializerSpec,
        moving_variance_initializer: InitializerSpec,
        beta_regularizer: Option<RegularizerSpec>,
        gamma_regularizer: Option<RegularizerSpec>,
        /// Statistics over the global batch of a data-parallel step.
        synchronized: bool,
    },
    /// Per-sample normalization over `axis` (a list in the JSON).
    LayerNormalization {
        axis: Vec<i64>,
        epsilon: f32,
        center: bool,
        scale: bool,
        rms_scaling: bool,
        beta_initializer: InitializerSpec,
        gamma_initializer: InitializerSpec,
        beta_regularizer: Option<RegularizerSpec>,
        gamma_regularizer: Option<RegularizerSpec>,
    },
    /// Per-sample normalization over groups of channels.
    GroupNormalization {
        groups: usize,
        axis: i64,
        epsilon: f32,
        center: bool,
        scale: bool,
        beta_initializer: InitializerSpec,
        gamma_initializer: InitializerSpec,
        beta_regularizer: Option<RegularizerSpec>,
        gamma_regularizer: Option<RegularizerSpec>,
    },
    /// Unit L2 norm over `axis`.
    UnitNormalization {
        axis: Vec<i64>,
    },
    /// A table lookup of int32 ids.
    Embedding {
        input_dim: usize,
        output_dim: usize,
        embeddings_initializer: InitializerSpec,
        embeddings_regularizer: Option<RegularizerSpec>,
    },
    /// Training-only noise: `GaussianNoise` (`amount` = stddev),
    /// `GaussianDropout`, `SpatialDropout1D/2D`, `AlphaDropout` (`amount` = rate).
    Noise {
        amount: f32,
        seed: Option<u32>,
    },
}

/// A reference to output `tensor` of call `node` of layer `layer` (Keras's `keras_history`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorRef {
    pub layer: String,
    pub node: usize,
    pub tensor: usize,
}

/// One layer of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// Keras's layer name (`dense_1`), used for weight names and outputs.
    pub name: String,
    /// The Keras class name (`Dense`).
    pub class: String,
    pub kind: LayerKind,
    /// Keras's `trainable` (false freezes the layer's weights; a frozen
    /// BatchNormalization normalizes with its moving statistics).
    pub trainable: bool,
    /// One entry per call of the layer, listing its input tensors in order.
    /// Empty for inputs. Sequential models get one synthesized call per layer.
    pub calls: Vec<Vec<TensorRef>>,
}

/// Whether the JSON described a `Sequential` or a `Functional` model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Sequential,
    Functional,
}

/// A validated model description: layers in Keras's `model.layers` order
/// (inputs included), every reference resolvable, calls in dependency order.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub kind: ModelKind,
    pub layers: Vec<LayerSpec>,
    /// The model inputs (input layers), in order.
    pub inputs: Vec<TensorRef>,
    /// The model outputs, in order.
    pub outputs: Vec<TensorRef>,
}

impl ModelSpec {
    /// The layer named `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerSpec> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Names of the output layers, in output order.
    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|t| t.layer.clone()).collect()
    }

    /// Names of the input layers, in input order.
    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|t| t.layer.clone()).collect()
    }

    /// Parses the text of `model.to_json()`; `path` names the file in errors.
    pub fn from_json_str(text: &str, path: &str) -> Result<ModelSpec> {
        let v: Value = serde_json::from_str(text).map_err(|e| KerasError::Json {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        ModelSpec::from_value(&v)
    }

    /// Reads and parses a `model.json` file.
    pub fn from_file(path: &std::path::Path) -> Result<ModelSpec> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| KerasError::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
        ModelSpec::from_json_str(&text, &p)
    }

    /// Parses an already-decoded `model.to_json()` value. Nested models are
    /// inlined first ([`super::nested::flatten`]).
    pub fn from_value(v: &Value) -> Result<ModelSpec> {
        let flat = super::nested::flatten(v)?;
        let v = &flat;
        let top_ctx = Ctx::Other("model".into());
        let mut top = Cfg::new(v, &top_ctx, "")?;
        let class = top.str("class_name")?.to_string();
        top.ignore(&[
            "module",
            "registered_name",
            "build_config",
            "compile_config",
        ]);
        let config = top.req("config")?;
        top.finish()?;
        let spec = match class.as_str() {
            "Sequential" => parse_sequential(config)?,
            "Functional" | "Model" => parse_functional(config)?,
            other => {
                return Err(KerasError::invalid(
                    "model: class_name",
                    format!("unsupported model class '{other}' (lossgraph imports Sequential and Functional)"),
                ))
            }
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks references, call counts and that every call's inputs are
    /// produced by earlier calls (so building in list order is possible).
    fn validate(&self) -> Result<()> {
        let ctx = format!("model '{}'", self.name);
        let mut calls: HashMap<&str, usize> = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            if self.layers[..i].iter().any(|o| o.name == l.name) {
                return Err(KerasError::invalid(
                    &ctx,
                    format!("two layers are named '{}'", l.name),
                ));
            }
            let n = if matches!(l.kind, LayerKind::Input { .. }) {
                1
            } else {
                l.calls.len()
            };
            calls.insert(l.name.as_str(), n);
        }
        let check = |r: &TensorRef, what: &str| -> Result<()> {
            match calls.get(r.layer.as_str()) {
                None => Err(KerasError::invalid(
                    &ctx,
                    format!("{what} refers to unknown layer '{}'", r.layer),
                )),
                Some(&n) if r.node >= n => Err(KerasError::invalid(
                    &ctx,
                    format!(
                        "{what} refers to call {} of layer '{}', which is called {n} time(s)",
                        r.node, r.layer
                    ),
                )),
                Some(_) => Ok(()),
            }
        };
        for r in &self.inputs {
            check(r, "input_layers")?;
            match self.layer(&r.layer).map(|l| &l.kind) {
                Some(LayerKind::Input { .. }) => {}
                _ => {
                    return Err(KerasError::invalid(
                        &ctx,
                        format!(
                            "input_layers names '{}', which is not an InputLayer",
                            r.layer
                        ),
                    ))
                }
            }
        }
        for r in &self.outputs {
            check(r, "output_layers")?;
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err(KerasError::invalid(
                &ctx,
                "the model has no inputs or no outputs",
            ));
        }
        for l in &self.layers {
            if let LayerKind::Input { .. } = l.kind {
                if !self.inputs.iter().any(|r| r.layer == l.name) {
                    return Err(KerasError::invalid(
                        &ctx,
                        format!("InputLayer '{}' is not a model input", l.name),
                    ));
                }
                continue;
            }
            for (ci, args) in l.calls.iter().enumerate() {
                for r in args {
                    check(r, &format!("{} '{}' call {ci}", l.class, l.name))?;
                }
                let arity_ok = match registry::entry(&l.class, &l.name)?.arity {
                    Arity::Merge => args.len() >= 2,
                    Arity::One => args.len() == 1,
                    Arity::Input => args.is_empty(),
                };
                if !arity_ok {
                    return Err(KerasError::Layer {
                        class: l.class.clone(),
                        name: l.name.clone(),
                        key: format!("inbound_nodes[{ci}].args"),
                        message: format!("wrong number of input tensors ({})", args.len()),
                    });
                }
            }
        }
        // Dependency order: a call may use only calls that can be computed first.
        let order = self.call_order()?;
        let _ = order;
        Ok(())
    }

    /// Every (layer index, call index) of non-input layers in an order where
    /// each call's inputs are available: Keras's list order when it already
    /// is one, otherwise a topological order. Fails on a cycle.
    pub fn call_order(&self) -> Result<Vec<(usize, usize)>> {
        let mut done: std::collections::HashSet<(String, usize)> =
            self.inputs.iter().map(|r| (r.layer.clone(), 0)).collect();
        let mut pending: Vec<(usize, usize)> = Vec::new();
        for (li, l) in self.layers.iter().enumerate() {
            if !matches!(l.kind, LayerKind::Input { .. }) {
                for ci in 0..l.calls.len() {
                    pending.push((li, ci));
                }
            }
        }
        let mut order = Vec::with_capacity(pending.len());
        while !pending.is_empty() {
            let pos = pending.iter().position(|&(li, ci)| {
                self.layers[li].calls[ci]
                    .iter()
                    .all(|r| done.contains(&(r.layer.clone(), r.node)))
            });
            let Some(pos) = pos else {
                let (li, _) = pending[0];
                return Err(KerasError::invalid(
                    format!("model '{}'", self.name),
                    format!(
                        "layer '{}' depends on itself (cycle in inbound_nodes)",
                        self.layers[li].name
                    ),
                ));
            };
            let (li, ci) = pending.remove(pos);
            done.insert((self.layers[li].name.clone(), ci));
            order.push((li, ci));
        }
        Ok(order)
    }
}

fn model_name(cfg: &mut Cfg<'_>) -> Result<String> {
    match cfg.get("name") {
        None | Some(Value::Null) => Ok("model".into()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(cfg.err("name", format!("expected a string, got {}", show(v)))),
    }
}

fn parse_sequential(config: &Value) -> Result<ModelSpec> {
    let ctx = Ctx::Other("Sequential model config".into());
    let mut cfg = Cfg::new(config, &ctx, "")?;
    let name = model_name(&mut cfg)?;
    cfg.only("trainable", &[json!(true)])?;
    check_dtype(&mut cfg, "dtype")?;
    let build_input_shape = cfg.get("build_input_shape");
    let layers_v = cfg.req("layers")?;
    cfg.finish()?;
    let items = layers_v
        .as_array()
        .ok_or_else(|| ctx.err("layers", "expected a list of layers"))?;
    let mut layers = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (l, inbound) = parse_layer(item, i, false)?;
        debug_assert!(inbound.is_none());
        layers.push(l);
    }
    // Keras writes the InputLayer first; older files may rely on build_input_shape.
    if !matches!(
        layers.first().map(|l| &l.kind),
        Some(LayerKind::Input { .. })
    ) {
        let shape = build_input_shape
            .and_then(|v| v.as_array())
            .ok_or_else(|| {
                ctx.err(
                    "layers",
                    "the first layer is not an InputLayer and there is no build_input_shape",
                )
            })?;
        let dims = feature_dims(shape).map_err(|m| ctx.err("build_input_shape", m))?;
        layers.insert(
            0,
            LayerSpec {
                name: "input_layer".into(),
                class: "InputLayer".into(),
                kind: LayerKind::Input {
                    shape: dims,
                    dtype: lossgraph_ir::DType::F32,
                },
                trainable: true,
                calls: vec![],
            },
        );
    }
    let mut prev = TensorRef {
        layer: layers[0].name.clone(),
        node: 0,
        tensor: 0,
    };
    let inputs = vec![prev.clone()];
    for l in layers.iter_mut().skip(1) {
        if matches!(l.kind, LayerKind::Input { .. }) {
            return Err(KerasError::Layer {
                class: l.class.clone(),
                name: l.name.clone(),
                key: "class_name".into(),
                message: "an InputLayer may only come first in a Sequential model".into(),
            });
        }
        if registry::entry(&l.class, &l.name)?.arity == Arity::Merge {
            return Err(KerasError::Layer {
                class: l.class.clone(),
                name: l.name.clone(),
                key: "class_name".into(),
                message:
                    "a merge layer needs several inputs and cannot be used in a Sequential model"
                        .into(),
            });
        }
        l.calls = vec![vec![prev.clone()]];
        prev = TensorRef {
            layer: l.name.clone(),
            node: 0,
            tensor: 0,
        };
    }
    Ok(ModelSpec {
        name,
        kind: ModelKind::Sequential,
        layers,
        inputs,
        outputs: vec![prev],
    })
}

fn parse_functional(config: &Value) -> Result<ModelSpec> {
    let ctx = Ctx::Other("Functional model config".into());
    let mut cfg = Cfg::new(config, &ctx, "")?;
    let name = model_name(&mut cfg)?;
    cfg.only("trainable", &[json!(true)])?;
    check_dtype(&mut cfg, "dtype")?;
    let layers_v = cfg.req("layers")?;
    let inputs_v = cfg.req("input_layers")?;
    let outputs_v = cfg.req("output_layers")?;
    cfg.finish()?;
    let items = layers_v
        .as_array()
        .ok_or_else(|| ctx.err("layers", "expected a list of layers"))?;
    let mut layers = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (mut l, inbound) = parse_layer(item, i, true)?;
        l.calls = inbound.unwrap_or_default();
        layers.push(l);
    }
    let inputs = triples(inputs_v).map_err(|m| ctx.err("input_layers", m))?;
    let outputs = triples(outputs_v).map_err(|m| ctx.err("output_layers", m))?;
    Ok(ModelSpec {
        name,
        kind: ModelKind::Functional,
        layers,
        inputs,
        outputs,
    })
}

/// `["x", 0, 0]` or `[["x", 0, 0], …]` (Keras writes the bare triple for one entry).
fn triples(v: &Value) -> std::result::Result<Vec<TensorRef>, String> {
    let arr = v
        .as_array()
        .ok_or_else(|| format!("expected a list, got {}", show(v)))?;
    if arr.first().is_some_and(|x| x.is_string()) {
        return Ok(vec![triple(v)?]);
    }
    arr.iter().map(triple).collect()
}

fn triple(v: &Value) -> std::result::Result<TensorRef, String> {
    match v.as_array().map(|a| a.as_slice()) {
        Some([Value::String(l), n, t]) if n.is_u64() && t.is_u64() => Ok(TensorRef {
            layer: l.clone(),
            node: n.as_u64().unwrap_or(0) as usize,
            tensor: t.as_u64().unwrap_or(0) as usize,
        }),
        _ => Err(format!(
            "expected a [layer_name, node_index, tensor_index] triple, got {}",
            show(v)
        )),
    }
}

/// `[null, d1, d2…]` → `[d1, d2…]`.
pub(super) fn feature_dims(v: &[Value]) -> std::result::Result<Vec<usize>, String> {
    if v.len() < 2 {
        return Err(format!(
            "expected [batch, features...], got a shape of rank {}",
            v.len()
        ));
    }
    v[1..]
        .iter()
        .map(|d| {
            d.as_u64()
                .filter(|&d| d > 0)
                .map(|d| d as usize)
                .ok_or_else(|| {
                    format!(
                        "every non-batch dimension must be a positive integer, got {}",
                        show(d)
                    )
                })
        })
        .collect()
}

/// Accepts a float32 dtype (string or DTypePolicy object); rejects any other.
pub(super) fn check_dtype(cfg: &mut Cfg<'_>, key: &str) -> Result<()> {
    let Some(v) = cfg.get(key) else {
        return Ok(());
    };
    let name = match v {
        Value::Null => return Ok(()),
        Value::String(s) => Some(s.as_str()),
        Value::Object(m) => m
            .get("config")
            .and_then(|c| c.get("name"))
            .and_then(|n| n.as_str()),
        _ => None,
    };
    match name {
        Some("float32") => Ok(()),
        _ => Err(cfg.err(
            key,
            format!(
                "unsupported dtype {} (lossgraph computes in float32)",
                show(v)
            ),
        )),
    }
}

/// Parses one layer object; in functional models also returns its inbound calls.
fn parse_layer(
    item: &Value,
    index: usize,
    functional: bool,
) -> Result<(LayerSpec, Option<Vec<Vec<TensorRef>>>)> {
    let pos_ctx = Ctx::Other(format!("layers[{index}]"));
    let mut obj = Cfg::new(item, &pos_ctx, "")?;
    let class = obj.str("class_name")?.to_string();
    let config = obj.req("config")?;
    let name = config
        .get("name")
        .and_then(|n| n.as_str())
        .or_else(|| item.get("name").and_then(|n| n.as_str()))
        .map(str::to_string)
        .ok_or_else(|| pos_ctx.err("config.name", format!("{class} layer has no name")))?;
    let ctx = Ctx::Layer {
        class: class.clone(),
        name: name.clone(),
    };
    // Object-level keys: re-read under the layer's context so errors name it.
    let mut obj = Cfg::new(item, &ctx, "")?;
    obj.ignore(&[
        "class_name",
        "config",
        "module",
        "registered_name",
        "build_config",
    ]);
    match obj.get("name") {
        None => {}
        Some(Value::String(s)) if *s == name => {}
        Some(v) => {
            return Err(obj.err(
                "name",
                format!("differs from config.name '{name}': {}", show(v)),
            ))
        }
    }
    let inbound = if functional {
        let v = obj.get("inbound_nodes");
        Some(match v {
            None => Vec::new(),
            Some(v) => parse_inbound(v, &ctx)?,
        })
    } else {
        None
    };
    obj.finish()?;

    let entry = registry::entry(&class, &name)?;
    let mut cfg = Cfg::new(config, &ctx, "")?;
    cfg.ignore(&["name"]);
    let trainable = cfg.bool_or("trainable", true)?;
    let kind = (entry.parse)(&mut cfg)?;
    cfg.finish()?;
    Ok((
        LayerSpec {
            name,
            class,
            kind,
            trainable,
            calls: Vec::new(),
        },
        inbound,
    ))
}

/// Keys every layer config may carry besides `trainable` (read by the
/// caller for every layer): a float32 dtype.
pub(super) fn common(cfg: &mut Cfg<'_>) -> Result<()> {
    check_dtype(cfg, "dtype")
}

/// The keys Dense and the convolutions share, parsed once.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelKeys {
    pub activation: ActivationSpec,
    pub use_bias: bool,
    pub kernel_initializer: InitializerSpec,
    pub bias_initializer: InitializerSpec,
    pub kernel_regularizer: Option<RegularizerSpec>,
    pub bias_regularizer: Option<RegularizerSpec>,
    pub activity_regularizer: Option<RegularizerSpec>,
}

/// Parses [`KernelKeys`] with Keras's defaults (linear, bias, glorot_uniform
/// kernel, zero bias); the constraint and LoRA keys must be null.
pub(super) fn kernel_keys(cfg: &mut Cfg<'_>) -> Result<KernelKeys> {
    let keys = KernelKeys {
        activation: activation(cfg, "activation", true)?,
        use_bias: cfg.bool_or("use_bias", true)?,
        kernel_initializer: initializer(
            cfg,
            "kernel_initializer",
            InitializerSpec::GlorotUniform { seed: None },
        )?,
        bias_initializer: initializer(cfg, "bias_initializer", InitializerSpec::Zeros)?,
        kernel_regularizer: regularizer(cfg, "kernel_regularizer")?,
        bias_regularizer: regularizer(cfg, "bias_regularizer")?,
        activity_regularizer: regularizer(cfg, "activity_regularizer")?,
    };
    for key in [
        "kernel_constraint",
        "bias_constraint",
        "lora_rank",
        "lora_alpha",
    ] {
        cfg.only(key, &[Value::Null])?;
    }
    Ok(keys)
}

pub(super) fn activation(cfg: &mut Cfg<'_>, key: &str, optional: bool) -> Result<ActivationSpec> {
    match cfg.get(key) {
        None | Some(Value::Null) if optional => Ok(ActivationSpec::Linear),
        Some(Value::String(s)) => ActivationSpec::from_name(s).ok_or_else(|| {
            cfg.err(
                key,
                format!("unsupported activation '{s}' (supported: linear, relu, tanh, sigmoid, softmax, gelu)"),
            )
        }),
        Some(v) => Err(cfg.err(key, format!("unsupported activation {}", show(v)))),
        None => Err(cfg.err(key, "missing required config key")),
    }
}

/// `null` or `{"class_name": "L1"|"L2"|"L1L2", "config": {...}}` (or the strings `l1`, `l2`, `l1_l2`).
pub(super) fn regularizer(cfg: &mut Cfg<'_>, key: &str) -> Result<Option<RegularizerSpec>> {
    let v = match cfg.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    if let Value::String(s) = v {
        return match s.as_str() {
            "l1" => Ok(Some(RegularizerSpec::L1(0.01))),
            "l2" => Ok(Some(RegularizerSpec::L2(0.01))),
            "l1_l2" => Ok(Some(RegularizerSpec::L1L2 { l1: 0.01, l2: 0.01 })),
            _ => Err(cfg.err(
                key,
                format!("unsupported regularizer '{s}' (supported: L1, L2, L1L2)"),
            )),
        };
    }
    parse_regularizer(v, cfg.ctx(), &cfg.path(key)).map(Some)
}

/// Parses a serialized regulariser object; `path` names it in errors.
pub(crate) fn parse_regularizer(v: &Value, ctx: &Ctx, path: &str) -> Result<RegularizerSpec> {
    let mut obj = Cfg::new(v, ctx, &format!("{path}."))?;
    obj.ignore(&["module", "registered_name"]);
    let class = obj.str("class_name")?.to_string();
    let empty = json!({});
    let config = obj.get("config").unwrap_or(&empty);
    obj.finish()?;
    let mut c = Cfg::new(config, ctx, &format!("{path}.config."))?;
    let r = match class.as_str() {
        "L1" => RegularizerSpec::L1(c.f32_or("l1", Some(0.01))?),
        "L2" => RegularizerSpec::L2(c.f32_or("l2", Some(0.01))?),
        "L1L2" => RegularizerSpec::L1L2 {
            l1: c.f32_or("l1", Some(0.0))?,
            l2: c.f32_or("l2", Some(0.0))?,
        },
        other => {
            return Err(ctx.err(
                &format!("{path}.class_name"),
                format!("unsupported regularizer '{other}' (supported: L1, L2, L1L2)"),
            ))
        }
    };
    c.finish()?;
    Ok(r)
}

pub(super) fn initializer(
    cfg: &mut Cfg<'_>,
    key: &str,
    default: InitializerSpec,
) -> Result<InitializerSpec> {
    let v = match cfg.get(key) {
        None | Some(Value::Null) => return Ok(default),
        Some(v) => v,
    };
    let path = cfg.path(key);
    let ctx = cfg.ctx().clone();
    let (class, config) = match v {
        Value::String(s) => (s.clone(), json!({})),
        _ => {
            let mut obj = Cfg::new(v, &ctx, &format!("{path}."))?;
            obj.ignore(&["module", "registered_name"]);
            let class = obj.str("class_name")?.to_string();
            let config = obj.get("config").cloned().unwrap_or_else(|| json!({}));
            obj.finish()?;
            (class, config)
        }
    };
    let mut c = Cfg::new(&config, &ctx, &format!("{path}.config."))?;
    let init = match class.as_str() {
        "GlorotUniform" | "glorot_uniform" => {
            c.only("input_axes", &[Value::Null])?;
            c.only("output_axes", &[Value::Null])?;
            InitializerSpec::GlorotUniform { seed: c.seed("seed")? }
        }
        "HeNormal" | "he_normal" => {
            c.only("input_axes", &[Value::Null])?;
            c.only("output_axes", &[Value::Null])?;
            InitializerSpec::HeNormal { seed: c.seed("seed")? }
        }
        "RandomNormal" | "random_normal" => InitializerSpec::RandomNormal {
            mean: c.f32_or("mean", Some(0.0))?,
            stddev: c.f32_or("stddev", Some(0.05))?,
            seed: c.seed("seed")?,
        },
        "RandomUniform" | "random_uniform" | "uniform" => InitializerSpec::RandomUniform {
            minval: c.f32_or("minval", Some(-0.05))?,
            maxval: c.f32_or("maxval", Some(0.05))?,
            seed: c.seed("seed")?,
        },
        "Zeros" | "zeros" => InitializerSpec::Zeros,
        "Ones" | "ones" => InitializerSpec::Ones,
        other => {
            return Err(ctx.err(
                &format!("{path}.class_name"),
                format!("unsupported initializer '{other}' (supported: GlorotUniform, HeNormal, RandomNormal, RandomUniform, Zeros, Ones)"),
            ))
        }
    };
    c.finish()?;
    Ok(init)
}

/// `inbound_nodes`: one `{"args": [ARG], "kwargs": {}}` per call.
fn parse_inbound(v: &Value, ctx: &Ctx) -> Result<Vec<Vec<TensorRef>>> {
    let arr = v
        .as_array()
        .ok_or_else(|| ctx.err("inbound_nodes", format!("expected a list, got {}", show(v))))?;
    let mut calls = Vec::new();
    for (i, node) in arr.iter().enumerate() {
        let p = format!("inbound_nodes[{i}]");
        let mut n = Cfg::new(node, ctx, &format!("{p}."))?;
        let args = n.req("args")?;
        match n.get("kwargs") {
            None => {}
            Some(Value::Object(m)) if m.values().all(|x| x.is_null()) => {}
            Some(k) => {
                return Err(ctx.err(
                    &format!("{p}.kwargs"),
                    format!("unsupported call arguments {}", show(k)),
                ))
            }
        }
        n.finish()?;
        let args = args.as_array().filter(|a| a.len() == 1).ok_or_else(|| {
            ctx.err(
                &format!("{p}.args"),
                format!("expected one positional argument, got {}", show(args)),
            )
        })?;
        let arg = &args[0];
        let refs = match arg {
            Value::Array(list) => list
                .iter()
                .map(|t| keras_tensor(t).map_err(|m| ctx.err(&format!("{p}.args"), m)))
                .collect::<Result<Vec<_>>>()?,
            t => vec![keras_tensor(t).map_err(|m| ctx.err(&format!("{p}.args"), m))?],
        };
        calls.push(refs);
    }
    Ok(calls)
}

fn keras_tensor(v: &Value) -> std::result::Result<TensorRef, String> {
    if v.get("class_name").and_then(|c| c.as_str()) != Some("__keras_tensor__") {
        return Err(format!(
            "expected a __keras_tensor__ reference, got {}",
            show(v)
        ));
    }
    let hist = v
        .get("config")
        .and_then(|c| c.get("keras_history"))
        .ok_or_else(|| format!("tensor reference without keras_history: {}", show(v)))?;
    triple(hist)
}
