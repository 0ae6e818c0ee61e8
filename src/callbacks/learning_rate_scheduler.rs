//! [`LearningRateScheduler`]: set the learning rate at each epoch's start.

use super::{Callback, ModelHandle};
use crate::error::{Error, Result};
use crate::train::logs::Logs;

/// The schedule: `(epoch, current rate) -> new rate` (Keras's `schedule(epoch, lr)`).
pub type EpochSchedule = Box<dyn FnMut(usize, f32) -> f32>;

/// Keras 3's `LearningRateScheduler`: at the start of every epoch (0-based
/// index) the rate becomes `schedule(epoch, current rate)`, fed to the
/// compiled step without recompiling; every epoch end logs
/// `learning_rate`. A non-finite or negative result is an error naming the
/// epoch; an optimiser compiled with a schedule refuses it, as in Keras.
pub struct LearningRateScheduler {
    schedule: EpochSchedule,
    /// Print Keras's message at each epoch (stderr).
    pub verbose: bool,
}

impl LearningRateScheduler {
    /// Sets the rate from `schedule` at each epoch start.
    pub fn new(schedule: impl FnMut(usize, f32) -> f32 + 'static) -> LearningRateScheduler {
        LearningRateScheduler {
            schedule: Box::new(schedule),
            verbose: false,
        }
    }

    /// Prints Keras's message at each epoch.
    pub fn verbose(mut self, yes: bool) -> LearningRateScheduler {
        self.verbose = yes;
        self
    }
}

impl Callback for LearningRateScheduler {
    fn on_epoch_begin(&mut self, model: &mut dyn ModelHandle, epoch: usize) -> Result<()> {
        let lr = (self.schedule)(epoch, model.learning_rate()?);
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::config(
                "LearningRateScheduler",
                format!("the schedule gave {lr} for epoch {epoch}: not a learning rate"),
            ));
        }
        model.set_learning_rate(lr)?;
        if self.verbose {
            eprintln!(
                "\nEpoch {}: LearningRateScheduler setting learning rate to {lr}.",
                epoch + 1
            );
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        model: &mut dyn ModelHandle,
        _epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        logs.insert("learning_rate", model.learning_rate()? as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::testing::{logs, FakeModel};

    #[test]
    fn sets_the_rate_from_epoch_and_current_rate() {
        // Keras's docs example: keep the rate for 2 epochs, then halve it each epoch.
        let mut cb = LearningRateScheduler::new(|e, lr| if e < 2 { lr } else { lr * 0.5 });
        let mut m = FakeModel::new(4);
        let mut seen = Vec::new();
        for e in 0..4 {
            cb.on_epoch_begin(&mut m, e).unwrap();
            let mut l = logs(&[("loss", 1.0)]);
            cb.on_epoch_end(&mut m, e, &mut l).unwrap();
            seen.push(l.get("learning_rate").unwrap() as f32);
        }
        assert_eq!(seen, [0.1, 0.1, 0.05, 0.025]);
    }

    #[test]
    fn refuses_bad_rates_and_schedules() {
        let mut cb = LearningRateScheduler::new(|e, _| if e == 1 { f32::NAN } else { 0.2 });
        let mut m = FakeModel::new(2);
        cb.on_epoch_begin(&mut m, 0).unwrap();
        assert_eq!(m.lr, 0.2);
        let e = cb.on_epoch_begin(&mut m, 1).unwrap_err().to_string();
        assert!(e.contains("epoch 1") && e.contains("NaN"), "{e}");
        let mut m = FakeModel::new(2);
        m.schedule = true;
        assert!(LearningRateScheduler::new(|_, lr| lr)
            .on_epoch_begin(&mut m, 0)
            .is_err());
    }
}
