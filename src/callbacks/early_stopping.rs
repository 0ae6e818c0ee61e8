//! [`EarlyStopping`]: stop when a monitored value stops improving.

use super::monitor::{missing, Mode, Monitor};
use super::{Callback, ModelHandle};
use crate::error::Result;
use crate::train::logs::Logs;
use lossgraph_ir::HostTensor;

/// Keras 3's `EarlyStopping`: from epoch `start_from_epoch` on, counts the
/// epochs since the monitored value last improved (by more than
/// `min_delta`, [`Monitor`]); when the count reaches `patience` (at an epoch
/// after the first) training stops. With a `baseline`, an improvement that
/// does not also beat the baseline does not reset the count. With
/// `restore_best_weights`, the weights of the best epoch (the first
/// monitored one until something improves on it) are restored when
/// training ends, stopped early or not.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// The value watched (Keras's default `val_loss`), direction and `min_delta`.
    pub monitor: Monitor,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// A value the monitored one must beat for the count to reset.
    pub baseline: Option<f64>,
    /// Restore the best epoch's weights at the end of training.
    pub restore_best_weights: bool,
    /// Epochs before this one are not monitored (a warm-up).
    pub start_from_epoch: usize,
    /// Print Keras's messages (stopping, restoring) on stderr.
    pub verbose: bool,
    best: Option<f64>,
    best_weights: Option<Vec<(String, HostTensor)>>,
    wait: usize,
    warned: bool,
    /// The epoch training was stopped at, if it was.
    pub stopped_epoch: Option<usize>,
    /// The best epoch so far (the one whose weights are restored).
    pub best_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Watches `monitor` (direction from its name, [`Mode::Auto`]) with the
    /// given patience; `min_delta` 0, no baseline, no restoring.
    pub fn new(monitor: &str, patience: usize) -> EarlyStopping {
        EarlyStopping {
            monitor: Monitor::new(monitor, Mode::Auto, 0.0),
            patience,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
            verbose: false,
            best: None,
            best_weights: None,
            wait: 0,
            warned: false,
            stopped_epoch: None,
            best_epoch: None,
        }
    }

    /// Sets the minimum improvement (its absolute value).
    pub fn min_delta(mut self, d: f64) -> EarlyStopping {
        self.monitor.min_delta = d.abs();
        self
    }

    /// Sets the direction.
    pub fn mode(mut self, mode: Mode) -> EarlyStopping {
        self.monitor.mode = mode;
        self
    }

    /// Sets the baseline.
    pub fn baseline(mut self, b: Option<f64>) -> EarlyStopping {
        self.baseline = b;
        self
    }

    /// Restores the best epoch's weights at the end of training.
    pub fn restore_best_weights(mut self, yes: bool) -> EarlyStopping {
        self.restore_best_weights = yes;
        self
    }

    /// Starts monitoring at epoch `e` (0-based).
    pub fn start_from_epoch(mut self, e: usize) -> EarlyStopping {
        self.start_from_epoch = e;
        self
    }

    /// Prints Keras's messages.
    pub fn verbose(mut self, yes: bool) -> EarlyStopping {
        self.verbose = yes;
        self
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _model: &mut dyn ModelHandle) -> Result<()> {
        self.best = None;
        self.best_weights = None;
        self.wait = 0;
        self.stopped_epoch = None;
        self.best_epoch = None;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        model: &mut dyn ModelHandle,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        // The direction is settled first, as Keras's `_set_monitor_op`.
        self.monitor.maximizes("EarlyStopping")?;
        let Some(current) = self.monitor.value(logs) else {
            if !self.warned {
                eprintln!("{}", missing("EarlyStopping", &self.monitor.name, logs));
                self.warned = true;
            }
            return Ok(());
        };
        if epoch < self.start_from_epoch {
            return Ok(());
        }
        if self.restore_best_weights && self.best_weights.is_none() {
            self.best_weights = Some(model.get_weights());
            self.best_epoch = Some(epoch);
        }
        self.wait += 1;
        if self
            .monitor
            .is_improvement("EarlyStopping", current, self.best)?
        {
            self.best = Some(current);
            self.best_epoch = Some(epoch);
            if self.restore_best_weights {
                self.best_weights = Some(model.get_weights());
            }
            if self.baseline.is_none()
                || self
                    .monitor
                    .is_improvement("EarlyStopping", current, self.baseline)?
            {
                self.wait = 0;
            }
            return Ok(());
        }
        if self.wait >= self.patience && epoch > 0 {
            self.stopped_epoch = Some(epoch);
            model.stop_training();
        }
        Ok(())
    }

    fn on_train_end(&mut self, model: &mut dyn ModelHandle, _logs: &Logs) -> Result<()> {
        if let (Some(e), true) = (self.stopped_epoch, self.verbose) {
            eprintln!("Epoch {}: early stopping", e + 1);
        }
        if let Some(w) = self.best_weights.take() {
            if self.verbose {
                eprintln!(
                    "Restoring model weights from the end of the best epoch: {}.",
                    self.best_epoch.map_or(0, |e| e + 1)
                );
            }
            model.set_weights(&w)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::testing::{logs, FakeModel};

    /// Runs `cb` over `values` of `name` (one per epoch) until it stops;
    /// the weight is set to the epoch number before each epoch ends, so a
    /// restored weight names the epoch it came from. Returns the epochs run.
    fn run(cb: &mut EarlyStopping, m: &mut FakeModel, name: &str, values: &[f64]) -> usize {
        cb.on_train_begin(m).unwrap();
        let mut ran = 0;
        for (e, v) in values.iter().enumerate() {
            m.set_w(e as f32);
            cb.on_epoch_end(m, e, &mut logs(&[(name, *v)])).unwrap();
            ran += 1;
            if m.stop {
                break;
            }
        }
        cb.on_train_end(m, &Logs::default()).unwrap();
        ran
    }

    #[test]
    fn waits_for_patience_epochs_without_improvement() {
        // best 1.0 (wait 0), 0.5 (wait 0), 0.6 wait 1, 0.55 wait 2 = patience: stop at epoch 3.
        let mut es = EarlyStopping::new("val_loss", 2);
        let mut m = FakeModel::new(10);
        assert_eq!(
            run(&mut es, &mut m, "val_loss", &[1.0, 0.5, 0.6, 0.55, 0.4]),
            4
        );
        assert_eq!(es.stopped_epoch, Some(3));
        assert_eq!(es.best_epoch, Some(1));
        // Not restoring: the weights are the last epoch's.
        assert_eq!(m.w(), 3.0);
        // Accuracy goes up: 0.5 then 0.4 is no improvement, patience 1 stops at epoch 1.
        let mut acc = EarlyStopping::new("accuracy", 1);
        let mut m = FakeModel::new(10);
        assert_eq!(run(&mut acc, &mut m, "accuracy", &[0.5, 0.4, 0.9]), 2);
    }

    #[test]
    fn patience_zero_never_stops_at_the_first_epoch() {
        // Keras: `wait >= patience and epoch > 0`; epoch 0 is always the best so far.
        let mut es = EarlyStopping::new("loss", 0);
        let mut m = FakeModel::new(10);
        // 1.0 best; 1.0 again is no improvement (strict), wait 1 >= 0: stop at epoch 1.
        assert_eq!(run(&mut es, &mut m, "loss", &[1.0, 1.0, 0.1]), 2);
        assert_eq!(es.stopped_epoch, Some(1));
    }

    #[test]
    fn min_delta_and_baseline() {
        // min_delta 0.1: 0.95 is not an improvement on 1.0, 0.85 is.
        let mut es = EarlyStopping::new("loss", 2).min_delta(0.1);
        let mut m = FakeModel::new(10);
        assert_eq!(
            run(&mut es, &mut m, "loss", &[1.0, 0.95, 0.85, 0.8, 0.78]),
            5
        );
        assert_eq!(es.stopped_epoch, Some(4));
        assert_eq!(es.best_epoch, Some(2));
        // Baseline 0.5: improvements that stay above it do not reset the
        // count (1.0 and 0.9 leave it at 1 and 2), so the first epoch
        // without improvement (0.95, count 3) stops training; without the
        // baseline the count is 1 there and training goes on one more epoch.
        let seq = [1.0, 0.9, 0.95, 0.94, 0.93];
        let mut es = EarlyStopping::new("loss", 2).baseline(Some(0.5));
        let mut m = FakeModel::new(10);
        assert_eq!(run(&mut es, &mut m, "loss", &seq), 3);
        assert_eq!(es.stopped_epoch, Some(2));
        let mut es = EarlyStopping::new("loss", 2);
        let mut m = FakeModel::new(10);
        assert_eq!(run(&mut es, &mut m, "loss", &seq), 4);
        assert_eq!(es.stopped_epoch, Some(3));
        // Beating the baseline resets it.
        let mut es = EarlyStopping::new("loss", 2).baseline(Some(0.5));
        let mut m = FakeModel::new(10);
        assert_eq!(run(&mut es, &mut m, "loss", &[0.4, 0.3, 0.2, 0.1]), 4);
        assert_eq!(es.stopped_epoch, None);
    }

    #[test]
    fn restores_the_best_epochs_weights_whether_stopped_or_not() {
        let mut es = EarlyStopping::new("val_loss", 2).restore_best_weights(true);
        let mut m = FakeModel::new(10);
        // Best at epoch 1 (0.5); stops at epoch 3; weight restored to 1.
        assert_eq!(
            run(&mut es, &mut m, "val_loss", &[1.0, 0.5, 0.6, 0.7, 0.1]),
            4
        );
        assert_eq!(m.w(), 1.0);
        // Never stopped: the best (epoch 2 of 4) is still restored at the end.
        let mut es = EarlyStopping::new("val_loss", 5).restore_best_weights(true);
        let mut m = FakeModel::new(4);
        assert_eq!(run(&mut es, &mut m, "val_loss", &[1.0, 0.8, 0.3, 0.9]), 4);
        assert_eq!(m.w(), 2.0);
    }

    #[test]
    fn start_from_epoch_skips_the_warm_up() {
        // Epochs 0 and 1 are not monitored; from epoch 2: 3.0 best, 4.0 wait 1 = patience.
        let mut es = EarlyStopping::new("loss", 1)
            .start_from_epoch(2)
            .restore_best_weights(true);
        let mut m = FakeModel::new(10);
        assert_eq!(run(&mut es, &mut m, "loss", &[1.0, 2.0, 3.0, 4.0, 5.0]), 4);
        assert_eq!(es.stopped_epoch, Some(3));
        // The warm-up's lower values were never best: epoch 2's weights come back.
        assert_eq!(m.w(), 2.0);
    }

    #[test]
    fn a_missing_monitor_skips_the_epoch() {
        let mut es = EarlyStopping::new("val_loss", 0);
        let mut m = FakeModel::new(10);
        assert_eq!(run(&mut es, &mut m, "loss", &[1.0, 2.0, 3.0]), 3);
        assert_eq!(es.stopped_epoch, None);
        // An unknown direction is an error naming the monitor.
        let mut es = EarlyStopping::new("score", 0);
        es.on_train_begin(&mut m).unwrap();
        let e = es
            .on_epoch_end(&mut m, 0, &mut logs(&[("score", 1.0)]))
            .unwrap_err();
        assert!(e.to_string().contains("'score'"), "{e}");
    }
}
