//! Choosing the engine of a program. The default is the JIT, and a graph the
//! JIT rejects is an error. With
//! [`CompileOptions::allow_interpreter_fallback`](super::CompileOptions::allow_interpreter_fallback)
//! such a graph runs on the interpreter instead; the fallback is never
//! silent: it is announced on stderr and recorded as an
//! [`InterpreterFallback`] ([`Model::interpreter_fallbacks`](crate::Model::interpreter_fallbacks)).

use super::options::Purpose;
use crate::error::{Error, Result};
use lossgraph_ir::Graph;
use lossgraph_runtime::{Engine, Program, RuntimeError};

/// How programs are compiled: the engine, and whether a graph the JIT
/// rejects may run on the interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EnginePolicy {
    pub engine: Engine,
    pub interpreter_fallback: bool,
}

impl Default for EnginePolicy {
    fn default() -> EnginePolicy {
        EnginePolicy {
            engine: Engine::Jit,
            interpreter_fallback: false,
        }
    }
}

/// A program that runs on the interpreter because the JIT rejected its graph.
#[derive(Clone, Debug, PartialEq)]
pub struct InterpreterFallback {
    /// What the program is for.
    pub purpose: Purpose,
    /// Its batch size (0 for `apply`).
    pub batch: usize,
    /// The JIT's error: which node (`node %N (op : type) in scope '…'`, when
    /// the JIT can tell) and why.
    pub reason: String,
}

/// Compiles `g` for (`purpose`, `batch`) under `policy`; `jit` is the JIT
/// compiler (a parameter so the fallback path can be tested with a JIT that
/// rejects). Returns the program and, when the interpreter replaced the JIT,
/// the record of it (already announced on stderr).
pub(crate) fn compile_program(
    g: Graph,
    purpose: Purpose,
    batch: usize,
    policy: EnginePolicy,
    mut make: impl FnMut(Graph, Engine) -> std::result::Result<Program, RuntimeError>,
) -> Result<(Program, Option<InterpreterFallback>)> {
    let runtime = |e| Error::runtime(purpose.name(), e);
    match (policy.engine, policy.interpreter_fallback) {
        (Engine::Interpreter, _) => Ok((make(g, Engine::Interpreter).map_err(runtime)?, None)),
        (Engine::Jit, false) => match make(g, Engine::Jit) {
            Ok(p) => Ok((p, None)),
            Err(e) => Err(Error::Compile {
                purpose: purpose.name().into(),
                message: format!(
                    "the JIT rejected the graph (batch {batch}): {e} \
                     (CompileOptions::allow_interpreter_fallback(true) runs such graphs on the interpreter)"
                ),
            }),
        },
        (Engine::Jit, true) => match make(g.clone(), Engine::Jit) {
            Ok(p) => Ok((p, None)),
            Err(e) => {
                let fallback = InterpreterFallback {
                    purpose,
                    batch,
                    reason: e.to_string(),
                };
                eprintln!(
                    "lossgraph: warning: the {} program (batch {batch}) runs on the interpreter: the JIT rejected its graph: {}",
                    purpose.name(),
                    fallback.reason
                );
                let p = make(g, Engine::Interpreter).map_err(runtime)?;
                Ok((p, Some(fallback)))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lossgraph_ir::{Builder, TensorType};

    fn graph() -> Graph {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([2]));
        b.output("y", &(&x * 2.0));
        b.finish().unwrap()
    }

    /// A JIT that rejects every graph; the interpreter builds normally.
    fn rejecting(g: Graph, e: Engine) -> std::result::Result<Program, RuntimeError> {
        match e {
            Engine::Jit => Err(RuntimeError::Compile(
                "node %3 (mul : f32[2]) in scope 'd': no lowering".into(),
            )),
            Engine::Interpreter => Program::new(g, e),
        }
    }

    #[test]
    fn a_rejected_graph_is_an_error_by_default() {
        let err = compile_program(
            graph(),
            Purpose::Train,
            4,
            EnginePolicy::default(),
            rejecting,
        )
        .err()
        .expect("the JIT rejected the graph");
        let msg = err.to_string();
        assert!(
            msg.contains("node %3 (mul : f32[2]) in scope 'd': no lowering"),
            "{msg}"
        );
        assert!(msg.contains("allow_interpreter_fallback"), "{msg}");
    }

    #[test]
    fn the_fallback_is_recorded_and_runs_on_the_interpreter() {
        let policy = EnginePolicy {
            engine: Engine::Jit,
            interpreter_fallback: true,
        };
        let (mut p, fb) =
            compile_program(graph(), Purpose::Evaluate, 3, policy, rejecting).unwrap();
        assert_eq!(p.engine(), Engine::Interpreter);
        assert_eq!(
            fb,
            Some(InterpreterFallback {
                purpose: Purpose::Evaluate,
                batch: 3,
                reason: "compilation failed: node %3 (mul : f32[2]) in scope 'd': no lowering"
                    .into(),
            })
        );
        p.run(&[("x", lossgraph_runtime::Feed::F32(&[1.5, -2.0]))])
            .unwrap();
        assert_eq!(p.output("y").unwrap().as_f32().unwrap(), &[3.0, -4.0]);
    }

    #[test]
    fn an_accepted_graph_takes_no_fallback() {
        let policy = EnginePolicy {
            engine: Engine::Jit,
            interpreter_fallback: true,
        };
        let (p, fb) = compile_program(graph(), Purpose::Predict, 1, policy, Program::new).unwrap();
        assert_eq!((p.engine(), fb), (Engine::Jit, None));
    }
}
