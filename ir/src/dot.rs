//! Graphviz DOT output, for looking at graphs (`dot -Tsvg`).
//!
//! One DOT node per IR node, numbered as in the text format (topological
//! order), labelled `%id op attrs : type` with the node's `@scope role` on a
//! second line; filled with a colour per role ([`role_color`]) so that added
//! losses stand out. Edges run from operand to user and carry the operand
//! position when the user has more than one operand. Each named output is a
//! white box fed by a dashed edge. A legend cluster lists the role colours.

use crate::graph::{Graph, LossReason, NodeId, Role};
use crate::text::{annotation, literal_text, op_text};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Role kinds in legend order, with an example role of each kind.
fn legend_roles() -> [Role; 10] {
    [
        Role::Input,
        Role::Parameter,
        Role::OptimizerState,
        Role::Forward,
        Role::CompiledLoss {
            output: String::new(),
            weight: 1.0,
        },
        Role::AddedLoss {
            reason: LossReason::AddLoss,
            call: 0,
        },
        Role::Gradient,
        Role::Update,
        Role::StateUpdate,
        Role::Metric {
            name: String::new(),
        },
    ]
}

/// The fill colour of a role's nodes (`#rrggbb`). Every role kind has its own
/// colour; added losses get a saturated orange-red, everything else pale tones.
pub fn role_color(role: &Role) -> &'static str {
    match role {
        Role::Input => "#9ecae1",
        Role::Parameter => "#74c476",
        Role::OptimizerState => "#bcbddc",
        Role::Forward => "#f0f0f0",
        Role::CompiledLoss { .. } => "#ffe680",
        Role::AddedLoss { .. } => "#e6550d",
        Role::Gradient => "#d4b9da",
        Role::Update => "#66c2a4",
        Role::StateUpdate => "#fdae6b",
        Role::Metric { .. } => "#fde0ef",
    }
}

/// Extra node attributes for roles that must stand out.
fn role_emphasis(role: &Role) -> &'static str {
    match role {
        Role::AddedLoss { .. } => ", fontcolor=\"white\", color=\"#a63603\", penwidth=2",
        _ => "",
    }
}

/// Escapes text for a DOT double-quoted string used as a label: backslashes
/// and quotes are escaped, line breaks become `\n`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' | '\r' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Renders `g` as a Graphviz `digraph`. Works on any graph; a graph with a
/// cycle is numbered in index order, and outputs naming removed nodes are
/// left out.
pub fn to_dot(g: &Graph) -> String {
    let order = g.topo_order().unwrap_or_else(|_| g.node_ids());
    let num: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut s = String::new();
    let _ = writeln!(s, "digraph \"{}\" {{", escape(&g.name));
    s.push_str("  graph [rankdir=TB, fontname=\"Helvetica\"];\n");
    s.push_str(
        "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n",
    );
    s.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for (i, &id) in order.iter().enumerate() {
        let node = g.node(id);
        let mut op = op_text(&node.op, "");
        if let crate::op::Op::Const(lit) = &node.op {
            if literal_text(lit).len() > 40 {
                op = format!("const [{} values]", lit.len());
            }
        }
        let mut label = format!("%{i} {op} : {}", node.ty);
        if let Some(a) = annotation(node) {
            label.push('\n');
            label.push_str(&a);
        }
        let _ = writeln!(
            s,
            "  n{i} [label=\"{}\", fillcolor=\"{}\"{}];",
            escape(&label),
            role_color(&node.role),
            role_emphasis(&node.role)
        );
    }
    for &id in &order {
        let ops = g.operands(id);
        for (pos, o) in ops.iter().enumerate() {
            let Some(from) = num.get(o) else { continue };
            if ops.len() > 1 {
                let _ = writeln!(s, "  n{from} -> n{} [label=\"{pos}\"];", num[&id]);
            } else {
                let _ = writeln!(s, "  n{from} -> n{};", num[&id]);
            }
        }
    }
    for (k, (name, id)) in g.outputs().iter().enumerate() {
        let Some(from) = num.get(id) else { continue };
        let _ = writeln!(
            s,
            "  out{k} [label=\"{}\", shape=box, style=\"filled,bold\", fillcolor=\"white\"];",
            escape(name)
        );
        let _ = writeln!(s, "  n{from} -> out{k} [style=dashed];");
    }
    s.push_str("  subgraph cluster_legend {\n    label=\"roles\";\n    style=dashed;\n");
    let roles = legend_roles();
    for r in &roles {
        let _ = writeln!(
            s,
            "    legend_{k} [label=\"{k}\", fillcolor=\"{}\"{}];",
            role_color(r),
            role_emphasis(r),
            k = r.kind()
        );
    }
    let chain: Vec<String> = roles
        .iter()
        .map(|r| format!("legend_{}", r.kind()))
        .collect();
    let _ = writeln!(s, "    {} [style=invis];", chain.join(" -> "));
    s.push_str("  }\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Builder;
    use crate::gen::{random_graph, GenConfig};
    use crate::types::TensorType;
    use std::collections::HashSet;

    /// A small structural DOT check independent of the writer: quoted strings
    /// terminate, escapes are `\\`, `\"` or `\n`, braces balance, every
    /// statement line ends with `;`, `{` or `}`, and edges join declared nodes.
    fn check_dot(dot: &str) -> (HashSet<String>, Vec<(String, String)>) {
        let mut depth = 0i32;
        let mut in_str = false;
        let mut chars = dot.chars();
        while let Some(c) = chars.next() {
            if in_str {
                match c {
                    '\\' => {
                        let e = chars.next();
                        assert!(matches!(e, Some('\\' | '"' | 'n')), "bad escape {e:?}");
                    }
                    '"' => in_str = false,
                    '\n' => panic!("raw newline inside a string"),
                    _ => {}
                }
            } else {
                match c {
                    '"' => in_str = true,
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        assert!(depth >= 0);
                    }
                    _ => {}
                }
            }
        }
        assert!(!in_str && depth == 0);
        let mut nodes = HashSet::new();
        let mut edges = Vec::new();
        for line in dot.lines() {
            let t = line.trim();
            assert!(
                t.ends_with(';') || t.ends_with('{') || t == "}",
                "bad line {t}"
            );
            if let Some((from, rest)) = t.split_once(" -> ") {
                if !from.contains(' ') && !rest.starts_with("legend") {
                    let to = rest.split([' ', ';']).next().unwrap();
                    edges.push((from.to_string(), to.to_string()));
                }
            } else if let Some((id, _)) = t.split_once(" [label=") {
                nodes.insert(id.to_string());
            }
        }
        for (a, b) in &edges {
            assert!(nodes.contains(a) && nodes.contains(b), "{a} -> {b}");
        }
        (nodes, edges)
    }

    #[test]
    fn small_graph_has_one_node_per_ir_node_and_role_colours() {
        let b = Builder::new("net");
        let x = b.input("x", TensorType::f32([2, 3]));
        let w = b.param("dense/kernel", TensorType::f32([3, 4]));
        let h = b.with_scope("dense", || x.matmul(&w));
        let reg = b.with_scope("dense", || {
            b.with_role(
                Role::AddedLoss {
                    reason: LossReason::KernelRegularizer,
                    call: 0,
                },
                || w.abs().sum_all(),
            )
        });
        b.output("pred/out", &h);
        b.output("added/0", &reg);
        let g = b.finish().unwrap();
        let dot = to_dot(&g);
        let (nodes, edges) = check_dot(&dot);
        let ir_nodes: Vec<&String> = nodes.iter().filter(|n| n.starts_with('n')).collect();
        assert_eq!(ir_nodes.len(), g.len());
        assert_eq!(nodes.iter().filter(|n| n.starts_with("out")).count(), 2);
        assert!(dot.starts_with("digraph \"net\" {\n"));
        assert!(dot
            .contains("  n0 [label=\"%0 input \\\"x\\\" : f32[2,3]\", fillcolor=\"#9ecae1\"];\n"));
        assert!(dot.contains(
            "  n2 [label=\"%2 matmul : f32[2,4]\\n@dense forward\", fillcolor=\"#f0f0f0\"];\n"
        ));
        // The added-loss nodes (abs, reduce_sum) are orange-red with white text.
        assert!(dot.contains(
            "  n3 [label=\"%3 abs : f32[3,4]\\n@dense added_loss(kernel_regularizer)\", \
             fillcolor=\"#e6550d\", fontcolor=\"white\", color=\"#a63603\", penwidth=2];\n"
        ));
        // Matmul has two operands, so its edges are labelled; abs has one.
        assert!(dot.contains("  n0 -> n2 [label=\"0\"];\n"));
        assert!(dot.contains("  n1 -> n2 [label=\"1\"];\n"));
        assert!(dot.contains("  n1 -> n3;\n"));
        assert!(dot.contains("  n2 -> out0 [style=dashed];\n"));
        assert!(dot.contains("  n4 -> out1 [style=dashed];\n"));
        assert!(dot.contains("out1 [label=\"added/0\""));
        // 3 operand edges + 1 + 2 outputs.
        assert_eq!(edges.len(), 2 + 1 + 1 + 2);
        assert!(dot.contains("subgraph cluster_legend"));
    }

    #[test]
    fn role_colours_are_distinct() {
        let colours: HashSet<&str> = legend_roles().iter().map(role_color).collect();
        assert_eq!(colours.len(), 10);
    }

    #[test]
    fn labels_are_escaped() {
        let b = Builder::new("we\"ird\\name");
        let x = b.input("a\"b\\c", TensorType::f32([1]));
        let y = b.with_scope("s\"q", || x.neg());
        b.output("o\"ut\n2", &y);
        let g = b.finish().unwrap();
        let dot = to_dot(&g);
        check_dot(&dot);
        assert!(dot.starts_with("digraph \"we\\\"ird\\\\name\" {\n"));
        // The text format writes the name as "a\"b\\c"; DOT escapes that again.
        assert!(dot.contains("n0 [label=\"%0 input \\\"a\\\\\\\"b\\\\\\\\c\\\" : f32[1]\""));
        assert!(dot.contains("n1 [label=\"%1 neg : f32[1]\\n@\\\"s\\\\\\\"q\\\" forward\""));
        assert!(dot.contains("out0 [label=\"o\\\"ut\\n2\""));
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn generated_graphs_give_well_formed_dot() {
        for seed in 0..40 {
            let g = random_graph(
                seed,
                &GenConfig {
                    special_literals: true,
                    ..GenConfig::default()
                },
            );
            let dot = to_dot(&g);
            let (nodes, edges) = check_dot(&dot);
            assert_eq!(nodes.iter().filter(|n| n.starts_with('n')).count(), g.len());
            let operand_edges: usize = g.node_ids().iter().map(|&i| g.operands(i).len()).sum();
            assert_eq!(edges.len(), operand_edges + g.outputs().len());
        }
    }
}
