//! `Conv1DTranspose` and `Conv2DTranspose`: the transpose (input gradient)
//! of a convolution, kernel `(k.., filters, in)`, channels last.

use super::conv::{check_tuple, padding_name};
use super::{bias_activation, config_check};
use crate::activations::Activation;
use crate::error::{Error, Result};
use crate::initializers::Init;
use crate::layer::{BuildCtx, CallCtx, Layer};
use crate::regularizers::Regularizer;
use lossgraph_ir::conv::{self, keras_transpose_geometry, transpose_extent, Padding};
use lossgraph_ir::Tensor;

/// A transposed convolution over `rank` spatial axes: output extent
/// `n·s + max(span - s, 0)` (`valid`) or `n·s` (`same`) without
/// `output_padding`; with it, `(n-1)·s + span + output_padding` (`valid`) or
/// `(n-1)·s + span % 2 + output_padding` (`same`), as Keras on JAX.
#[derive(Clone, Debug)]
pub struct ConvTranspose {
    rank: usize,
    filters: usize,
    kernel_size: Vec<usize>,
    strides: Vec<usize>,
    padding: Padding,
    output_padding: Option<Vec<usize>>,
    dilation_rate: Vec<usize>,
    activation: Activation,
    use_bias: bool,
    kernel_initializer: Init,
    bias_initializer: Init,
    kernel_regularizer: Option<Regularizer>,
    bias_regularizer: Option<Regularizer>,
    activity_regularizer: Option<Regularizer>,
    name: Option<String>,
    config_error: Option<String>,
    /// Set by `build`: per-axis crop at the start and adjustment at the end.
    geometry: (Vec<usize>, Vec<isize>),
}

/// Keras `Conv1DTranspose`.
pub struct Conv1DTranspose;
/// Keras `Conv2DTranspose`.
pub struct Conv2DTranspose;

impl Conv1DTranspose {
    /// `filters` output channels, a window of `kernel_size`; stride 1, `valid`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(filters: usize, kernel_size: usize) -> ConvTranspose {
        ConvTranspose::with(1, filters, &[kernel_size])
    }
}

impl Conv2DTranspose {
    /// `filters` output channels, a `kh × kw` window; stride 1, `valid`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(filters: usize, kernel_size: [usize; 2]) -> ConvTranspose {
        ConvTranspose::with(2, filters, &kernel_size)
    }
}

impl ConvTranspose {
    fn with(rank: usize, filters: usize, kernel_size: &[usize]) -> ConvTranspose {
        ConvTranspose {
            rank,
            filters,
            kernel_size: kernel_size.to_vec(),
            strides: vec![1; rank],
            padding: Padding::Valid,
            output_padding: None,
            dilation_rate: vec![1; rank],
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Init::GlorotUniform,
            bias_initializer: Init::Zeros,
            kernel_regularizer: None,
            bias_regularizer: None,
            activity_regularizer: None,
            name: None,
            config_error: None,
            geometry: (Vec::new(), Vec::new()),
        }
    }
}

impl ConvTranspose {
    /// Extra cells at the end of each spatial axis (each `< strides`);
    /// `None` (the default) lets the padding mode fix the extent.
    pub fn output_padding(mut self, p: Option<&[usize]>) -> ConvTranspose {
        self.output_padding = p.map(<[usize]>::to_vec);
        self
    }
}

layer_setters!(ConvTranspose: output, name, kernel, window);

impl Layer for ConvTranspose {
    fn class_name(&self) -> String {
        format!("Conv{}DTranspose", self.rank)
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let class = self.class_name();
        let path = ctx.path().to_string();
        config_check(&path, &self.config_error)?;
        if input_shape.len() != self.rank + 1 || input_shape[..self.rank].contains(&0) {
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
        if self.filters == 0 {
            return Err(Error::layer(&path, format!("{class} needs filters > 0")));
        }
        if self.strides.iter().any(|&s| s > 1) && self.dilation_rate.iter().any(|&d| d > 1) {
            return Err(Error::layer(
                &path,
                format!(
                    "{class} strides {:?} > 1 with dilation_rate {:?} > 1 is not supported (as in Keras)",
                    self.strides, self.dilation_rate
                ),
            ));
        }
        if let Some(p) = &self.output_padding {
            if p.len() != self.rank || p.iter().zip(&self.strides).any(|(p, s)| p >= s) {
                return Err(Error::layer(
                    &path,
                    format!(
                        "{class} output_padding {p:?} needs {} entries, each less than its stride in {:?}",
                        self.rank, self.strides
                    ),
                ));
            }
        }
        let (mut crop, mut end) = (Vec::new(), Vec::new());
        for i in 0..self.rank {
            let (k, s, d) = (self.kernel_size[i], self.strides[i], self.dilation_rate[i]);
            let (c, e) = transpose_extent(input_shape[i], k, s, d)
                .and_then(|_| {
                    keras_transpose_geometry(
                        k,
                        s,
                        d,
                        self.padding,
                        self.output_padding.as_ref().map(|p| p[i]),
                    )
                })
                .map_err(|m| {
                Error::layer(
                    &path,
                    format!(
                        "{class} on spatial axis {i} (kernel_size {:?}, strides {:?}, dilation_rate {:?}): {m}",
                        self.kernel_size, self.strides, self.dilation_rate
                    ),
                )
            })?;
            crop.push(c);
            end.push(e);
        }
        self.geometry = (crop, end);
        let mut kshape = self.kernel_size.clone();
        kshape.push(self.filters);
        kshape.push(input_shape[self.rank]);
        ctx.add_weight_with(
            "kernel",
            &kshape,
            self.kernel_initializer.clone(),
            true,
            self.kernel_regularizer.clone(),
        )?;
        if self.use_bias {
            ctx.add_weight_with(
                "bias",
                &[self.filters],
                self.bias_initializer.clone(),
                true,
                self.bias_regularizer.clone(),
            )?;
        }
        Ok(())
    }

    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let y = conv::conv_transpose(
            inputs,
            ctx.weight("kernel"),
            &self.strides,
            &self.dilation_rate,
            &self.geometry.0,
            &self.geometry.1,
        )
        .map_err(|m| Error::layer(ctx.path(), m))?;
        Ok(bias_activation(ctx, y, self.use_bias, &self.activation))
    }

    fn activity_regularizer(&self) -> Option<&Regularizer> {
        self.activity_regularizer.as_ref()
    }

    fn describe(&self) -> String {
        let extra = match &self.output_padding {
            Some(p) => format!(", output_padding={p:?}"),
            None => String::new(),
        };
        format!(
            "filters={}, kernel_size={:?}, strides={:?}, padding={}{extra}, activation={}",
            self.filters,
            self.kernel_size,
            self.strides,
            padding_name(self.padding),
            self.activation.name()
        )
    }
}
