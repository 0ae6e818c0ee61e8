//! Max and sum pooling on NHWC f32 slices, forward and backward, in row
//! ranges so the step's pool can split them (plain loops over blocks of
//! channels that autovectorise; no `unsafe`: the caller hands each part
//! its own output rows). The JIT runs them for the pooling patterns of the
//! IR (`lossgraph_compiler::pool_calls`, the `pool` host function).
//!
//! Semantics: windows of `pool_h × pool_w` cells at strides `stride_h,
//! stride_w` over the input with explicit padding per side (Keras `same`
//! is [`crate::conv::same_padding`] with dilation 1). Padded cells are not
//! real: max ignores them (as if −∞), the sum skips them (so an average is
//! the sum divided by the real cells). Max takes the window's *first*
//! maximum in row-major order as the IR's `argmax` does: the first NaN if
//! there is one, else the first cell no later cell exceeds (ties go to the
//! first); its gradient goes to that cell, recomputed from `x` rather than
//! stored, so the forward writes nothing extra. Global pooling is a window
//! of the whole image (`pool = stride = (H, W)`, no padding).
//!
//! Parts: the forward splits output rows (`n·OH + oh`), the backward input
//! rows (`n·H + ih`, gathering from every window that covers the row in
//! `(oh, ow)` order), so every element is summed in the same order whatever
//! the number of parts.

use crate::conv::{checked_len, dims_error, out_len, share, DimsError};
use std::ops::Range;

/// Max or sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolKind {
    Max,
    Sum,
}

/// A pooling as the IR states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolSpec {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub pool_h: usize,
    pub pool_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
}

/// A validated [`PoolSpec`] with its output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolDims {
    s: PoolSpec,
    out_h: usize,
    out_w: usize,
}

/// One axis of a window: its first input index and its real cells.
#[inline(always)]
fn window(o: usize, stride: usize, pad: usize, pool: usize, size: usize) -> Range<usize> {
    let start = (o * stride) as isize - pad as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + pool as isize).max(0) as usize).min(size);
    lo..hi
}

impl PoolDims {
    /// Validates `s`: counts at least 1 and at most `2^31-1`, each padding
    /// smaller than its window (so every window has a real cell), buffers
    /// at most `2^31-1` floats. The error names the field.
    pub(crate) fn new(s: PoolSpec) -> Result<PoolDims, DimsError> {
        let positive = [
            ("batch", s.batch),
            ("height", s.height),
            ("width", s.width),
            ("channels", s.channels),
            ("pool_h", s.pool_h),
            ("pool_w", s.pool_w),
            ("stride_h", s.stride_h),
            ("stride_w", s.stride_w),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(dims_error(field, "must be at least 1"));
            }
        }
        let pads = [
            ("pad_top", s.pad_top, s.pool_h),
            ("pad_bottom", s.pad_bottom, s.pool_h),
            ("pad_left", s.pad_left, s.pool_w),
            ("pad_right", s.pad_right, s.pool_w),
        ];
        for (field, pad, pool) in pads {
            if pad >= pool {
                return Err(dims_error(
                    field,
                    format!("{pad} is not smaller than the window ({pool}): a window would hold only padding"),
                ));
            }
        }
        let out_h = out_len(
            "pool_h",
            s.height,
            s.pool_h,
            s.stride_h,
            1,
            (s.pad_top, s.pad_bottom),
        )?;
        let out_w = out_len(
            "pool_w",
            s.width,
            s.pool_w,
            s.stride_w,
            1,
            (s.pad_left, s.pad_right),
        )?;
        checked_len("input", &[s.batch, s.height, s.width, s.channels])?;
        checked_len("output", &[s.batch, out_h, out_w, s.channels])?;
        Ok(PoolDims { s, out_h, out_w })
    }

    pub(crate) fn spec(&self) -> &PoolSpec {
        &self.s
    }

    #[cfg(test)]
    pub(crate) fn out_h(&self) -> usize {
        self.out_h
    }

    pub(crate) fn out_w(&self) -> usize {
        self.out_w
    }

    pub(crate) fn input_len(&self) -> usize {
        let s = &self.s;
        s.batch * s.height * s.width * s.channels
    }

    pub(crate) fn output_len(&self) -> usize {
        self.s.batch * self.out_h * self.out_w * self.s.channels
    }

    /// Output rows (`n·OH + oh`) forward part `part` of `parts` computes;
    /// its slice of `y` is `rows.start·OW·C .. rows.end·OW·C`.
    pub(crate) fn forward_rows(&self, part: usize, parts: usize) -> Range<usize> {
        share(self.s.batch * self.out_h, part, parts)
    }

    /// Input rows (`n·H + ih`) backward part `part` of `parts` computes;
    /// its slice of `dx` is `rows.start·W·C .. rows.end·W·C`.
    pub(crate) fn backward_rows(&self, part: usize, parts: usize) -> Range<usize> {
        share(self.s.batch * self.s.height, part, parts)
    }

    /// The real cells of window `(oh, ow)`.
    #[inline(always)]
    fn window(&self, oh: usize, ow: usize) -> (Range<usize>, Range<usize>) {
        let s = &self.s;
        (
            window(oh, s.stride_h, s.pad_top, s.pool_h, s.height),
            window(ow, s.stride_w, s.pad_left, s.pool_w, s.width),
        )
    }

    /// Output rows `oh` whose windows cover input row `ih`.
    #[inline(always)]
    fn covering(&self, ih: usize) -> Range<usize> {
        let s = &self.s;
        let top = ih + s.pad_top; // window oh covers rows oh·sh .. oh·sh + pool (padded)
        let lo = (top + 1).saturating_sub(s.pool_h).div_ceil(s.stride_h);
        let hi = (top / s.stride_h + 1).min(self.out_h);
        lo..hi.max(lo)
    }
}

/// Whether `v` replaces `best` as the first maximum so far: a NaN stays, a
/// NaN or a strictly greater value takes over (the IR's `argmax`). Bitwise
/// `|`/`&`, not `||`/`&&`: no branch, so the block loops stay vector
/// compare-and-blends (a branch per lane mispredicts on real activations).
#[inline(always)]
fn takes_over(v: f32, best: f32) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// The first maximum of channels `c0..c0 + nb` of window `(n, oh, ow)`:
/// its row in `arg_h`, its column in `arg_w` (fixed-size blocks, so the
/// compare-and-select loop vectorises).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn argmax(
    d: &PoolDims,
    x: &[f32],
    n: usize,
    oh: usize,
    ow: usize,
    c0: usize,
    nb: usize,
    arg_h: &mut [u32; BLOCK],
    arg_w: &mut [u32; BLOCK],
) {
    let s = &d.s;
    let (rows, cols) = d.window(oh, ow);
    let at = |ih: usize, iw: usize| ((n * s.height + ih) * s.width + iw) * s.channels + c0;
    let mut best = block(x, at(rows.start, cols.start), nb);
    arg_h.fill(rows.start as u32);
    arg_w.fill(cols.start as u32);
    for ih in rows {
        for iw in cols.clone() {
            let v = block(x, at(ih, iw), nb);
            for l in 0..BLOCK {
                let better = takes_over(v[l], best[l]);
                best[l] = if better { v[l] } else { best[l] };
                arg_h[l] = if better { ih as u32 } else { arg_h[l] };
                arg_w[l] = if better { iw as u32 } else { arg_w[l] };
            }
        }
    }
}

/// Channels per block: fixed-size arrays, so the loops vectorise and the
/// copies are inline moves (a slice copy of the channel count called
/// `memmove`: 18% of the max gradient's time).
const BLOCK: usize = 16;

/// `x[o..o + nb]` in a block (lanes past `nb` are −∞).
#[inline(always)]
fn block(x: &[f32], o: usize, nb: usize) -> [f32; BLOCK] {
    if nb == BLOCK {
        let mut v = [0.0; BLOCK];
        for (d, s) in v.iter_mut().zip(&x[o..o + BLOCK]) {
            *d = *s;
        }
        v
    } else {
        let mut v = [f32::NEG_INFINITY; BLOCK];
        for (d, s) in v.iter_mut().zip(&x[o..o + nb]) {
            *d = *s;
        }
        v
    }
}

/// `y` rows `rows` (`n·OH + oh`) of the pooling of `x`; `y` is their slice.
pub(crate) fn forward_rows(
    d: &PoolDims,
    kind: PoolKind,
    x: &[f32],
    rows: Range<usize>,
    y: &mut [f32],
) {
    forward_rows_in(d, kind, x, rows, y)
}

/// [`forward_rows`] compiled for AVX-512 (a block is one register; the
/// caller checks the host has AVX-512F).
#[target_feature(enable = "avx512f")]
pub(crate) fn forward_rows_avx512(
    d: &PoolDims,
    kind: PoolKind,
    x: &[f32],
    rows: Range<usize>,
    y: &mut [f32],
) {
    forward_rows_in(d, kind, x, rows, y)
}

/// [`backward_rows`] compiled for AVX-512 (the caller checks the host has
/// AVX-512F).
#[target_feature(enable = "avx512f")]
pub(crate) fn backward_rows_avx512(
    d: &PoolDims,
    kind: PoolKind,
    x: &[f32],
    dy: &[f32],
    rows: Range<usize>,
    dx: &mut [f32],
) {
    backward_rows_in(d, kind, x, dy, rows, dx)
}

#[inline(always)]
fn forward_rows_in(d: &PoolDims, kind: PoolKind, x: &[f32], rows: Range<usize>, y: &mut [f32]) {
    let s = &d.s;
    let c = s.channels;
    let mut o = 0;
    for row in rows {
        let (n, oh) = (row / d.out_h, row % d.out_h);
        for ow in 0..d.out_w {
            let (wr, wc) = d.window(oh, ow);
            let out = &mut y[o..o + c];
            o += c;
            let at = |ih: usize, iw: usize| ((n * s.height + ih) * s.width + iw) * c;
            let mut c0 = 0;
            while c0 < c {
                let nb = BLOCK.min(c - c0);
                let mut acc = match kind {
                    PoolKind::Max => block(x, at(wr.start, wc.start) + c0, nb),
                    PoolKind::Sum => [0.0; BLOCK],
                };
                for ih in wr.clone() {
                    for iw in wc.clone() {
                        let v = block(x, at(ih, iw) + c0, nb);
                        for l in 0..BLOCK {
                            acc[l] = match kind {
                                PoolKind::Max => {
                                    if takes_over(v[l], acc[l]) {
                                        v[l]
                                    } else {
                                        acc[l]
                                    }
                                }
                                PoolKind::Sum => acc[l] + v[l],
                            };
                        }
                    }
                }
                for (o, a) in out[c0..c0 + nb].iter_mut().zip(&acc) {
                    *o = *a;
                }
                c0 += nb;
            }
        }
    }
}

/// `dx` rows `rows` (`n·H + ih`) of the gradient of the pooling of `x`
/// given `dy`; `dx` is their slice (overwritten).
pub(crate) fn backward_rows(
    d: &PoolDims,
    kind: PoolKind,
    x: &[f32],
    dy: &[f32],
    rows: Range<usize>,
    dx: &mut [f32],
) {
    backward_rows_in(d, kind, x, dy, rows, dx)
}

#[inline(always)]
fn backward_rows_in(
    d: &PoolDims,
    kind: PoolKind,
    x: &[f32],
    dy: &[f32],
    rows: Range<usize>,
    dx: &mut [f32],
) {
    let s = &d.s;
    let c = s.channels;
    let (w, first_row) = (s.width, rows.start);
    dx.fill(0.0);
    let mut arg_h = [0u32; BLOCK];
    let mut arg_w = [0u32; BLOCK];
    for row in rows {
        let (n, ih) = (row / s.height, row % s.height);
        let local = (row - first_row) * w * c;
        for oh in d.covering(ih) {
            for ow in 0..d.out_w {
                let g = ((n * d.out_h + oh) * d.out_w + ow) * c;
                let (wr, wc) = d.window(oh, ow);
                if !wr.contains(&ih) {
                    continue;
                }
                match kind {
                    PoolKind::Max => {
                        let mut c0 = 0;
                        while c0 < c {
                            let nb = BLOCK.min(c - c0);
                            argmax(d, x, n, oh, ow, c0, nb, &mut arg_h, &mut arg_w);
                            let grad = block(dy, g + c0, nb);
                            // Each cell of the row adds the gradient of the
                            // lanes whose maximum it is (a masked add, no
                            // per-lane branch).
                            for iw in wc.clone() {
                                let mut add = [0.0f32; BLOCK];
                                for l in 0..BLOCK {
                                    let mine =
                                        (arg_h[l] as usize == ih) & (arg_w[l] as usize == iw);
                                    add[l] = if mine { grad[l] } else { 0.0 };
                                }
                                let o = local + iw * c + c0;
                                for (d, a) in dx[o..o + nb].iter_mut().zip(&add) {
                                    *d += *a;
                                }
                            }
                            c0 += nb;
                        }
                    }
                    PoolKind::Sum => {
                        for iw in wc {
                            let out = &mut dx[local + iw * c..local + (iw + 1) * c];
                            for (o, &v) in out.iter_mut().zip(&dy[g..g + c]) {
                                *o += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::same_padding;
    use proptest::prelude::*;

    pub(super) fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The reference: every window's cells listed from the definition
    /// (padded coordinates, cells outside the image skipped), in row-major
    /// order: `(output index, [input indices])`.
    fn windows(d: &PoolDims) -> Vec<(usize, Vec<usize>)> {
        let s = d.spec();
        let mut out = vec![];
        for n in 0..s.batch {
            for oh in 0..d.out_h() {
                for ow in 0..d.out_w() {
                    for c in 0..s.channels {
                        let mut cells = vec![];
                        for i in 0..s.pool_h {
                            for j in 0..s.pool_w {
                                let ih = (oh * s.stride_h + i) as i64 - s.pad_top as i64;
                                let iw = (ow * s.stride_w + j) as i64 - s.pad_left as i64;
                                if ih >= 0
                                    && iw >= 0
                                    && (ih as usize) < s.height
                                    && (iw as usize) < s.width
                                {
                                    cells.push(
                                        ((n * s.height + ih as usize) * s.width + iw as usize)
                                            * s.channels
                                            + c,
                                    );
                                }
                            }
                        }
                        out.push((
                            ((n * d.out_h() + oh) * d.out_w() + ow) * s.channels + c,
                            cells,
                        ));
                    }
                }
            }
        }
        out
    }

    fn reference(d: &PoolDims, kind: PoolKind, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f64>) {
        let mut y = vec![0.0; d.output_len()];
        let mut dx = vec![0.0f64; d.input_len()];
        for (o, cells) in windows(d) {
            match kind {
                PoolKind::Max => {
                    // The first NaN, else the first cell none exceeds.
                    let arg = cells
                        .iter()
                        .copied()
                        .find(|&i| x[i].is_nan())
                        .unwrap_or_else(|| {
                            let mut arg = cells[0];
                            for &i in &cells {
                                if x[i] > x[arg] {
                                    arg = i;
                                }
                            }
                            arg
                        });
                    y[o] = x[arg];
                    dx[arg] += dy[o] as f64;
                }
                PoolKind::Sum => {
                    y[o] = cells.iter().map(|&i| x[i] as f64).sum::<f64>() as f32;
                    for &i in &cells {
                        dx[i] += dy[o] as f64;
                    }
                }
            }
        }
        (y, dx)
    }

    fn run(
        d: &PoolDims,
        kind: PoolKind,
        x: &[f32],
        dy: &[f32],
        parts: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        run_with(d, kind, x, dy, parts, false)
    }

    /// `run` on the portable build or (`wide`) the AVX-512 one.
    fn run_with(
        d: &PoolDims,
        kind: PoolKind,
        x: &[f32],
        dy: &[f32],
        parts: usize,
        wide: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        assert!(!wide || std::arch::is_x86_feature_detected!("avx512f"));
        let s = d.spec();
        let mut y = vec![f32::NAN; d.output_len()];
        let mut dx = vec![f32::NAN; d.input_len()];
        let (yr, xr) = (d.out_w() * s.channels, s.width * s.channels);
        for part in 0..parts {
            let r = d.forward_rows(part, parts);
            let y = &mut y[r.start * yr..r.end * yr];
            if wide {
                // SAFETY: AVX-512F is present (asserted above).
                unsafe { forward_rows_avx512(d, kind, x, r, y) }
            } else {
                forward_rows(d, kind, x, r, y)
            }
            let r = d.backward_rows(part, parts);
            let dx = &mut dx[r.start * xr..r.end * xr];
            if wide {
                // SAFETY: as above.
                unsafe { backward_rows_avx512(d, kind, x, dy, r, dx) }
            } else {
                backward_rows(d, kind, x, dy, r, dx)
            }
        }
        (y, dx)
    }

    fn spec(
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        pool: (usize, usize),
        stride: (usize, usize),
    ) -> PoolSpec {
        PoolSpec {
            batch: n,
            height: h,
            width: w,
            channels: c,
            pool_h: pool.0,
            pool_w: pool.1,
            stride_h: stride.0,
            stride_w: stride.1,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Forward and backward against the reference; parts 1–3 and the
        /// AVX-512 build give bit-identical results.
        #[test]
        fn matches_reference(n in 1usize..3, h in 1usize..9, w in 1usize..9, c in 1usize..20,
                             ph in 1usize..4, pw in 1usize..4, sh in 1usize..4, sw in 1usize..4,
                             same: bool, max: bool, seed: u64) {
            let mut s = spec(n, h, w, c, (ph, pw), (sh, sw));
            if same {
                (s.pad_top, s.pad_bottom) = same_padding(h, ph, sh, 1);
                (s.pad_left, s.pad_right) = same_padding(w, pw, sw, 1);
            }
            let Ok(d) = PoolDims::new(s) else {
                // The window does not fit the (valid) input.
                prop_assume!(!same);
                return Ok(());
            };
            let kind = if max { PoolKind::Max } else { PoolKind::Sum };
            // Few distinct values, so max windows have ties, and a few NaNs.
            let x: Vec<f32> = random(d.input_len(), seed)
                .iter()
                .map(|v| if *v > 0.97 { f32::NAN } else { (v * 3.0).round() })
                .collect();
            let dy = random(d.output_len(), seed ^ 1);
            let (wy, wdx) = reference(&d, kind, &x, &dy);
            let (y, dx) = run(&d, kind, &x, &dy, 1);
            for (i, (g, w)) in y.iter().zip(&wy).enumerate() {
                prop_assert!((g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 * (1.0 + w.abs()), "{s:?}: y[{i}] = {g}, want {w}");
            }
            for (i, (g, w)) in dx.iter().zip(&wdx).enumerate() {
                prop_assert!((*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()), "{s:?}: dx[{i}] = {g}, want {w}");
            }
            // Bit-identical over part counts, and for the AVX-512 build.
            let wide = std::arch::is_x86_feature_detected!("avx512f");
            for (parts, wide) in [(2, false), (3, false), (1, wide), (2, wide)] {
                let (y2, dx2) = run_with(&d, kind, &x, &dy, parts, wide);
                prop_assert!(y.iter().zip(&y2).all(|(a, b)| a.to_bits() == b.to_bits()));
                prop_assert!(dx.iter().zip(&dx2).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
    }

    /// Hand-computed: a 3×3 image pooled 2×2 `same` at stride 2 (windows
    /// rows/cols {0,1} and {2}); ties route to the first maximum.
    #[test]
    fn hand_computed_same_and_ties() {
        let s = PoolSpec {
            pad_bottom: 1,
            pad_right: 1,
            ..spec(1, 3, 3, 1, (2, 2), (2, 2))
        };
        assert_eq!((s.pad_top, s.pad_bottom), same_padding(3, 2, 2, 1));
        let d = PoolDims::new(s).unwrap();
        let x = [1.0, 5.0, 2.0, 5.0, 0.0, 7.0, 3.0, 3.0, -1.0];
        let dy = [1.0, 2.0, 3.0, 4.0];
        let (y, dx) = run(&d, PoolKind::Max, &x, &dy, 1);
        assert_eq!(y, [5.0, 7.0, 3.0, -1.0]);
        assert_eq!(dx, [0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 3.0, 0.0, 4.0]);
        let (y, dx) = run(&d, PoolKind::Sum, &x, &dy, 1);
        assert_eq!(y, [11.0, 9.0, 6.0, -1.0]);
        assert_eq!(dx, [1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 4.0]);
        // A NaN is the maximum wherever it is (the first one, if several).
        let x = [1.0, f32::NAN, 2.0, f32::NAN, 9.0, 7.0, 3.0, 3.0, -1.0];
        let (y, dx) = run(&d, PoolKind::Max, &x, &dy, 1);
        assert!(y[0].is_nan());
        assert_eq!(y[1..], [7.0, 3.0, -1.0]);
        assert_eq!(dx, [0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 3.0, 0.0, 4.0]);
    }

    /// Central differences of `Σ r·pool(x)` against the backward pass
    /// (distinct inputs, so max has no ties).
    #[test]
    fn gradients_match_finite_differences() {
        for s in [
            spec(2, 5, 6, 3, (2, 3), (1, 2)),
            PoolSpec {
                pad_top: 1,
                pad_left: 1,
                pad_right: 1,
                ..spec(1, 4, 5, 2, (3, 3), (2, 2))
            },
        ] {
            let d = PoolDims::new(s).unwrap();
            let x: Vec<f32> = (0..d.input_len())
                .map(|i| ((i * 37) % 101) as f32 * 0.1)
                .collect();
            let r = random(d.output_len(), 5);
            for kind in [PoolKind::Max, PoolKind::Sum] {
                let loss = |x: &[f32]| -> f64 {
                    run(&d, kind, x, &r, 1)
                        .0
                        .iter()
                        .zip(&r)
                        .map(|(y, r)| *y as f64 * *r as f64)
                        .sum()
                };
                let dx = run(&d, kind, &x, &r, 2).1;
                for i in 0..x.len() {
                    let (mut xp, mut xm) = (x.clone(), x.clone());
                    xp[i] += 0.01;
                    xm[i] -= 0.01;
                    let fd = (loss(&xp) - loss(&xm)) / 0.02;
                    assert!(
                        (fd - dx[i] as f64).abs() <= 1e-3 * (1.0 + fd.abs()),
                        "{kind:?} {s:?}: dx[{i}] = {}, fd {fd}",
                        dx[i]
                    );
                }
            }
        }
    }

    /// Global pooling is the whole-image window; bad specs name the field.
    #[test]
    fn global_pooling_and_errors() {
        let d = PoolDims::new(spec(2, 3, 4, 2, (3, 4), (3, 4))).unwrap();
        assert_eq!((d.out_h(), d.out_w()), (1, 1));
        let x: Vec<f32> = (0..48).map(|i| i as f32).collect();
        let (y, _) = run(&d, PoolKind::Sum, &x, &[0.0; 4], 1);
        // Channel 0 of image 0: the even numbers 0..22, sum 132.
        assert_eq!(y, [132.0, 144.0, 420.0, 432.0]);
        let field = |s: PoolSpec| PoolDims::new(s).unwrap_err().field;
        let ok = spec(1, 4, 4, 1, (2, 2), (2, 2));
        assert_eq!(field(PoolSpec { pool_w: 0, ..ok }), "pool_w");
        assert_eq!(field(PoolSpec { pad_top: 2, ..ok }), "pad_top");
        assert_eq!(field(PoolSpec { pool_h: 5, ..ok }), "pool_h");
        assert_eq!(
            field(PoolSpec {
                batch: 1 << 30,
                ..ok
            }),
            "input"
        );
    }
}

/// `cargo test --release -p lossgraph-runtime --lib pool::speed -- --ignored
/// --nocapture`: the `cnn` workload's two max poolings at batch 128 on
/// relu-like data, median of 7 rounds, one part.
#[cfg(test)]
mod speed {
    use super::*;
    use crate::pool::tests;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn cnn_pools() {
        for (h, c) in [(26, 32), (11, 64)] {
            let d = PoolDims::new(PoolSpec {
                batch: 128,
                height: h,
                width: h,
                channels: c,
                pool_h: 2,
                pool_w: 2,
                stride_h: 2,
                stride_w: 2,
                pad_top: 0,
                pad_bottom: 0,
                pad_left: 0,
                pad_right: 0,
            })
            .unwrap();
            // Like a relu's output: random, half of it zeros.
            let x: Vec<f32> = tests::random(d.input_len(), 3)
                .iter()
                .map(|v| v.max(0.0))
                .collect();
            let dy = vec![1.0f32; d.output_len()];
            let mut y = vec![0.0f32; d.output_len()];
            let mut dx = vec![0.0f32; d.input_len()];
            let time = |f: &mut dyn FnMut()| {
                f();
                let mut t: Vec<f64> = (0..7)
                    .map(|_| {
                        let s = Instant::now();
                        for _ in 0..20 {
                            f();
                        }
                        s.elapsed().as_secs_f64() / 20.0
                    })
                    .collect();
                t.sort_by(f64::total_cmp);
                t[3]
            };
            let avx512 = std::arch::is_x86_feature_detected!("avx512f");
            for wide in [false, true] {
                if wide && !avx512 {
                    continue;
                }
                let fwd_of = |kind, y: &mut [f32]| {
                    if wide {
                        // SAFETY: AVX-512F was detected above.
                        unsafe { forward_rows_avx512(&d, kind, &x, d.forward_rows(0, 1), y) }
                    } else {
                        forward_rows(&d, kind, &x, d.forward_rows(0, 1), y)
                    }
                };
                let fwd = time(&mut || fwd_of(PoolKind::Max, &mut y));
                let bwd = time(&mut || {
                    let rows = d.backward_rows(0, 1);
                    if wide {
                        // SAFETY: AVX-512F was detected above.
                        unsafe { backward_rows_avx512(&d, PoolKind::Max, &x, &dy, rows, &mut dx) }
                    } else {
                        backward_rows(&d, PoolKind::Max, &x, &dy, rows, &mut dx)
                    }
                });
                let sum = time(&mut || fwd_of(PoolKind::Sum, &mut y));
                println!(
                    "{} max pool 2x2 of 128x{h}x{h}x{c}: forward {:.0} us, backward {:.0} us; sum forward {:.0} us",
                    if wide { "avx512  " } else { "portable" },
                    fwd * 1e6,
                    bwd * 1e6,
                    sum * 1e6
                );
            }
        }
    }
}
