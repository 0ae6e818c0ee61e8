//! A strict reader for Keras config objects: every key must be read or
//! explicitly ignored, so an unsupported key is reported, never dropped.

use super::error::{KerasError, Result};
use serde_json::{Map, Value};

/// Where a config object sits, for error messages.
#[derive(Clone, Debug)]
pub(crate) enum Ctx {
    /// A layer's config: errors name the class and the layer.
    Layer { class: String, name: String },
    /// Anything else (optimizer, loss, model structure): errors name the context.
    Other(String),
}

impl Ctx {
    /// An error about `key` (a dotted path) in this context.
    pub(crate) fn err(&self, key: &str, message: impl Into<String>) -> KerasError {
        match self {
            Ctx::Layer { class, name } => KerasError::Layer {
                class: class.clone(),
                name: name.clone(),
                key: key.to_string(),
                message: message.into(),
            },
            Ctx::Other(c) => KerasError::Invalid {
                context: if key.is_empty() {
                    c.clone()
                } else {
                    format!("{c}: {key}")
                },
                message: message.into(),
            },
        }
    }
}

/// A short rendering of a JSON value for messages (truncated).
pub(crate) fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let t: String = s.chars().take(77).collect();
        format!("{t}...")
    } else {
        s
    }
}

/// A config object being read. Keys are marked as they are read; [`Cfg::finish`]
/// rejects every key that was neither read nor ignored.
pub(crate) struct Cfg<'a> {
    map: &'a Map<String, Value>,
    ctx: Ctx,
    prefix: String,
    used: Vec<&'a str>,
}

impl<'a> Cfg<'a> {
    /// Wraps `v`, which must be a JSON object; `prefix` is the dotted path of `v`
    /// (empty at the top of a layer config).
    pub(crate) fn new(v: &'a Value, ctx: &Ctx, prefix: &str) -> Result<Cfg<'a>> {
        match v {
            Value::Object(map) => Ok(Cfg {
                map,
                ctx: ctx.clone(),
                prefix: prefix.to_string(),
                used: Vec::new(),
            }),
            other => Err(ctx.err(
                prefix.trim_end_matches('.'),
                format!("expected an object, got {}", show(other)),
            )),
        }
    }

    /// The dotted path of `key`.
    pub(crate) fn path(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// An error about `key`.
    pub(crate) fn err(&self, key: &str, message: impl Into<String>) -> KerasError {
        self.ctx.err(&self.path(key), message)
    }

    /// The context of this object.
    pub(crate) fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// The value of `key` (marked as read), or `None` when absent.
    pub(crate) fn get(&mut self, key: &str) -> Option<&'a Value> {
        let (k, v) = self.map.get_key_value(key)?;
        self.used.push(k.as_str());
        Some(v)
    }

    /// The value of a key that must be present.
    pub(crate) fn req(&mut self, key: &str) -> Result<&'a Value> {
        self.get(key)
            .ok_or_else(|| self.err(key, "missing required config key"))
    }

    /// Marks keys as read without looking at them (harmless metadata).
    pub(crate) fn ignore(&mut self, keys: &[&str]) {
        for k in keys {
            let _ = self.get(k);
        }
    }

    /// A float (rounded to f32, as Keras stores it); `default` when absent or null.
    pub(crate) fn f32_or(&mut self, key: &str, default: Option<f32>) -> Result<f32> {
        match self.get(key) {
            None | Some(Value::Null) => {
                default.ok_or_else(|| self.err(key, "missing required number"))
            }
            Some(Value::Number(n)) => n
                .as_f64()
                .map(|x| x as f32)
                .filter(|x| x.is_finite())
                .ok_or_else(|| self.err(key, format!("not a finite f32: {n}"))),
            Some(other) => Err(self.err(key, format!("expected a number, got {}", show(other)))),
        }
    }

    /// A required float.
    pub(crate) fn f32(&mut self, key: &str) -> Result<f32> {
        self.f32_or(key, None)
    }

    /// A non-negative integer.
    pub(crate) fn usize(&mut self, key: &str) -> Result<usize> {
        let v = self.req(key)?;
        v.as_u64().map(|x| x as usize).ok_or_else(|| {
            self.err(
                key,
                format!("expected a non-negative integer, got {}", show(v)),
            )
        })
    }

    /// An integer (may be negative).
    pub(crate) fn i64(&mut self, key: &str) -> Result<i64> {
        let v = self.req(key)?;
        v.as_i64()
            .ok_or_else(|| self.err(key, format!("expected an integer, got {}", show(v))))
    }

    /// A boolean; `default` when absent.
    pub(crate) fn bool_or(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => {
                Err(self.err(key, format!("expected true or false, got {}", show(other))))
            }
        }
    }

    /// A string.
    pub(crate) fn str(&mut self, key: &str) -> Result<&'a str> {
        let v = self.req(key)?;
        v.as_str()
            .ok_or_else(|| self.err(key, format!("expected a string, got {}", show(v))))
    }

    /// An optional seed (null or a non-negative integer).
    pub(crate) fn seed(&mut self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected null or a seed, got {}", show(v)))),
        }
    }

    /// An optional layer noise seed: null or an integer in `[0, 2³²)` (the
    /// layers draw from 32-bit seeds; a larger one is an error, not a wrap).
    pub(crate) fn seed32(&mut self, key: &str) -> Result<Option<u32>> {
        match self.seed(key)? {
            None => Ok(None),
            Some(s) => u32::try_from(s).map(Some).map_err(|_| {
                self.err(
                    key,
                    format!("seed {s} does not fit in 32 bits (at most {})", u32::MAX),
                )
            }),
        }
    }

    /// A key that is accepted only when absent or equal to one of `allowed`
    /// (for example a constraint that must be `null`); anything else is unsupported.
    pub(crate) fn only(&mut self, key: &str, allowed: &[Value]) -> Result<()> {
        match self.get(key) {
            None => Ok(()),
            Some(v) if allowed.contains(v) => Ok(()),
            Some(v) => Err(self.err(
                key,
                format!(
                    "unsupported value {} (lossgraph supports only {})",
                    show(v),
                    allowed.iter().map(show).collect::<Vec<_>>().join(" or ")
                ),
            )),
        }
    }

    /// Rejects every key that was not read.
    pub(crate) fn finish(self) -> Result<()> {
        let mut extra: Vec<&String> = self
            .map
            .keys()
            .filter(|k| !self.used.contains(&k.as_str()))
            .collect();
        extra.sort();
        match extra.first() {
            None => Ok(()),
            Some(k) => Err(self.err(
                k,
                format!(
                    "unsupported config key (value {})",
                    show(&self.map[k.as_str()])
                ),
            )),
        }
    }
}
