//! [`CSVLogger`]: one CSV row per epoch.

use super::python_format::python_repr;
use super::{Callback, ModelHandle};
use crate::error::{Error, Result};
use crate::train::logs::Logs;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

/// Keras 3's `CSVLogger`: a header `epoch,<keys>` (the first epoch's log
/// names sorted; when none starts with `val_`, the `val_` names are added
/// too) then a row per epoch: the 0-based epoch and each value as Python
/// prints a float (`NA` when not logged). The file is truncated at
/// `on_train_begin`, or with `append` added to (the header only when the
/// file is empty); every row is written and flushed at its epoch's end, so
/// an interrupted run keeps every finished epoch. Rank 0 only writes.
pub struct CSVLogger {
    /// The file.
    pub path: PathBuf,
    /// The field separator (Keras's default `,`).
    pub separator: char,
    /// Add to an existing file instead of truncating it.
    pub append: bool,
    file: Option<File>,
    keys: Option<Vec<String>>,
    header: bool,
}

impl CSVLogger {
    /// Logs to `path`, comma-separated, truncating it.
    pub fn new(path: impl Into<PathBuf>) -> CSVLogger {
        CSVLogger {
            path: path.into(),
            separator: ',',
            append: false,
            file: None,
            keys: None,
            header: true,
        }
    }

    /// Sets the separator.
    pub fn separator(mut self, c: char) -> CSVLogger {
        self.separator = c;
        self
    }

    /// Appends to an existing file.
    pub fn append(mut self, yes: bool) -> CSVLogger {
        self.append = yes;
        self
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::Io {
            file: self.path.display().to_string(),
            source: e,
        }
    }

    /// A field quoted as Python's csv module quotes it (minimal quoting:
    /// fields holding the separator, a quote or a line break).
    fn field(&self, s: &str) -> String {
        if s.contains(self.separator) || s.contains('"') || s.contains('\n') || s.contains('\r') {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
}

impl Callback for CSVLogger {
    fn on_train_begin(&mut self, model: &mut dyn ModelHandle) -> Result<()> {
        self.keys = None;
        self.file = None;
        if model.params().rank != 0 {
            return Ok(());
        }
        self.header = true;
        if self.append && self.path.exists() {
            let f = File::open(&self.path).map_err(|e| self.io(e))?;
            let mut first = String::new();
            BufReader::new(f)
                .read_line(&mut first)
                .map_err(|e| self.io(e))?;
            self.header = first.is_empty();
        }
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        self.file = Some(f);
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        _model: &mut dyn ModelHandle,
        epoch: usize,
        logs: &mut Logs,
    ) -> Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        let keys = match self.keys.take() {
            Some(k) => k,
            None => {
                let mut k: Vec<String> = logs.entries().iter().map(|e| e.0.clone()).collect();
                k.sort();
                if !k.is_empty() && !k.iter().any(|n| n.starts_with("val_")) {
                    let val: Vec<String> = k.iter().map(|n| format!("val_{n}")).collect();
                    k.extend(val);
                }
                k
            }
        };
        let sep = self.separator.to_string();
        let mut text = String::new();
        if self.header {
            let names: Vec<String> = std::iter::once("epoch")
                .chain(keys.iter().map(String::as_str))
                .map(|k| self.field(k))
                .collect();
            text.push_str(&names.join(&sep));
            text.push_str("\r\n");
            self.header = false;
        }
        let row: Vec<String> = std::iter::once(epoch.to_string())
            .chain(
                keys.iter()
                    .map(|k| logs.get(k).map_or_else(|| "NA".to_string(), python_repr)),
            )
            .collect();
        text.push_str(&row.join(&sep));
        // Python's csv module ends rows with \r\n (the excel dialect).
        text.push_str("\r\n");
        self.keys = Some(keys);
        let result = self.file.as_mut().map(|f| {
            f.write_all(text.as_bytes())
                .and_then(|()| f.flush())
                .and_then(|()| f.sync_data())
        });
        match result {
            Some(Err(e)) => Err(self.io(e)),
            Some(Ok(())) | None => Ok(()),
        }
    }

    fn on_train_end(&mut self, _model: &mut dyn ModelHandle, _logs: &Logs) -> Result<()> {
        self.file = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::testing::{logs, FakeModel};

    fn temp(name: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("lossgraph-csv-{name}-{}.csv", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn train(cb: &mut CSVLogger, epochs: &[Logs]) {
        let mut m = FakeModel::new(epochs.len());
        cb.on_train_begin(&mut m).unwrap();
        for (e, l) in epochs.iter().enumerate() {
            cb.on_epoch_end(&mut m, e, &mut l.clone()).unwrap();
        }
        cb.on_train_end(&mut m, &Logs::default()).unwrap();
    }

    #[test]
    fn rows_sorted_keys_and_val_columns_as_keras() {
        let p = temp("keys");
        let mut cb = CSVLogger::new(&p);
        train(
            &mut cb,
            &[
                logs(&[("loss", 0.5), ("accuracy", 0.25)]),
                logs(&[("loss", 1e-5), ("accuracy", 1.0)]),
            ],
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "epoch,accuracy,loss,val_accuracy,val_loss\r\n\
             0,0.25,0.5,NA,NA\r\n\
             1,1.0,1e-05,NA,NA\r\n"
        );
        // Appending: no second header; truncating: a fresh file.
        let mut cb = CSVLogger::new(&p).append(true);
        train(&mut cb, &[logs(&[("loss", 2.0), ("accuracy", 0.5)])]);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.ends_with("0,0.5,2.0,NA,NA\r\n"), "{text}");
        let mut cb = CSVLogger::new(&p).separator(';');
        train(
            &mut cb,
            &[logs(&[("loss", 3.0), ("val_loss", 4.0), ("a;b", 1.5)])],
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "epoch;\"a;b\";loss;val_loss\r\n0;1.5;3.0;4.0\r\n");
        std::fs::remove_file(&p).unwrap();
    }
}
