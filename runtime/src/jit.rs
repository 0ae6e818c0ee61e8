//! One of the two modules with `unsafe` (the other is [`crate::sgemm`], the
//! SIMD GEMM on raw pointers): the arena, the JIT module, the thread pool,
//! calls into compiled code and the GEMM calls on arena pointers.
//!
//! Invariants every `unsafe` block below relies on:
//! - (A) The arena is allocated once (`alloc_zeroed`, 64-byte aligned), never
//!   resized or moved while its [`CompiledStep`] lives, freed once on drop;
//!   all access goes through its base pointer.
//! - (B) Every offset handed to this module comes from the memory plan, which
//!   placed each buffer (64-byte aligned, `numel * 4` bytes) inside the arena;
//!   the arena is at least `MemoryPlan::size` bytes, and `check_range` enforces
//!   it again at every raw access made from Rust.
//! - (C) Compiled kernels only touch arena buffers of their own plan (their
//!   addresses were computed from this arena's base and the plan's offsets)
//!   and read/write `lo..hi` slices of their outermost loop.
//! - (D) The JIT code memory lives as long as the function pointers into it:
//!   both are owned by [`JitCode`], which frees the memory only on drop.
//! - (E) `&self` views of arena data are only handed out while no run is in
//!   progress: `run` takes `&mut self`, so no view can be alive during it.

use cranelift_codegen::ir::Function;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::sgemm;

/// A zeroed, 64-byte aligned byte arena with a fixed address.
pub(crate) struct Arena {
    /// First 64-byte aligned address inside the allocation.
    base: *mut u8,
    len: usize,
    /// The allocation itself (16-byte aligned, 64 bytes longer than `len`).
    raw: *mut u8,
    layout: std::alloc::Layout,
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `alloc_zeroed(self.layout)` in `Arena::new`
        // and is freed exactly once, here; (D) no kernel can run any more
        // because the arena is dropped after the steps and the pool.
        unsafe { std::alloc::dealloc(self.raw, self.layout) };
    }
}

impl Arena {
    /// Allocates `bytes` zeroed bytes (at least one 64-byte line). The
    /// allocation asks for 16-byte alignment (so large arenas come from
    /// `calloc` as lazily zeroed pages, instead of an aligned allocation
    /// followed by a memset of every byte) and the base is rounded up to 64.
    pub(crate) fn new(bytes: usize) -> Result<Arena, String> {
        let len = bytes.div_ceil(64).max(1) * 64;
        let layout = std::alloc::Layout::from_size_align(len + 64, 16)
            .map_err(|e| format!("arena of {len} bytes: {e}"))?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        if raw.is_null() {
            return Err(format!("cannot allocate an arena of {len} bytes"));
        }
        let pad = raw.align_offset(64);
        if pad > 64 {
            return Err("cannot align the arena to 64 bytes".into());
        }
        // SAFETY: `pad <= 64`, and the allocation is `len + 64` bytes long, so
        // `base .. base + len` lies inside it.
        let base = unsafe { raw.add(pad) };
        Ok(Arena {
            base,
            len,
            raw,
            layout,
        })
    }

    /// The fixed base address compiled code is built against.
    pub(crate) fn base(&self) -> u64 {
        self.base as u64
    }

    fn check_range(&self, off: usize, bytes: usize) -> bool {
        off.is_multiple_of(4) && off.checked_add(bytes).is_some_and(|e| e <= self.len)
    }

    /// `n` f32 values at byte offset `off`, or `None` if out of range.
    pub(crate) fn f32s(&self, off: usize, n: usize) -> Option<&[f32]> {
        if !self.check_range(off, n * 4) {
            return None;
        }
        // SAFETY: (A) the pointer is valid and 4-aligned (offsets are multiples
        // of 4, checked above); the range lies inside the arena (checked); (E)
        // no kernel writes while `&self` is borrowed; every bit pattern is a valid f32.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(off) as *const f32, n) })
    }

    /// `n` i32 values at byte offset `off`, or `None` if out of range.
    pub(crate) fn i32s(&self, off: usize, n: usize) -> Option<&[i32]> {
        if !self.check_range(off, n * 4) {
            return None;
        }
        // SAFETY: as in `f32s`; every bit pattern is a valid i32.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(off) as *const i32, n) })
    }

    /// Copies `src` (4-byte elements) to byte offset `off`; false if out of range.
    pub(crate) fn write<T: Copy>(&mut self, off: usize, src: &[T]) -> bool {
        debug_assert_eq!(std::mem::size_of::<T>(), 4);
        let bytes = std::mem::size_of_val(src);
        if std::mem::size_of::<T>() != 4 || !self.check_range(off, bytes) {
            return false;
        }
        // SAFETY: (A)/(B) destination range checked inside the arena; `src` is a
        // Rust slice, so it cannot overlap the arena's private allocation;
        // `&mut self` excludes concurrent readers and kernels.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr() as *const u8, self.base.add(off), bytes)
        };
        true
    }

    /// Copies `bytes` bytes inside the arena; false if out of range.
    pub(crate) fn copy_within(&mut self, src: usize, dst: usize, bytes: usize) -> bool {
        if !self.check_range(src, bytes) || !self.check_range(dst, bytes) {
            return false;
        }
        // SAFETY: both ranges checked inside the arena; `copy` allows overlap.
        unsafe { std::ptr::copy(self.base.add(src), self.base.add(dst), bytes) };
        true
    }
}

/// A compiled kernel: `fn(lo, hi)` over its outermost loop.
pub(crate) type KernelFn = unsafe extern "C" fn(i64, i64);

/// Owns the JIT module (and so the executable memory of every kernel).
pub(crate) struct JitCode {
    module: Option<JITModule>,
}

impl Drop for JitCode {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: (D) the function pointers into this memory are owned by the
            // same `CompiledStep` and are dropped with it; none can be called later.
            unsafe { m.free_memory() };
        }
    }
}

/// Builds the host ISA (with its SIMD/FMA features) at `opt_level=speed`.
fn host_isa() -> Result<cranelift_codegen::isa::OwnedTargetIsa, String> {
    let mut fb = settings::builder();
    fb.set("opt_level", "speed").map_err(|e| e.to_string())?;
    fb.set("use_colocated_libcalls", "false")
        .map_err(|e| e.to_string())?;
    fb.set("is_pic", "false").map_err(|e| e.to_string())?;
    let isa_builder = cranelift_native::builder().map_err(|e| e.to_string())?;
    isa_builder
        .finish(settings::Flags::new(fb))
        .map_err(|e| e.to_string())
}

impl JitCode {
    /// Compiles `funcs` (on up to `threads` threads) into one JIT module and
    /// returns the entry of each, in order.
    pub(crate) fn compile(
        funcs: Vec<Function>,
        threads: usize,
    ) -> Result<(JitCode, Vec<KernelFn>), String> {
        let isa = host_isa()?;
        let n = funcs.len();
        let parts = threads.clamp(1, n.max(1));
        // Round-robin split: kernel sizes vary along the schedule.
        let mut chunks: Vec<Vec<(usize, Function)>> = (0..parts).map(|_| Vec::new()).collect();
        for (i, f) in funcs.into_iter().enumerate() {
            chunks[i % parts].push((i, f));
        }
        let compile_chunk = |chunk: Vec<(usize, Function)>| {
            let mut out = Vec::with_capacity(chunk.len());
            for (i, f) in chunk {
                let mut ctx = cranelift_codegen::Context::for_function(f);
                let mut cp = cranelift_codegen::control::ControlPlane::default();
                let code = ctx
                    .compile(&*isa, &mut cp)
                    .map_err(|e| format!("kernel {i}: {:?}", e.inner))?;
                if !code.buffer.relocs().is_empty() {
                    return Err(format!("kernel {i}: unexpected relocations"));
                }
                out.push((i, code.code_buffer().to_vec(), code.buffer.alignment as u64));
            }
            Ok::<_, String>(out)
        };
        let mut compiled: Vec<(usize, Vec<u8>, u64)> = Vec::with_capacity(n);
        if parts == 1 {
            for chunk in chunks {
                compiled.extend(compile_chunk(chunk)?);
            }
        } else {
            let results: Vec<Result<_, String>> = std::thread::scope(|s| {
                let hs: Vec<_> = chunks
                    .into_iter()
                    .map(|c| s.spawn(|| compile_chunk(c)))
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("compiler thread panicked".into()))
                    })
                    .collect()
            });
            for r in results {
                compiled.extend(r?);
            }
        }
        compiled.sort_by_key(|c| c.0);
        let jb = JITBuilder::with_isa(isa, default_libcall_names());
        let mut module = JITModule::new(jb);
        let mut sig = cranelift_codegen::ir::Signature::new(module.isa().default_call_conv());
        sig.params.push(cranelift_codegen::ir::AbiParam::new(
            cranelift_codegen::ir::types::I64,
        ));
        sig.params.push(cranelift_codegen::ir::AbiParam::new(
            cranelift_codegen::ir::types::I64,
        ));
        let mut ids = Vec::with_capacity(n);
        for (i, bytes, align) in &compiled {
            let id = module
                .declare_function(&format!("k{i}"), Linkage::Local, &sig)
                .map_err(|e| e.to_string())?;
            module
                .define_function_bytes(id, *align, bytes, &[])
                .map_err(|e| format!("kernel {i}: {e}"))?;
            ids.push(id);
        }
        module.finalize_definitions().map_err(|e| e.to_string())?;
        let fns = ids
            .into_iter()
            .map(|id| {
                let p = module.get_finalized_function(id);
                // SAFETY: every function was built with signature (i64, i64) -> ()
                // in the host's C calling convention (lower_clif::lower_nest), has
                // no relocations (checked above: addresses are absolute
                // constants), and the code stays mapped while `JitCode` lives (D).
                unsafe { std::mem::transmute::<*const u8, KernelFn>(p) }
            })
            .collect();
        Ok((
            JitCode {
                module: Some(module),
            },
            fns,
        ))
    }
}

/// Which GEMM routine a [`GemmStep`] calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmImpl {
    /// lossgraph's AVX-512 GEMM ([`crate::sgemm`]): packs into arena
    /// workspace, splits across the step's own pool. Needs AVX-512F; on
    /// other hosts the compiled step uses [`GemmImpl::Crate`].
    Lossgraph,
    /// The `gemm` crate (allocates packing buffers per call; rayon threads).
    Crate,
}

/// One GEMM call on arena buffers (row-major operands, strides in elements).
#[derive(Clone, Debug)]
pub(crate) struct GemmStep {
    /// Independent products, `m·k`, `k·n` and `m·n` elements apart.
    pub batch: usize,
    /// Shape and strides of one product.
    pub d: sgemm::Dims,
    /// Byte offsets of C, A and B in the arena.
    pub dst: usize,
    pub lhs: usize,
    pub rhs: usize,
    /// Threads (parts) the product is split into (1 = the caller alone).
    pub threads: usize,
    /// The routine; `Lossgraph` only when `sgemm::available()`.
    pub imp: GemmImpl,
    /// Arena byte offset of part 0's workspace; part `i`'s is at
    /// `ws + i·ws_stride` (`Lossgraph` only; each holds
    /// `Dims::workspace_floats` floats).
    pub ws: usize,
    pub ws_stride: usize,
}

/// One step of a compiled program.
pub(crate) enum Step {
    Kernel {
        f: KernelFn,
        outer: usize,
        /// Threads to split the outer loop across (1 = run on the caller).
        threads: usize,
    },
    Gemm(GemmStep),
}

/// Iterations a waiting thread spins (with `spin_loop`) before parking: about
/// 20–60 µs, longer than the gaps between the parallel steps of a training
/// step, so a step never pays a futex wake-up, yet bounded so that an idle
/// program costs no CPU. Pools with more threads than the host has cores do
/// not spin (a spinning thread would take the core a worker needs).
const SPIN_ITERS: u32 = 1 << 12;

/// One piece of parallel work: every participant runs `run_part(i, parts)`
/// for its own `i`.
#[derive(Clone, Copy)]
pub(crate) enum Task {
    /// A compiled kernel over `0..outer`, cut into equal contiguous chunks.
    Kernel { f: KernelFn, outer: usize },
    /// One batch item of a [`GemmStep`] on [`crate::sgemm`].
    Gemm(GemmTask),
}

/// Raw operands of one lossgraph GEMM (see [`sgemm::gemm_part`]).
#[derive(Clone, Copy)]
pub(crate) struct GemmTask {
    d: sgemm::Dims,
    c: *mut f32,
    a: *const f32,
    b: *const f32,
    ws: *mut f32,
    /// Floats between the workspaces of consecutive parts.
    ws_stride: usize,
}

// SAFETY: the pointers address the arena, which outlives every job (the pool
// waits for all parts before `Pool::run` returns); parts write disjoint
// blocks of C and their own workspace (sgemm's contract).
unsafe impl Send for GemmTask {}

impl Task {
    /// Runs part `i` of `parts`.
    ///
    /// # Safety
    /// For `Kernel`, (C): disjoint chunks may run concurrently. For `Gemm`,
    /// the operands satisfy `sgemm::gemm_part`'s contract with a workspace of
    /// `parts · ws_stride` floats.
    unsafe fn run_part(&self, i: usize, parts: usize) {
        match *self {
            Task::Kernel { f, outer } => {
                let (lo, hi) = chunk(outer, parts, i);
                // SAFETY: (C) forwarded; chunks of distinct `i` are disjoint.
                unsafe { f(lo, hi) }
            }
            Task::Gemm(g) => {
                // SAFETY: forwarded; part i uses its own workspace slice.
                unsafe {
                    sgemm::gemm_part(&g.d, g.c, g.a, g.b, g.ws.add(i * g.ws_stride), i, parts)
                }
            }
        }
    }
}

/// A persistent worker pool. A job is one [`Task`] cut into `parts`. Every
/// thread, the caller included, claims parts from a shared counter until none
/// is left, so a worker that is descheduled (a loaded host) delays nothing:
/// the caller runs its parts. Which thread runs a part does not change the
/// result (parts are fixed by the part count), so results are deterministic
/// for a fixed thread count. Workers spin briefly on the job generation,
/// then park on a condvar; the caller spins on the done count, then parks.
pub(crate) struct Pool {
    shared: Arc<PoolShared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// The published job (none before the first) and the parked-worker count.
struct JobSlot {
    /// The task, its part count and its generation.
    job: Option<(Task, usize, u32)>,
    /// Workers parked on `wake`.
    sleepers: usize,
}

struct PoolShared {
    job: Mutex<JobSlot>,
    /// Bumped (under `job`'s lock) each time a job is published.
    generation: AtomicU64,
    /// `generation << 32 | next unclaimed part` of the current job: a claim
    /// made with a stale generation fails, so a late worker can never take a
    /// part of a newer job.
    claim: AtomicU64,
    /// Parts of the current job completed.
    done: AtomicUsize,
    wake: Condvar,
    /// True while the caller is parked on `done_cv` (guarded by the lock).
    done_lock: Mutex<bool>,
    done_cv: Condvar,
    quit: AtomicBool,
    /// Spin iterations before parking: `SPIN_ITERS`, or 0 when oversubscribed.
    spin: u32,
}

fn chunk(outer: usize, parts: usize, i: usize) -> (i64, i64) {
    let lo = outer * i / parts;
    let hi = outer * (i + 1) / parts;
    (lo as i64, hi as i64)
}

impl PoolShared {
    /// Claims the next part of job `generation`, if any is left.
    fn claim(&self, generation: u32, parts: usize) -> Option<usize> {
        let mut cur = self.claim.load(Ordering::SeqCst);
        loop {
            let idx = (cur & 0xffff_ffff) as usize;
            if (cur >> 32) as u32 != generation || idx >= parts {
                return None;
            }
            match self
                .claim
                .compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Some(idx),
                Err(now) => cur = now,
            }
        }
    }

    /// Runs parts of job `generation` until none is left to claim.
    ///
    /// # Safety
    /// `task` satisfies [`Task::run_part`]'s contract for `parts`, and is the
    /// task of job `generation`.
    unsafe fn work(&self, task: Task, parts: usize, generation: u32) {
        while let Some(i) = self.claim(generation, parts) {
            // SAFETY: forwarded; each part index is claimed exactly once.
            unsafe { task.run_part(i, parts) };
            if self.done.fetch_add(1, Ordering::SeqCst) + 1 == parts {
                let parked = self.done_lock.lock().unwrap_or_else(|e| e.into_inner());
                if *parked {
                    self.done_cv.notify_all();
                }
            }
        }
    }
}

impl Pool {
    /// A pool with `threads - 1` workers (the caller is the last thread).
    pub(crate) fn new(threads: usize) -> Pool {
        let shared = Arc::new(PoolShared {
            job: Mutex::new(JobSlot {
                job: None,
                sleepers: 0,
            }),
            generation: AtomicU64::new(0),
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            wake: Condvar::new(),
            done_lock: Mutex::new(false),
            done_cv: Condvar::new(),
            quit: AtomicBool::new(false),
            spin: if threads <= std::thread::available_parallelism().map_or(1, |n| n.get()) {
                SPIN_ITERS
            } else {
                0
            },
        });
        let workers = (1..threads.max(1))
            .map(|_| {
                let sh = shared.clone();
                std::thread::spawn(move || worker(sh))
            })
            .collect();
        Pool { shared, workers }
    }

    /// Number of threads including the caller.
    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `task` in `parts` parts; returns when all are done.
    ///
    /// # Safety
    /// `task` satisfies [`Task::run_part`]'s contract for `parts`.
    unsafe fn run(&self, task: Task, parts: usize) {
        let parts = parts.min(self.threads()).max(1);
        if parts == 1 {
            // SAFETY: forwarded; the whole task on this thread.
            unsafe { task.run_part(0, 1) };
            return;
        }
        let sh = &*self.shared;
        let (generation, sleepers) = {
            let mut j = sh.job.lock().unwrap_or_else(|e| e.into_inner());
            let generation = (sh.generation.load(Ordering::SeqCst) as u32).wrapping_add(1);
            j.job = Some((task, parts, generation));
            sh.done.store(0, Ordering::SeqCst);
            sh.claim
                .store(u64::from(generation) << 32, Ordering::SeqCst);
            sh.generation.store(u64::from(generation), Ordering::SeqCst);
            (generation, j.sleepers)
        };
        if sleepers > 0 {
            sh.wake.notify_all();
        }
        // SAFETY: forwarded; parts are claimed exactly once across threads.
        unsafe { sh.work(task, parts, generation) };
        let mut spins = 0;
        while sh.done.load(Ordering::SeqCst) < parts {
            if spins < sh.spin {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut parked = sh.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            *parked = true;
            while sh.done.load(Ordering::SeqCst) < parts {
                parked = sh.done_cv.wait(parked).unwrap_or_else(|e| e.into_inner());
            }
            *parked = false;
        }
    }
}

fn worker(sh: Arc<PoolShared>) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0;
        let (task, parts, generation) = loop {
            if sh.quit.load(Ordering::SeqCst) {
                return;
            }
            if sh.generation.load(Ordering::SeqCst) != seen {
                let j = sh.job.lock().unwrap_or_else(|e| e.into_inner());
                seen = sh.generation.load(Ordering::SeqCst);
                match j.job {
                    Some(job) => break job,
                    None => continue,
                }
            }
            if spins < sh.spin {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut j = sh.job.lock().unwrap_or_else(|e| e.into_inner());
            j.sleepers += 1;
            while sh.generation.load(Ordering::SeqCst) == seen && !sh.quit.load(Ordering::SeqCst) {
                j = sh.wake.wait(j).unwrap_or_else(|e| e.into_inner());
            }
            j.sleepers -= 1;
            spins = 0;
        };
        // SAFETY: the publisher guarantees `run_part`'s contract for this
        // generation's task; a stale generation claims nothing; the task's
        // code and arena outlive the job because `Pool::run` waits for
        // every part before returning.
        unsafe { sh.work(task, parts, generation) };
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        {
            let _j = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A compiled program: arena, code, steps, post-run copies.
pub(crate) struct CompiledStep {
    // Field order matters for drop: the pool (which may hold kernel pointers)
    // goes first, then the steps, then the code.
    pool: Option<Pool>,
    steps: Vec<Step>,
    _code: JitCode,
    pub(crate) arena: Arena,
    /// `(src, dst, bytes)` arena copies applied after the kernels.
    copies: Vec<(usize, usize, usize)>,
}

impl CompiledStep {
    pub(crate) fn new(
        arena: Arena,
        code: JitCode,
        steps: Vec<Step>,
        copies: Vec<(usize, usize, usize)>,
        threads: usize,
    ) -> CompiledStep {
        let pool = (threads > 1).then(|| Pool::new(threads));
        CompiledStep {
            pool,
            steps,
            _code: code,
            arena,
            copies,
        }
    }

    /// Runs every step in order, then the update copies. Performs no allocation.
    pub(crate) fn run(&mut self) -> Result<(), String> {
        self.run_timed(None)
    }

    /// Like `run`, adding each step's wall time in nanoseconds to `times`
    /// (one slot per step, plus a last slot for the update copies).
    pub(crate) fn run_timed(&mut self, mut times: Option<&mut [u64]>) -> Result<(), String> {
        let mut t = times.as_ref().map(|_| std::time::Instant::now());
        for (i, s) in self.steps.iter().enumerate() {
            match s {
                Step::Kernel { f, outer, threads } => match &self.pool {
                    Some(p) if *threads > 1 => {
                        // SAFETY: (C) the compiler marked this kernel splittable
                        // (threads > 1 only then); arena and code are alive (A, D).
                        unsafe {
                            p.run(
                                Task::Kernel {
                                    f: *f,
                                    outer: *outer,
                                },
                                *threads,
                            )
                        }
                    }
                    _ => {
                        // SAFETY: (A)-(D): the kernel addresses this arena only,
                        // over its whole outer range, on this thread.
                        unsafe { f(0, *outer as i64) }
                    }
                },
                Step::Gemm(g) => self.gemm(g)?,
            }
            if let (Some(ts), Some(t0)) = (times.as_deref_mut(), t.as_mut()) {
                let now = std::time::Instant::now();
                if let Some(slot) = ts.get_mut(i) {
                    *slot += (now - *t0).as_nanos() as u64;
                }
                *t0 = now;
            }
        }
        for &(src, dst, bytes) in &self.copies {
            if !self.arena.copy_within(src, dst, bytes) {
                return Err(format!(
                    "update copy {src}->{dst} ({bytes} bytes) out of range"
                ));
            }
        }
        if let (Some(ts), Some(t0)) = (times, t) {
            if let Some(slot) = ts.get_mut(self.steps.len()) {
                *slot += t0.elapsed().as_nanos() as u64;
            }
        }
        Ok(())
    }

    fn gemm(&self, g: &GemmStep) -> Result<(), String> {
        let d = g.d;
        let (m, n, k) = (d.m, d.n, d.k);
        let span = |rs: isize, cs: isize, r: usize, c: usize| {
            if r == 0 || c == 0 {
                0
            } else {
                ((r - 1) as isize * rs + (c - 1) as isize * cs) as usize + 1
            }
        };
        for bi in 0..g.batch {
            let dst = g.dst + bi * m * n * 4;
            let lhs = g.lhs + bi * m * k * 4;
            let rhs = g.rhs + bi * k * n * 4;
            if !self.arena.check_range(dst, m * n * 4)
                || !self.arena.check_range(lhs, span(d.a_rs, d.a_cs, m, k) * 4)
                || !self.arena.check_range(rhs, span(d.b_rs, d.b_cs, k, n) * 4)
            {
                return Err(format!("gemm {m}x{n}x{k} operands out of the arena"));
            }
            let base = self.arena.base;
            if k == 0 {
                // SAFETY: dst range checked above; zeroing f32 bytes gives 0.0.
                unsafe { std::ptr::write_bytes(base.add(dst), 0, m * n * 4) };
                continue;
            }
            if g.imp == GemmImpl::Lossgraph {
                let ws_floats = d.workspace_floats();
                let parts = g.threads.max(1);
                if !sgemm::available()
                    || !d.supported()
                    || g.ws_stride < ws_floats
                    || !self
                        .arena
                        .check_range(g.ws, (parts - 1) * g.ws_stride * 4 + ws_floats * 4)
                {
                    return Err(format!(
                        "gemm {m}x{n}x{k}: no AVX-512, strides too large or workspace out of the arena"
                    ));
                }
                // SAFETY: (A)/(B) the operand ranges and `parts` workspaces were
                // checked inside the arena above; dst overlaps neither the
                // operands (distinct live planned buffers) nor the workspace
                // (placed after every planned buffer); AVX-512F is present.
                let task = unsafe {
                    GemmTask {
                        d,
                        c: base.add(dst) as *mut f32,
                        a: base.add(lhs) as *const f32,
                        b: base.add(rhs) as *const f32,
                        ws: base.add(g.ws) as *mut f32,
                        ws_stride: g.ws_stride,
                    }
                };
                let task = Task::Gemm(task);
                match &self.pool {
                    // SAFETY: as above; parts write disjoint blocks of C.
                    Some(p) if parts > 1 => unsafe { p.run(task, parts) },
                    // SAFETY: as above, one part on this thread.
                    _ => unsafe { task.run_part(0, 1) },
                }
                continue;
            }
            let par = if g.threads > 1 {
                gemm::Parallelism::Rayon(g.threads)
            } else {
                gemm::Parallelism::None
            };
            // SAFETY: (A)/(B) all three ranges were checked inside the arena with
            // the strides passed; dst does not overlap lhs/rhs (distinct planned
            // buffers live at the same time); no Rust reference to the arena
            // exists during `run` (E). dst := 0·dst + 1·lhs×rhs.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    base.add(dst) as *mut f32,
                    1,
                    n as isize,
                    false,
                    base.add(lhs) as *const f32,
                    d.a_cs,
                    d.a_rs,
                    base.add(rhs) as *const f32,
                    d.b_cs,
                    d.b_rs,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                )
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTER: usize = 97;
    static HITS: [AtomicUsize; OUTER] = [const { AtomicUsize::new(0) }; OUTER];

    /// A "kernel" that counts how often each index of its range is visited.
    unsafe extern "C" fn count(lo: i64, hi: i64) {
        for i in lo..hi {
            HITS[i as usize].fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Every index is visited exactly once per job, whatever thread claims
    /// which part, over many back-to-back jobs (stale claims must fail).
    #[test]
    fn pool_runs_every_part_once() {
        for threads in [2, 3, 5] {
            let pool = Pool::new(threads);
            let jobs = 2000;
            for j in 0..jobs {
                let parts = 1 + j % threads;
                let task = Task::Kernel {
                    f: count,
                    outer: OUTER,
                };
                // SAFETY: `count` only touches the atomics of its own range.
                unsafe { pool.run(task, parts) };
            }
            for (i, h) in HITS.iter().enumerate() {
                assert_eq!(
                    h.swap(0, Ordering::SeqCst),
                    jobs,
                    "index {i}, {threads} threads"
                );
            }
        }
    }
}
