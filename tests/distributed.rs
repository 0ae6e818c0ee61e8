//! Data-parallel training without MPI: ranks are threads of this process,
//! joined by [`ThreadGroup`], an independent [`Communicator`] written here
//! (sums in rank order through shared slots and a barrier). The same
//! library code paths as under `mpirun` (the compiled `all_reduce_mean`
//! external call, shards, mean logs, the start-up check) run in the default
//! suite; `cli/tests/mpi.rs` (feature `mpi`) runs them across processes.
//!
//! The equivalence bound: a rank's gradient sums its `B/N` samples, the
//! full-batch one all `B`, so the two differ by the f32 rounding of a
//! reordered sum, `≤ γ_B·Σ|g_i|` with `γ_B ≈ B·2⁻²⁴` (worst case; ≈ √B·2⁻²⁴
//! typically), and after `s` SGD steps the weights by `≲ s·lr·γ_B·Σ|g_i|`,
//! far below 1e-6 of the weights here (batch 16, 8 steps).

use lossgraph::layers::{BatchNormalization, Dense, Input};
use lossgraph::{
    Communicator, CompileOptions, Error, FitOptions, HostTensor, Loss, Metric, Model, Optimizer,
    Sequential,
};
use std::sync::{Arc, Barrier, Mutex};

#[path = "common/noise.rs"]
mod noise;
#[path = "common/variables.rs"]
mod variables;
use noise::noise;
use variables::variables;

/// `n` ranks as threads: each rank's buffers meet in `slots`.
#[derive(Debug)]
struct ThreadGroup {
    n: usize,
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f64>>>,
}

#[derive(Debug)]
struct ThreadRank {
    group: Arc<ThreadGroup>,
    rank: usize,
}

fn thread_group(n: usize) -> Vec<Arc<dyn Communicator>> {
    let group = Arc::new(ThreadGroup {
        n,
        barrier: Barrier::new(n),
        slots: Mutex::new(vec![Vec::new(); n]),
    });
    (0..n)
        .map(|rank| {
            Arc::new(ThreadRank {
                group: group.clone(),
                rank,
            }) as Arc<dyn Communicator>
        })
        .collect()
}

impl ThreadRank {
    /// Every rank's `mine`, in rank order.
    fn exchange(&self, mine: Vec<f64>) -> Vec<Vec<f64>> {
        let g = &self.group;
        g.slots.lock().unwrap()[self.rank] = mine;
        g.barrier.wait();
        let all = g.slots.lock().unwrap().clone();
        g.barrier.wait();
        all
    }

    fn sum(&self, mine: Vec<f64>) -> Vec<f64> {
        let all = self.exchange(mine);
        let mut out = vec![0.0; all[0].len()];
        for v in &all {
            assert_eq!(
                v.len(),
                out.len(),
                "ranks reduce buffers of different lengths"
            );
            for (o, x) in out.iter_mut().zip(v) {
                *o += x;
            }
        }
        out
    }
}

impl Communicator for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.group.n
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), String> {
        // Sums in f64 of f32 values, rounded once: for two ranks exactly
        // the f32 sum a + b (correctly rounded either way).
        let s = self.sum(buf.iter().map(|&x| x as f64).collect());
        for (b, x) in buf.iter_mut().zip(s) {
            *b = x as f32;
        }
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), String> {
        let s = self.sum(buf.to_vec());
        buf.copy_from_slice(&s);
        Ok(())
    }
    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<u64>, String> {
        let all = self.exchange(values.iter().map(|&v| f64::from_bits(v)).collect());
        Ok(all.concat().into_iter().map(f64::to_bits).collect())
    }
    fn abort(&self, code: i32) -> ! {
        panic!("rank {} aborted the job with code {code}", self.rank)
    }
}

const N: usize = 64;

fn data() -> (HostTensor, HostTensor) {
    let x = noise(N * 5, 3);
    let y: Vec<f32> = (0..N)
        .map(|i| x[5 * i] - 0.5 * x[5 * i + 1] + x[5 * i + 3] * x[5 * i + 4])
        .collect();
    (
        HostTensor::f32(&[N, 5], x).unwrap(),
        HostTensor::f32(&[N, 1], y).unwrap(),
    )
}

fn model(units: usize) -> Model {
    Sequential::new("mlp")
        .seed(11)
        .add(Input::new(&[5]))
        .add(Dense::new(units).activation("tanh"))
        .add(Dense::new(1))
        .build()
        .unwrap()
}

fn options() -> CompileOptions {
    CompileOptions::new(Optimizer::sgd(0.1), Loss::from_name("mse").unwrap())
        .metric(Metric::MeanAbsoluteError)
}

fn fit_options(batch: usize) -> FitOptions {
    FitOptions::new()
        .epochs(2)
        .batch_size(batch)
        .shuffle(true, 5)
        .verbose(false)
}

/// Trains `make(r)` on every rank `r` of a thread group of `ranks` ranks;
/// returns each rank's fit result, losses and variables.
#[allow(clippy::type_complexity)]
fn fit_on_threads(
    ranks: usize,
    make: impl Fn(usize) -> Model + Sync,
    batch: usize,
) -> Vec<Result<(Vec<f64>, Vec<(String, Vec<f32>)>), Error>> {
    let comms = thread_group(ranks);
    let make = &make;
    std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .enumerate()
            .map(|(r, comm)| {
                s.spawn(move || {
                    let mut m = make(r);
                    m.compile(options().distributed(comm))?;
                    let (x, y) = data();
                    let h = m.fit(&[x], &[y], fit_options(batch))?;
                    Ok((h.series("loss"), variables(&m)))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// `max |a - b| / max |b|`: the error relative to the tensor's scale.
fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max);
    diff / b.iter().map(|y| y.abs() as f64).fold(1e-30, f64::max)
}

#[test]
fn two_ranks_on_half_batches_match_one_process_on_full_batches() {
    // 16 = 8 + 8 per step, and 13 = 7 + 6 (uneven shards, weighted).
    for batch in [16, 13] {
        let mut single = model(8);
        single.compile(options()).unwrap();
        let (x, y) = data();
        let h = single.fit(&[x], &[y], fit_options(batch)).unwrap();
        let (want, want_loss) = (variables(&single), h.series("loss"));
        // Training moved the weights (the comparison is not between initial values).
        assert!(max_rel(&want[0].1, &variables(&model(8))[0].1) > 1e-3);
        for (r, res) in fit_on_threads(2, |_| model(8), batch)
            .into_iter()
            .enumerate()
        {
            let (loss, got) = res.unwrap();
            // Uneven shards also round the weight N·n_r/B (7·2/13) and
            // its product with every gradient: a few ulp more.
            let tol = if batch % 2 == 0 { 1e-6 } else { 1e-5 };
            for ((n, w), (_, g)) in want.iter().zip(&got) {
                let e = max_rel(g, w);
                assert!(
                    e <= tol,
                    "batch {batch}, rank {r}, {n}: relative error {e:e}"
                );
            }
            // Logged losses are the global batch's (means over both ranks).
            for (a, b) in loss.iter().zip(&want_loss) {
                assert!(
                    (a - b).abs() <= tol * b.abs(),
                    "batch {batch}, rank {r}: loss {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn a_batch_smaller_than_the_ranks_still_trains() {
    // 64 samples in batches of 3 over 4 ranks: one rank per batch runs a
    // sample at weight 0, and the result is the single-process one.
    let mut single = model(4);
    single.compile(options()).unwrap();
    let (x, y) = data();
    single.fit(&[x], &[y], fit_options(3)).unwrap();
    let want = variables(&single);
    for res in fit_on_threads(4, |_| model(4), 3) {
        let (_, got) = res.unwrap();
        for ((n, w), (_, g)) in want.iter().zip(&got) {
            let e = max_rel(g, w);
            assert!(e <= 1e-5, "{n}: relative error {e:e}");
        }
    }
}

#[test]
fn mismatched_models_are_an_error_on_every_rank() {
    let res = fit_on_threads(2, |r| model(8 + r), 16);
    let msgs: Vec<String> = res
        .into_iter()
        .map(|r| match r {
            Err(e @ Error::Distributed(_)) => e.to_string(),
            Err(e) => panic!("expected a data-parallel error, got {e}"),
            Ok(_) => panic!("mismatched ranks trained"),
        })
        .collect();
    assert!(
        msgs[0].contains("rank 1 has checksum of the training graph"),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[1].contains("rank 1 differs from rank 0"),
        "{}",
        msgs[1]
    );
}

#[test]
fn the_train_step_holds_one_all_reduce_per_gradient() {
    let mut m = model(8);
    let comm = thread_group(2).remove(0);
    m.compile(options().distributed(comm)).unwrap();
    let g = m.graph(lossgraph::Purpose::Train, 8).unwrap();
    let text = lossgraph::ir::text::print(&g);
    assert_eq!(text.matches("all_reduce_mean").count(), 4, "{text}");
    assert!(text.contains("input \"shard_weight\""), "{text}");
    // One process: no all-reduce, no shard weight.
    let mut m = model(8);
    m.compile(options()).unwrap();
    let text = lossgraph::ir::text::print(&m.graph(lossgraph::Purpose::Train, 8).unwrap());
    assert!(!text.contains("all_reduce_mean") && !text.contains("shard_weight"));
}

/// Input(5) → Dense(8) without bias (a bias before BatchNormalization has
/// gradient 0 up to rounding noise, so comparing it would compare noise)
/// → BatchNormalization "bn" (momentum 0.8) → Dense(1) tanh;
/// `synchronized` as given.
fn bn_model(synchronized: bool) -> Model {
    Sequential::new("bn_mlp")
        .seed(11)
        .add(Input::new(&[5]))
        .add(Dense::new(8).use_bias(false))
        .add(
            BatchNormalization::new()
                .momentum(0.8)
                .synchronized(synchronized)
                .name("bn"),
        )
        .add(Dense::new(1).activation("tanh"))
        .build()
        .unwrap()
}

/// Trains `make()` in one process on full batches; its variables.
fn fit_single(make: impl Fn() -> Model, batch: usize) -> Vec<(String, Vec<f32>)> {
    let mut m = make();
    m.compile(options()).unwrap();
    let (x, y) = data();
    m.fit(&[x], &[y], fit_options(batch)).unwrap();
    variables(&m)
}

/// The largest relative error of `got` against `want`, variable by variable.
fn worst(want: &[(String, Vec<f32>)], got: &[(String, Vec<f32>)]) -> (String, f64) {
    assert_eq!(want.len(), got.len());
    want.iter()
        .zip(got)
        .map(|((n, w), (m, g))| {
            assert_eq!(n, m);
            (n.clone(), max_rel(g, w))
        })
        .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a })
}

#[test]
fn synchronized_batch_norm_on_two_ranks_matches_one_process() {
    // The statistics of the global batch (8 + 8, and 7 + 6 weighted by the
    // shard weights) are the full batch's: weights and moving statistics
    // agree to the rounding of the reordered sums (see the module docs).
    for batch in [16, 13] {
        let want = fit_single(|| bn_model(true), batch);
        let tol = if batch % 2 == 0 { 1e-6 } else { 1e-5 };
        for (r, res) in fit_on_threads(2, |_| bn_model(true), batch)
            .into_iter()
            .enumerate()
        {
            let (n, e) = worst(&want, &res.unwrap().1);
            eprintln!("synchronized, batch {batch}, rank {r}: worst {n} {e:e}");
            assert!(
                e <= tol,
                "batch {batch}, rank {r}: {n} relative error {e:e}"
            );
        }
    }
    // One process: the one-pass E[x²] − mean² agrees with the default
    // two-pass variance to f32 rounding here (|mean| ≲ std).
    let (n, e) = worst(
        &fit_single(|| bn_model(false), 16),
        &fit_single(|| bn_model(true), 16),
    );
    assert!(e <= 1e-5, "one process, synchronized vs not: {n} {e:e}");
}

#[test]
fn per_rank_batch_norm_statistics_differ_from_the_global_batch() {
    // synchronized = false (Keras's default): each rank normalizes with,
    // and moves its averages towards, its own half-batch's statistics.
    let want = fit_single(|| bn_model(false), 16);
    let res = fit_on_threads(2, |_| bn_model(false), 16);
    let ranks: Vec<Vec<(String, Vec<f32>)>> = res.into_iter().map(|r| r.unwrap().1).collect();
    for (r, got) in ranks.iter().enumerate() {
        for name in ["bn/moving_mean", "bn/moving_variance"] {
            let w = &want.iter().find(|v| v.0 == name).unwrap().1;
            let g = &got.iter().find(|v| v.0 == name).unwrap().1;
            let e = max_rel(g, w);
            assert!(
                e > 1e-3,
                "rank {r}: {name} matches the global batch ({e:e})"
            );
        }
    }
    let mm = |r: usize| {
        ranks[r]
            .iter()
            .find(|v| v.0 == "bn/moving_mean")
            .unwrap()
            .1
            .clone()
    };
    assert!(
        max_rel(&mm(0), &mm(1)) > 1e-3,
        "the ranks' moving means agree"
    );
}

/// A Keras 3 `Sequential` JSON: Dense(8) without bias → BatchNormalization
/// (`synchronized` as given, momentum 0.8) → Dense(1) tanh.
fn bn_json(synchronized: bool) -> String {
    let dense = |name: &str, units: usize, act: &str, bias: bool, fan_in: usize| {
        format!(
            r#"{{"module": "keras.layers", "class_name": "Dense", "config": {{"name": "{name}",
            "trainable": true, "units": {units}, "activation": "{act}", "use_bias": {bias},
            "kernel_initializer": {{"module": "keras.initializers", "class_name": "GlorotUniform",
            "config": {{"seed": null}}, "registered_name": null}},
            "bias_initializer": {{"module": "keras.initializers", "class_name": "Zeros",
            "config": {{}}, "registered_name": null}}, "kernel_regularizer": null,
            "bias_regularizer": null, "kernel_constraint": null, "bias_constraint": null}},
            "registered_name": null, "build_config": {{"input_shape": [null, {fan_in}]}}}}"#
        )
    };
    format!(
        r#"{{"module": "keras", "class_name": "Sequential", "config": {{"name": "seq",
        "trainable": true, "layers": [
        {{"module": "keras.layers", "class_name": "InputLayer", "config": {{"batch_shape":
        [null, 5], "dtype": "float32", "sparse": false, "name": "seq_input"}},
        "registered_name": null}},
        {d1},
        {{"module": "keras.layers", "class_name": "BatchNormalization", "config": {{"name": "bn",
        "trainable": true, "axis": -1, "momentum": 0.8, "epsilon": 0.001, "center": true,
        "scale": true, "synchronized": {synchronized}}}, "registered_name": null,
        "build_config": {{"input_shape": [null, 8]}}}},
        {d2}]}}, "registered_name": null}}"#,
        d1 = dense("dense", 8, "linear", false, 5),
        d2 = dense("dense_1", 1, "tanh", true, 8),
    )
}

#[test]
fn the_keras_importer_reads_synchronized() {
    use lossgraph::keras::build::build_model;
    use lossgraph::keras::ModelSpec;
    let import = |synchronized: bool| {
        let spec = ModelSpec::from_json_str(&bn_json(synchronized), "bn.json").unwrap();
        build_model(&spec, 5).unwrap()
    };
    // Synchronized: two ranks give the one-process result; not: they do not.
    for synchronized in [true, false] {
        let want = fit_single(|| import(synchronized), 16);
        let res = fit_on_threads(2, |_| import(synchronized), 16);
        let (n, e) = worst(&want, &res.into_iter().next().unwrap().unwrap().1);
        if synchronized {
            // The point is the gap to the unsynchronized run (> 1e-3); the
            // rounding bound is the module's, relative to each tensor's
            // largest value, which for `bn/beta` (from 0) is small: 1.5e-6.
            assert!(e <= 1e-5, "synchronized: {n} relative error {e:e}");
        } else {
            assert!(e > 1e-3, "not synchronized: {n} matches ({e:e})");
        }
    }
}
