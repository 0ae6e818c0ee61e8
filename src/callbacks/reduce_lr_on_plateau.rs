//! [`ReduceLROnPlateau`]: lower the learning rate when a monitored value
//! stops improving.

use super::monitor::{missing, Mode, Monitor};
use super::{Callback, ModelHandle};
use crate::error::{Error, Result};
use crate::train::logs::Logs;

/// Keras 3's `ReduceLROnPlateau`. At every epoch end it logs the current
/// `learning_rate`; then, on the monitored value: after a reduction,
/// `cooldown` epochs pass with the count held at 0; an improvement (by
/// more than `min_delta`, default 1e-4) resets the count; otherwise the
/// count grows, and at `patience` the rate becomes
/// `max(lr · factor, min_lr)` (only while `lr > min_lr`), the cooldown
/// starts and the count resets. The new rate is fed to the compiled step
/// from the next batch on (no recompilation); an optimiser compiled with a
/// schedule refuses it (an error, as Keras refuses it).
#[derive(Clone, Debug)]
pub struct ReduceLROnPlateau {
    /// The value watched (Keras's default `val_loss`), direction and `min_delta`.
    pub monitor: Monitor,
    /// The factor the rate is multiplied by (in (0, 1)).
    pub factor: f64,
    /// Epochs without improvement before a reduction.
    pub patience: usize,
    /// Epochs after a reduction before counting again.
    pub cooldown: usize,
    /// The rate is never reduced below this.
    pub min_lr: f64,
    /// Print Keras's message on each reduction (stderr).
    pub verbose: bool,
    best: Option<f64>,
    wait: usize,
    cooldown_counter: usize,
    warned: bool,
}

impl ReduceLROnPlateau {
    /// Keras's defaults: factor 0.1, patience 10, min_delta 1e-4, no
    /// cooldown, min_lr 0, direction from the name.
    pub fn new(monitor: &str) -> ReduceLROnPlateau {
        ReduceLROnPlateau {
            monitor: Monitor::new(monitor, Mode::Auto, 1e-4),
            factor: 0.1,
            patience: 10,
            cooldown: 0,
            min_lr: 0.0,
            verbose: false,
            best: None,
            wait: 0,
            cooldown_counter: 0,
            warned: false,
        }
    }

    /// Sets the factor; it must be in (0, 1) (Keras refuses >= 1).
    pub fn factor(mut self, f: f64) -> Result<ReduceLROnPlateau> {
        if !(f > 0.0 && f < 1.0) {
            return Err(Error::config(
                "ReduceLROnPlateau",
                format!("factor must be in (0, 1), got {f}"),
            ));
        }
        self.factor = f;
        Ok(self)
    }

    /// Sets the patience.
    pub fn patience(mut self, n: usize) -> ReduceLROnPlateau {
        self.patience = n;
        self
    }

    /// Sets the minimum improvement (its absolute value).
    pub fn min_delta(mut self, d: f64) -> ReduceLROnPlateau {
        self.monitor.min_delta = d.abs();
        self
    }

    /// Sets the direction.
    pub fn mode(mut self, mode: Mode) -> ReduceLROnPlateau {
        self.monitor.mode = mode;
        self
    }

    /// Sets the cooldown.
    pub fn cooldown(mut self, n: usize) -> ReduceLROnPlateau {
        self.cooldown = n;
        self
    }

    /// Sets the lower bound of the rate.
    pub fn min_lr(mut self, lr: f64) -> ReduceLROnPlateau {
        self.min_lr = lr;
        self
    }

    /// Prints Keras's message on each reduction.
    pub fn verbose(mut self, yes: bool) -> ReduceLROnPlateau {
        self.verbose = yes;
        self
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_train_begin(&mut self, _model: &mut dyn ModelHandle) -> Result<()> {
        self.best = None;
        self.wait = 0;
        self.cooldown_counter = 0;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        model: &mut dyn ModelHandle,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        self.monitor.maximizes("ReduceLROnPlateau")?;
        let lr = model.learning_rate()?;
        logs.insert("learning_rate", lr as f64);
        let Some(current) = self.monitor.value(logs) else {
            if !self.warned {
                eprintln!("{}", missing("ReduceLROnPlateau", &self.monitor.name, logs));
                self.warned = true;
            }
            return Ok(());
        };
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        if self
            .monitor
            .is_improvement("ReduceLROnPlateau", current, self.best)?
        {
            self.best = Some(current);
            self.wait = 0;
            return Ok(());
        }
        if self.cooldown_counter > 0 {
            return Ok(());
        }
        self.wait += 1;
        // Keras compares the rate with min_lr in float32.
        if self.wait >= self.patience && lr > self.min_lr as f32 {
            let new_lr = (lr as f64 * self.factor).max(self.min_lr) as f32;
            model.set_learning_rate(new_lr)?;
            if self.verbose {
                eprintln!(
                    "\nEpoch {}: ReduceLROnPlateau reducing learning rate to {new_lr}.",
                    epoch + 1
                );
            }
            self.cooldown_counter = self.cooldown;
            self.wait = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::testing::{logs, FakeModel};

    /// The rate after each epoch end for the given monitored values, and
    /// the `learning_rate` each epoch logged.
    fn run(cb: &mut ReduceLROnPlateau, m: &mut FakeModel, values: &[f64]) -> (Vec<f32>, Vec<f64>) {
        cb.on_train_begin(m).unwrap();
        let mut rates = Vec::new();
        let mut logged = Vec::new();
        for (e, v) in values.iter().enumerate() {
            let mut l = logs(&[("val_loss", *v)]);
            cb.on_epoch_end(m, e, &mut l).unwrap();
            rates.push(m.lr);
            logged.push(l.get("learning_rate").unwrap());
        }
        (rates, logged)
    }

    #[test]
    fn reduces_after_patience_epochs_then_cools_down() {
        // patience 2, factor 0.5, cooldown 2, from lr 0.1 (f32):
        // e0 1.0 best; e1 1.0 wait 1; e2 wait 2 -> 0.05, cooldown 2;
        // e3 cooldown 2 -> 1, not counted; e4 cooldown 1 -> 0, counted: wait 1;
        // e5 wait 2 -> 0.025; e6 0.5 improves.
        let mut cb = ReduceLROnPlateau::new("val_loss")
            .factor(0.5)
            .unwrap()
            .patience(2)
            .cooldown(2);
        let mut m = FakeModel::new(7);
        let (rates, logged) = run(&mut cb, &mut m, &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]);
        let (a, b, c) = (0.1f32, 0.05f32, 0.025f32);
        assert_eq!(rates, [a, a, b, b, b, c, c]);
        // The logged rate is the one the epoch trained with.
        assert_eq!(logged, [a, a, a, b, b, b, c].map(f64::from));
    }

    #[test]
    fn min_delta_and_min_lr() {
        // min_delta 1e-4 (the default): 0.99995 is no improvement on 1.0.
        let mut cb = ReduceLROnPlateau::new("val_loss")
            .factor(0.1)
            .unwrap()
            .patience(1);
        let mut m = FakeModel::new(4);
        let (rates, _) = run(&mut cb, &mut m, &[1.0, 0.99995, 0.9]);
        let r = (0.1f32 as f64 * 0.1) as f32;
        assert_eq!(rates, [0.1, r, r]);
        // min_lr 0.03: 0.1 -> max(0.01, 0.03) = 0.03, then no further reduction.
        let mut cb = ReduceLROnPlateau::new("val_loss")
            .factor(0.1)
            .unwrap()
            .patience(1)
            .min_lr(0.03);
        let mut m = FakeModel::new(4);
        let (rates, _) = run(&mut cb, &mut m, &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(rates, [0.1, 0.03, 0.03, 0.03]);
    }

    #[test]
    fn refusals() {
        assert!(ReduceLROnPlateau::new("loss").factor(1.0).is_err());
        assert!(ReduceLROnPlateau::new("loss").factor(0.0).is_err());
        // A schedule's rate cannot be set: the error reaches fit.
        let mut cb = ReduceLROnPlateau::new("val_loss").patience(0);
        let mut m = FakeModel::new(2);
        m.schedule = true;
        cb.on_train_begin(&mut m).unwrap();
        cb.on_epoch_end(&mut m, 0, &mut logs(&[("val_loss", 1.0)]))
            .unwrap();
        assert!(cb
            .on_epoch_end(&mut m, 1, &mut logs(&[("val_loss", 1.0)]))
            .is_err());
    }
}
