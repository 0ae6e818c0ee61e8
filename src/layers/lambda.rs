//! `Lambda`: a layer made of a Rust closure over tensors (Keras's
//! `layers.Lambda`), for computations without weights.

use crate::error::Result;
use crate::layer::{CallCtx, Layer};
use lossgraph_ir::Tensor;
use std::rc::Rc;

/// A closure over the layer's input tensors, emitted on every call. It has
/// no weights; its output shape is whatever the closure returns (it must
/// keep the batch axis).
///
/// ```
/// use lossgraph::layers::{Input, Lambda};
/// use lossgraph::Sequential;
/// # fn main() -> lossgraph::Result<()> {
/// let model = Sequential::new("m")
///     .add(Input::new(&[3]))
///     .add(Lambda::new(|x| x * 2.0 + 1.0))
///     .build()?;
/// assert_eq!(model.output_shapes(), vec![vec![3]]);
/// # Ok(()) }
/// ```
/// A function of traced tensors, shared by the clones of a [`Lambda`] or of
/// a model-level added loss.
pub(crate) type TensorsFn = Rc<dyn Fn(&[Tensor]) -> Tensor>;

#[derive(Clone)]
pub struct Lambda {
    f: TensorsFn,
    name: Option<String>,
}

impl Lambda {
    /// A layer computing `f(input)`.
    pub fn new(f: impl Fn(&Tensor) -> Tensor + 'static) -> Lambda {
        Lambda::multi(move |xs| f(&xs[0]))
    }

    /// A layer computing `f(inputs)` over all of its inputs (a merge of your own).
    pub fn multi(f: impl Fn(&[Tensor]) -> Tensor + 'static) -> Lambda {
        Lambda {
            f: Rc::new(f),
            name: None,
        }
    }

    /// The layer name.
    pub fn name(mut self, name: impl Into<String>) -> Lambda {
        self.name = Some(name.into());
        self
    }
}

impl Layer for Lambda {
    fn class_name(&self) -> String {
        "Lambda".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn call_multi(&self, ctx: &mut CallCtx<'_>, inputs: &[Tensor]) -> Result<Tensor> {
        if inputs.is_empty() {
            return Err(crate::Error::layer(ctx.path(), "Lambda got no inputs"));
        }
        Ok((self.f)(inputs))
    }
}
