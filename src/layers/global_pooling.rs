//! `GlobalAveragePooling1D/2D` and `GlobalMaxPooling1D/2D`, channels last.

use crate::error::{Error, Result};
use crate::layer::{BuildCtx, CallCtx, Layer};
use lossgraph_ir::Tensor;

/// Mean or max over every spatial axis: `(N, S.., C)` → `(N, C)`, or
/// `(N, 1.., C)` with `keepdims`. The max's gradient is split equally
/// between tied maxima (as `jnp.max`, which Keras uses here).
#[derive(Clone, Debug)]
pub struct GlobalPooling {
    rank: usize,
    max: bool,
    keepdims: bool,
    name: Option<String>,
}

/// Keras `GlobalAveragePooling1D`.
pub struct GlobalAveragePooling1D;
/// Keras `GlobalAveragePooling2D`.
pub struct GlobalAveragePooling2D;
/// Keras `GlobalMaxPooling1D`.
pub struct GlobalMaxPooling1D;
/// Keras `GlobalMaxPooling2D`.
pub struct GlobalMaxPooling2D;

macro_rules! global_ctor {
    ($t:ident, $rank:expr, $max:expr) => {
        impl $t {
            /// The layer, without `keepdims`.
            #[allow(clippy::new_ret_no_self)]
            pub fn new() -> GlobalPooling {
                GlobalPooling {
                    rank: $rank,
                    max: $max,
                    keepdims: false,
                    name: None,
                }
            }
        }
    };
}
global_ctor!(GlobalAveragePooling1D, 1, false);
global_ctor!(GlobalAveragePooling2D, 2, false);
global_ctor!(GlobalMaxPooling1D, 1, true);
global_ctor!(GlobalMaxPooling2D, 2, true);

impl GlobalPooling {
    /// Keep the pooled axes with extent 1.
    pub fn keepdims(mut self, yes: bool) -> GlobalPooling {
        self.keepdims = yes;
        self
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> GlobalPooling {
        self.name = Some(name.into());
        self
    }
}

impl Layer for GlobalPooling {
    fn class_name(&self) -> String {
        let kind = if self.max { "Max" } else { "Average" };
        format!("Global{kind}Pooling{}D", self.rank)
    }

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        if input_shape.len() != self.rank + 1 || input_shape[..self.rank].contains(&0) {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "{} needs per-sample inputs (spatial×{}, channels) with non-empty spatial axes, got {input_shape:?}",
                    self.class_name(),
                    self.rank
                ),
            ));
        }
        Ok(())
    }

    fn call(&self, _ctx: &mut CallCtx<'_>, inputs: &Tensor) -> Result<Tensor> {
        let axes: Vec<isize> = (1..=self.rank as isize).collect();
        Ok(if self.max {
            inputs.max(&axes, self.keepdims)
        } else {
            inputs.mean(&axes, self.keepdims)
        })
    }

    fn describe(&self) -> String {
        format!("keepdims={}", self.keepdims)
    }
}
