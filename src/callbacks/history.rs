//! [`History`] as a callback: `fit` records every epoch's logs in one and
//! returns it.

use super::{Callback, ModelHandle};
use crate::error::Result;
use crate::train::logs::{History, Logs};

impl Callback for History {
    fn on_epoch_end(
        &mut self,
        _model: &mut dyn ModelHandle,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        self.epochs.push(logs.clone());
        self.epoch.push(epoch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::testing::{logs, FakeModel};

    #[test]
    fn records_each_epoch_with_its_index() {
        let mut m = FakeModel::new(5);
        let mut h = History::default();
        h.on_epoch_end(&mut m, 3, &mut logs(&[("loss", 2.0), ("val_loss", 3.0)]))
            .unwrap();
        h.on_epoch_end(&mut m, 4, &mut logs(&[("loss", 1.0), ("val_loss", 4.0)]))
            .unwrap();
        assert_eq!(h.epoch, vec![3, 4]);
        assert_eq!(h.series("loss"), vec![2.0, 1.0]);
        assert_eq!(h.series("val_loss"), vec![3.0, 4.0]);
    }
}
