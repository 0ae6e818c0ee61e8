//! The Keras callbacks end to end through `fit` (issue 16) on a one-weight
//! model whose every step is computed by hand: `y = w·x` with `x = 1`,
//! target 2, MSE, SGD: the loss of a step is `(w - 2)²` at the weight
//! before it, the gradient `2(w - 2)`, so `w ← w - lr·2(w - 2)`. From
//! `w = 0` with `lr = 0.1` (`w ← 0.8w + 0.4`): 0.4, 0.72, 0.976, 1.1808,
//! 1.34464, … Validation targets 1 give `val_loss = (w - 1)²`, smallest
//! after epoch 2 (w = 0.976), so the best epoch is the third of five.

use lossgraph::callbacks::{Mode, ModelHandle};
use lossgraph::layers::{Dense, Input};
use lossgraph::{
    CSVLogger, Callback, CompileOptions, EarlyStopping, FitOptions, HostTensor, Init, LearningRate,
    LearningRateScheduler, Logs, Loss, Model, ModelCheckpoint, Optimizer, ProgbarLogger,
    ReduceLROnPlateau, Sequential, Validation, Verbosity,
};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

fn one(v: f32) -> Vec<HostTensor> {
    vec![HostTensor::f32(&[1, 1], vec![v]).unwrap()]
}

fn model(opt: Optimizer) -> Model {
    let mut m = Sequential::new("one")
        .add(Input::new(&[1]))
        .add(
            Dense::new(1)
                .use_bias(false)
                .kernel_initializer(Init::Zeros)
                .name("d"),
        )
        .build()
        .unwrap();
    m.compile(CompileOptions::new(opt, Loss::MeanSquaredError))
        .unwrap();
    m
}

fn w(m: &Model) -> f32 {
    m.get_weight("d/kernel").unwrap().as_f32().unwrap()[0]
}

/// Five epochs of one step each on `x = 1, y = 2`, validated on target 1.
fn opts() -> FitOptions {
    FitOptions::new()
        .epochs(5)
        .batch_size(1)
        .shuffle(false, 0)
        .verbose(false)
        .validation(Validation::Data(one(1.0), one(1.0)))
}

/// The hand-computed weight after each of `lrs.len()` SGD steps from 0.
fn sgd_weights(lrs: &[f32]) -> Vec<f32> {
    let mut w = 0.0f32;
    lrs.iter()
        .map(|lr| {
            w -= lr * 2.0 * (w - 2.0);
            w
        })
        .collect()
}

fn close(got: f64, want: f64) {
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

/// Kernel values shared between a [`Record`] and the test.
type Kernels = Rc<RefCell<Vec<f32>>>;

/// Records the kernel at every epoch end (before the callbacks after it
/// run) and at every epoch start.
struct Record {
    at_end: Kernels,
    at_begin: Kernels,
}

fn kernel(m: &dyn ModelHandle) -> f32 {
    let ws = m.get_weights();
    ws.iter()
        .find(|w| w.0 == "d/kernel")
        .unwrap()
        .1
        .as_f32()
        .unwrap()[0]
}

impl Callback for Record {
    fn on_epoch_begin(&mut self, m: &mut dyn ModelHandle, _epoch: usize) -> lossgraph::Result<()> {
        self.at_begin.borrow_mut().push(kernel(m));
        Ok(())
    }
    fn on_epoch_end(
        &mut self,
        m: &mut dyn ModelHandle,
        _epoch: usize,
        _logs: &mut Logs,
    ) -> lossgraph::Result<()> {
        self.at_end.borrow_mut().push(kernel(m));
        Ok(())
    }
}

fn record() -> (Record, Kernels, Kernels) {
    let (a, b) = (Rc::default(), Rc::default());
    (
        Record {
            at_end: Rc::clone(&a),
            at_begin: Rc::clone(&b),
        },
        a,
        b,
    )
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lossgraph-callbacks-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn the_hand_computed_run() {
    let mut m = model(Optimizer::sgd(0.1));
    let h = m.fit(&one(1.0), &one(2.0), opts()).unwrap();
    let want = sgd_weights(&[0.1; 5]);
    close(w(&m) as f64, 1.34464);
    close(w(&m) as f64, want[4] as f64);
    // Losses at the weights before each step; val_loss after it.
    let loss = h.series("loss");
    for (e, l) in [4.0, 2.56, 1.6384].iter().enumerate() {
        close(loss[e], *l);
    }
    let val = h.series("val_loss");
    for (e, l) in [0.36, 0.0784, 0.000576, 0.03268864].iter().enumerate() {
        close(val[e], *l);
    }
}

#[test]
fn early_stopping_restores_exactly_the_best_epochs_weights() {
    let d = scratch("restore");
    let best = d.join("best.safetensors");
    let (rec, at_end, _) = record();
    let mut m = model(Optimizer::sgd(0.1));
    let h = m
        .fit(
            &one(1.0),
            &one(2.0),
            opts()
                .epochs(10)
                .callback(rec)
                .callback(
                    ModelCheckpoint::new(best.to_str().unwrap())
                        .save_best_only(true)
                        .save_weights_only(true),
                )
                .callback(EarlyStopping::new("val_loss", 2).restore_best_weights(true)),
        )
        .unwrap();
    // Best epoch 2; epochs 3 and 4 do not improve: patience 2 stops at epoch 4.
    assert_eq!(h.epoch, vec![0, 1, 2, 3, 4]);
    let at_end = at_end.borrow();
    assert_eq!(at_end.len(), 5);
    close(at_end[2] as f64, 0.976);
    assert_eq!(w(&m).to_bits(), at_end[2].to_bits());
    // The same weights as the file saved at the best epoch.
    assert_eq!(m.get_weights(), lossgraph::read_safetensors(&best).unwrap());
    std::fs::remove_dir_all(&d).unwrap();
    // Without restoring, the last epoch's weights stay.
    let mut m = model(Optimizer::sgd(0.1));
    m.fit(
        &one(1.0),
        &one(2.0),
        opts()
            .epochs(10)
            .callback(EarlyStopping::new("val_loss", 2)),
    )
    .unwrap();
    assert_eq!(w(&m).to_bits(), at_end[4].to_bits());
}

#[test]
fn reduce_lr_on_plateau_changes_the_compiled_steps_rate() {
    // min_delta 1000: no epoch improves on the first, so patience 1
    // halves the rate at the end of epoch 1 and, after a cooldown of 2
    // (epoch 2 not counted, epoch 3 counted), again at the end of epoch 3.
    let (rec, at_end, at_begin) = record();
    let mut m = model(Optimizer::sgd(0.1));
    let h = m
        .fit(
            &one(1.0),
            &one(2.0),
            opts().callback(rec).callback(
                ReduceLROnPlateau::new("loss")
                    .factor(0.5)
                    .unwrap()
                    .patience(1)
                    .min_delta(1000.0)
                    .cooldown(2),
            ),
        )
        .unwrap();
    let rates: [f32; 5] = [0.1, 0.1, 0.05, 0.05, 0.025];
    // Logged: the rate each epoch trained with.
    let logged: Vec<f32> = h
        .series("learning_rate")
        .iter()
        .map(|v| *v as f32)
        .collect();
    assert_eq!(logged, rates);
    // Each epoch's step is the SGD step at that rate, by hand.
    let want = sgd_weights(&rates);
    close(want[2] as f64, 0.848);
    let (at_end, at_begin) = (at_end.borrow(), at_begin.borrow());
    for e in 0..5 {
        let before = at_begin[e];
        let hand = before - rates[e] * 2.0 * (before - 2.0);
        close(at_end[e] as f64, hand as f64);
        close(at_end[e] as f64, want[e] as f64);
    }
    // The next compile starts from the compiled rate again.
    m.compile(CompileOptions::new(
        Optimizer::sgd(0.1),
        Loss::MeanSquaredError,
    ))
    .unwrap();
    assert_eq!(m.iterations(), 0);
}

#[test]
fn learning_rate_scheduler_sets_each_epochs_rate() {
    let mut m = model(Optimizer::sgd(0.1));
    let h = m
        .fit(
            &one(1.0),
            &one(2.0),
            opts()
                .epochs(3)
                .callback(LearningRateScheduler::new(|e, lr| {
                    if e == 0 {
                        lr
                    } else {
                        lr / 4.0
                    }
                })),
        )
        .unwrap();
    let rates = [0.1f32, 0.025, 0.00625];
    assert_eq!(
        h.series("learning_rate")
            .iter()
            .map(|v| *v as f32)
            .collect::<Vec<_>>(),
        rates
    );
    close(w(&m) as f64, sgd_weights(&rates)[2] as f64);
    // A schedule compiled into the optimizer cannot be overridden: fit fails.
    let mut m = model(Optimizer {
        learning_rate: LearningRate::ExponentialDecay {
            initial: 0.1,
            decay_steps: 1,
            decay_rate: 0.5,
            staircase: false,
        },
        ..Optimizer::sgd(0.1)
    });
    let e = m
        .fit(
            &one(1.0),
            &one(2.0),
            opts().callback(LearningRateScheduler::new(|_, lr| lr)),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("schedule") && e.contains("cannot be set"), "{e}");
}

#[test]
fn model_checkpoint_saves_the_best_only_and_the_files_load_back() {
    let d = scratch("ckpt");
    let pattern = d.join("best-{epoch:02d}-{val_loss:.4f}.safetensors");
    let (rec, at_end, _) = record();
    let mut m = model(Optimizer::sgd(0.1));
    m.fit(
        &one(1.0),
        &one(2.0),
        opts().callback(rec).callback(
            ModelCheckpoint::new(pattern.to_str().unwrap())
                .save_best_only(true)
                .save_weights_only(true),
        ),
    )
    .unwrap();
    // val_loss 0.36, 0.0784, 0.000576 improve; 0.0327, 0.1187 do not.
    let mut files: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "best-01-0.3600.safetensors",
            "best-02-0.0784.safetensors",
            "best-03-0.0006.safetensors"
        ]
    );
    // The best file holds epoch 2's weights.
    let mut fresh = model(Optimizer::sgd(0.1));
    fresh.load_weights(d.join(&files[2])).unwrap();
    assert_eq!(w(&fresh).to_bits(), at_end.borrow()[2].to_bits());
    // A full checkpoint every epoch: the last one resumes at epoch 5.
    let path = d.join("last.ckpt.safetensors");
    let mut m = model(Optimizer::sgd(0.1));
    m.fit(
        &one(1.0),
        &one(2.0),
        opts().callback(ModelCheckpoint::new(path.to_str().unwrap())),
    )
    .unwrap();
    let mut fresh = model(Optimizer::sgd(0.1));
    let info = fresh.load_checkpoint(&path).unwrap();
    assert_eq!((info.epoch, info.iterations), (5, 5));
    assert_eq!(w(&fresh).to_bits(), w(&m).to_bits());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn csv_logger_writes_one_parsable_row_per_epoch() {
    let d = scratch("csv");
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join("log.csv");
    let mut m = model(Optimizer::sgd(0.1));
    let h = m
        .fit(
            &one(1.0),
            &one(2.0),
            opts().epochs(3).callback(CSVLogger::new(&path)),
        )
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "{text}");
    let header = &rows[0];
    assert_eq!(header[0], "epoch");
    let mut sorted = header[1..].to_vec();
    sorted.sort();
    assert_eq!(header[1..], sorted[..], "keys sorted as Keras");
    assert!(header.contains(&"loss") && header.contains(&"val_loss"));
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (e, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], e.to_string());
        // Every value parses back to exactly the logged f64.
        for (k, v) in h.epochs[e].entries() {
            assert_eq!(row[col(k)].parse::<f64>().unwrap(), *v, "{k} at epoch {e}");
        }
    }
    close(rows[1][col("loss")].parse().unwrap(), 4.0);
    close(rows[3][col("val_loss")].parse().unwrap(), 0.000576);
    std::fs::remove_dir_all(&d).unwrap();
}

/// A writer into a shared buffer.
struct Shared(Rc<RefCell<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn verbose_2_prints_keras_epoch_lines_with_the_hand_values() {
    let buf = Rc::new(RefCell::new(Vec::new()));
    let mut m = model(Optimizer::sgd(0.1));
    m.fit(
        &one(1.0),
        &one(2.0),
        opts().epochs(3).callback(ProgbarLogger::with_writer(
            Verbosity::OneLinePerEpoch,
            Box::new(Shared(buf.clone())),
        )),
    )
    .unwrap();
    let text = String::from_utf8(buf.borrow().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    // Loss (w - 2)² before each step, val_loss (w - 1)² after it.
    let want = [
        ("4.0000", "0.3600"),
        ("2.5600", "0.0784"),
        ("1.6384", "5.7600e-04"),
    ];
    for (e, (loss, val)) in want.iter().enumerate() {
        assert_eq!(lines[2 * e], format!("Epoch {}/3", e + 1));
        let l = lines[2 * e + 1];
        assert!(l.starts_with("1/1 - 0s - "), "{l}");
        let tail = format!(
            "/step - loss: {loss} - compiled_loss: {loss} - val_loss: {val} - val_compiled_loss: {val}"
        );
        assert!(l.ends_with(&tail), "{l} vs {tail}");
    }
}

#[test]
fn a_failing_callback_ends_fit_with_its_error() {
    let mut m = model(Optimizer::sgd(0.1));
    // An auto mode that cannot tell the direction of a custom monitor.
    let e = m
        .fit(
            &one(1.0),
            &one(2.0),
            opts().callback(EarlyStopping::new("score", 1).mode(Mode::Auto)),
        )
        .unwrap_err();
    assert!(e.to_string().contains("'score'"), "{e}");
}
