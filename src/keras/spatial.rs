//! Registry entries of the convolution and pooling layer classes
//! (`Conv1D`, `Conv2D`, `MaxPooling1D/2D`, `AveragePooling1D/2D`,
//! `GlobalAveragePooling1D/2D`, `GlobalMaxPooling1D/2D`): their config
//! parsing into [`SpatialKind`] and the front-end layers they build.
//! Only `channels_last` is supported; any other `data_format` is refused
//! naming the layer and the key.

use super::build::{activation, initializer, regularizer};
use super::error::Result;
use super::json::{show, Cfg};
use super::registry::{Arity, LayerClass};
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

macro_rules! entry {
    ($class:expr, $parse:expr) => {
        LayerClass {
            class: $class,
            arity: Arity::One,
            parse: $parse,
            build,
        }
    };
}

/// The convolution and pooling classes.
pub const SPATIAL_CLASSES: [LayerClass; 10] = [
    entry!("Conv1D", |c| parse_conv(c, 1)),
    entry!("Conv2D", |c| parse_conv(c, 2)),
    entry!("MaxPooling1D", |c| parse_pool(c, 1, true)),
    entry!("MaxPooling2D", |c| parse_pool(c, 2, true)),
    entry!("AveragePooling1D", |c| parse_pool(c, 1, false)),
    entry!("AveragePooling2D", |c| parse_pool(c, 2, false)),
    entry!("GlobalMaxPooling1D", |c| parse_global(c, 1, true)),
    entry!("GlobalMaxPooling2D", |c| parse_global(c, 2, true)),
    entry!("GlobalAveragePooling1D", |c| parse_global(c, 1, false)),
    entry!("GlobalAveragePooling2D", |c| parse_global(c, 2, false)),
];

fn data_format(cfg: &mut Cfg<'_>) -> Result<()> {
    cfg.only("data_format", &[json!("channels_last"), Value::Null])
}

/// An int or a list of `rank` ints, each ≥ 1.
fn tuple(cfg: &mut Cfg<'_>, key: &str, rank: usize) -> Result<Vec<usize>> {
    let v = cfg.req(key)?;
    let parsed = match v {
        Value::Number(n) => n.as_u64().map(|x| vec![x as usize; rank]),
        Value::Array(a) => a
            .iter()
            .map(|d| d.as_u64().map(|x| x as usize))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    };
    parsed
        .filter(|t| t.len() == rank && !t.contains(&0))
        .ok_or_else(|| {
            cfg.err(
                key,
                format!("expected {rank} positive integer(s), got {}", show(v)),
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
    let strides = match cfg.get("strides") {
        None => vec![1; rank],
        Some(_) => tuple(cfg, "strides", rank)?,
    };
    let padding = padding(cfg)?;
    let dilation_rate = match cfg.get("dilation_rate") {
        None => vec![1; rank],
        Some(_) => tuple(cfg, "dilation_rate", rank)?,
    };
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
            let mut c = base
                .strides(strides)
                .padding(pad(padding))
                .dilation_rate(dilation_rate)
                .groups(*groups)
                .activation(activation(*a))
                .use_bias(*use_bias)
                .kernel_initializer(initializer(*kernel_initializer))
                .bias_initializer(initializer(*bias_initializer))
                .name(name);
            if let Some(r) = kernel_regularizer {
                c = c.kernel_regularizer(regularizer(*r));
            }
            if let Some(r) = bias_regularizer {
                c = c.bias_regularizer(regularizer(*r));
            }
            if let Some(r) = activity_regularizer {
                c = c.activity_regularizer(regularizer(*r));
            }
            Box::new(c)
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
