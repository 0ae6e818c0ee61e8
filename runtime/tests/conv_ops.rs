//! Convolution and pooling composites (`lossgraph_ir::conv`) on random
//! geometries: the interpreter against a naive f64 reference written here,
//! the gradients against finite differences, and the JIT against the
//! interpreter (forward value and both gradients), with the convolution
//! and pooling calls on and off. Geometries cover odd sizes, strides that
//! do not divide, 1×1 kernels, kernels as large as the (padded) input,
//! dilation, `same` padding, groups and depthwise kernels, in 1-d and 2-d;
//! pooling graphs also after the default pass pipeline (as the front end
//! compiles them), and max pooling with tied windows.

mod common;

use common::Rng;
use lossgraph_compiler::autodiff::append_gradients;
use lossgraph_compiler::fusion::FusionOptions;
use lossgraph_compiler::gradcheck::{check_gradients, GradCheckOptions};
use lossgraph_compiler::passes::default_pipeline;
use lossgraph_ir::conv::{avg_pool, conv, keras_padding, max_pool, Padding};
use lossgraph_ir::{interp, Builder, Graph, HostTensor, Literal, Tensor, TensorType};
use lossgraph_runtime::{Engine, JitOptions, Program};
use std::collections::HashMap;

/// One geometry: spatial extents, window, strides, dilation, padding.
#[derive(Clone, Debug)]
struct Geo {
    n: usize,
    spatial: Vec<usize>,
    c: usize,
    window: Vec<usize>,
    strides: Vec<usize>,
    dilation: Vec<usize>,
    padding: Padding,
}

impl Geo {
    fn pads(&self) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
        let (mut out, mut lo, mut hi) = (vec![], vec![], vec![]);
        for i in 0..self.spatial.len() {
            let (o, l, h) = keras_padding(
                self.spatial[i],
                self.window[i],
                self.strides[i],
                self.dilation[i],
                self.padding,
            )
            .unwrap();
            out.push(o);
            lo.push(l);
            hi.push(h);
        }
        (out, lo, hi)
    }
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Row-major coordinates of flat index `i` in `shape`.
fn coords(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = i % shape[d];
        i /= shape[d];
    }
    c
}

fn flat(c: &[usize], shape: &[usize]) -> usize {
    c.iter().zip(shape).fold(0, |acc, (&x, &s)| acc * s + x)
}

/// The image position of output `o`, tap `k` on axis `i`, or None in the padding.
fn at(g: &Geo, lo: &[usize], i: usize, o: usize, k: usize) -> Option<usize> {
    let p = o * g.strides[i] + k * g.dilation[i];
    (p >= lo[i] && p < lo[i] + g.spatial[i]).then(|| p - lo[i])
}

/// Naive reference conv in f64.
fn ref_conv(g: &Geo, x: &[f32], w: &[f32], f: usize, groups: usize) -> Vec<f64> {
    let (out, lo, _) = g.pads();
    let r = g.spatial.len();
    let xs: Vec<usize> = [vec![g.n], g.spatial.clone(), vec![g.c]].concat();
    let cg = g.c / groups;
    let fg = f / groups;
    let ws: Vec<usize> = [g.window.clone(), vec![cg, f]].concat();
    let ys: Vec<usize> = [vec![g.n], out.clone(), vec![f]].concat();
    (0..numel(&ys))
        .map(|yi| {
            let yc = coords(yi, &ys);
            let (n, o, fo) = (yc[0], &yc[1..=r], yc[r + 1]);
            let grp = fo / fg;
            let mut acc = 0.0f64;
            for ki in 0..numel(&g.window) {
                let kc = coords(ki, &g.window);
                let pos: Option<Vec<usize>> = (0..r).map(|i| at(g, &lo, i, o[i], kc[i])).collect();
                let Some(pos) = pos else { continue };
                for ci in 0..cg {
                    let xc = [vec![n], pos.clone(), vec![grp * cg + ci]].concat();
                    let wc = [kc.clone(), vec![ci, fo]].concat();
                    acc += x[flat(&xc, &xs)] as f64 * w[flat(&wc, &ws)] as f64;
                }
            }
            acc
        })
        .collect()
}

/// Naive reference pooling (max: first maximum; avg: over real cells).
fn ref_pool(g: &Geo, x: &[f32], max: bool) -> Vec<f64> {
    let (out, lo, _) = g.pads();
    let r = g.spatial.len();
    let xs: Vec<usize> = [vec![g.n], g.spatial.clone(), vec![g.c]].concat();
    let ys: Vec<usize> = [vec![g.n], out.clone(), vec![g.c]].concat();
    (0..numel(&ys))
        .map(|yi| {
            let yc = coords(yi, &ys);
            let (n, o, c) = (yc[0], &yc[1..=r], yc[r + 1]);
            let vals: Vec<f64> = (0..numel(&g.window))
                .filter_map(|ki| {
                    let kc = coords(ki, &g.window);
                    let pos: Option<Vec<usize>> =
                        (0..r).map(|i| at(g, &lo, i, o[i], kc[i])).collect();
                    pos.map(|p| x[flat(&[vec![n], p, vec![c]].concat(), &xs)] as f64)
                })
                .collect();
            if max {
                vals.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            } else {
                vals.iter().sum::<f64>() / vals.len() as f64
            }
        })
        .collect()
}

fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// Distinct values 0.1 apart in random order (no near-ties for max pooling
/// under finite differences).
fn distinct(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - n as f32 * 0.05).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Builds `y = op(params)`, `loss = Σ y²·proj`, and the gradients of
/// `loss` (`dy = 2·y·proj` depends on the input, so that constant folding
/// cannot turn the backward pass into constants).
fn graph(
    params: &[(&str, Vec<usize>)],
    rng: &mut Rng,
    op: impl FnOnce(&[Tensor]) -> Tensor,
) -> Graph {
    let b = Builder::new("conv_case");
    let ps: Vec<Tensor> = params
        .iter()
        .map(|(name, s)| b.param(name, TensorType::f32(s)))
        .collect();
    let y = op(&ps);
    let proj = b.constant(
        Literal::F32(random(rng, numel(y.shape()))),
        TensorType::f32(y.shape()),
    );
    let loss = (&(&y * &y) * &proj).sum_all();
    b.output("y", &y);
    b.output("loss", &loss);
    let mut g = b.finish().unwrap();
    let ids: Vec<_> = params
        .iter()
        .map(|(name, _)| g.param(name).unwrap())
        .collect();
    let l = g.output("loss").unwrap();
    append_gradients(&mut g, l, &ids).unwrap();
    g
}

fn close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        if (g - w).abs() > atol + rtol * w.abs() {
            return Err(format!("{what}: element {k}: {g} vs {w}"));
        }
    }
    Ok(())
}

/// Interpreter vs `want`, gradients vs finite differences, JIT vs
/// interpreter; `expect_calls`: the convolution and pooling calls the
/// graph must compile to when they are on (pooling: `None` when not
/// checked).
/// `step` is the relative finite-difference step: pooling cases use a
/// small one so that no difference crosses between the distinct values
/// (0.1 apart) of a window.
fn check(
    label: &str,
    g: &Graph,
    feeds: &HashMap<String, HostTensor>,
    want: &[f64],
    step: f32,
    expect_calls: (usize, Option<usize>),
) -> Result<(), String> {
    let outs: HashMap<String, HostTensor> = interp::interpret(g, feeds)
        .map_err(|e| format!("{label}: interpreter: {e}"))?
        .into_iter()
        .collect();
    close(
        &format!("{label}: interpreter y"),
        &outs["y"].to_f64(),
        want,
        1e-5,
        1e-5,
    )?;
    let names: Vec<&str> = feeds.keys().map(String::as_str).collect();
    let opts = GradCheckOptions {
        step,
        ..GradCheckOptions::default()
    };
    let rep = check_gradients(g, "loss", &names, feeds, &opts)
        .map_err(|e| format!("{label}: gradcheck: {e}"))?;
    if !rep.passed(1e-2) {
        return Err(format!("{label}: VJP vs finite differences:\n{rep}"));
    }
    // The JIT with the convolution and pooling calls forced on (both
    // threads, every call split) and off (im2col, the pooling composite):
    // each against the interpreter, and the calls bit-identical on one and
    // two threads.
    let base = JitOptions::default();
    let configs = [
        ("calls x2", true, 2),
        ("calls x1", true, 1),
        ("im2col x2", false, 2),
    ];
    let mut first: Option<Vec<Vec<f32>>> = None;
    for (config, calls, threads) in configs {
        let opts = JitOptions {
            fusion: FusionOptions {
                conv_calls: calls,
                pool_calls: calls,
                ..base.fusion
            },
            threads,
            gemm_min_flops: 1,
            split_min_work: 1,
            ..base
        };
        let label = format!("{label} [{config}]");
        let mut p = Program::new_jit(g.clone(), &opts).map_err(|e| format!("{label}: JIT: {e}"))?;
        let stats = p.compile_stats();
        let (convs, pools) = stats.map_or((0, 0), |s| (s.convs, s.pools));
        let want_convs = if calls && conv_calls_available() {
            expect_calls.0
        } else {
            0
        };
        if convs != want_convs {
            return Err(format!(
                "{label}: {convs} convolution calls, expected {want_convs}"
            ));
        }
        let want_pools = if calls && pool_calls_available() {
            expect_calls.1
        } else {
            Some(0)
        };
        if want_pools.is_some_and(|w| w != pools) {
            return Err(format!(
                "{label}: {pools} pooling calls, expected {want_pools:?}"
            ));
        }
        for (name, t) in feeds {
            p.set_var(name, t)
                .map_err(|e| format!("{label}: set_var: {e}"))?;
        }
        p.run(&[]).map_err(|e| format!("{label}: JIT run: {e}"))?;
        let mut values = Vec::new();
        for (name, _) in g.outputs() {
            let got = p
                .output(name)
                .ok_or_else(|| format!("{label}: JIT lacks {name}"))?
                .to_host();
            close(
                &format!("{label}: JIT {name}"),
                &got.to_f64(),
                &outs[name].to_f64(),
                1e-5,
                1e-5,
            )?;
            values.push(got.as_f32().map(<[f32]>::to_vec).unwrap_or_default());
        }
        if calls {
            match &first {
                None => first = Some(values),
                Some(v) if *v != values => {
                    return Err(format!("{label}: differs bit for bit from two threads"))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Whether this host runs convolution calls (AVX-512): the default options
/// turn them on exactly then.
fn conv_calls_available() -> bool {
    JitOptions::default().fusion.conv_calls
}

/// Whether this host runs pooling calls (x86-64).
fn pool_calls_available() -> bool {
    JitOptions::default().fusion.pool_calls
}

fn random_geo(rng: &mut Rng, case: usize) -> Geo {
    let r = 1 + case % 2;
    let mut pick = |lo: u64, hi: u64| (lo + rng.next_u64() % (hi - lo + 1)) as usize;
    let spatial: Vec<usize> = (0..r).map(|_| pick(3, 9)).collect();
    let padding = if case.is_multiple_of(3) {
        Padding::Valid
    } else {
        Padding::Same
    };
    let mut window: Vec<usize> = (0..r).map(|_| pick(1, 4)).collect();
    let strides: Vec<usize> = (0..r).map(|_| pick(1, 3)).collect();
    let mut dilation: Vec<usize> = (0..r).map(|_| if case % 4 == 1 { 2 } else { 1 }).collect();
    for i in 0..r {
        // Valid windows must fit; every few cases the window is the whole input.
        if case % 5 == 2 {
            window[i] = spatial[i];
            dilation[i] = 1;
        }
        while padding == Padding::Valid && (window[i] - 1) * dilation[i] + 1 > spatial[i] {
            window[i] -= 1;
        }
    }
    Geo {
        n: pick(1, 2),
        spatial,
        c: pick(1, 3),
        window,
        strides,
        dilation,
        padding,
    }
}

#[test]
fn conv_random_geometries() {
    let mut rng = Rng::new(12);
    let mut failures = Vec::new();
    for case in 0..24 {
        let mut geo = random_geo(&mut rng, case);
        // groups: 1, 2 (grouped) or c (depthwise, multiplier 2).
        let (groups, f) = match case % 6 {
            4 => {
                geo.c = 4;
                (2, 6)
            }
            5 => (geo.c, geo.c * 2),
            _ => (1, 1 + case % 4),
        };
        let (_, lo, hi) = geo.pads();
        let xs: Vec<usize> = [vec![geo.n], geo.spatial.clone(), vec![geo.c]].concat();
        let ws: Vec<usize> = [geo.window.clone(), vec![geo.c / groups, f]].concat();
        let xv = random(&mut rng, numel(&xs));
        let wv = random(&mut rng, numel(&ws));
        let want = ref_conv(&geo, &xv, &wv, f, groups);
        let (st, dl) = (geo.strides.clone(), geo.dilation.clone());
        let g = graph(&[("x", xs.clone()), ("w", ws.clone())], &mut rng, |p| {
            conv(&p[0], &p[1], &st, &dl, &lo, &hi, groups).unwrap()
        });
        let feeds = HashMap::from([
            ("x".to_string(), HostTensor::f32(&xs, xv).unwrap()),
            ("w".to_string(), HostTensor::f32(&ws, wv).unwrap()),
        ]);
        let label = format!("conv case {case} {geo:?} groups {groups} filters {f}");
        // Ungrouped: forward, data and filter gradient as calls.
        let expect = if groups == 1 { 3 } else { 0 };
        if let Err(e) = check(&label, &g, &feeds, &want, 1.0 / 32.0, (expect, Some(0))) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pooling_random_geometries() {
    let mut rng = Rng::new(34);
    let mut failures = Vec::new();
    for case in 0..24 {
        let geo = random_geo(&mut rng, case);
        let geo = Geo {
            dilation: vec![1; geo.spatial.len()],
            ..geo
        };
        let (_, lo, hi) = geo.pads();
        let xs: Vec<usize> = [vec![geo.n], geo.spatial.clone(), vec![geo.c]].concat();
        for max in [true, false] {
            let xv = distinct(&mut rng, numel(&xs));
            let want = ref_pool(&geo, &xv, max);
            let (w, st) = (geo.window.clone(), geo.strides.clone());
            let g = graph(&[("x", xs.clone())], &mut rng, |p| {
                if max {
                    max_pool(&p[0], &w, &st, &lo, &hi).unwrap()
                } else {
                    avg_pool(&p[0], &w, &st, &lo, &hi).unwrap()
                }
            });
            let feeds = HashMap::from([("x".to_string(), HostTensor::f32(&xs, xv).unwrap())]);
            let kind = if max { "max" } else { "avg" };
            // Forward and gradient as calls; a one-cell window is no pooling
            // once simplified (its sum over one tap is a reshape).
            let calls = (numel(&geo.window) > 1).then_some(2);
            let mut optimized = g.clone();
            default_pipeline().run(&mut optimized).unwrap();
            // As built, an average also counts each window's real cells by
            // a sum pool of ones along each spatial axis (folded into a
            // constant by the optimizer).
            let counting = if max { 0 } else { geo.spatial.len() };
            for (graph, version, calls) in [
                (&g, "as built", calls.map(|c| c + counting)),
                (&optimized, "optimized", calls),
            ] {
                if let Err(e) = check(
                    &format!("{kind} pool case {case} {geo:?} ({version})"),
                    graph,
                    &feeds,
                    &want,
                    1e-3,
                    (0, calls),
                ) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Keras's MaxPooling routes the gradient of a tied window to its first
/// element (SEMANTICS.md §6.3: a 2×2 window of zeros gives [1, 0, 0, 0]).
#[test]
fn max_pool_ties_route_to_first_maximum() {
    let b = Builder::new("ties");
    let x = b.param("x", TensorType::f32([1, 2, 2, 1]));
    let y = max_pool(&x, &[2, 2], &[2, 2], &[0, 0], &[0, 0]).unwrap();
    let loss = y.sum_all();
    b.output("loss", &loss);
    let mut g = b.finish().unwrap();
    let (xi, l) = (g.param("x").unwrap(), g.output("loss").unwrap());
    append_gradients(&mut g, l, &[xi]).unwrap();
    let feeds = HashMap::from([(
        "x".to_string(),
        HostTensor::f32(&[1, 2, 2, 1], vec![0.0; 4]).unwrap(),
    )]);
    let outs: HashMap<String, HostTensor> =
        interp::interpret(&g, &feeds).unwrap().into_iter().collect();
    assert_eq!(outs["grad/x"].to_f64(), vec![1.0, 0.0, 0.0, 0.0]);
    let mut p = Program::new(g, Engine::Jit).unwrap();
    p.set_var("x", &feeds["x"]).unwrap();
    p.run(&[]).unwrap();
    assert_eq!(
        p.output("grad/x").unwrap().to_host().to_f64(),
        vec![1.0, 0.0, 0.0, 0.0]
    );
}

/// Max pooling with many tied windows (values from {-1, 0, 1}, some
/// windows all padding but one cell): the JIT with the pooling calls on
/// one and two threads gives the interpreter's value exactly and its
/// gradient (the first maximum wins, as `argmax` picks it), as built and
/// optimized.
#[test]
fn max_pool_calls_match_interpreter_on_ties() {
    let mut rng = Rng::new(56);
    let mut failures = Vec::new();
    for case in 0..16 {
        let geo = random_geo(&mut rng, case);
        let geo = Geo {
            dilation: vec![1; geo.spatial.len()],
            ..geo
        };
        if numel(&geo.window) == 1 {
            continue;
        }
        let (_, lo, hi) = geo.pads();
        let xs: Vec<usize> = [vec![geo.n], geo.spatial.clone(), vec![geo.c]].concat();
        let xv: Vec<f32> = (0..numel(&xs))
            .map(|_| (rng.next_u64() % 3) as f32 - 1.0)
            .collect();
        let (w, st) = (geo.window.clone(), geo.strides.clone());
        let g = graph(&[("x", xs.clone())], &mut rng, |p| {
            max_pool(&p[0], &w, &st, &lo, &hi).unwrap()
        });
        let feeds = HashMap::from([("x".to_string(), HostTensor::f32(&xs, xv).unwrap())]);
        let mut optimized = g.clone();
        default_pipeline().run(&mut optimized).unwrap();
        for (graph, version) in [(&g, "as built"), (&optimized, "optimized")] {
            let label = format!("ties case {case} {geo:?} ({version})");
            let want: HashMap<String, HostTensor> = interp::interpret(graph, &feeds)
                .unwrap()
                .into_iter()
                .collect();
            for threads in [1, 2] {
                let base = JitOptions::default();
                let opts = JitOptions {
                    threads,
                    split_min_work: 1,
                    ..base
                };
                let mut p = Program::new_jit(graph.clone(), &opts).unwrap();
                let pools = p.compile_stats().map_or(0, |s| s.pools);
                if pool_calls_available() && pools != 2 {
                    failures.push(format!("{label}: {pools} pooling calls, expected 2"));
                }
                p.set_var("x", &feeds["x"]).unwrap();
                p.run(&[]).unwrap();
                // `y` is a window's cell, exactly; `grad/x` sums the
                // gradients routed to each cell (in another order where
                // windows overlap: rounding only, while a gradient routed
                // to another tied cell would be off by a whole `dy`).
                for (out, tol) in [("y", 0.0), ("grad/x", 1e-5)] {
                    let got = p.output(out).unwrap().to_host().to_f64();
                    if let Err(e) = close(
                        &format!("{label} x{threads}: {out}"),
                        &got,
                        &want[out].to_f64(),
                        tol,
                        tol,
                    ) {
                        failures.push(e);
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Same padding splits an odd total with the extra cell at the end
/// (SEMANTICS.md §6.2: a ones kernel of 2 on [1, 2, 3] gives [3, 5, 3]).
#[test]
fn same_padding_puts_the_extra_cell_at_the_end() {
    assert_eq!(
        keras_padding(10, 3, 2, 1, Padding::Same).unwrap(),
        (5, 0, 1)
    );
    assert_eq!(keras_padding(3, 2, 1, 1, Padding::Same).unwrap(), (3, 0, 1));
    assert_eq!(
        keras_padding(8, 3, 1, 1, Padding::Valid).unwrap(),
        (6, 0, 0)
    );
    assert!(keras_padding(2, 3, 1, 1, Padding::Valid).is_err());
    let b = Builder::new("same");
    let x = b.param("x", TensorType::f32([1, 3, 1]));
    let w = b.constant(Literal::F32(vec![1.0]), TensorType::f32([2, 1, 1]));
    let y = conv(&x, &w, &[1], &[1], &[0], &[1], 1).unwrap();
    b.output("y", &y);
    let g = b.finish().unwrap();
    let feeds = HashMap::from([(
        "x".to_string(),
        HostTensor::f32(&[1, 3, 1], vec![1.0, 2.0, 3.0]).unwrap(),
    )]);
    let outs = interp::interpret(&g, &feeds).unwrap();
    assert_eq!(outs[0].1.to_f64(), vec![3.0, 5.0, 3.0]);
}
