//! [`ModelSpec`] → a front-end [`Model`] made of the same layer objects a
//! Rust user writes (`Dense::new(8).activation(..).name(..)`), plus the
//! conversion of compile settings to [`CompileOptions`].

use super::compile::{CompileSpec, LossKind, LossSpec, OptimizerSpec};
use super::error::{KerasError, Result};
use super::registry;
use super::spec::{
    ActivationSpec, InitializerSpec, LayerKind, LayerSpec, ModelKind, ModelSpec, RegularizerSpec,
};
use crate::layers;
use crate::{Activation, CompileOptions, Functional, Init, Layer, Loss, Model, Optimizer};
use crate::{Regularizer, Sequential, SymbolicTensor};
use std::collections::HashMap;

/// Applies the keys Dense and the convolutions share ([`spec::KernelKeys`]'s
/// fields, as references) and the layer name through the builder methods of
/// the same names; the layer with them set.
macro_rules! kernel_keys {
    ($layer:expr, $name:expr, $activation:expr, $use_bias:expr, $kernel_init:expr,
     $bias_init:expr, $kernel_reg:expr, $bias_reg:expr, $activity_reg:expr) => {{
        use $crate::keras::build::{activation, initializer, regularizer};
        let mut l = $layer
            .activation(activation(*$activation))
            .use_bias(*$use_bias)
            .kernel_initializer(initializer(*$kernel_init))
            .bias_initializer(initializer(*$bias_init))
            .name($name);
        if let Some(r) = $kernel_reg {
            l = l.kernel_regularizer(regularizer(*r));
        }
        if let Some(r) = $bias_reg {
            l = l.bias_regularizer(regularizer(*r));
        }
        if let Some(r) = $activity_reg {
            l = l.activity_regularizer(regularizer(*r));
        }
        l
    }};
}
pub(super) use kernel_keys;

/// The front-end activation for a Keras activation.
pub fn activation(a: ActivationSpec) -> Activation {
    match a {
        ActivationSpec::Linear => Activation::Linear,
        ActivationSpec::Relu => Activation::Relu,
        ActivationSpec::Tanh => Activation::Tanh,
        ActivationSpec::Sigmoid => Activation::Sigmoid,
        ActivationSpec::Softmax => Activation::Softmax,
        ActivationSpec::Gelu => Activation::Gelu,
    }
}

/// The front-end regulariser for a Keras regulariser.
pub fn regularizer(r: RegularizerSpec) -> Regularizer {
    match r {
        RegularizerSpec::L1(a) => Regularizer::L1(a),
        RegularizerSpec::L2(b) => Regularizer::L2(b),
        RegularizerSpec::L1L2 { l1, l2 } => Regularizer::L1L2 { l1, l2 },
    }
}

/// The front-end initialiser. Per-initialiser seeds are not reproduced
/// (lossgraph seeds the whole model); imported weights usually come from a file.
pub fn initializer(i: InitializerSpec) -> Init {
    match i {
        InitializerSpec::GlorotUniform { .. } => Init::GlorotUniform,
        InitializerSpec::HeNormal { .. } => Init::HeNormal,
        InitializerSpec::RandomNormal { mean, stddev, .. } => Init::Normal { mean, stddev },
        InitializerSpec::RandomUniform { minval, maxval, .. } => Init::Uniform {
            lo: minval,
            hi: maxval,
        },
        InitializerSpec::Zeros => Init::Zeros,
        InitializerSpec::Ones => Init::Ones,
    }
}

/// The front-end loss.
pub fn loss(l: &LossSpec) -> Loss {
    match l.kind {
        LossKind::MeanSquaredError => Loss::MeanSquaredError,
        LossKind::MeanAbsoluteError => Loss::MeanAbsoluteError,
        LossKind::Huber => Loss::Huber { delta: l.delta },
        LossKind::BinaryCrossentropy => Loss::BinaryCrossentropy {
            from_logits: l.from_logits,
        },
        LossKind::CategoricalCrossentropy => Loss::CategoricalCrossentropy {
            from_logits: l.from_logits,
        },
        LossKind::SparseCategoricalCrossentropy => Loss::SparseCategoricalCrossentropy {
            from_logits: l.from_logits,
        },
    }
}

/// The front-end optimizer with exactly the given hyper-parameters.
pub fn optimizer(o: &OptimizerSpec) -> Optimizer {
    match *o {
        OptimizerSpec::Sgd {
            learning_rate,
            momentum,
            nesterov,
        } => Optimizer::sgd(learning_rate)
            .momentum(momentum)
            .nesterov(nesterov),
        OptimizerSpec::Adam {
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
            amsgrad,
        } => Optimizer::adam(learning_rate)
            .betas(beta_1, beta_2)
            .epsilon(epsilon)
            .amsgrad(amsgrad),
        OptimizerSpec::AdamW {
            learning_rate,
            weight_decay,
            beta_1,
            beta_2,
            epsilon,
            amsgrad,
        } => Optimizer::adam(learning_rate)
            .betas(beta_1, beta_2)
            .epsilon(epsilon)
            .amsgrad(amsgrad)
            .weight_decay(Some(weight_decay)),
        OptimizerSpec::RmsProp {
            learning_rate,
            rho,
            momentum,
            epsilon,
            centered,
        } => Optimizer::rmsprop(learning_rate)
            .rho(rho)
            .momentum(momentum)
            .epsilon(epsilon)
            .centered(centered),
    }
}

/// `compile` options for a compile spec (losses per output, loss weights, optimizer).
pub fn compile_options(c: &CompileSpec) -> CompileOptions {
    let mut opts = CompileOptions::with_optimizer(optimizer(&c.optimizer));
    for (out, l, w) in &c.losses {
        opts = opts.loss_for(out, loss(l)).loss_weight(out, *w);
    }
    opts
}

/// The layer object for one layer (its class's [`registry`] entry builds it).
pub fn layer(l: &LayerSpec) -> Result<Box<dyn Layer>> {
    registry::build_layer(&l.class, &l.name, &l.kind)
}

/// Builds the model described by `spec`; `seed` seeds the initialisers
/// (weights are usually replaced from a file afterwards).
pub fn build_model(spec: &ModelSpec, seed: u64) -> Result<Model> {
    if spec.kind == ModelKind::Sequential {
        let mut s = Sequential::new(spec.name.clone()).seed(seed);
        for l in &spec.layers {
            s.push(layer(l)?);
        }
        return freeze(spec, s.build()?);
    }
    let mut f = Functional::new(spec.name.clone()).seed(seed);
    // Every tensor a call returns, by (layer, call): `keras_history`'s
    // `[layer, node_index, tensor_index]` picks one.
    let mut values: HashMap<(String, usize), Vec<SymbolicTensor>> = HashMap::new();
    // References were validated by the parser and `call_order` only yields
    // calls whose inputs exist, so a missing call is an importer bug; a
    // tensor index past the layer's outputs is an error in the file.
    let get = |values: &HashMap<(String, usize), Vec<SymbolicTensor>>,
               r: &super::spec::TensorRef| {
        let ctx = format!("model '{}'", spec.name);
        let outs = values.get(&(r.layer.clone(), r.node)).ok_or_else(|| {
            KerasError::invalid(
                &ctx,
                format!(
                    "tensor {}[{}] is used before it is computed",
                    r.layer, r.node
                ),
            )
        })?;
        outs.get(r.tensor).copied().ok_or_else(|| {
            KerasError::invalid(
                &ctx,
                format!(
                    "keras_history [{}, {}, {}] refers to output {} of a call that returns {} tensor(s)",
                    r.layer,
                    r.node,
                    r.tensor,
                    r.tensor,
                    outs.len()
                ),
            )
        })
    };
    for r in &spec.inputs {
        let Some(LayerSpec {
            kind: LayerKind::Input { shape, dtype },
            ..
        }) = spec.layer(&r.layer)
        else {
            return Err(KerasError::invalid(
                format!("model '{}'", spec.name),
                format!("input '{}' is not an InputLayer", r.layer),
            ));
        };
        let t = f.input(
            layers::Input::new(shape)
                .dtype(*dtype)
                .name(r.layer.as_str()),
        )?;
        values.insert((r.layer.clone(), 0), vec![t]);
    }
    let mut ids = HashMap::new();
    for l in &spec.layers {
        if !matches!(l.kind, LayerKind::Input { .. }) {
            ids.insert(l.name.clone(), f.add_boxed(layer(l)?)?);
        }
    }
    for (li, ci) in spec.call_order()? {
        let l = &spec.layers[li];
        let args: Vec<SymbolicTensor> = l.calls[ci]
            .iter()
            .map(|r| get(&values, r))
            .collect::<Result<_>>()?;
        let ts = f.call_outputs(ids[&l.name], &args)?;
        values.insert((l.name.clone(), ci), ts);
    }
    let outs: Vec<SymbolicTensor> = spec
        .outputs
        .iter()
        .map(|r| get(&values, r))
        .collect::<Result<_>>()?;
    freeze(spec, f.build(&outs)?)
}

/// Freezes the weights of every layer the JSON marks `trainable: false`
/// (Keras's `layer.trainable = False`).
fn freeze(spec: &ModelSpec, mut model: Model) -> Result<Model> {
    for l in spec.layers.iter().filter(|l| !l.trainable) {
        model.set_trainable(&l.name, false)?;
    }
    Ok(model)
}

/// Reads, parses and builds a `model.json` file.
pub fn load_model(path: &std::path::Path, seed: u64) -> Result<Model> {
    build_model(&ModelSpec::from_file(path)?, seed)
}
