//! Registry entries of the spatial reshaping classes `ZeroPadding1D/2D`,
//! `Cropping1D/2D` and `UpSampling1D/2D`: their config parsing into
//! [`ResizeKind`] and the front-end [`layers::Resize`] layers they build.
//! Channels last only; `UpSampling2D` supports `interpolation="nearest"`
//! only, any other value is refused naming the layer and the key.

use super::error::Result;
use super::json::{show, Cfg};
use super::registry::LayerClass;
use super::spatial::data_format;
use super::spec::{common, LayerKind};
use crate::layers;
use crate::Layer;
use serde_json::Value;

/// The typed configuration of a padding, cropping or upsampling layer over
/// `rank` (1 or 2) spatial axes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResizeKind {
    /// Zeros `(before, after)` per spatial axis.
    ZeroPadding {
        rank: usize,
        padding: Vec<(usize, usize)>,
    },
    /// Cells removed `(before, after)` per spatial axis.
    Cropping {
        rank: usize,
        cropping: Vec<(usize, usize)>,
    },
    /// Nearest-neighbour repetition, `size` per spatial axis.
    UpSampling { rank: usize, size: Vec<usize> },
}

/// The padding, cropping and upsampling classes.
pub const RESHAPING_CLASSES: [LayerClass; 6] = [
    LayerClass::one_input("ZeroPadding1D", |c| parse_padding(c, 1), build),
    LayerClass::one_input("ZeroPadding2D", |c| parse_padding(c, 2), build),
    LayerClass::one_input("Cropping1D", |c| parse_cropping(c, 1), build),
    LayerClass::one_input("Cropping2D", |c| parse_cropping(c, 2), build),
    LayerClass::one_input("UpSampling1D", |c| parse_upsampling(c, 1), build),
    LayerClass::one_input("UpSampling2D", |c| parse_upsampling(c, 2), build),
];

/// Keras's `(before, after)` amounts per spatial axis: an int `n` (every
/// side `n`); for one axis a pair `[a, b]`; for two axes `[h, w]`
/// (symmetric per axis) or `[[top, bottom], [left, right]]`. `default` when
/// the key is absent.
fn pairs(
    cfg: &mut Cfg<'_>,
    key: &str,
    rank: usize,
    default: &[(usize, usize)],
) -> Result<Vec<(usize, usize)>> {
    let Some(v) = cfg.get(key) else {
        return Ok(default.to_vec());
    };
    let n = |v: &Value| v.as_u64().map(|x| x as usize);
    let pair = |v: &Value| match v {
        Value::Number(_) => n(v).map(|x| (x, x)),
        Value::Array(a) if a.len() == 2 => Some((n(&a[0])?, n(&a[1])?)),
        _ => None,
    };
    let parsed = match (v, rank) {
        (Value::Number(_), _) => n(v).map(|x| vec![(x, x); rank]),
        (Value::Array(_), 1) => pair(v).map(|p| vec![p]),
        (Value::Array(a), _) if a.len() == rank => a.iter().map(pair).collect(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        let want = if rank == 1 {
            "an integer or a pair [before, after]"
        } else {
            "an integer, [height, width] or [[top, bottom], [left, right]] of non-negative integers"
        };
        cfg.err(key, format!("expected {want}, got {}", show(v)))
    })
}

fn parse_padding(cfg: &mut Cfg<'_>, rank: usize) -> Result<LayerKind> {
    common(cfg)?;
    data_format(cfg)?;
    let padding = pairs(cfg, "padding", rank, &vec![(1, 1); rank])?;
    Ok(LayerKind::Resize(ResizeKind::ZeroPadding { rank, padding }))
}

fn parse_cropping(cfg: &mut Cfg<'_>, rank: usize) -> Result<LayerKind> {
    common(cfg)?;
    // Keras's Cropping1D has no data_format; Cropping2D's must be channels_last.
    if rank == 2 {
        data_format(cfg)?;
    }
    let default = if rank == 1 { (1, 1) } else { (0, 0) };
    let cropping = pairs(cfg, "cropping", rank, &vec![default; rank])?;
    Ok(LayerKind::Resize(ResizeKind::Cropping { rank, cropping }))
}

fn parse_upsampling(cfg: &mut Cfg<'_>, rank: usize) -> Result<LayerKind> {
    common(cfg)?;
    let size = if rank == 1 {
        match cfg.get("size") {
            None => vec![2],
            Some(_) => vec![cfg.usize("size")?],
        }
    } else {
        data_format(cfg)?;
        match cfg.get("interpolation") {
            None => {}
            Some(Value::String(s)) if s.eq_ignore_ascii_case("nearest") => {}
            Some(v) => {
                return Err(cfg.err(
                    "interpolation",
                    format!(
                        "unsupported value {} (lossgraph's UpSampling2D supports only \"nearest\"; bilinear and the other resize modes are not implemented)",
                        show(v)
                    ),
                ))
            }
        }
        match cfg.get("size") {
            None => vec![2, 2],
            Some(_) => super::spatial::tuple_min(cfg, "size", 2, 1)?,
        }
    };
    if size.contains(&0) {
        return Err(cfg.err("size", format!("must be positive, got {size:?}")));
    }
    Ok(LayerKind::Resize(ResizeKind::UpSampling { rank, size }))
}

fn build(kind: &LayerKind, name: &str) -> Option<Box<dyn Layer>> {
    let LayerKind::Resize(r) = kind else {
        return None;
    };
    let two = |p: &[(usize, usize)]| [p[0], p[1]];
    let layer = match r {
        ResizeKind::ZeroPadding { rank: 1, padding } => layers::ZeroPadding1D::new(padding[0]),
        ResizeKind::ZeroPadding { padding, .. } => layers::ZeroPadding2D::new(two(padding)),
        ResizeKind::Cropping { rank: 1, cropping } => layers::Cropping1D::new(cropping[0]),
        ResizeKind::Cropping { cropping, .. } => layers::Cropping2D::new(two(cropping)),
        ResizeKind::UpSampling { rank: 1, size } => layers::UpSampling1D::new(size[0]),
        ResizeKind::UpSampling { size, .. } => layers::UpSampling2D::new([size[0], size[1]]),
    };
    Some(Box::new(layer.name(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keras::spec::ModelSpec;
    use serde_json::json;

    fn spec(class: &str, config: Value, shape: Value) -> Result<ModelSpec> {
        ModelSpec::from_value(&json!({
            "class_name": "Sequential",
            "config": {"name": "m", "layers": [
                {"class_name": "InputLayer", "config": {"batch_shape": shape, "dtype": "float32", "name": "x"}},
                {"class_name": class, "config": config},
            ]}
        }))
    }

    fn kind(class: &str, config: Value, shape: Value) -> ResizeKind {
        match spec(class, config, shape).unwrap().layers[1].kind.clone() {
            LayerKind::Resize(r) => r,
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn keras_forms_and_defaults() {
        let img = json!([null, 6, 6, 2]);
        let seq = json!([null, 6, 2]);
        assert_eq!(
            kind(
                "ZeroPadding2D",
                json!({"name": "p", "padding": [[1, 2], [0, 3]], "data_format": "channels_last"}),
                img.clone()
            ),
            ResizeKind::ZeroPadding {
                rank: 2,
                padding: vec![(1, 2), (0, 3)]
            }
        );
        assert_eq!(
            kind(
                "ZeroPadding2D",
                json!({"name": "p", "padding": [1, 2]}),
                img.clone()
            ),
            ResizeKind::ZeroPadding {
                rank: 2,
                padding: vec![(1, 1), (2, 2)]
            }
        );
        assert_eq!(
            kind("ZeroPadding1D", json!({"name": "p"}), seq.clone()),
            ResizeKind::ZeroPadding {
                rank: 1,
                padding: vec![(1, 1)]
            }
        );
        assert_eq!(
            kind(
                "Cropping2D",
                json!({"name": "c", "cropping": 1}),
                img.clone()
            ),
            ResizeKind::Cropping {
                rank: 2,
                cropping: vec![(1, 1), (1, 1)]
            }
        );
        assert_eq!(
            kind(
                "Cropping1D",
                json!({"name": "c", "cropping": [0, 2]}),
                seq.clone()
            ),
            ResizeKind::Cropping {
                rank: 1,
                cropping: vec![(0, 2)]
            }
        );
        assert_eq!(
            kind("UpSampling1D", json!({"name": "u"}), seq),
            ResizeKind::UpSampling {
                rank: 1,
                size: vec![2]
            }
        );
        assert_eq!(
            kind(
                "UpSampling2D",
                json!({"name": "u", "size": [2, 3], "interpolation": "nearest"}),
                img
            ),
            ResizeKind::UpSampling {
                rank: 2,
                size: vec![2, 3]
            }
        );
    }

    #[test]
    fn unsupported_values_name_layer_and_key() {
        let img = json!([null, 6, 6, 2]);
        for (class, config, key, what) in [
            (
                "UpSampling2D",
                json!({"name": "up", "interpolation": "bilinear"}),
                "interpolation",
                "bilinear",
            ),
            (
                "ZeroPadding2D",
                json!({"name": "zp", "data_format": "channels_first"}),
                "data_format",
                "channels_first",
            ),
            (
                "Cropping2D",
                json!({"name": "cr", "cropping": [[1, 2, 3], [0, 0]]}),
                "cropping",
                "[[1,2,3],[0,0]]",
            ),
            (
                "UpSampling2D",
                json!({"name": "up", "size": [0, 2]}),
                "size",
                "[0,2]",
            ),
        ] {
            let e = spec(class, config, img.clone()).unwrap_err().to_string();
            assert!(
                e.contains(class) && e.contains(key) && e.contains(what),
                "{class}: {e}"
            );
        }
    }
}
