//! Keras 3's weights file: `model.weights.h5` inside a `.keras` archive, or a
//! `.weights.h5` on its own (`model.save_weights`), read and written with the
//! pure-Rust `hdf5-pure` crate (no system libhdf5).
//!
//! Crate choice, measured on the 13 Keras-written reference archives plus a
//! nested, trained model (79 datasets) and 6 truncations of each file:
//! `hdf5-pure` 0.47 and `rustyhdf5` 1.93 read every dataset bit-exactly (as
//! h5py does) and return an error (never a panic) on every truncation;
//! `hdf5-reader` 0.12 reads them too but is read-only; `rustyhdf5`'s writer
//! cannot nest groups (`layers/<g>/vars/0`), so only `hdf5-pure` both reads
//! and writes the layout below.
//!
//! Layout (as `keras.saving` writes it). A model's state is a group holding
//! `vars` (its own variables: none; attribute `name` = the model's name) and
//! `layers/<g>` for each of its layers in `model.layers` order, where `<g>` is
//! the layer's class name in snake_case, numbered per class (`dense`,
//! `dense_1`, …; a Functional model's InputLayers count, a Sequential's
//! InputLayer is not one of its layers). A layer's group holds `vars`
//! (attribute `name` = the layer's name) with one dataset per variable,
//! `vars/0`, `vars/1`, … in Keras's variable order: trainable-at-creation
//! weights, then non-trainable state, each in creation order (Dense: kernel,
//! bias; BatchNormalization: gamma, beta, moving_mean, moving_variance). A
//! nested model is a layer whose group holds its own `vars` and `layers/…`.
//! A compiled model's optimizer adds `optimizer/vars/0…` (iterations,
//! learning rate, then the slots of each trainable variable).
//!
//! Reading is strict: every group and dataset the model needs must be there
//! with its shape, and every group and dataset in the file must belong to a
//! layer of the model; errors name the file, the dataset path and the layer.

use super::error::{KerasError, Result};
use crate::layer::VariableKind;
use crate::{HostTensor, Model};
use hdf5_pure::{AttrValue, DType as H5Type, FileBuilder};
use lossgraph_ir::{DType, Data, TensorType};

/// Keras's `to_snake_case` of a class name: `Dense` → `dense`,
/// `BatchNormalization` → `batch_normalization`, `Conv2D` → `conv2d`,
/// `GlobalAveragePooling2D` → `global_average_pooling2d`. An underscore goes
/// before each capital that starts a capitalised word (a capital followed by
/// a lowercase letter), and before a capital that follows a lowercase letter.
pub fn snake_case(class: &str) -> String {
    let c: Vec<char> = class
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let mut out = String::with_capacity(c.len() + 4);
    for (i, &ch) in c.iter().enumerate() {
        if i > 0 && ch.is_ascii_uppercase() {
            let starts_word = c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let after_lower = c[i - 1].is_ascii_lowercase();
            if starts_word || after_lower {
                out.push('_');
            }
        }
        out.extend(ch.to_lowercase());
    }
    out
}

/// One saveable object of the weights tree: a layer of the model or a
/// (nested) model holding layers.
#[derive(Clone, Debug, PartialEq)]
pub enum Saveable {
    /// Layer `index` of [`Model`]'s layer list.
    Layer(usize),
    /// A variable-less layer Keras saves but the lossgraph model does not
    /// hold (the InputLayer of a nested Functional model, inlined away).
    Absent { class: String, name: String },
    /// A model: its Keras class, its name and its layers in `model.layers` order.
    Model {
        class: String,
        name: String,
        members: Vec<Saveable>,
    },
}

/// The weights tree of a lossgraph model that is not nested: the model
/// itself with every layer (a Sequential's input excluded).
pub fn flat_tree(model: &Model) -> Saveable {
    let sequential = model.kind == "Sequential";
    Saveable::Model {
        class: model.kind.to_string(),
        name: model.name.clone(),
        members: model
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| !(sequential && l.is_input))
            .map(|(i, _)| Saveable::Layer(i))
            .collect(),
    }
}

/// The weights tree of `model` built from the Keras config's model tree
/// (which keeps nested models, [`super::nested::tree`]): each layer found by name.
pub fn tree_from_names(model: &Model, names: &super::nested::NameTree) -> Result<Saveable> {
    use super::nested::NameTree;
    Ok(match names {
        NameTree::Layer { class, name } => {
            match model.layers.iter().position(|l| l.name == *name) {
                Some(i) => Saveable::Layer(i),
                None if class == "InputLayer" => Saveable::Absent {
                    class: class.clone(),
                    name: name.clone(),
                },
                None => {
                    return Err(KerasError::invalid(
                        format!("model '{}'", model.name),
                        format!("the Keras config's {class} layer '{name}' is not in the model"),
                    ))
                }
            }
        }
        NameTree::Model {
            class,
            name,
            members,
        } => Saveable::Model {
            class: class.clone(),
            name: name.clone(),
            members: members
                .iter()
                .map(|m| tree_from_names(model, m))
                .collect::<Result<_>>()?,
        },
    })
}

/// Where one layer's variables live in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerGroup {
    /// The `vars` group (`layers/dense_1/vars`, `layers/sequential/layers/dense/vars`).
    pub vars: String,
    /// The layer's name and Keras class.
    pub layer: String,
    pub class: String,
    /// Indices into [`Model::variables`], in Keras's order (`vars/0` first).
    pub variables: Vec<usize>,
}

/// The file layout of `tree`: the `vars` group of every model in the tree
/// (with the model's name) and every layer's group, in file-writing order.
pub fn layout(model: &Model, tree: &Saveable) -> (Vec<(String, String)>, Vec<LayerGroup>) {
    let mut models = Vec::new();
    let mut layers = Vec::new();
    walk(model, tree, "", &mut models, &mut layers);
    (models, layers)
}

fn walk(
    model: &Model,
    node: &Saveable,
    prefix: &str,
    models: &mut Vec<(String, String)>,
    layers: &mut Vec<LayerGroup>,
) {
    match node {
        Saveable::Layer(i) => {
            let slot = &model.layers[*i];
            let mine = |kind: VariableKind| {
                model
                    .vars
                    .iter()
                    .enumerate()
                    .filter(move |(_, v)| v.layer_index == *i && v.kind == kind)
                    .map(|(j, _)| j)
            };
            layers.push(LayerGroup {
                vars: format!("{prefix}vars"),
                layer: slot.name.clone(),
                class: slot.class.clone(),
                variables: mine(VariableKind::Weight)
                    .chain(mine(VariableKind::State))
                    .collect(),
            });
        }
        Saveable::Absent { class, name } => layers.push(LayerGroup {
            vars: format!("{prefix}vars"),
            layer: name.clone(),
            class: class.clone(),
            variables: Vec::new(),
        }),
        Saveable::Model { name, members, .. } => {
            models.push((format!("{prefix}vars"), name.clone()));
            let mut used: Vec<(String, usize)> = Vec::new();
            for m in members {
                let class = match m {
                    Saveable::Layer(i) => model.layers[*i].class.as_str(),
                    Saveable::Absent { class, .. } | Saveable::Model { class, .. } => {
                        class.as_str()
                    }
                };
                let base = snake_case(class);
                let group = match used.iter_mut().find(|(b, _)| *b == base) {
                    Some((_, n)) => {
                        *n += 1;
                        format!("{base}_{n}")
                    }
                    None => {
                        used.push((base.clone(), 0));
                        base
                    }
                };
                walk(
                    model,
                    m,
                    &format!("{prefix}layers/{group}/"),
                    models,
                    layers,
                );
            }
        }
    }
}

/// A compiled Keras model's optimizer variables (`optimizer/vars/…`), in
/// file order, as Keras wrote them.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerVariables {
    /// The optimizer's name (`adam`), from the `name` attribute.
    pub name: Option<String>,
    /// `(dataset path, value)`: `optimizer/vars/0` (iterations) first.
    pub values: Vec<(String, HostTensor)>,
}

/// The contents of a Keras weights file for a given model.
#[derive(Clone, Debug, PartialEq)]
pub struct KerasWeights {
    /// Every model variable, `(<layer>/<variable>, value)`, in model order.
    pub weights: Vec<(String, HostTensor)>,
    /// The optimizer's variables, when the file has them.
    pub optimizer: Option<OptimizerVariables>,
}

fn h5_err(file: &str, path: &str, e: impl std::fmt::Display) -> KerasError {
    KerasError::invalid(
        if path.is_empty() {
            file.to_string()
        } else {
            format!("{file}: {path}")
        },
        format!("cannot read HDF5 data (truncated or damaged file?): {e}"),
    )
}

/// True when `e` says the path names nothing (as opposed to damaged data).
fn not_found(e: &hdf5_pure::Error) -> bool {
    matches!(
        e,
        hdf5_pure::Error::Format(hdf5_pure::FormatError::PathNotFound(_))
    )
}

fn attr_string(attrs: &std::collections::HashMap<String, AttrValue>, key: &str) -> Option<String> {
    match attrs.get(key)? {
        AttrValue::String(s) | AttrValue::AsciiString(s) | AttrValue::VarLenString(s) => {
            Some(s.clone())
        }
        // Any other type: not a name; the caller treats it as absent.
        _ => None,
    }
}

/// Dataset names `0`, `1`, … of a `vars` group, checked to be exactly that sequence.
fn var_datasets(file: &str, group: &hdf5_pure::Group, path: &str) -> Result<usize> {
    let mut names = group.datasets().map_err(|e| h5_err(file, path, e))?;
    let subgroups = group.groups().map_err(|e| h5_err(file, path, e))?;
    if let Some(g) = subgroups.first() {
        return Err(KerasError::invalid(
            format!("{file}: {path}/{g}"),
            "unexpected group inside a vars group",
        ));
    }
    let mut idx: Vec<usize> = Vec::with_capacity(names.len());
    for n in names.drain(..) {
        match n.parse::<usize>() {
            Ok(i) if i.to_string() == n => idx.push(i),
            _ => {
                return Err(KerasError::invalid(
                    format!("{file}: {path}/{n}"),
                    "variable datasets must be named 0, 1, 2, …",
                ))
            }
        }
    }
    idx.sort_unstable();
    if idx.iter().enumerate().any(|(k, &i)| k != i) {
        return Err(KerasError::invalid(
            format!("{file}: {path}"),
            format!(
                "variable datasets are not numbered 0..{}: {idx:?}",
                idx.len()
            ),
        ));
    }
    Ok(idx.len())
}

/// Reads dataset `path` as a tensor of type `want` (float data is converted
/// to f32, integer data to i32); the shape is checked before the data is read.
fn read_dataset(
    file: &str,
    f: &hdf5_pure::File,
    path: &str,
    want: Option<&TensorType>,
    what: &str,
) -> Result<HostTensor> {
    let ds = f.dataset(path).map_err(|e| h5_err(file, path, e))?;
    let shape: Vec<usize> = ds
        .shape()
        .map_err(|e| h5_err(file, path, e))?
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    let at = format!("{file}: dataset {path}{what}");
    if let Some(t) = want {
        if shape.as_slice() != t.shape.as_slice() {
            return Err(KerasError::invalid(
                at,
                format!("shape {shape:?}, the model expects {:?}", t.shape),
            ));
        }
    }
    let h5type = ds.dtype().map_err(|e| h5_err(file, path, e))?;
    let is_float = matches!(h5type, H5Type::F32 | H5Type::F64);
    let is_int = matches!(
        h5type,
        H5Type::I8
            | H5Type::I16
            | H5Type::I32
            | H5Type::I64
            | H5Type::U8
            | H5Type::U16
            | H5Type::U32
            | H5Type::U64
    );
    let dtype = match want.map(|t| t.dtype) {
        Some(d) => d,
        None if is_int => DType::I32,
        None => DType::F32,
    };
    let ok = match dtype {
        DType::F32 => is_float,
        DType::I32 => is_int,
    };
    if !ok {
        return Err(KerasError::invalid(
            at,
            format!("element type {h5type:?}, the model expects {dtype}"),
        ));
    }
    let ty = TensorType::new(dtype, &shape);
    let budget =
        lossgraph_runtime::budget::memory_budget().map_err(|e| KerasError::invalid(&at, e))?;
    match ty.checked_bytes() {
        Some(b) if b as u64 <= budget => {}
        size => {
            let message = match size {
                None => format!("shape {shape:?}: its size overflows"),
                Some(b) => format!(
                    "shape {shape:?} needs {}, more than the memory budget of {} (set {} to change it)",
                    lossgraph_runtime::budget::fmt_bytes(b as u64),
                    lossgraph_runtime::budget::fmt_bytes(budget),
                    lossgraph_runtime::budget::BUDGET_ENV
                ),
            };
            return Err(KerasError::invalid(at, message));
        }
    }
    let data = match dtype {
        DType::F32 => Data::F32(ds.read_f32().map_err(|e| h5_err(file, path, e))?),
        DType::I32 => Data::I32(if matches!(h5type, H5Type::U32 | H5Type::U64) {
            narrow_to_i32(
                &at,
                &shape,
                ds.read_u64().map_err(|e| h5_err(file, path, e))?,
            )?
        } else {
            narrow_to_i32(
                &at,
                &shape,
                ds.read_i64().map_err(|e| h5_err(file, path, e))?,
            )?
        }),
    };
    let n = ty.numel();
    let len = match &data {
        Data::F32(v) => v.len(),
        Data::I32(v) => v.len(),
    };
    if len != n {
        return Err(KerasError::invalid(
            at,
            format!("holds {len} values for shape {shape:?}"),
        ));
    }
    Ok(HostTensor { ty, data })
}

/// Integers read wide (`i64`/`u64`, so that nothing wraps on the way) as
/// `i32`: a value outside the `i32` range is an error naming the dataset
/// (`at`), the row and the value.
fn narrow_to_i32<T: Copy + std::fmt::Display>(
    at: &str,
    shape: &[usize],
    v: Vec<T>,
) -> Result<Vec<i32>>
where
    i32: TryFrom<T>,
{
    crate::error::narrow_to_i32(&v).map_err(|(k, x)| {
        KerasError::invalid(
            at,
            format!(
                "{} holds {x}, outside the i32 range ({} to {})",
                crate::error::position(shape, k),
                i32::MIN,
                i32::MAX
            ),
        )
    })
}

/// The first group of the file that belongs to nothing read (is neither in
/// `seen` nor a parent of a path in it), walking from the root. Only groups
/// that belong are entered, so the walk ends even when a group links to one
/// of its ancestors: the looping link is itself a group that belongs to
/// nothing.
fn first_unused_group(file: &str, f: &hdf5_pure::File, seen: &[String]) -> Result<Option<String>> {
    let used = |p: &str| {
        seen.iter()
            .any(|s| s == p || s.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
    };
    let mut stack = vec![String::new()];
    while let Some(path) = stack.pop() {
        let g = if path.is_empty() {
            f.root()
        } else {
            f.group(&path).map_err(|e| h5_err(file, &path, e))?
        };
        let subs = g.groups().map_err(|e| h5_err(file, &path, e))?;
        // Pushed in reverse so that groups are visited in the file's order.
        for sub in subs.into_iter().rev() {
            let p = if path.is_empty() {
                sub
            } else {
                format!("{path}/{sub}")
            };
            if !used(&p) {
                return Ok(Some(p));
            }
            stack.push(p);
        }
    }
    Ok(None)
}

/// Reads a Keras weights file (the bytes of `model.weights.h5` or a
/// `.weights.h5`) for `model`, whose layers `tree` arranges as Keras did
/// ([`flat_tree`] unless the Keras model nested models); `file` names the
/// file (or archive member) in errors.
pub fn read_weights(
    model: &Model,
    tree: &Saveable,
    bytes: Vec<u8>,
    file: &str,
) -> Result<KerasWeights> {
    if !hdf5_pure::is_hdf5_bytes(&bytes) {
        return Err(KerasError::invalid(
            file,
            "not an HDF5 file (no HDF5 signature)",
        ));
    }
    let f = hdf5_pure::File::from_bytes(bytes).map_err(|e| h5_err(file, "", e))?;
    // Keras 2's `.h5` (`model_weights/<layer>/…`, root attribute
    // `layer_names`) is another layout: say so instead of "missing group".
    let root_attrs = f.root().attrs().map_err(|e| h5_err(file, "", e))?;
    let root_groups = f.root().groups().map_err(|e| h5_err(file, "", e))?;
    if root_attrs.contains_key("layer_names") || root_groups.iter().any(|g| g == "model_weights") {
        return Err(KerasError::invalid(
            file,
            "a Keras 2 (legacy HDF5) weights file; lossgraph reads the Keras 3 layout (save with Keras 3: model.save(\"m.keras\") or model.save_weights(\"m.weights.h5\"))",
        ));
    }
    let (models, groups) = layout(model, tree);
    let mut seen: Vec<String> = Vec::new();
    for (vars, _) in &models {
        seen.push(vars.clone());
    }
    let mut values: Vec<Option<HostTensor>> = vec![None; model.vars.len()];
    for g in &groups {
        let who = format!("{} layer '{}'", g.class, g.layer);
        let group = f.group(&g.vars).map_err(|e| {
            if not_found(&e) {
                KerasError::invalid(
                    format!("{file}: {}", g.vars),
                    format!("missing group for {who}"),
                )
            } else {
                h5_err(file, &g.vars, e)
            }
        })?;
        seen.push(g.vars.clone());
        let attrs = group.attrs().map_err(|e| h5_err(file, &g.vars, e))?;
        if let Some(name) = attr_string(&attrs, "name") {
            if name != g.layer {
                return Err(KerasError::invalid(
                    format!("{file}: {}", g.vars),
                    format!(
                        "holds the variables of layer '{name}', but the model's layer at this position is {who} (do the architecture and the weights belong together?)"
                    ),
                ));
            }
        }
        let n = var_datasets(file, &group, &g.vars)?;
        if n != g.variables.len() {
            let expect: Vec<String> = g
                .variables
                .iter()
                .map(|&j| format!("{} {}", model.vars[j].name, model.vars[j].ty))
                .collect();
            return Err(KerasError::invalid(
                format!("{file}: {}", g.vars),
                format!(
                    "holds {n} variable(s) for {who}, which has {} ({})",
                    expect.len(),
                    if expect.is_empty() {
                        "none".to_string()
                    } else {
                        expect.join(", ")
                    }
                ),
            ));
        }
        for (k, &j) in g.variables.iter().enumerate() {
            let v = &model.vars[j];
            let path = format!("{}/{k}", g.vars);
            let what = format!(" ({who}, variable {})", v.name);
            values[j] = Some(read_dataset(file, &f, &path, Some(&v.ty), &what)?);
        }
    }
    // The optimizer's variables, if the model was compiled when saved.
    let optimizer = match f.group("optimizer/vars") {
        Err(e) if not_found(&e) => None,
        Err(e) => return Err(h5_err(file, "optimizer/vars", e)),
        Ok(group) => {
            let attrs = group
                .attrs()
                .map_err(|e| h5_err(file, "optimizer/vars", e))?;
            let n = var_datasets(file, &group, "optimizer/vars")?;
            let mut vals = Vec::with_capacity(n);
            for k in 0..n {
                let path = format!("optimizer/vars/{k}");
                let t = read_dataset(file, &f, &path, None, " (optimizer variable)")?;
                vals.push((path, t));
            }
            seen.push("optimizer/vars".into());
            Some(OptimizerVariables {
                name: attr_string(&attrs, "name"),
                values: vals,
            })
        }
    };
    // Every group of the file must belong to something read above: a group
    // no layer maps to means the file is for another architecture.
    if let Some(p) = first_unused_group(file, &f, &seen)? {
        return Err(KerasError::invalid(
            format!("{file}: {p}"),
            format!(
                "group belongs to no layer of model '{}' (layers: {})",
                model.name,
                groups
                    .iter()
                    .map(|g| format!("{} -> {}", g.layer, g.vars))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let weights = model
        .vars
        .iter()
        .zip(values)
        .map(|(v, t)| {
            t.map(|t| (v.path.clone(), t)).ok_or_else(|| {
                KerasError::invalid(
                    file,
                    format!(
                        "variable {} belongs to no layer group (an importer bug)",
                        v.path
                    ),
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok(KerasWeights { weights, optimizer })
}

/// The bytes of a Keras weights file holding `model`'s current variables,
/// arranged by `tree` (see the module doc), with `optimizer` variables if given.
pub fn write_weights(
    model: &Model,
    tree: &Saveable,
    optimizer: Option<&OptimizerVariables>,
) -> Result<Vec<u8>> {
    let (models, groups) = layout(model, tree);
    // Paths → a tree of groups, built bottom-up into hdf5-pure's builders.
    let mut root = Node::default();
    for (vars, name) in &models {
        root.at(vars).attr = Some(name.clone());
    }
    for g in &groups {
        let node = root.at(&g.vars);
        node.attr = Some(g.layer.clone());
        for (k, &j) in g.variables.iter().enumerate() {
            let v = &model.vars[j];
            let t = model.store.read(&v.path).ok_or_else(|| {
                KerasError::invalid(
                    format!("model '{}'", model.name),
                    format!("variable {} has no value", v.path),
                )
            })?;
            node.datasets.push((k.to_string(), t));
        }
    }
    if let Some(o) = optimizer {
        let node = root.at("optimizer/vars");
        node.attr = o.name.clone();
        for (k, (_, t)) in o.values.iter().enumerate() {
            node.datasets.push((k.to_string(), t.clone()));
        }
    }
    let mut fb = FileBuilder::new();
    for (name, child) in root.children {
        let g = child.build(fb.create_group(&name));
        fb.add_group(g);
    }
    fb.finish().map_err(|e| {
        KerasError::invalid(
            format!("model '{}'", model.name),
            format!("writing HDF5: {e}"),
        )
    })
}

/// A group being assembled for writing: its `name` attribute, datasets and
/// sub-groups, in insertion order.
#[derive(Default)]
struct Node {
    attr: Option<String>,
    datasets: Vec<(String, HostTensor)>,
    children: Vec<(String, Node)>,
}

impl Node {
    /// The node at `path` (`a/b/c`), created if missing.
    fn at(&mut self, path: &str) -> &mut Node {
        let mut node = self;
        for part in path.split('/') {
            let pos = match node.children.iter().position(|(n, _)| n == part) {
                Some(p) => p,
                None => {
                    node.children.push((part.to_string(), Node::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[pos].1;
        }
        node
    }

    fn build(self, mut g: hdf5_pure::GroupBuilder) -> hdf5_pure::FinishedGroup {
        if let Some(a) = self.attr {
            g.set_attr("name", AttrValue::String(a));
        }
        for (name, t) in &self.datasets {
            let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
            let d = g.create_dataset(name);
            match &t.data {
                Data::F32(v) => d.with_f32_data(v),
                Data::I32(v) => d.with_i32_data(v),
            };
            d.with_shape(&shape);
        }
        for (name, child) in self.children {
            let sub = child.build(g.create_group(&name));
            g.add_group(sub);
        }
        g.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::narrow_to_i32;

    #[test]
    fn integers_narrow_to_i32_without_wrapping() {
        let at = "w.h5: dataset optimizer/vars/0";
        assert_eq!(
            narrow_to_i32(at, &[3], vec![-2_147_483_648i64, 0, 2_147_483_647]).unwrap(),
            [i32::MIN, 0, i32::MAX]
        );
        // 2^32 + 1 would wrap to 1, 2^64 − 1 (u64) to −1.
        let e = narrow_to_i32(at, &[2, 2], vec![0i64, 1, 2, 4_294_967_297])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "w.h5: dataset optimizer/vars/0: row 1, element 1 holds 4294967297, outside the i32 range (-2147483648 to 2147483647)"
        );
        let e = narrow_to_i32(at, &[], vec![u64::MAX])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "w.h5: dataset optimizer/vars/0: row 0 holds 18446744073709551615, outside the i32 range (-2147483648 to 2147483647)"
        );
    }
}
