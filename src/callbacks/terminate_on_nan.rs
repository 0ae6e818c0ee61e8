//! [`TerminateOnNaN`]: stop at the first non-finite loss.

use super::{Callback, ModelHandle};
use crate::error::{Error, Result};
use crate::train::logs::Logs;

/// Keras 3's `TerminateOnNaN`: after each batch, a NaN or infinite `loss`
/// (the epoch's running mean, so the first bad batch) stops training
/// (printing `Batch N: Invalid loss, terminating training` on stderr), or,
/// with `raise_error`, ends `fit` with an error naming the epoch, the batch
/// and the value.
#[derive(Clone, Debug, Default)]
pub struct TerminateOnNaN {
    /// Fail instead of stopping.
    pub raise_error: bool,
    /// The batch at which training was stopped, if it was.
    pub stopped_at: Option<usize>,
    epoch: usize,
}

impl TerminateOnNaN {
    /// Stops training on a non-finite loss.
    pub fn new() -> TerminateOnNaN {
        TerminateOnNaN::default()
    }

    /// Fails `fit` instead of stopping it (Keras's `raise_error=True`).
    pub fn raise_error(mut self, yes: bool) -> TerminateOnNaN {
        self.raise_error = yes;
        self
    }
}

impl Callback for TerminateOnNaN {
    fn on_epoch_begin(&mut self, _model: &mut dyn ModelHandle, epoch: usize) -> Result<()> {
        self.epoch = epoch;
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        model: &mut dyn ModelHandle,
        batch: usize,
        logs: &Logs,
    ) -> Result<()> {
        let Some(loss) = logs.get(lossgraph_ir::names::LOSS) else {
            return Ok(());
        };
        if loss.is_finite() {
            return Ok(());
        }
        self.stopped_at = Some(batch);
        if self.raise_error {
            return Err(Error::data(
                "loss",
                format!(
                    "NaN or Inf loss encountered at batch {batch} of epoch {}. Loss value: {loss}. \
                     Terminating training immediately.",
                    self.epoch + 1
                ),
            ));
        }
        eprintln!("Batch {batch}: Invalid loss, terminating training");
        model.stop_training();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::testing::{logs, FakeModel};
    use lossgraph_ir::names::LOSS;

    #[test]
    fn stops_on_nan_and_inf_and_not_on_finite_losses() {
        let mut m = FakeModel::new(1);
        let mut t = TerminateOnNaN::new();
        t.on_train_batch_end(&mut m, 0, &logs(&[(LOSS, 1e30)]))
            .unwrap();
        assert!(!m.stop);
        // No loss logged: nothing to check.
        t.on_train_batch_end(&mut m, 1, &logs(&[("accuracy", f64::NAN)]))
            .unwrap();
        assert!(!m.stop);
        t.on_train_batch_end(&mut m, 2, &logs(&[(LOSS, f64::NAN)]))
            .unwrap();
        assert!(m.stop);
        assert_eq!(t.stopped_at, Some(2));
        let mut m = FakeModel::new(1);
        let mut t = TerminateOnNaN::new();
        t.on_train_batch_end(&mut m, 0, &logs(&[(LOSS, f64::NEG_INFINITY)]))
            .unwrap();
        assert!(m.stop);
    }

    #[test]
    fn raise_error_fails_naming_batch_and_value() {
        let mut m = FakeModel::new(1);
        let mut t = TerminateOnNaN::new().raise_error(true);
        t.on_epoch_begin(&mut m, 2).unwrap();
        let e = t
            .on_train_batch_end(&mut m, 7, &logs(&[(LOSS, f64::INFINITY)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch 7 of epoch 3") && e.contains("inf"), "{e}");
        assert!(!m.stop);
    }
}
