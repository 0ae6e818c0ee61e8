//! Running a target: one input in-process ([`run_one`]: panics caught and
//! reported with their location), and a whole campaign ([`campaign`]): a
//! worker process (this binary, `worker` mode) runs inputs under a memory
//! limit (`RLIMIT_AS`) with a watchdog thread enforcing the per-input
//! timeout, while the supervisor restarts it after an abort (allocation
//! failure, stack overflow) or a hang and saves the input it was running.
//!
//! The worker shares its progress through a small file mapped in both
//! processes: the execution count and the current input, so the input that
//! killed the worker is known without writing a file per execution.

use crate::targets::{Ctx, Target};
use lossgraph_ir::rng::SplitMix64 as Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What one input did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted or refused with an error.
    Ok,
    /// A property of the target failed (message).
    Fail(String),
    /// A panic: `location: message`.
    Panic(String),
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static IN_RUN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that records `location: message` for [`run_one`]
/// instead of printing it; a panic outside [`run_one`] (a harness bug) is
/// printed. Once per process; later calls do nothing.
pub fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let loc = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            // A panic inside std or a dependency is located by the first
            // frame of lossgraph's own code as well.
            let loc = if loc.starts_with("/rustc/") || loc.contains("/.cargo/") {
                format!("{loc} (in {})", first_own_frame())
            } else {
                loc
            };
            if IN_RUN.with(|r| r.get()) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{loc}: {msg}")));
            } else {
                eprintln!("harness panic at {loc}: {msg}");
            }
        }));
    });
}

/// The `file:line` of the innermost backtrace frame in this repository's
/// code outside the harness (or `?`).
fn first_own_frame() -> String {
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let root = crate::targets::repo_root().display().to_string();
    bt.lines()
        .filter_map(|l| l.trim().strip_prefix("at "))
        .filter_map(|l| l.strip_prefix("./").or_else(|| l.strip_prefix(&root)))
        .find(|l| !l.contains("src/harness.rs:"))
        .map(|l| l.trim_start_matches('/').to_string())
        .unwrap_or_else(|| "?".into())
}

/// Runs one input in this process, catching a panic ([`quiet_panics`] must
/// have been called for the panic's location and message).
pub fn run_one(ctx: &mut Ctx, input: &[u8]) -> Outcome {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    IN_RUN.with(|r| r.set(true));
    let res = catch_unwind(AssertUnwindSafe(|| ctx.run(input)));
    IN_RUN.with(|r| r.set(false));
    match res {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(m)) => Outcome::Fail(m),
        Err(_) => Outcome::Panic(
            LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panic without a message".into()),
        ),
    }
}

/// Limits of a campaign.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Stop after this many executions.
    pub iters: u64,
    /// Stop after this long.
    pub time: Duration,
    /// Address-space limit of the worker (bytes).
    pub mem: u64,
    /// Longest time one input may run.
    pub timeout: Duration,
}

/// The unique findings of a campaign, by key (a panic's location, a
/// failure's or an abort's first line with digits elided, or `hang`).
#[derive(Debug, Default)]
pub struct Report {
    /// Executions in all worker lives.
    pub execs: u64,
    /// Worker restarts after an abort or a hang.
    pub restarts: u64,
    /// Key → (kind, occurrences, saved input file, message).
    pub findings: BTreeMap<String, (String, u64, PathBuf, String)>,
}

/// Bytes of the mapped state file before the input.
const STATE_HEADER: usize = 16;
const STATE_LEN: usize = STATE_HEADER + crate::mutate::MAX_LEN;

/// The state file shared by the worker and the supervisor: execution count
/// (u64 at 0), current input length (u64 at 8), input bytes.
struct State {
    ptr: *mut u8,
}

impl State {
    fn map(path: &Path, create: bool) -> std::io::Result<State> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(create)
            .open(path)?;
        f.set_len(STATE_LEN as u64)?;
        use std::os::fd::AsRawFd;
        // SAFETY: a shared read-write mapping of a file we just sized; the
        // pointer is only used within STATE_LEN bytes and lives as long as
        // the process (never unmapped).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STATE_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(State {
            ptr: ptr as *mut u8,
        })
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `at` is 0 or 8, inside the mapping and 8-aligned (mmap
        // returns page-aligned memory).
        unsafe { &*(self.ptr.add(at) as *const AtomicU64) }
    }

    fn set_input(&self, input: &[u8]) {
        let n = input.len().min(crate::mutate::MAX_LEN);
        // SAFETY: n bytes fit after the header (STATE_LEN).
        unsafe { std::ptr::copy_nonoverlapping(input.as_ptr(), self.ptr.add(STATE_HEADER), n) };
        self.word(8).store(n as u64, Ordering::Release);
    }

    fn input(&self) -> Vec<u8> {
        let n = (self.word(8).load(Ordering::Acquire) as usize).min(crate::mutate::MAX_LEN);
        // SAFETY: n ≤ MAX_LEN bytes after the header.
        unsafe { std::slice::from_raw_parts(self.ptr.add(STATE_HEADER), n).to_vec() }
    }
}

/// Exit status of a worker whose watchdog fired.
const HANG_STATUS: i32 = 77;

/// Worker mode: runs up to `iters` inputs of `target` from `seed` until
/// `deadline_ms` (Unix time), under `mem` bytes of address space, printing
/// one `FINDING kind<TAB>key<TAB>message` line per panic or failure.
pub fn worker(
    target: Target,
    seed: u64,
    iters: u64,
    deadline_ms: u64,
    mem: u64,
    timeout: Duration,
    state: &Path,
) -> Result<(), String> {
    let lim = libc::rlimit {
        rlim_cur: mem,
        rlim_max: mem,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    quiet_panics();
    let st = State::map(state, false).map_err(|e| format!("{}: {e}", state.display()))?;
    let scratch = std::env::temp_dir().join(format!(
        "lossgraph-fuzz-{}-{}.bin",
        target.name(),
        std::process::id()
    ));
    let mut ctx = Ctx::new(target, scratch.clone())?;
    let started = Arc::new(AtomicU64::new(0));
    {
        let started = started.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(50));
            let s = started.load(Ordering::Acquire);
            if s != 0 && now_ms().saturating_sub(s) > timeout.as_millis() as u64 {
                eprintln!("hang: one input ran longer than {} ms", timeout.as_millis());
                // SAFETY: ends the process at once, as a hang must.
                unsafe { libc::_exit(HANG_STATUS) };
            }
        });
    }
    let mut rng = Rng::new(seed);
    for _ in 0..iters {
        if now_ms() >= deadline_ms {
            break;
        }
        let input = ctx.generate(&mut rng);
        st.set_input(&input);
        started.store(now_ms(), Ordering::Release);
        let out = run_one(&mut ctx, &input);
        started.store(0, Ordering::Release);
        st.word(0).fetch_add(1, Ordering::AcqRel);
        let (kind, msg) = match out {
            Outcome::Ok => continue,
            Outcome::Fail(m) => ("fail", m),
            Outcome::Panic(m) => ("panic", m),
        };
        let key = match kind {
            "panic" => msg.split(": ").next().unwrap_or_default().to_string(),
            _ => key_of(&msg),
        };
        let file = save(
            target,
            kind,
            &key,
            &input,
            &msg,
            state.parent().expect("state in a folder"),
        );
        println!(
            "FINDING {kind}\t{key}\t{}\t{}",
            file.display(),
            msg.replace(['\n', '\t'], " ")
        );
    }
    let _ = std::fs::remove_file(&scratch);
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A finding's key: its first line, digits replaced by `N`, at most 120 chars.
fn key_of(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or_default();
    let mut k = String::new();
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !k.ends_with('N') {
                k.push('N');
            }
        } else {
            k.push(c);
        }
    }
    k.chars().take(120).collect()
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

/// Saves the first input of each key as `<dir>/<target>/<kind>-<hash>.bin`
/// (with the message in `.txt`); returns the input's path.
fn save(target: Target, kind: &str, key: &str, input: &[u8], msg: &str, dir: &Path) -> PathBuf {
    let d = dir.join(target.name());
    let _ = std::fs::create_dir_all(&d);
    let base = d.join(format!("{kind}-{:016x}", fnv(key.as_bytes())));
    let bin = base.with_extension("bin");
    if !bin.exists() {
        let _ = std::fs::write(&bin, input);
        let _ = std::fs::write(base.with_extension("txt"), format!("{key}\n{msg}\n"));
    }
    bin
}

/// Runs a campaign of `target` from `seed` within `limits`, saving findings
/// under `dir/<target>/`; `exe` is this binary (run in `worker` mode).
pub fn campaign(
    exe: &Path,
    target: Target,
    seed: u64,
    limits: &Limits,
    dir: &Path,
) -> Result<Report, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let state_path = dir.join(format!(".state-{}", target.name()));
    let st = State::map(&state_path, true).map_err(|e| format!("{}: {e}", state_path.display()))?;
    let deadline = now_ms() + limits.time.as_millis() as u64;
    let mut report = Report::default();
    let mut life = 0u64;
    while report.execs < limits.iters && now_ms() < deadline {
        st.word(0).store(0, Ordering::Release);
        st.word(8).store(0, Ordering::Release);
        let mut child = Command::new(exe)
            .args([
                "worker",
                target.name(),
                &(seed ^ life.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_string(),
                &(limits.iters - report.execs).to_string(),
                &deadline.to_string(),
                &limits.mem.to_string(),
                &limits.timeout.as_millis().to_string(),
            ])
            .arg(&state_path)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        let mut err = child.stderr.take().expect("piped");
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("FINDING ") {
                let f: Vec<&str> = rest.splitn(4, '\t').collect();
                if let [kind, key, file, msg] = f[..] {
                    record(&mut report, kind, key, PathBuf::from(file), msg);
                }
            }
        }
        let status = child.wait().map_err(|e| e.to_string())?;
        let stderr = err_thread.join().unwrap_or_default();
        report.execs += st.word(0).load(Ordering::Acquire);
        life += 1;
        if status.success() {
            break;
        }
        use std::os::unix::process::ExitStatusExt;
        // The line that says why: an allocation failure, a stack overflow, a
        // panic outside the harness's catch, else the last line.
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let last = lines
            .iter()
            .find(|l| {
                ["memory allocation", "overflowed", "panic", "hang:"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .or(lines.last())
            .copied()
            .unwrap_or("");
        let (kind, msg) = match (status.code(), status.signal()) {
            (Some(HANG_STATUS), _) => ("hang", last.to_string()),
            (_, Some(sig)) => ("abort", format!("signal {sig}: {last}")),
            (Some(c), _) => {
                if report.execs == 0 && life == 1 {
                    return Err(format!("worker exited with {c}: {stderr}"));
                }
                ("abort", format!("exit {c}: {last}"))
            }
            (None, None) => ("abort", last.to_string()),
        };
        // The input being run when the worker died counts as executed.
        report.execs += 1;
        report.restarts += 1;
        let key = format!("{kind}: {}", key_of(&msg));
        let input = st.input();
        let file = save(target, kind, &key, &input, &msg, dir);
        record(&mut report, kind, &key, file, &msg);
    }
    Ok(report)
}

fn record(report: &mut Report, kind: &str, key: &str, file: PathBuf, msg: &str) {
    let e = report
        .findings
        .entry(key.to_string())
        .or_insert_with(|| (kind.to_string(), 0, file, msg.chars().take(400).collect()));
    e.1 += 1;
}
