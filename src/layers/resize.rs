//! Spatial reshaping layers, channels last: `ZeroPadding1D/2D`,
//! `Cropping1D/2D` and `UpSampling1D/2D` (nearest neighbour).

use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// What a [`Resize`] layer does to each spatial axis.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// Zero cells `(before, after)` per axis.
    Pad(Vec<(usize, usize)>),
    /// Cells removed `(before, after)` per axis.
    Crop(Vec<(usize, usize)>),
    /// Each cell repeated `size` times per axis.
    Repeat(Vec<usize>),
}

/// A padding, cropping or nearest-upsampling layer over 1 or 2 spatial axes.
#[derive(Clone, Debug)]
pub struct Resize {
    rank: usize,
    mode: Mode,
    name: Option<String>,
}

/// Keras `ZeroPadding1D`: `(before, after)` zeros along T.
pub struct ZeroPadding1D;
/// Keras `ZeroPadding2D`: `((top, bottom), (left, right))` zeros.
pub struct ZeroPadding2D;
/// Keras `Cropping1D`: `(before, after)` cells removed along T.
pub struct Cropping1D;
/// Keras `Cropping2D`: `((top, bottom), (left, right))` cells removed.
pub struct Cropping2D;
/// Keras `UpSampling1D`: each step repeated `size` times.
pub struct UpSampling1D;
/// Keras `UpSampling2D` (`interpolation="nearest"`): each cell repeated `(sh, sw)` times.
pub struct UpSampling2D;

impl ZeroPadding1D {
    /// Pads `before`/`after` steps.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(padding: (usize, usize)) -> Resize {
        Resize::with(1, Mode::Pad(vec![padding]))
    }
}

impl ZeroPadding2D {
    /// Pads `((top, bottom), (left, right))`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(padding: [(usize, usize); 2]) -> Resize {
        Resize::with(2, Mode::Pad(padding.to_vec()))
    }
}

impl Cropping1D {
    /// Crops `before`/`after` steps.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(cropping: (usize, usize)) -> Resize {
        Resize::with(1, Mode::Crop(vec![cropping]))
    }
}

impl Cropping2D {
    /// Crops `((top, bottom), (left, right))`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(cropping: [(usize, usize); 2]) -> Resize {
        Resize::with(2, Mode::Crop(cropping.to_vec()))
    }
}

impl UpSampling1D {
    /// Repeats each step `size` times.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(size: usize) -> Resize {
        Resize::with(1, Mode::Repeat(vec![size]))
    }
}

impl UpSampling2D {
    /// Repeats each cell `size[0]` times down and `size[1]` times across.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(size: [usize; 2]) -> Resize {
        Resize::with(2, Mode::Repeat(size.to_vec()))
    }
}

impl Resize {
    fn with(rank: usize, mode: Mode) -> Resize {
        Resize {
            rank,
            mode,
            name: None,
        }
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Resize {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Resize {
    fn class_name(&self) -> String {
        let kind = match self.mode {
            Mode::Pad(_) => "ZeroPadding",
            Mode::Crop(_) => "Cropping",
            Mode::Repeat(_) => "UpSampling",
        };
        format!("{kind}{}D", self.rank)
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let class = self.class_name();
        if input_shape.len() != self.rank + 1 {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "{class} needs per-sample inputs (spatial×{}, channels), got {input_shape:?}",
                    self.rank
                ),
            ));
        }
        match &self.mode {
            Mode::Crop(c) => {
                for (i, &(a, b)) in c.iter().enumerate() {
                    if a.saturating_add(b) >= input_shape[i] {
                        return Err(Error::layer(
                            ctx.path(),
                            format!(
                                "{class} crops ({a}, {b}) from spatial axis {i} of extent {}: nothing would remain",
                                input_shape[i]
                            ),
                        ));
                    }
                }
            }
            Mode::Repeat(s) => {
                if s.contains(&0) {
                    return Err(Error::layer(
                        ctx.path(),
                        format!("{class} size {s:?} must be ≥ 1"),
                    ));
                }
            }
            Mode::Pad(_) => {}
        }
        Ok(())
    }

    fn call(&self, _ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let r = self.rank;
        Ok(match &self.mode {
            Mode::Pad(p) => {
                let mut lo = vec![0; r + 2];
                let mut hi = vec![0; r + 2];
                for (i, &(a, b)) in p.iter().enumerate() {
                    lo[1 + i] = a;
                    hi[1 + i] = b;
                }
                inputs.pad(&lo, &hi, 0.0)
            }
            Mode::Crop(c) => {
                let mut y = inputs.clone();
                for (i, &(a, b)) in c.iter().enumerate() {
                    let n = y.shape()[1 + i];
                    y = y.slice(1 + i as isize, a, n - b);
                }
                y
            }
            Mode::Repeat(s) => {
                // [N, S.., C] → [N, (S, 1).., C] → broadcast [N, (S, s).., C] → [N, (S·s).., C].
                let shape = inputs.shape();
                let (mut split, mut wide, mut out) =
                    (vec![shape[0]], vec![shape[0]], vec![shape[0]]);
                for i in 0..r {
                    split.extend([shape[1 + i], 1]);
                    wide.extend([shape[1 + i], s[i]]);
                    // Saturates: the broadcast before refuses an oversized result.
                    out.push(shape[1 + i].saturating_mul(s[i]));
                }
                let c = shape[r + 1];
                split.push(c);
                wide.push(c);
                out.push(c);
                inputs.reshape(&split).broadcast_to(&wide).reshape(&out)
            }
        })
    }

    fn describe(&self) -> String {
        match &self.mode {
            Mode::Pad(p) => format!("padding={p:?}"),
            Mode::Crop(c) => format!("cropping={c:?}"),
            Mode::Repeat(s) => format!("size={s:?}"),
        }
    }
}
