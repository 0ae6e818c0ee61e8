//! The improvement rule of the monitoring callbacks (Keras's `MonitorCallback`).

use crate::error::{Error, Result};
use crate::train::logs::{EntryKind, Logs};

/// Which direction of the monitored value is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// From the name: losses (and their terms) and `mae`/`mse` down,
    /// accuracies up; any other name is an error asking for `Min` or `Max`
    /// (as Keras raises for a metric whose direction it does not know).
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

impl Mode {
    /// `"auto"`, `"min"` or `"max"` (Keras's `mode` strings).
    pub fn from_name(name: &str) -> Result<Mode> {
        match name {
            "auto" => Ok(Mode::Auto),
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(Error::config(
                "mode",
                format!("'{other}' is not one of auto, min, max"),
            )),
        }
    }
}

/// A monitored log entry, its direction and the minimum change counted as
/// an improvement: `current` improves on `reference` when
/// `current + min_delta < reference` (min) or `current - min_delta > reference`
/// (max), as Keras's `_is_improvement`.
#[derive(Clone, Debug, PartialEq)]
pub struct Monitor {
    /// The log entry watched (`val_loss`, `accuracy`, …).
    pub name: String,
    /// The direction asked for.
    pub mode: Mode,
    /// Minimum change counted as an improvement (stored as its absolute value).
    pub min_delta: f64,
}

impl Monitor {
    /// Watches `name` in `mode`, improvements larger than `|min_delta|`.
    pub fn new(name: &str, mode: Mode, min_delta: f64) -> Monitor {
        Monitor {
            name: name.to_string(),
            mode,
            min_delta: min_delta.abs(),
        }
    }

    /// True when higher is better; for `Auto`, decided from the name (an
    /// error naming the monitor when the name says nothing).
    pub fn maximizes(&self, callback: &str) -> Result<bool> {
        match self.mode {
            Mode::Min => Ok(false),
            Mode::Max => Ok(true),
            Mode::Auto => {
                let name = self.name.strip_prefix("val_").unwrap_or(&self.name);
                if EntryKind::of(&self.name).is_loss()
                    || name.ends_with("mae")
                    || name.ends_with("mse")
                {
                    Ok(false)
                } else if name.ends_with("accuracy") || name.ends_with("acc") {
                    Ok(true)
                } else {
                    Err(Error::config(
                        callback,
                        format!(
                            "monitor '{}': cannot tell whether it should be minimized or \
                             maximized; set the mode to min or max",
                            self.name
                        ),
                    ))
                }
            }
        }
    }

    /// Whether `current` improves on `reference` (`None`: always).
    pub fn is_improvement(
        &self,
        callback: &str,
        current: f64,
        reference: Option<f64>,
    ) -> Result<bool> {
        let max = self.maximizes(callback)?;
        let Some(r) = reference else {
            return Ok(true);
        };
        Ok(if max {
            current - self.min_delta > r
        } else {
            current + self.min_delta < r
        })
    }

    /// The monitored value in `logs`, if logged (Keras warns and skips the
    /// epoch when it is not; lossgraph warns once per callback on stderr).
    pub fn value(&self, logs: &Logs) -> Option<f64> {
        logs.get(&self.name)
    }
}

/// The warning of a callback whose monitored entry is missing from the logs.
pub(super) fn missing(callback: &str, monitor: &str, logs: &Logs) -> String {
    let names: Vec<&str> = logs.entries().iter().map(|e| e.0.as_str()).collect();
    format!(
        "lossgraph: {callback} is conditioned on '{monitor}', which is not logged; the logs are: {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_reads_the_direction_from_the_name() {
        let dir = |n: &str| Monitor::new(n, Mode::Auto, 0.0).maximizes("test");
        assert!(!dir("val_loss").unwrap());
        assert!(!dir("loss").unwrap());
        assert!(!dir("compiled_loss").unwrap());
        assert!(!dir("dense_1/kernel_regularizer").unwrap());
        assert!(!dir("val_mae").unwrap());
        assert!(dir("val_accuracy").unwrap());
        assert!(dir("sparse_categorical_accuracy").unwrap());
        let e = dir("my_score").unwrap_err().to_string();
        assert!(e.contains("my_score") && e.contains("min or max"), "{e}");
        assert!(Monitor::new("my_score", Mode::Max, 0.0)
            .maximizes("t")
            .unwrap());
    }

    #[test]
    fn min_delta_must_be_exceeded() {
        let m = Monitor::new("loss", Mode::Min, -0.1);
        assert_eq!(m.min_delta, 0.1);
        assert!(m.is_improvement("t", 5.0, None).unwrap());
        // 0.85 + 0.1 = 0.95 < 1.0: improvement; 0.95 + 0.1 = 1.05 is not.
        assert!(m.is_improvement("t", 0.85, Some(1.0)).unwrap());
        assert!(!m.is_improvement("t", 0.95, Some(1.0)).unwrap());
        let m = Monitor::new("accuracy", Mode::Auto, 0.05);
        assert!(m.is_improvement("t", 0.6, Some(0.5)).unwrap());
        assert!(!m.is_improvement("t", 0.54, Some(0.5)).unwrap());
        assert!(!m.is_improvement("t", 0.5, Some(0.5)).unwrap());
    }
}
