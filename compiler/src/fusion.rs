//! Fusion: groups a verified graph's nodes into kernels.
//!
//! Every node gets a [`NodeClass`]:
//! - leaves (`input`, `param`, `const`) live in persistent arena regions;
//! - `reshape` is an alias of its operand's storage (row-major data is unchanged);
//! - a *pointwise* node (elementwise ops, `broadcast`, `transpose`, `slice`,
//!   `one_hot`, `random_uniform`, `cast`, `select`, `stop_gradient`) with exactly one
//!   use is *inlined* into its consumer's loop, evaluated at an affine index map;
//! - every other node is a kernel *root*: its value is stored in the arena.
//!
//! Roots are grouped into [`Kernel`]s in a topological schedule. A pointwise
//! root joins an earlier elementwise kernel of the same shape when everything
//! it reads from that kernel is read at the same element (multi-output
//! fusion: an optimiser's `m`, `v` and weight updates become one loop).
//! Reductions and `argmax` evaluate their inlined producers inside their loop;
//! a matmul's consumers (bias add, activation) form the elementwise kernel run
//! right after its GEMM call. With [`FusionOptions::conv_calls`], the
//! convolution patterns become [`KernelKind::Conv`] calls and their im2col
//! nodes are not computed ([`crate::conv_calls`]); with
//! [`FusionOptions::pool_calls`] the pooling patterns become
//! [`KernelKind::Pool`] calls and their window buffers and argmax masks are
//! not computed ([`crate::pool_calls`]).
//!
//! Which class an op falls in is read from the op table
//! ([`lossgraph_ir::op::OpKind`], [`Cost`]); the one per-op `match` here (the
//! kernel kind of a root) is exhaustive.
// No `_ =>` over op kinds: a new op must be classified, never defaulted.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::conv_calls::{self, ConvPass};
use crate::pool_calls::{self, PoolPass};
use lossgraph_ir::op::{Cost, OpKind};
use lossgraph_ir::{Graph, NodeId, Op, ReduceOp};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Errors from fusion, memory planning or lowering; the message names the node and op.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("codegen: {0}")]
pub struct CodegenError(pub String);

/// Most roots one elementwise kernel stores. Horizontal fusion merges every
/// same-shape update of an optimiser into one loop; unbounded, that loop
/// grows with the model (1000 `Dense(4)` layers: one function of ~170k CLIF
/// instructions), and Cranelift's register allocator is superlinear in a
/// function's size. Chunks of `MAX_ROOTS` keep each function bounded.
pub const MAX_ROOTS: usize = 16;

/// Options for [`plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FusionOptions {
    /// Inline single-use pointwise nodes and merge elementwise roots. When
    /// false every non-leaf, non-alias node is its own kernel (the unfused baseline).
    pub fuse: bool,
    /// Run the convolution patterns as [`KernelKind::Conv`] calls without
    /// an im2col buffer ([`crate::conv_calls`]); only for an engine that has
    /// the convolution routines (off by default).
    pub conv_calls: bool,
    /// Run the pooling patterns as [`KernelKind::Pool`] calls on the image
    /// ([`crate::pool_calls`]); only for an engine that has the pooling
    /// routines (off by default).
    pub pool_calls: bool,
}

impl Default for FusionOptions {
    fn default() -> Self {
        FusionOptions {
            fuse: true,
            conv_calls: false,
            pool_calls: false,
        }
    }
}

/// How a node is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeClass {
    /// `input`, `param` or `const`: persistent storage of its own.
    Leaf,
    /// Shares the storage of the given node (a `reshape` chain's first non-reshape operand).
    Alias(NodeId),
    /// Computed inside its single consumer's loop; never stored.
    Inlined,
    /// Stored by the kernel with this index.
    Root(usize),
    /// Not needed by any output; not computed.
    Dead,
}

/// What a kernel does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// One loop over a common shape storing one or more pointwise roots.
    Elementwise,
    /// A `reduce_sum`/`reduce_max` with its inlined producers.
    Reduce,
    /// An `argmax` with its inlined producers.
    ArgMax,
    /// A `concat`: one loop per operand.
    Concat,
    /// A matmul: register-blocked JIT loops or a call to a GEMM routine.
    MatMul,
    /// A `fold` with its inlined producers: a zero fill, then one loop over
    /// the operand adding each element at its window position.
    Fold,
    /// A `scatter_add`: zero the table, then add each value row into the
    /// row its id names (one thread: rows may repeat).
    Scatter,
    /// A convolution pass run as one call on the image (a matmul or fold
    /// root of a [`crate::conv_calls`] pattern).
    Conv(ConvPass),
    /// A pooling pass run as one call on the image (a reduce or fold root
    /// of a [`crate::pool_calls`] pattern).
    Pool(PoolPass),
    /// An `all_reduce_mean` of one stored buffer: an external call to the
    /// program's communicator (nothing inlined: collectives fuse with nothing).
    AllReduce,
}

impl KernelKind {
    /// Short name for dumps.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Elementwise => "elementwise",
            KernelKind::Reduce => "reduce",
            KernelKind::ArgMax => "argmax",
            KernelKind::Concat => "concat",
            KernelKind::MatMul => "gemm",
            KernelKind::Fold => "fold",
            KernelKind::Scatter => "scatter",
            KernelKind::Conv(p) => p.name(),
            KernelKind::Pool(p) => p.name(),
            KernelKind::AllReduce => "all_reduce",
        }
    }
}

/// One kernel: the roots it stores and the inlined nodes it evaluates.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub kind: KernelKind,
    /// Stored nodes, in topological order (the first root defines the kind).
    pub roots: Vec<NodeId>,
    /// Inlined nodes evaluated inside this kernel, in topological order.
    pub inlined: Vec<NodeId>,
}

/// The fused plan. `graph` is the compiler's own compacted copy (ids `0..n`
/// in topological order), with identity copies inserted for outputs that
/// would otherwise alias a variable updated during the step.
#[derive(Clone, Debug)]
pub struct Plan {
    pub graph: Graph,
    /// Indexed by `NodeId::index()`.
    pub class: Vec<NodeClass>,
    /// Kernels in execution order.
    pub kernels: Vec<Kernel>,
}

impl Plan {
    /// The class of a node.
    pub fn class_of(&self, n: NodeId) -> NodeClass {
        self.class[n.index()]
    }

    /// The node whose storage holds `n`'s value (`n` itself unless it is an alias).
    pub fn storage_of(&self, n: NodeId) -> NodeId {
        storage(&self.class, n)
    }

    /// True when `n` has storage: a leaf, an alias or a root.
    pub fn is_materialized(&self, n: NodeId) -> bool {
        match self.class[n.index()] {
            NodeClass::Leaf | NodeClass::Alias(_) | NodeClass::Root(_) => true,
            NodeClass::Inlined | NodeClass::Dead => false,
        }
    }
}

/// True for ops computable at one output element from operand elements at
/// affine positions.
pub fn is_pointwise(op: &Op) -> bool {
    match op.kind() {
        OpKind::Elementwise | OpKind::Movement | OpKind::Index | OpKind::Random => true,
        // A gather reads its table at data-dependent rows, so the table must
        // be stored, never inlined: gather is a root and no fusable consumer.
        OpKind::External
        | OpKind::Leaf
        | OpKind::View
        | OpKind::Reduction
        | OpKind::Contraction
        | OpKind::Scatter
        | OpKind::Join
        | OpKind::Gather
        | OpKind::Collective => false,
    }
}

/// True for ops that evaluate their inlined producers inside their own loops.
fn is_fusable_consumer(op: &Op) -> bool {
    is_pointwise(op)
        || matches!(
            op.kind(),
            OpKind::Reduction | OpKind::Scatter | OpKind::Join
        )
}

/// Pure data movement over stored values: every result element is one
/// operand element, unchanged (movement ops and the `stop_gradient` identity).
fn is_copy(op: &Op) -> bool {
    op.kind() == OpKind::Movement || *op == Op::StopGradient
}

/// True for ops not worth recomputing per element of an expanding consumer.
fn is_expensive(op: &Op) -> bool {
    op.cost() != Cost::Cheap
}

/// Node id helper: compacted graphs number nodes `0..n`.
fn nid(i: usize) -> NodeId {
    NodeId::new(i)
}

/// Prepares the compiler's copy of the graph: compacts it and inserts an
/// identity (`stop_gradient`) in front of every output that would alias a
/// variable written during the step, so outputs always show this step's values.
fn prepare(graph: &Graph) -> Result<Graph, CodegenError> {
    let mut g = graph.compacted().map_err(|n| {
        CodegenError(format!(
            "graph has a cycle or dangling output at node %{}",
            n.index()
        ))
    })?;
    let updated: std::collections::HashSet<String> = g
        .outputs()
        .iter()
        .filter_map(|(name, _)| lossgraph_ir::names::updated_variable(name).map(str::to_string))
        .collect();
    let storage_root = |g: &Graph, mut n: NodeId| {
        while g.node(n).op.kind() == OpKind::View {
            n = g.operands(n)[0];
        }
        n
    };
    let outs: Vec<(String, NodeId)> = g.outputs().to_vec();
    for (name, id) in outs {
        let s = storage_root(&g, id);
        let needs_copy = if let Op::Param { name: p } = &g.node(s).op {
            lossgraph_ir::names::updated_variable(&name).is_some() || updated.contains(p)
        } else {
            false
        };
        if needs_copy {
            let mut node = g.node(id).clone();
            node.op = Op::StopGradient;
            let c = g.add_node(node, &[id]);
            g.set_output(name, c);
        }
    }
    g.compacted().map_err(|n| {
        CodegenError(format!(
            "graph has a cycle or dangling output at node %{}",
            n.index()
        ))
    })
}

/// Groups a verified graph into kernels (see the module docs).
pub fn plan(graph: &Graph, opts: &FusionOptions) -> Result<Plan, CodegenError> {
    let g = prepare(graph)?;
    let n = g.len();
    // Liveness: nodes reachable backwards from outputs.
    let mut live = vec![false; n];
    let mut stack: Vec<NodeId> = g.outputs().iter().map(|o| o.1).collect();
    while let Some(x) = stack.pop() {
        if !std::mem::replace(&mut live[x.index()], true) {
            stack.extend(g.operands(x));
        }
    }
    let mut uses = vec![0usize; n];
    // Single live user of each node (meaningful when it has exactly one use).
    let mut single_user: Vec<Option<NodeId>> = vec![None; n];
    for (i, _) in live.iter().enumerate().filter(|(_, l)| **l) {
        for o in g.operands(nid(i)) {
            uses[o.index()] += 1;
            single_user[o.index()] = Some(nid(i));
        }
    }
    for (_, o) in g.outputs() {
        uses[o.index()] += 1;
    }
    let mut class = vec![NodeClass::Dead; n];
    let mut expensive = vec![false; n];
    let mut cheap_flags = vec![false; n];
    let mut is_output = vec![false; n];
    for (_, o) in g.outputs() {
        is_output[o.index()] = true;
    }
    for i in 0..n {
        let id = nid(i);
        let node = g.node(id);
        if node.op.is_leaf() {
            class[i] = NodeClass::Leaf;
            continue;
        }
        if !live[i] {
            continue;
        }
        let ops = g.operands(id);
        expensive[i] = is_expensive(&node.op)
            || ops
                .iter()
                .any(|o| class[o.index()] == NodeClass::Inlined && expensive[o.index()]);
        if node.op.kind() == OpKind::View {
            class[i] = NodeClass::Alias(storage(&class, ops[0]));
            continue;
        }
        // Pure data movement over stored values (a broadcast bias, a
        // stop_gradient'ed maximum, a transposed weight) is re-evaluated in
        // every consumer as a load, never stored, whatever its use count.
        let cheap = opts.fuse
            && is_copy(&node.op)
            && !is_output[i]
            && ops
                .iter()
                .all(|o| class[o.index()] != NodeClass::Inlined || cheap_flags[o.index()])
            && g.users(id)
                .into_iter()
                .filter(|u| live[u.index()])
                .all(|u| is_fusable_consumer(&g.node(u).op));
        cheap_flags[i] = cheap;
        let inline = cheap
            || opts.fuse
                && is_pointwise(&node.op)
                && uses[i] == 1
                && match single_user[i] {
                    Some(u) => {
                        let uop = &g.node(u).op;
                        let consumer_ok = is_fusable_consumer(uop);
                        // Only movement and index ops can have more elements than their operand.
                        let expands = matches!(uop.kind(), OpKind::Movement | OpKind::Index)
                            && g.node(u).ty.numel() > node.ty.numel();
                        consumer_ok && !(expands && expensive[i])
                    }
                    None => false,
                };
        class[i] = if inline {
            NodeClass::Inlined
        } else {
            NodeClass::Root(usize::MAX)
        };
    }
    let convs = if opts.conv_calls {
        conv_calls::recognise(&g, &mut class, &live, &is_output)
    } else {
        HashMap::new()
    };
    let pools = if opts.pool_calls {
        pool_calls::recognise(&g, &mut class)
    } else {
        HashMap::new()
    };
    let reads: HashMap<NodeId, SmallVec<[NodeId; 2]>> = convs
        .iter()
        .map(|(&id, c)| (id, c.operands.iter().copied().collect()))
        .chain(pools.iter().map(|(&id, c)| (id, c.operands.clone())))
        .collect();
    drop_unread(&g, &mut class, &live, &is_output, &reads);
    let call_or = |id: NodeId, kind: KernelKind| match (convs.get(&id), pools.get(&id)) {
        (Some(c), _) => KernelKind::Conv(c.pass),
        (None, Some(p)) => KernelKind::Pool(p.pass),
        (None, None) => kind,
    };
    // Reshape operands that are inlined must be stored instead: the alias needs storage.
    // (An inlined node has one use; if that use is a reshape it is not inlined, since
    // reshape is not a pointwise consumer, so nothing to fix here.)
    let mut kernels: Vec<Kernel> = Vec::new();
    for i in 0..n {
        if class[i] != NodeClass::Root(usize::MAX) {
            continue;
        }
        let id = nid(i);
        let kind = match g.node(id).op {
            Op::MatMul { .. } => call_or(id, KernelKind::MatMul),
            Op::Reduce { .. } => call_or(id, KernelKind::Reduce),
            Op::ArgMax { .. } => KernelKind::ArgMax,
            Op::Concat { .. } => KernelKind::Concat,
            Op::Fold { .. } => call_or(id, KernelKind::Fold),
            Op::Unary(_)
            | Op::Binary(_)
            | Op::Select
            | Op::Cast
            | Op::StopGradient
            | Op::Broadcast
            | Op::Transpose { .. }
            | Op::Slice { .. }
            | Op::Unfold { .. }
            | Op::OneHot { .. }
            | Op::RandomUniform { .. }
            | Op::RandomNormal { .. }
            | Op::RandomBernoulli { .. }
            | Op::Gather => KernelKind::Elementwise,
            Op::ScatterAdd { .. } => KernelKind::Scatter,
            Op::AllReduceMean => KernelKind::AllReduce,
            // Leaves and views are classed above and never become roots.
            Op::Input { .. } | Op::Param { .. } | Op::Const(_) | Op::Reshape => {
                return Err(node_error(&g, id, "a leaf or view cannot be a kernel root"))
            }
        };
        let mut cone = Vec::new();
        collect_cone(&g, &class, id, &mut cone);
        let mut target = None;
        if opts.fuse && kind == KernelKind::Elementwise {
            // Loads of stored nodes, with whether each is read at the same element.
            let mut loads = Vec::new();
            cone_loads(&g, &class, id, true, &mut loads);
            let bound = loads
                .iter()
                .filter_map(|(m, _)| match class[storage(&class, *m).index()] {
                    NodeClass::Root(k) => Some(k),
                    NodeClass::Leaf
                    | NodeClass::Alias(_)
                    | NodeClass::Inlined
                    | NodeClass::Dead => None,
                })
                .max();
            let shape = &g.node(id).ty.shape;
            let lo = bound.unwrap_or(0);
            for j in (lo..kernels.len()).rev() {
                let k = &kernels[j];
                if k.kind != KernelKind::Elementwise
                    || k.roots.len() >= MAX_ROOTS
                    || g.node(k.roots[0]).ty.shape != *shape
                {
                    continue;
                }
                let compatible = loads.iter().all(|(m, ident)| {
                    let s = storage(&class, *m);
                    if class[s.index()] != NodeClass::Root(j) {
                        return true;
                    }
                    *ident && s == *m
                });
                if compatible {
                    target = Some(j);
                    break;
                }
            }
        }
        let k = match target {
            Some(j) => j,
            None => {
                kernels.push(Kernel {
                    kind,
                    roots: Vec::new(),
                    inlined: Vec::new(),
                });
                kernels.len() - 1
            }
        };
        class[i] = NodeClass::Root(k);
        kernels[k].roots.push(id);
        kernels[k].inlined.extend(cone);
    }
    for k in &mut kernels {
        k.inlined.sort();
        k.inlined.dedup();
    }
    Ok(Plan {
        graph: g,
        class,
        kernels,
    })
}

/// Marks `Dead` every live computed node (root, inlined or alias) that no
/// output needs once each external call reads only the nodes `reads` lists
/// for its root (the im2col or window buffer, a mask, a data gradient's
/// matmul): a backward sweep over the topologically ordered graph.
fn drop_unread(
    g: &Graph,
    class: &mut [NodeClass],
    live: &[bool],
    is_output: &[bool],
    reads: &HashMap<NodeId, SmallVec<[NodeId; 2]>>,
) {
    let mut needed = is_output.to_vec();
    for i in (0..g.len()).rev() {
        if !live[i] || !needed[i] {
            continue;
        }
        let id = nid(i);
        match reads.get(&id) {
            Some(ops) => ops.iter().for_each(|o| needed[o.index()] = true),
            None => g.operands(id).iter().for_each(|o| needed[o.index()] = true),
        }
    }
    for (i, c) in class.iter_mut().enumerate() {
        if live[i] && !needed[i] {
            *c = match *c {
                NodeClass::Leaf => NodeClass::Leaf,
                NodeClass::Alias(_) | NodeClass::Inlined | NodeClass::Root(_) | NodeClass::Dead => {
                    NodeClass::Dead
                }
            };
        }
    }
}

fn storage(class: &[NodeClass], n: NodeId) -> NodeId {
    match class[n.index()] {
        NodeClass::Alias(s) => s,
        NodeClass::Leaf | NodeClass::Inlined | NodeClass::Root(_) | NodeClass::Dead => n,
    }
}

/// A codegen error at node `n`: names the node (`%N` in the compacted graph),
/// its op and type, and its scope, then the reason.
pub fn node_error(g: &Graph, n: NodeId, reason: &str) -> CodegenError {
    let node = g.node(n);
    CodegenError(format!(
        "node %{} ({} : {}) in scope '{}': {reason}",
        n.index(),
        node.op.name(),
        node.ty,
        node.scope
    ))
}

/// Inlined nodes feeding `root` (not including `root`).
fn collect_cone(g: &Graph, class: &[NodeClass], root: NodeId, out: &mut Vec<NodeId>) {
    for o in g.operands(root) {
        if class[o.index()] == NodeClass::Inlined {
            out.push(o);
            collect_cone(g, class, o, out);
        }
    }
}

/// Stored nodes read by `n`'s inlined cone, with whether each read is at the
/// same element index as `n`'s own (true only through elementwise ops).
fn cone_loads(
    g: &Graph,
    class: &[NodeClass],
    n: NodeId,
    ident: bool,
    out: &mut Vec<(NodeId, bool)>,
) {
    let op = &g.node(n).op;
    for o in g.operands(n) {
        let same = ident
            && (op.is_elementwise()
                || (matches!(op, Op::Broadcast) && g.node(o).ty.shape == g.node(n).ty.shape));
        if class[o.index()] == NodeClass::Inlined {
            cone_loads(g, class, o, same, out);
        } else {
            out.push((o, same));
        }
    }
}

/// The plan as text: one block per kernel listing its kind, stored roots and
/// inlined nodes (ids as in the compacted graph, `%i = op : type`).
pub fn plan_text(p: &Plan) -> String {
    let g = &p.graph;
    let mut s = String::new();
    let line = |s: &mut String, tag: &str, id: NodeId| {
        let node = g.node(id);
        let ops: Vec<String> = g
            .operands(id)
            .iter()
            .map(|o| format!("%{}", o.index()))
            .collect();
        let _ = writeln!(
            s,
            "    {tag} %{} = {} {} : {}  @{} {}",
            id.index(),
            node.op.name(),
            ops.join(", "),
            node.ty,
            node.scope,
            node.role
        );
    };
    let _ = writeln!(s, "plan {} ({} kernels) {{", g.name, p.kernels.len());
    for (i, k) in p.kernels.iter().enumerate() {
        let _ = writeln!(s, "  kernel {i} {} {{", k.kind.name());
        let mut all: Vec<(NodeId, bool)> = k
            .inlined
            .iter()
            .map(|&n| (n, false))
            .chain(k.roots.iter().map(|&n| (n, true)))
            .collect();
        all.sort();
        for (id, root) in all {
            line(&mut s, if root { "store " } else { "inline" }, id);
        }
        let _ = writeln!(s, "  }}");
    }
    let aliases: Vec<String> = (0..g.len())
        .filter_map(|i| match p.class[i] {
            NodeClass::Alias(t) => Some(format!("%{i}->%{}", t.index())),
            NodeClass::Leaf | NodeClass::Inlined | NodeClass::Root(_) | NodeClass::Dead => None,
        })
        .collect();
    if !aliases.is_empty() {
        let _ = writeln!(s, "  aliases {}", aliases.join(" "));
    }
    let outs: Vec<String> = g
        .outputs()
        .iter()
        .map(|(n, id)| format!("{n}=%{}", id.index()))
        .collect();
    let _ = writeln!(s, "  return {}", outs.join(", "));
    s.push_str("}\n");
    s
}

/// The reduce op and axes of a `reduce` node, for lowering.
pub(crate) fn reduce_parts(op: &Op) -> Option<(ReduceOp, &[usize])> {
    if let Op::Reduce { op, axes } = op {
        Some((*op, axes.as_slice()))
    } else {
        None
    }
}
