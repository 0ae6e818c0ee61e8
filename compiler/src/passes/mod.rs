//! Graph optimisation passes and the pass manager.
//!
//! A *pass* is a function `fn(&mut Graph) -> Result<bool, PassError>` that
//! rewrites a verified graph into an equivalent verified graph and reports
//! whether it changed anything. The passes are:
//!
//! - [`dce`]: dead-code elimination (keeps everything reachable from a named
//!   output, and every `input`/`param` leaf so the program's interface is stable);
//! - [`cse`]: common-subexpression elimination;
//! - [`fold`]: constant folding through the reference interpreter's kernels;
//! - [`simplify`]: algebraic simplification and the clean-ups of the ones/zeros
//!   seeds that autodiff introduces.
//!
//! Every rewrite keeps the role and scope of the node it replaces: a node a
//! pass *creates* as a replacement takes the replaced node's role and scope; a
//! node that already existed and now stands in for the replaced one (as `x`
//! does for `x * 1`) keeps its own, since it still is the computation of the
//! layer that emitted it. A pass that changed the graph returns it
//! [compacted](Graph::compacted), so printed ids are dense.
//!
//! Passes report [`PassError`]s, which convert into the crate's
//! [`CompileError`](crate::CompileError) with `?`.
//!
//! [`PassManager`] runs a named pipeline, optionally to a fixed point, records
//! node counts before/after each pass ([`PassStats`]), can hand a dump of the
//! graph after chosen passes to a caller-supplied sink, and verifies the
//! graph after every pass in debug builds, naming the pass that broke it.

pub mod cse;
pub mod dce;
pub mod fold;
pub mod simplify;

#[cfg(test)]
mod semantic_tests;

use lossgraph_ir::graph::{Graph, Node, NodeId};
use lossgraph_ir::op::{Literal, Op};
use lossgraph_ir::IrError;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use thiserror::Error;

/// Errors of the pass pipeline. Each names the pass and, where it applies, the node.
#[derive(Debug, Error)]
pub enum PassError {
    /// A pipeline named a pass that does not exist.
    #[error("unknown pass '{name}' (known passes: {known})")]
    UnknownPass { name: String, known: String },
    /// The graph handed to the pipeline did not verify.
    #[error("the input graph is invalid before the pass pipeline: {0}")]
    InvalidInput(IrError),
    /// A pass left a graph that does not verify (a pass bug).
    #[error("pass '{pass}' broke the graph: {source}")]
    Broken {
        pass: String,
        #[source]
        source: IrError,
    },
    /// A pass could not run on a node.
    #[error("pass '{pass}' at node %{node} ({op}) in scope '{scope}': {message}")]
    Node {
        pass: String,
        node: usize,
        op: String,
        scope: String,
        message: String,
    },
    /// A graph-level failure (a cycle, a dangling output).
    #[error("pass '{pass}' on graph '{graph}': {message}")]
    Graph {
        pass: String,
        graph: String,
        message: String,
    },
}

/// The signature of every pass: rewrite in place, report whether anything changed.
pub type PassFn = fn(&mut Graph) -> Result<bool, PassError>;

/// The registered passes, by pipeline name.
pub const PASSES: [(&str, PassFn); 4] = [
    ("dce", dce::run),
    ("cse", cse::run),
    ("fold", fold::run),
    ("simplify", simplify::run),
];

/// The pass registered under `name`.
pub fn lookup(name: &str) -> Option<PassFn> {
    PASSES.iter().find(|p| p.0 == name).map(|p| p.1)
}

/// How a dump renders the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpFormat {
    /// The IR text format.
    Text,
    /// Graphviz DOT.
    Dot,
}

/// Renders a graph for a dump.
pub fn render(g: &Graph, format: DumpFormat) -> String {
    match format {
        DumpFormat::Text => lossgraph_ir::text::print(g),
        DumpFormat::Dot => lossgraph_ir::dot::to_dot(g),
    }
}

/// One dump: the pass it followed (or `input`) and the rendered graph.
pub type Dump = (String, String);

/// Node counts around one run of one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassStats {
    /// The pass's pipeline name.
    pub pass: String,
    /// Which sweep of the pipeline this was (0-based; > 0 only in fixed-point mode).
    pub iteration: usize,
    /// Nodes before the pass.
    pub nodes_before: usize,
    /// Nodes after the pass.
    pub nodes_after: usize,
    /// Whether the pass reported a change.
    pub changed: bool,
}

impl std::fmt::Display for PassStats {
    /// `sweep 0  simplify    61 -> 59` (an asterisk marks a pass that changed the graph).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sweep {}  {:<10} {:>6} -> {:<6}{}",
            self.iteration,
            self.pass,
            self.nodes_before,
            self.nodes_after,
            if self.changed { " *" } else { "" }
        )
    }
}

/// Runs a pipeline of passes.
///
/// Invariants: every pass in the pipeline is registered; with verification
/// on (the default in debug builds) the input graph and the graph after every
/// pass verify, or `run` fails naming the pass; the graph `run` leaves is
/// compacted (ids `0..n` in topological order).
#[derive(Clone)]
pub struct PassManager {
    pipeline: Vec<(String, PassFn)>,
    max_sweeps: usize,
    dumps: Vec<String>,
    dump_format: DumpFormat,
    verify: bool,
}

impl std::fmt::Debug for PassManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassManager")
            .field("pipeline", &self.names())
            .field("max_sweeps", &self.max_sweeps)
            .field("dumps", &self.dumps)
            .field("dump_format", &self.dump_format)
            .field("verify", &self.verify)
            .finish()
    }
}

impl Default for PassManager {
    fn default() -> PassManager {
        PassManager::new()
    }
}

/// The default optimisation pipeline:
/// `dce, fold, simplify, cse, dce`, repeated until a sweep changes nothing
/// (at most 4 sweeps). DCE first so later passes see only live code; folding
/// before simplification so constant subgraphs (the ones/zeros seeds autodiff
/// introduces) become splat constants the simplifier's rules can match; CSE
/// after simplification because rewrites expose duplicates; a final DCE to
/// drop what the others orphaned.
pub fn default_pipeline() -> PassManager {
    PassManager::from_names(&["dce", "fold", "simplify", "cse", "dce"])
        .expect("the default pipeline names only registered passes")
        .fixed_point(4)
}

impl PassManager {
    /// An empty pipeline (run once, verification on in debug builds).
    pub fn new() -> PassManager {
        PassManager {
            pipeline: Vec::new(),
            max_sweeps: 1,
            dumps: Vec::new(),
            dump_format: DumpFormat::Text,
            verify: cfg!(debug_assertions),
        }
    }

    /// A pipeline of registered passes, in order; fails on an unknown name.
    pub fn from_names(names: &[&str]) -> Result<PassManager, PassError> {
        let mut pm = PassManager::new();
        for name in names {
            pm = pm.with_pass(name)?;
        }
        Ok(pm)
    }

    /// Appends a registered pass.
    pub fn with_pass(mut self, name: &str) -> Result<PassManager, PassError> {
        let f = lookup(name).ok_or_else(|| PassError::UnknownPass {
            name: name.to_string(),
            known: PASSES.iter().map(|p| p.0).collect::<Vec<_>>().join(", "),
        })?;
        self.pipeline.push((name.to_string(), f));
        Ok(self)
    }

    /// Appends a custom pass under a name of the caller's choosing.
    pub fn with_custom_pass(mut self, name: &str, f: PassFn) -> PassManager {
        self.pipeline.push((name.to_string(), f));
        self
    }

    /// Repeats the whole pipeline until a sweep changes nothing, at most `max_sweeps` times.
    pub fn fixed_point(mut self, max_sweeps: usize) -> PassManager {
        self.max_sweeps = max_sweeps.max(1);
        self
    }

    /// Dumps the graph after every run of the pass named `pass` (`"*"`: after every pass;
    /// `"input"`: the graph before the pipeline).
    pub fn dump_after(mut self, pass: &str) -> PassManager {
        self.dumps.push(pass.to_string());
        self
    }

    /// Chooses the dump format (text by default).
    pub fn dump_format(mut self, format: DumpFormat) -> PassManager {
        self.dump_format = format;
        self
    }

    /// Turns verification after each pass on or off (on by default in debug builds).
    pub fn verify_each(mut self, on: bool) -> PassManager {
        self.verify = on;
        self
    }

    /// The pipeline's pass names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.pipeline.iter().map(|p| p.0.as_str()).collect()
    }

    /// Runs the pipeline; returns node counts per pass run.
    pub fn run(&self, g: &mut Graph) -> Result<Vec<PassStats>, PassError> {
        self.run_with_dumps(g, &mut |_, _| {})
    }

    /// Runs the pipeline and collects the selected dumps as `(pass name, rendered graph)`.
    pub fn run_collecting(&self, g: &mut Graph) -> Result<(Vec<PassStats>, Vec<Dump>), PassError> {
        let mut dumps = Vec::new();
        let stats =
            self.run_with_dumps(g, &mut |p, d| dumps.push((p.to_string(), d.to_string())))?;
        Ok((stats, dumps))
    }

    /// Runs the pipeline, handing `(pass name, rendered graph)` to `sink` after
    /// every pass selected by [`PassManager::dump_after`].
    pub fn run_with_dumps(
        &self,
        g: &mut Graph,
        sink: &mut dyn FnMut(&str, &str),
    ) -> Result<Vec<PassStats>, PassError> {
        if self.verify {
            lossgraph_ir::verify(g).map_err(PassError::InvalidInput)?;
        }
        if self.dumps.iter().any(|d| d == "input") {
            sink("input", &render(g, self.dump_format));
        }
        let mut stats = Vec::new();
        for sweep in 0..self.max_sweeps {
            let mut any = false;
            for (name, f) in &self.pipeline {
                let before = g.len();
                let changed = f(g)?;
                any |= changed;
                if self.verify {
                    lossgraph_ir::verify(g).map_err(|source| PassError::Broken {
                        pass: name.clone(),
                        source,
                    })?;
                }
                stats.push(PassStats {
                    pass: name.clone(),
                    iteration: sweep,
                    nodes_before: before,
                    nodes_after: g.len(),
                    changed,
                });
                if self.dumps.iter().any(|d| d == name || d == "*") {
                    sink(name, &render(g, self.dump_format));
                }
            }
            if !any {
                break;
            }
        }
        compact(g, "pass manager")?;
        Ok(stats)
    }
}

/// Replaces `g` by its compacted copy (dense ids in topological order).
pub(crate) fn compact(g: &mut Graph, pass: &str) -> Result<(), PassError> {
    let c = g.compacted().map_err(|n| PassError::Graph {
        pass: pass.to_string(),
        graph: g.name.clone(),
        message: format!(
            "cannot compact: node %{} is on a cycle or is a dangling output",
            n.index()
        ),
    })?;
    *g = c;
    Ok(())
}

/// Where each node stood when a pass began. A node a pass creates inherits the
/// rank of the node it replaces, so [`compact_ranked`] prints it in that
/// node's place (a folded forward constant stays among the forward code)
/// instead of wherever petgraph's free list put its id.
pub(crate) struct Ranks(HashMap<NodeId, usize>);

impl Ranks {
    /// Ranks from the graph's topological order.
    pub(crate) fn of(g: &Graph, pass: &str) -> Result<Ranks, PassError> {
        Ok(Ranks(
            topo(g, pass)?
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n, i))
                .collect(),
        ))
    }

    /// Gives the new node `new` the rank of `old`, which it replaces.
    pub(crate) fn inherit(&mut self, new: NodeId, old: NodeId) {
        let r = self.0.get(&old).copied().unwrap_or(usize::MAX);
        self.0.insert(new, r);
    }
}

/// Replaces `g` by a compacted copy whose order is topological and, among the
/// nodes ready at each step, follows `ranks` (then ids).
pub(crate) fn compact_ranked(g: &mut Graph, ranks: &Ranks, pass: &str) -> Result<(), PassError> {
    let ids = g.node_ids();
    let mut indeg: HashMap<NodeId, usize> =
        ids.iter().map(|&n| (n, g.operand_edges(n).len())).collect();
    let key = |n: NodeId| Reverse((ranks.0.get(&n).copied().unwrap_or(usize::MAX), n));
    let mut ready: BinaryHeap<_> = ids
        .iter()
        .filter(|n| indeg[n] == 0)
        .map(|&n| key(n))
        .collect();
    let mut out = Graph::new(g.name.clone());
    let mut map: HashMap<NodeId, NodeId> = HashMap::with_capacity(ids.len());
    while let Some(Reverse((_, n))) = ready.pop() {
        let ops: Vec<NodeId> = g.operands(n).iter().map(|o| map[o]).collect();
        map.insert(n, out.add_node(g.node(n).clone(), &ops));
        for u in g.users(n) {
            let d = indeg.get_mut(&u).expect("a user is a node of the graph");
            *d -= 1;
            if *d == 0 {
                ready.push(key(u));
            }
        }
    }
    if map.len() != ids.len() {
        return Err(PassError::Graph {
            pass: pass.to_string(),
            graph: g.name.clone(),
            message: "cannot compact: the graph has a cycle".into(),
        });
    }
    for (name, id) in g.outputs() {
        let m = map.get(id).ok_or_else(|| PassError::Graph {
            pass: pass.to_string(),
            graph: g.name.clone(),
            message: format!("output '{name}' refers to missing node %{}", id.index()),
        })?;
        out.set_output(name.clone(), *m);
    }
    *g = out;
    Ok(())
}

/// A topological order, or a graph error naming `pass`.
pub(crate) fn topo(g: &Graph, pass: &str) -> Result<Vec<NodeId>, PassError> {
    g.topo_order().map_err(|n| PassError::Graph {
        pass: pass.to_string(),
        graph: g.name.clone(),
        message: format!("cycle through node %{}", n.index()),
    })
}

/// True when `id` is behind a named output.
pub(crate) fn is_output(g: &Graph, id: NodeId) -> bool {
    g.outputs().iter().any(|o| o.1 == id)
}

/// Removes `id` if it is dead (no users, not an output, not an `input`/`param`),
/// then the operands that became dead through it, transitively.
pub(crate) fn remove_if_dead(g: &mut Graph, id: NodeId) {
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        let Some(node) = g.get(n) else { continue };
        if matches!(node.op, Op::Input { .. } | Op::Param { .. })
            || !g.users(n).is_empty()
            || is_output(g, n)
        {
            continue;
        }
        let ops = g.operands(n);
        g.remove_node(n);
        stack.extend(ops);
    }
}

/// Redirects every use of `old` to `new` and removes what that left dead.
pub(crate) fn replace(g: &mut Graph, old: NodeId, new: NodeId) {
    g.replace_all_uses(old, new);
    remove_if_dead(g, old);
}

/// Adds a node that replaces `like`: same role and scope, the given op and type.
pub(crate) fn add_like(
    g: &mut Graph,
    like: NodeId,
    op: Op,
    ty: lossgraph_ir::TensorType,
    operands: &[NodeId],
) -> NodeId {
    let n = g.node(like);
    let node = Node {
        op,
        ty,
        role: n.role.clone(),
        scope: n.scope.clone(),
    };
    g.add_node(node, operands)
}

/// The value of a constant that holds one value everywhere: a splat `const`,
/// or a `broadcast`/`reshape` of one (the seeds autodiff writes look like that).
pub(crate) fn splat_value(g: &Graph, id: NodeId) -> Option<Literal> {
    let mut cur = id;
    for _ in 0..64 {
        let n = g.node(cur);
        match &n.op {
            Op::Const(lit) if lit.len() == 1 => return Some(lit.clone()),
            Op::Const(lit) if lit.is_empty() => return None,
            Op::Const(lit) => {
                let b = lit.bits();
                return b.windows(2).all(|w| w[0] == w[1]).then(|| first(lit));
            }
            Op::Broadcast | Op::Reshape | Op::Transpose { .. } => {
                cur = *g.operands(cur).first()?;
            }
            _ => return None,
        }
    }
    None
}

/// The first value of a literal, as a splat literal.
fn first(lit: &Literal) -> Literal {
    match lit {
        Literal::F32(v) => Literal::F32(v[..1].to_vec()),
        Literal::I32(v) => Literal::I32(v[..1].to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lossgraph_ir::{Builder, TensorType};

    /// `x*1 + 0` with a dead `exp` and a duplicate `tanh`.
    fn sample() -> Graph {
        let b = Builder::new("g");
        let x = b.input("x", TensorType::f32([3]));
        let _dead = x.exp();
        let t1 = x.tanh();
        let t2 = x.tanh();
        let y = &(&t1 * 1.0) + &(&t2 + 0.0);
        b.output("y", &y);
        b.finish().unwrap()
    }

    #[test]
    fn unknown_pass_names_the_pass_and_the_known_ones() {
        let e = PassManager::from_names(&["dce", "nope"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'nope'") && e.contains("cse"), "{e}");
    }

    #[test]
    fn records_node_counts_per_pass() {
        let mut g = sample();
        // x, exp, tanh, tanh, const 1, broadcast, mul, const 0, broadcast, add, add = 11.
        assert_eq!(g.len(), 11);
        let pm = PassManager::from_names(&["dce", "simplify", "cse"]).unwrap();
        let stats = pm.run(&mut g).unwrap();
        let counts: Vec<(&str, usize, usize, bool)> = stats
            .iter()
            .map(|s| (s.pass.as_str(), s.nodes_before, s.nodes_after, s.changed))
            .collect();
        // dce drops exp; simplify drops both constants and their broadcasts, mul and the
        // inner add; cse merges the tanhs.
        assert_eq!(
            counts,
            vec![
                ("dce", 11, 10, true),
                ("simplify", 10, 4, true),
                ("cse", 4, 3, true)
            ]
        );
        lossgraph_ir::verify(&g).unwrap();
    }

    #[test]
    fn fixed_point_repeats_until_nothing_changes() {
        let mut g = sample();
        let pm = PassManager::from_names(&["cse", "simplify"])
            .unwrap()
            .fixed_point(5);
        let stats = pm.run(&mut g).unwrap();
        // Sweep 0 changes, sweep 1 finds nothing and stops the loop.
        assert_eq!(stats.len(), 4);
        assert_eq!(stats.last().unwrap().iteration, 1);
        assert!(stats[2..].iter().all(|s| !s.changed));
        // The dead exp stays: no dce in this pipeline.
        assert_eq!(g.len(), 4);
    }

    #[test]
    fn dumps_after_the_named_passes_only() {
        let mut g = sample();
        let pm = PassManager::from_names(&["dce", "simplify", "dce"])
            .unwrap()
            .dump_after("input")
            .dump_after("dce");
        let mut dumps: Vec<(String, String)> = Vec::new();
        pm.run_with_dumps(&mut g, &mut |p, d| {
            dumps.push((p.to_string(), d.to_string()))
        })
        .unwrap();
        let names: Vec<&str> = dumps.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(names, vec!["input", "dce", "dce"]);
        assert!(dumps[0].1.contains("exp"));
        assert!(!dumps[1].1.contains("exp"));
        assert!(dumps[1].1.contains("mul") && !dumps[2].1.contains("mul"));
        // DOT dumps are Graphviz digraphs.
        let mut g = sample();
        let mut dots = Vec::new();
        PassManager::from_names(&["simplify"])
            .unwrap()
            .dump_after("*")
            .dump_format(DumpFormat::Dot)
            .run_with_dumps(&mut g, &mut |p, d| {
                dots.push((p.to_string(), d.to_string()))
            })
            .unwrap();
        assert_eq!(dots.len(), 1);
        assert!(
            dots[0].1.starts_with("digraph") && dots[0].1.contains("tanh"),
            "{}",
            dots[0].1
        );
    }

    fn breaks_the_graph(g: &mut Graph) -> Result<bool, PassError> {
        let x = g.input("x").expect("sample graph has x");
        let y = g.output("y").expect("sample graph has y");
        // Point an f32[3] add at itself: a cycle.
        g.set_operand(y, 0, y);
        let _ = x;
        Ok(true)
    }

    #[test]
    fn verification_names_the_pass_that_broke_the_graph() {
        let mut g = sample();
        let pm = PassManager::from_names(&["dce"])
            .unwrap()
            .with_custom_pass("vandal", breaks_the_graph)
            .verify_each(true);
        let e = pm.run(&mut g).unwrap_err().to_string();
        assert!(e.contains("'vandal'") && e.contains("cycle"), "{e}");
    }

    #[test]
    fn default_pipeline_reaches_a_small_graph() {
        let mut g = sample();
        let stats = default_pipeline().run(&mut g).unwrap();
        assert!(!stats.is_empty());
        // x, tanh, add(tanh, tanh).
        assert_eq!(g.len(), 3);
        assert!(g.node_ids().iter().enumerate().all(|(i, n)| n.index() == i));
    }
}
