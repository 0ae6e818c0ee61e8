//! `Conv1D` and `Conv2D`: `activation(conv(x, kernel) + bias)`, channels last.

use super::{bias_activation, config_check};
use crate::activations::Activation;
use crate::error::{Error, Result};
use crate::initializers::Init;
use crate::layer::{BuildCtx, CallCtx, Layer};
use crate::regularizers::Regularizer;
use lossgraph_ir::conv::{self, keras_padding, Padding};
use lossgraph_ir::Tensor;

/// Parses Keras's `padding` string.
pub(crate) fn parse_padding(s: &str) -> std::result::Result<Padding, String> {
    match s {
        "valid" => Ok(Padding::Valid),
        "same" => Ok(Padding::Same),
        other => Err(format!(
            "padding must be 'valid' or 'same', got '{other}' ('causal' is not supported)"
        )),
    }
}

/// Keras's name of a padding mode.
pub(crate) fn padding_name(p: Padding) -> &'static str {
    match p {
        Padding::Valid => "valid",
        Padding::Same => "same",
    }
}

/// Output extents and `(lo, hi)` pads of every spatial axis of a per-sample
/// `[S.., C]` shape, as an error of layer `path` when a window does not fit.
pub(crate) fn geometry(
    path: &str,
    class: &str,
    spatial: &[usize],
    window: &[usize],
    strides: &[usize],
    dilation: &[usize],
    padding: Padding,
) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    let (mut out, mut lo, mut hi) = (vec![], vec![], vec![]);
    for i in 0..spatial.len() {
        let (o, l, h) = keras_padding(spatial[i], window[i], strides[i], dilation[i], padding)
            .map_err(|m| Error::layer(path, format!("{class} on spatial axis {i}: {m}")))?;
        out.push(o);
        lo.push(l);
        hi.push(h);
    }
    Ok((out, lo, hi))
}

/// Checks that `v` has one entry ≥ 1 per spatial axis.
pub(crate) fn check_tuple(
    path: &str,
    class: &str,
    key: &str,
    v: &[usize],
    rank: usize,
) -> Result<()> {
    if v.len() != rank || v.contains(&0) {
        return Err(Error::layer(
            path,
            format!("{class} {key} {v:?} needs {rank} entries ≥ 1"),
        ));
    }
    Ok(())
}

/// A convolution layer over `rank` spatial axes (Keras `Conv1D`/`Conv2D`):
/// kernel `(k.., in/groups, filters)`, bias `(filters,)`, input
/// `(N, S.., C)`, output `(N, O.., filters)`. A cross-correlation (no
/// kernel flip); `same` padding puts the odd cell at the end.
#[derive(Clone, Debug)]
pub struct Conv {
    rank: usize,
    filters: usize,
    kernel_size: Vec<usize>,
    strides: Vec<usize>,
    padding: Padding,
    dilation_rate: Vec<usize>,
    groups: usize,
    activation: Activation,
    use_bias: bool,
    kernel_initializer: Init,
    bias_initializer: Init,
    kernel_regularizer: Option<Regularizer>,
    bias_regularizer: Option<Regularizer>,
    activity_regularizer: Option<Regularizer>,
    trainable: bool,
    name: Option<String>,
    config_error: Option<String>,
    /// Set by `build`: `(lo, hi)` pads per spatial axis.
    pads: (Vec<usize>, Vec<usize>),
}

/// Keras `Conv1D`: sequences `(N, T, C)`.
pub struct Conv1D;

impl Conv1D {
    /// `filters` output channels, a window of `kernel_size`; stride 1, `valid`, linear.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(filters: usize, kernel_size: usize) -> Conv {
        Conv::with_rank(1, filters, &[kernel_size])
    }
}

/// Keras `Conv2D`: images `(N, H, W, C)`.
pub struct Conv2D;

impl Conv2D {
    /// `filters` output channels, a `kh × kw` window; stride 1, `valid`, linear.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(filters: usize, kernel_size: [usize; 2]) -> Conv {
        Conv::with_rank(2, filters, &kernel_size)
    }
}

impl Conv {
    fn with_rank(rank: usize, filters: usize, kernel_size: &[usize]) -> Conv {
        Conv {
            rank,
            filters,
            kernel_size: kernel_size.to_vec(),
            strides: vec![1; rank],
            padding: Padding::Valid,
            dilation_rate: vec![1; rank],
            groups: 1,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Init::GlorotUniform,
            bias_initializer: Init::Zeros,
            kernel_regularizer: None,
            bias_regularizer: None,
            activity_regularizer: None,
            trainable: true,
            name: None,
            config_error: None,
            pads: (Vec::new(), Vec::new()),
        }
    }

    /// Channel groups (input channels and filters must both divide).
    pub fn groups(mut self, g: usize) -> Conv {
        self.groups = g;
        self
    }
}

layer_setters!(Conv: output, name, kernel, trainable, window);

impl Layer for Conv {
    fn class_name(&self) -> String {
        format!("Conv{}D", self.rank)
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let class = self.class_name();
        let path = ctx.path().to_string();
        config_check(&path, &self.config_error)?;
        if input_shape.len() != self.rank + 1 {
            return Err(Error::layer(
                &path,
                format!(
                    "{class} needs per-sample inputs (spatial×{}, channels), got {input_shape:?}",
                    self.rank
                ),
            ));
        }
        for (key, v) in [
            ("kernel_size", &self.kernel_size),
            ("strides", &self.strides),
            ("dilation_rate", &self.dilation_rate),
        ] {
            check_tuple(&path, &class, key, v, self.rank)?;
        }
        let c = input_shape[self.rank];
        if self.filters == 0
            || self.groups == 0
            || !c.is_multiple_of(self.groups)
            || !self.filters.is_multiple_of(self.groups)
        {
            return Err(Error::layer(
                &path,
                format!(
                    "{class} needs filters > 0 and groups ({}) dividing both the input channels ({c}) and filters ({})",
                    self.groups, self.filters
                ),
            ));
        }
        let (_, lo, hi) = geometry(
            &path,
            &class,
            &input_shape[..self.rank],
            &self.kernel_size,
            &self.strides,
            &self.dilation_rate,
            self.padding,
        )?;
        self.pads = (lo, hi);
        let mut kshape = self.kernel_size.clone();
        kshape.push(c / self.groups);
        kshape.push(self.filters);
        ctx.add_weight_with(
            "kernel",
            &kshape,
            self.kernel_initializer.clone(),
            self.trainable,
            self.kernel_regularizer.clone(),
        )?;
        if self.use_bias {
            ctx.add_weight_with(
                "bias",
                &[self.filters],
                self.bias_initializer.clone(),
                self.trainable,
                self.bias_regularizer.clone(),
            )?;
        }
        Ok(())
    }

    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let y = conv::conv(
            inputs,
            ctx.weight("kernel"),
            &self.strides,
            &self.dilation_rate,
            &self.pads.0,
            &self.pads.1,
            self.groups,
        )
        .map_err(|m| Error::layer(ctx.path(), m))?;
        Ok(bias_activation(ctx, y, self.use_bias, &self.activation))
    }

    fn activity_regularizer(&self) -> Option<&Regularizer> {
        self.activity_regularizer.as_ref()
    }

    fn describe(&self) -> String {
        format!(
            "filters={}, kernel_size={:?}, strides={:?}, padding={}, activation={}",
            self.filters,
            self.kernel_size,
            self.strides,
            padding_name(self.padding),
            self.activation.name()
        )
    }
}
