//! [`ProgbarLogger`] and [`Verbosity`]: what `fit` prints on stderr.

use super::python_format::python_exp;
use super::{Callback, ModelHandle};
use crate::error::{Error, Result};
use crate::train::logs::Logs;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// How much `fit` prints (Keras's `verbose`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verbosity {
    /// `0`: nothing.
    Silent,
    /// `1`: a progress bar per epoch with the running loss and its
    /// breakdown (compiled loss and each added loss); without a terminal
    /// to draw on, the bar's final state as one line per epoch.
    ProgressBar,
    /// `2`: one line per epoch, as Keras's `verbose=2`.
    OneLinePerEpoch,
    /// `"auto"` (the default): [`ProgressBar`](Self::ProgressBar) when
    /// stderr is a terminal, [`OneLinePerEpoch`](Self::OneLinePerEpoch) when
    /// it is a file or a pipe.
    #[default]
    Auto,
}

impl Verbosity {
    /// `0`, `1`, `2` or `auto`.
    pub fn from_name(name: &str) -> Result<Verbosity> {
        match name {
            "0" => Ok(Verbosity::Silent),
            "1" => Ok(Verbosity::ProgressBar),
            "2" => Ok(Verbosity::OneLinePerEpoch),
            "auto" => Ok(Verbosity::Auto),
            other => Err(Error::config(
                "verbose",
                format!("'{other}' is not one of 0, 1, 2, auto"),
            )),
        }
    }

    /// `Auto` resolved for a stderr that is (or is not) a terminal; the
    /// other levels as they are.
    pub fn resolve(self, stderr_is_terminal: bool) -> Verbosity {
        match self {
            Verbosity::Auto if stderr_is_terminal => Verbosity::ProgressBar,
            Verbosity::Auto => Verbosity::OneLinePerEpoch,
            other => other,
        }
    }

    /// `Auto` resolved for this process's stderr.
    pub fn resolve_for_stderr(self) -> Verbosity {
        self.resolve(std::io::stderr().is_terminal())
    }
}

/// `true` is the default ([`Verbosity::Auto`]), `false` silent.
impl From<bool> for Verbosity {
    fn from(yes: bool) -> Verbosity {
        if yes {
            Verbosity::Auto
        } else {
            Verbosity::Silent
        }
    }
}

/// A value as Keras's progress line prints it: `{:.4f}` above 1e-3, else
/// Python's `{:.4e}` (`1.2340e-04`); Python's `nan`, `inf`.
fn keras_value(v: f64) -> String {
    if v > 1e-3 {
        format!("{v:.4}")
    } else {
        python_exp(v, 4)
    }
}

/// A duration per step as Keras prints it: ` 3ms/step`, ` 12us/step`, ` 2s/step`.
fn per_step(seconds: f64) -> String {
    if seconds >= 1.0 || seconds == 0.0 {
        format!(" {seconds:.0}s/step")
    } else if seconds >= 1e-3 {
        format!(" {:.0}ms/step", seconds * 1e3)
    } else {
        format!(" {:.0}us/step", seconds * 1e6)
    }
}

/// The line Keras's `verbose=2` prints at the end of an epoch of `steps`
/// steps that took `elapsed` seconds, `step_time` seconds per step:
/// `45/45 - 0s - 3ms/step - loss: 0.1234 - accuracy: 0.9000 - val_loss: 0.2000`
/// (every entry of `logs`, in order).
pub fn epoch_line(steps: usize, elapsed: f64, step_time: f64, logs: &Logs) -> String {
    let width = steps.max(1).to_string().len();
    let mut s = format!(
        "{steps:>width$}/{steps} - {elapsed:.0}s -{}",
        per_step(step_time)
    );
    for (k, v) in logs.entries() {
        s.push_str(&format!(" - {k}: {}", keras_value(*v)));
    }
    s
}

/// Prints training progress on stderr (Keras's `ProgbarLogger`): with more
/// than one epoch, `Epoch k/N` at each epoch's start; then a progress bar
/// ([`Verbosity::ProgressBar`]) or the [`epoch_line`] at its end
/// ([`Verbosity::OneLinePerEpoch`]). `fit` adds one after the other
/// callbacks unless silent (on rank 0 only in a data-parallel run).
pub struct ProgbarLogger {
    verbose: Verbosity,
    epochs: usize,
    steps: usize,
    out: Box<dyn Write>,
    start: Instant,
    after_first_step: Option<Instant>,
    seen: usize,
    bar: ProgressBar,
}

impl ProgbarLogger {
    /// Prints at `fit`'s verbosity on stderr.
    pub fn new() -> ProgbarLogger {
        ProgbarLogger::with_writer(Verbosity::Auto, Box::new(std::io::stderr()))
    }

    /// Prints the lines of `verbose` (`Auto`: `fit`'s verbosity) to `out`
    /// (the progress bar always draws on stderr).
    pub fn with_writer(verbose: Verbosity, out: Box<dyn Write>) -> ProgbarLogger {
        ProgbarLogger {
            verbose,
            epochs: 1,
            steps: 0,
            out,
            start: Instant::now(),
            after_first_step: None,
            seen: 0,
            bar: ProgressBar::hidden(),
        }
    }

    fn line(&mut self, text: &str) -> Result<()> {
        writeln!(self.out, "{text}")
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::Io {
                file: "<progress output>".into(),
                source: e,
            })
    }

    /// Keras's step-time estimate: the first step (compilation) left out
    /// when there are more.
    fn step_time(&self, now: Instant) -> f64 {
        match self.after_first_step {
            Some(t) if self.seen > 1 => (now - t).as_secs_f64() / (self.seen - 1) as f64,
            _ => (now - self.start).as_secs_f64() / self.seen.max(1) as f64,
        }
    }
}

impl Default for ProgbarLogger {
    fn default() -> ProgbarLogger {
        ProgbarLogger::new()
    }
}

impl Callback for ProgbarLogger {
    fn on_train_begin(&mut self, model: &mut dyn ModelHandle) -> Result<()> {
        let p = model.params();
        if self.verbose == Verbosity::Auto {
            self.verbose = p.verbose.resolve_for_stderr();
        }
        self.epochs = p.epochs;
        self.steps = p.steps;
        Ok(())
    }

    fn on_epoch_begin(&mut self, _model: &mut dyn ModelHandle, epoch: usize) -> Result<()> {
        self.start = Instant::now();
        self.after_first_step = None;
        self.seen = 0;
        if self.verbose == Verbosity::Silent {
            return Ok(());
        }
        if self.epochs > 1 {
            self.line(&format!("Epoch {}/{}", epoch + 1, self.epochs))?;
        }
        if self.verbose == Verbosity::ProgressBar {
            self.bar = ProgressBar::with_draw_target(
                Some(self.steps as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = ProgressStyle::with_template(
                "{pos}/{len} [{bar:25.cyan/blue}] {elapsed_precise} {msg}",
            ) {
                self.bar.set_style(style.progress_chars("=> "));
            }
        }
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _model: &mut dyn ModelHandle,
        batch: usize,
        logs: &Logs,
    ) -> Result<()> {
        self.seen = batch + 1;
        if self.seen == 1 {
            self.after_first_step = Some(Instant::now());
        }
        if self.verbose == Verbosity::ProgressBar {
            self.bar.set_message(logs.render());
            self.bar.set_position(self.seen as u64);
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        _model: &mut dyn ModelHandle,
        _epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        match self.verbose {
            Verbosity::ProgressBar => {
                if self.bar.is_hidden() {
                    // No terminal to draw on (asked for 1 with stderr in a
                    // file or pipe): the bar's final state as a line.
                    let steps = self.steps;
                    return self.line(&format!("{steps}/{steps} {}", logs.render()));
                }
                self.bar.finish_with_message(logs.render());
                // indicatif leaves the cursor after the finished bar: end its line.
                eprintln!();
                Ok(())
            }
            Verbosity::OneLinePerEpoch => {
                let now = Instant::now();
                // Keras prints the full count even when training stopped early.
                let line = epoch_line(
                    self.steps,
                    (now - self.start).as_secs_f64(),
                    self.step_time(now),
                    logs,
                );
                self.line(&line)
            }
            Verbosity::Silent | Verbosity::Auto => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::testing::{logs, FakeModel};
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn values_print_as_keras_prints_them() {
        assert_eq!(keras_value(0.123456), "0.1235");
        assert_eq!(keras_value(12.0), "12.0000");
        // At or below 1e-3 (and every negative value): Python's e-format.
        assert_eq!(keras_value(0.001), "1.0000e-03");
        assert_eq!(keras_value(0.000123456), "1.2346e-04");
        assert_eq!(keras_value(0.0), "0.0000e+00");
        assert_eq!(keras_value(-2.5), "-2.5000e+00");
        assert_eq!(keras_value(f64::NAN), "nan");
        assert_eq!(keras_value(f64::INFINITY), "inf");
        assert_eq!(keras_value(f64::NEG_INFINITY), "-inf");
        assert_eq!(per_step(0.0), " 0s/step");
        assert_eq!(per_step(0.0032), " 3ms/step");
        assert_eq!(per_step(0.000012), " 12us/step");
        assert_eq!(per_step(2.4), " 2s/step");
    }

    #[test]
    fn epoch_line_matches_keras_verbose_2() {
        let l = logs(&[("loss", 0.12341), ("accuracy", 0.9), ("val_loss", 0.25)]);
        assert_eq!(
            epoch_line(45, 0.2, 0.003, &l),
            "45/45 - 0s - 3ms/step - loss: 0.1234 - accuracy: 0.9000 - val_loss: 0.2500"
        );
        assert_eq!(epoch_line(1, 1.6, 1.6, &logs(&[])), "1/1 - 2s - 2s/step");
    }

    #[test]
    fn levels_and_auto() {
        assert_eq!(
            Verbosity::from_name("2").unwrap(),
            Verbosity::OneLinePerEpoch
        );
        assert!(Verbosity::from_name("3")
            .unwrap_err()
            .to_string()
            .contains("'3'"));
        assert_eq!(Verbosity::Auto.resolve(true), Verbosity::ProgressBar);
        assert_eq!(Verbosity::Auto.resolve(false), Verbosity::OneLinePerEpoch);
        assert_eq!(Verbosity::Silent.resolve(true), Verbosity::Silent);
        assert_eq!(Verbosity::from(false), Verbosity::Silent);
        assert_eq!(Verbosity::from(true), Verbosity::Auto);
    }

    /// A writer into a shared buffer.
    struct Shared(Rc<RefCell<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_line_per_epoch_after_the_epoch_header() {
        let buf = Rc::new(RefCell::new(Vec::new()));
        let mut p =
            ProgbarLogger::with_writer(Verbosity::OneLinePerEpoch, Box::new(Shared(buf.clone())));
        let mut m = FakeModel::new(2);
        m.params.steps = 3;
        p.on_train_begin(&mut m).unwrap();
        for e in 0..2 {
            p.on_epoch_begin(&mut m, e).unwrap();
            for b in 0..3 {
                p.on_train_batch_end(&mut m, b, &logs(&[("loss", 1.0)]))
                    .unwrap();
            }
            p.on_epoch_end(&mut m, e, &mut logs(&[("loss", 0.5 / (e + 1) as f64)]))
                .unwrap();
        }
        let text = String::from_utf8(buf.borrow().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "Epoch 1/2");
        assert!(
            lines[1].starts_with("3/3 - 0s - ") && lines[1].ends_with("/step - loss: 0.5000"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "Epoch 2/2");
        assert!(lines[3].ends_with(" - loss: 0.2500"), "{}", lines[3]);
        // One epoch: no header (Keras prints it only for epochs > 1).
        let buf = Rc::new(RefCell::new(Vec::new()));
        let mut p = ProgbarLogger::with_writer(Verbosity::Auto, Box::new(Shared(buf.clone())));
        let mut m = FakeModel::new(1);
        m.params.verbose = Verbosity::OneLinePerEpoch;
        p.on_train_begin(&mut m).unwrap();
        p.on_epoch_begin(&mut m, 0).unwrap();
        p.on_epoch_end(&mut m, 0, &mut logs(&[("loss", 2.0)]))
            .unwrap();
        let text = String::from_utf8(buf.borrow().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("1/1 - "), "{text}");
    }
}
