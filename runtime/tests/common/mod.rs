//! Training-step graphs for tests and measurements: a dense MLP with a loss,
//! an L2 added loss, gradients from `append_gradients`, and SGD or Adam
//! update outputs, built with the public `Builder`.
#![allow(dead_code)]

use lossgraph_compiler::append_gradients;
use lossgraph_ir::{Builder, Graph, Tensor, TensorType};

/// Hidden-layer activation.
#[derive(Clone, Copy)]
pub enum Act {
    Tanh,
    Relu,
}

/// Loss of the last layer.
#[derive(Clone, Copy)]
pub enum Loss {
    /// Mean squared error against `f32[batch, out]` targets `t`.
    Mse,
    /// Sparse softmax cross-entropy against `i32[batch]` labels `t`.
    SparseCe,
}

/// Optimiser.
#[derive(Clone, Copy)]
pub enum Opt {
    Sgd(f32),
    /// Keras Adam (bias-corrected) with learning rate; β1 0.9, β2 0.999, ε 1e-7.
    Adam(f32),
}

/// A full training step: forward, loss + `l2·Σw²` per kernel, gradients,
/// update outputs. Inputs `x` and `t`; params `dense_i/kernel`, `dense_i/bias`.
pub fn mlp_step(dims: &[usize], batch: usize, act: Act, loss: Loss, l2: f32, opt: Opt) -> Graph {
    let b = Builder::new("train_step");
    let x = b.input("x", TensorType::f32([batch, dims[0]]));
    let mut h = x;
    let mut params: Vec<Tensor> = Vec::new();
    let mut reg: Option<Tensor> = None;
    let layers = dims.len() - 1;
    for i in 0..layers {
        let w = b.param(
            &format!("dense_{i}/kernel"),
            TensorType::f32([dims[i], dims[i + 1]]),
        );
        let bias = b.param(&format!("dense_{i}/bias"), TensorType::f32([dims[i + 1]]));
        let z = h.matmul(&w) + &bias;
        h = if i + 1 == layers {
            z
        } else {
            match act {
                Act::Tanh => z.tanh(),
                Act::Relu => lossgraph_ir::nn::relu(&z),
            }
        };
        if l2 > 0.0 {
            let r = lossgraph_ir::nn::l2(&w, l2);
            reg = Some(match reg {
                Some(acc) => acc + &r,
                None => r,
            });
        }
        params.push(w);
        params.push(bias);
    }
    let out = *dims.last().unwrap();
    let data_loss = match loss {
        Loss::Mse => {
            let t = b.input("t", TensorType::f32([batch, out]));
            let d = h - &t;
            (d.clone() * &d).mean_all()
        }
        Loss::SparseCe => {
            let t = b.input("t", TensorType::i32([batch]));
            let logp = lossgraph_ir::nn::log_softmax(&h, -1);
            (logp * &t.one_hot(out)).sum(&[1], false).mean_all().neg()
        }
    };
    let total = match reg {
        Some(r) => data_loss + &r,
        None => data_loss,
    };
    b.output("loss", &total);
    let mut g = b.finish().unwrap();
    let pids: Vec<_> = params.iter().map(|p| p.id()).collect();
    append_gradients(&mut g, total.id(), &pids).unwrap();
    let b = Builder::from_graph(g);
    b.set_role(lossgraph_ir::Role::Update);
    let iter = match opt {
        Opt::Adam(_) => {
            let it = b.state("adam/iterations", TensorType::scalar());
            b.output("update/adam/iterations", &(it.clone() + 1.0));
            Some(it + 1.0)
        }
        Opt::Sgd(_) => None,
    };
    for p in &params {
        let name = match &b.graph().node(p.id()).op {
            lossgraph_ir::Op::Param { name } => name.clone(),
            _ => unreachable!(),
        };
        let gid = b.graph().output(&format!("grad/{name}")).unwrap();
        let gr = b.tensor(gid);
        let p = b.tensor(p.id());
        match opt {
            Opt::Sgd(lr) => b.output(&format!("update/{name}"), &(p - &(gr * lr))),
            Opt::Adam(lr) => {
                let ty = p.ty().clone();
                let m = b.state(&format!("adam/m/{name}"), ty.clone());
                let v = b.state(&format!("adam/v/{name}"), ty);
                let m2 = m * 0.9 + &(gr.clone() * 0.1);
                let v2 = v * 0.999 + &(gr.clone() * &gr * 0.001);
                let t = iter.clone().unwrap();
                // lr · sqrt(1 - β2^t) / (1 - β1^t), with β^t = exp(t·ln β).
                let c2 = (1.0f32 - &(t.clone() * 0.999f32.ln()).exp()).sqrt();
                let c1 = 1.0f32 - &(t * 0.9f32.ln()).exp();
                let lr_t = c2 / &c1 * lr;
                let step = m2.clone() * &lr_t / &(v2.sqrt() + 1e-7);
                b.output(&format!("update/adam/m/{name}"), &m2);
                b.output(&format!("update/adam/v/{name}"), &v2);
                b.output(&format!("update/{name}"), &(p - &step));
            }
        }
    }
    b.finish().unwrap()
}

/// Deterministic pseudo-random numbers: the workspace's SplitMix64.
pub use lossgraph_ir::rng::SplitMix64 as Rng;

/// Glorot-uniform kernels and zero biases for every `dense_i/*` param.
pub fn init_params(p: &mut lossgraph_runtime::Program, dims: &[usize], seed: u64) {
    let mut rng = Rng::new(seed);
    for i in 0..dims.len() - 1 {
        let lim = (6.0 / (dims[i] + dims[i + 1]) as f32).sqrt();
        let w: Vec<f32> = (0..dims[i] * dims[i + 1])
            .map(|_| rng.uniform(-lim, lim))
            .collect();
        let t = lossgraph_ir::HostTensor::f32(&[dims[i], dims[i + 1]], w).unwrap();
        p.set_var(&format!("dense_{i}/kernel"), &t).unwrap();
    }
}
