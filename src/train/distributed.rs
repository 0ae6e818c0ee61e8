//! Data-parallel `fit`: each rank's slice of a global batch, the mean of
//! the ranks' logs, the start-up consistency check and the step watchdog.
//!
//! The gradient side lives in the compiled step (see `step`): each rank
//! differentiates its loss times its `shard_weight` and the gradient hook
//! averages the gradients over the ranks, so with shards of `n_r` samples
//! of a global batch of `B`, every rank applies
//! `mean_r(N·n_r/B · g_r) = Σ_r n_r/B · g_r`: the full batch's gradient.

use super::logs::Logs;
use crate::error::{Error, Result};
use lossgraph_runtime::Communicator;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One rank's part of the global batch `start..end`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Shard {
    /// The samples this rank runs (never empty).
    pub start: usize,
    pub end: usize,
    /// The samples it counts for (0 when the batch has fewer samples than
    /// there are ranks and this rank runs one sample at weight 0).
    pub counted: usize,
    /// `ranks · counted / (end - start of the global batch)`.
    pub weight: f32,
}

/// Rank `rank`'s contiguous slice of the global batch `start..end`, of
/// `⌊B/N⌋` or `⌈B/N⌉` samples (the first `B mod N` ranks take one more).
/// A rank left without a sample runs the batch's first sample at weight 0
/// (it must still join the step's all-reduce).
pub(super) fn shard(start: usize, end: usize, rank: usize, ranks: usize) -> Shard {
    let len = end - start;
    let ranks = ranks.max(1);
    let (base, extra) = (len / ranks, len % ranks);
    let n = base + usize::from(rank < extra);
    let lo = start + rank * base + rank.min(extra);
    if n == 0 {
        return Shard {
            start,
            end: start + 1,
            counted: 0,
            weight: 0.0,
        };
    }
    Shard {
        start: lo,
        end: lo + n,
        counted: n,
        weight: (ranks * n) as f32 / len as f32,
    }
}

/// The logs of the global batch: every rank's `logs` (of its `counted`
/// samples) weighted by its sample count, on every rank. Every rank's logs
/// have the same entries in the same order (same programs).
pub(super) fn global_logs(comm: &dyn Communicator, logs: &Logs, counted: usize) -> Result<Logs> {
    let mut buf: Vec<f64> = logs
        .entries()
        .iter()
        .map(|(_, v)| {
            if counted == 0 {
                0.0
            } else {
                v * counted as f64
            }
        })
        .collect();
    buf.push(counted as f64);
    comm.all_reduce_sum_f64(&mut buf)
        .map_err(|e| Error::Distributed(format!("averaging the logs over the ranks: {e}")))?;
    let total = buf.pop().unwrap_or(0.0).max(1.0);
    let mut out = Logs::default();
    for ((k, _), v) in logs.entries().iter().zip(buf) {
        out.set(k, v / total);
    }
    Ok(out)
}

/// FNV-1a, 64 bits: a checksum that is the same in every process (the
/// standard hasher's seed is not part of its contract).
pub(super) fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What every rank must agree on before the first step, by name.
pub(super) const CHECKED: [&str; 5] = [
    "checksum of the training graph",
    "training samples",
    "global batch size",
    "epochs",
    "shuffle seed",
];

/// Compares every rank's `values` (one per [`CHECKED`] entry) with rank
/// 0's. On a mismatch every rank returns the same error; rank 0's lists
/// each differing rank and value. A collective: every rank calls it once.
pub(super) fn check_ranks_agree(comm: &dyn Communicator, values: &[u64; 5]) -> Result<()> {
    let all = comm
        .all_gather_u64(values)
        .map_err(|e| Error::Distributed(format!("start-up check across the ranks: {e}")))?;
    let k = values.len();
    let mut diffs = Vec::new();
    for (r, row) in all.chunks(k).enumerate().skip(1) {
        for (i, what) in CHECKED.iter().enumerate() {
            if row[i] != all[i] {
                diffs.push(format!(
                    "rank {r} has {what} {:#x} where rank 0 has {:#x}",
                    row[i], all[i]
                ));
            }
        }
    }
    if diffs.is_empty() {
        return Ok(());
    }
    let message = if comm.rank() == 0 {
        format!(
            "the ranks do not train the same model on the same data: {}",
            diffs.join("; ")
        )
    } else {
        format!(
            "rank {} differs from rank 0 (rank 0 reports which values)",
            comm.rank()
        )
    };
    Err(Error::Distributed(message))
}

/// Aborts the job when a step takes longer than its timeout. `arm` at the
/// start of each step, `disarm` at its end: two atomic stores, nothing else
/// in the step. The watchdog thread checks the deadline every
/// `timeout / 10` (at most every 100 ms) and calls
/// [`Communicator::abort`] on expiry; it stops when dropped.
pub(super) struct Watchdog {
    shared: Arc<WatchdogState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WatchdogState {
    /// Milliseconds after `epoch` at which the armed step expires; 0: disarmed.
    deadline_ms: AtomicU64,
    /// The step being watched (for the message).
    step: AtomicU64,
    quit: AtomicBool,
    epoch: Instant,
    timeout: Duration,
}

impl Watchdog {
    pub(super) fn start(comm: Arc<dyn Communicator>, timeout: Duration) -> Result<Watchdog> {
        let shared = Arc::new(WatchdogState {
            deadline_ms: AtomicU64::new(0),
            step: AtomicU64::new(0),
            quit: AtomicBool::new(false),
            epoch: Instant::now(),
            timeout,
        });
        let sh = shared.clone();
        let tick = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
        let thread = std::thread::Builder::new()
            .name("lossgraph-watchdog".into())
            .spawn(move || {
                while !sh.quit.load(Ordering::SeqCst) {
                    std::thread::park_timeout(tick);
                    let d = sh.deadline_ms.load(Ordering::SeqCst);
                    let now = sh.epoch.elapsed().as_millis() as u64;
                    if d != 0 && now >= d && !sh.quit.load(Ordering::SeqCst) {
                        eprintln!(
                            "lossgraph: rank {}: training step {} did not finish within {:.1} s \
                             (a rank stalled or died); aborting the job",
                            comm.rank(),
                            sh.step.load(Ordering::SeqCst),
                            sh.timeout.as_secs_f64()
                        );
                        comm.abort(3);
                    }
                }
            })
            .map_err(|e| Error::Distributed(format!("cannot start the step watchdog: {e}")))?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts watching step `step` (counted from the start of `fit`).
    pub(super) fn arm(&self, step: u64) {
        let sh = &*self.shared;
        sh.step.store(step, Ordering::SeqCst);
        let deadline = (sh.epoch.elapsed() + sh.timeout).as_millis() as u64;
        sh.deadline_ms.store(deadline.max(1), Ordering::SeqCst);
    }

    /// The watched step finished.
    pub(super) fn disarm(&self) {
        self.shared.deadline_ms.store(0, Ordering::SeqCst);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_once_with_weights_summing_to_ranks() {
        for len in 1..12 {
            for ranks in 1..5 {
                let shards: Vec<Shard> =
                    (0..ranks).map(|r| shard(10, 10 + len, r, ranks)).collect();
                let counted: Vec<usize> = shards
                    .iter()
                    .filter(|s| s.counted > 0)
                    .flat_map(|s| s.start..s.end)
                    .collect();
                assert_eq!(
                    counted,
                    (10..10 + len).collect::<Vec<_>>(),
                    "{len} over {ranks}"
                );
                let w: f32 = shards.iter().map(|s| s.weight).sum();
                assert!((w - ranks as f32).abs() < 1e-5, "{len} over {ranks}: {w}");
                assert!(shards.iter().all(|s| s.end > s.start));
            }
        }
        // Hand values: 7 samples over 2 ranks are 4 + 3.
        assert_eq!(
            shard(0, 7, 1, 2),
            Shard {
                start: 4,
                end: 7,
                counted: 3,
                weight: 6.0 / 7.0
            }
        );
    }

    #[test]
    fn checksum_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(checksum(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(checksum(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
