//! Named scalar results ([`Logs`]), per-epoch [`History`], and the
//! batch-size-weighted running means `fit` and `evaluate` report.
//!
//! This module depends on nothing else in the crate, so callbacks can use it
//! without reaching into the training code.

use lossgraph_ir::names;

/// Named scalar results of a step, an evaluation or an epoch, in a stable order:
/// `loss`, `compiled_loss`, per-output `<output>_loss` (multi-output models),
/// one entry per added loss (`<layer>/<reason>`), then metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logs {
    entries: Vec<(String, f64)>,
}

impl Logs {
    /// The value logged under `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries.iter().find(|e| e.0 == name).map(|e| e.1)
    }

    /// All entries in order.
    pub fn entries(&self) -> &[(String, f64)] {
        &self.entries
    }

    /// The total loss.
    pub fn loss(&self) -> f64 {
        self.get(names::LOSS).unwrap_or(f64::NAN)
    }

    /// Sets (or adds) an entry.
    pub fn insert(&mut self, name: &str, v: f64) {
        self.set(name, v)
    }

    pub(crate) fn set(&mut self, name: &str, v: f64) {
        match self.entries.iter_mut().find(|e| e.0 == name) {
            Some(e) => e.1 = v,
            None => self.entries.push((name.to_string(), v)),
        }
    }

    /// A one-line rendering: `loss 0.8881 = compiled 0.7744 + dense_1/kernel_regularizer 0.0726`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut terms = Vec::new();
        let mut rest = Vec::new();
        for (k, v) in &self.entries {
            match k.as_str() {
                names::LOSS => s = format!("loss {v:.4}"),
                names::COMPILED_LOSS => terms.insert(0, format!("compiled {v:.4}")),
                _ if !k.starts_with("val_")
                    && (k.contains("_regularizer")
                        || k.ends_with("/add_loss")
                        || k.contains("/add_loss#")) =>
                {
                    terms.push(format!("{k} {v:.4}"))
                }
                _ => rest.push(format!("{k} {v:.4}")),
            }
        }
        if !terms.is_empty() {
            s.push_str(" = ");
            s.push_str(&terms.join(" + "));
        }
        for r in rest {
            s.push_str(" | ");
            s.push_str(&r);
        }
        s
    }
}

/// Per-epoch logs of a `fit` run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// One entry per completed epoch (validation values prefixed `val_`).
    pub epochs: Vec<Logs>,
}

impl History {
    /// The series logged under `name`, one value per epoch.
    pub fn series(&self, name: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|l| l.get(name)).collect()
    }
}

/// Batch-size-weighted running means of logs (Keras's `Mean` metrics).
#[derive(Default)]
pub(crate) struct Accumulator {
    sums: Vec<(String, f64)>,
    count: usize,
}

impl Accumulator {
    pub(crate) fn add(&mut self, logs: &Logs, n: usize) {
        for (k, v) in logs.entries() {
            match self.sums.iter_mut().find(|e| e.0 == *k) {
                Some(e) => e.1 += v * n as f64,
                None => self.sums.push((k.clone(), v * n as f64)),
            }
        }
        self.count += n;
    }

    pub(crate) fn mean(&self) -> Logs {
        let c = self.count.max(1) as f64;
        Logs {
            entries: self.sums.iter().map(|(k, v)| (k.clone(), v / c)).collect(),
        }
    }
}
