//! Crash-safe file output: the one place the library and the CLI write files.
//!
//! [`write_atomic`] writes to a temporary file in the destination's own
//! directory, flushes it to disk, renames it over the destination and flushes
//! the directory. Invariant: at every instant (including a SIGKILL or power
//! loss mid-write) the destination is either the complete old file or the
//! complete new one; a failed write leaves the old file untouched and removes
//! its temporary file.
//!
//! [`check_writable`] validates an output location up front (missing parent,
//! parent not a directory, destination is a directory, directory not
//! writable), so a long run never ends in "cannot write".

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        file: path.display().to_string(),
        source,
    }
}

/// The directory a relative or absolute file path lives in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A fresh temporary path next to `path`: `.<name>.tmp-<pid>-<n>`, unique per
/// process and call, hidden, and in the same directory so `rename` is atomic.
fn temp_path(path: &Path) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io_err(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path has no file name",
            ),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok(parent_dir(path).join(tmp))
}

/// Checks that `path` can be written by [`write_atomic`] later: its parent
/// exists and is a directory, `path` is not a directory, and a file can be
/// created (and is removed again) in the parent. Errors name the path and why.
pub fn check_writable(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let invalid = |msg: &str| {
        io_err(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.to_string()),
        )
    };
    if path.is_dir() {
        return Err(invalid("is a directory, not a file"));
    }
    let dir = parent_dir(path);
    match std::fs::metadata(dir) {
        Err(e) => {
            return Err(io_err(
                path,
                std::io::Error::new(
                    e.kind(),
                    format!("parent directory '{}': {e}", dir.display()),
                ),
            ))
        }
        Ok(m) if !m.is_dir() => {
            return Err(invalid(&format!(
                "parent '{}' is not a directory",
                dir.display()
            )))
        }
        Ok(_) => {}
    }
    let tmp = temp_path(path)?;
    let probe = OpenOptions::new().write(true).create_new(true).open(&tmp);
    match probe {
        Ok(f) => {
            drop(f);
            std::fs::remove_file(&tmp).map_err(|e| io_err(&tmp, e))
        }
        Err(e) => Err(io_err(
            path,
            std::io::Error::new(
                e.kind(),
                format!("cannot create a file in '{}': {e}", dir.display()),
            ),
        )),
    }
}

/// Writes `bytes` to `path` atomically (see the module doc): temp file in the
/// same directory, `fsync`, `rename` over `path`, `fsync` of the directory.
/// On any error the temp file is removed and `path` is left as it was.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    if path.is_dir() {
        return Err(io_err(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory, not a file",
            ),
        ));
    }
    let tmp = temp_path(path)?;
    let written = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Best effort: the temp file may not exist if `open` failed.
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    // Persist the rename itself. Directories cannot be opened for syncing on
    // every platform; there the rename is as durable as the OS makes it.
    if let Ok(d) = File::open(parent_dir(path)) {
        d.sync_all().map_err(|e| io_err(parent_dir(path), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lossgraph-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temp() {
        let d = scratch("replace");
        let p = d.join("w.bin");
        write_atomic(&p, b"old contents").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(leftovers(&d).is_empty());
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let d = scratch("fail");
        let p = d.join("w.bin");
        write_atomic(&p, b"old").unwrap();
        // A directory where the file should be renamed to: rename fails.
        let target_dir = d.join("sub");
        std::fs::create_dir(&target_dir).unwrap();
        let e = write_atomic(&target_dir, b"x").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let missing = d.join("no/such/dir/w.bin");
        let e = write_atomic(&missing, b"x").unwrap_err().to_string();
        assert!(e.contains("no/such/dir/w.bin"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(leftovers(&d).is_empty());
    }

    #[test]
    fn check_writable_names_the_problem() {
        let d = scratch("check");
        check_writable(d.join("ok.bin")).unwrap();
        assert!(leftovers(&d).is_empty());
        let e = check_writable(&d).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = check_writable(d.join("missing/w.bin"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("parent directory") && e.contains("missing"),
            "{e}"
        );
        let file = d.join("plain");
        std::fs::write(&file, b"").unwrap();
        let e = check_writable(file.join("w.bin")).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }
}
