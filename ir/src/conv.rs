//! Convolution and pooling, composed from primitives (see
//! `docs/conv.md` for the design).
//!
//! Every function takes a channels-last `[N, S₁..S_r, C]` image (`r = 1`
//! for sequences, `r = 2` for images) and explicit per-axis padding
//! (`lo`, `hi`; [`keras_padding`] computes Keras's `valid`/`same` split).
//! Padding is a `concat` with constant blocks ([`Tensor::pad`]), windows are
//! [`Op::Unfold`](crate::Op::Unfold), and:
//! - [`conv`] is unfold + one matmul (im2col): `[N·ΠO, ΠK·C] × [ΠK·C, F]`,
//!   or a batched matmul over groups;
//! - [`max_pool`] picks the first maximum of each window (in window order)
//!   with `argmax`/`one_hot`/`select`, so its gradient goes to that element
//!   only, as Keras's `MaxPooling` does; padding cells are −∞;
//! - [`avg_pool`] divides each window sum by the number of real (non-padding)
//!   cells in it.
//!
//! Gradients follow from the primitives' VJPs (the unfold VJP is `fold`).

use crate::builder::Tensor;

/// Keras's padding modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// No padding: whole windows only.
    Valid,
    /// `out = ceil(n / s)`, total padding `max((out-1)·s + span - n, 0)`,
    /// `total/2` before and the rest after (the extra cell at the end).
    Same,
}

/// Output extent and `(lo, hi)` padding of one spatial axis of extent `n`
/// for a window of `k` cells with `dilation` and `stride` (all ≥ 1).
/// Errors when a `valid` window does not fit or an extent overflows.
pub fn keras_padding(
    n: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
) -> Result<(usize, usize, usize), String> {
    if k == 0 || stride == 0 || dilation == 0 {
        return Err(format!(
            "window {k}, stride {stride} and dilation {dilation} must be ≥ 1"
        ));
    }
    let span = (k - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(|| format!("window {k} with dilation {dilation} overflows"))?;
    match padding {
        Padding::Valid => {
            if span > n {
                return Err(format!(
                    "window span {span} (size {k}, dilation {dilation}) is larger than the input extent {n} with 'valid' padding"
                ));
            }
            Ok(((n - span) / stride + 1, 0, 0))
        }
        Padding::Same => {
            if n == 0 {
                return Err("an empty spatial axis".into());
            }
            let out = n.div_ceil(stride);
            let need = (out - 1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(span))
                .ok_or_else(|| format!("padding of extent {n} overflows"))?;
            let total = need.saturating_sub(n);
            Ok((out, total / 2, total - total / 2))
        }
    }
}

/// Pads the spatial axes of `[N, S.., C]` (not N or C) with `value`.
fn pad_spatial(x: &Tensor, lo: &[usize], hi: &[usize], value: f32) -> Tensor {
    let wrap = |p: &[usize]| {
        let mut v = Vec::with_capacity(p.len() + 2);
        v.push(0);
        v.extend_from_slice(p);
        v.push(0);
        v
    };
    x.pad(&wrap(lo), &wrap(hi), value)
}

/// The product of `dims` (what it counts named in the error) when it fits
/// in `usize`.
fn product(what: &str, dims: &[usize]) -> Result<usize, String> {
    crate::types::checked_numel(dims)
        .ok_or_else(|| format!("{what} {dims:?}: the product overflows"))
}

/// The error the builder recorded while this function added its ops, if
/// any: an op that fails gives a placeholder whose shape no geometry may be
/// computed from.
fn built(what: &str, x: &Tensor) -> Result<(), String> {
    x.builder().check().map_err(|e| format!("{what}: {e}"))
}

fn check_geometry(
    what: &str,
    x: &Tensor,
    window: &[usize],
    strides: &[usize],
    lo: &[usize],
    hi: &[usize],
) -> Result<usize, String> {
    let r = window.len();
    if r == 0 || x.rank() != r + 2 || strides.len() != r || lo.len() != r || hi.len() != r {
        return Err(format!(
            "{what}: a {r}-d window {window:?} (strides {strides:?}, pads {lo:?}/{hi:?}) needs a rank-{} [N, spatial.., C] input, got {}",
            r + 2,
            x.ty()
        ));
    }
    Ok(r)
}

/// Cross-correlation (no kernel flip) of `x: [N, S.., C]` with
/// `kernel: [K.., C/groups, F]`, after zero padding `lo`/`hi`:
/// `y[n, o.., f] = Σ_{k.., c} xpad[n, (o·s + k·d).., g·C/G + c] · kernel[k.., c, f]`
/// with `g = f / (F/G)`. Result `[N, O.., F]`.
pub fn conv(
    x: &Tensor,
    kernel: &Tensor,
    strides: &[usize],
    dilation: &[usize],
    lo: &[usize],
    hi: &[usize],
    groups: usize,
) -> Result<Tensor, String> {
    if kernel.rank() != x.rank() || kernel.rank() < 3 {
        return Err(format!(
            "conv: kernel {} and input {} need ranks r+2 (r ≥ 1 spatial axes)",
            kernel.ty(),
            x.ty()
        ));
    }
    let ks = kernel.shape();
    let r = check_geometry("conv", x, &ks[..ks.len() - 2], strides, lo, hi)?;
    let c = x.shape()[r + 1];
    if kernel.rank() != r + 2
        || groups == 0
        || !c.is_multiple_of(groups)
        || ks[r].checked_mul(groups) != Some(c)
        || !ks[r + 1].is_multiple_of(groups)
    {
        return Err(format!(
            "conv: kernel {} does not fit input {} with {groups} group(s) (want [k.., {}/{groups}, filters], filters divisible by groups)",
            kernel.ty(),
            x.ty(),
            c
        ));
    }
    if dilation.len() != r {
        return Err(format!("conv: dilation {dilation:?} needs {r} entries"));
    }
    let window = &ks[..r];
    let f = ks[r + 1];
    let p = pad_spatial(x, lo, hi, 0.0).unfold(window, strides, dilation);
    built("conv", x)?;
    let n = x.shape()[0];
    let out: Vec<usize> = p.shape()[1..=r].to_vec();
    let mut yshape = vec![n];
    yshape.extend_from_slice(&out);
    yshape.push(f);
    let rows = product("conv: output rows (batch × output extents)", &yshape[..=r])?;
    let taps = product("conv: window", window)?;
    let (cg, fg) = (c / groups, f / groups);
    let tc = product("conv: window × input channels per group", &[taps, cg])?;
    let y = if groups == 1 {
        p.reshape(&[rows, tc])
            .matmul(&kernel.reshape(&[tc, f]))
            .reshape(&yshape)
    } else {
        let pg = p
            .reshape(&[rows, taps, groups, cg])
            .transpose(&[2, 0, 1, 3])
            .reshape(&[groups, rows, tc]);
        let kg = kernel
            .reshape(&[taps, cg, groups, fg])
            .transpose(&[2, 0, 1, 3])
            .reshape(&[groups, tc, fg]);
        pg.matmul(&kg).transpose(&[1, 0, 2]).reshape(&yshape)
    };
    built("conv", x)?;
    Ok(y)
}

/// Max over windows of `window` cells with `strides`, after −∞ padding
/// `lo`/`hi`. Each window's value and gradient come from its first maximum in
/// window order (row-major over the window). Result `[N, O.., C]`.
pub fn max_pool(
    x: &Tensor,
    window: &[usize],
    strides: &[usize],
    lo: &[usize],
    hi: &[usize],
) -> Result<Tensor, String> {
    let r = check_geometry("max_pool", x, window, strides, lo, hi)?;
    let ones = vec![1; r];
    let p = pad_spatial(x, lo, hi, f32::NEG_INFINITY).unfold(window, strides, &ones);
    built("max_pool", x)?;
    // [N, O.., K.., C] → [N, O.., C, ΠK]: the window on the last axis.
    let mut perm: Vec<usize> = (0..=r).collect();
    perm.push(2 * r + 1);
    perm.extend(r + 1..=2 * r);
    let mut flat: Vec<usize> = p.shape()[..=r].to_vec();
    flat.push(x.shape()[r + 1]);
    let taps = product("max_pool: window", window)?;
    flat.push(taps);
    let w = p.transpose(&perm).reshape(&flat);
    let first = w.argmax(-1).one_hot(taps);
    let y = first.select(&w, 0.0).sum(&[-1], false);
    built("max_pool", x)?;
    Ok(y)
}

/// Mean over windows of `window` cells with `strides` after zero padding
/// `lo`/`hi`, each window divided by its number of real (non-padding) cells.
/// Result `[N, O.., C]`.
pub fn avg_pool(
    x: &Tensor,
    window: &[usize],
    strides: &[usize],
    lo: &[usize],
    hi: &[usize],
) -> Result<Tensor, String> {
    let r = check_geometry("avg_pool", x, window, strides, lo, hi)?;
    let ones = vec![1; r];
    let p = pad_spatial(x, lo, hi, 0.0).unfold(window, strides, &ones);
    built("avg_pool", x)?;
    let axes: Vec<isize> = (r + 1..=2 * r).map(|a| a as isize).collect();
    let sums = p.sum(&axes, false);
    let out: Vec<usize> = p.shape()[1..=r].to_vec();
    // Real cells per window: the product over the axes of the real cells
    // each axis's window covers, counted in the graph (so nothing of the
    // output's size is built here) by the same pooling of a padded
    // `[1, .., S_i, .., 1]` of ones along axis i alone; constant folding
    // turns small counts into a constant.
    let b = x.builder();
    let mut counts: Option<Tensor> = None;
    for i in 0..r {
        let (n, k, s) = (x.shape()[1 + i], window[i], strides[i]);
        // Windows move right over one run of real cells, so only the first
        // or the last can lie wholly in the padding.
        let real = |o: usize| {
            let start = o.saturating_mul(s);
            let stop = start.saturating_add(k).min(lo[i].saturating_add(n));
            stop.saturating_sub(start.max(lo[i]))
        };
        let last = out[i].saturating_sub(1);
        if out[i] == 0 || real(0) == 0 || real(last) == 0 {
            return Err(format!(
                "avg_pool: a window {window:?} at strides {strides:?} of {} lies wholly in the padding {lo:?}/{hi:?} on spatial axis {i}",
                x.ty()
            ));
        }
        if k.min(n) > 1 << 24 {
            return Err(format!(
                "avg_pool: a window of {k} cells over extent {n} on spatial axis {i} may hold more than 2^24 real cells, beyond f32's exact counts"
            ));
        }
        let (mut shape, mut w, mut st) = (vec![1; r + 2], ones.clone(), ones.clone());
        let (mut l, mut h) = (vec![0; r], vec![0; r]);
        (shape[1 + i], w[i], st[i], l[i], h[i]) = (n, k, s, lo[i], hi[i]);
        let c = pad_spatial(&b.full(1.0, &shape), &l, &h, 0.0)
            .unfold(&w, &st, &ones)
            .sum(&axes, false);
        counts = Some(match counts {
            None => c,
            Some(t) => &t * &c,
        });
    }
    let y = match counts {
        Some(c) => &sums / &c,
        None => sums,
    };
    built("avg_pool", x)?;
    Ok(y)
}

/// Transposed convolution (the gradient of [`conv`] with respect to its
/// input): `x: [N, S.., C]`, `kernel: [K.., F, C]` (Keras's
/// `Conv*Transpose` layout). Every input cell scatters
/// `x[n, s.., c] · kernel[k.., f, c]` to `full[n, (s·stride + k·dilation).., f]`
/// (`fold` of the products, extent `(S-1)·stride + span`); then `crop[i]`
/// cells are dropped at the start of axis `i` and `end[i]` cells added
/// (zeros, when positive) or dropped (when negative) at its end.
pub fn conv_transpose(
    x: &Tensor,
    kernel: &Tensor,
    strides: &[usize],
    dilation: &[usize],
    crop: &[usize],
    end: &[isize],
) -> Result<Tensor, String> {
    let r = x.rank().saturating_sub(2);
    let ks = kernel.shape();
    if r == 0
        || kernel.rank() != r + 2
        || ks[r + 1] != x.shape()[r + 1]
        || strides.len() != r
        || dilation.len() != r
        || crop.len() != r
        || end.len() != r
    {
        return Err(format!(
            "conv_transpose: kernel {} ([k.., filters, in]) does not fit input {} with strides {strides:?}, dilation {dilation:?}, crop {crop:?}, end {end:?}",
            kernel.ty(),
            x.ty()
        ));
    }
    let window = &ks[..r];
    let f = ks[r];
    let c = x.shape()[r + 1];
    let n = x.shape()[0];
    let spatial: Vec<usize> = x.shape()[1..=r].to_vec();
    let taps = product("conv_transpose: window", window)?;
    let rows = product(
        "conv_transpose: input rows (batch × extents)",
        &x.shape()[..=r],
    )?;
    let tf = product("conv_transpose: window × filters", &[taps, f])?;
    let mut full = vec![n];
    for i in 0..r {
        let extent = transpose_extent(spatial[i], window[i], strides[i], dilation[i])
            .map_err(|m| format!("conv_transpose on spatial axis {i}: {m}"))?;
        full.push(extent);
    }
    full.push(f);
    // [K.., F, C] → [C, K.., F] → [C, ΠK·F].
    let mut perm = vec![r + 1];
    perm.extend(0..=r);
    let kt = kernel.transpose(&perm).reshape(&[c, tf]);
    let mut cols_shape = vec![n];
    cols_shape.extend_from_slice(&spatial);
    cols_shape.extend_from_slice(window);
    cols_shape.push(f);
    let cols = x.reshape(&[rows, c]).matmul(&kt).reshape(&cols_shape);
    let mut y = cols.fold(&full, window, strides, dilation);
    built("conv_transpose", x)?;
    for i in 0..r {
        let len = full[1 + i];
        let keep_end = if end[i] < 0 {
            len.checked_sub(end[i].unsigned_abs())
        } else {
            Some(len)
        };
        let Some(stop) = keep_end.filter(|&s| s > crop[i]) else {
            return Err(format!(
                "conv_transpose: cropping {} and {} leaves nothing of extent {len}",
                crop[i], end[i]
            ));
        };
        if crop[i] > 0 || stop < len {
            y = y.slice(1 + i as isize, crop[i], stop);
        }
        if end[i] > 0 {
            let mut hi = vec![0; r + 2];
            hi[1 + i] = end[i].unsigned_abs();
            y = y.pad(&vec![0; r + 2], &hi, 0.0);
        }
    }
    built("conv_transpose", x)?;
    Ok(y)
}

/// The extent `(n-1)·stride + (k-1)·dilation + 1` of one axis of a
/// transposed convolution's full output (before cropping), for an input
/// extent `n` and a window of `k` cells; an error when `n` or `k` is 0 or
/// the extent overflows.
pub fn transpose_extent(
    n: usize,
    k: usize,
    stride: usize,
    dilation: usize,
) -> Result<usize, String> {
    n.checked_sub(1)
        .zip(k.checked_sub(1))
        .and_then(|(n1, k1)| {
            n1.checked_mul(stride)?
                .checked_add(k1.checked_mul(dilation)?)?
                .checked_add(1)
        })
        .ok_or_else(|| {
            format!(
                "input extent {n}, kernel size {k}, stride {stride} and dilation {dilation} give no output extent (zero or overflowing)"
            )
        })
}

/// Keras's `Conv*Transpose` geometry for one axis: `(crop, end)` for
/// [`conv_transpose`], from JAX's padding of the stride-dilated input
/// (`keras.src.backend.common.backend_utils`,
/// `_convert_conv_transpose_padding_args_from_keras_to_jax`): `valid` pads
/// `span-1` before and `span-1 + output_padding` after (`output_padding`
/// defaulting to `max(span, s) - span`); `same` pads `s + span - 2` in all
/// (or `span + span%2 - 2 + output_padding` when it is given),
/// `min(⌈·/2⌉, span-1)` before. Without `output_padding` the output extent
/// is `n·s + max(span - s, 0)` (`valid`) or `n·s` (`same`).
pub fn keras_transpose_geometry(
    k: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
    output_padding: Option<usize>,
) -> Result<(usize, isize), String> {
    let overflow = || {
        format!(
            "kernel size {k}, stride {stride}, dilation {dilation} and output_padding {output_padding:?} overflow the transposed geometry"
        )
    };
    if k == 0 || stride == 0 || dilation == 0 {
        return Err(format!(
            "kernel size {k}, stride {stride} and dilation {dilation} must be ≥ 1"
        ));
    }
    let span = (k - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(overflow)?;
    let (left, right) = match padding {
        Padding::Valid => {
            let extra = output_padding.unwrap_or(span.max(stride) - span);
            (
                span - 1,
                (span - 1).checked_add(extra).ok_or_else(overflow)?,
            )
        }
        Padding::Same => {
            // Both sums are at least 2 (stride, span ≥ 1; span + span % 2 ≥ 2).
            let len = match output_padding {
                None => stride.checked_add(span),
                Some(p) => span.checked_add(span % 2).and_then(|v| v.checked_add(p)),
            }
            .ok_or_else(overflow)?
                - 2;
            let left = (len / 2 + len % 2).min(span - 1);
            (left, len - left)
        }
    };
    let end = isize::try_from(right)
        .ok()
        .zip(isize::try_from(span - 1).ok())
        .map(|(r, s)| r - s)
        .ok_or_else(overflow)?;
    Ok((span - 1 - left, end))
}
