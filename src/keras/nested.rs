//! Keras models used as layers of other models (a Sequential called inside a
//! Functional, a Functional inside a Sequential, to any depth).
//!
//! lossgraph models are flat, so [`flatten`] inlines every nested model into
//! one Functional config the importer reads: the nested model's layers join
//! the outer model, its inputs are wired to the tensors it was called on and
//! references to its outputs are redirected to the inner layers producing
//! them; a nested model called several times calls its layers several times
//! (shared weights, as in Keras). [`tree`] keeps what flattening loses: which
//! model each layer belongs to, which is where Keras stores its variables
//! (`layers/<model group>/layers/<layer group>/vars`, see
//! [`super::weights_h5`]). A config without nested models is returned as is.
//!
//! Limits (errors, never guesses): inner layer names must be unique across
//! the whole model (lossgraph names variables `<layer>/<variable>`); calls of
//! a nested model take no keyword arguments but `mask: null`.

use super::error::{KerasError, Result};
use super::json::show;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// A model's layers as Keras saves them: its own layers and nested models,
/// in `model.layers` order (a Sequential's InputLayer is not one of them).
#[derive(Clone, Debug, PartialEq)]
pub enum NameTree {
    Layer {
        class: String,
        name: String,
    },
    Model {
        class: String,
        name: String,
        members: Vec<NameTree>,
    },
}

/// True for the classes of Keras models.
fn is_model_class(class: &str) -> bool {
    matches!(class, "Sequential" | "Functional" | "Model")
}

fn ctx(model: &str) -> String {
    format!("model '{model}'")
}

fn class_of(item: &Value) -> &str {
    item.get("class_name")
        .and_then(|c| c.as_str())
        .unwrap_or("")
}

fn name_of(item: &Value) -> Option<&str> {
    item.get("config")
        .and_then(|c| c.get("name"))
        .and_then(|n| n.as_str())
        .or_else(|| item.get("name").and_then(|n| n.as_str()))
}

fn layers_of<'a>(config: &'a Value, model: &str) -> Result<&'a Vec<Value>> {
    config
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| KerasError::invalid(ctx(model), "config.layers must be a list"))
}

fn has_nested(config: &Value) -> bool {
    config
        .get("config")
        .and_then(|c| c.get("layers"))
        .and_then(|l| l.as_array())
        .is_some_and(|ls| ls.iter().any(|l| is_model_class(class_of(l))))
}

/// The tree of models and layers of a Keras config (`config.json` or
/// `model.to_json()`).
pub fn tree(v: &Value) -> Result<NameTree> {
    let class = class_of(v).to_string();
    let config = v
        .get("config")
        .ok_or_else(|| KerasError::invalid("model", "missing 'config'"))?;
    let name = config
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("model")
        .to_string();
    let mut members = Vec::new();
    for item in layers_of(config, &name)? {
        let c = class_of(item);
        if class == "Sequential" && c == "InputLayer" {
            continue;
        }
        let n = name_of(item)
            .ok_or_else(|| KerasError::invalid(ctx(&name), format!("a {c} layer has no name")))?;
        members.push(if is_model_class(c) {
            tree(item)?
        } else {
            NameTree::Layer {
                class: c.to_string(),
                name: n.to_string(),
            }
        });
    }
    Ok(NameTree::Model {
        class,
        name,
        members,
    })
}

/// A tensor reference: output `tensor` of call `node` of layer `layer`.
type Ref = (String, usize, usize);

fn tensor_ref(r: &Ref) -> Value {
    json!({"class_name": "__keras_tensor__", "config": {"keras_history": [r.0, r.1, r.2]}})
}

fn parse_ref(v: &Value, model: &str) -> Result<Ref> {
    let hist = if v.get("class_name").and_then(|c| c.as_str()) == Some("__keras_tensor__") {
        v.get("config").and_then(|c| c.get("keras_history"))
    } else {
        Some(v)
    };
    match hist.and_then(|h| h.as_array()).map(|a| a.as_slice()) {
        Some([Value::String(l), n, t]) if n.is_u64() && t.is_u64() => Ok((
            l.clone(),
            n.as_u64().unwrap_or(0) as usize,
            t.as_u64().unwrap_or(0) as usize,
        )),
        _ => Err(KerasError::invalid(
            ctx(model),
            format!("expected a tensor reference, got {}", show(v)),
        )),
    }
}

/// `["x", 0, 0]` or a list of such triples.
fn triples(v: &Value, model: &str) -> Result<Vec<Ref>> {
    match v.as_array() {
        Some(a) if a.first().is_some_and(|x| x.is_string()) => Ok(vec![parse_ref(v, model)?]),
        Some(a) => a.iter().map(|t| parse_ref(t, model)).collect(),
        None => Err(KerasError::invalid(
            ctx(model),
            format!("expected layer triples, got {}", show(v)),
        )),
    }
}

/// The positional tensors of one inbound node (`{"args": [ARG], "kwargs": {…}}`).
fn node_args(node: &Value, model: &str, layer: &str) -> Result<(Vec<Ref>, Value)> {
    let args = node
        .get("args")
        .and_then(|a| a.as_array())
        .filter(|a| a.len() == 1)
        .ok_or_else(|| {
            KerasError::invalid(
                ctx(model),
                format!(
                    "layer '{layer}': expected one positional argument, got {}",
                    show(node)
                ),
            )
        })?;
    let refs = match &args[0] {
        Value::Array(list) => list
            .iter()
            .map(|t| parse_ref(t, model))
            .collect::<Result<_>>()?,
        t => vec![parse_ref(t, model)?],
    };
    Ok((
        refs,
        node.get("kwargs").cloned().unwrap_or_else(|| json!({})),
    ))
}

/// The flat model being assembled.
struct Flat {
    layers: Vec<Value>,
    index: HashMap<String, usize>,
}

impl Flat {
    /// Adds a layer item (its inbound nodes are appended by [`Flat::call`]).
    fn add(&mut self, mut item: Value, trainable: bool, model: &str) -> Result<String> {
        let name = name_of(&item)
            .ok_or_else(|| KerasError::invalid(ctx(model), "a layer has no name"))?
            .to_string();
        if self.index.contains_key(&name) {
            return Err(KerasError::invalid(
                ctx(model),
                format!(
                    "two layers are named '{name}' once nested models are inlined (lossgraph names variables '<layer>/<variable>', so layer names must be unique across nested models)"
                ),
            ));
        }
        if let Some(obj) = item.as_object_mut() {
            obj.insert("name".into(), Value::from(name.clone()));
            obj.insert("inbound_nodes".into(), json!([]));
            if !trainable {
                if let Some(c) = obj.get_mut("config").and_then(|c| c.as_object_mut()) {
                    c.insert("trainable".into(), Value::Bool(false));
                }
            }
        }
        self.index.insert(name.clone(), self.layers.len());
        self.layers.push(item);
        Ok(name)
    }

    /// Appends a call of layer `name` (added by [`Flat::add`]) on `args`;
    /// returns its output reference.
    fn call(&mut self, name: &str, args: &[Ref], kwargs: Value) -> Result<Ref> {
        let nodes = self
            .index
            .get(name)
            .and_then(|&i| self.layers[i].get_mut("inbound_nodes"))
            .and_then(|n| n.as_array_mut())
            .ok_or_else(|| {
                KerasError::invalid("model", format!("layer '{name}' is not an added layer"))
            })?;
        let arg = if args.len() == 1 {
            tensor_ref(&args[0])
        } else {
            Value::Array(args.iter().map(tensor_ref).collect())
        };
        nodes.push(json!({"args": [arg], "kwargs": kwargs}));
        Ok((name.to_string(), nodes.len() - 1, 0))
    }
}

/// Inlines model `item` (a Keras model object) called on `calls` (the
/// tensors of each call, in order); returns each call's outputs. `top`:
/// the outermost model, whose InputLayers stay inputs.
fn expand(
    item: &Value,
    calls: &[Vec<Ref>],
    top: bool,
    trainable: bool,
    flat: &mut Flat,
    inputs: &mut Vec<Ref>,
) -> Result<Vec<Vec<Ref>>> {
    let class = class_of(item);
    let config = item
        .get("config")
        .ok_or_else(|| KerasError::invalid("model", "missing 'config'"))?;
    let model = config
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("model")
        .to_string();
    let trainable = trainable && config.get("trainable").and_then(|t| t.as_bool()) != Some(false);
    let items = layers_of(config, &model)?;
    // The sub-layers' own layers are added once; each call adds calls to them.
    let mut envs: Vec<HashMap<(String, usize), Vec<Ref>>> = vec![HashMap::new(); calls.len()];
    let mut outputs = Vec::with_capacity(calls.len());
    if class == "Sequential" {
        let mut rest = items.as_slice();
        match items.first() {
            Some(first) if class_of(first) == "InputLayer" => {
                rest = &items[1..];
                if top {
                    let n = flat.add(first.clone(), trainable, &model)?;
                    inputs.push((n, 0, 0));
                }
            }
            _ if top => {
                return Err(KerasError::invalid(
                    ctx(&model),
                    "a Sequential model holding nested models must start with an InputLayer",
                ))
            }
            _ => {}
        }
        let mut prev: Vec<Vec<Ref>> = if top {
            vec![inputs.clone()]
        } else {
            calls.to_vec()
        };
        for sub in rest {
            if is_model_class(class_of(sub)) {
                prev = expand(sub, &prev, false, trainable, flat, inputs)?;
            } else {
                let n = flat.add(sub.clone(), trainable, &model)?;
                prev = prev
                    .iter()
                    .map(|args| Ok(vec![flat.call(&n, args, json!({}))?]))
                    .collect::<Result<_>>()?;
            }
        }
        return Ok(prev);
    }
    // Functional: inputs, then each layer's inbound nodes per call.
    let input_refs = triples(
        config
            .get("input_layers")
            .ok_or_else(|| KerasError::invalid(ctx(&model), "missing input_layers"))?,
        &model,
    )?;
    if top {
        for it in items.iter().filter(|i| class_of(i) == "InputLayer") {
            let n = flat.add(it.clone(), trainable, &model)?;
            envs[0].insert((n.clone(), 0), vec![(n, 0, 0)]);
        }
        inputs.extend(input_refs.iter().cloned());
    } else {
        for (k, args) in calls.iter().enumerate() {
            if args.len() != input_refs.len() {
                return Err(KerasError::invalid(
                    ctx(&model),
                    format!(
                        "called on {} tensor(s), but it has {} input(s)",
                        args.len(),
                        input_refs.len()
                    ),
                ));
            }
            for (r, a) in input_refs.iter().zip(args) {
                envs[k].insert((r.0.clone(), r.1), vec![a.clone()]);
            }
        }
    }
    for sub in items.iter().filter(|i| class_of(i) != "InputLayer") {
        let sub_name = name_of(sub)
            .ok_or_else(|| KerasError::invalid(ctx(&model), "a layer has no name"))?
            .to_string();
        let nodes = sub
            .get("inbound_nodes")
            .and_then(|n| n.as_array())
            .cloned()
            .unwrap_or_default();
        let lookup = |env: &HashMap<(String, usize), Vec<Ref>>, r: &Ref| -> Result<Ref> {
            env.get(&(r.0.clone(), r.1))
                .and_then(|outs| outs.get(r.2))
                .cloned()
                .ok_or_else(|| {
                    KerasError::invalid(
                        ctx(&model),
                        format!(
                            "layer '{sub_name}' uses output {} of call {} of '{}' before it is computed",
                            r.2, r.1, r.0
                        ),
                    )
                })
        };
        if is_model_class(class_of(sub)) {
            let mut sub_calls = Vec::new();
            for env in &envs {
                for node in &nodes {
                    let (refs, kwargs) = node_args(node, &model, &sub_name)?;
                    let ok = kwargs
                        .as_object()
                        .is_some_and(|m| m.iter().all(|(key, v)| key == "mask" && v.is_null()));
                    if !ok {
                        return Err(KerasError::invalid(
                            ctx(&model),
                            format!(
                                "nested model '{sub_name}' is called with unsupported arguments {}",
                                show(&kwargs)
                            ),
                        ));
                    }
                    sub_calls.push(refs.iter().map(|r| lookup(env, r)).collect::<Result<_>>()?);
                }
            }
            let outs = expand(sub, &sub_calls, false, trainable, flat, inputs)?;
            let per = nodes.len();
            for (k, env) in envs.iter_mut().enumerate() {
                for j in 0..per {
                    env.insert((sub_name.clone(), j), outs[k * per + j].clone());
                }
            }
        } else {
            let n = flat.add(sub.clone(), trainable, &model)?;
            for env in envs.iter_mut() {
                for (j, node) in nodes.iter().enumerate() {
                    let (refs, kwargs) = node_args(node, &model, &sub_name)?;
                    let args: Vec<Ref> =
                        refs.iter().map(|r| lookup(env, r)).collect::<Result<_>>()?;
                    let out = flat.call(&n, &args, kwargs)?;
                    env.insert((n.clone(), j), vec![out]);
                }
            }
        }
    }
    let output_refs = triples(
        config
            .get("output_layers")
            .ok_or_else(|| KerasError::invalid(ctx(&model), "missing output_layers"))?,
        &model,
    )?;
    for env in &envs {
        let mut outs = Vec::new();
        for r in &output_refs {
            outs.push(
                env.get(&(r.0.clone(), r.1))
                    .and_then(|o| o.get(r.2))
                    .cloned()
                    .ok_or_else(|| {
                        KerasError::invalid(
                            ctx(&model),
                            format!("output '{}' is not computed by the model", r.0),
                        )
                    })?,
            );
        }
        outputs.push(outs);
    }
    Ok(outputs)
}

/// `v` with every nested model inlined (see the module doc): one Functional
/// config with the same layers, weights and calls. Returned unchanged when
/// no layer is a model.
pub fn flatten(v: &Value) -> Result<Value> {
    if !has_nested(v) {
        return Ok(v.clone());
    }
    let mut flat = Flat {
        layers: Vec::new(),
        index: HashMap::new(),
    };
    let mut inputs = Vec::new();
    let outs = expand(v, &[vec![]], true, true, &mut flat, &mut inputs)?;
    let triple = |r: &Ref| json!([r.0, r.1, r.2]);
    let config = &v["config"];
    let mut c = Map::new();
    c.insert(
        "name".into(),
        config.get("name").cloned().unwrap_or(Value::Null),
    );
    c.insert(
        "trainable".into(),
        config
            .get("trainable")
            .cloned()
            .unwrap_or(Value::Bool(true)),
    );
    c.insert("layers".into(), Value::Array(flat.layers));
    c.insert(
        "input_layers".into(),
        Value::Array(inputs.iter().map(triple).collect()),
    );
    c.insert(
        "output_layers".into(),
        Value::Array(outs[0].iter().map(triple).collect()),
    );
    Ok(json!({"class_name": "Functional", "config": Value::Object(c)}))
}
