//! Convolution calls: finds, in a fused plan, the patterns that
//! `lossgraph_ir::conv::conv` and its VJPs emit, so that each runs as one
//! implicit-GEMM call reading the image directly (no im2col buffer):
//!
//! - forward: `matmul(reshape(unfold(x)), k)`, `[N·ΠO, ΠK·C] × [ΠK·C, F]`;
//! - filter gradient: `matmul(reshape(unfold(x)), dy, trans_a)`,
//!   `[N·ΠO, ΠK·C]ᵀ × [N·ΠO, F]`;
//! - data gradient: `fold(reshape(matmul(dy, k, trans_b)))`, the fold of
//!   `[N·ΠO, F] × [ΠK·C, F]ᵀ` into `[N, S.., C]`.
//!
//! `k` is the kernel in HWIO order flattened to `[ΠK·C, F]` (the unfold's
//! `(k.., c)` order), `x` the stored unfold operand: when the convolution
//! is padded that is the padded image (its `concat`), so the calls
//! themselves never pad. Only ungrouped 1-d and 2-d convolutions match (a
//! grouped one is a batched matmul over transposes and stays im2col).
//!
//! The matcher ([`match_root`]) is purely structural, so the lowering
//! re-derives a call's geometry from the same code that recognised it;
//! [`recognise`] adds the plan-level conditions (what may be dropped).
// No `_ =>` over op kinds or classes.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::fusion::NodeClass;
use lossgraph_ir::{Graph, NodeId, Op};
use smallvec::SmallVec;
use std::collections::HashMap;

/// Largest element count of any buffer a call addresses: the runtime's
/// convolution uses 32-bit gather indices.
const MAX_ELEMS: usize = i32::MAX as usize;

/// Which pass of a convolution a call computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvPass {
    /// `y = conv(x, k)`: operands `[x, k]`.
    Forward,
    /// `dx = conv_transpose(dy, k)`: operands `[dy, k]`.
    DataGrad,
    /// `dk = Σ_pixels im2col(x)ᵀ · dy`: operands `[x, dy]`.
    FilterGrad,
}

impl ConvPass {
    /// Short name for dumps and profiles.
    pub fn name(self) -> &'static str {
        match self {
            ConvPass::Forward => "conv",
            ConvPass::DataGrad => "conv_dx",
            ConvPass::FilterGrad => "conv_dk",
        }
    }
}

/// One recognised convolution pass, with the forward convolution's
/// geometry (unpadded: the image is the stored, possibly padded, operand).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvCall {
    pub pass: ConvPass,
    /// The root whose storage the call writes (the matmul or the fold).
    pub out: NodeId,
    /// The two operands, as [`ConvPass`] lists them (nodes whose storage
    /// is read: the unfold operand, the kernel's or `dy`'s matmul operand).
    pub operands: [NodeId; 2],
    pub batch: usize,
    /// Spatial extents of the image (1 or 2 axes).
    pub spatial: SmallVec<[usize; 2]>,
    pub channels: usize,
    pub window: SmallVec<[usize; 2]>,
    pub strides: SmallVec<[usize; 2]>,
    pub dilation: SmallVec<[usize; 2]>,
    /// Output extents (`(S - (K-1)·d - 1)/s + 1` per axis).
    pub out_spatial: SmallVec<[usize; 2]>,
    pub filters: usize,
}

impl ConvCall {
    /// Multiply-adds of the pass (each pass does the forward's count).
    pub fn macs(&self) -> usize {
        self.batch
            * self.out_spatial.iter().product::<usize>()
            * self.filters
            * self.window.iter().product::<usize>()
            * self.channels
    }
}

fn single_view_operand(g: &Graph, n: NodeId) -> Option<NodeId> {
    let ops = g.operands(n);
    (g.node(n).op == Op::Reshape && ops.len() == 1).then(|| ops[0])
}

/// Geometry of the window op (`unfold`/`fold`) `w` whose image is `image`
/// (`[N, S.., C]`) and windows `cols` (`[N, O.., K.., C]`), when it is a
/// 1-d or 2-d window the runtime handles.
#[allow(clippy::type_complexity)]
pub(crate) fn window_geometry(
    g: &Graph,
    w: NodeId,
    image: &[usize],
    cols: &[usize],
) -> Option<(
    SmallVec<[usize; 2]>,
    SmallVec<[usize; 2]>,
    SmallVec<[usize; 2]>,
)> {
    let (window, strides, dilation) = match &g.node(w).op {
        Op::Unfold {
            window,
            strides,
            dilation,
        }
        | Op::Fold {
            window,
            strides,
            dilation,
        } => (window, strides, dilation),
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
    let r = window.len();
    if !(1..=2).contains(&r) || image.len() != r + 2 || cols.len() != 2 * r + 2 {
        return None;
    }
    if cols[0] != image[0] || cols[2 * r + 1] != image[r + 1] || cols[r + 1..=2 * r] != window[..] {
        return None;
    }
    for i in 0..r {
        let span = (window[i] - 1).checked_mul(dilation[i])?.checked_add(1)?;
        if span > image[1 + i] || (image[1 + i] - span) / strides[i] + 1 != cols[1 + i] {
            return None;
        }
    }
    let small = |v: &[usize]| v.iter().copied().collect::<SmallVec<[usize; 2]>>();
    Some((small(window), small(strides), small(dilation)))
}

/// The convolution pass rooted at `root` (a matmul or a fold), if the
/// graph around it has one of the module's patterns with consistent
/// shapes. Structural only: whether the im2col may be dropped is
/// [`recognise`]'s business.
pub fn match_root(g: &Graph, root: NodeId) -> Option<ConvCall> {
    let node = g.node(root);
    let (pass, cols, cols_view, operands) = match node.op {
        Op::MatMul { trans_a, trans_b } => {
            let ops = g.operands(root);
            let view = ops[0];
            let unfold = single_view_operand(g, view)?;
            if !matches!(g.node(unfold).op, Op::Unfold { .. }) {
                return None;
            }
            let image = g.operands(unfold)[0];
            let pass = match (trans_a, trans_b) {
                (false, false) => ConvPass::Forward,
                (true, false) => ConvPass::FilterGrad,
                (false, true) | (true, true) => return None,
            };
            (pass, unfold, view, [image, ops[1]])
        }
        Op::Fold { .. } => {
            let view = g.operands(root)[0];
            let mm = single_view_operand(g, view)?;
            if g.node(mm).op
                != (Op::MatMul {
                    trans_a: false,
                    trans_b: true,
                })
            {
                return None;
            }
            let ops = g.operands(mm);
            (ConvPass::DataGrad, root, view, [ops[0], ops[1]])
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
    let (image_shape, windows_shape) = match pass {
        ConvPass::Forward | ConvPass::FilterGrad => (
            g.node(operands[0]).ty.shape.to_vec(),
            g.node(cols).ty.shape.to_vec(),
        ),
        ConvPass::DataGrad => (node.ty.shape.to_vec(), g.node(cols_view).ty.shape.to_vec()),
    };
    let (window, strides, dilation) = window_geometry(g, cols, &image_shape, &windows_shape)?;
    let r = window.len();
    let (batch, channels) = (image_shape[0], image_shape[r + 1]);
    let spatial: SmallVec<[usize; 2]> = image_shape[1..=r].iter().copied().collect();
    let out_spatial: SmallVec<[usize; 2]> = windows_shape[1..=r].iter().copied().collect();
    let rows = batch * out_spatial.iter().product::<usize>();
    let depth = window.iter().product::<usize>() * channels;
    let shape = |n: NodeId| g.node(n).ty.shape.to_vec();
    // The flattened windows as the matmul sees them, and the other operand.
    let view_ok = match pass {
        ConvPass::Forward | ConvPass::FilterGrad => shape(cols_view) == [rows, depth],
        ConvPass::DataGrad => true,
    };
    let filters = match pass {
        ConvPass::Forward | ConvPass::DataGrad => {
            let k = shape(operands[1]);
            (k.len() == 2 && k[0] == depth).then(|| k[1])?
        }
        ConvPass::FilterGrad => {
            let dy = shape(operands[1]);
            (dy.len() == 2 && dy[0] == rows).then(|| dy[1])?
        }
    };
    let dy_ok = match pass {
        ConvPass::DataGrad => {
            let mm = single_view_operand(g, cols_view)?;
            shape(operands[0]) == [rows, filters] && shape(mm) == [rows, depth]
        }
        ConvPass::Forward | ConvPass::FilterGrad => true,
    };
    let sizes = [
        batch * spatial.iter().product::<usize>() * channels,
        rows * filters,
        depth * filters * 16,
    ];
    if !view_ok || !dy_ok || filters == 0 || sizes.iter().any(|&s| s > MAX_ELEMS) {
        return None;
    }
    Some(ConvCall {
        pass,
        out: root,
        operands,
        batch,
        spatial,
        channels,
        window,
        strides,
        dilation,
        out_spatial,
        filters,
    })
}

/// Finds every convolution pass among the plan's would-be roots (`class`
/// as fusion computed it, roots marked `Root(_)`): a data gradient only
/// when its matmul and view exist for it alone (the call replaces them),
/// and an inlined unfold operand becomes a root (the call reads the image
/// from memory). Returns each call by its root; fusion then drops what
/// only the calls read (the im2col, a data gradient's matmul).
pub fn recognise(
    g: &Graph,
    class: &mut [NodeClass],
    live: &[bool],
    is_output: &[bool],
) -> HashMap<NodeId, ConvCall> {
    let mut found = HashMap::new();
    let root = |c: NodeClass| matches!(c, NodeClass::Root(_));
    let live_users = |n: NodeId| -> SmallVec<[NodeId; 4]> {
        g.users(n).into_iter().filter(|u| live[u.index()]).collect()
    };
    for i in 0..g.len() {
        let id = NodeId::new(i);
        if !root(class[i]) {
            continue;
        }
        let Some(call) = match_root(g, id) else {
            continue;
        };
        if call.pass == ConvPass::DataGrad {
            // The matmul and its view must exist only for this fold.
            let view = g.operands(id)[0];
            let Some(mm) = single_view_operand(g, view) else {
                continue;
            };
            let only = |n: NodeId, user: NodeId| {
                !is_output[n.index()] && live_users(n).iter().all(|&u| u == user)
            };
            if !only(view, id) || !only(mm, view) || !root(class[mm.index()]) {
                continue;
            }
        } else if class[call.operands[0].index()] == NodeClass::Inlined {
            // The call reads the image from memory.
            class[call.operands[0].index()] = NodeClass::Root(usize::MAX);
        }
        found.insert(id, call);
    }
    found
}
