//! Shared helpers for the autodiff tests: a deterministic generator, feeds,
//! graph construction and evaluation on the reference interpreter.
#![allow(dead_code)]

use lossgraph_ir::interp::interpret;
use lossgraph_ir::{Builder, Graph, HostTensor, NodeId, Tensor};
use std::collections::HashMap;

/// A small deterministic generator: the workspace's SplitMix64.
pub use lossgraph_ir::rng::SplitMix64 as Rng;

/// Test-data draws on top of [`Rng`].
pub trait Draws {
    /// `n` values uniform in `[lo, hi)`.
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32>;
    /// `n` values with magnitude in `[lo, hi)` and random sign (away from 0).
    fn away_from_zero(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32>;
}

impl Draws for Rng {
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    fn away_from_zero(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let m = self.uniform(lo, hi);
                if self.next_u64() & 1 == 0 {
                    m
                } else {
                    -m
                }
            })
            .collect()
    }
}

/// An f32 host tensor.
pub fn t(shape: &[usize], v: Vec<f32>) -> HostTensor {
    HostTensor::f32(shape, v).expect("value count matches the shape")
}

/// Feeds from (name, tensor) pairs.
pub fn feeds(pairs: Vec<(&str, HostTensor)>) -> HashMap<String, HostTensor> {
    pairs.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
}

/// Evaluates `g` and returns its outputs by name.
pub fn run(g: &Graph, feeds: &HashMap<String, HostTensor>) -> HashMap<String, HostTensor> {
    interpret(g, feeds).unwrap().into_iter().collect()
}

/// The f32 values of output `name`.
pub fn values(out: &HashMap<String, HostTensor>, name: &str) -> Vec<f32> {
    out.get(name)
        .unwrap_or_else(|| panic!("no output {name}"))
        .as_f32()
        .unwrap()
        .to_vec()
}

/// Asserts elementwise closeness with an absolute tolerance.
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
        );
    }
}

/// Finishes a builder whose tensors the caller has dropped.
pub fn finish(b: Builder) -> Graph {
    b.finish().unwrap()
}

/// Ids of tensors.
pub fn ids(ts: &[&Tensor]) -> Vec<NodeId> {
    ts.iter().map(|t| t.id()).collect()
}
