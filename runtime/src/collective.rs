//! Communicators: the group of processes (ranks) a data-parallel program
//! reduces across. A compiled step runs each `all_reduce_mean` node as one
//! external call to its program's communicator, on the node's buffer in
//! place ([`Communicator::all_reduce_sum_f32`], then a scale by `1/size`).
//!
//! [`SingleProcess`] (one rank: every reduction is the identity) is the
//! default; the `mpi` feature adds `Mpi` (MPI_COMM_WORLD).
//!
//! Invariant every implementation keeps: every rank calls the collectives
//! in the same order with buffers of the same length (the compiled graphs
//! match; the front end checks a checksum of them at start-up), so a
//! reduction never pairs buffers of different programs.

use std::fmt;

/// The processes one data-parallel job reduces across.
pub trait Communicator: Send + Sync + fmt::Debug {
    /// This process's rank, in `0..size()`.
    fn rank(&self) -> usize;

    /// The number of ranks (at least 1).
    fn size(&self) -> usize;

    /// Replaces `buf` on every rank by its elementwise sum over the ranks.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), String>;

    /// Replaces `buf` on every rank by its elementwise sum over the ranks.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), String>;

    /// Every rank's `values` (the same length on every rank), concatenated
    /// in rank order, on every rank.
    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<u64>, String>;

    /// Ends every process of the job with exit status `code` (for MPI,
    /// `MPI_Abort`): the way out of an error or a stall on one rank while
    /// the others wait in a collective. Never returns.
    fn abort(&self, code: i32) -> !;
}

/// A job of one process: reductions are the identity, `abort` exits.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) -> Result<(), String> {
        Ok(())
    }

    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<(), String> {
        Ok(())
    }

    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<u64>, String> {
        Ok(values.to_vec())
    }

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// `all_reduce_mean` of `buf` over `comm` in place: the sum over ranks,
/// scaled by `1/size` (exact for a power-of-two rank count). The identity,
/// without a call, on one rank.
pub fn all_reduce_mean_f32(comm: &dyn Communicator, buf: &mut [f32]) -> Result<(), String> {
    let n = comm.size();
    if n <= 1 {
        return Ok(());
    }
    comm.all_reduce_sum_f32(buf)?;
    let scale = 1.0 / n as f32;
    buf.iter_mut().for_each(|x| *x *= scale);
    Ok(())
}
