//! Named scalar results ([`Logs`]), per-epoch [`History`], and the
//! batch-size-weighted running means `fit` and `evaluate` report.
//!
//! This module depends on nothing else in the crate, so callbacks can use it
//! without reaching into the training code.

use lossgraph_ir::{names, LossReason};

/// What a logged entry holds, read from its label (a `val_` prefix is
/// ignored): the labels `fit` and `evaluate` log are exactly those of
/// [`Logs`]' order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// `loss`: the total.
    Total,
    /// `compiled_loss`: Σ weight·(per-output loss).
    CompiledLoss,
    /// `<output>_loss`: one output's unweighted compiled loss (multi-output models).
    OutputLoss,
    /// `<layer>/<reason>` (`dense_1/kernel_regularizer`, `…/add_loss#2`): one added loss.
    AddedLoss,
    /// Anything else: a metric, or a value a callback logs (`learning_rate`).
    Other,
}

impl EntryKind {
    /// The kind of the entry labelled `label`.
    pub fn of(label: &str) -> EntryKind {
        let l = label.strip_prefix("val_").unwrap_or(label);
        let reason = l
            .rsplit('/')
            .next()
            .map(|r| r.split('#').next().unwrap_or(r));
        if l == names::LOSS {
            EntryKind::Total
        } else if l == names::COMPILED_LOSS {
            EntryKind::CompiledLoss
        } else if l.contains('/') && reason.and_then(LossReason::from_name).is_some() {
            EntryKind::AddedLoss
        } else if l.ends_with("_loss") {
            EntryKind::OutputLoss
        } else {
            EntryKind::Other
        }
    }

    /// True for the total and every term of it (the values lower is better for).
    pub fn is_loss(self) -> bool {
        self != EntryKind::Other
    }
}

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
            let val = k.starts_with("val_");
            match EntryKind::of(k) {
                EntryKind::Total if !val => s = format!("loss {v:.4}"),
                EntryKind::CompiledLoss if !val => terms.insert(0, format!("compiled {v:.4}")),
                EntryKind::AddedLoss if !val => terms.push(format!("{k} {v:.4}")),
                EntryKind::Total
                | EntryKind::CompiledLoss
                | EntryKind::AddedLoss
                | EntryKind::OutputLoss
                | EntryKind::Other => rest.push(format!("{k} {v:.4}")),
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

/// Per-epoch logs of a `fit` run (Keras's `History`; `fit` returns the one
/// it keeps, and it is also a [`Callback`](crate::callbacks::Callback)).
#[derive(Clone, Debug, Default)]
pub struct History {
    /// One entry per completed epoch (validation values prefixed `val_`).
    pub epochs: Vec<Logs>,
    /// The index of each entry's epoch (from `initial_epoch` on).
    pub epoch: Vec<usize>,
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
