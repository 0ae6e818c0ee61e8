//! [`ModelCheckpoint`]: save the model during training, every epoch or
//! only on improvement, to a path formatted from the epoch and the logs.

use super::monitor::{missing, Mode, Monitor};
use super::python_format::{python_exp, python_repr};
use super::{Callback, ModelHandle};
use crate::error::{Error, Result};
use crate::train::logs::Logs;
use std::path::Path;

/// How often [`ModelCheckpoint`] saves (Keras's `save_freq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFreq {
    /// At the end of every epoch (`"epoch"`).
    Epoch,
    /// Every `n` training batches (an integer `save_freq`), counted across epochs.
    Batches(usize),
}

/// Keras 3's `ModelCheckpoint`. The path is formatted as Python's
/// `filepath.format(epoch=epoch + 1, **logs)` ([`format_filepath`]:
/// `ckpt-{epoch:02d}-{val_loss:.4f}.safetensors`). With `save_weights_only`
/// it writes the variables ([`ModelHandle::save_weights`], safetensors),
/// otherwise a checkpoint that resumes training exactly
/// ([`ModelHandle::save_checkpoint`]); both are written atomically, missing
/// directories are created, and only rank 0 writes in a data-parallel run.
/// With `save_best_only` it saves only when the monitored value improves on
/// the best so far (or on `initial_value_threshold`; an epoch without the
/// value saves, as Keras does, with a warning).
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    /// The path pattern.
    pub filepath: String,
    /// The value watched with `save_best_only` (Keras's default `val_loss`).
    pub monitor: Monitor,
    /// Save only on improvement.
    pub save_best_only: bool,
    /// Save the weights only (else a full training checkpoint).
    pub save_weights_only: bool,
    /// When to save.
    pub save_freq: SaveFreq,
    /// Print Keras's messages on stderr.
    pub verbose: bool,
    /// The best monitored value so far (starts at `initial_value_threshold`).
    pub best: Option<f64>,
    /// The paths written, in order.
    pub saved: Vec<String>,
    current_epoch: usize,
    since_last_save: usize,
    last_batch: Option<usize>,
}

impl ModelCheckpoint {
    /// Saves a full checkpoint to `filepath` at the end of every epoch.
    pub fn new(filepath: impl Into<String>) -> ModelCheckpoint {
        ModelCheckpoint {
            filepath: filepath.into(),
            monitor: Monitor::new("val_loss", Mode::Auto, 0.0),
            save_best_only: false,
            save_weights_only: false,
            save_freq: SaveFreq::Epoch,
            verbose: false,
            best: None,
            saved: Vec::new(),
            current_epoch: 0,
            since_last_save: 0,
            last_batch: None,
        }
    }

    /// Watches `name` in `mode` for `save_best_only`.
    pub fn monitor(mut self, name: &str, mode: Mode) -> ModelCheckpoint {
        self.monitor = Monitor::new(name, mode, 0.0);
        self
    }

    /// Saves only when the monitored value improves.
    pub fn save_best_only(mut self, yes: bool) -> ModelCheckpoint {
        self.save_best_only = yes;
        self
    }

    /// Saves the weights only.
    pub fn save_weights_only(mut self, yes: bool) -> ModelCheckpoint {
        self.save_weights_only = yes;
        self
    }

    /// Sets how often to save (`Batches(0)` is refused by `fit`'s first batch).
    pub fn save_freq(mut self, f: SaveFreq) -> ModelCheckpoint {
        self.save_freq = f;
        self
    }

    /// The value a first save must beat (Keras's `initial_value_threshold`).
    pub fn initial_value_threshold(mut self, v: Option<f64>) -> ModelCheckpoint {
        self.best = v;
        self
    }

    /// Prints Keras's messages.
    pub fn verbose(mut self, yes: bool) -> ModelCheckpoint {
        self.verbose = yes;
        self
    }

    fn should_save(&mut self, epoch: usize, logs: &Logs, path: &str) -> Result<bool> {
        if !self.save_best_only {
            if self.verbose {
                eprintln!("\nEpoch {}: saving model to {path}", epoch + 1);
            }
            return Ok(true);
        }
        let Some(current) = self.monitor.value(logs) else {
            eprintln!("{}", missing("ModelCheckpoint", &self.monitor.name, logs));
            return Ok(true);
        };
        let best = self
            .best
            .map_or_else(|| "None".to_string(), |b| format!("{b:.5}"));
        if self
            .monitor
            .is_improvement("ModelCheckpoint", current, self.best)?
        {
            if self.verbose {
                eprintln!(
                    "\nEpoch {}: {} improved from {best} to {current:.5}, saving model to {path}",
                    epoch + 1,
                    self.monitor.name
                );
            }
            self.best = Some(current);
            Ok(true)
        } else {
            if self.verbose {
                eprintln!(
                    "\nEpoch {}: {} did not improve from {best}",
                    epoch + 1,
                    self.monitor.name
                );
            }
            Ok(false)
        }
    }

    fn save(
        &mut self,
        model: &mut dyn ModelHandle,
        epoch: usize,
        batch: Option<usize>,
        logs: &Logs,
    ) -> Result<()> {
        let path = format_filepath(&self.filepath, epoch + 1, batch.map(|b| b + 1), logs)?;
        if !self.should_save(epoch, logs, &path)? || model.params().rank != 0 {
            return Ok(());
        }
        let p = Path::new(&path);
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                file: dir.display().to_string(),
                source: e,
            })?;
        }
        if self.save_weights_only {
            model.save_weights(p)?;
        } else {
            model.save_checkpoint(p)?;
        }
        self.saved.push(path);
        Ok(())
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_begin(&mut self, _model: &mut dyn ModelHandle, epoch: usize) -> Result<()> {
        self.current_epoch = epoch;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        model: &mut dyn ModelHandle,
        batch: usize,
        logs: &Logs,
    ) -> Result<()> {
        let SaveFreq::Batches(n) = self.save_freq else {
            return Ok(());
        };
        if n == 0 {
            return Err(Error::config(
                "ModelCheckpoint",
                "save_freq: a number of batches must be at least 1",
            ));
        }
        // Keras counts batches across epochs: a batch index not above the
        // last one seen starts a new epoch.
        self.since_last_save += match self.last_batch {
            Some(last) if batch > last => batch - last,
            _ => batch + 1,
        };
        self.last_batch = Some(batch);
        if self.since_last_save >= n {
            self.since_last_save = 0;
            self.save(model, self.current_epoch, Some(batch), logs)?;
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        model: &mut dyn ModelHandle,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        // The direction is checked at the first epoch end, as Keras does.
        if self.save_best_only {
            self.monitor.maximizes("ModelCheckpoint")?;
        }
        if self.save_freq == SaveFreq::Epoch {
            self.save(model, epoch, None, logs)?;
        }
        Ok(())
    }
}

/// Formats a checkpoint path as Python's `str.format` does for the fields
/// Keras passes: `{epoch}` (1-based) and, when saving every few batches,
/// `{batch}` (1-based) are integers; every other `{name}` is the logged
/// value `name`. A field may carry a format spec `[0][width][.precision][type]`
/// with type `d` (integers), `f`, `e` or none (`{epoch:02d}`,
/// `{val_loss:.4f}`); `{{` and `}}` are literal braces. An unknown name or
/// spec is an error naming the pattern and the field.
pub fn format_filepath(
    pattern: &str,
    epoch: usize,
    batch: Option<usize>,
    logs: &Logs,
) -> Result<String> {
    let err = |m: String| Error::config("ModelCheckpoint filepath", format!("'{pattern}': {m}"));
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err(err("a single '}' (write '}}' for a brace)".into())),
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => field.push(c),
                        None => return Err(err("a '{' is not closed".into())),
                    }
                }
                let (name, spec) = field.split_once(':').unwrap_or((field.as_str(), ""));
                let value = match name {
                    "epoch" => Field::Int(epoch),
                    "batch" if batch.is_some() => Field::Int(batch.unwrap_or(0)),
                    _ => match logs.get(name) {
                        Some(v) => Field::Float(v),
                        None => {
                            let known: Vec<&str> = ["epoch"]
                                .into_iter()
                                .chain(batch.map(|_| "batch"))
                                .chain(logs.entries().iter().map(|e| e.0.as_str()))
                                .collect();
                            return Err(err(format!(
                                "no value named '{name}' (known: {})",
                                known.join(", ")
                            )));
                        }
                    },
                };
                out.push_str(
                    &value
                        .format(spec)
                        .map_err(|m| err(format!("{{{field}}}: {m}")))?,
                );
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A value a path pattern refers to.
enum Field {
    Int(usize),
    Float(f64),
}

impl Field {
    /// `self` under a Python format spec `[0][width][.precision][type]`.
    fn format(&self, spec: &str) -> std::result::Result<String, String> {
        let bad = || format!("format spec '{spec}' is not [0][width][.precision][d|f|e]");
        let (body, ty) = match spec.chars().last() {
            Some(t @ ('d' | 'f' | 'e')) => (&spec[..spec.len() - 1], Some(t)),
            _ => (spec, None),
        };
        let (width, precision) = match body.split_once('.') {
            Some((w, p)) => (w, Some(p.parse::<usize>().map_err(|_| bad())?)),
            None => (body, None),
        };
        let zero = width.starts_with('0') && width.len() > 1;
        let width: usize = if width.is_empty() {
            0
        } else {
            width.parse().map_err(|_| bad())?
        };
        let pad = |s: String| -> String {
            if s.len() >= width {
                s
            } else if zero {
                let (sign, digits) = match s.strip_prefix('-') {
                    Some(d) => ("-", d),
                    None => ("", s.as_str()),
                };
                format!("{sign}{}{digits}", "0".repeat(width - s.len()))
            } else {
                // Python right-aligns numbers.
                format!("{}{s}", " ".repeat(width - s.len()))
            }
        };
        let text = match self {
            Field::Int(i) => match (ty, precision) {
                (None | Some('d'), None) => i.to_string(),
                (Some('f'), p) => format!("{:.*}", p.unwrap_or(6), *i as f64),
                (Some('e'), p) => python_exp(*i as f64, p.unwrap_or(6)),
                _ => return Err("an integer takes a precision only with f or e".into()),
            },
            Field::Float(v) => match (ty, precision) {
                (Some('f'), p) => format!("{:.*}", p.unwrap_or(6), v),
                (Some('e'), p) => python_exp(*v, p.unwrap_or(6)),
                (None, None) => python_repr(*v),
                (None, Some(_)) => return Err("give a type (f or e) with a precision".into()),
                (Some(_), _) => return Err("'d' is for integers; use f or e".into()),
            },
        };
        Ok(pad(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::testing::{logs, FakeModel};

    #[test]
    fn paths_format_as_python_str_format() {
        let l = logs(&[
            ("loss", 0.123456),
            ("val_loss", 1.5),
            ("val_accuracy", 0.875),
        ]);
        assert_eq!(
            format_filepath("ckpt-{epoch:02d}-{val_loss:.4f}.safetensors", 3, None, &l).unwrap(),
            "ckpt-03-1.5000.safetensors"
        );
        assert_eq!(
            format_filepath("m{epoch}.st", 12, None, &l).unwrap(),
            "m12.st"
        );
        assert_eq!(
            format_filepath("{{x}}-{loss:.2e}-{val_accuracy}", 1, None, &l).unwrap(),
            "{x}-1.23e-01-0.875"
        );
        assert_eq!(
            format_filepath("e{epoch:03d}b{batch:04d}", 2, Some(7), &l).unwrap(),
            "e002b0007"
        );
        assert_eq!(
            format_filepath("{loss:8.3f}", 1, None, &l).unwrap(),
            "   0.123"
        );
        let e = format_filepath("{val_acc:.2f}", 1, None, &l)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'val_acc'") && e.contains("val_accuracy"), "{e}");
        // {batch} exists only when saving on batches.
        assert!(format_filepath("{batch}", 1, None, &l).is_err());
        assert!(format_filepath("{loss:.2d}", 1, None, &l).is_err());
        assert!(format_filepath("{epoch", 1, None, &l).is_err());
        assert!(format_filepath("a}b", 1, None, &l).is_err());
    }

    /// Runs the callback over per-epoch `val_loss` values; returns the saves.
    fn run(cb: &mut ModelCheckpoint, values: &[f64]) -> Vec<(String, &'static str)> {
        let mut m = FakeModel::new(values.len());
        cb.on_train_begin(&mut m).unwrap();
        for (e, v) in values.iter().enumerate() {
            cb.on_epoch_begin(&mut m, e).unwrap();
            cb.on_train_batch_end(&mut m, 0, &logs(&[("loss", *v)]))
                .unwrap();
            cb.on_epoch_end(&mut m, e, &mut logs(&[("loss", *v), ("val_loss", *v)]))
                .unwrap();
        }
        m.saved.into_inner()
    }

    #[test]
    fn save_best_only_saves_on_improvement_only() {
        let mut cb = ModelCheckpoint::new("best-{epoch}.st").save_best_only(true);
        let saves = run(&mut cb, &[1.0, 0.8, 0.9, 0.8, 0.5]);
        // 1.0 (first), 0.8 (better), 0.9 and 0.8 (not strictly better), 0.5.
        let names: Vec<&str> = saves.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names, ["best-1.st", "best-2.st", "best-5.st"]);
        assert!(saves.iter().all(|s| s.1 == "checkpoint"));
        assert_eq!(cb.best, Some(0.5));
        // Maximizing accuracy-like values with a threshold: only values above 0.85 save.
        let mut cb = ModelCheckpoint::new("w.st")
            .monitor("val_loss", Mode::Max)
            .save_best_only(true)
            .save_weights_only(true)
            .initial_value_threshold(Some(0.85));
        let saves = run(&mut cb, &[0.8, 0.9, 0.87, 0.95]);
        assert_eq!(saves.len(), 2);
        assert!(saves.iter().all(|s| s.0 == "w.st" && s.1 == "weights"));
    }

    #[test]
    fn saves_every_epoch_or_every_n_batches() {
        let mut cb = ModelCheckpoint::new("e{epoch}.st");
        assert_eq!(run(&mut cb, &[3.0, 2.0, 4.0]).len(), 3);
        // Every 3 batches across epochs of 2 batches: after batches 3, 6 (global).
        let mut cb = ModelCheckpoint::new("e{epoch}b{batch}.st").save_freq(SaveFreq::Batches(3));
        let mut m = FakeModel::new(3);
        for e in 0..3 {
            cb.on_epoch_begin(&mut m, e).unwrap();
            for b in 0..2 {
                cb.on_train_batch_end(&mut m, b, &logs(&[("loss", 1.0)]))
                    .unwrap();
            }
            cb.on_epoch_end(&mut m, e, &mut logs(&[("loss", 1.0)]))
                .unwrap();
        }
        let names: Vec<String> = m.saved.into_inner().into_iter().map(|s| s.0).collect();
        assert_eq!(names, ["e2b1.st", "e3b2.st"]);
    }

    #[test]
    fn only_rank_0_writes() {
        let mut cb = ModelCheckpoint::new("x.st");
        let mut m = FakeModel::new(1);
        m.params.rank = 1;
        cb.on_epoch_end(&mut m, 0, &mut logs(&[("val_loss", 1.0)]))
            .unwrap();
        assert!(m.saved.into_inner().is_empty());
    }
}
