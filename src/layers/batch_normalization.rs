//! `BatchNormalization`: normalizes with batch statistics in training and
//! with moving statistics at inference.

use super::norm_axis;
use crate::error::{Error, Result};
use crate::initializers::Init;
use crate::layer::{BuildCtx, CallCtx, Layer};
use crate::regularizers::Regularizer;
use lossgraph_ir::Tensor;

/// Keras `BatchNormalization` (SEMANTICS.md §6.5). With `axis` the feature
/// axis and the statistics over every other axis (N; N·H·W for images; N·T
/// for sequences):
/// - training (and `trainable`): `mean`, biased `var` of the batch, the
///   gradient flowing through both; `y = gamma·(x − mean)/√(var + ε) + beta`;
///   then `moving ← moving·momentum + batch·(1 − momentum)` for the mean and
///   the (biased) variance, assigned inside the compiled step;
/// - inference, or a layer with `trainable = false` even in training: the
///   same formula with `moving_mean`, `moving_variance`.
///
/// `synchronized(true)` (Keras's `synchronized=True`) computes the training
/// statistics over the global batch of a data-parallel step as Keras's
/// TensorFlow backend does: `mean = E[x]`, `var = max(E[x²] − mean², 0)`
/// with both expectations averaged over the ranks
/// ([`CallCtx::global_batch_mean`], one `all_reduce_mean` each; on one rank
/// no collective, the same one-pass formula). The one-pass variance loses
/// relative precision where `mean² ≫ var` (cancellation of order
/// `ε_f32·mean²/var`), which is why the default two-pass `E[(x − mean)²]`
/// is kept for per-rank statistics.
///
/// Variables in Keras's order: `gamma` (if `scale`), `beta` (if `center`),
/// `moving_mean`, `moving_variance` — the last two are state (never trained).
#[derive(Clone, Debug)]
pub struct BatchNormalization {
    axis: isize,
    momentum: f32,
    epsilon: f32,
    center: bool,
    scale: bool,
    beta_initializer: Init,
    gamma_initializer: Init,
    moving_mean_initializer: Init,
    moving_variance_initializer: Init,
    beta_regularizer: Option<Regularizer>,
    gamma_regularizer: Option<Regularizer>,
    trainable: bool,
    synchronized: bool,
    name: Option<String>,
    /// Set by `build`: the resolved feature axis (batch axis 0 included),
    /// and the input's rank (batch axis included) with its extent on that
    /// axis, which every call must match.
    resolved: usize,
    built: (usize, usize),
}

impl Default for BatchNormalization {
    fn default() -> Self {
        BatchNormalization::new()
    }
}

impl BatchNormalization {
    /// Keras's defaults: axis −1, momentum 0.99, epsilon 1e-3, center and scale.
    pub fn new() -> BatchNormalization {
        BatchNormalization {
            axis: -1,
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            beta_initializer: Init::Zeros,
            gamma_initializer: Init::Ones,
            moving_mean_initializer: Init::Zeros,
            moving_variance_initializer: Init::Ones,
            beta_regularizer: None,
            gamma_regularizer: None,
            trainable: true,
            synchronized: false,
            name: None,
            resolved: 0,
            built: (0, 0),
        }
    }

    /// The feature axis (negative counts from the end; not the batch axis).
    pub fn axis(mut self, axis: isize) -> Self {
        self.axis = axis;
        self
    }
    /// The moving-average momentum (the weight of the old value).
    pub fn momentum(mut self, m: f32) -> Self {
        self.momentum = m;
        self
    }
    /// Added to the variance before the square root.
    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self
    }
    /// The `moving_mean` initialiser (zeros).
    pub fn moving_mean_initializer(mut self, i: Init) -> Self {
        self.moving_mean_initializer = i;
        self
    }
    /// The `moving_variance` initialiser (ones).
    pub fn moving_variance_initializer(mut self, i: Init) -> Self {
        self.moving_variance_initializer = i;
        self
    }
    /// `false` freezes gamma and beta and normalizes with the moving
    /// statistics even in training (Keras's `trainable=False`; freezing the
    /// layer with `Model::set_trainable` does the same, see
    /// [`CallCtx::trainable`]). A layer with neither gamma nor beta is
    /// frozen only by this flag.
    pub fn trainable(mut self, yes: bool) -> Self {
        self.trainable = yes;
        self
    }
    /// `true`: training statistics over the global batch of a
    /// data-parallel step (see the type's docs); default `false`, per-rank.
    pub fn synchronized(mut self, yes: bool) -> Self {
        self.synchronized = yes;
        self
    }
}

layer_setters!(BatchNormalization: name, affine);

impl Layer for BatchNormalization {
    fn class_name(&self) -> String {
        "BatchNormalization".into()
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn build(&mut self, ctx: &mut BuildCtx<'_>, input_shape: &[usize]) -> Result<()> {
        let axis = norm_axis(ctx.path(), self.axis, input_shape)?;
        self.resolved = axis;
        let c = [input_shape[axis - 1]];
        self.built = (input_shape.len() + 1, c[0]);
        if self.scale {
            ctx.add_weight_with(
                "gamma",
                &c,
                self.gamma_initializer.clone(),
                self.trainable,
                self.gamma_regularizer.clone(),
            )?;
        }
        if self.center {
            ctx.add_weight_with(
                "beta",
                &c,
                self.beta_initializer.clone(),
                self.trainable,
                self.beta_regularizer.clone(),
            )?;
        }
        ctx.add_state("moving_mean", &c, self.moving_mean_initializer.clone())?;
        ctx.add_state(
            "moving_variance",
            &c,
            self.moving_variance_initializer.clone(),
        )?;
        Ok(())
    }
    fn call(&self, ctx: &mut CallCtx<'_>, x: &Tensor) -> Result<Tensor> {
        let rank = x.rank();
        let a = self.resolved;
        // A layer (or a nested model holding it) called again on another
        // shape than it was built for: Keras's input spec refuses it too.
        let (built_rank, c) = self.built;
        if rank != built_rank || x.shape()[a] != c {
            return Err(Error::layer(
                ctx.path(),
                format!(
                    "BatchNormalization was built for rank-{built_rank} inputs with {c} features on axis {a}, called on {}",
                    x.ty()
                ),
            ));
        }
        // The `(C,)` variables reshaped to broadcast along axis `a`.
        let mut bshape = vec![1usize; rank];
        bshape[a] = c;
        let along = |t: &Tensor| t.reshape(&bshape);
        let (mean, var) = if ctx.training() && self.trainable && ctx.trainable() {
            let axes: Vec<isize> = (0..rank).filter(|&i| i != a).map(|i| i as isize).collect();
            let (mean, var) = if self.synchronized {
                let mean = ctx.global_batch_mean(&x.mean(&axes, true));
                let ex2 = ctx.global_batch_mean(&(x * x).mean(&axes, true));
                (mean.clone(), (ex2 - &mean * &mean).maximum(0.0))
            } else {
                let mean = x.mean(&axes, true);
                let d = x - &mean;
                let var = (&d * &d).mean(&axes, true);
                (mean, var)
            };
            let m = self.momentum;
            let mm = ctx.weight("moving_mean").clone();
            let mv = ctx.weight("moving_variance").clone();
            ctx.assign("moving_mean", &(&mm * m + mean.reshape(&[c]) * (1.0 - m)));
            ctx.assign(
                "moving_variance",
                &(&mv * m + var.reshape(&[c]) * (1.0 - m)),
            );
            (mean, var)
        } else {
            (
                along(ctx.weight("moving_mean")),
                along(ctx.weight("moving_variance")),
            )
        };
        let mut inv = (var + self.epsilon).sqrt().recip();
        if self.scale {
            inv = inv * along(ctx.weight("gamma"));
        }
        let mut y = (x - &mean) * &inv;
        if self.center {
            y = y + along(ctx.weight("beta"));
        }
        Ok(y)
    }
    fn describe(&self) -> String {
        format!(
            "axis={}, momentum={}, epsilon={}{}",
            self.axis,
            self.momentum,
            self.epsilon,
            if self.synchronized {
                ", synchronized"
            } else {
                ""
            }
        )
    }
}
