//! Semantic checks: every pass, and the default pipeline, leaves the values of
//! all outputs unchanged on random graphs fed random inputs (the reference
//! interpreter is the oracle, run before and after).

use super::*;
use lossgraph_ir::gen::random_feeds;
use lossgraph_ir::interp::interpret;
use lossgraph_ir::{Builder, HostTensor, Literal, Tensor, TensorType};
use proptest::prelude::*;

/// Asserts two output lists agree: same names and types; values equal up to a
/// relative tolerance (NaN matches NaN, infinities must match exactly).
pub(crate) fn assert_close(
    before: &[(String, HostTensor)],
    after: &[(String, HostTensor)],
    rtol: f64,
) {
    assert_eq!(before.len(), after.len());
    for ((na, a), (nb, b)) in before.iter().zip(after) {
        assert_eq!(na, nb);
        assert_eq!(a.ty, b.ty, "output {na}");
        for (i, (x, y)) in a.to_f64().into_iter().zip(b.to_f64()).enumerate() {
            let ok = (x.is_nan() && y.is_nan())
                || x == y
                || (x.is_finite()
                    && y.is_finite()
                    && (x - y).abs() <= rtol * x.abs().max(y.abs()).max(1.0));
            assert!(ok, "output {na}[{i}]: {x} before, {y} after");
        }
    }
}

/// Checks that `pm` preserves every output of `g` on a few random feeds.
pub(crate) fn check_preserves(g: &Graph, pm: &PassManager, seeds: u64) -> Graph {
    let mut opt = g.clone();
    pm.clone().verify_each(true).run(&mut opt).unwrap();
    for seed in 0..seeds {
        let feeds = random_feeds(g, seed);
        let before = interpret(g, &feeds).unwrap();
        let after = interpret(&opt, &feeds).unwrap();
        assert_close(&before, &after, 1e-5);
    }
    opt
}

/// One random graph step: an op code and two earlier values.
type Step = (u8, usize, usize);

/// Builds a graph over `x`, `y`, `w: f32[2,3]` from `steps`; every step
/// appends one `f32[2,3]` value; the last three values and one chosen value are outputs.
fn build(steps: &[Step]) -> Graph {
    let b = Builder::new("random");
    let mut vals: Vec<Tensor> = vec![
        b.input("x", TensorType::f32([2, 3])),
        b.input("y", TensorType::f32([2, 3])),
        b.param("w", TensorType::f32([2, 3])),
    ];
    for &(code, i, j) in steps {
        let a = vals[i % vals.len()].clone();
        let c = vals[j % vals.len()].clone();
        let safe_den = &(&c * &c) + 1.0;
        let v = match code % 22 {
            0 => &a + &c,
            1 => &a - &c,
            2 => &a * &c,
            3 => &a / &safe_den,
            4 => a.neg(),
            5 => &a * 1.0,
            6 => &a + 0.0,
            7 => &a * 0.0,
            8 => a.tanh(),
            9 => a.t().t(),
            10 => a.reshape(&[6]).reshape(&[3, 2]).reshape(&[2, 3]),
            11 => &a * &safe_den.recip(),
            12 => &a + &c.neg(),
            13 => &a.sum(&[1], true) + &c,
            14 => b.full(0.5, &[2, 3]).exp() * &a,
            15 => a.gt(&c).select(&a, &c),
            16 => a.maximum(&c),
            17 => &c + &a,
            18 => b.full(1.0, &[2, 3]).select(&a, &c),
            19 => &a.gt(0.0) * 0.0 + &c,
            20 => a.reshape(&[1, 2, 3]).sum(&[0], false) - &c.neg().neg(),
            _ => &a.sub(&a) + &a.lt(&c),
        };
        vals.push(v);
    }
    let n = vals.len();
    for (k, v) in vals[n.saturating_sub(3)..].iter().enumerate() {
        b.output(&format!("out{k}"), v);
    }
    if let Some(&(_, i, _)) = steps.first() {
        b.output("pick", &vals[3 + i % (n - 3).max(1)].clone());
    }
    b.finish().unwrap()
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((any::<u8>(), 0usize..64, 0usize..64), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_pass_preserves_outputs(s in steps()) {
        let g = build(&s);
        for (name, _) in PASSES {
            check_preserves(&g, &PassManager::from_names(&[name]).unwrap(), 2);
        }
    }

    #[test]
    fn default_pipeline_preserves_outputs_and_never_grows(s in steps()) {
        let g = build(&s);
        let opt = check_preserves(&g, &default_pipeline(), 3);
        prop_assert!(opt.len() <= g.len());
        // A second run of the pipeline is a no-op on an optimised graph.
        let mut again = opt.clone();
        let stats = default_pipeline().run(&mut again).unwrap();
        prop_assert!(stats.iter().all(|s| !s.changed), "{stats:?}");
    }
}

#[test]
fn folding_a_constant_subgraph_matches_the_interpreter() {
    // A constant-only subgraph feeding a live computation: fold evaluates it
    // with the interpreter's kernels, so values must be identical.
    let b = Builder::new("consts");
    let x = b.input("x", TensorType::f32([2, 2]));
    let c = b.constant(
        Literal::F32(vec![0.5, -1.0, 2.0, 3.0]),
        TensorType::f32([2, 2]),
    );
    let k = (&c.exp() + &c.t()).matmul(&c).sum(&[0], true);
    b.output("y", &(&x * &k));
    let g = b.finish().unwrap();
    let opt = check_preserves(&g, &default_pipeline(), 2);
    // x, the folded (and broadcast) constant, the mul.
    assert_eq!(opt.len(), 3, "{}", lossgraph_ir::text::print(&opt));
}

#[test]
fn passes_preserve_the_generators_graphs() {
    // The IR's generator covers every primitive, role and dtype.
    let cfg = lossgraph_ir::gen::GenConfig::default();
    let mut shrunk = 0;
    for seed in 0..150 {
        let g = lossgraph_ir::gen::random_graph(seed, &cfg);
        for (name, _) in PASSES {
            let mut opt = g.clone();
            PassManager::from_names(&[name])
                .unwrap()
                .verify_each(true)
                .run(&mut opt)
                .unwrap();
            let feeds = random_feeds(&g, seed);
            let before = interpret(&g, &feeds).unwrap();
            let after = interpret(&opt, &feeds).unwrap();
            assert_close(&before, &after, 1e-5);
        }
        let opt = check_preserves(&g, &default_pipeline(), 1);
        assert!(opt.len() <= g.len(), "seed {seed}");
        shrunk += usize::from(opt.len() < g.len());
    }
    // The generator emits dead code and constants: most graphs get smaller.
    assert!(shrunk > 75, "only {shrunk} of 150 graphs shrank");
}

/// A 2-layer MLP training graph: x → dense_1 (relu) → dense_2 → mean softmax
/// cross-entropy, plus an L2(0.01) kernel regulariser on dense_1 as an added
/// loss; total loss and gradients for all four params.
pub(crate) fn mlp_training_graph() -> Graph {
    use lossgraph_ir::{nn, LossReason, Role};
    let b = Builder::new("mlp");
    let x = b.input("x", TensorType::f32([16, 8]));
    let y = b.input("labels4_y", TensorType::i32([16]));
    let dense = |name: &str, x: &Tensor, units: usize| {
        let din = x.shape()[1];
        b.with_scope(name, || {
            let w = b.param(&format!("{name}/kernel"), TensorType::f32([din, units]));
            let bias = b.param(&format!("{name}/bias"), TensorType::f32([units]));
            (x.matmul(&w) + &bias, w)
        })
    };
    let (z1, w1) = dense("dense_1", &x, 32);
    let h = b.with_scope("dense_1", || nn::relu(&z1));
    let (logits, _) = dense("dense_2", &h, 4);
    b.set_scope("dense_2");
    b.set_role(Role::CompiledLoss {
        output: "out".into(),
        weight: 1.0,
    });
    let logp = nn::log_softmax(&logits, -1);
    let ce = (y.one_hot(4) * logp).sum(&[-1], false).mean_all().neg();
    b.output("loss/out", &ce);
    b.set_scope("dense_1");
    b.set_role(Role::AddedLoss {
        reason: LossReason::KernelRegularizer,
        call: 0,
    });
    b.output("added/0", &nn::l2(&w1, 0.01));
    let mut g = b.finish().unwrap();
    let loss = crate::objective::total_loss(&mut g).unwrap();
    let params: Vec<NodeId> = g.params().into_iter().map(|p| p.1).collect();
    crate::autodiff::append_gradients(&mut g, loss, &params).unwrap();
    g
}

#[test]
fn mlp_training_graph_shrinks_and_keeps_its_values() {
    let g = mlp_training_graph();
    let mut opt = g.clone();
    let stats = default_pipeline().verify_each(true).run(&mut opt).unwrap();
    if std::env::var("PRINT_MLP").is_ok() {
        eprintln!(
            "{}\n{}",
            lossgraph_ir::text::print(&g),
            lossgraph_ir::text::print(&opt)
        );
        for s in &stats {
            eprintln!("{s:?}");
        }
    }
    assert!(opt.len() < g.len(), "{} -> {}", g.len(), opt.len());
    // The interface is unchanged: same leaves, same outputs.
    assert_eq!(opt.inputs().len(), g.inputs().len());
    assert_eq!(opt.params().len(), g.params().len());
    let names = |g: &Graph| g.outputs().iter().map(|o| o.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&opt), names(&g));
    for seed in 0..3 {
        let feeds = random_feeds(&g, seed);
        assert_close(
            &interpret(&g, &feeds).unwrap(),
            &interpret(&opt, &feeds).unwrap(),
            1e-5,
        );
    }
}
