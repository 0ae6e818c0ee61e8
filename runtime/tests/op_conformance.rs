//! The op conformance test: every op, through every stage.
//!
//! It walks [`Op::prototypes`] (every structural op and every `UnaryOp`,
//! `BinaryOp` and `ReduceOp` variant) and checks, per op:
//! - the text format: print → parse → print is the identity, and the op
//!   (with its attributes) survives;
//! - the interpreter against an independent expected value: the
//!   hand-computed sample points of the op table for elementwise ops and
//!   reductions, hand-computed values below for structural ops;
//! - the VJP against finite differences ([`check_gradients`]), or the op
//!   table's declared "no gradient" (and then autodiff must agree);
//! - the JIT: `Program::new(graph, Engine::Jit)` compiles it (there is no
//!   fallback to hide behind) and matches the interpreter.
//!
//! A missing or wrong rule fails this test by name ("op pow: ..."); all
//! failures are collected and reported together.
//!
//! Elementwise samples are tiled to 9 elements, so the JIT runs both its
//! `f32x4` loop and its scalar tail. Tolerances: the interpreter against the
//! exact value within 1 ulp-ish (rtol 1e-6, atol 1e-7; it rounds an f64
//! result once); the JIT against the interpreter as in `jit_vs_interp.rs`
//! (rtol 1e-6, or 1e-5 for ops whose cost class is transcendental, whose
//! polynomials are a few ulp).

use lossgraph_compiler::autodiff::grad;
use lossgraph_compiler::gradcheck::{check_gradients, GradCheckOptions};
use lossgraph_ir::op::{random_normal, random_uniform, Cost, Sample};
use lossgraph_ir::text::{parse, print};
use lossgraph_ir::{
    interp, BinaryOp, DType, Graph, HostTensor, Literal, Node, NodeId, Op, ReduceOp, Role,
    TensorType, UnaryOp,
};
use lossgraph_runtime::{Engine, Feed, Program};
use std::collections::HashMap;

/// Elements per elementwise case (two f32x4 vectors and a scalar tail).
const TILE: usize = 9;

/// A property of the interpreter's output values.
type ValueCheck = fn(&[f64]) -> Result<(), String>;

/// One graph exercising one op: output `y` is the op's node.
struct Case {
    what: String,
    graph: Graph,
    /// Values for every input and param.
    feeds: HashMap<String, HostTensor>,
    /// The independent expected value of `y` (`None`: checked by `check`).
    expected: Option<Vec<f64>>,
    /// An extra check of the interpreter's `y` (for `random_uniform`).
    check: Option<ValueCheck>,
}

/// Builds a case graph node by node, without the builder's conveniences, so
/// that each op appears exactly as given.
struct G {
    g: Graph,
    feeds: HashMap<String, HostTensor>,
}

impl G {
    fn new() -> G {
        G {
            g: Graph::new("conformance"),
            feeds: HashMap::new(),
        }
    }

    fn node(&mut self, op: Op, ty: TensorType, operands: &[NodeId]) -> NodeId {
        let role = lossgraph_ir::text::default_role(&op);
        self.g.add_node(
            Node {
                op,
                ty,
                role,
                scope: "case".into(),
            },
            operands,
        )
    }

    /// An `input` fed with `t`.
    fn input(&mut self, name: &str, t: HostTensor) -> NodeId {
        let id = self.node(
            Op::Input {
                name: name.to_string(),
            },
            t.ty.clone(),
            &[],
        );
        self.feeds.insert(name.to_string(), t);
        id
    }

    fn f32(&mut self, name: &str, shape: &[usize], v: &[f64]) -> NodeId {
        let t = HostTensor::f32(shape, v.iter().map(|&x| x as f32).collect()).expect("shape");
        self.input(name, t)
    }

    fn i32(&mut self, name: &str, shape: &[usize], v: &[f64]) -> NodeId {
        let t = HostTensor::i32(shape, v.iter().map(|&x| x as i32).collect()).expect("shape");
        self.input(name, t)
    }

    fn case(self, what: String, y: NodeId, expected: Vec<f64>) -> Case {
        let mut g = self.g;
        g.set_output("y", y);
        Case {
            what,
            graph: g,
            feeds: self.feeds,
            expected: Some(expected),
            check: None,
        }
    }
}

fn f(shape: &[usize]) -> TensorType {
    TensorType::f32(shape)
}

fn i(shape: &[usize]) -> TensorType {
    TensorType::i32(shape)
}

/// Sample `k` of `samples`, cycling, for element `e`.
fn tiled(samples: &[Sample], arg: usize) -> Vec<f64> {
    (0..TILE)
        .map(|e| samples[e % samples.len()].args[arg])
        .collect()
}

fn tiled_results(samples: &[Sample]) -> Vec<f64> {
    (0..TILE)
        .map(|e| samples[e % samples.len()].result)
        .collect()
}

/// Cases for an elementwise op from its table samples, in `dtype`.
fn elementwise_cases(
    op: &Op,
    dtype: DType,
    samples: &[Sample],
    arity: usize,
) -> Result<Case, String> {
    let name = op.name();
    if samples.is_empty() {
        return Err(format!(
            "op {name}: no {dtype} sample points in the op table"
        ));
    }
    if let Some(s) = samples.iter().find(|s| s.args.len() != arity) {
        return Err(format!(
            "op {name}: sample {:?} has {} operands, the op takes {arity}",
            s.args,
            s.args.len()
        ));
    }
    let mut b = G::new();
    let ops: Vec<NodeId> = (0..arity)
        .map(|a| {
            let v = tiled(samples, a);
            let n = format!("x{a}");
            match dtype {
                DType::F32 => b.f32(&n, &[TILE], &v),
                DType::I32 => b.i32(&n, &[TILE], &v),
            }
        })
        .collect();
    let out_dtype = match op {
        Op::Binary(bop) if bop.is_comparison() => DType::F32,
        _ => dtype,
    };
    let ty = TensorType {
        dtype: out_dtype,
        shape: [TILE].into_iter().collect(),
    };
    let y = b.node(op.clone(), ty, &ops);
    Ok(b.case(format!("{name} on {dtype}"), y, tiled_results(samples)))
}

/// Cases for a reduction from its table samples (each sample one vector).
fn reduce_cases(r: ReduceOp) -> Vec<Result<Case, String>> {
    let row = r.row();
    if row.samples.is_empty() {
        return vec![Err(format!(
            "op {}: no sample points in the op table",
            row.name
        ))];
    }
    let dtypes: &[DType] = if row.int {
        &[DType::F32, DType::I32]
    } else {
        &[DType::F32]
    };
    let mut out = Vec::new();
    for &dtype in dtypes {
        for (k, s) in row.samples.iter().enumerate() {
            let mut b = G::new();
            let n = s.args.len();
            let x = match dtype {
                DType::F32 => b.f32("x", &[n], s.args),
                DType::I32 => b.i32("x", &[n], s.args),
            };
            let op = Op::Reduce {
                op: r,
                axes: [0].into_iter().collect(),
            };
            let ty = TensorType {
                dtype,
                shape: Default::default(),
            };
            let y = b.node(op, ty, &[x]);
            let expected = match dtype {
                DType::F32 => s.result,
                DType::I32 => s.result.trunc(),
            };
            // i32 samples: the table's values are integers where int is set.
            out.push(Ok(b.case(
                format!("{} sample {k} on {dtype}", row.name),
                y,
                vec![expected],
            )));
        }
    }
    out
}

/// Every case for `op` (a prototype). Structural ops get hand-computed
/// cases here; the `match` is exhaustive, so a new structural op must add one.
fn cases(op: &Op) -> Vec<Result<Case, String>> {
    let name = op.name();
    let one = |c: Case| vec![Ok(c)];
    match op {
        Op::Unary(u) => {
            let row = u.row();
            let mut v = vec![elementwise_cases(op, DType::F32, row.samples, 1)];
            if row.int {
                v.push(elementwise_cases(op, DType::I32, row.int_samples, 1));
            } else if !row.int_samples.is_empty() {
                v.push(Err(format!(
                    "op {name}: i32 samples but the row says f32 only"
                )));
            }
            v
        }
        Op::Binary(bop) => {
            let row = bop.row();
            vec![
                elementwise_cases(op, DType::F32, row.samples, 2),
                elementwise_cases(op, DType::I32, row.int_samples, 2),
            ]
        }
        Op::Reduce { op: r, .. } => reduce_cases(*r),
        Op::Input { .. } => {
            let mut b = G::new();
            let x = b.f32("x", &[3], &[1.0, -2.0, 0.5]);
            let y = b.node(Op::Unary(UnaryOp::Neg), f(&[3]), &[x]);
            one(b.case(name.into(), y, vec![-1.0, 2.0, -0.5]))
        }
        Op::Param { .. } => {
            let mut b = G::new();
            let w = b.node(Op::Param { name: "w".into() }, f(&[2]), &[]);
            b.feeds
                .insert("w".into(), HostTensor::f32(&[2], vec![3.0, -4.0]).unwrap());
            let y = b.node(Op::Unary(UnaryOp::Neg), f(&[2]), &[w]);
            one(b.case(name.into(), y, vec![-3.0, 4.0]))
        }
        Op::Const(_) => {
            let mut b = G::new();
            let x = b.f32("x", &[3], &[1.0, 1.0, 1.0]);
            let c = b.node(Op::Const(Literal::F32(vec![0.5, -1.5, 2.0])), f(&[3]), &[]);
            let y = b.node(Op::Binary(BinaryOp::Mul), f(&[3]), &[x, c]);
            let mut b2 = G::new();
            let k = b2.i32("k", &[2], &[1.0, 2.0]);
            let ci = b2.node(Op::Const(Literal::I32(vec![7])), i(&[2]), &[]);
            let yi = b2.node(Op::Binary(BinaryOp::Add), i(&[2]), &[k, ci]);
            vec![
                Ok(b.case("const f32".into(), y, vec![0.5, -1.5, 2.0])),
                Ok(b2.case("const i32 splat".into(), yi, vec![8.0, 9.0])),
            ]
        }
        Op::Select => {
            let mut b = G::new();
            let m = b.f32("m", &[4], &[1.0, 0.0, -2.0, 0.0]);
            let x = b.f32("a", &[4], &[1.0, 2.0, 3.0, 4.0]);
            let z = b.f32("b", &[4], &[-1.0, -2.0, -3.0, -4.0]);
            let y = b.node(Op::Select, f(&[4]), &[m, x, z]);
            one(b.case(name.into(), y, vec![1.0, -2.0, 3.0, -4.0]))
        }
        Op::Cast => {
            let mut b = G::new();
            let x = b.f32("x", &[4], &[1.75, -2.5, 3.0, -0.25]);
            let y = b.node(Op::Cast, i(&[4]), &[x]);
            let mut b2 = G::new();
            let k = b2.i32("k", &[2], &[-3.0, 5.0]);
            let yf = b2.node(Op::Cast, f(&[2]), &[k]);
            vec![
                Ok(b.case("cast f32->i32".into(), y, vec![1.0, -2.0, 3.0, 0.0])),
                Ok(b2.case("cast i32->f32".into(), yf, vec![-3.0, 5.0])),
            ]
        }
        Op::Broadcast => {
            let mut b = G::new();
            let x = b.f32("x", &[3], &[1.0, 2.0, 3.0]);
            let y = b.node(Op::Broadcast, f(&[2, 3]), &[x]);
            one(b.case(name.into(), y, vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]))
        }
        Op::Reshape => {
            let mut b = G::new();
            let x = b.f32("x", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
            let s = b.node(Op::Unary(UnaryOp::Neg), f(&[2, 3]), &[x]);
            let y = b.node(Op::Reshape, f(&[3, 2]), &[s]);
            one(b.case(name.into(), y, vec![-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]))
        }
        Op::Transpose { .. } => {
            let mut b = G::new();
            let x = b.f32("x", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
            let op = Op::Transpose {
                perm: [1, 0].into_iter().collect(),
            };
            let y = b.node(op, f(&[3, 2]), &[x]);
            one(b.case(name.into(), y, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]))
        }
        Op::ArgMax { .. } => {
            let mut b = G::new();
            let x = b.f32("x", &[2, 3], &[1.0, 5.0, 2.0, 7.0, 0.0, 7.0]);
            let y = b.node(Op::ArgMax { axis: 1 }, i(&[2]), &[x]);
            one(b.case(name.into(), y, vec![1.0, 0.0]))
        }
        Op::MatMul { .. } => {
            let mm = |trans_b: bool, want: Vec<f64>| {
                let mut b = G::new();
                let a = b.f32("a", &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
                let c = b.f32("b", &[2, 2], &[5.0, 6.0, 7.0, 8.0]);
                let op = Op::MatMul {
                    trans_a: false,
                    trans_b,
                };
                let y = b.node(op, f(&[2, 2]), &[a, c]);
                Ok(b.case(format!("matmul trans_b={trans_b}"), y, want))
            };
            vec![
                mm(false, vec![19.0, 22.0, 43.0, 50.0]),
                mm(true, vec![17.0, 23.0, 39.0, 53.0]),
            ]
        }
        Op::Unfold { .. } => {
            let v = |xs: &[usize]| xs.iter().copied().collect();
            // 1-d, dilated: y[o, k] = x[o + 2k].
            let mut b = G::new();
            let x = b.f32("x", &[1, 4, 1], &[1.0, 2.0, 3.0, 4.0]);
            let op = Op::Unfold {
                window: v(&[2]),
                strides: v(&[1]),
                dilation: v(&[2]),
            };
            let y = b.node(op, f(&[1, 2, 2, 1]), &[x]);
            let dilated = b.case("unfold 1-d dilation 2".into(), y, vec![1.0, 3.0, 2.0, 4.0]);
            // 2-d, 2×2 windows of a 3×3 image: y[oh, ow, kh, kw] = x[oh+kh, ow+kw].
            let mut b = G::new();
            let vals: Vec<f64> = (1..=9).map(f64::from).collect();
            let x = b.f32("x", &[1, 3, 3, 1], &vals);
            let op = Op::Unfold {
                window: v(&[2, 2]),
                strides: v(&[1, 1]),
                dilation: v(&[1, 1]),
            };
            let y = b.node(op, f(&[1, 2, 2, 2, 2, 1]), &[x]);
            let want = [
                1.0, 2.0, 4.0, 5.0, 2.0, 3.0, 5.0, 6.0, 4.0, 5.0, 7.0, 8.0, 5.0, 6.0, 8.0, 9.0,
            ];
            let two_d = b.case("unfold 2-d".into(), y, want.to_vec());
            vec![Ok(dilated), Ok(two_d)]
        }
        Op::Fold { .. } => {
            let v = |xs: &[usize]| xs.iter().copied().collect();
            // Overlapping windows: y[s] = Σ_{o+k=s} x[o, k].
            let mut b = G::new();
            let x = b.f32("x", &[1, 2, 2, 1], &[1.0, 2.0, 3.0, 4.0]);
            let op = Op::Fold {
                window: v(&[2]),
                strides: v(&[1]),
                dilation: v(&[1]),
            };
            let y = b.node(op, f(&[1, 3, 1]), &[x]);
            let overlap = b.case("fold overlapping".into(), y, vec![1.0, 5.0, 4.0]);
            // A stride that does not divide: the last cell is in no window.
            let mut b = G::new();
            let x = b.f32(
                "x",
                &[2, 2, 2, 1],
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            );
            let op = Op::Fold {
                window: v(&[2]),
                strides: v(&[2]),
                dilation: v(&[1]),
            };
            let y = b.node(op, f(&[2, 5, 1]), &[x]);
            let want = vec![1.0, 2.0, 3.0, 4.0, 0.0, 5.0, 6.0, 7.0, 8.0, 0.0];
            let strided = b.case("fold stride 2 of 5".into(), y, want);
            vec![Ok(overlap), Ok(strided)]
        }
        Op::Concat { .. } => {
            let mut b = G::new();
            let x = b.f32("x", &[2], &[1.0, 2.0]);
            let z = b.f32("z", &[1], &[3.0]);
            let y = b.node(Op::Concat { axis: 0 }, f(&[3]), &[x, z]);
            one(b.case(name.into(), y, vec![1.0, 2.0, 3.0]))
        }
        Op::Slice { .. } => {
            let mut b = G::new();
            let x = b.f32("x", &[4], &[1.0, 2.0, 3.0, 4.0]);
            let op = Op::Slice {
                axis: 0,
                start: 1,
                end: 3,
            };
            let y = b.node(op, f(&[2]), &[x]);
            one(b.case(name.into(), y, vec![2.0, 3.0]))
        }
        Op::OneHot { .. } => {
            let mut b = G::new();
            let k = b.i32("k", &[3], &[2.0, 0.0, 5.0]);
            let y = b.node(Op::OneHot { depth: 3 }, f(&[3, 3]), &[k]);
            let want = vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
            one(b.case(name.into(), y, want))
        }
        Op::StopGradient => {
            let mut b = G::new();
            let x = b.f32("x", &[2], &[1.5, -2.0]);
            let y = b.node(Op::StopGradient, f(&[2]), &[x]);
            one(b.case(name.into(), y, vec![1.5, -2.0]))
        }
        Op::AllReduceMean => {
            // One process (no communicator): the mean over one rank is the
            // value itself; the JIT runs it as its external call.
            let mut b = G::new();
            let x = b.f32("x", &[3], &[1.5, -2.0, 0.25]);
            let y = b.node(Op::AllReduceMean, f(&[3]), &[x]);
            one(b.case(name.into(), y, vec![1.5, -2.0, 0.25]))
        }
        Op::RandomUniform { .. } => {
            let mut b = G::new();
            let step = b.i32("step", &[], &[3.0]);
            let y = b.node(Op::RandomUniform { seed: 7 }, f(&[TILE]), &[step]);
            let mut c = b.case(name.into(), y, Vec::new());
            // The value is defined by `random_uniform` (which both engines
            // must follow); independently of it, the draws are in [0, 1)
            // and not all equal.
            c.expected = None;
            c.check = Some(|v| {
                if v.iter().any(|x| !(0.0..1.0).contains(x)) {
                    return Err(format!("draws outside [0, 1): {v:?}"));
                }
                if v.windows(2).all(|w| w[0] == w[1]) {
                    return Err(format!("all draws equal: {v:?}"));
                }
                let def: Vec<f64> = (0..TILE as u32)
                    .map(|e| random_uniform(7, 3, e) as f64)
                    .collect();
                if v != def.as_slice() {
                    return Err(format!("not random_uniform(7, 3, i): {v:?} vs {def:?}"));
                }
                Ok(())
            });
            one(c)
        }
        Op::Gather => {
            let mut b = G::new();
            let table = b.f32("table", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
            let ids = b.i32("ids", &[2, 2], &[2.0, 0.0, 0.0, 1.0]);
            let y = b.node(Op::Gather, f(&[2, 2, 2]), &[table, ids]);
            let want = vec![5.0, 6.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0];
            one(b.case(name.into(), y, want))
        }
        Op::ScatterAdd { .. } => {
            let mut b = G::new();
            let ids = b.i32("ids", &[2, 2], &[2.0, 0.0, 2.0, 1.0]);
            let v = b.f32("v", &[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
            let y = b.node(Op::ScatterAdd { rows: 3 }, f(&[3, 2]), &[ids, v]);
            // Row 2 collects value rows 0 and 2; row 0 row 1; row 1 row 3.
            let want = vec![3.0, 4.0, 7.0, 8.0, 6.0, 8.0];
            one(b.case(name.into(), y, want))
        }
        Op::RandomBernoulli { .. } => {
            // `p` is an input, so the gradient check sees that it gets none.
            // Expected: the uniform draws of the same seed and stream
            // thresholded at p = 0.5 (the definition), and a mix of 0 and 1.
            let mut b = G::new();
            let step = b.i32("step", &[], &[3.0]);
            let p = b.f32("p", &[], &[0.5]);
            let y = b.node(Op::RandomBernoulli { seed: 7 }, f(&[TILE]), &[step, p]);
            let want: Vec<f64> = (0..TILE as u32)
                .map(|e| f64::from(u8::from(random_uniform(7, 3, e) < 0.5)))
                .collect();
            let mut c = b.case(name.into(), y, want);
            c.check = Some(|v| {
                if !(v.contains(&0.0) && v.contains(&1.0)) {
                    return Err(format!("a p = 0.5 mask of {TILE} is all one value: {v:?}"));
                }
                Ok(())
            });
            one(c)
        }
        Op::RandomNormal { .. } => {
            let mut b = G::new();
            let step = b.i32("step", &[], &[3.0]);
            let y = b.node(Op::RandomNormal { seed: 7 }, f(&[TILE]), &[step]);
            let mut c = b.case(name.into(), y, Vec::new());
            // Independently of `random_normal`'s f32 evaluation: Box–Muller
            // in f64 on the same two uniform draws.
            c.expected = None;
            c.check = Some(|v| {
                let second = lossgraph_ir::op::NORMAL_SECOND_STREAM;
                for (e, &got) in v.iter().enumerate() {
                    let u1 = random_uniform(7, 3, e as u32) as f64;
                    let u2 = random_uniform(7 ^ second, 3, e as u32) as f64;
                    let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    if (got - z).abs() > 1e-5 * (1.0 + z.abs()) {
                        return Err(format!("element {e}: {got} vs Box–Muller {z}"));
                    }
                    if got != random_normal(7, 3, e as u32) as f64 {
                        return Err(format!("element {e}: not random_normal(7, 3, {e})"));
                    }
                }
                if v.windows(2).all(|w| w[0] == w[1]) {
                    return Err(format!("all draws equal: {v:?}"));
                }
                Ok(())
            });
            one(c)
        }
    }
}

fn close(got: &[f64], want: &[f64], rtol: f64, atol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} values, expected {}", got.len(), want.len()));
    }
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        if !ok {
            return Err(format!("element {k}: {g} vs {w}"));
        }
    }
    Ok(())
}

/// The op of the case's output node.
fn op_of(g: &Graph) -> &Op {
    &g.node(g.output("y").expect("output y")).op
}

/// Runs every check on one case; returns the failures, each prefixed by the op name.
fn check_case(op_name: &str, c: &Case) -> Vec<String> {
    let mut fails = Vec::new();
    let mut fail = |m: String| fails.push(format!("op {op_name} ({}): {m}", c.what));
    let op = op_of(&c.graph).clone();

    // Text round trip.
    let text = print(&c.graph);
    match parse(&text) {
        Err(e) => fail(format!("text does not parse back: {e}\n{text}")),
        Ok(back) => {
            if print(&back) != text {
                fail(format!(
                    "text round trip changes the graph:\n{text}---\n{}",
                    print(&back)
                ));
            }
            if *op_of(&back) != op {
                fail(format!(
                    "text round trip turns {op:?} into {:?}",
                    op_of(&back)
                ));
            }
        }
    }

    // Interpreter against the independent value.
    let interp_y = match interp::interpret(&c.graph, &c.feeds) {
        Err(e) => {
            fail(format!("interpreter fails: {e}"));
            None
        }
        Ok(outs) => {
            let y = outs
                .into_iter()
                .find(|o| o.0 == "y")
                .map(|o| o.1.to_f64())
                .unwrap_or_default();
            if let Some(want) = &c.expected {
                if let Err(m) = close(&y, want, 1e-6, 1e-7) {
                    fail(format!(
                        "interpreter result wrong (interpreter vs expected): {m}"
                    ));
                }
            }
            if let Some(check) = c.check {
                if let Err(m) = check(&y) {
                    fail(format!("interpreter result wrong: {m}"));
                }
            }
            Some(y)
        }
    };

    // VJP against finite differences, or the declared "no gradient".
    let y_id = c.graph.output("y").expect("output y");
    let operands = c.graph.operands(y_id);
    let f32_out = c.graph.node(y_id).ty.dtype == DType::F32;
    let mut wrt: Vec<String> = Vec::new();
    for (pos, &o) in operands.iter().enumerate() {
        let on = c.graph.node(o);
        let Op::Input { name } = &on.op else { continue };
        if on.ty.dtype != DType::F32 || !f32_out {
            continue;
        }
        let declared = op.differentiable(pos);
        let mut g = c.graph.clone();
        let of = y_sum(&mut g, y_id);
        let got = grad(&mut g, of, &[o]);
        match (declared, got) {
            (_, Err(e)) => fail(format!("autodiff fails on operand {pos}: {e}")),
            (false, Ok(r)) if r[0].is_some() => fail(format!(
                "declares no gradient for operand {pos} but autodiff produced one"
            )),
            (true, Ok(r)) if r[0].is_none() => {
                fail(format!("no VJP rule: operand {pos} gets no gradient"))
            }
            (true, Ok(_)) => wrt.push(name.clone()),
            (false, Ok(_)) => {}
        }
    }
    // Operands declared "no gradient" were checked against autodiff above.
    if !wrt.is_empty() {
        let names: Vec<&str> = wrt.iter().map(String::as_str).collect();
        match check_gradients(
            &c.graph,
            "y",
            &names,
            &c.feeds,
            &GradCheckOptions::default(),
        ) {
            Err(e) => fail(format!("gradient check fails: {e}")),
            Ok(rep) if !rep.passed(1e-2) => {
                fail(format!("VJP disagrees with finite differences:\n{rep}"))
            }
            Ok(_) => {}
        }
    }

    // JIT: compiles without fallback and matches the interpreter.
    match Program::new(c.graph.clone(), Engine::Jit) {
        Err(e) => fail(format!("JIT does not compile: {e}")),
        Ok(mut p) => {
            assert_eq!(p.engine(), Engine::Jit);
            let mut feeds: Vec<(&str, Feed<'_>)> = Vec::new();
            for (name, t) in &c.feeds {
                if c.graph.param(name).is_some() {
                    if let Err(e) = p.set_var(name, t) {
                        fail(format!("JIT set_var {name}: {e}"));
                    }
                } else {
                    feeds.push((name.as_str(), Feed::of(t)));
                }
            }
            match p.run(&feeds) {
                Err(e) => fail(format!("JIT run fails: {e}")),
                Ok(()) => {
                    let got = p.output("y").map(|t| t.to_host().to_f64());
                    let rtol = if op.cost() == Cost::Transcendental {
                        1e-5
                    } else {
                        1e-6
                    };
                    match (got, &interp_y) {
                        (None, _) => fail("JIT has no output y".into()),
                        (Some(got), Some(want)) => {
                            if let Err(m) = close(&got, want, rtol, 1e-6) {
                                fail(format!(
                                    "JIT differs from the interpreter (jit vs interpreter): {m}"
                                ));
                            }
                        }
                        (Some(_), None) => {}
                    }
                }
            }
        }
    }
    fails
}

/// A scalar to differentiate: `y` itself, or the sum of its elements.
fn y_sum(g: &mut Graph, y: NodeId) -> NodeId {
    let ty = g.node(y).ty.clone();
    if ty.rank() == 0 {
        return y;
    }
    g.add_node(
        Node {
            op: Op::Reduce {
                op: ReduceOp::Sum,
                axes: (0..ty.rank()).collect(),
            },
            ty: TensorType::f32([]),
            role: Role::Forward,
            scope: "case".into(),
        },
        &[y],
    )
}

#[test]
fn every_op_conforms_in_every_stage() {
    let protos = Op::prototypes();
    let mut failures = Vec::new();
    let mut names: Vec<&str> = protos.iter().map(Op::name).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        failures.push(format!("op {}: two prototypes share the name", w[0]));
    }
    let mut checked = 0;
    for op in &protos {
        for case in cases(op) {
            match case {
                Err(m) => failures.push(m),
                Ok(c) => {
                    failures.extend(check_case(op.name(), &c));
                    checked += 1;
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} conformance failure(s) over {checked} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every unary, binary and reduce variant was walked.
    assert!(checked >= UnaryOp::ALL.len() + 2 * BinaryOp::ALL.len() + ReduceOp::ALL.len());
}
