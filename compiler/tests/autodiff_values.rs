//! Gradient values checked against hand-derived results (each expected value
//! is worked out in the comment next to it), the conventions at
//! non-differentiable points, custom-training-loop use of `grad` w.r.t.
//! inputs, losses that ignore some weights, and text round-trips of
//! gradient graphs.

mod common;

use common::*;
use lossgraph_compiler::{append_gradients, grad, total_loss};
use lossgraph_ir::{nn, text, verify, Builder, HostTensor, LossReason, Role, Tensor, TensorType};
use std::collections::HashMap;

/// Differentiates `of` w.r.t. `wrt`, evaluates, and returns each gradient
/// (`None` when `grad` reports no dependence). Also checks that the gradient
/// graph verifies and survives a text round-trip with identical values.
fn grads(
    b: &Builder,
    of: &Tensor,
    wrt: &[&Tensor],
    f: &HashMap<String, HostTensor>,
) -> Vec<Option<Vec<f32>>> {
    let mut g = b.clone().finish().unwrap();
    let r = grad(&mut g, of.id(), &ids(wrt)).unwrap();
    verify(&g).unwrap();
    for (i, id) in r.iter().enumerate() {
        if let Some(id) = id {
            g.set_output(format!("d{i}"), *id);
        }
    }
    let out = run(&g, f);
    // The gradient graph prints, parses back to the same text, and evaluates the same.
    let printed = text::print(&g);
    let parsed = text::parse(&printed).unwrap();
    assert_eq!(text::print(&parsed), printed);
    let out2 = run(&parsed, f);
    r.iter()
        .enumerate()
        .map(|(i, id)| {
            id.map(|_| {
                let v = values(&out, &format!("d{i}"));
                assert_eq!(v, values(&out2, &format!("d{i}")), "parsed graph differs");
                v
            })
        })
        .collect()
}

fn one(b: &Builder, of: &Tensor, x: &Tensor, f: &HashMap<String, HostTensor>) -> Vec<f32> {
    grads(b, of, &[x], f).remove(0).expect("a gradient")
}

#[test]
fn sum_of_squares_is_two_w() {
    let b = Builder::new("sq");
    let w = b.param("w", TensorType::f32([3]));
    let l = (&w * &w).sum_all();
    let f = feeds(vec![("w", t(&[3], vec![1.0, -2.0, 3.5]))]);
    // d/dw Σ w² = 2w
    assert_eq!(one(&b, &l, &w, &f), vec![2.0, -4.0, 7.0]);
    // and through a weighted cotangent: d/dw Σ 3·w² = 6w
    let l3 = (&w * &w * 3.0).sum_all();
    assert_eq!(one(&b, &l3, &w, &f), vec![6.0, -12.0, 21.0]);
}

#[test]
fn unary_derivatives_at_known_points() {
    let b = Builder::new("un");
    let x = b.input("x", TensorType::f32([1]));
    let at = |v: f32| feeds(vec![("x", t(&[1], vec![v]))]);
    let d = |y: Tensor, v: f32| one(&b, &y.sum_all(), &x, &at(v))[0];
    assert_eq!(d(x.neg(), 1.5), -1.0);
    assert_eq!(d(x.exp(), 0.0), 1.0); // e^0
    assert_eq!(d(x.log(), 2.0), 0.5); // 1/2
    assert_eq!(d(x.tanh(), 0.0), 1.0); // 1 - tanh²(0)
    assert_eq!(d(x.sigmoid(), 0.0), 0.25); // σ(0)(1-σ(0)) = ½·½
    assert_eq!(d(x.sqrt(), 4.0), 0.25); // 1/(2√4)
    assert_eq!(d(x.recip(), 2.0), -0.25); // -1/2²
    assert_eq!(d(x.abs(), -3.0), -1.0);
    assert_eq!(d(x.abs(), 0.0), 0.0); // abs'(0) = sign(0) = 0
                                      // 2/√π, written out (not the library constant the rule itself uses)
    let two_over_sqrt_pi = 2.0 / (-1.0f64).acos().sqrt();
    assert!((d(x.erf(), 0.0) as f64 - two_over_sqrt_pi).abs() < 1e-6);
    assert!((d(x.erf(), 1.0) as f64 - two_over_sqrt_pi * (-1.0f64).exp()).abs() < 1e-6);
}

#[test]
fn relu_max_and_min_ties_go_to_the_second_operand() {
    let b = Builder::new("ties");
    let x = b.input("x", TensorType::f32([3]));
    let f = feeds(vec![("x", t(&[3], vec![-1.0, 0.0, 2.0]))]);
    // relu = max(x, 0): at x = 0 the tie goes to the constant, so relu'(0) = 0.
    assert_eq!(
        one(&b, &nn::relu(&x).sum_all(), &x, &f),
        vec![0.0, 0.0, 1.0]
    );
    // max(0, x): now x is second and gets the tie.
    let zero = b.full(0.0, &[3]);
    assert_eq!(
        one(&b, &zero.maximum(&x).sum_all(), &x, &f),
        vec![0.0, 1.0, 1.0]
    );
    // min(x, 0) at [-1, 0, 2]: x wins strictly at -1 only.
    assert_eq!(
        one(&b, &x.minimum(0.0).sum_all(), &x, &f),
        vec![1.0, 0.0, 0.0]
    );
    // clip(x, -1, 1) = min(max(x, -1), 1): zero gradient on and beyond the bounds.
    let xc = b.input("xc", TensorType::f32([4]));
    let fc = feeds(vec![("xc", t(&[4], vec![-1.0, 0.0, 1.0, 2.0]))]);
    assert_eq!(
        one(&b, &nn::clip(&xc, -1.0, 1.0).sum_all(), &xc, &fc),
        vec![0.0, 1.0, 0.0, 0.0]
    );
    // With a non-trivial cotangent: Σ c·max(x, y), c = [1, 2, 3], y = [0, 0, 5].
    let y = b.input("y", TensorType::f32([3]));
    let c = b.constant(
        lossgraph_ir::Literal::F32(vec![1.0, 2.0, 3.0]),
        TensorType::f32([3]),
    );
    let l = (x.maximum(&y) * &c).sum_all();
    let mut f2 = f.clone();
    f2.insert("y".into(), t(&[3], vec![0.0, 0.0, 5.0]));
    let r = grads(&b, &l, &[&x, &y], &f2);
    // x > y only at index... none: -1<0, 0=0 (tie → y), 2<5.
    assert_eq!(r[0].clone().unwrap(), vec![0.0, 0.0, 0.0]);
    assert_eq!(r[1].clone().unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn reduce_max_splits_ties_equally() {
    let b = Builder::new("rmax");
    let x = b.input("x", TensorType::f32([2, 4]));
    let f = feeds(vec![(
        "x",
        t(&[2, 4], vec![1.0, 3.0, 3.0, 2.0, 5.0, 5.0, 5.0, 0.0]),
    )]);
    // Row maxima 3 (twice) and 5 (three times); Σ over rows of max·[1, 3].
    let w = b.constant(
        lossgraph_ir::Literal::F32(vec![1.0, 3.0]),
        TensorType::f32([2]),
    );
    let l = (x.max(&[1], false) * &w).sum_all();
    assert_eq!(
        one(&b, &l, &x, &f),
        vec![0.0, 0.5, 0.5, 0.0, 1.0, 1.0, 1.0, 0.0]
    );
    // Over everything: the single maximum 5 appears three times.
    let all = x.max(&[0, 1], false);
    let third = 1.0f32 / 3.0;
    assert_eq!(
        one(&b, &all, &x, &f),
        vec![0.0, 0.0, 0.0, 0.0, third, third, third, 0.0]
    );
}

#[test]
fn matmul_broadcast_slice_and_div() {
    let b = Builder::new("mm");
    let a = b.input("a", TensorType::f32([2, 3]));
    let m = b.input("m", TensorType::f32([3, 2]));
    let f = feeds(vec![
        ("a", t(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        ("m", t(&[3, 2], vec![1.0, -1.0, 0.5, 2.0, 0.0, 3.0])),
    ]);
    // L = Σ_ij (A·M)_ij: dA[i,k] = Σ_j M[k,j] = row sums of M = [0, 2.5, 3];
    // dM[k,j] = Σ_i A[i,k] = column sums of A = [5, 7, 9].
    let l = a.matmul(&m).sum_all();
    let r = grads(&b, &l, &[&a, &m], &f);
    assert_eq!(r[0].clone().unwrap(), vec![0.0, 2.5, 3.0, 0.0, 2.5, 3.0]);
    assert_eq!(r[1].clone().unwrap(), vec![5.0, 5.0, 7.0, 7.0, 9.0, 9.0]);
    // Same with Aᵀ stored: L = Σ (Aᵀ)ᵀ·M via trans_a on a [3,2] tensor.
    let at = b.input("at", TensorType::f32([3, 2]));
    let mut f2 = f.clone();
    f2.insert("at".into(), t(&[3, 2], vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]));
    let l2 = at.matmul_t(&m, true, false).sum_all();
    // dAt = dAᵀ = [[0,0],[2.5,2.5],[3,3]]
    assert_eq!(one(&b, &l2, &at, &f2), vec![0.0, 0.0, 2.5, 2.5, 3.0, 3.0]);

    // Broadcast: L = Σ (v + A), v: [3] broadcast over 2 rows → dv = [2, 2, 2].
    let v = b.input("v", TensorType::f32([3]));
    f2.insert("v".into(), t(&[3], vec![0.0; 3]));
    assert_eq!(one(&b, &(&v + &a).sum_all(), &v, &f2), vec![2.0; 3]);
    // ... and with a cotangent: L = Σ (v + A)·A → dv_k = Σ_i A[i,k] = [5, 7, 9].
    assert_eq!(
        one(&b, &((&v + &a) * &a).sum_all(), &v, &f2),
        vec![5.0, 7.0, 9.0]
    );

    // Slice: L = Σ x[1..3]·[1, 2] → dx = [0, 1, 2, 0].
    let x = b.input("x", TensorType::f32([4]));
    f2.insert("x".into(), t(&[4], vec![9.0, 8.0, 7.0, 6.0]));
    let c = b.constant(
        lossgraph_ir::Literal::F32(vec![1.0, 2.0]),
        TensorType::f32([2]),
    );
    assert_eq!(
        one(&b, &(x.slice(0, 1, 3) * &c).sum_all(), &x, &f2),
        vec![0.0, 1.0, 2.0, 0.0]
    );
    // Concat: L = Σ concat(x, x)·[1..8] → dx_i = (i+1) + (i+5).
    let ramp = b.constant(
        lossgraph_ir::Literal::F32((1..=8).map(|i| i as f32).collect()),
        TensorType::f32([8]),
    );
    let cc = b.concat(&[&x, &x], 0);
    assert_eq!(
        one(&b, &(cc * &ramp).sum_all(), &x, &f2),
        vec![6.0, 8.0, 10.0, 12.0]
    );

    // Div: L = Σ p/q at p = 2, q = 4: dp = 1/q = 0.25, dq = -p/q² = -0.125.
    let p = b.input("p", TensorType::f32([1]));
    let q = b.input("q", TensorType::f32([1]));
    f2.insert("p".into(), t(&[1], vec![2.0]));
    f2.insert("q".into(), t(&[1], vec![4.0]));
    let r = grads(&b, &(&p / &q).sum_all(), &[&p, &q], &f2);
    assert_eq!(r[0].clone().unwrap(), vec![0.25]);
    assert_eq!(r[1].clone().unwrap(), vec![-0.125]);
}

#[test]
fn transpose_reshape_and_select() {
    let b = Builder::new("tr");
    let x = b.input("x", TensorType::f32([2, 3]));
    let f = feeds(vec![(
        "x",
        t(&[2, 3], vec![1.0, -2.0, 3.0, -4.0, 5.0, -6.0]),
    )]);
    // L = Σ transpose(x)·W with W[j,i] = 10j + i, so dx[i,j] = W[j,i].
    let w = b.constant(
        lossgraph_ir::Literal::F32(vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]),
        TensorType::f32([3, 2]),
    );
    assert_eq!(
        one(&b, &(x.t() * &w).sum_all(), &x, &f),
        vec![0.0, 10.0, 20.0, 1.0, 11.0, 21.0]
    );
    // Reshape to [3,2] against the same W: dx is W's elements in order.
    assert_eq!(
        one(&b, &(x.reshape(&[3, 2]) * &w).sum_all(), &x, &f),
        vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]
    );
    // select(x > 0, 2x, x²): d = 2 where x > 0, else 2x.
    let s = x.gt(0.0).select(&x * 2.0, &x * &x).sum_all();
    assert_eq!(one(&b, &s, &x, &f), vec![2.0, -4.0, 2.0, -8.0, 2.0, -12.0]);
}

#[test]
fn grad_with_respect_to_an_input_for_custom_loops() {
    // L = Σ (x·W)² with x [1,2], W [2,2]: dL/dx = 2(x·W)·Wᵀ.
    let b = Builder::new("loop");
    let x = b.input("x", TensorType::f32([1, 2]));
    let w = b.param("w", TensorType::f32([2, 2]));
    let y = x.matmul(&w);
    let l = (&y * &y).sum_all();
    let f = feeds(vec![
        ("x", t(&[1, 2], vec![1.0, 2.0])),
        ("w", t(&[2, 2], vec![1.0, 0.0, -1.0, 3.0])),
    ]);
    // x·W = [1 - 2, 0 + 6] = [-1, 6]; 2(x·W) = [-2, 12];
    // ·Wᵀ: [-2·1 + 12·0, -2·(-1) + 12·3] = [-2, 38].
    // dL/dW = xᵀ·2(x·W) = [[-2, 12], [-4, 24]].
    let r = grads(&b, &l, &[&x, &w, &y], &f);
    assert_eq!(r[0].clone().unwrap(), vec![-2.0, 38.0]);
    assert_eq!(r[1].clone().unwrap(), vec![-2.0, 12.0, -4.0, 24.0]);
    // w.r.t. the intermediate y itself: 2y.
    assert_eq!(r[2].clone().unwrap(), vec![-2.0, 12.0]);
}

/// A tiny model: a kernel used by the loss, a kernel the loss ignores, and
/// an added loss that depends on no trainable weight (only on the input).
#[test]
fn unused_params_and_weightless_added_losses_are_harmless() {
    let b = Builder::new("train");
    let x = b.input("x", TensorType::f32([2, 2]));
    let w = b.with_scope("used", || b.param("used/w", TensorType::f32([2, 1])));
    let u = b.with_scope("unused", || b.param("unused/w", TensorType::f32([3])));
    b.set_scope("used");
    b.set_role(Role::CompiledLoss {
        output: "y".into(),
        weight: 1.0,
    });
    let loss = x.matmul(&w).sum_all();
    b.output("loss/y", &loss);
    b.set_scope("noise");
    b.set_role(Role::AddedLoss {
        reason: LossReason::AddLoss,
        call: 0,
    });
    let added = (&x * &x).sum_all() * 0.5;
    b.output("added/0", &added);
    let mut g = b.finish().unwrap();
    let total = total_loss(&mut g).unwrap();
    append_gradients(&mut g, total, &[w.id(), u.id()]).unwrap();
    verify(&g).unwrap();
    let f = feeds(vec![
        ("x", t(&[2, 2], vec![1.0, 2.0, 3.0, 4.0])),
        ("used/w", t(&[2, 1], vec![0.5, -1.0])),
        ("unused/w", t(&[3], vec![7.0, 8.0, 9.0])),
    ]);
    let out = run(&g, &f);
    // loss/y = Σ x·w = (0.5 - 2) + (1.5 - 4) = -4; added = ½·30 = 15.
    assert_eq!(values(&out, "loss/y"), vec![-4.0]);
    assert_eq!(values(&out, "added/0"), vec![15.0]);
    assert_eq!(values(&out, "loss"), vec![11.0]);
    // d/dw Σ x·w = column sums of x = [4, 6]; the added loss contributes nothing.
    assert_eq!(values(&out, "grad/used/w"), vec![4.0, 6.0]);
    assert_eq!(values(&out, "grad/unused/w"), vec![0.0; 3]);
    let printed = text::print(&g);
    assert_eq!(text::print(&text::parse(&printed).unwrap()), printed);
}
