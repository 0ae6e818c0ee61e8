//! Convolution on raw NHWC f32 buffers with AVX-512: the forward pass, the
//! data gradient (a transposed convolution, also Conv2DTranspose's forward)
//! and the filter gradient, each split into deterministic parts for the
//! step's thread pool like [`sgemm::gemm_part`], with caller-provided
//! workspace (no allocation per call).
//!
//! Layouts (Keras/TF, channels last): input `x[N,H,W,C]`, kernel
//! `k[KH,KW,C/groups,F]` (HWIO), output `y[N,OH,OW,F]`; a 1-D convolution is
//! `H = KH = 1`. Group `g` reads channels `g·C/groups..` and writes filters
//! `g·F/groups..`; depthwise is `groups = C`.
//!
//! Forward and data gradient are *implicit GEMMs* with no packing of the
//! image: a register tile of up to 12 output pixels × 32 output channels
//! (the sgemm micro-tile) accumulates, for every kernel tap, the tap's
//! source channels broadcast straight from the strided image (a pixel
//! outside the image reads a zero row) against rows of the kernel. The
//! data gradient runs one such GEMM per stride phase (`ih mod sh`, `iw mod
//! sw`): within a phase only a fixed subset of taps reaches the output
//! gradient, so no zeros are inserted.
//! The filter gradient computes `dkᵀ[f, (tap, c)] = Σ_pixels dy[p, f] ·
//! x[p + tap, c]`: 12 filters broadcast from a row of `dy` against 32
//! image values (a masked load when the 32 lie in one tap, a masked gather
//! otherwise), summed over fixed pixel chunks into workspace and reduced in
//! chunk order by [`filter_grad_reduce_part`], so the result does not depend
//! on the number of parts.
//!
//! Measured (`conv::speed`, release, batch 128, on this 2-core box while
//! shared with other jobs, load average ~10: absolute figures are low and
//! noisy, ratios are same-run):
//! - conv2's forward (15488×288×64 GEMM): implicit 38 GFLOP/s against 12.8
//!   for sgemm on a materialised im2col (its strided A gathers; plus 1.8 ms
//!   to build the 18 MB im2col), so the image is never packed.
//! - Merging a kernel row's taps into one run (`MERGE_ROWS`; 5 alternated
//!   rounds of separate binaries, medians, 1 thread): conv1 forward 5.7 →
//!   10.1 GFLOP/s, conv2 forward 29.4 → 31.9.
//! - The accumulators: an `acc[r][v]` array indexed by a runtime `v` was
//!   stored to the stack after every FMA (seen in `perf annotate`); with
//!   constant indices and the tap loop in [`kernels`]' `tap_sums`, they stay
//!   in registers (conv2 data gradient 11 → 25 GFLOP/s in the same load).
//! - C = 1 (conv1, K = 9): the forward with merged rows is a 3-deep run per
//!   kernel row: 10–14 GFLOP/s against conv2's ~32; a dedicated direct
//!   kernel is still to be tried. Its data gradient (1 output channel of
//!   16 lanes) runs at ~1.5 GFLOP/s but the first layer needs none.
//!
//! Invariants the `unsafe` code relies on (stated once per entry point):
//! (a) `x`, `y`/`dy`, `k`/`dk` hold [`ConvDims::input_len`],
//! [`ConvDims::output_len`] and [`ConvDims::kernel_len`] floats; (b) every
//! length is at most `i32::MAX` (checked by [`ConvDims::new`]), so gather
//! indices and `isize` offsets cannot overflow; (c) outputs overlap neither
//! inputs nor workspace, and concurrent parts write disjoint outputs; (d) a
//! pointer is formed only to a pixel inside the image (taps outside it read
//! the workspace's zero row); (e) lanes past a tile's width are masked in
//! every load, gather and store.

use std::ops::Range;

/// Largest buffer length, stride, size or padding accepted: gather indices
/// are 32-bit.
const LIMIT: usize = i32::MAX as usize;

/// Whether the implicit GEMM merges the taps of a kernel row (see
/// `implicit_tile`).
const MERGE_ROWS: bool = true;

/// Pixels per chunk of the filter gradient (at most [`MAX_CHUNKS`] chunks).
const CHUNK_PIXELS: usize = 1024;
/// Chunks of the filter gradient: fixed by the dimensions, so the sum's
/// order does not depend on the part count.
const MAX_CHUNKS: usize = 16;
/// Pixels per pass of the filter gradient's tiles over a chunk: the
/// slice of `x` and `dy` they read stays in L2.
const SUB_PIXELS: usize = 256;

/// Why convolution or pooling dimensions were refused: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub(crate) struct DimsError {
    pub field: &'static str,
    pub reason: String,
}

pub(crate) fn dims_error(field: &'static str, reason: impl Into<String>) -> DimsError {
    DimsError {
        field,
        reason: reason.into(),
    }
}

/// A convolution as the IR states it (all counts in elements; explicit
/// padding per side: Keras's `same` is [`same_padding`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvSpec {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub filters: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub groups: usize,
}

/// A validated [`ConvSpec`] with its output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvDims {
    s: ConvSpec,
    out_h: usize,
    out_w: usize,
}

/// Keras's `same` padding of one axis: `(before, after)` with the odd
/// element after, so that the output has `ceil(size / stride)` elements.
pub(crate) fn same_padding(
    size: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> (usize, usize) {
    let out = size.div_ceil(stride.max(1));
    let extent = kernel
        .saturating_sub(1)
        .saturating_mul(dilation)
        .saturating_add(1);
    let need = out
        .saturating_sub(1)
        .saturating_mul(stride)
        .saturating_add(extent);
    let total = need.saturating_sub(size);
    (total / 2, total - total / 2)
}

/// Output length of one axis, or why there is none.
pub(crate) fn out_len(
    field: &'static str,
    size: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pads: (usize, usize),
) -> Result<usize, DimsError> {
    let extent = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|e| e.checked_add(1))
        .filter(|&e| e <= LIMIT)
        .ok_or_else(|| dims_error(field, "the dilated window exceeds 2^31-1"))?;
    let padded = size
        .checked_add(pads.0)
        .and_then(|p| p.checked_add(pads.1))
        .filter(|&p| p <= LIMIT)
        .ok_or_else(|| dims_error(field, "the padded size exceeds 2^31-1"))?;
    if extent > padded {
        return Err(dims_error(
            field,
            format!("the window spans {extent} elements but the padded input has {padded}"),
        ));
    }
    Ok((padded - extent) / stride + 1)
}

/// The product of `dims`, if it is at most [`LIMIT`].
pub(crate) fn checked_len(field: &'static str, dims: &[usize]) -> Result<usize, DimsError> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= LIMIT)
        .ok_or_else(|| dims_error(field, format!("{dims:?} has more than 2^31-1 elements")))
}

impl ConvDims {
    /// Validates `s`: every count at least 1 (paddings at least 0) and at
    /// most `2^31-1`, `groups` dividing `channels` and `filters`, the
    /// dilated kernel within the padded input, every buffer at most
    /// `2^31-1` floats. The error names the field.
    pub(crate) fn new(s: ConvSpec) -> Result<ConvDims, DimsError> {
        let positive = [
            ("batch", s.batch),
            ("height", s.height),
            ("width", s.width),
            ("channels", s.channels),
            ("kernel_h", s.kernel_h),
            ("kernel_w", s.kernel_w),
            ("filters", s.filters),
            ("stride_h", s.stride_h),
            ("stride_w", s.stride_w),
            ("dilation_h", s.dilation_h),
            ("dilation_w", s.dilation_w),
            ("groups", s.groups),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(dims_error(field, "must be at least 1"));
            }
        }
        let bounded = positive.into_iter().chain([
            ("pad_top", s.pad_top),
            ("pad_bottom", s.pad_bottom),
            ("pad_left", s.pad_left),
            ("pad_right", s.pad_right),
        ]);
        for (field, v) in bounded {
            if v > LIMIT {
                return Err(dims_error(field, format!("{v} exceeds 2^31-1")));
            }
        }
        if !s.channels.is_multiple_of(s.groups) {
            return Err(dims_error(
                "groups",
                format!("{} groups do not divide {} channels", s.groups, s.channels),
            ));
        }
        if !s.filters.is_multiple_of(s.groups) {
            return Err(dims_error(
                "groups",
                format!("{} groups do not divide {} filters", s.groups, s.filters),
            ));
        }
        let out_h = out_len(
            "kernel_h",
            s.height,
            s.kernel_h,
            s.stride_h,
            s.dilation_h,
            (s.pad_top, s.pad_bottom),
        )?;
        let out_w = out_len(
            "kernel_w",
            s.width,
            s.kernel_w,
            s.stride_w,
            s.dilation_w,
            (s.pad_left, s.pad_right),
        )?;
        checked_len("input", &[s.batch, s.height, s.width, s.channels])?;
        checked_len("output", &[s.batch, out_h, out_w, s.filters])?;
        checked_len(
            "kernel",
            &[s.kernel_h, s.kernel_w, s.channels / s.groups, s.filters],
        )?;
        // The filter gradient's chunk partials (at most MAX_CHUNKS copies).
        checked_len(
            "kernel",
            &[s.kernel_h, s.kernel_w, s.channels, s.filters, MAX_CHUNKS],
        )?;
        Ok(ConvDims { s, out_h, out_w })
    }

    pub(crate) fn spec(&self) -> &ConvSpec {
        &self.s
    }

    pub(crate) fn out_h(&self) -> usize {
        self.out_h
    }

    pub(crate) fn out_w(&self) -> usize {
        self.out_w
    }

    /// Floats of `x` (and `dx`).
    pub(crate) fn input_len(&self) -> usize {
        let s = &self.s;
        s.batch * s.height * s.width * s.channels
    }

    /// Floats of `y` (and `dy`).
    pub(crate) fn output_len(&self) -> usize {
        self.s.batch * self.out_h * self.out_w * self.s.filters
    }

    /// Floats of `k` (and `dk`).
    pub(crate) fn kernel_len(&self) -> usize {
        let s = &self.s;
        s.kernel_h * s.kernel_w * self.cg() * s.filters
    }

    /// Input channels per group.
    fn cg(&self) -> usize {
        self.s.channels / self.s.groups
    }

    /// Filters per group.
    fn fg(&self) -> usize {
        self.s.filters / self.s.groups
    }

    /// Output pixels `N·OH·OW` (the filter gradient's inner dimension).
    fn pixels(&self) -> usize {
        self.s.batch * self.out_h * self.out_w
    }

    /// Multiply-adds of one pass (forward, data or filter gradient alike).
    pub(crate) fn macs(&self) -> usize {
        self.output_len() * self.s.kernel_h * self.s.kernel_w * self.cg()
    }

    /// Workspace floats each part of [`forward_part`] needs.
    pub(crate) fn forward_workspace_floats(&self) -> usize {
        self.cg().div_ceil(16) * 16
    }

    /// Workspace floats each part of [`data_grad_part`] needs: a zero row
    /// and the transposed kernel of one group.
    pub(crate) fn data_grad_workspace_floats(&self) -> usize {
        self.fg().div_ceil(16) * 16 + self.s.kernel_h * self.s.kernel_w * self.cg() * self.fg()
    }

    /// Chunks the filter gradient's pixels are summed in.
    fn chunks(&self) -> usize {
        self.pixels().div_ceil(CHUNK_PIXELS).clamp(1, MAX_CHUNKS)
    }

    /// Workspace floats [`filter_grad_part`] and [`filter_grad_reduce_part`]
    /// share (one region for all parts): the partial sums of every chunk.
    pub(crate) fn filter_grad_workspace_floats(&self) -> usize {
        self.chunks() * self.kernel_len()
    }
}

/// The activation fused into a convolution's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    Linear,
    Relu,
}

/// What a pass does to each output before storing it: `out = act(acc +
/// bias[channel])`, and, when `preact` is given, `preact = acc + bias` (the
/// pre-activation the gradient of a non-relu activation needs; relu's
/// gradient needs only `out > 0`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epilogue {
    /// One float per output channel, or none.
    pub bias: Option<*const f32>,
    pub act: Activation,
    /// A buffer shaped like the output, or none.
    pub preact: Option<*mut f32>,
}

impl Epilogue {
    /// No bias, no activation.
    pub(crate) const PLAIN: Epilogue = Epilogue {
        bias: None,
        act: Activation::Linear,
        preact: None,
    };
}

/// Items `part` of `parts` computes out of `total`: contiguous, balanced.
pub(crate) fn share(total: usize, part: usize, parts: usize) -> Range<usize> {
    let parts = parts.max(1);
    let part = part.min(parts);
    total * part / parts..total * (part + 1).min(parts) / parts
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The taps of one axis that reach stride phase `phase` of the data
/// gradient: `kernel index = first + i·step` for `i < count`, at source
/// (output-gradient) offset `offset0 + i·doffset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PhaseTaps {
    first: usize,
    step: usize,
    count: usize,
    offset0: isize,
    doffset: isize,
}

/// Taps `k` with `(phase + pad − k·dilation) ≡ 0 (mod stride)`: they form
/// one residue class with period `stride / gcd(stride, dilation)`.
fn phase_taps(
    phase: usize,
    pad: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> PhaseTaps {
    let g = gcd(stride, dilation);
    let step = stride / g;
    let target = (phase + pad) as i64;
    let first = (0..step.min(kernel))
        .find(|&k| (target - (k * dilation) as i64).rem_euclid(stride as i64) == 0);
    match first {
        None => PhaseTaps {
            first: 0,
            step,
            count: 0,
            offset0: 0,
            doffset: 0,
        },
        Some(first) => PhaseTaps {
            first,
            step,
            count: (kernel - first).div_ceil(step),
            offset0: ((target - (first * dilation) as i64) / stride as i64) as isize,
            doffset: -((dilation / g) as isize),
        },
    }
}

/// Rows of the data gradient's stride phase `phase` of an axis of `size`.
fn phase_rows(phase: usize, size: usize, stride: usize) -> usize {
    if phase < size {
        (size - phase).div_ceil(stride)
    } else {
        0
    }
}

/// Computes part `part` of `parts` of `y = act(conv(x, k) + bias)` (module
/// docs; `epi` also may write the pre-activation).
///
/// # Safety
/// [`crate::sgemm::available`] returned true; the buffers satisfy the
/// module invariants for `d` (the bias holds `filters` floats, the
/// pre-activation `output_len`); `ws` holds `d.forward_workspace_floats()`
/// floats used by no other part running at the same time; concurrent parts
/// have distinct `part` and the same `parts`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn forward_part(
    d: &ConvDims,
    y: *mut f32,
    x: *const f32,
    k: *const f32,
    epi: &Epilogue,
    ws: *mut f32,
    part: usize,
    parts: usize,
) {
    let s = &d.s;
    let (cg, fg) = (d.cg(), d.fg());
    let rows = d.pixels();
    let tiles = rows.div_ceil(kernels::tile_rows(fg));
    // SAFETY: (a) ws holds forward_workspace_floats() ≥ cg floats.
    unsafe { std::ptr::write_bytes(ws, 0, cg) };
    let mine = share(tiles * s.groups, part, parts);
    for g in 0..s.groups {
        let lo = mine.start.max(g * tiles);
        let hi = mine.end.min((g + 1) * tiles);
        if lo >= hi {
            continue;
        }
        // SAFETY: (a) channel g·cg < C, filter g·fg < F: the offset
        // pointers stay inside x, k, y, bias and preact.
        let im = unsafe {
            kernels::Implicit {
                src: x.add(g * cg),
                src_h: s.height as isize,
                src_w: s.width as isize,
                src_c: s.channels as isize,
                cs: cg,
                rows_u: d.out_h,
                rows_v: d.out_w,
                rows,
                my: s.stride_h as isize,
                ay: -(s.pad_top as isize),
                mx: s.stride_w as isize,
                ax: -(s.pad_left as isize),
                taps_y: (0, s.dilation_h as isize, s.kernel_h),
                taps_x: (0, s.dilation_w as isize, s.kernel_w),
                b: k.add(g * fg),
                ldb: s.filters,
                ncols: fg,
                out: y.add(g * fg),
                on: (d.out_h * d.out_w * s.filters) as isize,
                ou: (d.out_w * s.filters) as isize,
                ov: s.filters as isize,
                bias: epi.bias.map(|b| b.add(g * fg)),
                relu: epi.act == Activation::Relu,
                preact: epi.preact.map(|z| z.add(g * fg)),
                zero: ws,
            }
        };
        // SAFETY: forwarded contract; tiles lo..hi lie in group g.
        unsafe { kernels::run_implicit(&im, lo - g * tiles..hi - g * tiles) };
    }
}

/// Computes part `part` of `parts` of the data gradient `dx =
/// act(conv_transpose(dy, k) + bias)` (with [`Epilogue::PLAIN`], the
/// gradient of [`forward_part`]'s input; with a bias and activation,
/// Conv2DTranspose's forward, whose kernel `[KH,KW,filters,in]` is `k`
/// with `C = filters`, `F = in`). `d` describes the forward convolution
/// (from `dx`'s shape to `dy`'s).
///
/// # Safety
/// As [`forward_part`], with `dx` (`input_len` floats, written) in place
/// of `y`, `dy` (`output_len`) of `x`, a bias of `channels` floats, and
/// `ws` holding `d.data_grad_workspace_floats()` floats.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn data_grad_part(
    d: &ConvDims,
    dx: *mut f32,
    dy: *const f32,
    k: *const f32,
    epi: &Epilogue,
    ws: *mut f32,
    part: usize,
    parts: usize,
) {
    let s = &d.s;
    let (cg, fg) = (d.cg(), d.fg());
    let rows_per_tile = kernels::tile_rows(cg);
    // Units: group-major, then stride phase (a, b) row-major.
    let phases = s.stride_h * s.stride_w;
    let unit_rows = |u: usize| {
        let ph = u % phases;
        let (a, b) = (ph / s.stride_w, ph % s.stride_w);
        s.batch * phase_rows(a, s.height, s.stride_h) * phase_rows(b, s.width, s.stride_w)
    };
    let units = s.groups * phases;
    let mut total = 0;
    for u in 0..units {
        total += unit_rows(u).div_ceil(rows_per_tile);
    }
    let mine = share(total, part, parts);
    let zero_len = fg.div_ceil(16) * 16;
    // SAFETY: (a) ws holds data_grad_workspace_floats() floats: the zero
    // row, then the packed kernel.
    unsafe { std::ptr::write_bytes(ws, 0, zero_len) };
    let packed = unsafe { ws.add(zero_len) };
    let mut first_tile = 0;
    for u in 0..units {
        let rows = unit_rows(u);
        let tiles = rows.div_ceil(rows_per_tile);
        let (lo, hi) = (mine.start.max(first_tile), mine.end.min(first_tile + tiles));
        let base = first_tile;
        first_tile += tiles;
        if lo >= hi {
            continue;
        }
        let g = u / phases;
        let ph = u % phases;
        let (a, b) = (ph / s.stride_w, ph % s.stride_w);
        let ty = phase_taps(a, s.pad_top, s.kernel_h, s.stride_h, s.dilation_h);
        let tx = phase_taps(b, s.pad_left, s.kernel_w, s.stride_w, s.dilation_w);
        let taps = ty.count * tx.count;
        {
            // SAFETY: (a), (c): k holds kernel_len floats; the packed
            // region holds KH·KW·cg·fg ≥ taps·fg·cg floats of this part's
            // workspace, which nothing else uses.
            let kk = unsafe { std::slice::from_raw_parts(k, d.kernel_len()) };
            let bp = unsafe { std::slice::from_raw_parts_mut(packed, taps * fg * cg) };
            pack_transposed(d, kk, g, &ty, &tx, bp);
        }
        let (ru, rv) = (
            phase_rows(a, s.height, s.stride_h),
            phase_rows(b, s.width, s.stride_w),
        );
        // SAFETY: rows > 0, so a < H and b < W: the offsets stay inside dx
        // and the bias (g·cg < C) and dy (g·fg < F).
        let im = unsafe {
            kernels::Implicit {
                src: dy.add(g * fg),
                src_h: d.out_h as isize,
                src_w: d.out_w as isize,
                src_c: s.filters as isize,
                cs: fg,
                rows_u: ru,
                rows_v: rv,
                rows,
                my: 1,
                ay: 0,
                mx: 1,
                ax: 0,
                taps_y: (ty.offset0, ty.doffset, ty.count),
                taps_x: (tx.offset0, tx.doffset, tx.count),
                b: packed,
                ldb: cg,
                ncols: cg,
                out: dx.add((a * s.width + b) * s.channels + g * cg),
                on: (s.height * s.width * s.channels) as isize,
                ou: (s.stride_h * s.width * s.channels) as isize,
                ov: (s.stride_w * s.channels) as isize,
                bias: epi.bias.map(|p| p.add(g * cg)),
                relu: epi.act == Activation::Relu,
                preact: epi
                    .preact
                    .map(|z| z.add((a * s.width + b) * s.channels + g * cg)),
                zero: ws,
            }
        };
        // SAFETY: forwarded contract; the tiles lie in this unit.
        unsafe { kernels::run_implicit(&im, lo - base..hi - base) };
    }
}

/// The kernel rows of one stride phase, transposed: `out[((i·ntx + j)·fg +
/// f)·cg + c] = k[kh_i, kw_j, c, g·fg + f]`.
fn pack_transposed(
    d: &ConvDims,
    k: &[f32],
    g: usize,
    ty: &PhaseTaps,
    tx: &PhaseTaps,
    out: &mut [f32],
) {
    let s = &d.s;
    let (cg, fg) = (d.cg(), d.fg());
    let mut o = 0;
    for i in 0..ty.count {
        let kh = ty.first + i * ty.step;
        for j in 0..tx.count {
            let kw = tx.first + j * tx.step;
            let tap = (kh * s.kernel_w + kw) * cg;
            for f in 0..fg {
                for c in 0..cg {
                    out[o] = k[(tap + c) * s.filters + g * fg + f];
                    o += 1;
                }
            }
        }
    }
}

/// Computes part `part` of `parts` of the filter gradient's chunk sums
/// (`dk = Σ_pixels im2col(x)ᵀ · dy`) into `ws`; [`filter_grad_reduce_part`]
/// then adds the chunks into `dk`. Work is divided in (chunk, group)
/// units fixed by `d`.
///
/// # Safety
/// [`crate::sgemm::available`] returned true; `x` and `dy` satisfy the
/// module invariants; `ws` holds `d.filter_grad_workspace_floats()`
/// floats, is the same region for every part of this call and the reduce
/// that follows, and is otherwise unused; concurrent parts have distinct
/// `part` and the same `parts`.
pub(crate) unsafe fn filter_grad_part(
    d: &ConvDims,
    x: *const f32,
    dy: *const f32,
    ws: *mut f32,
    part: usize,
    parts: usize,
) {
    let s = &d.s;
    let (cg, fg) = (d.cg(), d.fg());
    let kdim = s.kernel_h * s.kernel_w * cg;
    let chunks = d.chunks();
    let pixels = d.pixels();
    for unit in share(chunks * s.groups, part, parts) {
        let (chunk, g) = (unit / s.groups, unit % s.groups);
        let px = share(pixels, chunk, chunks);
        // SAFETY: (a) the offsets stay inside x and dy; unit `unit`'s fg·kdim
        // partial sums lie inside ws and belong to this part alone (c).
        let t = unsafe {
            kernels::FilterGrad {
                x: x.add(g * cg),
                h: s.height as isize,
                w: s.width as isize,
                c: s.channels as isize,
                cg,
                kw: s.kernel_w,
                dil: (s.dilation_h as isize, s.dilation_w as isize),
                out_h: d.out_h,
                out_w: d.out_w,
                stride: (s.stride_h as isize, s.stride_w as isize),
                pad: (s.pad_top as isize, s.pad_left as isize),
                dy: dy.add(g * fg),
                dy_rs: s.filters,
                fg,
                kdim,
                out: ws.add(unit * fg * kdim),
            }
        };
        // SAFETY: forwarded contract.
        unsafe { kernels::run_filter_grad(&t, px) };
    }
}

/// Computes part `part` of `parts` of `dk[(kh,kw,c), g·fg + f] = Σ_chunk
/// ws[chunk, g, f, (kh,kw,c)]`, adding the chunks in order.
///
/// # Safety
/// Every part of [`filter_grad_part`] with this `ws` has finished; `dk`
/// holds `d.kernel_len()` floats and overlaps `ws` nowhere; concurrent
/// parts have distinct `part` and the same `parts`.
pub(crate) unsafe fn filter_grad_reduce_part(
    d: &ConvDims,
    dk: *mut f32,
    ws: *const f32,
    part: usize,
    parts: usize,
) {
    let s = &d.s;
    let (cg, fg) = (d.cg(), d.fg());
    let kdim = s.kernel_h * s.kernel_w * cg;
    let rows = share(kdim, part, parts);
    // SAFETY: ws holds filter_grad_workspace_floats() floats finished
    // before this call; this part alone writes dk rows `rows`.
    let (parts_ws, out) = unsafe {
        (
            std::slice::from_raw_parts(ws, d.filter_grad_workspace_floats()),
            std::slice::from_raw_parts_mut(dk.add(rows.start * s.filters), rows.len() * s.filters),
        )
    };
    reduce_chunks(
        d.chunks(),
        s.groups,
        fg,
        kdim,
        s.filters,
        parts_ws,
        rows,
        out,
    );
}

/// `out[(q − rows.start)·filters + g·fg + f] = Σ_chunk partial[((chunk·groups + g)·fg + f)·kdim + q]`.
#[allow(clippy::too_many_arguments)]
fn reduce_chunks(
    chunks: usize,
    groups: usize,
    fg: usize,
    kdim: usize,
    filters: usize,
    partial: &[f32],
    rows: Range<usize>,
    out: &mut [f32],
) {
    for (r, q) in rows.enumerate() {
        let row = &mut out[r * filters..(r + 1) * filters];
        for g in 0..groups {
            for f in 0..fg {
                let mut acc = 0.0f32;
                for chunk in 0..chunks {
                    acc += partial[((chunk * groups + g) * fg + f) * kdim + q];
                }
                row[g * fg + f] = acc;
            }
        }
    }
}

/// The AVX-512 tiles.
mod kernels {
    use super::*;
    use crate::sgemm::{masks, MR};
    use std::arch::x86_64::*;

    /// Accumulator registers a tile uses (rows × 16-lane vectors).
    const ACC: usize = 2 * MR;

    /// Rows of an implicit-GEMM tile whose outputs have `cols` channels: 24
    /// for one vector of columns, 12 for two.
    pub(super) fn tile_rows(cols: usize) -> usize {
        if cols <= 16 {
            ACC
        } else {
            MR
        }
    }

    /// One implicit GEMM (forward, or one stride phase of the data
    /// gradient): rows are output pixels on a `rows_u × rows_v` grid per
    /// image, reading the source pixel `(u·my + ay + ty, v·mx + ax + tx)`
    /// for each tap `(ty, tx)`; columns are output channels.
    pub(super) struct Implicit {
        /// The source image at its first channel of this group.
        pub src: *const f32,
        pub src_h: isize,
        pub src_w: isize,
        /// Channels per source pixel (the pixel stride).
        pub src_c: isize,
        /// Channels each tap reads.
        pub cs: usize,
        pub rows_u: usize,
        pub rows_v: usize,
        /// All rows: images × `rows_u` × `rows_v`.
        pub rows: usize,
        pub my: isize,
        pub ay: isize,
        pub mx: isize,
        pub ax: isize,
        /// Tap offsets per axis: `(first, step, count)`.
        pub taps_y: (isize, isize, usize),
        pub taps_x: (isize, isize, usize),
        /// `B[(tap, c), j]` at `b + (tap·cs + c)·ldb + j`, taps row-major.
        pub b: *const f32,
        pub ldb: usize,
        pub ncols: usize,
        /// Output row `(n, u, v)` at `out + n·on + u·ou + v·ov`.
        pub out: *mut f32,
        pub on: isize,
        pub ou: isize,
        pub ov: isize,
        pub bias: Option<*const f32>,
        pub relu: bool,
        pub preact: Option<*mut f32>,
        /// At least `cs` zeros.
        pub zero: *const f32,
    }

    /// Per-row geometry of one tile.
    struct Rows {
        n: usize,
        y0: [isize; ACC],
        x0: [isize; ACC],
        /// Source offset of pixel `(y0, x0)` (only used when it is inside).
        src: [isize; ACC],
        out: [isize; ACC],
        /// Every tap of every row is inside the image.
        inside: bool,
    }

    /// Runs tiles `tiles` of `im`.
    ///
    /// # Safety
    /// `im` describes buffers that satisfy the module invariants.
    pub(super) unsafe fn run_implicit(im: &Implicit, tiles: Range<usize>) {
        // SAFETY: forwarded (avx512f is available).
        unsafe { run_implicit_avx512(im, tiles) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn run_implicit_avx512(im: &Implicit, tiles: Range<usize>) {
        let tr = tile_rows(im.ncols);
        let span = |(first, step, count): (isize, isize, usize)| {
            let last = first + step * count.saturating_sub(1) as isize;
            (first.min(last), first.max(last))
        };
        let (ty_lo, ty_hi) = span(im.taps_y);
        let (tx_lo, tx_hi) = span(im.taps_x);
        let uv = im.rows_u * im.rows_v;
        for t in tiles {
            let r0 = t * tr;
            let rn = tr.min(im.rows - r0);
            let mut rows = Rows {
                n: rn,
                y0: [0; ACC],
                x0: [0; ACC],
                src: [0; ACC],
                out: [0; ACC],
                inside: true,
            };
            let (mut n, mut u, mut v) = (r0 / uv, r0 % uv / im.rows_v, r0 % im.rows_v);
            for i in 0..rn {
                let y0 = u as isize * im.my + im.ay;
                let x0 = v as isize * im.mx + im.ax;
                rows.y0[i] = y0;
                rows.x0[i] = x0;
                rows.src[i] = ((n as isize * im.src_h + y0) * im.src_w + x0) * im.src_c;
                rows.out[i] = n as isize * im.on + u as isize * im.ou + v as isize * im.ov;
                rows.inside &= y0 + ty_lo >= 0
                    && y0 + ty_hi < im.src_h
                    && x0 + tx_lo >= 0
                    && x0 + tx_hi < im.src_w;
                v += 1;
                if v == im.rows_v {
                    v = 0;
                    u += 1;
                    if u == im.rows_u {
                        u = 0;
                        n += 1;
                    }
                }
            }
            let mut jr = 0;
            while jr < im.ncols {
                let nr = (2 * 16).min(im.ncols - jr);
                // SAFETY: forwarded; R == rn rows, V vectors cover nr columns.
                unsafe {
                    if nr <= 16 {
                        dispatch_implicit::<1>(im, &rows, jr, nr)
                    } else {
                        dispatch_implicit::<2>(im, &rows, jr, nr)
                    }
                }
                jr += nr;
            }
        }
    }

    macro_rules! dispatch_rows {
        ($r:expr, $f:ident::<$v:ident> $args:tt, [$($n:literal)*]) => {
            match $r {
                $($n => $f::<$n, $v> $args,)*
                _ => unreachable!("tile of {} rows", $r),
            }
        };
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dispatch_implicit<const V: usize>(im: &Implicit, rows: &Rows, jr: usize, nr: usize) {
        // SAFETY: forwarded; rows.n ≤ 24 / V.
        unsafe {
            if V == 1 {
                dispatch_rows!(rows.n, implicit_tile::<V>(im, rows, jr, nr),
                    [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24])
            } else {
                dispatch_rows!(rows.n, implicit_tile::<V>(im, rows, jr, nr),
                    [1 2 3 4 5 6 7 8 9 10 11 12])
            }
        }
    }

    /// `R` output rows × `V` vectors of columns `jr..jr + nr`: for every tap,
    /// the rows' source channels (or zeros) broadcast against `B`'s rows.
    #[target_feature(enable = "avx512f")]
    unsafe fn implicit_tile<const R: usize, const V: usize>(
        im: &Implicit,
        rows: &Rows,
        jr: usize,
        nr: usize,
    ) {
        let (m0, m1) = masks(nr);
        // Two named vectors per row, as in sgemm's tile: LLVM keeps them in
        // registers (an array indexed by `v` was spilled every iteration).
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        // SAFETY: (a) column jr of B is inside B.
        let mut bp = unsafe { im.b.add(jr) };
        let (ty0, dty, nty) = im.taps_y;
        let (tx0, dtx, ntx) = im.taps_x;
        let (cs, ldb) = (im.cs, im.ldb);
        // When every tap of the tile is inside and the taps of a kernel row
        // are adjacent pixels (`dtx == 1`) read whole (one group), a kernel
        // row reads `ntx·cs` consecutive floats per output pixel and `B` rows in the same
        // order: one run per kernel row instead of one per tap.
        let merged = MERGE_ROWS && rows.inside && dtx == 1 && cs as isize == im.src_c;
        let (runs, run_len) = if merged { (1, ntx * cs) } else { (ntx, cs) };
        for i in 0..nty {
            let ty = ty0 + i as isize * dty;
            for j in 0..runs {
                let tx = tx0 + j as isize * dtx;
                let tap = (ty * im.src_w + tx) * im.src_c;
                let mut ptr = [im.zero; R];
                for (r, p) in ptr.iter_mut().enumerate() {
                    let (y, x) = (rows.y0[r] + ty, rows.x0[r] + tx);
                    if rows.inside || (y >= 0 && y < im.src_h && x >= 0 && x < im.src_w) {
                        // SAFETY: (d) pixel (y, x) of image n is inside src
                        // (and, merged, so are the run's next ntx − 1).
                        *p = unsafe { im.src.offset(rows.src[r] + tap) };
                    }
                }
                // SAFETY: (a), (e): the run's rows of B, masked columns;
                // ptr[r] holds run_len floats of pixels or of zeros.
                unsafe { tap_sums::<R, V>(&mut acc, &ptr, bp, run_len, ldb, m0, m1) };
                // SAFETY: the next run's rows of B (or one past B's end).
                bp = unsafe { bp.add(run_len * ldb) };
            }
        }
        // Constant indices only: a runtime index into `acc` makes LLVM keep
        // the array in memory and store every accumulator after each FMA
        // (measured: half the speed).
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: (e) masked lanes of the bias, the output row and the
            // pre-activation row are not touched; the rows are inside.
            unsafe {
                store_out(im, rows.out[r], jr, m0, row[0]);
                if V == 2 {
                    store_out(im, rows.out[r], jr + 16, m1, row[1]);
                }
            }
        }
    }

    /// `acc[r] += Σ_c ptr[r][c] · B[c, 0..16·V]` for one tap (`B` rows
    /// `ldb` apart). Not inlined: inside the tap loops LLVM stored every
    /// accumulator to the stack after each FMA; here they stay in
    /// registers (measured on conv2 forward: see the module notes).
    #[inline(never)]
    #[target_feature(enable = "avx512f")]
    unsafe fn tap_sums<const R: usize, const V: usize>(
        acc: &mut [[__m512; 2]; R],
        ptr: &[*const f32; R],
        b: *const f32,
        cs: usize,
        ldb: usize,
        m0: __mmask16,
        m1: __mmask16,
    ) {
        let mut a = *acc;
        let mut bp = b;
        for c in 0..cs {
            // SAFETY: forwarded from the caller.
            unsafe {
                let b0 = _mm512_maskz_loadu_ps(m0, bp);
                let b1 = if V == 2 {
                    _mm512_maskz_loadu_ps(m1, bp.add(16))
                } else {
                    b0
                };
                for (r, row) in a.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*ptr[r].add(c));
                    row[0] = _mm512_fmadd_ps(x, b0, row[0]);
                    if V == 2 {
                        row[1] = _mm512_fmadd_ps(x, b1, row[1]);
                    }
                }
                bp = bp.add(ldb);
            }
        }
        *acc = a;
    }

    /// Applies the epilogue to 16 (masked) sums of output row `row` from
    /// column `col` and stores them.
    #[inline(always)]
    unsafe fn store_out(im: &Implicit, row: isize, col: usize, mask: __mmask16, sum: __m512) {
        let mut val = sum;
        // SAFETY: forwarded (caller's invariants (a), (e)).
        unsafe {
            if let Some(bias) = im.bias {
                val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(mask, bias.add(col)));
            }
            if let Some(z) = im.preact {
                _mm512_mask_storeu_ps(z.offset(row).add(col), mask, val);
            }
            if im.relu {
                val = _mm512_max_ps(val, _mm512_setzero_ps());
            }
            _mm512_mask_storeu_ps(im.out.offset(row).add(col), mask, val);
        }
    }

    /// One (chunk, group) unit of the filter gradient: `out[f·kdim + q] =
    /// Σ_p dy[p, f] · x[p + tap(q), c(q)]` over the unit's pixels.
    pub(super) struct FilterGrad {
        /// `x` at the group's first channel.
        pub x: *const f32,
        pub h: isize,
        pub w: isize,
        pub c: isize,
        pub cg: usize,
        pub kw: usize,
        pub dil: (isize, isize),
        pub out_h: usize,
        pub out_w: usize,
        pub stride: (isize, isize),
        pub pad: (isize, isize),
        /// `dy` at the group's first filter; rows `dy_rs` apart.
        pub dy: *const f32,
        pub dy_rs: usize,
        pub fg: usize,
        /// Columns `KH·KW·cg`.
        pub kdim: usize,
        /// `fg × kdim` partial sums.
        pub out: *mut f32,
    }

    /// 16 columns `(tap, c)` of the filter gradient.
    #[derive(Clone, Copy)]
    struct Cols {
        mask: __mmask16,
        /// All lanes in one tap with consecutive channels: `(ty, tx, off)`.
        contiguous: Option<(isize, isize, isize)>,
        ty: __m512i,
        tx: __m512i,
        off: __m512i,
    }

    /// Runs the unit over pixels `px`.
    ///
    /// # Safety
    /// `t` describes buffers that satisfy the module invariants.
    pub(super) unsafe fn run_filter_grad(t: &FilterGrad, px: Range<usize>) {
        // SAFETY: forwarded (avx512f is available).
        unsafe { run_filter_grad_avx512(t, px) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn run_filter_grad_avx512(t: &FilterGrad, px: Range<usize>) {
        let cols_of = |q0: usize| -> Cols {
            let lanes = 16.min(t.kdim.saturating_sub(q0));
            let mut ty = [0i32; 16];
            let mut tx = [0i32; 16];
            let mut off = [0i32; 16];
            for l in 0..lanes {
                let q = q0 + l;
                let (tap, c) = (q / t.cg, q % t.cg);
                let (kh, kw) = (tap / t.kw, tap % t.kw);
                let (y, x) = (kh as isize * t.dil.0, kw as isize * t.dil.1);
                ty[l] = y as i32;
                tx[l] = x as i32;
                off[l] = ((y * t.w + x) * t.c + c as isize) as i32;
            }
            let first_c = q0 % t.cg.max(1);
            let contiguous = (lanes > 0 && first_c + lanes <= t.cg)
                .then(|| (ty[0] as isize, tx[0] as isize, off[0] as isize));
            let mask = if lanes == 16 {
                0xFFFF
            } else {
                ((1u32 << lanes) - 1) as __mmask16
            };
            // SAFETY: the arrays hold 16 i32 each.
            unsafe {
                Cols {
                    mask,
                    contiguous,
                    ty: _mm512_loadu_si512(ty.as_ptr().cast()),
                    tx: _mm512_loadu_si512(tx.as_ptr().cast()),
                    off: _mm512_loadu_si512(off.as_ptr().cast()),
                }
            }
        };
        // One vector of columns leaves registers for 24 rows (conv1's 9
        // columns: two tiles of 16 filters instead of three of 11).
        let max_rows = if t.kdim <= 16 { 2 * MR } else { MR };
        let row_tiles = t.fg.div_ceil(max_rows);
        let mut sub = px.start;
        while sub < px.end {
            let sub_end = (sub + SUB_PIXELS).min(px.end);
            let accumulate = sub > px.start;
            let mut q0 = 0;
            while q0 < t.kdim {
                let nq = 32.min(t.kdim - q0);
                let cols = [cols_of(q0), cols_of(q0 + 16)];
                for rt in 0..row_tiles {
                    let f = share(t.fg, rt, row_tiles);
                    // SAFETY: forwarded; rows f, columns q0..q0+nq of the
                    // partial sums are inside `out`.
                    unsafe {
                        let tile = Tile {
                            t,
                            cols: &cols,
                            px: sub..sub_end,
                            f0: f.start,
                            q0,
                            accumulate,
                        };
                        if nq <= 16 {
                            dispatch_rows!(f.len(), filter_tile::<ONE>(&tile),
                                [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24])
                        } else {
                            dispatch_rows!(f.len(), filter_tile::<TWO>(&tile), [1 2 3 4 5 6 7 8 9 10 11 12])
                        }
                    }
                }
                q0 += nq;
            }
            sub = sub_end;
        }
    }

    /// Stores (or adds) 16 masked partial sums at `o`.
    #[inline(always)]
    unsafe fn store_partial(o: *mut f32, mask: __mmask16, sum: __m512, accumulate: bool) {
        // SAFETY: forwarded (caller's invariant (e)).
        unsafe {
            let val = if accumulate {
                _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, o))
            } else {
                sum
            };
            _mm512_mask_storeu_ps(o, mask, val);
        }
    }

    const ONE: usize = 1;
    const TWO: usize = 2;

    /// One tile of the filter gradient: filters `f0..f0 + R`, columns
    /// `q0..q0 + 16·V`, over pixels `px`.
    struct Tile<'a> {
        t: &'a FilterGrad,
        cols: &'a [Cols; 2],
        px: Range<usize>,
        f0: usize,
        q0: usize,
        accumulate: bool,
    }

    /// The image values of 16 columns at one pixel, zero outside the image.
    #[target_feature(enable = "avx512f")]
    unsafe fn gather_cols(t: &FilterGrad, col: &Cols, y0: isize, x0: isize, base: isize) -> __m512 {
        match col.contiguous {
            Some((ty, tx, off)) => {
                let (y, x) = (y0 + ty, x0 + tx);
                if y >= 0 && y < t.h && x >= 0 && x < t.w {
                    // SAFETY: (d) the tap's pixel is inside x; (e) masked.
                    unsafe { _mm512_maskz_loadu_ps(col.mask, t.x.offset(base + off)) }
                } else {
                    _mm512_setzero_ps()
                }
            }
            None => {
                let y = _mm512_add_epi32(_mm512_set1_epi32(y0 as i32), col.ty);
                let x = _mm512_add_epi32(_mm512_set1_epi32(x0 as i32), col.tx);
                let zero = _mm512_setzero_si512();
                let m = col.mask
                    & _mm512_cmpge_epi32_mask(y, zero)
                    & _mm512_cmplt_epi32_mask(y, _mm512_set1_epi32(t.h as i32))
                    & _mm512_cmpge_epi32_mask(x, zero)
                    & _mm512_cmplt_epi32_mask(x, _mm512_set1_epi32(t.w as i32));
                // Wrapping 32-bit sums: exact for the unmasked lanes (b).
                let idx = _mm512_add_epi32(_mm512_set1_epi32(base as i32), col.off);
                // SAFETY: (d) unmasked lanes index pixels inside x.
                unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, idx, t.x) }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn filter_tile<const R: usize, const V: usize>(tile: &Tile) {
        let t = tile.t;
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let ohw = t.out_h * t.out_w;
        let p0 = tile.px.start;
        let (mut n, mut oy, mut ox) = (p0 / ohw, p0 % ohw / t.out_w, p0 % t.out_w);
        // SAFETY: (a) filter f0 of row p0 of dy is inside dy.
        let mut dyr = unsafe { t.dy.add(p0 * t.dy_rs + tile.f0) };
        for _ in tile.px.clone() {
            let y0 = oy as isize * t.stride.0 - t.pad.0;
            let x0 = ox as isize * t.stride.1 - t.pad.1;
            let base = ((n as isize * t.h + y0) * t.w + x0) * t.c;
            // SAFETY: forwarded.
            let x0v = unsafe { gather_cols(t, &tile.cols[0], y0, x0, base) };
            let x1v = if V == 2 {
                // SAFETY: forwarded.
                unsafe { gather_cols(t, &tile.cols[1], y0, x0, base) }
            } else {
                x0v
            };
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: (a) filters f0..f0 + R of the pixel's dy row.
                let a = unsafe { _mm512_set1_ps(*dyr.add(r)) };
                row[0] = _mm512_fmadd_ps(a, x0v, row[0]);
                if V == 2 {
                    row[1] = _mm512_fmadd_ps(a, x1v, row[1]);
                }
            }
            ox += 1;
            if ox == t.out_w {
                ox = 0;
                oy += 1;
                if oy == t.out_h {
                    oy = 0;
                    n += 1;
                }
            }
            dyr = dyr.wrapping_add(t.dy_rs);
        }
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: (e) row f0 + r, columns q0.. (masked) of the unit's
            // partial sums.
            unsafe {
                let o = t.out.add((tile.f0 + r) * t.kdim + tile.q0);
                store_partial(o, tile.cols[0].mask, row[0], tile.accumulate);
                if V == 2 {
                    store_partial(o.add(16), tile.cols[1].mask, row[1], tile.accumulate);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sgemm;
    use proptest::prelude::*;

    fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut r = rng(seed);
        (0..n).map(|_| r()).collect()
    }

    /// The input pixel a (output pixel, tap) reads, or none in the padding:
    /// straight from the definition, independent of the kernels' geometry.
    fn source(s: &ConvSpec, oh: usize, ow: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
        let ih = (oh * s.stride_h + kh * s.dilation_h) as i64 - s.pad_top as i64;
        let iw = (ow * s.stride_w + kw * s.dilation_w) as i64 - s.pad_left as i64;
        (ih >= 0 && iw >= 0 && (ih as usize) < s.height && (iw as usize) < s.width)
            .then_some((ih as usize, iw as usize))
    }

    /// Every (n, oh, ow, kh, kw, group-local c, f) term of the convolution
    /// with its input, kernel and output indices.
    fn terms(d: &ConvDims, mut visit: impl FnMut(usize, usize, usize)) {
        let s = d.spec();
        let (cg, fg) = (s.channels / s.groups, s.filters / s.groups);
        for n in 0..s.batch {
            for oh in 0..d.out_h() {
                for ow in 0..d.out_w() {
                    for kh in 0..s.kernel_h {
                        for kw in 0..s.kernel_w {
                            let Some((ih, iw)) = source(s, oh, ow, kh, kw) else {
                                continue;
                            };
                            for f in 0..s.filters {
                                let g = f / fg;
                                for c in 0..cg {
                                    let xi = ((n * s.height + ih) * s.width + iw) * s.channels
                                        + g * cg
                                        + c;
                                    let ki = ((kh * s.kernel_w + kw) * cg + c) * s.filters + f;
                                    let yi =
                                        ((n * d.out_h() + oh) * d.out_w() + ow) * s.filters + f;
                                    visit(xi, ki, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// f64 references (value and `Σ|terms|` for the tolerance).
    fn ref_forward(d: &ConvDims, x: &[f32], k: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0; d.output_len()];
        let mut b = vec![0.0; d.output_len()];
        terms(d, |xi, ki, yi| {
            let t = x[xi] as f64 * k[ki] as f64;
            y[yi] += t;
            b[yi] += t.abs();
        });
        (y, b)
    }

    fn ref_data_grad(d: &ConvDims, dy: &[f32], k: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0; d.input_len()];
        let mut b = vec![0.0; d.input_len()];
        terms(d, |xi, ki, yi| {
            let t = dy[yi] as f64 * k[ki] as f64;
            dx[xi] += t;
            b[xi] += t.abs();
        });
        (dx, b)
    }

    fn ref_filter_grad(d: &ConvDims, x: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut dk = vec![0.0; d.kernel_len()];
        let mut b = vec![0.0; d.kernel_len()];
        terms(d, |xi, ki, yi| {
            let t = x[xi] as f64 * dy[yi] as f64;
            dk[ki] += t;
            b[ki] += t.abs();
        });
        (dk, b)
    }

    fn close(
        what: &str,
        got: &[f32],
        want: &[f64],
        bound: &[f64],
        terms: usize,
    ) -> Result<(), String> {
        for (i, ((g, w), b)) in got.iter().zip(want).zip(bound).enumerate() {
            let tol = 2.0 * (terms as f64 + 2.0) * f32::EPSILON as f64 * b + 1e-30;
            let within = (*g as f64 - w).abs() <= tol; // false for NaN
            if !within {
                return Err(format!("{what}[{i}] = {g}, want {w} (tol {tol:e})"));
            }
        }
        Ok(())
    }

    fn forward(d: &ConvDims, x: &[f32], k: &[f32], epi: &Epilogue, parts: usize) -> Vec<f32> {
        let mut y = vec![f32::NAN; d.output_len()];
        let mut ws = vec![f32::NAN; d.forward_workspace_floats()];
        for part in 0..parts {
            // SAFETY: buffers sized for d; one part at a time.
            unsafe {
                forward_part(
                    d,
                    y.as_mut_ptr(),
                    x.as_ptr(),
                    k.as_ptr(),
                    epi,
                    ws.as_mut_ptr(),
                    part,
                    parts,
                )
            };
        }
        y
    }

    fn data_grad(d: &ConvDims, dy: &[f32], k: &[f32], parts: usize) -> Vec<f32> {
        let mut dx = vec![f32::NAN; d.input_len()];
        let mut ws = vec![f32::NAN; d.data_grad_workspace_floats()];
        for part in 0..parts {
            // SAFETY: buffers sized for d; one part at a time.
            unsafe {
                data_grad_part(
                    d,
                    dx.as_mut_ptr(),
                    dy.as_ptr(),
                    k.as_ptr(),
                    &Epilogue::PLAIN,
                    ws.as_mut_ptr(),
                    part,
                    parts,
                )
            };
        }
        dx
    }

    fn filter_grad(d: &ConvDims, x: &[f32], dy: &[f32], parts: usize) -> Vec<f32> {
        let mut dk = vec![f32::NAN; d.kernel_len()];
        let mut ws = vec![f32::NAN; d.filter_grad_workspace_floats()];
        for part in 0..parts {
            // SAFETY: buffers sized for d; one part at a time.
            unsafe { filter_grad_part(d, x.as_ptr(), dy.as_ptr(), ws.as_mut_ptr(), part, parts) };
        }
        for part in 0..parts {
            // SAFETY: every part above finished.
            unsafe { filter_grad_reduce_part(d, dk.as_mut_ptr(), ws.as_ptr(), part, parts) };
        }
        dk
    }

    /// Random valid specs: odd sizes, strides that do not divide, 1×1 and
    /// input-sized kernels, dilation, `same` or random padding, groups.
    fn spec_strategy() -> impl Strategy<Value = ConvSpec> {
        (
            (1usize..3, 1usize..10, 1usize..10, 1usize..4, 1usize..4),
            (
                1usize..5,
                1usize..5,
                1usize..4,
                1usize..4,
                1usize..3,
                1usize..3,
            ),
            (0usize..3, 0usize..3, 0usize..3, 0usize..3, any::<bool>()),
            1usize..20,
        )
            .prop_filter_map(
                "the dilated kernel fits the padded input",
                |(
                    (n, h, w, cpg, groups),
                    (kh, kw, sh, sw, dh, dw),
                    (pt, pb, pl, pr, same),
                    fpg,
                )| {
                    let ((pt, pb), (pl, pr)) = if same {
                        (same_padding(h, kh, sh, dh), same_padding(w, kw, sw, dw))
                    } else {
                        ((pt, pb), (pl, pr))
                    };
                    let s = ConvSpec {
                        batch: n,
                        height: h,
                        width: w,
                        channels: cpg * groups,
                        kernel_h: kh,
                        kernel_w: kw,
                        filters: fpg * groups,
                        stride_h: sh,
                        stride_w: sw,
                        dilation_h: dh,
                        dilation_w: dw,
                        pad_top: pt,
                        pad_bottom: pb,
                        pad_left: pl,
                        pad_right: pr,
                        groups,
                    };
                    ConvDims::new(s).ok().map(|_| s)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// All three passes against the nested-loop f64 reference, 1–3 parts.
        #[test]
        fn passes_match_reference(s in spec_strategy(), parts in 1usize..4, seed: u64) {
            if !sgemm::available() {
                return Ok(());
            }
            let d = ConvDims::new(s).unwrap();
            let taps = s.kernel_h * s.kernel_w * s.channels / s.groups;
            let x = random(d.input_len(), seed);
            let k = random(d.kernel_len(), seed ^ 1);
            let dy = random(d.output_len(), seed ^ 2);
            let (want, bound) = ref_forward(&d, &x, &k);
            let got = forward(&d, &x, &k, &Epilogue::PLAIN, parts);
            prop_assert!(close("y", &got, &want, &bound, taps).is_ok(), "{s:?}: {}", close("y", &got, &want, &bound, taps).unwrap_err());
            let (want, bound) = ref_data_grad(&d, &dy, &k);
            let got = data_grad(&d, &dy, &k, parts);
            let terms = s.kernel_h * s.kernel_w * s.filters;
            prop_assert!(close("dx", &got, &want, &bound, terms).is_ok(), "{s:?}: {}", close("dx", &got, &want, &bound, terms).unwrap_err());
            let (want, bound) = ref_filter_grad(&d, &x, &dy);
            let got = filter_grad(&d, &x, &dy, parts);
            prop_assert!(close("dk", &got, &want, &bound, d.pixels()).is_ok(), "{s:?}: {}", close("dk", &got, &want, &bound, d.pixels()).unwrap_err());
        }
    }

    fn spec(n: usize, h: usize, w: usize, c: usize, k: (usize, usize), f: usize) -> ConvSpec {
        ConvSpec {
            batch: n,
            height: h,
            width: w,
            channels: c,
            kernel_h: k.0,
            kernel_w: k.1,
            filters: f,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
            groups: 1,
        }
    }

    /// A 3×3 image, 2×2 kernel of ones and twos, `same` padding (extra
    /// row/column bottom/right), hand-computed.
    #[test]
    fn hand_computed_same_padding() {
        if !sgemm::available() {
            return;
        }
        let (pt, pb) = same_padding(3, 2, 1, 1);
        assert_eq!((pt, pb), (0, 1));
        let s = ConvSpec {
            pad_top: pt,
            pad_bottom: pb,
            pad_left: pt,
            pad_right: pb,
            ..spec(1, 3, 3, 1, (2, 2), 1)
        };
        let d = ConvDims::new(s).unwrap();
        assert_eq!((d.out_h(), d.out_w()), (3, 3));
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        // k[kh, kw] = [[1, 0], [0, 2]]: y[i, j] = x[i, j] + 2·x[i+1, j+1].
        let k = [1.0, 0.0, 0.0, 2.0];
        let y = forward(&d, &x, &k, &Epilogue::PLAIN, 1);
        assert_eq!(
            y,
            [
                1.0 + 10.0,
                2.0 + 12.0,
                3.0,
                4.0 + 16.0,
                5.0 + 18.0,
                6.0,
                7.0,
                8.0,
                9.0
            ]
        );
        // dx of Σ y (dy = 1): each x[i, j] gets 1 if y[i, j] exists and 2 if y[i-1, j-1] does.
        let dx = data_grad(&d, &[1.0; 9], &k, 1);
        assert_eq!(dx, [1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 1.0, 3.0, 3.0]);
        // dk[kh, kw] = Σ over outputs of the tap's input: 45, 33 (columns 1–2), 39 (rows 1–2), 28.
        let dk = filter_grad(&d, &x, &[1.0; 9], 1);
        assert_eq!(dk, [45.0, 33.0, 39.0, 28.0]);
    }

    /// Bias, relu and the pre-activation written by the epilogue, forward
    /// and data gradient (Conv2DTranspose).
    #[test]
    fn epilogue_bias_relu_preact() {
        if !sgemm::available() {
            return;
        }
        let s = ConvSpec {
            stride_h: 2,
            pad_top: 1,
            pad_left: 1,
            ..spec(2, 5, 4, 3, (3, 2), 20)
        };
        let d = ConvDims::new(s).unwrap();
        let x = random(d.input_len(), 3);
        let k = random(d.kernel_len(), 4);
        let bias = random(20, 5);
        let mut z = vec![f32::NAN; d.output_len()];
        let epi = Epilogue {
            bias: Some(bias.as_ptr()),
            act: Activation::Relu,
            preact: Some(z.as_mut_ptr()),
        };
        let y = forward(&d, &x, &k, &epi, 2);
        let plain = forward(&d, &x, &k, &Epilogue::PLAIN, 1);
        for i in 0..y.len() {
            let want = plain[i] + bias[i % 20];
            assert_eq!(z[i], want, "preact[{i}]");
            assert_eq!(y[i], want.max(0.0), "y[{i}]");
        }
        let dy = random(d.output_len(), 6);
        let cbias = random(3, 7);
        let mut dx = vec![f32::NAN; d.input_len()];
        let mut ws = vec![f32::NAN; d.data_grad_workspace_floats()];
        let epi = Epilogue {
            bias: Some(cbias.as_ptr()),
            act: Activation::Relu,
            preact: None,
        };
        // SAFETY: buffers sized for d; one part.
        unsafe {
            data_grad_part(
                &d,
                dx.as_mut_ptr(),
                dy.as_ptr(),
                k.as_ptr(),
                &epi,
                ws.as_mut_ptr(),
                0,
                1,
            )
        };
        let plain = data_grad(&d, &dy, &k, 1);
        for i in 0..dx.len() {
            assert_eq!(dx[i], (plain[i] + cbias[i % 3]).max(0.0), "dx[{i}]");
        }
    }

    /// Central differences of `L = Σ r·conv(x, k)` against the data and
    /// filter gradients with `dy = r`, on small shapes with stride,
    /// dilation, padding and groups.
    #[test]
    fn gradients_match_finite_differences() {
        if !sgemm::available() {
            return;
        }
        let cases = [
            ConvSpec {
                stride_h: 2,
                stride_w: 3,
                pad_top: 1,
                pad_right: 2,
                ..spec(2, 6, 7, 3, (3, 2), 4)
            },
            ConvSpec {
                dilation_h: 2,
                dilation_w: 2,
                pad_bottom: 1,
                ..spec(1, 7, 5, 2, (2, 3), 3)
            },
            ConvSpec {
                groups: 2,
                stride_w: 2,
                pad_left: 1,
                pad_top: 1,
                ..spec(1, 5, 6, 4, (3, 3), 6)
            },
            ConvSpec {
                groups: 3,
                ..spec(2, 4, 4, 3, (2, 2), 3)
            },
        ];
        for s in cases {
            let d = ConvDims::new(s).unwrap();
            let x = random(d.input_len(), 11);
            let k = random(d.kernel_len(), 12);
            let r = random(d.output_len(), 13);
            let loss = |x: &[f32], k: &[f32]| -> f64 {
                forward(&d, x, k, &Epilogue::PLAIN, 1)
                    .iter()
                    .zip(&r)
                    .map(|(y, r)| *y as f64 * *r as f64)
                    .sum()
            };
            let dx = data_grad(&d, &r, &k, 2);
            let dk = filter_grad(&d, &x, &r, 3);
            let eps = 1e-2f32;
            for i in 0..x.len() {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += eps;
                xm[i] -= eps;
                let fd = (loss(&xp, &k) - loss(&xm, &k)) / (2.0 * eps as f64);
                assert!(
                    (fd - dx[i] as f64).abs() <= 1e-3 * (1.0 + fd.abs()),
                    "{s:?}: dx[{i}] = {}, fd {fd}",
                    dx[i]
                );
            }
            for i in 0..k.len() {
                let (mut kp, mut km) = (k.clone(), k.clone());
                kp[i] += eps;
                km[i] -= eps;
                let fd = (loss(&x, &kp) - loss(&x, &km)) / (2.0 * eps as f64);
                assert!(
                    (fd - dk[i] as f64).abs() <= 1e-3 * (1.0 + fd.abs()),
                    "{s:?}: dk[{i}] = {}, fd {fd}",
                    dk[i]
                );
            }
        }
    }

    /// The `cnn` workload's layers (batch 9, so the filter gradient has
    /// several chunks) and a depthwise layer give bit-identical results for
    /// 1, 2 and 3 parts, and match the reference.
    #[test]
    fn parts_are_bit_identical() {
        if !sgemm::available() {
            return;
        }
        let cases = [
            spec(9, 28, 28, 1, (3, 3), 32),
            spec(9, 13, 13, 32, (3, 3), 64),
            ConvSpec {
                groups: 8,
                pad_top: 1,
                pad_bottom: 1,
                pad_left: 1,
                pad_right: 1,
                ..spec(3, 9, 9, 8, (3, 3), 16)
            },
        ];
        for s in cases {
            let d = ConvDims::new(s).unwrap();
            let x = random(d.input_len(), 21);
            let k = random(d.kernel_len(), 22);
            let dy = random(d.output_len(), 23);
            let one = (
                forward(&d, &x, &k, &Epilogue::PLAIN, 1),
                data_grad(&d, &dy, &k, 1),
                filter_grad(&d, &x, &dy, 1),
            );
            let taps = s.kernel_h * s.kernel_w * s.channels / s.groups;
            let (w, b) = ref_forward(&d, &x, &k);
            close("y", &one.0, &w, &b, taps).unwrap();
            let (w, b) = ref_data_grad(&d, &dy, &k);
            close("dx", &one.1, &w, &b, s.kernel_h * s.kernel_w * s.filters).unwrap();
            let (w, b) = ref_filter_grad(&d, &x, &dy);
            close("dk", &one.2, &w, &b, d.pixels()).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for parts in [2, 3] {
                assert_eq!(
                    bits(&one.0),
                    bits(&forward(&d, &x, &k, &Epilogue::PLAIN, parts)),
                    "{s:?}: y, {parts} parts"
                );
                assert_eq!(
                    bits(&one.1),
                    bits(&data_grad(&d, &dy, &k, parts)),
                    "{s:?}: dx, {parts} parts"
                );
                assert_eq!(
                    bits(&one.2),
                    bits(&filter_grad(&d, &x, &dy, parts)),
                    "{s:?}: dk, {parts} parts"
                );
            }
        }
    }

    /// Bad dimensions are errors naming the field, never panics.
    #[test]
    fn invalid_dims_name_the_field() {
        let ok = spec(2, 5, 5, 4, (3, 3), 8);
        let field = |s: ConvSpec| ConvDims::new(s).unwrap_err().field;
        assert_eq!(field(ConvSpec { batch: 0, ..ok }), "batch");
        assert_eq!(field(ConvSpec { stride_w: 0, ..ok }), "stride_w");
        assert_eq!(field(ConvSpec { groups: 3, ..ok }), "groups");
        assert_eq!(
            field(ConvSpec {
                groups: 4,
                filters: 6,
                ..ok
            }),
            "groups"
        );
        assert_eq!(field(ConvSpec { kernel_h: 6, ..ok }), "kernel_h");
        assert_eq!(
            field(ConvSpec {
                dilation_w: 3,
                ..ok
            }),
            "kernel_w"
        );
        assert_eq!(
            field(ConvSpec {
                pad_left: usize::MAX,
                ..ok
            }),
            "pad_left"
        );
        assert_eq!(
            field(ConvSpec {
                dilation_h: 1 << 30,
                ..ok
            }),
            "kernel_h"
        );
        assert_eq!(
            field(ConvSpec {
                batch: 1 << 30,
                ..ok
            }),
            "input"
        );
        assert_eq!(
            field(ConvSpec {
                channels: 1 << 16,
                filters: 1 << 16,
                kernel_h: 1,
                ..ok
            }),
            "kernel"
        );
        assert!(ConvDims::new(ConvSpec {
            kernel_h: 7,
            pad_top: 1,
            pad_bottom: 1,
            ..ok
        })
        .is_ok());
        assert_eq!(same_padding(28, 3, 2, 1), (0, 1));
        assert_eq!(same_padding(5, 4, 1, 2), (3, 3));
    }
}

/// The measurements behind the design notes, on the `cnn` workload's layers
/// at batch 128: `cargo test --release -p lossgraph-runtime --lib
/// conv::speed -- --ignored --nocapture` prints the median GFLOP/s (2·MACs
/// per pass) over 7 rounds on 1 and 2 threads.
#[cfg(test)]
mod speed {
    use super::*;
    use std::time::Instant;

    fn layer(h: usize, c: usize, f: usize) -> ConvDims {
        ConvDims::new(ConvSpec {
            batch: 128,
            height: h,
            width: h,
            channels: c,
            kernel_h: 3,
            kernel_w: 3,
            filters: f,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
            groups: 1,
        })
        .unwrap()
    }

    /// Runs `body(part, parts)` on `threads` scoped threads.
    fn parallel(threads: usize, body: &(dyn Fn(usize, usize) + Sync)) {
        if threads == 1 {
            body(0, 1);
        } else {
            std::thread::scope(|s| {
                for p in 1..threads {
                    s.spawn(move || body(p, threads));
                }
                body(0, threads);
            });
        }
    }

    /// Median seconds per call of `f` over 7 rounds of `reps` calls.
    fn median(reps: usize, mut f: impl FnMut()) -> f64 {
        f();
        let mut t: Vec<f64> = (0..7)
            .map(|_| {
                let s = Instant::now();
                for _ in 0..reps {
                    f();
                }
                s.elapsed().as_secs_f64() / reps as f64
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[3]
    }

    /// A pointer that may cross to the worker threads (the parts write
    /// disjoint ranges).
    #[derive(Clone, Copy)]
    struct Ptr(*mut f32);
    // SAFETY: the parts write disjoint ranges; the buffers outlive the scope.
    unsafe impl Send for Ptr {}
    // SAFETY: as above.
    unsafe impl Sync for Ptr {}

    impl Ptr {
        /// The pointer (a method, so closures capture the whole `Ptr`).
        fn get(self) -> *mut f32 {
            self.0
        }
    }

    /// conv2's forward as implicit GEMM against an explicit im2col
    /// (materialised outside the timing) multiplied by sgemm, alternated
    /// over 7 rounds, one thread: the in-run baseline on a shared machine.
    #[test]
    #[ignore]
    fn implicit_vs_im2col_sgemm() {
        if !crate::sgemm::available() {
            return;
        }
        let d = layer(13, 32, 64);
        let s = *d.spec();
        let x: Vec<f32> = (0..d.input_len()).map(|i| (i % 7) as f32 * 0.1).collect();
        let k: Vec<f32> = (0..d.kernel_len()).map(|i| (i % 5) as f32 * 0.1).collect();
        let (m, kk, n) = (d.pixels(), 9 * s.channels, s.filters);
        let mut col = vec![0.0f32; m * kk];
        let im2col = |col: &mut [f32]| {
            for p in 0..m {
                let (b, oh, ow) = (p / 121, p % 121 / 11, p % 11);
                for kh in 0..3 {
                    for kw in 0..3 {
                        let src = ((b * 13 + oh + kh) * 13 + ow + kw) * s.channels;
                        let dst = p * kk + (kh * 3 + kw) * s.channels;
                        col[dst..dst + s.channels].copy_from_slice(&x[src..src + s.channels]);
                    }
                }
            }
        };
        im2col(&mut col);
        let gd = crate::sgemm::Dims::row_major(m, n, kk, false, false);
        let mut y = vec![0.0f32; m * n];
        let mut ws = vec![0.0f32; gd.workspace_floats().max(d.forward_workspace_floats())];
        let mut t = [vec![], vec![], vec![]];
        for _ in 0..7 {
            let s0 = Instant::now();
            // SAFETY: buffers sized for d; one part.
            unsafe {
                forward_part(
                    &d,
                    y.as_mut_ptr(),
                    x.as_ptr(),
                    k.as_ptr(),
                    &Epilogue::PLAIN,
                    ws.as_mut_ptr(),
                    0,
                    1,
                )
            };
            t[0].push(s0.elapsed().as_secs_f64());
            let s0 = Instant::now();
            // SAFETY: col is m×kk, k is kk×n, y is m×n.
            unsafe {
                crate::sgemm::gemm_part(
                    &gd,
                    y.as_mut_ptr(),
                    col.as_ptr(),
                    k.as_ptr(),
                    ws.as_mut_ptr(),
                    0,
                    1,
                )
            };
            t[1].push(s0.elapsed().as_secs_f64());
            let s0 = Instant::now();
            im2col(&mut col);
            t[2].push(s0.elapsed().as_secs_f64());
        }
        let flop = 2.0 * d.macs() as f64;
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[3]
        };
        let (a, b, c) = (med(&mut t[0]), med(&mut t[1]), med(&mut t[2]));
        println!(
            "conv2 forward, 1 thread: implicit {:.1} GFLOP/s ({:.0} us); sgemm on im2col {:.1} GFLOP/s ({:.0} us) + im2col {:.0} us",
            flop / a / 1e9, a * 1e6, flop / b / 1e9, b * 1e6, c * 1e6
        );
    }

    #[test]
    #[ignore]
    fn cnn_layers() {
        if !crate::sgemm::available() {
            return;
        }
        for (name, d) in [("conv1", layer(28, 1, 32)), ("conv2", layer(13, 32, 64))] {
            let x: Vec<f32> = (0..d.input_len()).map(|i| (i % 7) as f32 * 0.1).collect();
            let k: Vec<f32> = (0..d.kernel_len()).map(|i| (i % 5) as f32 * 0.1).collect();
            let dy: Vec<f32> = (0..d.output_len()).map(|i| (i % 3) as f32 * 0.1).collect();
            let bias = vec![0.1f32; d.spec().filters];
            let mut y = vec![0.0f32; d.output_len()];
            let mut dx = vec![0.0f32; d.input_len()];
            let mut dk = vec![0.0f32; d.kernel_len()];
            let fws = d.forward_workspace_floats();
            let dws = d.data_grad_workspace_floats();
            let mut ws = vec![0.0f32; (fws.max(dws) * 2).max(d.filter_grad_workspace_floats())];
            let flop = 2.0 * d.macs() as f64;
            let reps = (2e9 / flop).clamp(3.0, 200.0) as usize;
            let (yp, dxp, dkp, wsp) = (
                Ptr(y.as_mut_ptr()),
                Ptr(dx.as_mut_ptr()),
                Ptr(dk.as_mut_ptr()),
                Ptr(ws.as_mut_ptr()),
            );
            let bp = Ptr(bias.as_ptr() as *mut f32);
            for threads in [1, 2] {
                let fwd = median(reps, || {
                    parallel(threads, &|p, n| {
                        let epi = Epilogue {
                            bias: Some(bp.get() as *const f32),
                            act: Activation::Relu,
                            preact: None,
                        };
                        // SAFETY: buffers sized for d; each part its own workspace slice.
                        unsafe {
                            forward_part(
                                &d,
                                yp.get(),
                                x.as_ptr(),
                                k.as_ptr(),
                                &epi,
                                wsp.get().add(p * fws),
                                p,
                                n,
                            )
                        }
                    })
                });
                let bwd = median(reps, || {
                    parallel(threads, &|p, n| {
                        // SAFETY: as above.
                        unsafe {
                            data_grad_part(
                                &d,
                                dxp.get(),
                                dy.as_ptr(),
                                k.as_ptr(),
                                &Epilogue::PLAIN,
                                wsp.get().add(p * dws),
                                p,
                                n,
                            )
                        }
                    })
                });
                let fil = median(reps, || {
                    parallel(threads, &|p, n| {
                        // SAFETY: as above; one shared workspace.
                        unsafe { filter_grad_part(&d, x.as_ptr(), dy.as_ptr(), wsp.get(), p, n) }
                    });
                    parallel(threads, &|p, n| {
                        // SAFETY: the partial sums are complete.
                        unsafe { filter_grad_reduce_part(&d, dkp.get(), wsp.get(), p, n) }
                    });
                });
                println!(
                    "{name} {}x{}x{}x{} -> {}x{}x{}, {threads} thread(s): forward+bias+relu {:.1} GFLOP/s ({:.0} us), data grad {:.1} ({:.0} us), filter grad {:.1} ({:.0} us)",
                    d.spec().batch, d.spec().height, d.spec().width, d.spec().channels,
                    d.out_h(), d.out_w(), d.spec().filters,
                    flop / fwd / 1e9, fwd * 1e6, flop / bwd / 1e9, bwd * 1e6, flop / fil / 1e9, fil * 1e6
                );
            }
        }
    }
}
