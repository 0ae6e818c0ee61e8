//! The reference interpreter (being written; see issue 2).

use crate::graph::Graph;
use crate::op::Op;
use crate::tensor::HostTensor;
use crate::types::TensorType;
use std::collections::HashMap;

/// Evaluates one non-leaf op (or a `const`) on host operands; `ty` is the node's result type.
pub fn eval_op(op: &Op, ty: &TensorType, operands: &[&HostTensor]) -> Result<HostTensor, String> {
    let _ = (op, ty, operands);
    Err("interpreter not implemented yet".into())
}

/// Evaluates a verified graph. `feeds` supplies every `input` and `param` by
/// name; returns the named outputs in graph order.
pub fn interpret(
    g: &Graph,
    feeds: &HashMap<String, HostTensor>,
) -> Result<Vec<(String, HostTensor)>, String> {
    let _ = (g, feeds);
    Err("interpreter not implemented yet".into())
}
