//! `MaxPooling1D/2D` and `AveragePooling1D/2D`, channels last.

use super::conv::{check_tuple, geometry, padding_name, parse_padding};
use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::conv::{self, Padding};
use lossgraph_ir::Tensor;

/// A window pooling layer over `rank` spatial axes. Max pooling pads with
/// −∞ and takes each window's first maximum (its gradient goes there);
/// average pooling divides each window by its number of real cells.
#[derive(Clone, Debug)]
pub struct Pooling {
    rank: usize,
    max: bool,
    pool_size: Vec<usize>,
    /// `None`: equal to `pool_size` (Keras's default).
    strides: Option<Vec<usize>>,
    padding: Padding,
    name: Option<String>,
    config_error: Option<String>,
    /// Set by `build`: `(lo, hi)` pads per spatial axis.
    pads: (Vec<usize>, Vec<usize>),
}

/// Keras `MaxPooling1D`.
pub struct MaxPooling1D;
/// Keras `MaxPooling2D`.
pub struct MaxPooling2D;
/// Keras `AveragePooling1D`.
pub struct AveragePooling1D;
/// Keras `AveragePooling2D`.
pub struct AveragePooling2D;

impl MaxPooling1D {
    /// Windows of `pool_size`, strides `pool_size`, `valid`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(pool_size: usize) -> Pooling {
        Pooling::with(1, true, &[pool_size])
    }
}

impl MaxPooling2D {
    /// Windows of `pool_size`, strides `pool_size`, `valid`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(pool_size: [usize; 2]) -> Pooling {
        Pooling::with(2, true, &pool_size)
    }
}

impl AveragePooling1D {
    /// Windows of `pool_size`, strides `pool_size`, `valid`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(pool_size: usize) -> Pooling {
        Pooling::with(1, false, &[pool_size])
    }
}

impl AveragePooling2D {
    /// Windows of `pool_size`, strides `pool_size`, `valid`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(pool_size: [usize; 2]) -> Pooling {
        Pooling::with(2, false, &pool_size)
    }
}

impl Pooling {
    fn with(rank: usize, max: bool, pool_size: &[usize]) -> Pooling {
        Pooling {
            rank,
            max,
            pool_size: pool_size.to_vec(),
            strides: None,
            padding: Padding::Valid,
            name: None,
            config_error: None,
            pads: (Vec::new(), Vec::new()),
        }
    }

    /// Strides, one per spatial axis (default: the pool size).
    pub fn strides(mut self, s: &[usize]) -> Pooling {
        self.strides = Some(s.to_vec());
        self
    }

    /// `"valid"` or `"same"`.
    pub fn padding(mut self, p: &str) -> Pooling {
        match parse_padding(p) {
            Ok(p) => self.padding = p,
            Err(m) => self.config_error = Some(m),
        }
        self
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Pooling {
        self.name = Some(name.into());
        self
    }

    fn strides_or_pool(&self) -> &[usize] {
        self.strides.as_deref().unwrap_or(&self.pool_size)
    }
}

impl Layer for Pooling {
    fn class_name(&self) -> String {
        let kind = if self.max { "Max" } else { "Average" };
        format!("{kind}Pooling{}D", self.rank)
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let class = self.class_name();
        let path = ctx.path().to_string();
        super::config_check(&path, &self.config_error)?;
        if input_shape.len() != self.rank + 1 {
            return Err(Error::layer(
                &path,
                format!(
                    "{class} needs per-sample inputs (spatial×{}, channels), got {input_shape:?}",
                    self.rank
                ),
            ));
        }
        check_tuple(&path, &class, "pool_size", &self.pool_size, self.rank)?;
        let strides = self.strides_or_pool().to_vec();
        check_tuple(&path, &class, "strides", &strides, self.rank)?;
        let ones = vec![1; self.rank];
        let (_, lo, hi) = geometry(
            &path,
            &class,
            &input_shape[..self.rank],
            &self.pool_size,
            &strides,
            &ones,
            self.padding,
        )?;
        self.pads = (lo, hi);
        Ok(())
    }

    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let (lo, hi) = &self.pads;
        let st = self.strides_or_pool();
        let y = if self.max {
            conv::max_pool(inputs, &self.pool_size, st, lo, hi)
        } else {
            conv::avg_pool(inputs, &self.pool_size, st, lo, hi)
        };
        y.map_err(|m| Error::layer(ctx.path(), m))
    }

    fn describe(&self) -> String {
        format!(
            "pool_size={:?}, strides={:?}, padding={}",
            self.pool_size,
            self.strides_or_pool(),
            padding_name(self.padding)
        )
    }
}
