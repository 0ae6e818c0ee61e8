//! Differential tests: the JIT engine against the reference interpreter.
//!
//! Every graph runs on the interpreter and on several JIT configurations
//! (fused + SIMD with the default matmul strategy; unfused scalar with every
//! matmul in the gemm crate; every matmul on lossgraph's GEMM split across two
//! threads; fused with two threads splitting every splittable kernel and
//! every matmul as JIT loops). Two steps are run so variable updates (in place or
//! copied) are exercised; all outputs and all variables are compared.
//!
//! Tolerances (|jit - interp| <= atol + rtol·|interp|, NaN where the
//! interpreter has NaN, equal infinities):
//! - plain f32 arithmetic, data movement, i32: rtol 1e-6, atol 1e-6 (FMA
//!   contraction changes the last bit of `a + b*c`);
//! - graphs with reductions or matmuls: rtol 1e-4, atol 1e-4 (the interpreter
//!   sums in f64, the JIT in f32 in a different order);
//! - transcendentals: rtol 1e-5, atol 1e-6 (f32 functions vs f64 rounded once).

mod common;
mod diff;

use common::{mlp_step, Act, Loss, Opt};
use diff::{check_values, close, configs, random_graph_matches, Tol, REDUCE};
use lossgraph_ir::rng::SplitMix64;
use lossgraph_ir::{Builder, DType, Graph, HostTensor, Literal, TensorType};
use lossgraph_runtime::{Engine, Feed, JitOptions, Program};

fn random_tensor(ty: &TensorType, rng: &mut SplitMix64) -> HostTensor {
    let n = ty.numel();
    match ty.dtype {
        DType::F32 => {
            HostTensor::f32(&ty.shape, (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect()).unwrap()
        }
        DType::I32 => {
            HostTensor::i32(&ty.shape, (0..n).map(|_| rng.below(8) as i32 - 2).collect()).unwrap()
        }
    }
}

const EXACT: Tol = Tol {
    rtol: 1e-6,
    atol: 1e-6,
};
const TRANS: Tol = Tol {
    rtol: 1e-5,
    atol: 1e-6,
};

/// Runs `g` for two steps on the interpreter and every JIT configuration and
/// compares every output and variable.
fn check_with_vars(g: &Graph, tol: Tol, seed: u64) -> Result<(), String> {
    let mut rng = SplitMix64::new(seed);
    let feeds: Vec<(String, HostTensor)> = g
        .inputs()
        .into_iter()
        .map(|(n, id)| (n, random_tensor(&g.node(id).ty, &mut rng)))
        .collect();
    let vars: Vec<(String, HostTensor)> = g
        .params()
        .into_iter()
        .map(|(n, id)| (n, random_tensor(&g.node(id).ty, &mut rng)))
        .collect();
    check_values(g, tol, &feeds, &vars)
}

fn check(g: &Graph, tol: Tol) {
    if let Err(e) = check_with_vars(g, tol, 7) {
        panic!("{e}\ngraph:\n{}", lossgraph_ir::text::print(g));
    }
}

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::f32(shape)
}

#[test]
fn unary_ops_all_shapes() {
    use lossgraph_ir::UnaryOp::*;
    for u in [
        Neg, Exp, Log, Tanh, Sigmoid, Abs, Sqrt, Recip, Sign, Erf, Sin, Cos,
    ] {
        for shape in [&[][..], &[1], &[3], &[4], &[7], &[3, 5], &[2, 3, 9]] {
            let b = Builder::new("u");
            let x = b.input("x", f32t(shape));
            let y = match u {
                Neg => x.neg(),
                Exp => x.exp(),
                Log => x.log(),
                Tanh => x.tanh(),
                Sigmoid => x.sigmoid(),
                Abs => x.abs(),
                Sqrt => x.sqrt(),
                Recip => x.recip(),
                Sign => x.sign(),
                Erf => x.erf(),
                Sin => x.sin(),
                Cos => x.cos(),
            };
            b.output("y", &y);
            // A second use keeps `y` stored and chains another op after it.
            b.output("z", &(y.clone() * 2.0 + 1.0));
            check(&b.finish().unwrap(), TRANS);
        }
    }
}

#[test]
fn int_ops() {
    let b = Builder::new("i");
    let x = b.input("x", TensorType::i32([3, 5]));
    let y = b.input("y", TensorType::i32([3, 5]));
    b.output("neg", &x.neg());
    b.output("abs", &x.abs());
    b.output("sign", &x.sign());
    b.output("add", &x.add(&y));
    b.output("sub", &x.sub(&y));
    b.output("mul", &x.mul(&y));
    b.output("div", &x.div(&y)); // includes division by zero
    b.output("max", &x.maximum(&y));
    b.output("min", &x.minimum(&y));
    b.output("pow", &x.pow(&y)); // negative exponents and bases included
    for (n, t) in [
        ("eq", x.eq(&y)),
        ("ne", x.ne(&y)),
        ("lt", x.lt(&y)),
        ("le", x.le(&y)),
        ("gt", x.gt(&y)),
        ("ge", x.ge(&y)),
    ] {
        b.output(n, &t);
    }
    b.output("cast", &x.cast(DType::F32));
    b.output("rmax", &x.max(&[1], false));
    check(&b.finish().unwrap(), EXACT);
}

/// `pow` on inputs in [-2, 2]: negative bases with non-integer exponents give NaN on
/// both engines; integer exponents (a constant row) keep the sign of odd powers.
#[test]
fn pow_with_broadcasting() {
    for shape in [[3usize, 5], [1, 9], [5, 1]] {
        let b = Builder::new("p");
        let x = b.input("x", f32t(&shape));
        let row = b.input("row", f32t(&shape[1..]));
        b.output("pos", &(x.abs() + 0.25).pow(&row));
        b.output("any", &x.pow(&row));
        b.output("int", &x.pow(3.0));
        b.output("sq", &x.pow(-2.0));
        check(&b.finish().unwrap(), TRANS);
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    for shape in [[3usize, 5], [2, 4], [1, 9], [5, 1]] {
        let b = Builder::new("b");
        let x = b.input("x", f32t(&shape));
        let row = b.input("row", f32t(&shape[1..]));
        let col = b.input("col", f32t(&[shape[0], 1]));
        let s = b.input("s", f32t(&[]));
        b.output("add", &(x.clone() + &row));
        b.output("sub", &(col.clone() - &x));
        b.output("mul", &(x.clone() * &s));
        b.output("div", &(x.div(&col)));
        b.output("max", &x.maximum(&row));
        b.output("min", &x.minimum(0.0));
        b.output("eq", &x.eq(&x));
        b.output("ne", &x.ne(&row));
        b.output("lt", &x.lt(&col));
        b.output("le", &x.le(&s));
        b.output("gt", &x.gt(0.5));
        b.output("ge", &row.ge(&x));
        b.output("fma", &(x.clone() * &row + &col));
        b.output("select", &x.gt(0.0).select(&x, &(x.clone() * 0.1)));
        b.output("cast", &x.cast(DType::I32));
        b.output("castback", &x.cast(DType::I32).cast(DType::F32));
        b.output("stop", &(x.stop_gradient() + 1.0));
        check(&b.finish().unwrap(), EXACT);
    }
}

#[test]
fn reductions_over_every_axis_set() {
    // The second shape's rows are long enough for the 4-accumulator vector
    // loop (16 lanes per iteration) plus vector and scalar tails.
    for (shape, mask) in [[3usize, 5, 6], [2, 19, 45]]
        .into_iter()
        .flat_map(|s| (0u32..8).map(move |m| (s, m)))
    {
        let axes: Vec<isize> = (0..3)
            .filter(|a| mask & (1 << a) != 0)
            .map(|a| a as isize)
            .collect();
        let b = Builder::new("r");
        let x = b.input("x", f32t(&shape));
        let e = (x.clone() * 0.5).exp();
        b.output("sum", &e.sum(&axes, false));
        b.output("max", &(x.clone() * &x).max(&axes, false));
        b.output("sumk", &x.sum(&axes, true));
        check(&b.finish().unwrap(), REDUCE);
    }
    for axis in 0..3 {
        let b = Builder::new("a");
        let x = b.input("x", f32t(&[4, 5, 7]));
        b.output("am", &(x.clone() + 1.0).argmax(axis));
        check(&b.finish().unwrap(), EXACT);
    }
}

#[test]
fn data_movement() {
    let b = Builder::new("d");
    let x = b.input("x", f32t(&[2, 3, 7]));
    let y = b.input("y", f32t(&[2, 4, 7]));
    let lbl = b.input("lbl", TensorType::i32([5]));
    let step = b.input("step", TensorType::i32([]));
    b.output("t", &x.transpose(&[2, 0, 1]));
    b.output("t2", &(x.transpose(&[1, 0, 2]) * 2.0));
    b.output("r", &x.reshape(&[6, 7]));
    b.output("rr", &(x.reshape(&[6, 7]).exp().reshape(&[42]) + 1.0));
    b.output("s", &x.slice(2, 2, 6));
    b.output("s2", &(x.slice(1, 1, 3) + y.slice(1, 0, 2)));
    b.output("c", &b.concat(&[&x, &y], 1));
    b.output("c2", &b.concat(&[&(x.clone() * 2.0), &y.neg()], 1));
    b.output("oh", &lbl.one_hot(6));
    b.output("rand", &b.random_uniform(&step, 42, &[3, 7]));
    b.output(
        "randt",
        &b.random_uniform(&step, 9, &[3, 7]).transpose(&[1, 0]),
    );
    b.output("bc", &x.max(&[2], true).broadcast_to(&[2, 3, 7]));
    let g = b.finish().unwrap();
    check(&g, EXACT);
}

#[test]
fn constants() {
    let b = Builder::new("c");
    let x = b.input("x", f32t(&[2, 3]));
    let k = b.constant(
        Literal::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        f32t(&[2, 3]),
    );
    b.output("a", &(x.clone() + &k));
    b.output("k", &k);
    b.output("splat", &b.full(3.5, &[2, 3]));
    let ki = b.constant(Literal::I32(vec![7]), TensorType::i32([4]));
    b.output("ki", &ki);
    check(&b.finish().unwrap(), EXACT);
}

#[test]
fn matmuls() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (m, k, n) = (5, 7, 3);
        let b = Builder::new("m");
        let a = b.input("a", f32t(&if ta { [k, m] } else { [m, k] }));
        let w = b.param("w", f32t(&if tb { [n, k] } else { [k, n] }));
        let bias = b.param("b", f32t(&[n]));
        let y = a.matmul_t(&w, ta, tb) + &bias;
        b.output("y", &y.tanh());
        b.output("relu", &lossgraph_ir::nn::relu(&y));
        let a3 = b.input("a3", f32t(&[2, m, k]));
        let w3 = b.input("w3", f32t(&[2, k, n]));
        b.output("bmm", &a3.matmul(&w3));
        check(&b.finish().unwrap(), REDUCE);
    }
}

#[test]
fn variable_updates_in_place_and_copied() {
    let b = Builder::new("u");
    let x = b.input("x", f32t(&[4, 3]));
    let w = b.param("w", f32t(&[3, 2]));
    let m = b.state("m", f32t(&[3, 2]));
    let v = b.param("v", f32t(&[6]));
    let q = b.param("q", f32t(&[3, 2]));
    let y = x.matmul(&w);
    let gw = x.matmul_t(&y, true, false);
    let m2 = m.clone() * 0.9 + &(gw.clone() * 0.1);
    b.output("update/m", &m2);
    b.output("update/w", &(w.clone() - &(m2.clone() * 0.01)));
    // Reads v transposed (in an earlier kernel: in place is still safe).
    b.output(
        "update/v",
        &(v.reshape(&[2, 3]).transpose(&[1, 0]).reshape(&[6]) + 1.0),
    );
    // A rotation of r computed by a concat kernel: must be copied after the run.
    let r = b.param("r", f32t(&[6]));
    b.output(
        "update/r",
        &b.concat(&[&r.slice(0, 4, 6), &r.slice(0, 0, 4)], 0),
    );
    // Swap-like updates and outputs showing old values.
    b.output("update/q", &w);
    b.output("old_q", &q);
    b.output("loss", &y.sum_all());
    let g = b.finish().unwrap();
    check(&g, REDUCE);
    let p = Program::new_jit(g, &JitOptions::default()).unwrap();
    let st = p.compile_stats().unwrap();
    // w, m: read at the written element; v: read by an earlier kernel; q:
    // a copy of w into q (the old q was copied out first): all in place.
    // r: a concat reads other elements of r, so it is copied after the run.
    assert_eq!(st.in_place_updates, 4, "{st:?}\n{}", p.plan_text().unwrap());
    assert_eq!(st.copied_updates, 1, "{st:?}");
    let clif = p.clif_text().unwrap().unwrap();
    assert!(
        clif.contains("function") && clif.contains("store"),
        "{clif}"
    );
}

/// Softmax cross-entropy + L2 forward of a small MLP with a manual backward
/// pass and SGD updates (autodiff-free, so this test depends only on the builder).
#[test]
fn mlp_training_step() {
    let (batch, d_in, hidden, classes) = (6, 10, 7, 5);
    let b = Builder::new("mlp");
    let x = b.input("x", f32t(&[batch, d_in]));
    let labels = b.input("y", TensorType::i32([batch]));
    let w1 = b.param("w1", f32t(&[d_in, hidden]));
    let b1 = b.param("b1", f32t(&[hidden]));
    let w2 = b.param("w2", f32t(&[hidden, classes]));
    let b2 = b.param("b2", f32t(&[classes]));
    let z1 = x.matmul(&w1) + &b1;
    let h = z1.tanh();
    let logits = h.matmul(&w2) + &b2;
    let logp = lossgraph_ir::nn::log_softmax(&logits, -1);
    let onehot = labels.one_hot(classes);
    let ce = (logp.clone() * &onehot).sum_all().neg() * (1.0 / batch as f32);
    let l2 = lossgraph_ir::nn::l2(&w1, 1e-3) + lossgraph_ir::nn::l2(&w2, 1e-3);
    let loss = ce + &l2;
    b.output("loss", &loss);
    // Backward by hand.
    let dlogits = (logp.exp() - &onehot) * (1.0 / batch as f32);
    let gw2 = h.matmul_t(&dlogits, true, false) + &(w2.clone() * 2e-3);
    let gb2 = dlogits.sum(&[0], false);
    let dh = dlogits.matmul_t(&w2, false, true);
    let dz1 = dh * &(1.0f32 - &(h.clone() * &h));
    let gw1 = x.matmul_t(&dz1, true, false) + &(w1.clone() * 2e-3);
    let gb1 = dz1.sum(&[0], false);
    for (n, gr, p) in [
        ("w1", &gw1, &w1),
        ("b1", &gb1, &b1),
        ("w2", &gw2, &w2),
        ("b2", &gb2, &b2),
    ] {
        b.output(&format!("grad/{n}"), gr);
        b.output(&format!("update/{n}"), &(p.clone() - &(gr.clone() * 0.1)));
    }
    check(&b.finish().unwrap(), REDUCE);
}

/// The standard training steps (autodiff gradients, L2 added losses, SGD and
/// Adam updates) at small sizes: loss, every gradient, every updated variable.
#[test]
fn autodiff_training_steps() {
    check(
        &mlp_step(
            &[8, 32, 32, 1],
            32,
            Act::Tanh,
            Loss::Mse,
            1e-4,
            Opt::Sgd(0.01),
        ),
        REDUCE,
    );
    check(
        &mlp_step(
            &[21, 13, 10],
            9,
            Act::Relu,
            Loss::SparseCe,
            1e-4,
            Opt::Adam(1e-3),
        ),
        REDUCE,
    );
    check(
        &mlp_step(&[5, 6, 7, 3], 4, Act::Relu, Loss::Mse, 0.0, Opt::Sgd(0.1)),
        REDUCE,
    );
}

/// Random graphs from `lossgraph_ir::gen` (every primitive, broadcasting,
/// reductions over random axis sets, extents not multiples of 4) on random
/// feeds. The seed and the node budget shrink on failure. More cases:
/// `PROPTEST_CASES=2000 cargo test -p lossgraph-runtime --test jit_vs_interp`.
mod random_graphs {
    use super::*;
    use proptest::prelude::*;

    /// `PROPTEST_CASES` when set, else `default`.
    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(192)))]
        #[test]
        fn jit_matches_interpreter(seed in any::<u64>(), nodes in 4usize..48, extent in 1usize..9) {
            let r = random_graph_matches(seed, nodes, extent);
            prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(48)))]
        /// Larger graphs and extents: long vector loops with tails, split kernels.
        #[test]
        fn jit_matches_interpreter_large(seed in any::<u64>(), nodes in 20usize..100, extent in 5usize..21) {
            let r = random_graph_matches(seed, nodes, extent);
            prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }
    }

    /// Fixed seeds, so every run covers the same few hundred graphs too.
    #[test]
    fn fixed_seeds() {
        for seed in 0..128u64 {
            if let Err(e) = random_graph_matches(seed, 40, 6) {
                panic!("{e}");
            }
        }
    }
}

/// Threads split only outer loops that write disjoint elements, and GEMMs
/// only at whole tiles of C, so results are bit-identical run to run and
/// for any thread count.
#[test]
fn threaded_results_are_deterministic() {
    let g = mlp_step(
        &[37, 29, 10],
        50,
        Act::Relu,
        Loss::SparseCe,
        1e-3,
        Opt::Adam(1e-2),
    );
    let mut rng = SplitMix64::new(3);
    let x: Vec<f32> = (0..50 * 37).map(|_| rng.uniform(-2.0, 2.0)).collect();
    let t: Vec<i32> = (0..50).map(|i| i % 10).collect();
    let feeds = [("x", Feed::F32(&x)), ("t", Feed::I32(&t))];
    let run = |threads: usize, inline_max: usize| {
        let mut opts = JitOptions {
            threads,
            split_min_work: 0,
            gemm_min_flops: 0,
            ..JitOptions::default()
        };
        opts.body.inline_matmul_max = inline_max;
        let mut p = Program::new_jit(g.clone(), &opts).unwrap();
        if threads > 1 {
            assert!(p.compile_stats().unwrap().split > 0);
        }
        common::init_params(&mut p, &[37, 29, 10], 5);
        let mut snapshot = Vec::new();
        for _ in 0..3 {
            p.run(&feeds).unwrap();
            for name in p.var_names() {
                snapshot.extend(
                    p.var(&name)
                        .unwrap()
                        .as_f32()
                        .unwrap()
                        .iter()
                        .map(|v| v.to_bits()),
                );
            }
            snapshot.push(p.output("loss").unwrap().as_f32().unwrap()[0].to_bits());
        }
        snapshot
    };
    // Matmuls as JIT loops, then on the default GEMM routine split by part;
    // 5 threads oversubscribe a 2-core host (its pool parks instead of spinning).
    for inline_max in [usize::MAX, 0] {
        let two = run(2, inline_max);
        assert_eq!(two, run(2, inline_max), "two threads, run to run");
        assert_eq!(two, run(1, inline_max), "two threads vs one");
        assert_eq!(two, run(5, inline_max), "two threads vs five");
    }
}

/// `random_bernoulli` masks are bit-identical between the interpreter and
/// every JIT configuration, over several stream values and probabilities,
/// fused into a dropout-like consumer and read transposed; each step draws
/// a fresh mask, and the kept fraction is near `p`.
#[test]
fn random_bernoulli_masks_are_bit_identical() {
    let b = Builder::new("bern");
    let step = b.input("step", TensorType::i32([]));
    let p = b.input("p", TensorType::scalar());
    let x = b.input("x", f32t(&[16, 33]));
    let mask = b.random_bernoulli(&step, 5, &p, &[16, 33]);
    b.output("mask", &mask);
    b.output("masked", &(x * &mask));
    b.output(
        "maskt",
        &b.random_bernoulli(&step, 9, &p, &[33, 16])
            .transpose(&[1, 0]),
    );
    let g = b.finish().unwrap();
    let xs = HostTensor::f32(&[16, 33], (0..16 * 33).map(|i| i as f32 - 100.0).collect()).unwrap();
    let mut reference = Program::new(g.clone(), Engine::Interpreter).unwrap();
    let mut progs: Vec<(&str, Program)> = configs()
        .into_iter()
        .map(|(name, opts)| (name, Program::new_jit(g.clone(), &opts).unwrap()))
        .collect();
    let bits =
        |t: HostTensor| -> Vec<u32> { t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect() };
    for pv in [0.3f32, 0.5, 0.9] {
        let mut previous: Option<Vec<u32>> = None;
        for s in 0..4i32 {
            let (st, pt) = (
                HostTensor::i32(&[], vec![s]).unwrap(),
                HostTensor::f32(&[], vec![pv]).unwrap(),
            );
            let feeds = [
                ("step", Feed::of(&st)),
                ("p", Feed::of(&pt)),
                ("x", Feed::of(&xs)),
            ];
            reference.run(&feeds).unwrap();
            let want: Vec<Vec<u32>> = ["mask", "masked", "maskt"]
                .iter()
                .map(|o| bits(reference.output(o).unwrap().to_host()))
                .collect();
            let kept = want[0].iter().filter(|&&v| v == 1f32.to_bits()).count();
            let frac = kept as f64 / want[0].len() as f64;
            assert!(
                (frac - pv as f64).abs() < 0.08,
                "p {pv} step {s}: kept {frac}"
            );
            assert_ne!(
                previous.as_ref(),
                Some(&want[0]),
                "p {pv}: step {s} repeats the mask"
            );
            previous = Some(want[0].clone());
            for (name, prog) in &mut progs {
                prog.run(&feeds).unwrap();
                for (o, w) in ["mask", "masked", "maskt"].iter().zip(&want) {
                    let got = bits(prog.output(o).unwrap().to_host());
                    assert!(
                        got == *w,
                        "{name}: output {o} at p {pv} step {s} differs from the interpreter"
                    );
                }
            }
        }
    }
}

/// Ids computed in the graph (a cast of a scaled float input) cannot be
/// checked before the run: the JIT's gather and scatter_add check each id
/// in their kernels and record the first one outside the table in the
/// program's fault slot; the run then fails with the interpreter's error
/// (node, row, element and value), leaves the variables untouched, and the
/// next run works. Every JIT configuration (threads, unfused, scalar).
#[test]
fn computed_ids_outside_the_table_fault_like_the_interpreter() {
    let b = Builder::new("ids");
    b.set_scope("emb");
    let x = b.input("x", f32t(&[3, 2]));
    let table = b.param("table", f32t(&[5, 2]));
    let ids = (x * 2.0).cast(DType::I32);
    let rows = table.gather(&ids);
    b.output("rows", &rows);
    // A step that writes the table: table - 0.5 · scatter_add(ids, rows).
    let grad = rows.scatter_add(&ids, 5);
    b.output(&lossgraph_ir::names::update("table"), &(table - grad * 0.5));
    let g = b.finish().unwrap();
    let tv = HostTensor::f32(&[5, 2], (0..10).map(|i| i as f32).collect()).unwrap();
    let good = HostTensor::f32(&[3, 2], vec![0.0, 1.0, 2.0, 0.5, 1.5, 2.4]).unwrap();
    // Row 1, element 1: 2·3.1 = 6.2 → id 6; row 2 holds -1 → id -2 later.
    let bad = HostTensor::f32(&[3, 2], vec![0.0, 1.0, 2.0, 3.1, 1.5, -1.0]).unwrap();
    let want_err = "gather: row 1 (element 1 of its row) of ids i32[3,2] holds id 6 outside [0, 5)";
    let mut progs = vec![(
        "interpreter",
        Program::new(g.clone(), Engine::Interpreter).unwrap(),
    )];
    for (name, opts) in configs() {
        progs.push((name, Program::new_jit(g.clone(), &opts).unwrap()));
    }
    let mut errors = Vec::new();
    let mut after_good = Vec::new();
    for (name, p) in &mut progs {
        p.set_var("table", &tv).unwrap();
        let e = p
            .run(&[("x", Feed::of(&bad))])
            .expect_err("id 6 of a 5-row table")
            .to_string();
        assert!(
            e.contains(want_err) && e.contains("in scope 'emb'"),
            "{name}: {e}"
        );
        assert_eq!(
            p.var("table").unwrap().as_f32().unwrap(),
            tv.as_f32().unwrap(),
            "{name}: a faulted run wrote the variable"
        );
        errors.push(e);
        // The slot was reset: good ids run, twice.
        for _ in 0..2 {
            p.run(&[("x", Feed::of(&good))])
                .unwrap_or_else(|e| panic!("{name} after a fault: {e}"));
        }
        after_good.push((
            p.output("rows").unwrap().to_host().to_f64(),
            p.var("table").unwrap().to_host().to_f64(),
        ));
        // A fault again, then good ids again.
        assert!(p.run(&[("x", Feed::of(&bad))]).is_err(), "{name}");
    }
    for (e, (name, _)) in errors.iter().zip(&progs) {
        assert_eq!(
            e, &errors[0],
            "{name} words the fault unlike the interpreter"
        );
    }
    for ((rows, table), (name, _)) in after_good.iter().zip(&progs) {
        close(&format!("{name} rows"), rows, &after_good[0].0, EXACT).unwrap();
        close(&format!("{name} table"), table, &after_good[0].1, EXACT).unwrap();
    }
    // By hand: ids [[0, 2], [4, 1], [3, 4]]; the first run's rows.
    let ids = [0usize, 2, 4, 1, 3, 4];
    let mut t: Vec<f64> = (0..10).map(f64::from).collect();
    for _ in 0..2 {
        let r: Vec<f64> = ids.iter().flat_map(|&i| [t[2 * i], t[2 * i + 1]]).collect();
        let mut g = [0.0; 10];
        for (s, &i) in ids.iter().enumerate() {
            g[2 * i] += r[2 * s];
            g[2 * i + 1] += r[2 * s + 1];
        }
        for (tv, gv) in t.iter_mut().zip(g) {
            *tv -= 0.5 * gv;
        }
    }
    close("table by hand", &after_good[0].1, &t, EXACT).unwrap();
    // A negative id and the scatter_add's own check (ids fed past the gather
    // are the same ids: the gather, first in the graph, reports).
    let neg = HostTensor::f32(&[3, 2], vec![0.0, 1.0, 2.0, 0.0, 1.5, -1.0]).unwrap();
    for (name, p) in &mut progs {
        let e = p.run(&[("x", Feed::of(&neg))]).unwrap_err().to_string();
        assert!(
            e.contains("row 2 (element 1 of its row) of ids i32[3,2] holds id -2 outside [0, 5)"),
            "{name}: {e}"
        );
    }
    // scatter_add alone on computed ids: it skips the bad row and faults.
    let b = Builder::new("scatter");
    b.set_scope("sc");
    let x = b.input("x", f32t(&[3, 2]));
    let v = b.input("v", f32t(&[3, 2, 2]));
    b.output("t", &v.scatter_add(&(x * 2.0).cast(DType::I32), 5));
    let g = b.finish().unwrap();
    let vs = HostTensor::f32(&[3, 2, 2], vec![1.0; 12]).unwrap();
    let mut progs = vec![(
        "interpreter",
        Program::new(g.clone(), Engine::Interpreter).unwrap(),
    )];
    for (name, opts) in configs() {
        progs.push((name, Program::new_jit(g.clone(), &opts).unwrap()));
    }
    for (name, p) in &mut progs {
        let e = p
            .run(&[("x", Feed::of(&bad)), ("v", Feed::of(&vs))])
            .unwrap_err()
            .to_string();
        let want =
            "scatter_add: row 1 (element 1 of its row) of ids i32[3,2] holds id 6 outside [0, 5)";
        assert!(
            e.contains(want) && e.contains("in scope 'sc'"),
            "{name}: {e}"
        );
        p.run(&[("x", Feed::of(&good)), ("v", Feed::of(&vs))])
            .unwrap();
        // Rows 0..5 collect 1, 1, 1, 1, 2 ids.
        let want = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0];
        assert_eq!(p.output("t").unwrap().to_host().to_f64(), want, "{name}");
    }
}
