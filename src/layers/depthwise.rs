//! `DepthwiseConv2D` and `SeparableConv2D`, channels last.
//!
//! A depthwise kernel `(kh, kw, C, M)` is a grouped convolution with
//! `groups = C` and kernel `(kh, kw, 1, C·M)` (a reshape: output channel
//! `c·M + m`, as Keras orders them). `SeparableConv2D` follows it with a
//! 1×1 `pointwise_kernel` `(1, 1, C·M, filters)` and the bias.
//!
//! Variable names are Keras 3's: `DepthwiseConv2D` has `kernel` and `bias`;
//! `SeparableConv2D` has `depthwise_kernel`, `pointwise_kernel` and `bias`.

use super::conv::{check_tuple, geometry, padding_name};
use super::{bias_activation, config_check};
use crate::activations::Activation;
use crate::error::{Error, Result};
use crate::initializers::Init;
use crate::layer::{BuildCtx, CallCtx, Layer};
use crate::regularizers::Regularizer;
use lossgraph_ir::conv::{self, Padding};
use lossgraph_ir::Tensor;

/// Keras `DepthwiseConv2D` (`pointwise: None`) or `SeparableConv2D`
/// (`pointwise: Some(filters)`).
#[derive(Clone, Debug)]
pub struct DepthwiseConv {
    pointwise: Option<usize>,
    kernel_size: Vec<usize>,
    depth_multiplier: usize,
    strides: Vec<usize>,
    padding: Padding,
    dilation_rate: Vec<usize>,
    activation: Activation,
    use_bias: bool,
    depthwise_initializer: Init,
    pointwise_initializer: Init,
    bias_initializer: Init,
    depthwise_regularizer: Option<Regularizer>,
    pointwise_regularizer: Option<Regularizer>,
    bias_regularizer: Option<Regularizer>,
    activity_regularizer: Option<Regularizer>,
    name: Option<String>,
    config_error: Option<String>,
    /// Set by `build`: input channels and `(lo, hi)` pads.
    channels: usize,
    pads: (Vec<usize>, Vec<usize>),
}

/// Keras `DepthwiseConv2D`.
pub struct DepthwiseConv2D;
/// Keras `SeparableConv2D`.
pub struct SeparableConv2D;

impl DepthwiseConv2D {
    /// A `kh × kw` depthwise convolution, depth multiplier 1, stride 1, `valid`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(kernel_size: [usize; 2]) -> DepthwiseConv {
        DepthwiseConv::with(None, &kernel_size)
    }
}

impl SeparableConv2D {
    /// A `kh × kw` depthwise then 1×1 convolution to `filters` channels.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(filters: usize, kernel_size: [usize; 2]) -> DepthwiseConv {
        DepthwiseConv::with(Some(filters), &kernel_size)
    }
}

impl DepthwiseConv {
    fn with(pointwise: Option<usize>, kernel_size: &[usize]) -> DepthwiseConv {
        DepthwiseConv {
            pointwise,
            kernel_size: kernel_size.to_vec(),
            depth_multiplier: 1,
            strides: vec![1, 1],
            padding: Padding::Valid,
            dilation_rate: vec![1, 1],
            activation: Activation::Linear,
            use_bias: true,
            depthwise_initializer: Init::GlorotUniform,
            pointwise_initializer: Init::GlorotUniform,
            bias_initializer: Init::Zeros,
            depthwise_regularizer: None,
            pointwise_regularizer: None,
            bias_regularizer: None,
            activity_regularizer: None,
            name: None,
            config_error: None,
            channels: 0,
            pads: (Vec::new(), Vec::new()),
        }
    }

    /// The depthwise kernel's variable name: `kernel` in `DepthwiseConv2D`,
    /// `depthwise_kernel` in `SeparableConv2D` (Keras 3's names).
    fn depthwise_name(&self) -> &'static str {
        match self.pointwise {
            None => "kernel",
            Some(_) => "depthwise_kernel",
        }
    }

    /// Output channels per input channel of the depthwise step.
    pub fn depth_multiplier(mut self, m: usize) -> DepthwiseConv {
        self.depth_multiplier = m;
        self
    }

    /// The depthwise kernel's initialiser.
    pub fn depthwise_initializer(mut self, init: Init) -> DepthwiseConv {
        self.depthwise_initializer = init;
        self
    }

    /// The pointwise kernel's initialiser (`SeparableConv2D`).
    pub fn pointwise_initializer(mut self, init: Init) -> DepthwiseConv {
        self.pointwise_initializer = init;
        self
    }

    /// A regulariser on the depthwise kernel.
    pub fn depthwise_regularizer(mut self, r: Regularizer) -> DepthwiseConv {
        self.depthwise_regularizer = Some(r);
        self
    }

    /// A regulariser on the pointwise kernel (`SeparableConv2D`).
    pub fn pointwise_regularizer(mut self, r: Regularizer) -> DepthwiseConv {
        self.pointwise_regularizer = Some(r);
        self
    }
}

layer_setters!(DepthwiseConv: output, name, window);

impl Layer for DepthwiseConv {
    fn class_name(&self) -> String {
        match self.pointwise {
            None => "DepthwiseConv2D".into(),
            Some(_) => "SeparableConv2D".into(),
        }
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let class = self.class_name();
        let path = ctx.path().to_string();
        config_check(&path, &self.config_error)?;
        if input_shape.len() != 3 {
            return Err(Error::layer(
                &path,
                format!("{class} needs per-sample inputs (H, W, C), got {input_shape:?}"),
            ));
        }
        for (key, v) in [
            ("kernel_size", &self.kernel_size),
            ("strides", &self.strides),
            ("dilation_rate", &self.dilation_rate),
        ] {
            check_tuple(&path, &class, key, v, 2)?;
        }
        if self.depth_multiplier == 0 || self.pointwise == Some(0) {
            return Err(Error::layer(
                &path,
                format!("{class} needs depth_multiplier and filters > 0"),
            ));
        }
        let (_, lo, hi) = geometry(
            &path,
            &class,
            &input_shape[..2],
            &self.kernel_size,
            &self.strides,
            &self.dilation_rate,
            self.padding,
        )?;
        self.pads = (lo, hi);
        let c = input_shape[2];
        self.channels = c;
        let m = self.depth_multiplier;
        let (kh, kw) = (self.kernel_size[0], self.kernel_size[1]);
        ctx.add_weight_with(
            self.depthwise_name(),
            &[kh, kw, c, m],
            self.depthwise_initializer.clone(),
            true,
            self.depthwise_regularizer.clone(),
        )?;
        let out = match self.pointwise {
            None => c * m,
            Some(f) => {
                ctx.add_weight_with(
                    "pointwise_kernel",
                    &[1, 1, c * m, f],
                    self.pointwise_initializer.clone(),
                    true,
                    self.pointwise_regularizer.clone(),
                )?;
                f
            }
        };
        if self.use_bias {
            ctx.add_weight_with(
                "bias",
                &[out],
                self.bias_initializer.clone(),
                true,
                self.bias_regularizer.clone(),
            )?;
        }
        Ok(())
    }

    fn call(&self, ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let (c, m) = (self.channels, self.depth_multiplier);
        let (kh, kw) = (self.kernel_size[0], self.kernel_size[1]);
        let k = ctx
            .weight(self.depthwise_name())
            .reshape(&[kh, kw, 1, c * m]);
        let err = |m: String| Error::layer(ctx.path(), m);
        let mut y = conv::conv(
            inputs,
            &k,
            &self.strides,
            &self.dilation_rate,
            &self.pads.0,
            &self.pads.1,
            c,
        )
        .map_err(err)?;
        if self.pointwise.is_some() {
            y = conv::conv(
                &y,
                ctx.weight("pointwise_kernel"),
                &[1, 1],
                &[1, 1],
                &[0, 0],
                &[0, 0],
                1,
            )
            .map_err(err)?;
        }
        Ok(bias_activation(ctx, y, self.use_bias, &self.activation))
    }

    fn activity_regularizer(&self) -> Option<&Regularizer> {
        self.activity_regularizer.as_ref()
    }

    fn describe(&self) -> String {
        format!(
            "kernel_size={:?}, depth_multiplier={}, strides={:?}, padding={}, activation={}",
            self.kernel_size,
            self.depth_multiplier,
            self.strides,
            padding_name(self.padding),
            self.activation.name()
        )
    }
}
