//! The graph: a petgraph DAG of typed nodes with roles, scopes and named outputs.

use crate::op::Op;
use crate::types::TensorType;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use smallvec::SmallVec;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

/// A node id. Stable across removals of other nodes.
pub type NodeId = NodeIndex<u32>;

/// Why an added loss exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossReason {
    KernelRegularizer,
    BiasRegularizer,
    ActivityRegularizer,
    AddLoss,
}

impl LossReason {
    /// Text-format name (`kernel_regularizer`, …, `add_loss`).
    pub fn name(self) -> &'static str {
        match self {
            LossReason::KernelRegularizer => "kernel_regularizer",
            LossReason::BiasRegularizer => "bias_regularizer",
            LossReason::ActivityRegularizer => "activity_regularizer",
            LossReason::AddLoss => "add_loss",
        }
    }

    /// Parses a name written by [`LossReason::name`].
    pub fn from_name(s: &str) -> Option<LossReason> {
        Some(match s {
            "kernel_regularizer" => LossReason::KernelRegularizer,
            "bias_regularizer" => LossReason::BiasRegularizer,
            "activity_regularizer" => LossReason::ActivityRegularizer,
            "add_loss" => LossReason::AddLoss,
            _ => return None,
        })
    }
}

/// What a node is for. Passes preserve the role of every node they rewrite.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// A per-step input (batch data, labels, hyper-parameters).
    Input,
    /// A trainable or frozen model variable.
    Parameter,
    /// Optimiser state (momentum, Adam moments).
    OptimizerState,
    /// Part of the model's forward computation.
    Forward,
    /// Part of the compiled loss of one model output, with its loss weight.
    CompiledLoss { output: String, weight: f32 },
    /// Part of an added loss, owned by the node's scope (the layer that added it).
    /// `call` counts the owning layer's calls (shared layers add one per call).
    AddedLoss { reason: LossReason, call: u32 },
    /// Part of the backward pass.
    Gradient,
    /// Part of an optimiser update.
    Update,
    /// Part of a layer's state update (`CallCtx::assign`, e.g. a running
    /// mean): computed in training steps only, never differentiated.
    StateUpdate,
    /// Part of a metric.
    Metric { name: String },
}

impl Role {
    /// A short name used for colours and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Input => "input",
            Role::Parameter => "param",
            Role::OptimizerState => "state",
            Role::Forward => "forward",
            Role::CompiledLoss { .. } => "loss",
            Role::AddedLoss { .. } => "added_loss",
            Role::Gradient => "gradient",
            Role::Update => "update",
            Role::StateUpdate => "state_update",
            Role::Metric { .. } => "metric",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::CompiledLoss { output, weight } => {
                write!(
                    f,
                    "loss({}, {:?})",
                    crate::text::quote_if_needed(output),
                    weight
                )
            }
            Role::AddedLoss { reason, call } => {
                if *call == 0 {
                    write!(f, "added_loss({})", reason.name())
                } else {
                    write!(f, "added_loss({}, {})", reason.name(), call)
                }
            }
            Role::Metric { name } => write!(f, "metric({})", crate::text::quote_if_needed(name)),
            other => f.write_str(other.kind()),
        }
    }
}

/// One node of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    /// The result type; authoritative for leaves, `broadcast`, `reshape`, `cast`, `random_uniform`.
    pub ty: TensorType,
    pub role: Role,
    /// The layer path that emitted the node (`encoder/dense_1`), or empty.
    pub scope: String,
}

/// A computation graph. Edges point from operand to user and carry the
/// operand position. Invariants of a *verified* graph (see [`crate::verify`]):
/// acyclic, operand positions `0..n` present exactly once, every node's type
/// consistent with its op, every output present, input/param names unique.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    dag: StableDiGraph<Node, u32, u32>,
    outputs: Vec<(String, NodeId)>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            dag: StableDiGraph::default(),
            outputs: Vec::new(),
        }
    }

    /// Adds a node with its operands (in order). Does not type-check: use the
    /// builder for checked construction, or [`crate::verify`] afterwards.
    pub fn add_node(&mut self, node: Node, operands: &[NodeId]) -> NodeId {
        let id = self.dag.add_node(node);
        for (pos, &o) in operands.iter().enumerate() {
            self.dag.add_edge(o, id, pos as u32);
        }
        id
    }

    /// The node with this id. Panics if it was removed (a caller bug, not user input).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.dag[id]
    }

    /// The node with this id, or `None`.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.dag.node_weight(id)
    }

    /// Mutable access to a node (op, type, role, scope).
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.dag[id]
    }

    /// Operand ids in position order.
    pub fn operands(&self, id: NodeId) -> SmallVec<[NodeId; 4]> {
        let mut e: SmallVec<[(u32, NodeId); 4]> = self
            .dag
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        e.sort_unstable_by_key(|p| p.0);
        e.into_iter().map(|p| p.1).collect()
    }

    /// Ids of nodes using `id` (one entry per use, unordered).
    pub fn users(&self, id: NodeId) -> SmallVec<[NodeId; 4]> {
        self.dag
            .neighbors_directed(id, Direction::Outgoing)
            .collect()
    }

    /// Raw (position, operand) pairs, unsorted; used by the verifier.
    pub fn operand_edges(&self, id: NodeId) -> Vec<(u32, NodeId)> {
        self.dag
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect()
    }

    /// Replaces operand `pos` of `user` with `new`.
    pub fn set_operand(&mut self, user: NodeId, pos: u32, new: NodeId) {
        let old: Vec<_> = self
            .dag
            .edges_directed(user, Direction::Incoming)
            .filter(|e| *e.weight() == pos)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.dag.remove_edge(e);
        }
        self.dag.add_edge(new, user, pos);
    }

    /// Redirects every use of `old` (operands and outputs) to `new`.
    pub fn replace_all_uses(&mut self, old: NodeId, new: NodeId) {
        if old == new {
            return;
        }
        let uses: Vec<(NodeId, u32)> = self
            .dag
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        for (user, pos) in uses {
            self.set_operand(user, pos, new);
        }
        for o in &mut self.outputs {
            if o.1 == old {
                o.1 = new;
            }
        }
    }

    /// Removes a node and its edges. Outputs that named it become dangling
    /// (the verifier reports them).
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        self.dag.remove_node(id)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.dag.node_count()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.dag.node_count() == 0
    }

    /// All node ids in index order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.dag.node_indices().collect()
    }

    /// True when `id` names a live node.
    pub fn contains(&self, id: NodeId) -> bool {
        self.dag.contains_node(id)
    }

    /// Named outputs in declaration order.
    pub fn outputs(&self) -> &[(String, NodeId)] {
        &self.outputs
    }

    /// Adds or replaces a named output.
    pub fn set_output(&mut self, name: impl Into<String>, id: NodeId) {
        let name = name.into();
        if let Some(o) = self.outputs.iter_mut().find(|o| o.0 == name) {
            o.1 = id;
        } else {
            self.outputs.push((name, id));
        }
    }

    /// Removes a named output; returns its node if it existed.
    pub fn remove_output(&mut self, name: &str) -> Option<NodeId> {
        let i = self.outputs.iter().position(|o| o.0 == name)?;
        Some(self.outputs.remove(i).1)
    }

    /// The node behind a named output.
    pub fn output(&self, name: &str) -> Option<NodeId> {
        self.outputs.iter().find(|o| o.0 == name).map(|o| o.1)
    }

    /// The `input` node with this name.
    pub fn input(&self, name: &str) -> Option<NodeId> {
        self.dag
            .node_indices()
            .find(|&i| matches!(&self.dag[i].op, Op::Input { name: n } if n == name))
    }

    /// The `param` node with this name.
    pub fn param(&self, name: &str) -> Option<NodeId> {
        self.dag
            .node_indices()
            .find(|&i| matches!(&self.dag[i].op, Op::Param { name: n } if n == name))
    }

    /// All `input` nodes as (name, id), in index order.
    pub fn inputs(&self) -> Vec<(String, NodeId)> {
        self.dag
            .node_indices()
            .filter_map(|i| match &self.dag[i].op {
                Op::Input { name } => Some((name.clone(), i)),
                _ => None,
            })
            .collect()
    }

    /// All `param` nodes as (name, id), in index order.
    pub fn params(&self) -> Vec<(String, NodeId)> {
        self.dag
            .node_indices()
            .filter_map(|i| match &self.dag[i].op {
                Op::Param { name } => Some((name.clone(), i)),
                _ => None,
            })
            .collect()
    }

    /// A deterministic topological order (Kahn's algorithm, smallest id
    /// first), or the id of a node on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, NodeId> {
        let mut indeg: std::collections::HashMap<NodeId, usize> = self
            .dag
            .node_indices()
            .map(|i| (i, self.dag.edges_directed(i, Direction::Incoming).count()))
            .collect();
        let mut ready: BinaryHeap<Reverse<NodeId>> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&i, _)| Reverse(i))
            .collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(n);
            for e in self.dag.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target is a node");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(e.target()));
                }
            }
        }
        if order.len() == self.len() {
            Ok(order)
        } else {
            let stuck = indeg.iter().filter(|(_, &d)| d > 0).map(|(&i, _)| i).min();
            Err(stuck.expect("a cycle leaves a node with positive in-degree"))
        }
    }

    /// A copy with ids renumbered `0..n` in topological order, outputs kept.
    /// Fails with a node on a cycle, or with the node of a dangling output.
    pub fn compacted(&self) -> Result<Graph, NodeId> {
        let order = self.topo_order()?;
        let mut map = std::collections::HashMap::new();
        let mut g = Graph::new(self.name.clone());
        for &id in &order {
            let ops: SmallVec<[NodeId; 4]> = self.operands(id).iter().map(|o| map[o]).collect();
            let nid = g.add_node(self.node(id).clone(), &ops);
            map.insert(id, nid);
        }
        for (name, id) in &self.outputs {
            g.outputs.push((name.clone(), *map.get(id).ok_or(*id)?));
        }
        Ok(g)
    }

    /// The underlying petgraph DAG (read-only), for petgraph algorithms and DOT output.
    pub fn dag(&self) -> &StableDiGraph<Node, u32, u32> {
        &self.dag
    }
}
