//! Models: the functional API ([`Functional`]: multi-input, multi-output graphs
//! of layers, shared layers called several times), [`Sequential`], and the
//! built [`Model`] that traces itself into IR.
//!
//! Building a model builds every layer once (with a seeded RNG for the
//! initialisers) and records the output shape of every layer call. Tracing
//! ([`Model::trace`]) emits a fresh graph for one purpose and batch size:
//! inputs (`x` or `x/<input>`), a `param` per variable, each layer call in its
//! scope, the added losses (outputs `added/<i>` in Keras's `model.losses`
//! order), the predictions (`pred/<output>`) and, in training traces, the
//! state updates layers assign (`update/<state variable>`).

use crate::error::{Error, Result};
use crate::layer::{
    bind_variables, eval_build_loss, invoke, BuildCtx, BuildLoss, BuildResources, CallCtx, Layer,
    PendingLoss, TraceState, Variable, VariableKind,
};
use crate::train::session::TrainState;
use lossgraph_ir::{
    Builder, DType, Graph, HostTensor, LossReason, NodeId, Role, Tensor, TensorType,
};
use lossgraph_runtime::{CopyCount, VariableStore};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::rc::Rc;

/// A symbolic tensor of a [`Functional`] model under construction: an input or a layer call's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SymbolicTensor(usize);

/// A layer registered in a [`Functional`] model (call it several times to share weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerId(usize);

pub(crate) struct LayerSlot {
    pub name: String,
    pub class: String,
    pub layer: Box<dyn Layer>,
    pub built: bool,
    pub is_input: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum Producer {
    Input(usize),
    /// Output `.1` of call node `.0`.
    Call(usize, usize),
}

#[derive(Clone, Debug)]
pub(crate) struct Value {
    pub shape: Vec<usize>,
    pub producer: Producer,
}

#[derive(Clone, Debug)]
pub(crate) struct CallNode {
    pub layer: usize,
    pub inputs: Vec<usize>,
    /// The values the call produces, one per tensor the layer returns.
    pub outputs: Vec<usize>,
}

/// A model-level added loss ([`Functional::add_loss`]): a closure over the
/// traced values of some symbolic tensors, re-evaluated in every trace.
#[derive(Clone)]
pub(crate) struct ModelLoss {
    pub inputs: Vec<usize>,
    pub f: crate::layers::lambda::TensorsFn,
}

#[derive(Clone, Debug)]
pub(crate) struct ModelInput {
    pub name: String,
    pub value: usize,
    /// The element type fed.
    pub dtype: DType,
}

/// One entry of [`Model::losses`]: an added loss, in Keras's order.
#[derive(Clone, Debug, PartialEq)]
pub struct AddedLoss {
    /// The owning layer's path (`dense_1`, `outer/inner`).
    pub owner: String,
    /// Why it exists.
    pub reason: LossReason,
    /// The owning layer's call index (0 unless the layer is shared).
    pub call: u32,
    /// For weight regularisers: the variable's full name (`dense_1/kernel`).
    pub variable: Option<String>,
    /// The graph output holding its value (`added/<i>`).
    pub output: String,
}

/// A traced model: a builder holding forward nodes and added losses, ready
/// for compiled losses, metrics, gradients and updates to be appended.
pub struct Trace {
    /// The builder of the graph (shared with every tensor below).
    pub builder: Builder,
    /// Model inputs as (feed name, tensor), in model input order.
    pub inputs: Vec<(String, Tensor)>,
    /// Model outputs as (output name, tensor), in model output order.
    pub preds: Vec<(String, Tensor)>,
    /// Added losses in Keras's order, with their scalar values.
    pub losses: Vec<(AddedLoss, Tensor)>,
    /// Every variable as (full name, `param` tensor), in trainable-weight order.
    pub params: Vec<(String, Tensor)>,
    /// State updates as (state variable, new value), each also the output
    /// `update/<variable>`; empty unless the trace is for training.
    pub updates: Vec<(String, Tensor)>,
    /// Batch size of the trace.
    pub batch: usize,
}

impl Trace {
    /// Verifies and returns the graph. Nodes emitted in `call` that feed only
    /// an added loss (not a prediction) get that loss's `added_loss` role;
    /// those feeding only state updates get the `state_update` role.
    pub fn finish(self) -> Result<Graph> {
        let roots: Vec<NodeId> = self.preds.iter().map(|p| p.1.id()).collect();
        // Roots of the non-prediction parts, with the role their nodes get.
        let side: Vec<(NodeId, Role)> = self
            .losses
            .iter()
            .map(|(l, t)| {
                (
                    t.id(),
                    Role::AddedLoss {
                        reason: l.reason,
                        call: l.call,
                    },
                )
            })
            .chain(
                self.updates
                    .iter()
                    .map(|(_, t)| (t.id(), Role::StateUpdate)),
            )
            .collect();
        let mut g = self.builder.finish().map_err(|e| Error::Ir {
            layer: "<model>".into(),
            source: e,
        })?;
        let forward = ancestors(&g, &roots);
        let mut done = HashSet::new();
        for (root, role) in side {
            for id in ancestors(&g, &[root]) {
                if forward.contains(&id) || !done.insert(id) {
                    continue;
                }
                let n = g.node_mut(id);
                if n.role == Role::Forward {
                    n.role = role.clone();
                }
            }
        }
        Ok(g)
    }
}

/// All nodes reachable backwards from `roots` (roots included).
pub(crate) fn ancestors(g: &Graph, roots: &[NodeId]) -> HashSet<NodeId> {
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut stack: Vec<NodeId> = roots.to_vec();
    while let Some(id) = stack.pop() {
        if g.contains(id) && seen.insert(id) {
            stack.extend(g.operands(id));
        }
    }
    seen
}

/// Keras's `to_snake_case` (`keras.src.utils.naming`): drop non-word
/// characters, then `_` before a capital starting a lowercase run
/// (`(.)([A-Z][a-z]+)`), then between a lowercase letter and a capital
/// (`([a-z])([A-Z])`), then lowercase: `Conv2D` → `conv2d`,
/// `MaxPooling2D` → `max_pooling2d`, `Conv2DTranspose` → `conv2d_transpose`.
pub(crate) fn snake_case(class: &str) -> String {
    let s: Vec<char> = class
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // Pass 1: leftmost non-overlapping matches of (.)([A-Z][a-z]+).
    let mut a: Vec<char> = Vec::with_capacity(s.len() + 4);
    let mut i = 0;
    while i < s.len() {
        let starts_run =
            i + 2 < s.len() && s[i + 1].is_ascii_uppercase() && s[i + 2].is_ascii_lowercase();
        if starts_run {
            a.extend([s[i], '_', s[i + 1]]);
            i += 2;
            while i < s.len() && s[i].is_ascii_lowercase() {
                a.push(s[i]);
                i += 1;
            }
        } else {
            a.push(s[i]);
            i += 1;
        }
    }
    // Pass 2: leftmost non-overlapping matches of ([a-z])([A-Z]).
    let mut b = String::with_capacity(a.len() + 4);
    let mut i = 0;
    while i < a.len() {
        if i + 1 < a.len() && a[i].is_ascii_lowercase() && a[i + 1].is_ascii_uppercase() {
            b.push(a[i]);
            b.push('_');
            b.push(a[i + 1]);
            i += 2;
        } else {
            b.push(a[i]);
            i += 1;
        }
    }
    b.to_lowercase()
}

/// Keras-style automatic name: `snake_case(class)`, then `_1`, `_2`, … if taken.
pub(crate) fn auto_name(class: &str, taken: &HashSet<String>) -> String {
    let mut base = snake_case(class);
    if base == "input_layer" || base.is_empty() {
        base = "input_layer".into();
    }
    if !taken.contains(&base) {
        return base;
    }
    (1..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken.contains(n))
        .expect("an unbounded counter always finds a free name")
}

/// Builds a functional model: declare inputs, call layers on symbolic
/// tensors, then [`Functional::build`] with the outputs.
///
/// ```
/// use lossgraph::layers::{Concatenate, Dense, Input};
/// use lossgraph::Functional;
/// # fn main() -> lossgraph::Result<()> {
/// let mut f = Functional::new("two_tower");
/// let a = f.input(Input::new(&[4]).name("input_a"))?;
/// let b = f.input(Input::new(&[3]).name("input_b"))?;
/// let ha = f.apply(Dense::new(5).activation("relu"), &[a])?;
/// let hb = f.apply(Dense::new(5).activation("tanh"), &[b])?;
/// let h = f.apply(Concatenate::new(), &[ha, hb])?;
/// let out = f.apply(Dense::new(2).name("out"), &[h])?;
/// let model = f.build(&[out])?;
/// assert_eq!(model.output_names(), vec!["out".to_string()]);
/// # Ok(()) }
/// ```
pub struct Functional {
    name: String,
    layers: Vec<LayerSlot>,
    values: Vec<Value>,
    inputs: Vec<ModelInput>,
    nodes: Vec<CallNode>,
    /// Variables, their initial values (the future model's store), build-time losses.
    res: BuildResources,
    model_losses: Vec<ModelLoss>,
    names: HashSet<String>,
}

/// Default seed of the weight initialisers.
pub const DEFAULT_SEED: u64 = 1337;

impl Functional {
    /// An empty functional model.
    pub fn new(name: impl Into<String>) -> Functional {
        Functional {
            name: name.into(),
            layers: Vec::new(),
            values: Vec::new(),
            inputs: Vec::new(),
            nodes: Vec::new(),
            res: BuildResources::new(DEFAULT_SEED),
            model_losses: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Seeds the weight initialisers of layers built from now on.
    pub fn seed(mut self, seed: u64) -> Functional {
        self.res.rng = crate::initializers::Rng::new(seed);
        self
    }

    /// Declares a model input.
    pub fn input(&mut self, input: crate::layers::Input) -> Result<SymbolicTensor> {
        let shape = input.shape().to_vec();
        let dtype = input.element_type();
        let id = self.add_layer(input)?;
        self.layers[id.0].is_input = true;
        self.layers[id.0].built = true;
        let v = self.values.len();
        self.values.push(Value {
            shape,
            producer: Producer::Input(self.inputs.len()),
        });
        self.inputs.push(ModelInput {
            name: self.layers[id.0].name.clone(),
            value: v,
            dtype,
        });
        Ok(SymbolicTensor(v))
    }

    /// Registers a layer without calling it (to call it several times).
    pub fn add_layer(&mut self, layer: impl Layer + 'static) -> Result<LayerId> {
        self.add_boxed(Box::new(layer))
    }

    /// [`add_layer`](Self::add_layer) for a boxed layer.
    pub fn add_boxed(&mut self, layer: Box<dyn Layer>) -> Result<LayerId> {
        let class = layer.class_name();
        let name = match layer.name() {
            Some(n) => {
                if n.is_empty() || n.contains('/') {
                    return Err(Error::layer(
                        n,
                        "invalid layer name (must be non-empty, without '/')",
                    ));
                }
                if self.names.contains(n) {
                    return Err(Error::layer(
                        n,
                        format!("the name is used twice in model '{}'", self.name),
                    ));
                }
                n.to_string()
            }
            None => auto_name(&class, &self.names),
        };
        self.names.insert(name.clone());
        self.layers.push(LayerSlot {
            name,
            class,
            layer,
            built: false,
            is_input: false,
        });
        Ok(LayerId(self.layers.len() - 1))
    }

    /// The per-sample shape of a symbolic tensor.
    pub fn shape(&self, t: SymbolicTensor) -> &[usize] {
        &self.values[t.0].shape
    }

    /// The name of a registered layer.
    pub fn layer_name(&self, id: LayerId) -> &str {
        &self.layers[id.0].name
    }

    /// Registers `layer` and calls it on `inputs`.
    pub fn apply(
        &mut self,
        layer: impl Layer + 'static,
        inputs: &[SymbolicTensor],
    ) -> Result<SymbolicTensor> {
        let id = self.add_layer(layer)?;
        self.call(id, inputs)
    }

    /// Registers `layer` and calls it on `inputs`; returns every tensor it
    /// returns (Keras's `z_mean, z_log_var, z = encoder(x)`).
    pub fn apply_outputs(
        &mut self,
        layer: impl Layer + 'static,
        inputs: &[SymbolicTensor],
    ) -> Result<Vec<SymbolicTensor>> {
        let id = self.add_layer(layer)?;
        self.call_outputs(id, inputs)
    }

    /// Calls a registered layer on `inputs` (building it on its first call) and
    /// returns its output; a layer returning several tensors is an error
    /// pointing to [`call_outputs`](Self::call_outputs). Errors name the
    /// layer and the shapes involved.
    pub fn call(&mut self, id: LayerId, inputs: &[SymbolicTensor]) -> Result<SymbolicTensor> {
        let outs = self.call_outputs(id, inputs)?;
        match outs.as_slice() {
            [one] => Ok(*one),
            _ => Err(Error::layer(
                &self.layers[id.0].name,
                format!(
                    "returns {} tensors; call it with call_outputs (or apply_outputs)",
                    outs.len()
                ),
            )),
        }
    }

    /// [`call`](Self::call) returning every tensor the layer returns, in order.
    pub fn call_outputs(
        &mut self,
        id: LayerId,
        inputs: &[SymbolicTensor],
    ) -> Result<Vec<SymbolicTensor>> {
        let li = id.0;
        let Some(slot) = self.layers.get(li) else {
            return Err(Error::config(
                "layer",
                format!("layer id of another model (model '{}')", self.name),
            ));
        };
        let name = slot.name.clone();
        if slot.is_input {
            return Err(Error::layer(&name, "an Input cannot be called"));
        }
        if inputs.iter().any(|t| t.0 >= self.values.len()) {
            return Err(Error::layer(&name, "called on a tensor of another model"));
        }
        let shapes: Vec<Vec<usize>> = inputs
            .iter()
            .map(|t| self.values[t.0].shape.clone())
            .collect();
        if !self.layers[li].built {
            let mut ctx = self.res.ctx(&name, li, true);
            self.layers[li].layer.build_multi(&mut ctx, &shapes)?;
            self.layers[li].built = true;
        }
        let out_shapes = self.infer_output_shapes(li, &shapes)?;
        let node = self.nodes.len();
        let first = self.values.len();
        for (k, shape) in out_shapes.into_iter().enumerate() {
            self.values.push(Value {
                shape,
                producer: Producer::Call(node, k),
            });
        }
        let outputs: Vec<usize> = (first..self.values.len()).collect();
        self.nodes.push(CallNode {
            layer: li,
            inputs: inputs.iter().map(|t| t.0).collect(),
            outputs: outputs.clone(),
        });
        Ok(outputs.into_iter().map(SymbolicTensor).collect())
    }

    /// Adds a model-level loss on symbolic tensors (Keras 2's
    /// `model.add_loss(tf.reduce_mean(h))` on a functional model; Keras 3
    /// dropped it, lossgraph keeps it): `f` maps the traced values of
    /// `inputs` to a loss (summed when not scalar), re-evaluated in every
    /// trace. It is owned by the model (its name is the owner in
    /// [`Model::losses`], after every layer's losses) and is not weighted.
    pub fn add_loss(
        &mut self,
        inputs: &[SymbolicTensor],
        f: impl Fn(&[Tensor]) -> Tensor + 'static,
    ) -> Result<()> {
        if inputs.iter().any(|t| t.0 >= self.values.len()) {
            return Err(Error::config(
                "add_loss",
                format!("a tensor of another model (model '{}')", self.name),
            ));
        }
        self.model_losses.push(ModelLoss {
            inputs: inputs.iter().map(|t| t.0).collect(),
            f: Rc::new(f),
        });
        Ok(())
    }

    /// Traces one call of layer `li` on a scratch graph (batch 2) to learn
    /// its output shapes. The trace holds the build resources meanwhile, so
    /// sub-layers called for the first time are built.
    fn infer_output_shapes(&mut self, li: usize, shapes: &[Vec<usize>]) -> Result<Vec<Vec<usize>>> {
        let b = Builder::new("shape_inference");
        let mut st = new_trace_state(&b, true, 2);
        bind_variables(
            &mut st,
            self.res.vars.iter().filter(|v| v.layer_index == li),
        );
        let ins: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut full = vec![2];
                full.extend_from_slice(s);
                b.input(&format!("in{i}"), TensorType::f32(&full))
            })
            .collect();
        // A layer computes on its input shapes: refuse oversized ones first.
        b.check().map_err(|e| Error::Ir {
            layer: self.layers[li].name.clone(),
            source: e,
        })?;
        st.build = Some(std::mem::replace(
            &mut self.res,
            BuildResources::new(DEFAULT_SEED),
        ));
        let slot = &self.layers[li];
        let outs = invoke(&mut st, &slot.name, li, slot.layer.as_ref(), &ins);
        if let Some(res) = st.build.take() {
            self.res = res;
        }
        let outs = outs?;
        if outs.is_empty() {
            return Err(Error::layer(&slot.name, "returns no tensor"));
        }
        outs.iter()
            .map(|out| match out.shape().split_first() {
                Some((2, rest)) => Ok(rest.to_vec()),
                _ => Err(Error::layer(
                    &slot.name,
                    format!(
                        "output {} does not keep the batch axis of inputs {:?}",
                        out.ty(),
                        shapes
                    ),
                )),
            })
            .collect()
    }

    /// Finishes the model with the given outputs (all declared inputs are model inputs, in order).
    pub fn build(self, outputs: &[SymbolicTensor]) -> Result<Model> {
        if self.inputs.is_empty() {
            return Err(Error::config(
                "model",
                format!("model '{}' has no input", self.name),
            ));
        }
        if outputs.is_empty() {
            return Err(Error::config(
                "model",
                format!("model '{}' has no output", self.name),
            ));
        }
        let mut outs = Vec::new();
        for o in outputs {
            let Some(val) = self.values.get(o.0) else {
                return Err(Error::config("model", "output tensor of another model"));
            };
            let name = match val.producer {
                Producer::Call(n, k) => {
                    let node = &self.nodes[n];
                    let layer = &self.layers[node.layer].name;
                    if node.outputs.len() == 1 {
                        layer.clone()
                    } else {
                        format!("{layer}_{k}")
                    }
                }
                Producer::Input(i) => self.inputs[i].name.clone(),
            };
            if outs.iter().any(|(n, _)| *n == name) {
                return Err(Error::config(
                    "model",
                    format!("output name '{name}' is used twice (call the output layer once per output)"),
                ));
            }
            outs.push((name, o.0));
        }
        let mut vars = self.res.vars;
        vars.sort_by_key(|v| v.layer_index);
        Ok(Model {
            name: self.name,
            kind: "Functional",
            layers: self.layers,
            values: self.values,
            inputs: self.inputs,
            nodes: self.nodes,
            outputs: outs,
            vars,
            store: self.res.store,
            build_losses: self.res.build_losses,
            model_losses: self.model_losses,
            train: TrainState::default(),
        })
    }
}

/// A plain stack of layers (Keras `Sequential`). The first layer must be an
/// [`Input`](crate::layers::Input) (or use [`Sequential::build_with_input`]).
///
/// ```
/// use lossgraph::layers::{Dense, Input};
/// use lossgraph::{Regularizer, Sequential};
/// # fn main() -> lossgraph::Result<()> {
/// let model = Sequential::new("mlp")
///     .add(Input::new(&[3]))
///     .add(Dense::new(8).activation("relu").kernel_regularizer(Regularizer::L2(0.01)))
///     .add(Dense::new(2).activation("softmax"))
///     .build()?;
/// assert_eq!(model.count_params(), 3 * 8 + 8 + 8 * 2 + 2);
/// # Ok(()) }
/// ```
pub struct Sequential {
    name: String,
    seed: u64,
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty stack.
    pub fn new(name: impl Into<String>) -> Sequential {
        Sequential {
            name: name.into(),
            seed: DEFAULT_SEED,
            layers: Vec::new(),
        }
    }

    /// Seeds the weight initialisers.
    pub fn seed(mut self, seed: u64) -> Sequential {
        self.seed = seed;
        self
    }

    /// Appends a layer (Keras's `model.add`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Layer + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a boxed layer (for importers).
    pub fn push(&mut self, layer: Box<dyn Layer>) {
        self.layers.push(layer);
    }

    /// Builds the model; the first layer must be an `Input`.
    pub fn build(self) -> Result<Model> {
        let Some(shape) = self
            .layers
            .first()
            .and_then(|l| l.input_shape())
            .map(|s| s.to_vec())
        else {
            return Err(Error::config(
                "model",
                format!(
                    "Sequential '{}' needs an Input as its first layer (or build_with_input)",
                    self.name
                ),
            ));
        };
        let mut layers = self.layers;
        let first = layers.remove(0);
        let mut input = crate::layers::Input::new(&shape).dtype(first.input_dtype());
        if let Some(n) = first.name() {
            input = input.name(n);
        }
        Self::assemble(self.name, self.seed, input, layers)
    }

    /// Builds the model for per-sample inputs of `shape` (when no `Input` layer was added).
    pub fn build_with_input(self, shape: &[usize]) -> Result<Model> {
        Self::assemble(
            self.name,
            self.seed,
            crate::layers::Input::new(shape),
            self.layers,
        )
    }

    fn assemble(
        name: String,
        seed: u64,
        input: crate::layers::Input,
        layers: Vec<Box<dyn Layer>>,
    ) -> Result<Model> {
        let mut f = Functional::new(name).seed(seed);
        let mut x = f.input(input)?;
        if layers.is_empty() {
            return Err(Error::config("model", "Sequential model has no layers"));
        }
        for l in layers {
            if l.input_shape().is_some() {
                return Err(Error::config(
                    "model",
                    "an Input can only be the first layer of a Sequential",
                ));
            }
            let id = f.add_boxed(l)?;
            x = f.call(id, &[x])?;
        }
        let mut m = f.build(&[x])?;
        m.kind = "Sequential";
        Ok(m)
    }
}

/// A built model: layers, their call graph, and their variables.
///
/// Invariants: `vars` is in trainable-weight order (layer order, then
/// creation order). `store` is the one home of every variable value: each of
/// `vars` (registered at build with its type), the optimiser slots (registered
/// when a training program is compiled) and any other state a program
/// declares. Every program of the model (each purpose and batch size) runs
/// against it, so switching programs copies nothing; host reads and writes
/// (`get_weight`, `set_weight`, weights files) go through it and are counted
/// ([`Model::variable_copies`]).
pub struct Model {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) layers: Vec<LayerSlot>,
    pub(crate) values: Vec<Value>,
    pub(crate) inputs: Vec<ModelInput>,
    pub(crate) nodes: Vec<CallNode>,
    pub(crate) outputs: Vec<(String, usize)>,
    pub(crate) vars: Vec<Variable>,
    pub(crate) store: VariableStore,
    pub(crate) build_losses: Vec<BuildLoss>,
    pub(crate) model_losses: Vec<ModelLoss>,
    pub(crate) train: TrainState,
}

pub(crate) fn new_trace_state(b: &Builder, training: bool, batch: usize) -> TraceState {
    let prev = b.set_role(Role::Forward);
    let fallback = b.scalar(0.0);
    b.set_role(prev);
    TraceState {
        b: b.clone(),
        params: HashMap::new(),
        training,
        batch,
        losses: Vec::new(),
        calls: HashMap::new(),
        fallback,
        rng_step: None,
        replicas: 1,
        shard_weight: None,
        state: HashSet::new(),
        trainable: HashSet::new(),
        updates: Vec::new(),
        build: None,
    }
}

impl Model {
    /// The model name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Input names, in order (the feed is `x` for one input, else `x/<name>`).
    pub fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|i| i.name.clone()).collect()
    }

    /// Per-sample input shapes, in input order.
    pub fn input_shapes(&self) -> Vec<Vec<usize>> {
        self.inputs
            .iter()
            .map(|i| self.values[i.value].shape.clone())
            .collect()
    }

    /// Input element types, in input order.
    pub fn input_dtypes(&self) -> Vec<DType> {
        self.inputs.iter().map(|i| i.dtype).collect()
    }

    /// Output names (the output layers' names), in order.
    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.0.clone()).collect()
    }

    /// Per-sample output shapes, in output order.
    pub fn output_shapes(&self) -> Vec<Vec<usize>> {
        self.outputs
            .iter()
            .map(|o| self.values[o.1].shape.clone())
            .collect()
    }

    /// Layer names in `model.layers` order (inputs included, as in a Keras functional model).
    pub fn layer_names(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.name.clone()).collect()
    }

    /// Feed name of input `i`: `x` for a single-input model, else `x/<name>`.
    pub fn input_feed_name(&self, i: usize) -> String {
        if self.inputs.len() == 1 {
            "x".into()
        } else {
            format!("x/{}", self.inputs[i].name)
        }
    }

    /// Target feed name of output `i`: `y` for a single-output model, else `y/<name>`.
    pub fn target_feed_name(&self, i: usize) -> String {
        if self.outputs.len() == 1 {
            "y".into()
        } else {
            format!("y/{}", self.outputs[i].0)
        }
    }

    /// Sample-weight feed name of output `i` in a weighted program:
    /// `sample_weight` for a single-output model, else `sample_weight/<name>`.
    pub fn sample_weight_feed_name(&self, i: usize) -> String {
        if self.outputs.len() == 1 {
            "sample_weight".into()
        } else {
            format!("sample_weight/{}", self.outputs[i].0)
        }
    }

    /// All variables (weights), in trainable-weight order; their values are
    /// read with [`Model::get_weight`].
    pub fn variables(&self) -> &[Variable] {
        &self.vars
    }

    /// Trainable variables' full names, in order.
    pub fn trainable_weight_names(&self) -> Vec<String> {
        self.vars
            .iter()
            .filter(|v| v.trainable)
            .map(|v| v.path.clone())
            .collect()
    }

    /// A copy of the current value of variable `path` (`dense_1/kernel`),
    /// read from the model's store.
    pub fn get_weight(&self, path: &str) -> Option<HostTensor> {
        self.vars.iter().find(|v| v.path == path)?;
        self.store.read(path)
    }

    /// Host↔store variable copies so far: every `get_weight`/`set_weight`,
    /// weights-file read or write and initial value counts; training,
    /// evaluating and predicting (any program, any batch size) copy nothing.
    pub fn variable_copies(&self) -> CopyCount {
        self.store.copies()
    }

    /// Replaces variable `path`; the type must match exactly.
    pub fn set_weight(&mut self, path: &str, value: HostTensor) -> Result<()> {
        let Some(v) = self.vars.iter().find(|v| v.path == path) else {
            return Err(Error::config(
                "weight",
                format!("model '{}' has no variable '{path}'", self.name),
            ));
        };
        if v.ty != value.ty {
            return Err(Error::config(
                "weight",
                format!("'{path}' is {}, got {}", v.ty, value.ty),
            ));
        }
        self.store
            .set(path, &value)
            .map_err(|e| Error::runtime("set_weight", e))
    }

    /// Freezes or unfreezes every weight of a layer (its weight regularisers
    /// stop counting while frozen, as in Keras; state variables stay
    /// untrainable). Compiled programs are dropped.
    pub fn set_trainable(&mut self, layer: &str, trainable: bool) -> Result<()> {
        let mut found = false;
        for v in self
            .vars
            .iter_mut()
            .filter(|v| v.layer == layer || v.layer.starts_with(&format!("{layer}/")))
        {
            v.trainable = trainable && v.kind == VariableKind::Weight;
            found = true;
        }
        if !found && !self.layers.iter().any(|l| l.name == layer) {
            return Err(Error::config(
                "layer",
                format!("model '{}' has no layer '{layer}'", self.name),
            ));
        }
        self.train.invalidate_programs();
        Ok(())
    }

    /// Total number of scalar weights.
    pub fn count_params(&self) -> usize {
        self.vars.iter().map(|v| v.ty.numel()).sum()
    }

    /// Traces the model into a new graph for a batch of `batch` samples.
    /// `training` enables dropout. See the module docs for names and roles.
    pub fn trace(&self, training: bool, batch: usize) -> Result<Trace> {
        if batch == 0 {
            return Err(Error::config("batch size", "must be at least 1"));
        }
        let b = Builder::new(format!(
            "{}_{}",
            self.name,
            if training { "train" } else { "infer" }
        ));
        let mut st = new_trace_state(&b, training, batch);
        if training {
            st.replicas = self.ranks();
        }
        let params = bind_variables(&mut st, &self.vars);
        b.set_scope("");
        let mut inputs = Vec::new();
        for (i, inp) in self.inputs.iter().enumerate() {
            let mut shape = vec![batch];
            shape.extend_from_slice(&self.values[inp.value].shape);
            let name = self.input_feed_name(i);
            let t = b.input(&name, TensorType::new(inp.dtype, &shape));
            inputs.push((name, t));
        }
        b.check().map_err(|e| Error::Ir {
            layer: "<inputs>".into(),
            source: e,
        })?;
        let ins: Vec<Tensor> = inputs.iter().map(|i| i.1.clone()).collect();
        let outs = self.run_graph(&mut st, None, &ins)?;
        for bl in &self.build_losses {
            eval_build_loss(&mut st, bl)?;
        }
        for v in self.vars.iter().filter(|v| v.trainable) {
            let Some(reg) = &v.regularizer else { continue };
            let reason = if v.name == "bias" {
                LossReason::BiasRegularizer
            } else {
                LossReason::KernelRegularizer
            };
            b.set_scope(v.layer.as_str());
            let value = b.with_role(Role::AddedLoss { reason, call: 0 }, || {
                reg.apply(&st.params[&v.path])
            });
            b.set_scope("");
            b.check().map_err(|e| Error::Ir {
                layer: v.layer.clone(),
                source: e,
            })?;
            st.losses.push(PendingLoss {
                layer_index: v.layer_index,
                phase: 2,
                owner: v.layer.clone(),
                reason,
                call: 0,
                variable: Some(v.path.clone()),
                value,
            });
        }
        // Keras's order: every activity/add_loss entry (layer order; call-time
        // before build-time within a layer), then weight regularisers in
        // trainable-weight order.
        let mut pending = std::mem::take(&mut st.losses);
        pending.sort_by_key(|p| (p.phase == 2, p.layer_index, p.phase));
        let mut losses = Vec::new();
        for (i, p) in pending.into_iter().enumerate() {
            let output = lossgraph_ir::names::added(i);
            b.output(&output, &p.value);
            losses.push((
                AddedLoss {
                    owner: p.owner,
                    reason: p.reason,
                    call: p.call,
                    variable: p.variable,
                    output,
                },
                p.value,
            ));
        }
        let mut preds = Vec::new();
        for ((name, _), t) in self.outputs.iter().zip(outs) {
            b.output(&lossgraph_ir::names::pred(name), &t);
            preds.push((name.clone(), t));
        }
        let updates = std::mem::take(&mut st.updates);
        for (var, t) in &updates {
            b.output(&lossgraph_ir::names::update(var), t);
        }
        b.check().map_err(|e| Error::Ir {
            layer: "<outputs>".into(),
            source: e,
        })?;
        Ok(Trace {
            builder: b,
            inputs,
            preds,
            losses,
            params,
            updates,
            batch,
        })
    }

    /// Emits the model's layer calls on `inputs` into `st` and returns its
    /// outputs. `nested` is `(path, layer index, call)` when the model is a
    /// layer of another model: its layers are then `<path>/<layer>`, their
    /// losses count as the outer layer's, and its model-level losses are
    /// owned by `path`; at top level the model's name owns them, after
    /// every layer.
    pub(crate) fn run_graph(
        &self,
        st: &mut TraceState,
        nested: Option<(&str, usize, u32)>,
        inputs: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let batch = st.batch;
        let mut env: HashMap<usize, Tensor> = HashMap::new();
        for (inp, t) in self.inputs.iter().zip(inputs) {
            env.insert(inp.value, t.clone());
        }
        for node in &self.nodes {
            let slot = &self.layers[node.layer];
            let (path, layer_index) = match nested {
                Some((p, li, _)) => (format!("{p}/{}", slot.name), li),
                None => (slot.name.clone(), node.layer),
            };
            let ins: Vec<Tensor> = node
                .inputs
                .iter()
                .map(|v| {
                    env.get(v)
                        .cloned()
                        .ok_or_else(|| Error::layer(&path, "input is not computed before the call"))
                })
                .collect::<Result<_>>()?;
            let outs = invoke(st, &path, layer_index, slot.layer.as_ref(), &ins)?;
            if outs.len() != node.outputs.len() {
                return Err(Error::layer(
                    &path,
                    format!(
                        "returns {} tensors, {} at build time",
                        outs.len(),
                        node.outputs.len()
                    ),
                ));
            }
            for (v, out) in node.outputs.iter().zip(outs) {
                let want = &self.values[*v].shape;
                if out.shape().first() != Some(&batch) || &out.shape()[1..] != want.as_slice() {
                    return Err(Error::layer(
                        &path,
                        format!(
                            "output {} differs from the shape [{batch}, {:?}] recorded at build time",
                            out.ty(),
                            want
                        ),
                    ));
                }
                env.insert(*v, out);
            }
        }
        let (owner, layer_index, call) = match nested {
            Some((p, li, call)) => (p.to_string(), li, call),
            None => (self.name.clone(), self.layers.len(), 0),
        };
        for ml in &self.model_losses {
            let ins: Vec<Tensor> = ml.inputs.iter().map(|v| env[v].clone()).collect();
            let role = Role::AddedLoss {
                reason: LossReason::AddLoss,
                call,
            };
            let prev = st.b.set_scope(owner.as_str());
            let value = st.b.with_role(role, || {
                let v = (ml.f)(&ins);
                if v.rank() > 0 {
                    v.sum_all()
                } else {
                    v
                }
            });
            st.b.set_scope(prev);
            st.b.check().map_err(|e| Error::Ir {
                layer: owner.clone(),
                source: e,
            })?;
            st.losses.push(PendingLoss {
                layer_index,
                phase: 0,
                owner: owner.clone(),
                reason: LossReason::AddLoss,
                call,
                variable: None,
                value,
            });
        }
        Ok(self.outputs.iter().map(|(_, v)| env[v].clone()).collect())
    }

    /// The model's added losses in Keras's `model.losses` order: activity and
    /// `add_loss` entries in layer order (every call of a shared layer
    /// counts, unlike Keras's JAX training path, which keeps only the last
    /// call's), then weight regularisers in trainable-weight order. Within a
    /// layer, losses added in `call` come before those added in `build`; the
    /// sub-layers of a nested layer are listed with it, in call order (Keras
    /// lists nested models' children in reverse; lossgraph does not copy that).
    pub fn losses(&self) -> Result<Vec<AddedLoss>> {
        Ok(self
            .trace(true, 2)?
            .losses
            .into_iter()
            .map(|l| l.0)
            .collect())
    }

    /// Keras's `model.summary()` text at Keras's non-terminal line length
    /// ([`crate::summary::DEFAULT_LINE_LENGTH`]); see
    /// [`Model::summary_with_line_length`].
    pub fn summary(&self) -> Result<String> {
        self.summary_with_line_length(crate::summary::DEFAULT_LINE_LENGTH)
    }

    /// Keras's `model.summary(line_length=...)`, character for character:
    /// one row per layer (a `Sequential` lists no input layer) with its
    /// output shape and parameter count, a "Connected to" column when the
    /// model branches (several inputs, a layer with several inputs, a value
    /// used twice or a shared layer), then the total, trainable and
    /// non-trainable parameter counts with their sizes. Unlike Keras, the
    /// added losses (activity and weight regularisers, `add_loss`) follow, in
    /// `model.losses` order, when there are any. No "Optimizer params" line.
    pub fn summary_with_line_length(&self, line_length: usize) -> Result<String> {
        let losses = self.losses()?;
        let sequential = self.kind == "Sequential";
        let mut used = vec![0usize; self.values.len()];
        let mut calls = vec![0usize; self.layers.len()];
        for n in &self.nodes {
            calls[n.layer] += 1;
            for &v in &n.inputs {
                used[v] += 1;
            }
        }
        let branching = !sequential
            && (self.inputs.len() > 1
                || self.nodes.iter().any(|n| n.inputs.len() != 1)
                || used.iter().any(|&u| u > 1)
                || calls.iter().any(|&c| c > 1));
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (li, slot) in self.layers.iter().enumerate() {
            if slot.is_input && sequential {
                continue;
            }
            let shape = if slot.is_input {
                self.inputs
                    .iter()
                    .find(|i| i.name == slot.name)
                    .map(|i| fmt_shape(&self.values[i.value].shape))
                    .unwrap_or_default()
            } else {
                // Keras shows the output of the layer's last call.
                self.nodes
                    .iter()
                    .rfind(|n| n.layer == li)
                    .map(|n| match n.outputs.as_slice() {
                        [v] => fmt_shape(&self.values[*v].shape),
                        vs => {
                            let shapes: Vec<String> = vs
                                .iter()
                                .map(|v| fmt_shape(&self.values[*v].shape))
                                .collect();
                            format!("[{}]", shapes.join(", "))
                        }
                    })
                    .unwrap_or_else(|| "?".into())
            };
            let params: usize = self
                .vars
                .iter()
                .filter(|v| v.layer_index == li)
                .map(|v| v.ty.numel())
                .sum();
            let mut row = vec![
                format!("{} ({})", slot.name, slot.class),
                shape,
                crate::summary::thousands(params),
            ];
            if branching {
                let connected: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|n| n.layer == li)
                    .flat_map(|n| n.inputs.iter().map(|v| self.value_name(*v)))
                    .collect();
                row.push(if connected.is_empty() {
                    "-".into()
                } else {
                    connected.join(", ")
                });
            }
            rows.push(row);
        }
        let all = &crate::summary::COLUMNS;
        let columns = if branching { &all[..] } else { &all[..3] };
        let mut out = crate::summary::table(&self.name, columns, &rows, line_length)?;
        let size = |trainable: bool| -> (usize, usize) {
            self.vars
                .iter()
                .filter(|v| v.trainable == trainable)
                .fold((0, 0), |(n, b), v| {
                    let k = v.ty.numel();
                    (n + k, b + k * v.ty.dtype.size_bytes())
                })
        };
        out.push_str(&crate::summary::counts(size(true), size(false)));
        if !losses.is_empty() {
            let _ = writeln!(
                out,
                " Added losses ({}), in model.losses order:",
                losses.len()
            );
            for l in &losses {
                let what = match &l.variable {
                    Some(v) => format!("{} {}", l.reason.name(), v),
                    None => format!("{} of {} (call {})", l.reason.name(), l.owner, l.call),
                };
                let _ = writeln!(out, "   {}: {what}", l.output);
            }
        }
        Ok(out)
    }

    fn value_name(&self, v: usize) -> String {
        match self.values[v].producer {
            Producer::Input(i) => format!("{}[0][0]", self.inputs[i].name),
            Producer::Call(n, k) => {
                let node = &self.nodes[n];
                let idx = self.nodes[..n]
                    .iter()
                    .filter(|m| m.layer == node.layer)
                    .count();
                format!("{}[{idx}][{k}]", self.layers[node.layer].name)
            }
        }
    }
}

fn fmt_shape(s: &[usize]) -> String {
    let mut parts = vec!["None".to_string()];
    parts.extend(s.iter().map(|d| d.to_string()));
    if parts.len() == 1 {
        "(None,)".into()
    } else {
        format!("({})", parts.join(", "))
    }
}

/// A built model is a layer (Keras's nested models): building it inside
/// another model takes over its variables (current values), build-time
/// losses and regularisers under the path it is called at
/// (`vae/encoder/dense/kernel`); calling it runs its layers there, with
/// their added losses and state updates, and its model-level losses.
impl Layer for Model {
    fn class_name(&self) -> String {
        self.kind.to_string()
    }

    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn build_multi(&mut self, ctx: &mut BuildCtx<'_>, input_shapes: &[Vec<usize>]) -> Result<()> {
        let want = self.input_shapes();
        if input_shapes != want.as_slice() {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "model '{}' takes inputs of per-sample shapes {want:?}, called on {input_shapes:?}",
                    self.name
                ),
            ));
        }
        for v in &self.vars {
            let value = self.store.read(&v.path).ok_or_else(|| {
                Error::layer(ctx.path(), format!("variable '{}' has no value", v.path))
            })?;
            ctx.adopt(v, &value)?;
        }
        for bl in &self.build_losses {
            ctx.adopt_loss(&bl.owner, bl.f.clone());
        }
        Ok(())
    }

    fn call_outputs(&self, ctx: &mut CallCtx<'_>, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "model '{}' has {} input(s), called on {}",
                    self.name,
                    self.inputs.len(),
                    inputs.len()
                ),
            ));
        }
        let path = ctx.path.clone();
        self.run_graph(ctx.st, Some((&path, ctx.layer_index, ctx.call)), inputs)
    }
}
