//! The [`Layer`] trait and the contexts it is built and called in.
//!
//! A layer has Keras's life cycle: [`Layer::build`] runs once, with the
//! per-sample input shape (no batch axis), and creates weights with
//! [`BuildCtx::add_weight`]; [`Layer::call`] runs every time the model is
//! *traced* (once per compiled program: training or inference, per batch
//! size) and emits IR on symbolic [`Tensor`]s. Weights live in the model as
//! named host values (`<layer path>/<variable>`); each trace binds them to
//! fresh `param` nodes, which [`CallCtx::weight`] returns.
//!
//! Added losses: [`BuildCtx::add_loss`] takes a closure over the weights
//! (re-evaluated in every trace), [`CallCtx::add_loss`] takes a tensor computed
//! in `call` (activations, weights or both). Every added loss becomes nodes
//! with role `added_loss` in the owning layer's scope.
//!
//! Variables come in two kinds ([`VariableKind`]): *weights*
//! ([`BuildCtx::add_weight`]), which the optimiser trains while they are
//! trainable, and *state* ([`BuildCtx::add_state`]: running statistics such
//! as BatchNormalization's moving mean), which is never trained and changes
//! only through [`CallCtx::assign`] in training steps.

use crate::error::{Error, Result};
use crate::initializers::{Init, Rng};
use crate::regularizers::Regularizer;
use crate::sublayer::Sublayer;
use lossgraph_ir::names::SHARD_WEIGHT_INPUT;
use lossgraph_ir::{Builder, DType, HostTensor, IrError, LossReason, Role, Tensor, TensorType};
use lossgraph_runtime::{budget, VariableStore};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// A Keras-style layer. Implement `build` (optional) and `call`; layers with
/// several inputs (Add, Concatenate) override `build_multi`/`call_multi`.
///
/// Invariants: `build` is called exactly once before the first `call`; `call`
/// must not keep tensors between calls (each trace has its own graph).
pub trait Layer {
    /// The Keras class name (`"Dense"`); used for automatic names and summaries.
    /// Defaults to the Rust type name.
    fn class_name(&self) -> String {
        let full = std::any::type_name::<Self>();
        let base = full.split('<').next().unwrap_or(full);
        base.rsplit("::").next().unwrap_or(base).to_string()
    }

    /// The layer's name if the user chose one; otherwise the model assigns
    /// `snake_case(class_name)` with a Keras-style counter suffix.
    fn name(&self) -> Option<&str> {
        None
    }

    /// Creates the layer's weights for a per-sample input shape (batch axis excluded).
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let _ = (ctx, input_shape);
        Ok(())
    }

    /// Emits the layer's computation on a batch `inputs` (batch axis first).
    /// A layer implements this, [`call_multi`](Self::call_multi) (several
    /// inputs) or [`call_outputs`](Self::call_outputs) (several outputs);
    /// the default is an error naming the layer.
    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let _ = inputs;
        Err(Error::layer(
            ctx.path(),
            format!(
                "{} implements none of call, call_multi and call_outputs",
                self.class_name()
            ),
        ))
    }

    /// `build` for layers taking several inputs: the default builds with
    /// [`build`](Self::build) for one input and does nothing for several (a
    /// layer without weights, such as an endpoint computing a loss from
    /// targets and logits; a single-input layer is refused when called).
    fn build_multi(&mut self, ctx: &mut BuildCtx<'_>, input_shapes: &[Vec<usize>]) -> Result<()> {
        match input_shapes {
            [one] => self.build(ctx, one),
            _ => Ok(()),
        }
    }

    /// `call` for layers taking several inputs; the default accepts exactly one.
    fn call_multi(&self, ctx: &mut CallCtx<'_>, inputs: &[Tensor]) -> Result<Tensor> {
        match inputs {
            [one] => self.call(ctx, one),
            _ => Err(Error::layer(
                ctx.path(),
                format!(
                    "{} takes one input, got {}",
                    self.class_name(),
                    inputs.len()
                ),
            )),
        }
    }

    /// `call` for layers returning several tensors (Keras's tuple-returning
    /// layers: an encoder's `z_mean, z_log_var, z`); the framework always
    /// calls this. The default returns `call_multi`'s one tensor.
    fn call_outputs(&self, ctx: &mut CallCtx<'_>, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![self.call_multi(ctx, inputs)?])
    }

    /// The activity regulariser applied (by the framework, after `call`) to
    /// each of the layer's outputs, divided by the batch size as in Keras 3.
    fn activity_regularizer(&self) -> Option<&Regularizer> {
        None
    }

    /// For input layers only: the per-sample shape they declare.
    fn input_shape(&self) -> Option<&[usize]> {
        None
    }

    /// For input layers only: the element type they declare (`f32` by default).
    fn input_dtype(&self) -> DType {
        DType::F32
    }

    /// For layers that index with an `i32` input (Embedding): the ids must
    /// be in `[0, bound)`. When such a layer reads a model input directly,
    /// the data is checked before every run, and an id outside is an error
    /// naming the sample and value (Keras on JAX gives NaN rows instead).
    fn id_bound(&self) -> Option<usize> {
        None
    }

    /// A one-line description of the configuration, for summaries.
    fn describe(&self) -> String {
        String::new()
    }
}

/// What a variable is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VariableKind {
    /// A weight: trained by the optimiser while `trainable` (frozen otherwise).
    Weight,
    /// Layer state (a running mean): never trainable, never differentiated,
    /// written only by [`CallCtx::assign`] in training steps (Keras's
    /// `add_weight(trainable=False)` + `Variable.assign`).
    State,
}

/// A model variable: what the front end needs to trace it. Its value lives
/// in the model's variable store ([`Model::get_weight`](crate::Model::get_weight)).
/// Invariants: `path == format!("{layer}/{name}")`, and the store holds
/// `path` with type `ty`; a `State` variable is never `trainable` and has no
/// regulariser.
#[derive(Clone, Debug)]
pub struct Variable {
    /// Full name, `<layer path>/<variable>` (e.g. `dense_1/kernel`): the param and safetensors name.
    pub path: String,
    /// The owning layer's path (`outer/inner`).
    pub layer: String,
    /// The short variable name (`kernel`).
    pub name: String,
    /// Its type (the value's, in the store).
    pub ty: TensorType,
    /// Weight or state.
    pub kind: VariableKind,
    /// Whether optimisers update it (and whether its regulariser counts, as in Keras).
    pub trainable: bool,
    /// Its weight regulariser, if any.
    pub regularizer: Option<Regularizer>,
    /// Index of the top-level layer that owns it (orders `model.losses()`).
    pub(crate) layer_index: usize,
}

/// A handle returned by [`BuildCtx::add_weight`]. Store it if you like; in
/// `call`, fetch the traced tensor with `ctx.weight(handle.name())`.
#[derive(Clone, Debug, PartialEq)]
pub struct Weight {
    name: String,
    path: String,
    shape: Vec<usize>,
}

impl Weight {
    /// The short name (`kernel`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The full name (`dense_1/kernel`).
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// A loss registered in `build`: re-evaluated on the weights of every trace.
pub(crate) struct BuildLoss {
    pub owner: String,
    pub layer_index: usize,
    pub f: Rc<dyn Fn(&CallCtx<'_>) -> Tensor>,
}

/// What `build` can do: create weights and weight-only losses, build sub-layers.
pub struct BuildCtx<'a> {
    pub(crate) path: String,
    pub(crate) layer_index: usize,
    pub(crate) trainable: bool,
    pub(crate) vars: &'a mut Vec<Variable>,
    /// Where the initial values go (the future model's store).
    pub(crate) store: &'a mut VariableStore,
    pub(crate) build_losses: &'a mut Vec<BuildLoss>,
    pub(crate) rng: &'a mut Rng,
}

impl BuildCtx<'_> {
    /// The layer path (`outer/inner`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Creates a weight `<path>/<name>` initialised by `init`. Fails on an
    /// empty name, a name containing `/`, or a duplicate.
    pub fn add_weight(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        trainable: bool,
    ) -> Result<Weight> {
        self.add_weight_with(name, shape, init, trainable, None)
    }

    /// [`add_weight`](Self::add_weight) with a weight regulariser. Its loss
    /// counts only while the weight is trainable (as in Keras); a weight named
    /// `bias` gets reason `bias_regularizer`, any other `kernel_regularizer`.
    pub fn add_weight_with(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        trainable: bool,
        regularizer: Option<Regularizer>,
    ) -> Result<Weight> {
        let trainable = trainable && self.trainable;
        self.push_variable(
            name,
            shape,
            init,
            VariableKind::Weight,
            trainable,
            regularizer,
        )
    }

    /// Creates a state variable `<path>/<name>` initialised by `init`
    /// (BatchNormalization's moving mean): never trained, not frozen or
    /// unfrozen by `set_trainable`, updated with [`CallCtx::assign`] in
    /// training steps. Fails like [`add_weight`](Self::add_weight).
    pub fn add_state(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Weight> {
        self.push_variable(name, shape, init, VariableKind::State, false, None)
    }

    fn push_variable(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        kind: VariableKind,
        trainable: bool,
        regularizer: Option<Regularizer>,
    ) -> Result<Weight> {
        if name.is_empty() || name.contains('/') {
            return Err(Error::layer(
                &self.path,
                format!("invalid weight name '{name}' (must be non-empty, without '/')"),
            ));
        }
        let path = format!("{}/{}", self.path, name);
        if self.vars.iter().any(|v| v.path == path) {
            return Err(Error::layer(
                &self.path,
                format!("weight '{name}' is created twice"),
            ));
        }
        let ty = TensorType::new(DType::F32, shape);
        self.reserve(name, &ty)?;
        let value = HostTensor {
            data: lossgraph_ir::Data::F32(init.sample(shape, self.rng)),
            ty,
        };
        self.store
            .register(&path, &value.ty)
            .and_then(|_| self.store.set(&path, &value))
            .map_err(|e| Error::layer(&self.path, format!("weight '{name}': {e}")))?;
        self.vars.push(Variable {
            path: path.clone(),
            layer: self.path.clone(),
            name: name.to_string(),
            ty: value.ty,
            kind,
            trainable,
            regularizer,
            layer_index: self.layer_index,
        });
        Ok(Weight {
            name: name.to_string(),
            path,
            shape: shape.to_vec(),
        })
    }

    /// Checks that weight `name` of type `ty` can be stored: its size does
    /// not overflow and the variables declared so far plus twice its bytes
    /// (its initial values are drawn on the host, then copied into the
    /// store) stay within the memory budget ([`lossgraph_runtime::budget`]).
    /// Runs before anything is allocated.
    fn reserve(&self, name: &str, ty: &TensorType) -> Result<()> {
        let fail = |m: String| Error::layer(&self.path, format!("weight '{name}' {ty}: {m}"));
        let bytes = ty
            .checked_bytes()
            .ok_or_else(|| fail("its size overflows (too many elements)".into()))?;
        let budget = budget::memory_budget().map_err(|m| Error::config("memory budget", m))?;
        let before = self.store.bytes() as u64;
        if before.saturating_add(2 * bytes as u64) > budget {
            return Err(fail(format!(
                "needs {} (twice that while it is initialised), which with the {} of the variables before it exceeds the memory budget of {} (set {} to change it)",
                budget::fmt_bytes(bytes as u64),
                budget::fmt_bytes(before),
                budget::fmt_bytes(budget),
                budget::BUDGET_ENV
            )));
        }
        Ok(())
    }

    /// A noise seed for this layer, derived from the model's seeded
    /// generator (the one the initialisers use, at its current position,
    /// without advancing it, so weights initialise as without the call) and
    /// the layer path: a layer that draws noise and was given no seed takes
    /// one here in `build`, so its noise is reproducible from the model seed
    /// and differs between layers.
    pub fn seed(&self) -> u32 {
        let mut h = self.rng.clone().next_u64();
        for b in self.path.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        (h ^ (h >> 32)) as u32
    }

    /// Registers a loss computed from weights only (the seed's
    /// `0.01 · Σ|kernel|`). The closure runs in every trace with the weights
    /// bound; a non-scalar result is summed (as Keras does).
    pub fn add_loss(&mut self, f: impl Fn(&CallCtx<'_>) -> Tensor + 'static) {
        self.build_losses.push(BuildLoss {
            owner: self.path.clone(),
            layer_index: self.layer_index,
            f: Rc::new(f),
        });
    }

    /// Takes over a variable of a model nested in this layer (a model used as
    /// a layer): `<path>/<v.path>`, with `value` as its initial value, the
    /// same kind and regulariser, trainable while both are.
    pub(crate) fn adopt(&mut self, v: &Variable, value: &HostTensor) -> Result<()> {
        let path = format!("{}/{}", self.path, v.path);
        if self.vars.iter().any(|w| w.path == path) {
            return Err(Error::layer(
                &self.path,
                format!("weight '{}' is created twice", v.path),
            ));
        }
        self.reserve(&v.path, &v.ty)?;
        self.store
            .register(&path, &v.ty)
            .and_then(|_| self.store.set(&path, value))
            .map_err(|e| Error::layer(&self.path, format!("weight '{}': {e}", v.path)))?;
        self.vars.push(Variable {
            path,
            layer: format!("{}/{}", self.path, v.layer),
            name: v.name.clone(),
            ty: v.ty.clone(),
            kind: v.kind,
            trainable: v.trainable && self.trainable,
            regularizer: v.regularizer.clone(),
            layer_index: self.layer_index,
        });
        Ok(())
    }

    /// Takes over a build-time loss of a model nested in this layer, owned by `<path>/<owner>`.
    pub(crate) fn adopt_loss(&mut self, owner: &str, f: Rc<dyn Fn(&CallCtx<'_>) -> Tensor>) {
        self.build_losses.push(BuildLoss {
            owner: format!("{}/{owner}", self.path),
            layer_index: self.layer_index,
            f,
        });
    }

    /// Builds a sub-layer under `<path>/<name>` with hand-passed input shapes;
    /// its weights and losses are collected with this layer's. A
    /// [`Sublayer`] called with [`CallCtx::call`] needs no such step: it is
    /// built on its first call.
    pub fn build_sublayer(
        &mut self,
        name: &str,
        layer: &mut dyn Layer,
        input_shapes: &[Vec<usize>],
    ) -> Result<()> {
        let mut sub = BuildCtx {
            path: format!("{}/{}", self.path, name),
            layer_index: self.layer_index,
            trainable: self.trainable,
            vars: self.vars,
            store: self.store,
            build_losses: self.build_losses,
            rng: self.rng,
        };
        layer.build_multi(&mut sub, input_shapes)
    }
}

/// What building layers needs: the model's variables (with their initial
/// values), its build-time losses and the initialisers' generator. A model
/// under construction owns one; while it infers a layer's output shape the
/// trace holds it, so that sub-layers are built on their first call.
pub(crate) struct BuildResources {
    pub vars: Vec<Variable>,
    pub store: VariableStore,
    pub build_losses: Vec<BuildLoss>,
    pub rng: Rng,
    /// Names of the sub-layers built so far, per parent path (for automatic names).
    pub children: HashMap<String, HashSet<String>>,
}

impl BuildResources {
    pub(crate) fn new(seed: u64) -> BuildResources {
        BuildResources {
            vars: Vec::new(),
            store: VariableStore::new(),
            build_losses: Vec::new(),
            rng: Rng::new(seed),
            children: HashMap::new(),
        }
    }

    /// A build context for the layer at `path` (top-level layer `layer_index`).
    pub(crate) fn ctx(&mut self, path: &str, layer_index: usize, trainable: bool) -> BuildCtx<'_> {
        BuildCtx {
            path: path.to_string(),
            layer_index,
            trainable,
            vars: &mut self.vars,
            store: &mut self.store,
            build_losses: &mut self.build_losses,
            rng: &mut self.rng,
        }
    }
}

/// One added loss found while tracing, before ordering.
pub(crate) struct PendingLoss {
    pub layer_index: usize,
    /// 0: call-time (activity, add_loss in call), 1: build-time add_loss, 2: weight regulariser.
    pub phase: u8,
    pub owner: String,
    pub reason: LossReason,
    pub call: u32,
    pub variable: Option<String>,
    pub value: Tensor,
}

/// Mutable state of one trace, shared by the call contexts of all layers.
pub(crate) struct TraceState {
    pub b: Builder,
    pub params: HashMap<String, Tensor>,
    pub training: bool,
    pub batch: usize,
    pub losses: Vec<PendingLoss>,
    pub calls: HashMap<String, u32>,
    pub fallback: Tensor,
    pub rng_step: Option<Tensor>,
    /// The ranks a data-parallel training step runs on (1 otherwise).
    pub replicas: usize,
    /// The `shard_weight` input of this trace, created on first use.
    pub shard_weight: Option<Tensor>,
    /// Full names of the state variables among `params`.
    pub state: HashSet<String>,
    /// Full names of the trainable variables among `params`.
    pub trainable: HashSet<String>,
    /// `(state variable, new value)` assigned in this trace, in first-assign
    /// order; a later assign of the same variable replaces the value.
    pub updates: Vec<(String, Tensor)>,
    /// Present while a model is being built: sub-layers called for the first
    /// time are built with it.
    pub build: Option<BuildResources>,
}

/// Binds each variable to a fresh `param` node in its layer's scope and
/// returns them as (full name, tensor), in the given order.
pub(crate) fn bind_variables<'v>(
    st: &mut TraceState,
    vars: impl IntoIterator<Item = &'v Variable>,
) -> Vec<(String, Tensor)> {
    let mut bound = Vec::new();
    for v in vars {
        let prev = st.b.set_scope(v.layer.as_str());
        let t = st.b.param(&v.path, v.ty.clone());
        st.b.set_scope(prev);
        st.params.insert(v.path.clone(), t.clone());
        if v.kind == VariableKind::State {
            st.state.insert(v.path.clone());
        }
        if v.trainable {
            st.trainable.insert(v.path.clone());
        }
        bound.push((v.path.clone(), t));
    }
    bound
}

/// Name of the `i32[]` input that advances random ops (dropout) each step.
pub use lossgraph_ir::names::RNG_STEP_INPUT;

/// What `call` can do: read weights, add losses, call sub-layers, draw noise.
pub struct CallCtx<'a> {
    pub(crate) st: &'a mut TraceState,
    pub(crate) path: String,
    pub(crate) layer_index: usize,
    pub(crate) call: u32,
}

impl CallCtx<'_> {
    /// The traced value of this layer's weight `name` (a `param` node). An
    /// unknown name records an error (reported after the call) and returns a dummy scalar.
    pub fn weight(&self, name: &str) -> &Tensor {
        let key = format!("{}/{}", self.path, name);
        match self.st.params.get(&key) {
            Some(t) => t,
            None => {
                let mut known: Vec<&str> = self
                    .st
                    .params
                    .keys()
                    .filter_map(|k| k.strip_prefix(&format!("{}/", self.path)))
                    .filter(|k| !k.contains('/'))
                    .collect();
                known.sort_unstable();
                self.st.b.record_error(IrError::Type {
                    op: "weight".into(),
                    scope: self.path.clone(),
                    message: format!("layer has no weight '{name}' (it has: {known:?})"),
                });
                &self.st.fallback
            }
        }
    }

    /// Sets this layer's state variable `name` (created with
    /// [`BuildCtx::add_state`]) to `value` at the end of a training step, as
    /// Keras's `Variable.assign` does for BatchNormalization's moving
    /// statistics. Only training traces run it; in inference traces
    /// (evaluate, predict) it does nothing. The value is not differentiated
    /// (a `stop_gradient`, role `state_update`), and later reads of the
    /// variable in the same trace see it (a shared layer's second call reads
    /// the first call's update). An unknown name, a weight (not a state
    /// variable) or a type mismatch records an error reported after the call.
    pub fn assign(&mut self, name: &str, value: &Tensor) {
        let key = format!("{}/{}", self.path, name);
        let fail = |message: String| {
            self.st.b.record_error(IrError::Type {
                op: "assign".into(),
                scope: self.path.clone(),
                message,
            })
        };
        let Some(current) = self.st.params.get(&key) else {
            fail(format!("layer has no state variable '{name}'"));
            return;
        };
        if !self.st.state.contains(&key) {
            fail(format!(
                "'{name}' is a weight; only state variables (BuildCtx::add_state) can be assigned"
            ));
            return;
        }
        if current.ty() != value.ty() {
            fail(format!(
                "state variable '{name}' is {}, the assigned value is {}",
                current.ty(),
                value.ty()
            ));
            return;
        }
        if !self.st.training {
            return;
        }
        let new = self
            .st
            .b
            .with_role(Role::StateUpdate, || value.stop_gradient());
        match self.st.updates.iter_mut().find(|u| u.0 == key) {
            Some(u) => u.1 = new.clone(),
            None => self.st.updates.push((key.clone(), new.clone())),
        }
        self.st.params.insert(key, new);
    }

    /// The builder of this trace (for constants and multi-operand ops).
    pub fn builder(&self) -> Builder {
        self.st.b.clone()
    }

    /// True when tracing the training graph (dropout active): Keras's
    /// `call(inputs, training=...)`.
    pub fn training(&self) -> bool {
        self.st.training
    }

    /// Keras's `self.trainable` for this layer: false when the layer has
    /// weights and all of them are frozen (built with `trainable(false)`,
    /// imported with `trainable: false`, or `Model::set_trainable`). State
    /// variables do not count. A frozen BatchNormalization normalizes with
    /// its moving statistics even in training, as in Keras.
    pub fn trainable(&self) -> bool {
        let prefix = format!("{}/", self.path);
        let mut weights = self
            .st
            .params
            .keys()
            .filter(|k| {
                k.strip_prefix(&prefix).is_some_and(|r| !r.contains('/'))
                    && !self.st.state.contains(*k)
            })
            .peekable();
        weights.peek().is_none() || weights.any(|k| self.st.trainable.contains(k))
    }

    /// The number of ranks this trace's step runs on: more than 1 for a
    /// training step compiled [`distributed`](crate::CompileOptions::distributed),
    /// 1 otherwise (Keras's `num_replicas_in_sync`).
    pub fn replicas(&self) -> usize {
        self.st.replicas
    }

    /// The mean over the whole global batch of a statistic that `local` holds
    /// as a mean over this rank's samples (each sample counting alike): on
    /// more than one replica, `all_reduce_mean(shard_weight · local)` —
    /// rank `r`'s `shard_weight` is `N·n_r/B`, so the result is
    /// `Σ_r n_r·local_r / B` on every rank, and a rank that runs a padding
    /// sample at weight 0 adds nothing; on one replica `local` itself. The
    /// collective is differentiated like any op (its VJP is the mean of the
    /// cotangents), so the gradient of a loss that reads the global
    /// statistic reaches every rank's samples.
    pub fn global_batch_mean(&mut self, local: &Tensor) -> Tensor {
        if self.st.replicas <= 1 {
            return local.clone();
        }
        let w = match &self.st.shard_weight {
            Some(w) => w.clone(),
            None => {
                let b = &self.st.b;
                let prev = b.set_scope("");
                let w = b.input(SHARD_WEIGHT_INPUT, TensorType::scalar());
                b.set_scope(prev);
                self.st.shard_weight = Some(w.clone());
                w
            }
        };
        (local * &w).all_reduce_mean()
    }

    /// The batch size of this trace.
    pub fn batch_size(&self) -> usize {
        self.st.batch
    }

    /// Which call of this layer this is (0 for the first; shared layers count up).
    pub fn call_index(&self) -> u32 {
        self.call
    }

    /// The layer path (`outer/inner`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Adds a loss computed in `call` (an activity penalty, an auxiliary loss).
    /// A non-scalar loss is summed, as Keras does. Its nodes get role
    /// `added_loss(add_loss, call)` in this layer's scope.
    pub fn add_loss(&mut self, loss: Tensor) {
        self.push_loss(loss, LossReason::AddLoss);
    }

    fn push_loss(&mut self, loss: Tensor, reason: LossReason) {
        let role = Role::AddedLoss {
            reason,
            call: self.call,
        };
        let value = self.st.b.with_role(role, || {
            if loss.rank() > 0 {
                loss.sum_all()
            } else {
                loss
            }
        });
        self.st.losses.push(PendingLoss {
            layer_index: self.layer_index,
            phase: 0,
            owner: self.path.clone(),
            reason,
            call: self.call,
            variable: None,
            value,
        });
    }

    /// The `rng_step` stream input of this trace, created on first use. The
    /// model feeds it a counter that advances on every run that reads it
    /// (train step, evaluate, predict), so each run draws fresh noise.
    fn rng_stream(&mut self) -> Tensor {
        if let Some(s) = &self.st.rng_step {
            return s.clone();
        }
        let b = &self.st.b;
        let prev = b.set_scope("");
        let s = b.input(RNG_STEP_INPUT, TensorType::i32([]));
        b.set_scope(prev);
        self.st.rng_step = Some(s.clone());
        s
    }

    /// Uniform noise in `[0, 1)`, fresh on every run (see `rng_stream`), a
    /// pure function of `seed`, the run counter and the element index.
    pub fn random_uniform(&mut self, seed: u32, shape: &[usize]) -> Tensor {
        let step = self.rng_stream();
        self.st.b.random_uniform(&step, seed, shape)
    }

    /// Standard normal noise, fresh on every run (as [`Self::random_uniform`]).
    pub fn random_normal(&mut self, seed: u32, shape: &[usize]) -> Tensor {
        let step = self.rng_stream();
        self.st.b.random_normal(&step, seed, shape)
    }

    /// A 0/1 mask, 1 with probability `p`, fresh on every run (the
    /// `random_bernoulli` op: the uniform draw of the same seed below `p`).
    pub fn random_bernoulli(&mut self, seed: u32, p: f32, shape: &[usize]) -> Tensor {
        let step = self.rng_stream();
        let p = self.st.b.scalar(p);
        self.st.b.random_bernoulli(&step, seed, &p, shape)
    }

    /// Calls a sub-layer built with [`BuildCtx::build_sublayer`] under the same `name`.
    pub fn call_sublayer(
        &mut self,
        name: &str,
        layer: &dyn Layer,
        inputs: &[Tensor],
    ) -> Result<Tensor> {
        let path = format!("{}/{}", self.path, name);
        let outs = invoke(self.st, &path, self.layer_index, layer, inputs)?;
        single(outs, &path, layer)
    }

    /// Calls sub-layer `sub` (a [`Sublayer`] field of this layer: any layer,
    /// or a built model) on one input and returns its one output. On its
    /// first call the sub-layer is named (its own name, else Keras's
    /// automatic name among this layer's sub-layers: `dense`, `dense_1`) and
    /// built with the per-sample shape it is called on; its weights are
    /// `<path>/<sub-layer>/<weight>` and its losses count with this layer's.
    pub fn call<L: Layer>(&mut self, sub: &Sublayer<L>, input: &Tensor) -> Result<Tensor> {
        self.call_multi(sub, std::slice::from_ref(input))
    }

    /// [`call`](Self::call) on several inputs (a merge layer, a model with several inputs).
    pub fn call_multi<L: Layer>(&mut self, sub: &Sublayer<L>, inputs: &[Tensor]) -> Result<Tensor> {
        let outs = self.call_outputs(sub, inputs)?;
        let layer = sub.try_get().map_err(|e| Error::layer(&self.path, e))?;
        single(
            outs,
            &format!("{}/{}", self.path, sub.name().unwrap_or("?")),
            &*layer,
        )
    }

    /// [`call_multi`](Self::call_multi) for a sub-layer returning several tensors.
    pub fn call_outputs<L: Layer>(
        &mut self,
        sub: &Sublayer<L>,
        inputs: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let seg = match sub.name() {
            Some(n) => n.to_string(),
            None => self.build_child(sub, inputs)?,
        };
        let path = format!("{}/{seg}", self.path);
        let layer = sub.try_get().map_err(|e| Error::layer(&path, e))?;
        invoke(self.st, &path, self.layer_index, &*layer, inputs)
    }

    /// Names and builds a sub-layer on its first call (model construction only).
    fn build_child<L: Layer>(&mut self, sub: &Sublayer<L>, inputs: &[Tensor]) -> Result<String> {
        let mut layer = sub.try_get_mut().map_err(|e| Error::layer(&self.path, e))?;
        let Some(res) = self.st.build.as_mut() else {
            return Err(Error::layer(
                &self.path,
                format!(
                    "sub-layer {} was not built: sub-layers are built on their first call, while the model is built",
                    layer.class_name()
                ),
            ));
        };
        let taken = res.children.entry(self.path.clone()).or_default();
        let seg = match layer.name() {
            Some(n) if n.is_empty() || n.contains('/') => {
                return Err(Error::layer(
                    &self.path,
                    format!("invalid sub-layer name '{n}' (must be non-empty, without '/')"),
                ))
            }
            Some(n) if taken.contains(n) => {
                return Err(Error::layer(
                    &self.path,
                    format!("two sub-layers are named '{n}'"),
                ))
            }
            Some(n) => n.to_string(),
            None => crate::model::auto_name(&layer.class_name(), taken),
        };
        taken.insert(seg.clone());
        let path = format!("{}/{seg}", self.path);
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape()[1..].to_vec()).collect();
        let first = res.vars.len();
        layer.build_multi(&mut res.ctx(&path, self.layer_index, true), &shapes)?;
        let new: Vec<Variable> = res.vars[first..].to_vec();
        bind_variables(self.st, &new);
        sub.set_name(seg.clone());
        Ok(seg)
    }
}

/// The one output of a layer call, or an error naming the layer when it returned several.
pub(crate) fn single(outs: Vec<Tensor>, path: &str, layer: &dyn Layer) -> Result<Tensor> {
    let n = outs.len();
    let mut it = outs.into_iter();
    match (it.next(), n) {
        (Some(t), 1) => Ok(t),
        _ => Err(Error::layer(
            path,
            format!(
                "{} returns {n} tensors where one is expected (use call_outputs)",
                layer.class_name()
            ),
        )),
    }
}

/// Calls `layer` at `path` inside a trace: sets scope and role, counts the
/// call, checks the builder afterwards (attributing IR errors to the layer) and
/// applies the layer's activity regulariser.
pub(crate) fn invoke(
    st: &mut TraceState,
    path: &str,
    layer_index: usize,
    layer: &dyn Layer,
    inputs: &[Tensor],
) -> Result<Vec<Tensor>> {
    let counter = st.calls.entry(path.to_string()).or_insert(0);
    let call = *counter;
    *counter += 1;
    let prev_scope = st.b.set_scope(path);
    let prev_role = st.b.set_role(Role::Forward);
    let out = {
        let mut ctx = CallCtx {
            st: &mut *st,
            path: path.to_string(),
            layer_index,
            call,
        };
        layer.call_outputs(&mut ctx, inputs)
    };
    let result = out.and_then(|outs| {
        st.b.check().map_err(|e| Error::Ir {
            layer: path.to_string(),
            source: e,
        })?;
        let reg = layer.activity_regularizer();
        for (out, reg) in outs.iter().filter_map(|o| reg.map(|r| (o, r))) {
            let mut ctx = CallCtx {
                st: &mut *st,
                path: path.to_string(),
                layer_index,
                call,
            };
            let role = Role::AddedLoss {
                reason: LossReason::ActivityRegularizer,
                call,
            };
            let v = ctx.st.b.with_role(role, || {
                let l = reg.apply(out);
                match out.shape().first() {
                    Some(&n) if n > 0 => l / n as f32,
                    _ => l,
                }
            });
            ctx.push_loss(v, LossReason::ActivityRegularizer);
            st.b.check().map_err(|e| Error::Ir {
                layer: path.to_string(),
                source: e,
            })?;
        }
        Ok(outs)
    });
    st.b.set_scope(prev_scope);
    st.b.set_role(prev_role);
    result
}

/// Evaluates a build-time loss closure in its owner's scope.
pub(crate) fn eval_build_loss(st: &mut TraceState, bl: &BuildLoss) -> Result<()> {
    let prev_scope = st.b.set_scope(bl.owner.as_str());
    let role = Role::AddedLoss {
        reason: LossReason::AddLoss,
        call: 0,
    };
    let prev_role = st.b.set_role(role);
    let value = {
        let ctx = CallCtx {
            st: &mut *st,
            path: bl.owner.clone(),
            layer_index: bl.layer_index,
            call: 0,
        };
        let v = (bl.f)(&ctx);
        if v.rank() > 0 {
            v.sum_all()
        } else {
            v
        }
    };
    st.b.set_scope(prev_scope);
    st.b.set_role(prev_role);
    st.b.check().map_err(|e| Error::Ir {
        layer: bl.owner.clone(),
        source: e,
    })?;
    st.losses.push(PendingLoss {
        layer_index: bl.layer_index,
        phase: 1,
        owner: bl.owner.clone(),
        reason: LossReason::AddLoss,
        call: 0,
        variable: None,
        value,
    });
    Ok(())
}
