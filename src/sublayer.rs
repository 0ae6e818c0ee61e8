//! [`Sublayer`]: a layer held by another layer (or by a custom model type)
//! and built on its first call, as Keras builds `self.dense = Dense(64)` the
//! first time `call` uses it.

use crate::layer::Layer;
use std::cell::{OnceCell, Ref, RefCell, RefMut};

/// A layer owned by another layer: call it with
/// [`CallCtx::call`](crate::CallCtx::call) (or `call_multi`,
/// `call_outputs`). Invariant: the name is set exactly when the layer has
/// been built, at its first call, which is during model construction (the
/// model traces each layer once then to learn its output shape).
///
/// ```
/// use lossgraph::layers::{Dense, Input};
/// use lossgraph::{CallCtx, Layer, Result, Sequential, Sublayer, Tensor};
///
/// struct Mlp {
///     hidden: Sublayer<Dense>,
///     out: Sublayer<Dense>,
/// }
///
/// impl Layer for Mlp {
///     fn call(&self, ctx: &mut CallCtx, x: &Tensor) -> Result<Tensor> {
///         let h = ctx.call(&self.hidden, x)?;
///         ctx.call(&self.out, &h)
///     }
/// }
///
/// # fn main() -> Result<()> {
/// let mlp = Mlp {
///     hidden: Sublayer::new(Dense::new(8).activation("relu")),
///     out: Sublayer::new(Dense::new(2)),
/// };
/// let model = Sequential::new("m").add(Input::new(&[3])).add(mlp).build()?;
/// let names: Vec<String> = model.variables().iter().map(|v| v.path.clone()).collect();
/// assert_eq!(names, ["mlp/dense/kernel", "mlp/dense/bias", "mlp/dense_1/kernel", "mlp/dense_1/bias"]);
/// # Ok(()) }
/// ```
pub struct Sublayer<L> {
    name: OnceCell<String>,
    layer: RefCell<L>,
}

impl<L: Layer> Sublayer<L> {
    /// Wraps a layer (not built yet).
    pub fn new(layer: L) -> Sublayer<L> {
        Sublayer {
            name: OnceCell::new(),
            layer: RefCell::new(layer),
        }
    }

    /// Its name within the parent (`dense_1`), once built.
    pub fn name(&self) -> Option<&str> {
        self.name.get().map(String::as_str)
    }

    /// The wrapped layer (to read its configuration). Fails only while the
    /// layer itself is being built (a layer reading its own wrapper).
    pub fn get(&self) -> crate::Result<Ref<'_, L>> {
        self.try_get()
            .map_err(|e| crate::Error::layer(self.name().unwrap_or("<sub-layer>"), e))
    }

    pub(crate) fn try_get(&self) -> Result<Ref<'_, L>, String> {
        self.layer
            .try_borrow()
            .map_err(|_| "a sub-layer is called while it is being built".to_string())
    }

    pub(crate) fn try_get_mut(&self) -> Result<RefMut<'_, L>, String> {
        self.layer
            .try_borrow_mut()
            .map_err(|_| "a sub-layer is built while it is being called".to_string())
    }

    pub(crate) fn set_name(&self, name: String) {
        // Called once, right after the build; a second set cannot happen
        // because a named sub-layer is never built again.
        let _ = self.name.set(name);
    }
}
