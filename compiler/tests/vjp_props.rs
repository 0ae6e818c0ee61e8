//! Every primitive's VJP checked by central finite differences on random
//! shapes and values (64 cases per op family). Values are drawn from each
//! op's smooth domain: away from 0 for abs/sign/log/sqrt/recip/div, and on
//! two interleaved grids (|a − b| ≥ 0.25) for max/min/comparisons and
//! distinct values for reduce_max, so no finite-difference step crosses a
//! kink or a tie. The output is contracted with a pseudo-random cotangent by
//! the checker, so each case checks the full vector-Jacobian product.

mod common;

use common::{feeds, t, Draws, Rng};
use lossgraph_compiler::{check_gradients, grad, GradCheckOptions};
use lossgraph_ir::{BinaryOp, Builder, HostTensor, Tensor, TensorType, UnaryOp};
use proptest::prelude::*;
use std::collections::HashMap;

const TOL: f64 = 1e-2;

/// Names `y` as the output "y" and checks its VJP w.r.t. the named inputs.
fn check(b: &Builder, y: &Tensor, wrt: &[&str], f: &HashMap<String, HostTensor>) {
    check_with(b, y, wrt, f, &GradCheckOptions::default());
}

fn check_with(
    b: &Builder,
    y: &Tensor,
    wrt: &[&str],
    f: &HashMap<String, HostTensor>,
    opts: &GradCheckOptions,
) {
    b.output("y", y);
    let g = b.clone().finish().unwrap();
    let r = check_gradients(&g, "y", wrt, f, opts).unwrap();
    assert!(r.passed(TOL), "{r}\n{}", lossgraph_ir::text::print(&g));
    assert!(r
        .vars
        .iter()
        .all(|v| v.checked == v.shape.iter().product::<usize>()));
}

fn shape_strategy(max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=4, 1..=max_rank)
}

/// A shape that broadcasts to `s`: some extents set to 1, some leading axes dropped.
fn broadcast_source(s: &[usize], rng: &mut Rng) -> Vec<usize> {
    let drop = rng.below(s.len() + 1);
    s[drop..]
        .iter()
        .map(|&d| if rng.below(2) == 0 { 1 } else { d })
        .collect()
}

/// `n` values on the grid `offset + 0.5k`, `k ∈ -4..4`.
fn grid(rng: &mut Rng, n: usize, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|_| offset + 0.5 * (rng.below(9) as f32 - 4.0))
        .collect()
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn unary_vjps(op in 0usize..UnaryOp::ALL.len(), shape in shape_strategy(3), seed: u64) {
        let u = UnaryOp::ALL[op];
        let mut rng = Rng::new(seed);
        let n = numel(&shape);
        let v = match u {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Recip => rng.vec(n, 0.3, 3.0),
            UnaryOp::Abs | UnaryOp::Sign => rng.away_from_zero(n, 0.2, 2.0),
            UnaryOp::Exp => rng.vec(n, -2.0, 2.0),
            _ => rng.vec(n, -2.5, 2.5),
        };
        let b = Builder::new("unary");
        let x = b.input("x", TensorType::f32(&shape));
        let y = match u {
            UnaryOp::Neg => x.neg(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.log(),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sigmoid => x.sigmoid(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Recip => x.recip(),
            UnaryOp::Sign => x.sign(),
            UnaryOp::Erf => x.erf(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
        };
        check(&b, &y, &["x"], &feeds(vec![("x", t(&shape, v))]));
    }

    #[test]
    fn binary_vjps_with_broadcasting(
        op in 0usize..BinaryOp::ALL.len(),
        shape in shape_strategy(3),
        swap: bool,
        seed: u64,
    ) {
        let bop = BinaryOp::ALL[op];
        let mut rng = Rng::new(seed);
        let sa = shape.clone();
        let sb = broadcast_source(&shape, &mut rng);
        let (sa, sb) = if swap { (sb, sa) } else { (sa, sb) };
        let kinked = matches!(bop, BinaryOp::Max | BinaryOp::Min) || bop.is_comparison();
        let (va, vb) = if kinked {
            // a on the grid 0.25 + 0.5k, b on 0.5k: |a - b| ≥ 0.25 everywhere.
            (grid(&mut rng, numel(&sa), 0.25), grid(&mut rng, numel(&sb), 0.0))
        } else if bop == BinaryOp::Pow {
            // A positive base (ln x in the exponent's gradient).
            (rng.vec(numel(&sa), 0.5, 2.0), rng.vec(numel(&sb), -2.0, 2.0))
        } else if bop == BinaryOp::Div {
            (rng.vec(numel(&sa), -2.0, 2.0), rng.away_from_zero(numel(&sb), 0.5, 2.0))
        } else {
            (rng.vec(numel(&sa), -2.0, 2.0), rng.vec(numel(&sb), -2.0, 2.0))
        };
        let b = Builder::new("binary");
        let a = b.input("a", TensorType::f32(&sa));
        let c = b.input("b", TensorType::f32(&sb));
        let y = a.binary(bop, &c);
        check(&b, &y, &["a", "b"], &feeds(vec![("a", t(&sa, va)), ("b", t(&sb, vb))]));
    }

    #[test]
    fn same_operand_twice(op in 0usize..6, shape in shape_strategy(2), seed: u64) {
        // x∘x: both operand slots accumulate into one gradient.
        let bop = BinaryOp::ALL[op];
        let mut rng = Rng::new(seed);
        let v = rng.away_from_zero(numel(&shape), 0.3, 2.0);
        let b = Builder::new("twice");
        let x = b.input("x", TensorType::f32(&shape));
        let y = x.binary(bop, &x) + x.exp();
        check(&b, &y, &["x"], &feeds(vec![("x", t(&shape, v))]));
    }

    #[test]
    fn select_vjp(shape in shape_strategy(3), seed: u64, compare: bool) {
        let mut rng = Rng::new(seed);
        let n = numel(&shape);
        let sb = broadcast_source(&shape, &mut rng);
        let b = Builder::new("select");
        let m = b.input("m", TensorType::f32(&shape));
        let a = b.input("a", TensorType::f32(&shape));
        let c = b.input("b", TensorType::f32(&sb));
        let mask = if compare { m.gt(0.0) } else { m.clone() };
        let y = mask.select(&a, &c);
        // Direct masks include exact zeros (false) but are not differentiated
        // (a zero mask flips under any perturbation); compared masks stay
        // away from 0 and are checked (their gradient is zero).
        let mv: Vec<f32> = if compare {
            rng.away_from_zero(n, 0.5, 1.0)
        } else {
            (0..n).map(|_| if rng.below(3) == 0 { 0.0 } else { rng.uniform(-1.0, 1.0) }).collect()
        };
        let f = feeds(vec![
            ("m", t(&shape, mv)),
            ("a", t(&shape, rng.vec(n, -2.0, 2.0))),
            ("b", t(&sb, rng.vec(numel(&sb), -2.0, 2.0))),
        ]);
        let wrt: &[&str] = if compare { &["m", "a", "b"] } else { &["a", "b"] };
        check(&b, &y, wrt, &f);
    }

    #[test]
    fn shape_op_vjps(shape in shape_strategy(3), which in 0usize..3, seed: u64) {
        let mut rng = Rng::new(seed);
        let n = numel(&shape);
        let b = Builder::new("shape");
        let x = b.input("x", TensorType::f32(&shape));
        let y = match which {
            0 => {
                // broadcast to a bigger shape: new leading axes and expanded 1s
                let mut to: Vec<usize> = (0..rng.below(2)).map(|_| 1 + rng.below(3)).collect();
                to.extend(shape.iter().map(|&d| if d == 1 { 1 + rng.below(3) } else { d }));
                x.broadcast_to(&to)
            }
            1 => {
                let mut to = vec![n];
                if n.is_multiple_of(2) && rng.below(2) == 0 {
                    to = vec![2, n / 2];
                }
                x.reshape(&to) * 1.5
            }
            _ => {
                let mut perm: Vec<usize> = (0..shape.len()).collect();
                for i in (1..perm.len()).rev() {
                    perm.swap(i, rng.below(i + 1));
                }
                x.transpose(&perm)
            }
        };
        check(&b, &(&y * &y), &["x"], &feeds(vec![("x", t(&shape, rng.vec(n, -2.0, 2.0)))]));
    }

    #[test]
    fn reduce_vjps(shape in prop::collection::vec(1usize..=3, 1..=3), mask in 1u32..8, max: bool, keepdims: bool, seed: u64) {
        let mut rng = Rng::new(seed);
        let n = numel(&shape);
        let axes: Vec<isize> = (0..shape.len()).filter(|i| mask & (1 << i) != 0).map(|i| i as isize).collect();
        let axes = if axes.is_empty() { vec![0] } else { axes };
        // Distinct values (a shuffled ramp with spacing 0.25, |x| ≤ 3.4) keep
        // reduce_max further from ties than the checker's widest step 2h ≤ 0.22.
        let mut v: Vec<f32> = (0..n).map(|i| 0.25 * i as f32 - 0.125 * n as f32).collect();
        for i in (1..n).rev() {
            v.swap(i, rng.below(i + 1));
        }
        let b = Builder::new("reduce");
        let x = b.input("x", TensorType::f32(&shape));
        let y = if max { x.max(&axes, keepdims) } else { x.sum(&axes, keepdims) };
        let y = &y * &y;
        check(&b, &y, &["x"], &feeds(vec![("x", t(&shape, v))]));
    }

    #[test]
    fn matmul_vjps(
        batch in prop::option::of(1usize..=3),
        m in 1usize..=4, k in 1usize..=4, n in 1usize..=4,
        ta: bool, tb: bool, seed: u64,
    ) {
        let mut rng = Rng::new(seed);
        let lead: Vec<usize> = batch.into_iter().collect();
        let sa: Vec<usize> = lead.iter().copied().chain(if ta { [k, m] } else { [m, k] }).collect();
        let sb: Vec<usize> = lead.iter().copied().chain(if tb { [n, k] } else { [k, n] }).collect();
        let b = Builder::new("matmul");
        let a = b.input("a", TensorType::f32(&sa));
        let c = b.input("b", TensorType::f32(&sb));
        let y = a.matmul_t(&c, ta, tb);
        let f = feeds(vec![
            ("a", t(&sa, rng.vec(numel(&sa), -1.5, 1.5))),
            ("b", t(&sb, rng.vec(numel(&sb), -1.5, 1.5))),
        ]);
        check(&b, &y, &["a", "b"], &f);
    }

    #[test]
    fn concat_and_slice_vjps(shape in shape_strategy(3), axis_pick in 0usize..3, extra in 1usize..=3, seed: u64) {
        let mut rng = Rng::new(seed);
        let axis = axis_pick % shape.len();
        let mut other = shape.clone();
        other[axis] = extra;
        let b = Builder::new("concat");
        let x = b.input("x", TensorType::f32(&shape));
        let z = b.input("z", TensorType::f32(&other));
        let cat = b.concat(&[&x, &z, &x], axis as isize);
        let len = cat.shape()[axis];
        let start = rng.below(len);
        let end = start + 1 + rng.below(len - start);
        let y = cat.slice(axis as isize, start, end).exp();
        let f = feeds(vec![
            ("x", t(&shape, rng.vec(numel(&shape), -1.0, 1.0))),
            ("z", t(&other, rng.vec(numel(&other), -1.0, 1.0))),
        ]);
        check(&b, &y, &["x", "z"], &f);
    }
}

/// Ops with no gradient: `grad` reports no dependence, and the numerical
/// derivative (away from jumps) is zero too, so the checker agrees.
#[test]
fn gradient_free_ops_agree_with_finite_differences() {
    let b = Builder::new("free");
    let x = b.input("x", TensorType::f32([2, 3]));
    let step = b.input("step", TensorType::i32([]));
    let y = x.argmax(1).one_hot(3).reshape(&[6])
        + x.cast(lossgraph_ir::DType::I32)
            .cast(lossgraph_ir::DType::F32)
            .reshape(&[6])
        + x.gt(0.0).reshape(&[6])
        + x.sign().reshape(&[6])
        + b.random_uniform(&step, 3, &[6]);
    b.output("y", &y);
    let g = b.clone().finish().unwrap();
    let mut f = feeds(vec![(
        "x",
        t(&[2, 3], vec![0.3, -1.7, 2.4, 1.2, 0.6, -0.4]),
    )]);
    f.insert("step".into(), HostTensor::i32(&[], vec![5]).unwrap());
    let r = check_gradients(&g, "y", &["x"], &f, &GradCheckOptions::default()).unwrap();
    assert!(r.passed(TOL), "{r}");
    assert!(!r.vars[0].differentiable);
    assert_eq!(r.vars[0].max_abs_error, 0.0);
    let mut g2 = g.clone();
    let s = {
        let b2 = Builder::from_graph(g2.clone());
        let s = b2.tensor(y.id()).sum_all();
        g2 = b2.finish().unwrap();
        s.id()
    };
    assert_eq!(grad(&mut g2, s, &[x.id()]).unwrap(), vec![None]);
}

/// One step of a random expression DAG over `[n, n]` tensors.
fn random_step(pool: &[Tensor], rng: &mut Rng) -> Tensor {
    let a = &pool[rng.below(pool.len())];
    let c = &pool[rng.below(pool.len())];
    match rng.below(9) {
        0 => a + c,
        1 => a - c,
        2 => (a * c).tanh(),
        3 => a.sigmoid() * c,
        4 => a.tanh(),
        5 => a.sum(&[1], true) * 0.3 + c,
        6 => a.t() * 0.7,
        7 => a.matmul_t(c, rng.below(2) == 0, rng.below(2) == 0) * 0.4,
        _ => (a * 0.5).exp() - c,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random DAGs with heavy fan-out (every value may be reused by any later
    /// step): checks accumulation across paths, not just single rules.
    #[test]
    fn random_expression_dags(n in 1usize..=3, steps in 1usize..=12, seed: u64) {
        let mut rng = Rng::new(seed);
        let b = Builder::new("dag");
        let x = b.input("x", TensorType::f32([n, n]));
        let z = b.input("z", TensorType::f32([n, n]));
        let mut pool = vec![x.clone(), z.clone()];
        for _ in 0..steps {
            let next = random_step(&pool, &mut rng);
            pool.push(next);
        }
        // Sum the last few values so several branches reach the output.
        let k = pool.len().min(3);
        let mut y = pool[pool.len() - 1].clone();
        for v in &pool[pool.len() - k..pool.len() - 1] {
            y = y + v;
        }
        let f = feeds(vec![
            ("x", t(&[n, n], rng.vec(n * n, -1.0, 1.0))),
            ("z", t(&[n, n], rng.vec(n * n, -1.0, 1.0))),
        ]);
        // Paths of magnitude ~0.1 can cancel to a gradient of ~1e-3, where the
        // five-point truncation error (~1e-4 absolute at this step, seen in the
        // regression case n = 2, steps = 6) dominates a relative error: judge
        // such elements against a floor of 1e-2 instead of 1e-3.
        let opts = GradCheckOptions { floor: 1e-2, ..GradCheckOptions::default() };
        check_with(&b, &y, &["x", "z"], &f, &opts);
    }
}
