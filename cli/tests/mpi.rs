//! Data-parallel training across processes under Open MPI's `mpirun -np 2`
//! (feature `mpi`; `.ci/run` installs openmpi-bin and libopenmpi-dev and
//! runs `cargo test -p lossgraph-cli --features mpi --test mpi`).
//!
//! - `lossgraph train` under `mpirun -np 2` writes the weights of the same
//!   command run as one process (to 1e-6 relative; see tests/distributed.rs
//!   for the bound), and mismatched models across the ranks (an MPMD job
//!   whose ranks train different losses) are a clear error on rank 0.
//! - Faults: this test binary re-runs itself under `mpirun` as the ranks of
//!   one scenario (env `LOSSGRAPH_MPI_SCENARIO`): rank 1 panics, or sleeps
//!   past a 1 s step watchdog. Each rank prints the time of its fault; the
//!   job must end non-zero within 5 s of it.

#![cfg(feature = "mpi")]

use lossgraph::layers::{Dense, Input};
use lossgraph::{
    Communicator, CompileOptions, FitOptions, HostTensor, Logs, Loss, Optimizer, Sequential,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/keras-cases");
const SCENARIO: &str = "LOSSGRAPH_MPI_SCENARIO";

/// `mpirun -np 2` with the flags a CI container needs: root allowed, more
/// ranks than free cores allowed, no core binding, shared memory only.
fn mpirun() -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--oversubscribe",
        "--bind-to",
        "none",
        "--mca",
        "btl",
        "self,vader",
    ])
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lossgraph-mpi-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `train` arguments on the public case p01 (Dense + L1/L2, huber, SGD).
fn train_args(loss: &str, out: &Path) -> Vec<String> {
    let case = PathBuf::from(CASES).join("p01_relu_l2_l1_huber_sgd");
    assert!(case.is_dir(), "{} is missing", case.display());
    let p = |f: &str| case.join(f).to_string_lossy().into_owned();
    [
        "train",
        &p("model.json"),
        "--weights",
        &p("weights.safetensors"),
        "--data",
        &p("data.safetensors"),
        "--loss",
        loss,
        "--optimizer",
        "sgd:0.1",
        "--batch-size",
        "8",
        "--epochs",
        "3",
        "--save",
        &out.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn mpirun_train_gives_the_single_process_weights() {
    let d = temp_dir("train");
    let (one, two) = (d.join("one.safetensors"), d.join("two.safetensors"));
    let exe = env!("CARGO_BIN_EXE_lossgraph");
    let o = Command::new(exe)
        .args(train_args("huber", &one))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = mpirun()
        .args(["-np", "2", exe])
        .args(train_args("huber", &two))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // Rank 0 alone reports and saves.
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches("final loss:").count(), 1, "{}", text(&o));
    let a = lossgraph::read_safetensors(&one).unwrap();
    let b = lossgraph::read_safetensors(&two).unwrap();
    assert_eq!(a.len(), b.len());
    let init = lossgraph::read_safetensors(
        PathBuf::from(CASES).join("p01_relu_l2_l1_huber_sgd/weights.safetensors"),
    )
    .unwrap();
    for (name, t) in &a {
        let u = &b.iter().find(|x| x.0 == *name).expect(name).1;
        let (x, y) = (t.as_f32().unwrap(), u.as_f32().unwrap());
        // Relative to the tensor's scale: max |a - b| / max |a|.
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        let scale = x.iter().map(|p| p.abs()).fold(1e-30, f32::max);
        assert!(
            (diff / scale) as f64 <= 1e-6,
            "{name}: 1 process vs 2 ranks differ by {diff} at scale {scale}"
        );
        let w0 = &init.iter().find(|x| x.0 == *name).expect(name).1;
        if name.ends_with("kernel") {
            assert_ne!(w0, t, "{name}: training moved the weights");
        }
    }
}

#[test]
fn mismatched_models_are_a_clear_error_on_rank_0() {
    let d = temp_dir("mismatch");
    let exe = env!("CARGO_BIN_EXE_lossgraph");
    let t0 = Instant::now();
    let o = mpirun()
        .args(["-np", "1", exe])
        .args(train_args("huber", &d.join("a.safetensors")))
        .arg(":")
        .args(["-np", "1", exe])
        .args(train_args("mse", &d.join("b.safetensors")))
        .output()
        .unwrap();
    let took = t0.elapsed();
    eprintln!("the mismatched job ended after {took:?} (start-up included)");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rank 1 has checksum of the training graph"),
        "{}",
        text(&o)
    );
    // Detected at start-up, before any step: the whole job is seconds.
    assert!(took < Duration::from_secs(30), "{took:?}");
}

/// Milliseconds since the Unix epoch (the ranks' and the parent's clock).
fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Runs this test binary's test `test` as 2 ranks of `scenario`; returns
/// the output and the time it ended.
fn run_scenario(test: &str, scenario: &str) -> (Output, u128) {
    let exe = std::env::current_exe().unwrap();
    let o = mpirun()
        .args(["-np", "2"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(SCENARIO, scenario)
        .output()
        .unwrap();
    (o, now_ms())
}

/// Asserts the job failed within 5 s of the fault time its ranks printed.
fn assert_ended_soon_after_fault(o: &Output, end: u128) {
    assert!(!o.status.success(), "{}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    let fault: u128 = err
        .lines()
        .find_map(|l| l.strip_prefix("fault at ms "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fault line:\n{}", text(o)));
    let after = end.saturating_sub(fault);
    eprintln!("the job ended {after} ms after the fault");
    assert!(
        after <= 5000,
        "the job ended {after} ms after the fault\n{}",
        text(o)
    );
}

/// A rank of a fault scenario: trains a small MLP on 2 ranks; at batch 2
/// rank 1 panics (`panic`) or sleeps 60 s (`sleep`, watchdog 1 s).
fn scenario_rank(scenario: &str) {
    let comm: Arc<dyn Communicator> =
        Arc::new(lossgraph::runtime::mpi::Mpi::init().expect("MPI initialises"));
    let rank = comm.rank();
    let mut model = Sequential::new("mlp")
        .seed(1)
        .add(Input::new(&[4]))
        .add(Dense::new(8).activation("relu"))
        .add(Dense::new(1))
        .build()
        .unwrap();
    model
        .compile(
            CompileOptions::new(Optimizer::sgd(0.05), Loss::from_name("mse").unwrap())
                .distributed(comm)
                .watchdog(Some(Duration::from_secs(1))),
        )
        .unwrap();
    let n = 256;
    let x = HostTensor::f32(&[n, 4], (0..n * 4).map(|i| (i % 7) as f32 / 7.0).collect()).unwrap();
    let y = HostTensor::f32(&[n, 1], (0..n).map(|i| (i % 3) as f32).collect()).unwrap();
    let fault = Fault {
        rank,
        scenario: scenario.to_string(),
    };
    let r = model.fit(
        &[x],
        &[y],
        FitOptions::new()
            .batch_size(16)
            .epochs(50)
            .verbose(false)
            .callback(fault),
    );
    panic!("rank {rank}: fit returned {r:?}: the fault did not end the job");
}

struct Fault {
    rank: usize,
    scenario: String,
}

impl lossgraph::Callback for Fault {
    fn on_train_batch_end(
        &mut self,
        _model: &mut dyn lossgraph::ModelHandle,
        batch: usize,
        _logs: &Logs,
    ) -> lossgraph::Result<()> {
        if batch == 2 && self.rank == 1 {
            eprintln!("fault at ms {}", now_ms());
            match self.scenario.as_str() {
                "panic" => panic!("injected panic on rank 1"),
                "sleep" => std::thread::sleep(Duration::from_secs(60)),
                other => panic!("unknown scenario {other}"),
            }
        }
        Ok(())
    }
}

#[test]
fn a_panic_on_rank_1_aborts_the_job() {
    if let Ok(s) = std::env::var(SCENARIO) {
        return scenario_rank(&s);
    }
    let (o, end) = run_scenario("a_panic_on_rank_1_aborts_the_job", "panic");
    assert_ended_soon_after_fault(&o, end);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("injected panic on rank 1"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_stalled_rank_trips_the_watchdog() {
    if let Ok(s) = std::env::var(SCENARIO) {
        return scenario_rank(&s);
    }
    let (o, end) = run_scenario("a_stalled_rank_trips_the_watchdog", "sleep");
    assert_ended_soon_after_fault(&o, end);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("did not finish within 1.0 s"),
        "{}",
        text(&o)
    );
}

/// Concatenates the samples of `ts` (same per-sample shape and dtype).
fn concat_samples(ts: &[&HostTensor]) -> HostTensor {
    let mut shape = ts[0].shape().to_vec();
    shape[0] = ts.iter().map(|t| t.shape()[0]).sum();
    match ts[0].as_f32() {
        Some(_) => HostTensor::f32(
            &shape,
            ts.iter()
                .flat_map(|t| t.as_f32().unwrap().to_vec())
                .collect(),
        ),
        None => HostTensor::i32(
            &shape,
            ts.iter()
                .flat_map(|t| t.as_i32().unwrap().to_vec())
                .collect(),
        ),
    }
    .unwrap()
}

/// A rank of the measurement: the `mnist` and `wide` workloads trained
/// with `fit` at their global batch on every rank of the job (steps/s
/// after a compiling epoch), and the cost of their step's all-reduces
/// alone (one call per gradient tensor, median of 200).
fn measure_rank() {
    let comm: Arc<dyn Communicator> =
        Arc::new(lossgraph::runtime::mpi::Mpi::init().expect("MPI initialises"));
    let (rank, ranks) = (comm.rank(), comm.size());
    for name in ["mnist", "wide"] {
        let w = lossgraph_cli::bench::workload(name).unwrap();
        let mut rng = lossgraph::ir::rng::SplitMix64::new(lossgraph_cli::bench::SEED);
        let (kernels, batches) = lossgraph_cli::bench::generate(w, &mut rng);
        let mut model = lossgraph_cli::bench::build_model(w, &kernels).unwrap();
        model
            .compile(lossgraph_cli::bench::compile_options(w).distributed(comm.clone()))
            .unwrap();
        let x = concat_samples(&batches.xs.iter().map(|b| &b[0]).collect::<Vec<_>>());
        let y = concat_samples(&batches.ys.iter().map(|b| &b[0]).collect::<Vec<_>>());
        let fit = |model: &mut lossgraph::Model, epochs: usize| {
            let opts = FitOptions::new()
                .batch_size(w.batch)
                .epochs(epochs)
                .shuffle(false, 0)
                .verbose(false);
            let (x, y) = (std::slice::from_ref(&x), std::slice::from_ref(&y));
            model.fit(x, y, opts).unwrap();
        };
        fit(&mut model, 1);
        let epochs = if name == "wide" { 10 } else { 50 };
        let t0 = Instant::now();
        fit(&mut model, epochs);
        let step = t0.elapsed().as_secs_f64() / (epochs * batches.xs.len()) as f64;
        let sizes: Vec<usize> = model
            .trainable_weight_names()
            .iter()
            .map(|n| model.get_weight(n).unwrap().as_f32().unwrap().len())
            .collect();
        let mut bufs: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.5; n]).collect();
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            for b in bufs.iter_mut() {
                comm.all_reduce_sum_f32(b).unwrap();
            }
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let ar = times[times.len() / 2];
        let bytes: usize = sizes.iter().sum::<usize>() * 4;
        if rank == 0 {
            eprintln!(
                "MEASURE {name} ranks={ranks} global_batch={} steps/s={:.0} step_us={:.0} \
                 allreduce_us={:.0} ({} tensors, {} bytes) share={:.1}%",
                w.batch,
                1.0 / step,
                step * 1e6,
                ar * 1e6,
                sizes.len(),
                bytes,
                100.0 * ar / step
            );
        }
    }
}

/// The benchmark row of benches/README.md (ignored: a measurement):
/// `cargo test --release -p lossgraph-cli --features mpi --test mpi -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_steps_per_second_at_1_and_2_ranks() {
    if std::env::var(SCENARIO).is_ok() {
        return measure_rank();
    }
    let exe = std::env::current_exe().unwrap();
    for np in ["1", "2"] {
        let o = mpirun()
            .args(["-np", np])
            .arg(&exe)
            .args([
                "measure_steps_per_second_at_1_and_2_ranks",
                "--exact",
                "--nocapture",
                "--ignored",
                "--test-threads",
                "1",
            ])
            .env(SCENARIO, "measure")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        for l in String::from_utf8_lossy(&o.stderr).lines() {
            if l.starts_with("MEASURE") {
                eprintln!("{l}");
            }
        }
    }
}
