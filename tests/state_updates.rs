//! Layer state updated with `CallCtx::assign` (a running mean, the way
//! BatchNormalization keeps its moving statistics): values checked by hand
//! over two training steps, through `train_on_batch`, `fit` and the custom
//! loop; untouched by `evaluate`/`predict`, never differentiated, never
//! touched by the optimiser (AdamW's decay included).

// `&[x.clone()]` reads like Keras's `[x]`.
#![allow(clippy::cloned_ref_to_slice_refs)]

use lossgraph::ir::{names, Role};
use lossgraph::layers::Input;
use lossgraph::{
    BuildCtx, CallCtx, CompileOptions, Engine, FitOptions, HostTensor, Init, Layer, Loss, Model,
    Optimizer, Purpose, Result, Sequential, Tensor, VariableKind,
};

const MOMENTUM: f32 = 0.9;
const MEAN: &str = "running/mean";
const KERNEL: &str = "running/kernel";

/// `y = (x - mean) · kernel`; in training, `mean ← m·mean + (1-m)·batch_mean(x)`.
struct RunningMean;

impl Layer for RunningMean {
    fn name(&self) -> Option<&str> {
        Some("running")
    }

    fn build(&mut self, ctx: &mut BuildCtx, input_shape: &[usize]) -> Result<()> {
        let f = input_shape[0];
        ctx.add_weight("kernel", &[f, 1], Init::Ones, true)?;
        ctx.add_state("mean", &[f], Init::Zeros)?;
        Ok(())
    }

    fn call(&self, ctx: &mut CallCtx, x: &Tensor) -> Result<Tensor> {
        let mean = ctx.weight("mean").clone();
        let y = (x - &mean).matmul(ctx.weight("kernel"));
        let batch_mean = x.mean(&[0], false);
        ctx.assign("mean", &(&mean * MOMENTUM + batch_mean * (1.0 - MOMENTUM)));
        Ok(y)
    }
}

fn ht(shape: &[usize], v: Vec<f32>) -> HostTensor {
    HostTensor::f32(shape, v).unwrap()
}

fn model(opt: Optimizer, engine: Engine) -> Model {
    let mut m = Sequential::new("stateful")
        .add(Input::new(&[2]))
        .add(RunningMean)
        .build()
        .unwrap();
    m.compile(CompileOptions::new(opt, Loss::MeanSquaredError).engine(engine))
        .unwrap();
    m
}

/// Two batches of two samples and their targets.
fn batches() -> [(HostTensor, HostTensor); 2] {
    [
        (
            ht(&[2, 2], vec![1., 2., 3., 4.]),
            ht(&[2, 1], vec![1., -1.]),
        ),
        (
            ht(&[2, 2], vec![5., -6., 7., 8.]),
            ht(&[2, 1], vec![0.5, 2.]),
        ),
    ]
}

/// The running mean after the two batches, by hand:
/// batch means [2, 3] then [6, 1]; m1 = 0.1·[2, 3]; m2 = 0.9·m1 + 0.1·[6, 1].
const M1: [f32; 2] = [0.2, 0.3];
const M2: [f32; 2] = [0.78, 0.37];

fn values(m: &Model, path: &str) -> Vec<f32> {
    m.get_weight(path).unwrap().as_f32().unwrap().to_vec()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{what}: got {got:?}, want {want:?}");
    }
}

/// Evaluate and predict leave the state alone, and predict uses it:
/// `pred = (x - mean) · kernel` with the host values.
fn check_inference_keeps_state(m: &mut Model) {
    let (x, y) = &batches()[1];
    let mean = values(m, MEAN);
    let k = values(m, KERNEL);
    m.evaluate(&[x.clone()], &[y.clone()], 2).unwrap();
    let pred = m.predict(&[x.clone()], 1).unwrap();
    assert_close(&values(m, MEAN), &mean, "mean after evaluate/predict");
    let xs = x.as_f32().unwrap();
    let want: Vec<f32> = (0..2)
        .map(|i| (xs[2 * i] - mean[0]) * k[0] + (xs[2 * i + 1] - mean[1]) * k[1])
        .collect();
    assert_close(pred[0].as_f32().unwrap(), &want, "predict");
}

#[test]
fn train_on_batch_updates_the_running_mean_and_inference_keeps_it() {
    for engine in [Engine::Interpreter, Engine::Jit] {
        let mut m = model(Optimizer::adamw(0.1), engine);
        let v = m.variables().iter().find(|v| v.path == MEAN).unwrap();
        assert_eq!((v.kind, v.trainable), (VariableKind::State, false));
        assert_eq!(m.trainable_weight_names(), vec![KERNEL.to_string()]);
        let [(x1, y1), (x2, y2)] = batches();
        m.train_on_batch(&[x1], &[y1]).unwrap();
        assert_close(&values(&m, MEAN), &M1, "mean after one step");
        m.train_on_batch(&[x2], &[y2]).unwrap();
        // Exactly the hand value: AdamW's decay and update never touch it.
        assert_close(&values(&m, MEAN), &M2, "mean after two steps");
        check_inference_keeps_state(&mut m);
    }
}

#[test]
fn the_state_update_is_the_training_programs_only_and_gets_no_gradient() {
    let m = model(Optimizer::adamw(0.1), Engine::Interpreter);
    let update = names::update(MEAN);
    for purpose in [Purpose::Train, Purpose::Gradients] {
        let g = m.graph_unoptimized(purpose, 2).unwrap();
        let id = g
            .output(&update)
            .expect("training programs write the state");
        assert_eq!(g.node(id).role, Role::StateUpdate, "{purpose:?}");
        assert!(g.output(&names::grad(MEAN)).is_none(), "{purpose:?}");
        // No optimiser slot exists for the state variable.
        assert!(
            g.params()
                .iter()
                .all(|(n, _)| n == MEAN || !n.ends_with(MEAN)),
            "{purpose:?}: {:?}",
            g.params()
        );
    }
    assert!(m
        .graph_unoptimized(Purpose::Gradients, 2)
        .unwrap()
        .output(&names::grad(KERNEL))
        .is_some());
    for purpose in [Purpose::Evaluate, Purpose::Predict] {
        let g = m.graph_unoptimized(purpose, 2).unwrap();
        assert!(
            g.outputs()
                .iter()
                .all(|o| names::updated_variable(&o.0).is_none()),
            "{purpose:?} writes a variable"
        );
    }
    let apply = m.graph_unoptimized(Purpose::Apply, 0).unwrap();
    assert!(apply.output(&update).is_none());
}

/// With SGD the kernel after each step is checkable by hand: the MSE
/// gradient is `2/n · Σ (pred - y)·(x - mean)` with the mean *before* the
/// step (the assign takes effect after it).
#[test]
fn fit_and_the_custom_loop_match_the_hand_computed_step() {
    let lr = 0.01f32;
    let [(x1, y1), (x2, y2)] = batches();
    let mut k = [1.0f32, 1.0];
    let mut mean = [0.0f32, 0.0];
    for ((x, y), next_mean) in [(&x1, &y1), (&x2, &y2)].into_iter().zip([M1, M2]) {
        let (xs, ys) = (x.as_f32().unwrap(), y.as_f32().unwrap());
        let mut grad = [0.0f32; 2];
        for i in 0..2 {
            let d = [xs[2 * i] - mean[0], xs[2 * i + 1] - mean[1]];
            let err = d[0] * k[0] + d[1] * k[1] - ys[i];
            for j in 0..2 {
                grad[j] += 2.0 / 2.0 * err * d[j];
            }
        }
        k = [k[0] - lr * grad[0], k[1] - lr * grad[1]];
        mean = next_mean;
    }

    // fit: one epoch of two unshuffled batches.
    let mut fitted = model(Optimizer::sgd(lr), Engine::Jit);
    let x = ht(&[4, 2], vec![1., 2., 3., 4., 5., -6., 7., 8.]);
    let y = ht(&[4, 1], vec![1., -1., 0.5, 2.]);
    let opts = FitOptions::new()
        .batch_size(2)
        .shuffle(false, 0)
        .verbose(false);
    fitted.fit(&[x], &[y], opts).unwrap();
    assert_close(&values(&fitted, MEAN), &M2, "fit: mean");
    assert_close(&values(&fitted, KERNEL), &k, "fit: kernel");
    check_inference_keeps_state(&mut fitted);

    // The custom loop: compute_gradients runs the state update, apply_gradients the optimiser.
    let mut looped = model(Optimizer::sgd(lr), Engine::Jit);
    for ((x, y), want) in [(&x1, &y1), (&x2, &y2)].into_iter().zip([M1, M2]) {
        let g = looped
            .compute_gradients(&[x.clone()], &[y.clone()])
            .unwrap();
        let names: Vec<&str> = g.grads.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec![KERNEL], "only the weight gets a gradient");
        assert_close(&values(&looped, MEAN), &want, "custom loop: mean");
        looped.apply_gradients(&g.grads).unwrap();
        assert_close(&values(&looped, MEAN), &want, "apply keeps the mean");
    }
    assert_close(&values(&looped, KERNEL), &k, "custom loop: kernel");
    assert_eq!(looped.iterations(), 2);
}

/// A frozen layer's state stays untrainable; assigning a weight is an error
/// naming the layer and the weight.
#[test]
fn state_is_never_trainable_and_weights_cannot_be_assigned() {
    let mut m = model(Optimizer::sgd(0.1), Engine::Interpreter);
    m.set_trainable("running", false).unwrap();
    m.set_trainable("running", true).unwrap();
    assert_eq!(m.trainable_weight_names(), vec![KERNEL.to_string()]);

    struct AssignsKernel;
    impl Layer for AssignsKernel {
        fn build(&mut self, ctx: &mut BuildCtx, input_shape: &[usize]) -> Result<()> {
            ctx.add_weight("kernel", &[input_shape[0], 1], Init::Ones, true)?;
            Ok(())
        }
        fn call(&self, ctx: &mut CallCtx, x: &Tensor) -> Result<Tensor> {
            let k = ctx.weight("kernel").clone();
            ctx.assign("kernel", &(&k * 2.0));
            Ok(x.matmul(&k))
        }
    }
    let err = Sequential::new("bad")
        .add(Input::new(&[2]))
        .add(AssignsKernel)
        .build()
        .err()
        .expect("assigning a weight fails")
        .to_string();
    assert!(err.contains("assigns_kernel"), "{err}");
    assert!(err.contains("'kernel' is a weight"), "{err}");
}

/// A shared layer's second call reads the first call's assigned value, as
/// Keras's sequential `assign` semantics give:
/// m1 = 0.9·0 + 0.1·mean(a), m2 = 0.9·m1 + 0.1·mean(b).
#[test]
fn a_shared_layers_second_call_sees_the_first_calls_update() {
    use lossgraph::layers::Add;
    use lossgraph::Functional;
    let mut f = Functional::new("shared");
    let a = f.input(Input::new(&[2]).name("a")).unwrap();
    let b = f.input(Input::new(&[2]).name("b")).unwrap();
    let layer = f.add_layer(RunningMean).unwrap();
    let ya = f.call(layer, &[a]).unwrap();
    let yb = f.call(layer, &[b]).unwrap();
    let y = f.apply(Add::new().name("sum"), &[ya, yb]).unwrap();
    let mut m = f.build(&[y]).unwrap();
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.0),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    let xa = ht(&[2, 2], vec![1., 2., 3., 4.]); // mean [2, 3]
    let xb = ht(&[2, 2], vec![5., -6., 7., 8.]); // mean [6, 1]
    m.train_on_batch(&[xa, xb], &[ht(&[2, 1], vec![0., 0.])])
        .unwrap();
    assert_close(&values(&m, MEAN), &M2, "mean after one step of two calls");
}
