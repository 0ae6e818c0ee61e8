//! The MPI communicator (feature `mpi`): the ranks of `MPI_COMM_WORLD`.
//!
//! [`Mpi::init`] initialises MPI (thread level `MPI_THREAD_MULTIPLE`, so
//! the step watchdog may call `MPI_Abort` from its own thread) and, on more
//! than one rank, installs a panic hook that calls `MPI_Abort` after the
//! default report: an unwinding rank would otherwise wait in
//! `MPI_Finalize` while the others wait in a collective, forever. Dropping
//! the last handle finalises MPI.
//!
//! Reductions run in place on the caller's buffer. rsmpi has no
//! `MPI_IN_PLACE`; Open MPI defines it as `(void *) 1` (`mpi.h`), so on
//! Open MPI (the library version string says so) that value is passed, and
//! on any other MPI the reduction goes out of place through a scratch
//! buffer (≈ 40% slower at 10⁶ floats, measured on Open MPI).
//!
//! Invariants the `unsafe` blocks below rely on:
//! - (M1) MPI is initialised (by [`Mpi::init`]) and not finalised while an
//!   [`Mpi`] exists (the universe is finalised only when it is dropped).
//! - (M2) Every pointer handed to MPI addresses `count` live elements of the
//!   datatype passed, borrowed (`&mut`) for the whole call, which returns
//!   only when MPI no longer uses them (blocking collectives).

use crate::collective::Communicator;
use mpi::ffi;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives as _};
use std::ffi::{c_int, c_void};
use std::sync::Mutex;

/// `MPI_COMM_WORLD` (see the module docs).
pub struct Mpi {
    /// Finalises MPI when dropped (M1).
    _universe: mpi::environment::Universe,
    rank: usize,
    size: usize,
    /// The library is Open MPI: `MPI_IN_PLACE` is `(void *) 1`.
    open_mpi: bool,
    /// The out-of-place fallback's receive buffer (other MPIs only).
    scratch: Mutex<Vec<u8>>,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mpi {{ rank: {}, size: {} }}", self.rank, self.size)
    }
}

/// Exit status of a job aborted by a panic on some rank.
pub const PANIC_EXIT: i32 = 101;

impl Mpi {
    /// Initialises MPI; an error if it already was (once per process).
    pub fn init() -> Result<Mpi, String> {
        let (universe, _threading) = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .ok_or("MPI is already initialised in this process")?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let open_mpi = mpi::environment::library_version()
            .map(|v| v.contains("Open MPI"))
            .unwrap_or(false);
        if size > 1 {
            let default = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                default(info);
                eprintln!("lossgraph: rank {rank} panicked; aborting the job");
                SimpleCommunicator::world().abort(PANIC_EXIT)
            }));
        }
        Ok(Mpi {
            _universe: universe,
            rank,
            size,
            open_mpi,
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// `MPI_Allreduce(MPI_SUM)` of `count` elements of `dtype` (`width`
    /// bytes each) at `buf`, in place.
    ///
    /// # Safety
    /// (M2) for `buf`, `count` and `dtype`.
    unsafe fn sum_in_place(
        &self,
        buf: *mut c_void,
        count: usize,
        width: usize,
        dtype: ffi::MPI_Datatype,
    ) -> Result<(), String> {
        // MPI counts are C ints: reduce in chunks below 2³¹ elements.
        let chunk = c_int::MAX as usize;
        let mut done = 0;
        while done < count {
            let n = (count - done).min(chunk);
            // SAFETY: (M2) `done + n <= count` elements of `width` bytes.
            let p = unsafe { buf.cast::<u8>().add(done * width) }.cast::<c_void>();
            let rc = if self.open_mpi {
                let in_place = std::ptr::without_provenance_mut::<c_void>(1);
                // SAFETY: (M1); (M2) for `p`; `in_place` is Open MPI's MPI_IN_PLACE.
                unsafe {
                    ffi::MPI_Allreduce(
                        in_place,
                        p,
                        n as c_int,
                        dtype,
                        ffi::RSMPI_SUM,
                        ffi::RSMPI_COMM_WORLD,
                    )
                }
            } else {
                let mut scratch = self.scratch.lock().map_err(|_| "scratch lock poisoned")?;
                scratch.resize(n * width, 0);
                // SAFETY: (M1); (M2) for `p` (send) and the scratch buffer of
                // `n` elements (receive); then `n` elements copied back.
                unsafe {
                    let rc = ffi::MPI_Allreduce(
                        p,
                        scratch.as_mut_ptr().cast(),
                        n as c_int,
                        dtype,
                        ffi::RSMPI_SUM,
                        ffi::RSMPI_COMM_WORLD,
                    );
                    std::ptr::copy_nonoverlapping(scratch.as_ptr(), p.cast::<u8>(), n * width);
                    rc
                }
            };
            if rc != 0 {
                return Err(format!("MPI_Allreduce failed with code {rc}"));
            }
            done += n;
        }
        Ok(())
    }
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), String> {
        // SAFETY: (M2) `buf` is borrowed for the call; MPI_FLOAT is f32.
        unsafe { self.sum_in_place(buf.as_mut_ptr().cast(), buf.len(), 4, ffi::RSMPI_FLOAT) }
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), String> {
        // SAFETY: (M2) `buf` is borrowed for the call; MPI_DOUBLE is f64.
        unsafe { self.sum_in_place(buf.as_mut_ptr().cast(), buf.len(), 8, ffi::RSMPI_DOUBLE) }
    }

    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<u64>, String> {
        let mut out = vec![0u64; values.len() * self.size];
        SimpleCommunicator::world().all_gather_into(values, &mut out[..]);
        Ok(out)
    }

    fn abort(&self, code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }
}
