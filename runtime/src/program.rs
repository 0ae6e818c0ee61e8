//! [`Program`]: a graph bound to an engine, a variable store and its last outputs.

use crate::collective::{Communicator, SingleProcess};
use crate::error::RuntimeError;
use crate::executor::{CompileStats, JitOptions, JitProgram};
use crate::store::VariableStore;
use lossgraph_ir::{interp, verify, DType, Data, Graph, HostTensor, TensorType};
use std::collections::HashMap;
use std::sync::Arc;

/// Which engine executes a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Engine {
    /// The reference interpreter: obvious, slow, the oracle for everything else.
    #[default]
    Interpreter,
    /// Fused native code compiled with Cranelift (see [`crate::executor`]).
    Jit,
}

/// Borrowed data for one `input` of one run.
#[derive(Clone, Copy, Debug)]
pub enum Feed<'a> {
    F32(&'a [f32]),
    I32(&'a [i32]),
}

impl<'a> Feed<'a> {
    /// All elements of `t`: the one conversion from a host tensor to a feed.
    pub fn of(t: &'a HostTensor) -> Feed<'a> {
        match &t.data {
            Data::F32(v) => Feed::F32(v),
            Data::I32(v) => Feed::I32(v),
        }
    }

    /// Samples `start..end` along the leading axis of `t` (`None` when the
    /// range is empty-shaped or out of bounds).
    pub fn rows(t: &'a HostTensor, start: usize, end: usize) -> Option<Feed<'a>> {
        let n = *t.ty.shape.first()?;
        if start > end || end > n {
            return None;
        }
        let k = t.ty.numel().checked_div(n).unwrap_or(0);
        Some(match &t.data {
            Data::F32(v) => Feed::F32(v.get(start * k..end * k)?),
            Data::I32(v) => Feed::I32(v.get(start * k..end * k)?),
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Feed::F32(v) => v.len(),
            Feed::I32(v) => v.len(),
        }
    }

    /// True when the feed holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A borrowed view of a tensor held by a program (a variable or an output).
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub ty: &'a TensorType,
    pub data: Feed<'a>,
}

impl<'a> TensorRef<'a> {
    fn of(t: &'a HostTensor) -> TensorRef<'a> {
        TensorRef {
            ty: &t.ty,
            data: Feed::of(t),
        }
    }

    /// The `f32` elements, or `None` for an `i32` tensor.
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        match self.data {
            Feed::F32(v) => Some(v),
            Feed::I32(_) => None,
        }
    }

    /// The `i32` elements, or `None` for an `f32` tensor.
    pub fn as_i32(&self) -> Option<&'a [i32]> {
        match self.data {
            Feed::I32(v) => Some(v),
            Feed::F32(_) => None,
        }
    }

    /// The single element of a one-element tensor, widened to `f64`.
    pub fn item(&self) -> Option<f64> {
        match self.data {
            Feed::F32([x]) => Some(*x as f64),
            Feed::I32([x]) => Some(*x as f64),
            _ => None,
        }
    }

    /// An owned copy.
    pub fn to_host(&self) -> HostTensor {
        let data = match self.data {
            Feed::F32(v) => Data::F32(v.to_vec()),
            Feed::I32(v) => Data::I32(v.to_vec()),
        };
        HostTensor {
            ty: self.ty.clone(),
            data,
        }
    }
}

/// Where a program's variables live.
enum Vars {
    /// A store of its own ([`Program::new`], [`Program::new_jit`]).
    Own(VariableStore),
    /// A store shared with other programs, of this id, passed to each run
    /// ([`Program::with_store`], [`Program::run_with`]).
    Shared(u64),
}

/// A graph ready to run. Variables persist across runs in a
/// [`VariableStore`]: the program's own, or one shared by several programs
/// (every program of a model), which then see each other's updates without
/// any copy.
pub struct Program {
    graph: Graph,
    engine: Engine,
    vars: Vars,
    /// Outputs of the last interpreted run (empty for a JIT program).
    outputs: HashMap<String, HostTensor>,
    /// The compiled program when `engine` is [`Engine::Jit`]; it then holds
    /// the outputs in its arena (or, for in-place updates, in the store).
    jit: Option<Box<JitProgram>>,
}

impl Program {
    /// Verifies `graph` and prepares it for `engine` (compiling it for
    /// [`Engine::Jit`] with default options), with a store of its own in
    /// which every `param` starts at zero.
    pub fn new(graph: Graph, engine: Engine) -> Result<Program, RuntimeError> {
        let mut store = VariableStore::new();
        let mut p = Program::with_store(graph, engine, &JitOptions::default(), &mut store)?;
        p.vars = Vars::Own(store);
        Ok(p)
    }

    /// Verifies and compiles `graph` to native code with explicit options,
    /// with a store of its own in which every `param` starts at zero.
    pub fn new_jit(graph: Graph, opts: &JitOptions) -> Result<Program, RuntimeError> {
        let mut store = VariableStore::new();
        let mut p = Program::with_store(graph, Engine::Jit, opts, &mut store)?;
        p.vars = Vars::Own(store);
        Ok(p)
    }

    /// Verifies `graph` and prepares it for `engine` (`opts` for the JIT)
    /// against the shared `store`: its variables are registered there (new
    /// ones zero-filled; a name already there must have the same type), and
    /// every run takes that store ([`Program::run_with`]).
    pub fn with_store(
        graph: Graph,
        engine: Engine,
        opts: &JitOptions,
        store: &mut VariableStore,
    ) -> Result<Program, RuntimeError> {
        Program::with_store_on(graph, engine, opts, store, Arc::new(SingleProcess))
    }

    /// [`with_store`](Self::with_store) for a program whose
    /// `all_reduce_mean` nodes reduce across the ranks of `comm` (one
    /// external call per node, on its buffer in place). The interpreter
    /// evaluates `all_reduce_mean` in a single process only (the identity),
    /// so it refuses such a graph on more than one rank.
    pub fn with_store_on(
        graph: Graph,
        engine: Engine,
        opts: &JitOptions,
        store: &mut VariableStore,
        comm: Arc<dyn Communicator>,
    ) -> Result<Program, RuntimeError> {
        verify(&graph)?;
        let jit = match engine {
            Engine::Jit => Some(Box::new(JitProgram::compile(&graph, opts, store, comm)?)),
            Engine::Interpreter => {
                if comm.size() > 1 {
                    if let Some(id) = graph
                        .node_ids()
                        .into_iter()
                        .find(|&id| graph.node(id).op == lossgraph_ir::Op::AllReduceMean)
                    {
                        return Err(RuntimeError::Compile(format!(
                            "node %{} (all_reduce_mean): the interpreter reduces in a single \
                             process only, this program runs on {} ranks (use the JIT)",
                            id.index(),
                            comm.size()
                        )));
                    }
                }
                for (name, id) in graph.params() {
                    store.register(&name, &graph.node(id).ty)?;
                }
                None
            }
        };
        Ok(Program {
            graph,
            engine,
            vars: Vars::Shared(store.id()),
            outputs: HashMap::new(),
            jit,
        })
    }

    /// Compile statistics (kernels, arena size, timings) of a JIT program.
    pub fn compile_stats(&self) -> Option<&CompileStats> {
        self.jit.as_ref().map(|j| j.stats())
    }

    /// The fused plan as text (kernel boundaries), for a JIT program.
    pub fn plan_text(&self) -> Option<String> {
        self.jit
            .as_ref()
            .map(|j| lossgraph_compiler::fusion::plan_text(j.plan()))
    }

    /// For a JIT program with its own store: runs `steps` times and returns
    /// the minimum wall time (ns) of each kernel/GEMM step, of the update
    /// copies and of the feed copies.
    pub fn profile(
        &mut self,
        feeds: &[(&str, Feed<'_>)],
        steps: usize,
    ) -> Result<Vec<(String, f64)>, RuntimeError> {
        match (&mut self.jit, &mut self.vars) {
            (Some(j), Vars::Own(store)) => j.profile(store, feeds, steps),
            (None, _) => Err(RuntimeError::Exec("profiling needs the JIT engine".into())),
            (_, Vars::Shared(_)) => Err(shared_store()),
        }
    }

    /// The Cranelift IR of every kernel, for a JIT program (addresses as
    /// offsets from the arena and store arguments).
    pub fn clif_text(&self) -> Option<Result<String, RuntimeError>> {
        self.jit.as_ref().map(|j| j.clif_text())
    }

    /// The program's graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The engine running this program.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The program's own store (`None` when it runs against a shared one).
    pub fn store(&self) -> Option<&VariableStore> {
        match &self.vars {
            Vars::Own(s) => Some(s),
            Vars::Shared(_) => None,
        }
    }

    /// Sets a variable of the program's own store by name; its type must
    /// match exactly. A program on a shared store is set through the store.
    pub fn set_var(&mut self, name: &str, value: &HostTensor) -> Result<(), RuntimeError> {
        if self.graph.param(name).is_none() {
            return Err(RuntimeError::Binding {
                name: name.to_string(),
                message: "no such variable in the program".into(),
            });
        }
        match &mut self.vars {
            Vars::Own(store) => store.set(name, value),
            Vars::Shared(_) => Err(shared_store()),
        }
    }

    /// The current value of a variable of the program's own store (`None`
    /// for a program on a shared store: read the store).
    pub fn var(&self, name: &str) -> Option<TensorRef<'_>> {
        self.graph.param(name)?;
        self.store()?.get(name)
    }

    /// Names of all variables, in graph order.
    pub fn var_names(&self) -> Vec<String> {
        self.graph.params().into_iter().map(|p| p.0).collect()
    }

    /// Runs a program with its own store once (see [`Program::run_with`]).
    pub fn run(&mut self, feeds: &[(&str, Feed<'_>)]) -> Result<(), RuntimeError> {
        let Vars::Own(store) = &mut self.vars else {
            return Err(shared_store());
        };
        match &mut self.jit {
            Some(j) => j.run(store, feeds),
            None => interpret(&self.graph, store, &mut self.outputs, feeds),
        }
    }

    /// Runs the graph once against `store` (the shared store the program was
    /// made with) with `feeds` for every `input`, then applies each
    /// `update/<var>` output to its variable in the store. Outputs stay
    /// readable until the next run. Copies no variable.
    pub fn run_with(
        &mut self,
        store: &mut VariableStore,
        feeds: &[(&str, Feed<'_>)],
    ) -> Result<(), RuntimeError> {
        match self.vars {
            Vars::Shared(id) if id == store.id() => {}
            _ => {
                return Err(RuntimeError::Exec(format!(
                    "program was not made with variable store {}",
                    store.id()
                )))
            }
        }
        match &mut self.jit {
            Some(j) => j.run(store, feeds),
            None => interpret(&self.graph, store, &mut self.outputs, feeds),
        }
    }

    /// An output of the last run of a program with its own store.
    pub fn output(&self, name: &str) -> Option<TensorRef<'_>> {
        self.output_with(self.store()?, name)
    }

    /// An output of the last run; `store` is the program's store (outputs
    /// computed in place into a variable are read from it).
    pub fn output_with<'a>(
        &'a self,
        store: &'a VariableStore,
        name: &str,
    ) -> Option<TensorRef<'a>> {
        match &self.jit {
            Some(j) if j.store_id() == store.id() => j.output(store, name),
            Some(_) => None,
            None => self.outputs.get(name).map(TensorRef::of),
        }
    }
}

fn shared_store() -> RuntimeError {
    RuntimeError::Exec(
        "program runs against a shared variable store: use run_with and the store".into(),
    )
}

/// Runs `graph` in the reference interpreter: variables are copied from
/// `store` into its environment, `update/<var>` outputs back into the store.
fn interpret(
    graph: &Graph,
    store: &mut VariableStore,
    outputs: &mut HashMap<String, HostTensor>,
    feeds: &[(&str, Feed<'_>)],
) -> Result<(), RuntimeError> {
    let mut env: HashMap<String, HostTensor> = HashMap::new();
    for (name, _) in graph.params() {
        let t = store.get(&name).ok_or_else(|| RuntimeError::Binding {
            name: name.clone(),
            message: "variable missing from the store".into(),
        })?;
        env.insert(name, t.to_host());
    }
    for (name, id) in graph.inputs() {
        let ty = &graph.node(id).ty;
        let feed = feeds
            .iter()
            .find(|f| f.0 == name)
            .ok_or_else(|| RuntimeError::Binding {
                name: name.clone(),
                message: format!("missing feed for input of type {ty}"),
            })?;
        let data = match (feed.1, ty.dtype) {
            (Feed::F32(v), DType::F32) if v.len() == ty.numel() => Data::F32(v.to_vec()),
            (Feed::I32(v), DType::I32) if v.len() == ty.numel() => Data::I32(v.to_vec()),
            (f, _) => {
                let (kind, len) = match f {
                    Feed::F32(v) => ("f32", v.len()),
                    Feed::I32(v) => ("i32", v.len()),
                };
                return Err(RuntimeError::Binding {
                    name: name.clone(),
                    message: format!(
                        "expected {ty} ({} elements), got {len} {kind} elements",
                        ty.numel()
                    ),
                });
            }
        };
        env.insert(
            name,
            HostTensor {
                ty: ty.clone(),
                data,
            },
        );
    }
    let outs = interp::interpret(graph, &env).map_err(RuntimeError::Exec)?;
    outputs.clear();
    for (name, value) in outs {
        if let Some(var) = lossgraph_ir::names::updated_variable(&name) {
            if graph.param(var).is_some() {
                // A variable keeps its declared type: an update of another
                // shape with the same element count is stored row-major.
                store.write(var, &value.ty, &value.data)?;
            }
        }
        outputs.insert(name, value);
    }
    Ok(())
}
