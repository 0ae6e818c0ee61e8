//! [`Program`]: a graph bound to an engine, its variables and its last outputs.

use crate::error::RuntimeError;
use crate::executor::{CompileStats, JitOptions, JitProgram};
use lossgraph_ir::{interp, verify, DType, Data, Graph, HostTensor, TensorType};
use std::collections::HashMap;

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

/// A graph ready to run. Variables persist across runs.
pub struct Program {
    graph: Graph,
    engine: Engine,
    vars: HashMap<String, HostTensor>,
    outputs: HashMap<String, HostTensor>,
    /// The compiled program when `engine` is [`Engine::Jit`]; it then owns the
    /// variables and outputs (the maps above stay empty).
    jit: Option<Box<JitProgram>>,
}

impl Program {
    /// Verifies `graph` and prepares it for `engine` (compiling it for
    /// [`Engine::Jit`] with default options). Every `param` starts at zero.
    pub fn new(graph: Graph, engine: Engine) -> Result<Program, RuntimeError> {
        match engine {
            Engine::Interpreter => Program::new_interpreted(graph),
            Engine::Jit => Program::new_jit(graph, &JitOptions::default()),
        }
    }

    /// Verifies and compiles `graph` to native code with explicit options.
    pub fn new_jit(graph: Graph, opts: &JitOptions) -> Result<Program, RuntimeError> {
        verify(&graph)?;
        let jit = JitProgram::compile(&graph, opts)?;
        Ok(Program {
            graph,
            engine: Engine::Jit,
            vars: HashMap::new(),
            outputs: HashMap::new(),
            jit: Some(Box::new(jit)),
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

    /// For a JIT program: runs `steps` times and returns the minimum wall time
    /// (ns) of each kernel/GEMM step, of the update copies and of the feed copies.
    pub fn profile(
        &mut self,
        feeds: &[(&str, Feed<'_>)],
        steps: usize,
    ) -> Result<Vec<(String, f64)>, RuntimeError> {
        match &mut self.jit {
            Some(j) => j.profile(feeds, steps),
            None => Err(RuntimeError::Exec("profiling needs the JIT engine".into())),
        }
    }

    /// The Cranelift IR of every kernel, for a JIT program (addresses relative to the arena).
    pub fn clif_text(&self) -> Option<Result<String, RuntimeError>> {
        self.jit.as_ref().map(|j| j.clif_text())
    }

    fn new_interpreted(graph: Graph) -> Result<Program, RuntimeError> {
        verify(&graph)?;
        let vars = graph
            .params()
            .into_iter()
            .map(|(name, id)| {
                let t = HostTensor::zeros(&graph.node(id).ty);
                (name, t)
            })
            .collect();
        Ok(Program {
            graph,
            engine: Engine::Interpreter,
            vars,
            outputs: HashMap::new(),
            jit: None,
        })
    }

    /// The program's graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The engine running this program.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Sets a variable (`param` node) by name; its type must match exactly.
    pub fn set_var(&mut self, name: &str, value: &HostTensor) -> Result<(), RuntimeError> {
        if let Some(j) = &mut self.jit {
            return j.set_var(name, value);
        }
        let slot = self
            .vars
            .get_mut(name)
            .ok_or_else(|| RuntimeError::Binding {
                name: name.to_string(),
                message: "no such variable in the program".into(),
            })?;
        if slot.ty != value.ty {
            return Err(RuntimeError::Binding {
                name: name.to_string(),
                message: format!("expected {}, got {}", slot.ty, value.ty),
            });
        }
        *slot = value.clone();
        Ok(())
    }

    /// The current value of a variable.
    pub fn var(&self, name: &str) -> Option<TensorRef<'_>> {
        if let Some(j) = &self.jit {
            return j.var(name);
        }
        self.vars.get(name).map(TensorRef::of)
    }

    /// Names of all variables, in graph order.
    pub fn var_names(&self) -> Vec<String> {
        self.graph.params().into_iter().map(|p| p.0).collect()
    }

    /// Runs the graph once with `feeds` for every `input`, then applies each
    /// `update/<var>` output to its variable. Outputs stay readable until the next run.
    pub fn run(&mut self, feeds: &[(&str, Feed<'_>)]) -> Result<(), RuntimeError> {
        if let Some(j) = &mut self.jit {
            return j.run(feeds);
        }
        let mut env: HashMap<String, HostTensor> = self.vars.clone();
        for (name, id) in self.graph.inputs() {
            let ty = &self.graph.node(id).ty;
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
        let outs = match self.engine {
            Engine::Interpreter => {
                interp::interpret(&self.graph, &env).map_err(RuntimeError::Exec)?
            }
            Engine::Jit => {
                return Err(RuntimeError::Exec(
                    "JIT program without compiled code (internal invariant broken)".into(),
                ))
            }
        };
        self.outputs.clear();
        for (name, value) in outs {
            if let Some(var) = lossgraph_ir::names::updated_variable(&name) {
                if let Some(slot) = self.vars.get_mut(var) {
                    // A variable keeps its declared type: an update of another
                    // shape with the same element count is stored row-major.
                    if slot.ty.dtype != value.ty.dtype || slot.ty.numel() != value.ty.numel() {
                        return Err(RuntimeError::Binding {
                            name: var.to_string(),
                            message: format!(
                                "update/{var} has type {} but the variable is {}",
                                value.ty, slot.ty
                            ),
                        });
                    }
                    slot.data = value.data.clone();
                }
            }
            self.outputs.insert(name, value);
        }
        Ok(())
    }

    /// An output of the last run.
    pub fn output(&self, name: &str) -> Option<TensorRef<'_>> {
        if let Some(j) = &self.jit {
            return j.output(name);
        }
        self.outputs.get(name).map(TensorRef::of)
    }
}
