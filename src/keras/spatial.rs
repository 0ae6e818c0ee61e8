//! Registry entries of the convolution and pooling layer classes
//! (`Conv1D`, `Conv2D`, `DepthwiseConv2D`, `SeparableConv2D`,
//! `Conv1DTranspose`, `Conv2DTranspose`, `MaxPooling1D/2D`,
//! `AveragePooling1D/2D`, `GlobalAveragePooling1D/2D`,
//! `GlobalMaxPooling1D/2D`): their config parsing into [`SpatialKind`] and
//! the front-end layers they build. Only `channels_last` is supported; any
//! other `data_format` is refused naming the layer and the key.

use super::build::{activation, initializer, kernel_keys, regularizer};
use super::error::Result;
use super::json::{show, Cfg};
use super::registry::LayerClass;
use super::spec::{self, common, ActivationSpec, InitializerSpec, LayerKind, RegularizerSpec};
use crate::layers;
use crate::Layer;
use lossgraph_ir::conv::Padding;
use serde_json::{json, Value};

/// The typed configuration of a convolution or pooling layer.
#[derive(Clone, Debug, PartialEq)]
pub enum SpatialKind {
    /// `Conv1D` (`rank` 1) or `Conv2D` (`rank` 2).
    Conv {
        rank: usize,
        filters: usize,
        kernel_size: Vec<usize>,
        strides: Vec<usize>,
        padding: Padding,
        dilation_rate: Vec<usize>,
        groups: usize,
        activation: ActivationSpec,
        use_bias: bool,
        kernel_initializer: InitializerSpec,
        bias_initializer: InitializerSpec,
        kernel_regularizer: Option<RegularizerSpec>,
        bias_regularizer: Option<RegularizerSpec>,
        activity_regularizer: Option<RegularizerSpec>,
    },
    /// `DepthwiseConv2D` (`pointwise: None`) or `SeparableConv2D`
    /// (`pointwise: Some(filters)`); the keys are Keras's `depthwise_*`
    /// and `pointwise_*` ones.
    Depthwise {
        pointwise: Option<usize>,
        kernel_size: Vec<usize>,
        depth_multiplier: usize,
        strides: Vec<usize>,
        padding: Padding,
        dilation_rate: Vec<usize>,
        activation: ActivationSpec,
        use_bias: bool,
        depthwise_initializer: InitializerSpec,
        pointwise_initializer: InitializerSpec,
        bias_initializer: InitializerSpec,
        depthwise_regularizer: Option<RegularizerSpec>,
        pointwise_regularizer: Option<RegularizerSpec>,
        bias_regularizer: Option<RegularizerSpec>,
        activity_regularizer: Option<RegularizerSpec>,
    },
    /// `Conv1DTranspose` (`rank` 1) or `Conv2DTranspose` (`rank` 2).
    ConvTranspose {
        rank: usize,
        filters: usize,
        kernel_size: Vec<usize>,
        strides: Vec<usize>,
        padding: Padding,
        /// `None` when the JSON has `null` (the padding mode fixes the extent).
        output_padding: Option<Vec<usize>>,
        dilation_rate: Vec<usize>,
        keys: spec::KernelKeys,
    },
    /// `MaxPooling*` (`max`) or `AveragePooling*`.
    Pool {
        rank: usize,
        max: bool,
        pool_size: Vec<usize>,
        strides: Vec<usize>,
        padding: Padding,
    },
    /// `GlobalMaxPooling*` (`max`) or `GlobalAveragePooling*`.
    GlobalPool {
        rank: usize,
        max: bool,
        keepdims: bool,
    },
}

/// The convolution and pooling classes.
pub const SPATIAL_CLASSES: [LayerClass; 14] = [
    LayerClass::one_input("Conv1D", |c| parse_conv(c, 1), build),
    LayerClass::one_input("Conv2D", |c| parse_conv(c, 2), build),
    LayerClass::one_input("DepthwiseConv2D", |c| parse_depthwise(c, false), build),
    LayerClass::one_input("SeparableConv2D", |c| parse_depthwise(c, true), build),
    LayerClass::one_input("Conv1DTranspose", |c| parse_conv_transpose(c, 1), build),
    LayerClass::one_input("Conv2DTranspose", |c| parse_conv_transpose(c, 2), build),
    LayerClass::one_input("MaxPooling1D", |c| parse_pool(c, 1, true), build),
    LayerClass::one_input("MaxPooling2D", |c| parse_pool(c, 2, true), build),
    LayerClass::one_input("AveragePooling1D", |c| parse_pool(c, 1, false), build),
    LayerClass::one_input("AveragePooling2D", |c| parse_pool(c, 2, false), build),
    LayerClass::one_input("GlobalMaxPooling1D", |c| parse_global(c, 1, true), build),
    LayerClass::one_input("GlobalMaxPooling2D", |c| parse_global(c, 2, true), build),
    LayerClass::one_input(
        "GlobalAveragePooling1D",
        |c| parse_global(c, 1, false),
        build,
    ),
    LayerClass::one_input(
        "GlobalAveragePooling2D",
        |c| parse_global(c, 2, false),
        build,
    ),
];

/// Refuses any `data_format` but `channels_last` (or `null`, Keras's default).
pub(super) fn data_format(cfg: &mut Cfg<'_>) -> Result<()> {
    cfg.only("data_format", &[json!("channels_last"), Value::Null])
}

/// An int or a list of `rank` ints, each ≥ 1.
fn tuple(cfg: &mut Cfg<'_>, key: &str, rank: usize) -> Result<Vec<usize>> {
    tuple_min(cfg, key, rank, 1)
}

/// `key` as a `rank`-tuple, or `default` (per axis) when the key is absent.
fn tuple_or(cfg: &mut Cfg<'_>, key: &str, rank: usize, default: usize) -> Result<Vec<usize>> {
    match cfg.get(key) {
        None => Ok(vec![default; rank]),
        Some(_) => tuple(cfg, key, rank),
    }
}

/// The largest window size, stride, dilation, output padding or upsampling
/// factor imported: Keras's backends hold them as 32-bit ints, and anything
/// larger only overflows the geometry.
pub(super) const MAX_TUPLE_ENTRY: usize = i32::MAX as usize;

/// An int or a list of `rank` ints, each ≥ `min` (0 or 1) and at most
/// [`MAX_TUPLE_ENTRY`].
pub(super) fn tuple_min(
    cfg: &mut Cfg<'_>,
    key: &str,
    rank: usize,
    min: usize,
) -> Result<Vec<usize>> {
    let v = cfg.req(key)?;
    let parsed = match v {
        Value::Number(n) => n.as_u64().map(|x| vec![x as usize; rank]),
        Value::Array(a) => a
            .iter()
            .map(|d| d.as_u64().map(|x| x as usize))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    };
    let what = if min == 0 { "non-negative" } else { "positive" };
    parsed
        .filter(|t| t.len() == rank && t.iter().all(|&x| (min..=MAX_TUPLE_ENTRY).contains(&x)))
        .ok_or_else(|| {
            cfg.err(
                key,
                format!(
                    "expected {rank} {what} integer(s) of at most {MAX_TUPLE_ENTRY}, got {}",
                    show(v)
                ),
            )
        })
}

fn padding(cfg: &mut Cfg<'_>) -> Result<Padding> {
    match cfg.get("padding") {
        None => Ok(Padding::Valid),
        Some(Value::String(s)) => layers::parse_padding(s).map_err(|m| cfg.err("padding", m)),
        Some(v) => Err(cfg.err("padding", format!("expected a string, got {}", show(v)))),
    }
}

fn parse_conv(cfg: &mut Cfg<'_>, rank: usize) -> Result<LayerKind> {
    common(cfg)?;
    data_format(cfg)?;
    let filters = cfg.usize("filters")?;
    if filters == 0 {
        return Err(cfg.err("filters", "must be positive"));
    }
    let kernel_size = tuple(cfg, "kernel_size", rank)?;
    let strides = tuple_or(cfg, "strides", rank, 1)?;
    let padding = padding(cfg)?;
    let dilation_rate = tuple_or(cfg, "dilation_rate", rank, 1)?;
    let groups = match cfg.get("groups") {
        None => 1,
        Some(_) => cfg.usize("groups")?,
    };
    if groups == 0 || !filters.is_multiple_of(groups) {
        return Err(cfg.err(
            "groups",
            format!("must be positive and divide filters ({filters}), got {groups}"),
        ));
    }
    let spec::KernelKeys {
        activation,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        activity_regularizer,
    } = spec::kernel_keys(cfg)?;
    Ok(LayerKind::Spatial(SpatialKind::Conv {
        rank,
        filters,
        kernel_size,
        strides,
        padding,
        dilation_rate,
        groups,
        activation,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        activity_regularizer,
    }))
}

fn parse_depthwise(cfg: &mut Cfg<'_>, separable: bool) -> Result<LayerKind> {
    common(cfg)?;
    data_format(cfg)?;
    let pointwise = if separable {
        let f = cfg.usize("filters")?;
        if f == 0 {
            return Err(cfg.err("filters", "must be positive"));
        }
        Some(f)
    } else {
        None
    };
    let kernel_size = tuple(cfg, "kernel_size", 2)?;
    let depth_multiplier = match cfg.get("depth_multiplier") {
        None => 1,
        Some(_) => cfg.usize("depth_multiplier")?,
    };
    if depth_multiplier == 0 {
        return Err(cfg.err("depth_multiplier", "must be positive"));
    }
    let strides = tuple_or(cfg, "strides", 2, 1)?;
    let padding = padding(cfg)?;
    let dilation_rate = tuple_or(cfg, "dilation_rate", 2, 1)?;
    let glorot = InitializerSpec::GlorotUniform { seed: None };
    let activation = spec::activation(cfg, "activation", true)?;
    let use_bias = cfg.bool_or("use_bias", true)?;
    let depthwise_initializer = spec::initializer(cfg, "depthwise_initializer", glorot)?;
    let bias_initializer = spec::initializer(cfg, "bias_initializer", InitializerSpec::Zeros)?;
    let depthwise_regularizer = spec::regularizer(cfg, "depthwise_regularizer")?;
    let bias_regularizer = spec::regularizer(cfg, "bias_regularizer")?;
    let activity_regularizer = spec::regularizer(cfg, "activity_regularizer")?;
    let (pointwise_initializer, pointwise_regularizer) = if separable {
        (
            spec::initializer(cfg, "pointwise_initializer", glorot)?,
            spec::regularizer(cfg, "pointwise_regularizer")?,
        )
    } else {
        (glorot, None)
    };
    let mut constraints = vec!["depthwise_constraint", "bias_constraint"];
    if separable {
        constraints.push("pointwise_constraint");
    }
    for key in constraints {
        cfg.only(key, &[Value::Null])?;
    }
    Ok(LayerKind::Spatial(SpatialKind::Depthwise {
        pointwise,
        kernel_size,
        depth_multiplier,
        strides,
        padding,
        dilation_rate,
        activation,
        use_bias,
        depthwise_initializer,
        pointwise_initializer,
        bias_initializer,
        depthwise_regularizer,
        pointwise_regularizer,
        bias_regularizer,
        activity_regularizer,
    }))
}

fn parse_conv_transpose(cfg: &mut Cfg<'_>, rank: usize) -> Result<LayerKind> {
    common(cfg)?;
    data_format(cfg)?;
    let filters = cfg.usize("filters")?;
    if filters == 0 {
        return Err(cfg.err("filters", "must be positive"));
    }
    let kernel_size = tuple(cfg, "kernel_size", rank)?;
    let strides = tuple_or(cfg, "strides", rank, 1)?;
    let padding = padding(cfg)?;
    let dilation_rate = tuple_or(cfg, "dilation_rate", rank, 1)?;
    let output_padding = match cfg.get("output_padding") {
        None | Some(Value::Null) => None,
        Some(_) => {
            let p = tuple_min(cfg, "output_padding", rank, 0)?;
            if p.iter().zip(&strides).any(|(p, s)| p >= s) {
                return Err(cfg.err(
                    "output_padding",
                    format!("each entry must be less than its stride {strides:?}, got {p:?}"),
                ));
            }
            Some(p)
        }
    };
    if strides.iter().any(|&s| s > 1) && dilation_rate.iter().any(|&d| d > 1) {
        return Err(cfg.err(
            "dilation_rate",
            format!("dilation {dilation_rate:?} > 1 with strides {strides:?} > 1 is not supported (Keras refuses it too)"),
        ));
    }
    let keys = spec::kernel_keys(cfg)?;
    Ok(LayerKind::Spatial(SpatialKind::ConvTranspose {
        rank,
        filters,
        kernel_size,
        strides,
        padding,
        output_padding,
        dilation_rate,
        keys,
    }))
}

fn parse_pool(cfg: &mut Cfg<'_>, rank: usize, max: bool) -> Result<LayerKind> {
    common(cfg)?;
    data_format(cfg)?;
    let pool_size = tuple(cfg, "pool_size", rank)?;
    let strides = match cfg.get("strides") {
        None | Some(Value::Null) => pool_size.clone(),
        Some(_) => tuple(cfg, "strides", rank)?,
    };
    let padding = padding(cfg)?;
    Ok(LayerKind::Spatial(SpatialKind::Pool {
        rank,
        max,
        pool_size,
        strides,
        padding,
    }))
}

fn parse_global(cfg: &mut Cfg<'_>, rank: usize, max: bool) -> Result<LayerKind> {
    common(cfg)?;
    data_format(cfg)?;
    let keepdims = cfg.bool_or("keepdims", false)?;
    Ok(LayerKind::Spatial(SpatialKind::GlobalPool {
        rank,
        max,
        keepdims,
    }))
}

/// Applies the regularisers of a layer with a kernel (`Option`s of
/// [`RegularizerSpec`]) through its builder methods of the same names.
macro_rules! regularizers {
    ($layer:ident, $($key:ident),+) => {
        $(if let Some(r) = $key {
            $layer = $layer.$key(regularizer(*r));
        })+
    };
}

fn build(kind: &LayerKind, name: &str) -> Option<Box<dyn Layer>> {
    let LayerKind::Spatial(s) = kind else {
        return None;
    };
    let pad = |p: &Padding| match p {
        Padding::Valid => "valid",
        Padding::Same => "same",
    };
    Some(match s {
        SpatialKind::Conv {
            rank,
            filters,
            kernel_size,
            strides,
            padding,
            dilation_rate,
            groups,
            activation: a,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            activity_regularizer,
        } => {
            let base = match rank {
                1 => layers::Conv1D::new(*filters, kernel_size[0]),
                _ => layers::Conv2D::new(*filters, [kernel_size[0], kernel_size[1]]),
            };
            let c = base
                .strides(strides)
                .padding(pad(padding))
                .dilation_rate(dilation_rate)
                .groups(*groups);
            Box::new(kernel_keys!(
                c,
                name,
                a,
                use_bias,
                kernel_initializer,
                bias_initializer,
                kernel_regularizer,
                bias_regularizer,
                activity_regularizer
            ))
        }
        SpatialKind::Depthwise {
            pointwise,
            kernel_size,
            depth_multiplier,
            strides,
            padding,
            dilation_rate,
            activation: a,
            use_bias,
            depthwise_initializer,
            pointwise_initializer,
            bias_initializer,
            depthwise_regularizer,
            pointwise_regularizer,
            bias_regularizer,
            activity_regularizer,
        } => {
            let k = [kernel_size[0], kernel_size[1]];
            let base = match pointwise {
                None => layers::DepthwiseConv2D::new(k),
                Some(f) => layers::SeparableConv2D::new(*f, k),
            };
            let mut c = base
                .depth_multiplier(*depth_multiplier)
                .strides(strides)
                .padding(pad(padding))
                .dilation_rate(dilation_rate)
                .activation(activation(*a))
                .use_bias(*use_bias)
                .depthwise_initializer(initializer(*depthwise_initializer))
                .pointwise_initializer(initializer(*pointwise_initializer))
                .bias_initializer(initializer(*bias_initializer))
                .name(name);
            regularizers!(
                c,
                depthwise_regularizer,
                pointwise_regularizer,
                bias_regularizer,
                activity_regularizer
            );
            Box::new(c)
        }
        SpatialKind::ConvTranspose {
            rank,
            filters,
            kernel_size,
            strides,
            padding,
            output_padding,
            dilation_rate,
            keys:
                spec::KernelKeys {
                    activation: a,
                    use_bias,
                    kernel_initializer,
                    bias_initializer,
                    kernel_regularizer,
                    bias_regularizer,
                    activity_regularizer,
                },
        } => {
            let base = match rank {
                1 => layers::Conv1DTranspose::new(*filters, kernel_size[0]),
                _ => layers::Conv2DTranspose::new(*filters, [kernel_size[0], kernel_size[1]]),
            };
            let c = base
                .strides(strides)
                .padding(pad(padding))
                .output_padding(output_padding.as_deref())
                .dilation_rate(dilation_rate);
            Box::new(kernel_keys!(
                c,
                name,
                a,
                use_bias,
                kernel_initializer,
                bias_initializer,
                kernel_regularizer,
                bias_regularizer,
                activity_regularizer
            ))
        }
        SpatialKind::Pool {
            rank,
            max,
            pool_size,
            strides,
            padding,
        } => {
            let base = match (rank, max) {
                (1, true) => layers::MaxPooling1D::new(pool_size[0]),
                (1, false) => layers::AveragePooling1D::new(pool_size[0]),
                (_, true) => layers::MaxPooling2D::new([pool_size[0], pool_size[1]]),
                (_, false) => layers::AveragePooling2D::new([pool_size[0], pool_size[1]]),
            };
            Box::new(base.strides(strides).padding(pad(padding)).name(name))
        }
        SpatialKind::GlobalPool {
            rank,
            max,
            keepdims,
        } => {
            let base = match (rank, max) {
                (1, true) => layers::GlobalMaxPooling1D::new(),
                (1, false) => layers::GlobalAveragePooling1D::new(),
                (_, true) => layers::GlobalMaxPooling2D::new(),
                (_, false) => layers::GlobalAveragePooling2D::new(),
            };
            Box::new(base.keepdims(*keepdims).name(name))
        }
    })
}
