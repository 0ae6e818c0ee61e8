//! Training callbacks: [`EarlyStopping`] and [`TerminateOnNaN`].

use crate::train::logs::Logs;

/// Whether training goes on after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop after the current batch (or epoch).
    Stop,
}

/// Hooks called by `fit`. Every method has a no-op default.
pub trait Callback {
    /// Before the first epoch.
    fn on_train_begin(&mut self) {}
    /// After each batch, with that batch's logs.
    fn on_batch_end(&mut self, batch: usize, logs: &Logs) -> Control {
        let _ = (batch, logs);
        Control::Continue
    }
    /// After each epoch, with the epoch's mean logs (validation values prefixed `val_`).
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs) -> Control {
        let _ = (epoch, logs);
        Control::Continue
    }
}

/// Stops when a monitored value has not improved by more than `min_delta`
/// for `patience` epochs (Keras `EarlyStopping`; lower is better unless the
/// name contains `acc`, or `mode_max` is set).
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// The logged value to watch (default `val_loss`, falling back to `loss` when absent).
    pub monitor: String,
    /// Minimum change counted as an improvement.
    pub min_delta: f64,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Higher is better.
    pub mode_max: bool,
    best: Option<f64>,
    wait: usize,
    /// The epoch at which training was stopped, if it was.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Watches `monitor` with the given patience.
    pub fn new(monitor: &str, patience: usize) -> EarlyStopping {
        EarlyStopping {
            monitor: monitor.to_string(),
            min_delta: 0.0,
            patience,
            mode_max: monitor.contains("acc"),
            best: None,
            wait: 0,
            stopped_epoch: None,
        }
    }

    /// Sets the minimum improvement.
    pub fn min_delta(mut self, d: f64) -> EarlyStopping {
        self.min_delta = d.abs();
        self
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self) {
        self.best = None;
        self.wait = 0;
        self.stopped_epoch = None;
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs) -> Control {
        let value = logs
            .get(&self.monitor)
            .or_else(|| self.monitor.strip_prefix("val_").and_then(|m| logs.get(m)));
        let Some(v) = value else {
            return Control::Continue;
        };
        let improved = match self.best {
            None => true,
            Some(b) if self.mode_max => v - self.min_delta > b,
            Some(b) => v + self.min_delta < b,
        };
        if improved {
            self.best = Some(v);
            self.wait = 0;
            return Control::Continue;
        }
        self.wait += 1;
        if self.wait >= self.patience {
            self.stopped_epoch = Some(epoch);
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// Stops training as soon as a batch's loss is NaN or infinite (Keras `TerminateOnNaN`).
#[derive(Clone, Debug, Default)]
pub struct TerminateOnNaN {
    /// The batch at which training was stopped, if it was.
    pub stopped_at: Option<usize>,
}

impl TerminateOnNaN {
    /// The callback.
    pub fn new() -> TerminateOnNaN {
        TerminateOnNaN::default()
    }
}

impl Callback for TerminateOnNaN {
    fn on_batch_end(&mut self, batch: usize, logs: &Logs) -> Control {
        if logs.loss().is_finite() {
            Control::Continue
        } else {
            self.stopped_at = Some(batch);
            Control::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(pairs: &[(&str, f64)]) -> Logs {
        let mut l = Logs::default();
        for (k, v) in pairs {
            l.insert(k, *v);
        }
        l
    }

    #[test]
    fn early_stopping_waits_for_patience() {
        let mut es = EarlyStopping::new("val_loss", 2);
        es.on_train_begin();
        let seq = [1.0, 0.5, 0.6, 0.55, 0.4];
        let mut ctl = Vec::new();
        for (e, v) in seq.iter().enumerate() {
            ctl.push(es.on_epoch_end(e, &logs(&[("val_loss", *v)])));
        }
        // 1.0 best, 0.5 best, 0.6 wait 1, 0.55 wait 2 -> stop at epoch 3.
        assert_eq!(ctl[3], Control::Stop);
        assert_eq!(ctl[2], Control::Continue);
        assert_eq!(es.stopped_epoch, Some(3));
        let mut acc = EarlyStopping::new("accuracy", 1);
        assert!(acc.mode_max);
        assert_eq!(
            acc.on_epoch_end(0, &logs(&[("accuracy", 0.5)])),
            Control::Continue
        );
        assert_eq!(
            acc.on_epoch_end(1, &logs(&[("accuracy", 0.4)])),
            Control::Stop
        );
    }

    #[test]
    fn terminate_on_nan_stops_on_nan_and_inf() {
        let mut t = TerminateOnNaN::new();
        assert_eq!(
            t.on_batch_end(0, &logs(&[("loss", 1.0)])),
            Control::Continue
        );
        assert_eq!(
            t.on_batch_end(1, &logs(&[("loss", f64::NAN)])),
            Control::Stop
        );
        assert_eq!(t.stopped_at, Some(1));
        assert_eq!(
            TerminateOnNaN::new().on_batch_end(0, &logs(&[("loss", f64::INFINITY)])),
            Control::Stop
        );
    }
}
