//! Pooling calls: finds, in a fused plan, the patterns that
//! `lossgraph_ir::conv::max_pool` and `avg_pool` and their VJPs emit, so
//! that each runs as one pass of the runtime's pooling routines over the
//! image (no window buffer, no `argmax`/`one_hot` mask):
//!
//! - max forward: `reduce_sum(select(one_hot(argmax(w)), w, 0))` with
//!   `w = view(transpose(unfold(x)))`, the windows `[N, O.., C, ΠK]`;
//! - max gradient: `fold(transpose(view(select(one_hot(argmax(w)),
//!   broadcast(dy), 0))))`, the gradient routed to the first maximum;
//! - window sum (the average's numerator): `reduce_sum(unfold(x))` over the
//!   window axes;
//! - window-sum gradient: `fold(broadcast(g))` (each window's `g` added to
//!   every cell of the window).
//!
//! The average's division by its real-cell counts stays an elementwise op
//! of the graph. `x` is the stored unfold operand: when the pooling is
//! padded that is the padded image (its `concat`, `−∞` cells for max, `0`
//! for the sum), so the calls never pad, and a padded max gradient is the
//! padded image's (its `slice` stays). The routines pick the first maximum
//! as `argmax` does (a NaN first, then the first strictly greater value).
//! Only 1-d and 2-d undilated windows match.
//!
//! The matcher ([`match_root`]) is purely structural, so the lowering
//! re-derives a call's geometry from the code that recognised it;
//! [`recognise`] adds the plan-level condition (operands stored).
// No `_ =>` over op kinds or classes.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::conv_calls::window_geometry;
use crate::fusion::NodeClass;
use crate::passes::splat_value;
use lossgraph_ir::{Graph, NodeId, Op, ReduceOp};
use smallvec::SmallVec;
use std::collections::HashMap;

/// Largest element count of any buffer a call addresses (the runtime's
/// pooling checks its dimensions against 32-bit indices).
const MAX_ELEMS: usize = i32::MAX as usize;

/// Which pooling pass a call computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolPass {
    /// `y = max over each window of x` (first maximum): operands `[x]`.
    MaxForward,
    /// `dx`: each window's `dy` added at its first maximum: operands `[x, dy]`.
    MaxGrad,
    /// `y = Σ over each window of x`: operands `[x]`.
    SumForward,
    /// `dx`: each window's `dy` added to all its cells: operands `[dy]`.
    SumGrad,
}

impl PoolPass {
    /// Short name for dumps and profiles.
    pub fn name(self) -> &'static str {
        match self {
            PoolPass::MaxForward => "max_pool",
            PoolPass::MaxGrad => "max_pool_dx",
            PoolPass::SumForward => "sum_pool",
            PoolPass::SumGrad => "sum_pool_dx",
        }
    }

    /// True for the max passes.
    pub fn is_max(self) -> bool {
        match self {
            PoolPass::MaxForward | PoolPass::MaxGrad => true,
            PoolPass::SumForward | PoolPass::SumGrad => false,
        }
    }

    /// True for the gradient passes (the output is the image).
    pub fn is_grad(self) -> bool {
        match self {
            PoolPass::MaxGrad | PoolPass::SumGrad => true,
            PoolPass::MaxForward | PoolPass::SumForward => false,
        }
    }
}

/// One recognised pooling pass, with the window geometry over the stored
/// (possibly padded) image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolCall {
    pub pass: PoolPass,
    /// The root whose storage the call writes (the reduce or the fold).
    pub out: NodeId,
    /// The nodes whose storage is read, as [`PoolPass`] lists them.
    pub operands: SmallVec<[NodeId; 2]>,
    pub batch: usize,
    /// Spatial extents of the image (1 or 2 axes).
    pub spatial: SmallVec<[usize; 2]>,
    pub channels: usize,
    pub window: SmallVec<[usize; 2]>,
    pub strides: SmallVec<[usize; 2]>,
    /// Output extents (`(S - K)/s + 1` per axis).
    pub out_spatial: SmallVec<[usize; 2]>,
}

impl PoolCall {
    /// Elements of the image (the larger side of every pass).
    pub fn image_len(&self) -> usize {
        self.batch * self.spatial.iter().product::<usize>() * self.channels
    }
}

/// `n` with any chain of `reshape`s above it removed.
fn under_views(g: &Graph, mut n: NodeId) -> NodeId {
    while g.node(n).op == Op::Reshape {
        n = g.operands(n)[0];
    }
    n
}

fn is_zero(g: &Graph, n: NodeId) -> bool {
    splat_value(g, n).and_then(|l| l.splat()) == Some(0.0)
}

/// The transpose moving the window axes of `[N, O.., K.., C]` (`r` spatial
/// axes) after the channel: `[N, O.., C, K..]`.
fn window_last(r: usize) -> SmallVec<[usize; 4]> {
    let mut perm: SmallVec<[usize; 4]> = (0..=r).collect();
    perm.push(2 * r + 1);
    perm.extend(r + 1..=2 * r);
    perm
}

/// Its inverse: `[N, O.., C, K..]` back to `[N, O.., K.., C]`.
fn window_back(r: usize) -> SmallVec<[usize; 4]> {
    let mut perm: SmallVec<[usize; 4]> = (0..=r).collect();
    perm.extend(r + 2..=2 * r + 1);
    perm.push(r + 1);
    perm
}

/// The unfold behind max pooling's windows `w` (`[N, O.., C, ΠK]`):
/// `w = view(transpose(unfold))` with the [`window_last`] permutation.
fn max_windows(g: &Graph, w: NodeId) -> Option<NodeId> {
    let t = under_views(g, w);
    let Op::Transpose { perm } = &g.node(t).op else {
        return None;
    };
    let u = g.operands(t)[0];
    let Op::Unfold { window, .. } = &g.node(u).op else {
        return None;
    };
    let r = window.len();
    let us = &g.node(u).ty.shape;
    let taps: usize = window.iter().product();
    let mut want: Vec<usize> = us[..=r].to_vec();
    want.push(us[2 * r + 1]);
    want.push(taps);
    (*perm == window_last(r) && g.node(w).ty.shape[..] == want[..]).then_some(u)
}

/// The windows `w` of `first`, when `first = one_hot(argmax(w, last), ΠK)`
/// over max pooling windows; with their unfold.
fn first_maximum(g: &Graph, first: NodeId) -> Option<(NodeId, NodeId)> {
    let Op::OneHot { depth } = g.node(first).op else {
        return None;
    };
    let a = g.operands(first)[0];
    let Op::ArgMax { axis } = g.node(a).op else {
        return None;
    };
    let w = g.operands(a)[0];
    let ws = &g.node(w).ty.shape;
    if axis + 1 != ws.len() || ws[axis] != depth {
        return None;
    }
    Some((w, max_windows(g, w)?))
}

/// The pooling pass rooted at `root` (a `reduce_sum` or a `fold`), if the
/// graph around it has one of the module's patterns with consistent
/// shapes. Structural only: which operands must be stored is
/// [`recognise`]'s business.
pub fn match_root(g: &Graph, root: NodeId) -> Option<PoolCall> {
    let node = g.node(root);
    // The pass, its unfold or fold (the window op), and its operands.
    let (pass, win, operands): (PoolPass, NodeId, SmallVec<[NodeId; 2]>) = match &node.op {
        Op::Reduce {
            op: ReduceOp::Sum,
            axes,
        } => {
            let s = g.operands(root)[0];
            match &g.node(s).op {
                Op::Unfold { window, .. } => {
                    let r = window.len();
                    if axes[..] != (r + 1..=2 * r).collect::<SmallVec<[usize; 4]>>()[..] {
                        return None;
                    }
                    let x = g.operands(s)[0];
                    (PoolPass::SumForward, s, [x].into_iter().collect())
                }
                Op::Select => {
                    let ops = g.operands(s);
                    let (first, w) = (ops[0], ops[1]);
                    let (mw, u) = first_maximum(g, first)?;
                    let last = g.node(w).ty.shape.len() - 1;
                    if mw != w || !is_zero(g, ops[2]) || axes[..] != [last] {
                        return None;
                    }
                    let x = g.operands(u)[0];
                    (PoolPass::MaxForward, u, [x].into_iter().collect())
                }
                Op::Input { .. }
                | Op::Param { .. }
                | Op::Const(_)
                | Op::Unary(_)
                | Op::Binary(_)
                | Op::Cast
                | Op::Broadcast
                | Op::Reshape
                | Op::Transpose { .. }
                | Op::Reduce { .. }
                | Op::ArgMax { .. }
                | Op::MatMul { .. }
                | Op::Fold { .. }
                | Op::Concat { .. }
                | Op::Slice { .. }
                | Op::OneHot { .. }
                | Op::StopGradient
                | Op::RandomUniform { .. }
                | Op::Gather
                | Op::ScatterAdd { .. }
                | Op::RandomNormal { .. }
                | Op::RandomBernoulli { .. }
                | Op::AllReduceMean => return None,
            }
        }
        Op::Fold { window, .. } => {
            let r = window.len();
            let v = g.operands(root)[0];
            match &g.node(v).op {
                Op::Broadcast => {
                    // Every window's value broadcast over its taps.
                    let d = g.operands(v)[0];
                    let mut want = g.node(v).ty.shape.to_vec();
                    want[r + 1..=2 * r].fill(1);
                    if g.node(d).ty.shape[..] != want[..] {
                        return None;
                    }
                    (PoolPass::SumGrad, root, [d].into_iter().collect())
                }
                Op::Transpose { perm } if *perm == window_back(r) => {
                    let s = under_views(g, g.operands(v)[0]);
                    if g.node(s).op != Op::Select {
                        return None;
                    }
                    let ops = g.operands(s);
                    let (first, b) = (ops[0], ops[1]);
                    let (w, u) = first_maximum(g, first)?;
                    if g.node(b).op != Op::Broadcast || !is_zero(g, ops[2]) {
                        return None;
                    }
                    // `dy` as `[N, O.., C, 1]`, broadcast over the taps.
                    let d = g.operands(b)[0];
                    let mut want = g.node(w).ty.shape.to_vec();
                    *want.last_mut()? = 1;
                    if g.node(d).ty.shape[..] != want[..]
                        || g.node(b).ty.shape != g.node(w).ty.shape
                    {
                        return None;
                    }
                    let x = g.operands(u)[0];
                    // The fold must undo this unfold: same windows, same image.
                    let same_windows = if let (
                        Op::Unfold {
                            window: uw,
                            strides: us,
                            dilation: ud,
                        },
                        Op::Fold {
                            window: fw,
                            strides: fs,
                            dilation: fd,
                        },
                    ) = (&g.node(u).op, &node.op)
                    {
                        uw == fw && us == fs && ud == fd
                    } else {
                        false
                    };
                    if !same_windows || g.node(x).ty != node.ty {
                        return None;
                    }
                    (PoolPass::MaxGrad, root, [x, d].into_iter().collect())
                }
                Op::Input { .. }
                | Op::Param { .. }
                | Op::Const(_)
                | Op::Unary(_)
                | Op::Binary(_)
                | Op::Select
                | Op::Cast
                | Op::Reshape
                | Op::Transpose { .. }
                | Op::Reduce { .. }
                | Op::ArgMax { .. }
                | Op::MatMul { .. }
                | Op::Unfold { .. }
                | Op::Fold { .. }
                | Op::Concat { .. }
                | Op::Slice { .. }
                | Op::OneHot { .. }
                | Op::StopGradient
                | Op::RandomUniform { .. }
                | Op::Gather
                | Op::ScatterAdd { .. }
                | Op::RandomNormal { .. }
                | Op::RandomBernoulli { .. }
                | Op::AllReduceMean => return None,
            }
        }
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Const(_)
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Select
        | Op::Cast
        | Op::Broadcast
        | Op::Reshape
        | Op::Transpose { .. }
        | Op::Reduce { .. }
        | Op::ArgMax { .. }
        | Op::MatMul { .. }
        | Op::Unfold { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::OneHot { .. }
        | Op::StopGradient
        | Op::RandomUniform { .. }
        | Op::Gather
        | Op::ScatterAdd { .. }
        | Op::RandomNormal { .. }
        | Op::RandomBernoulli { .. }
        | Op::AllReduceMean => return None,
    };
    // The image `[N, S.., C]` and the windows `[N, O.., K.., C]`.
    let (image, windows) = if pass.is_grad() {
        let v = g.operands(win)[0];
        (node.ty.shape.to_vec(), g.node(v).ty.shape.to_vec())
    } else {
        (
            g.node(operands[0]).ty.shape.to_vec(),
            g.node(win).ty.shape.to_vec(),
        )
    };
    let (window, strides, dilation) = window_geometry(g, win, &image, &windows)?;
    let r = window.len();
    if dilation.iter().any(|&d| d != 1) || image.contains(&0) {
        return None;
    }
    let out_spatial: SmallVec<[usize; 2]> = windows[1..=r].iter().copied().collect();
    let call = PoolCall {
        pass,
        out: root,
        operands,
        batch: image[0],
        spatial: image[1..=r].iter().copied().collect(),
        channels: image[r + 1],
        window,
        strides,
        out_spatial,
    };
    (call.image_len() <= MAX_ELEMS).then_some(call)
}

/// Finds every pooling pass among the plan's would-be roots (`class` as
/// fusion computed it, roots marked `Root(_)`) and makes each call's
/// operands stored (an inlined operand becomes a root). Returns each
/// call's root with what it reads; fusion then drops what only the calls
/// read (the window buffer, the argmax and its mask).
pub fn recognise(g: &Graph, class: &mut [NodeClass]) -> HashMap<NodeId, PoolCall> {
    let mut found = HashMap::new();
    for i in 0..g.len() {
        let id = NodeId::new(i);
        if !matches!(class[i], NodeClass::Root(_)) {
            continue;
        }
        let Some(call) = match_root(g, id) else {
            continue;
        };
        for &o in &call.operands {
            if class[o.index()] == NodeClass::Inlined {
                class[o.index()] = NodeClass::Root(usize::MAX);
            }
        }
        found.insert(id, call);
    }
    found
}
