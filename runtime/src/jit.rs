//! One of the two modules with `unsafe` (the other is [`crate::sgemm`], the
//! SIMD GEMM on raw pointers): the arenas, the JIT module, the thread pool,
//! calls into compiled code and the registered host functions that
//! external-call steps run on raw buffer pointers (the GEMMs, the
//! convolutions, the poolings, the all-reduce of a gradient buffer through
//! the program's communicator).
//!
//! A compiled step works on two [`Arena`]s: its own (inputs, constants,
//! scratch, GEMM workspace) and the variable store's (every variable of the
//! model, shared by all its programs). Neither address is compiled in: each
//! run passes both bases to every kernel and host function.
//!
//! Invariants every `unsafe` block below relies on:
//! - (A) An arena is one `alloc_zeroed` allocation with a 64-byte aligned
//!   base, freed once on drop; all access goes through its base pointer. A
//!   program's arena is never resized while its [`CompiledStep`] lives. The
//!   store's arena is resized only by [`Arena::resize`] (content kept), which
//!   takes `&mut`, so never during a run; every run re-reads both bases.
//! - (B) Every arena offset handed to this module comes from the memory plan,
//!   which placed each buffer (64-byte aligned, `numel * 4` bytes) inside the
//!   arena (at least `MemoryPlan::size` bytes); every store offset comes from
//!   the store's slot table, and a run refuses a store shorter than the
//!   `store_min` bytes its slots need (the store never shrinks under an id).
//!   `check_range` enforces ranges again at every raw access made from Rust.
//! - (C) Compiled kernels only touch buffers of their own plan (addressed as
//!   offsets from the arena and store bases they are called with) and
//!   read/write `lo..hi` slices of their outermost loop.
//! - (D) The JIT code memory lives as long as the function pointers into it:
//!   both are owned by [`JitCode`], which frees the memory only on drop.
//! - (E) `&self` views of arena data are only handed out while no run is in
//!   progress: a run takes `&mut` of the step and of the store's arena, so no
//!   view can be alive during it.
//! - (F) A host function only dereferences the buffers of its [`CallArgs`],
//!   each range-checked inside its arena by [`CallArgs::buf`], and runs parts
//!   on the step's pool only under [`Task::run_part`]'s contract.

use cranelift_codegen::ir::Function;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::collective::Communicator;
#[cfg(target_arch = "x86_64")]
use crate::conv;
#[cfg(target_arch = "x86_64")]
use crate::pool;
use crate::sgemm;
use lossgraph_compiler::conv_calls::{ConvCall, ConvPass};
use lossgraph_compiler::lower_clif::Base;
use lossgraph_compiler::pool_calls::{PoolCall, PoolPass};

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
        if self.raw.is_null() {
            return; // `Arena::empty`: nothing was allocated.
        }
        // SAFETY: `raw` came from `alloc_zeroed(self.layout)` in `Arena::new`
        // and is freed exactly once, here; (D) no kernel can run any more
        // because the arena is dropped after the steps and the pool.
        unsafe { std::alloc::dealloc(self.raw, self.layout) };
    }
}

impl Arena {
    /// An arena of zero bytes that allocates nothing (its base is a
    /// non-null, 64-byte aligned dangling pointer, never dereferenced:
    /// `check_range` admits only empty ranges).
    pub(crate) fn empty() -> Arena {
        Arena {
            base: std::ptr::null_mut::<u8>().wrapping_add(64),
            len: 0,
            raw: std::ptr::null_mut(),
            layout: std::alloc::Layout::new::<u8>(),
        }
    }

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

    /// Length in bytes (a multiple of 64).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Grows (or keeps) the arena to at least `bytes` bytes, keeping its
    /// content; new bytes are zero. The base may move (A).
    pub(crate) fn resize(&mut self, bytes: usize) -> Result<(), String> {
        if bytes <= self.len {
            return Ok(());
        }
        let bigger = Arena::new(bytes)?;
        // SAFETY: (A) both allocations are live and distinct; `self.len` bytes
        // lie inside both (`bigger.len >= bytes > self.len`); `&mut self`
        // excludes every reader and kernel.
        unsafe { std::ptr::copy_nonoverlapping(self.base, bigger.base, self.len) };
        *self = bigger;
        Ok(())
    }

    /// Copies `bytes` bytes from `src` at `src_off` to `dst_off`; false if
    /// either range is outside its arena.
    pub(crate) fn copy_from(
        &mut self,
        dst_off: usize,
        src: &Arena,
        src_off: usize,
        bytes: usize,
    ) -> bool {
        if !self.check_range(dst_off, bytes) || !src.check_range(src_off, bytes) {
            return false;
        }
        // SAFETY: (A)/(B) both ranges checked inside their arenas; `&mut self`
        // and `&Arena` are distinct allocations, so they cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.base.add(src_off), self.base.add(dst_off), bytes)
        };
        true
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

    /// The `u64` (native byte order) at byte offset `off`, or `None` if out
    /// of range.
    pub(crate) fn u64_at(&self, off: usize) -> Option<u64> {
        let w = self.i32s(off, 2)?;
        let (lo, hi) = (w[0].to_ne_bytes(), w[1].to_ne_bytes());
        Some(u64::from_ne_bytes([
            lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3],
        ]))
    }

    /// Writes the `u64` `v` (native byte order) at byte offset `off`; false
    /// if out of range.
    pub(crate) fn set_u64(&mut self, off: usize, v: u64) -> bool {
        let b = v.to_ne_bytes();
        let w = [
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        ];
        self.write(off, &w)
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

/// A compiled kernel: `fn(lo, hi, arena, store)` over `lo..hi` of its
/// outermost loop, its buffers at offsets from the two bases.
pub(crate) type KernelFn = unsafe extern "C" fn(i64, i64, *mut u8, *mut u8);

/// The base pointers of one run: the program's arena and the variable store.
#[derive(Clone, Copy)]
pub(crate) struct Bases {
    arena: *mut u8,
    store: *mut u8,
}

// SAFETY: the bases point into arenas that outlive every job using them
// (`Pool::run` waits for all parts; a run holds `&mut` of both arenas), and
// threads only touch them under (C) and (F).
unsafe impl Send for Bases {}

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
    // Cranelift's IR verifier re-checks every function before and after its
    // passes: a quarter of the compile time of a 500-layer stack. The lowering
    // is checked by it in debug builds (and the tests); release builds skip it.
    fb.set(
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )
    .map_err(|e| e.to_string())?;
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
        let sig =
            lossgraph_compiler::lower_clif::kernel_signature(module.isa().default_call_conv());
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
                // SAFETY: every function was built with `kernel_signature`,
                // (i64, i64, i64, i64) -> () in the host's C calling convention
                // (pointers are 64-bit integers there), has no relocations
                // (checked above: buffers are offsets from the base arguments),
                // and the code stays mapped while `JitCode` lives (D).
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

/// Which GEMM routine a GEMM call step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmImpl {
    /// lossgraph's AVX-512 GEMM ([`crate::sgemm`]): packs into arena
    /// workspace, splits across the step's own pool. Needs AVX-512F; on
    /// other hosts the compiled step uses [`GemmImpl::Crate`].
    Lossgraph,
    /// The `gemm` crate (allocates packing buffers per call; rayon threads).
    Crate,
}

/// A buffer argument of an external-call step: `bytes` bytes at byte offset
/// `off` from the run's `base` pointer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallBuf {
    pub base: Base,
    pub off: usize,
    pub bytes: usize,
}

/// What a host function is called with: the step's buffers (resolved
/// against this run's bases), its integer parameters, its thread count,
/// the compiled step's pool (`None` when single-threaded) and its
/// communicator.
pub(crate) struct CallArgs<'a> {
    bases: Bases,
    arena_len: usize,
    store_len: usize,
    bufs: &'a [CallBuf],
    params: &'a [i64],
    threads: usize,
    pool: Option<&'a Pool>,
    comm: &'a dyn Communicator,
}

impl CallArgs<'_> {
    /// Buffer `i`: its pointer and length in bytes, after checking that it
    /// lies inside its arena and is 64-byte aligned (F).
    fn buf(&self, i: usize) -> Result<(*mut u8, usize), String> {
        let b = self
            .bufs
            .get(i)
            .ok_or_else(|| format!("call has no buffer {i}"))?;
        let (base, len) = match b.base {
            Base::Arena => (self.bases.arena, self.arena_len),
            Base::Store => (self.bases.store, self.store_len),
        };
        if !b.off.is_multiple_of(64) || b.off.checked_add(b.bytes).is_none_or(|e| e > len) {
            return Err(format!(
                "buffer {i} ({} bytes at {:?}+{}) outside its {len}-byte region",
                b.bytes, b.base, b.off
            ));
        }
        Ok((base.wrapping_add(b.off), b.bytes))
    }

    /// Integer parameter `i`, converted to `usize`.
    fn param(&self, i: usize) -> Result<usize, String> {
        self.params
            .get(i)
            .and_then(|&p| usize::try_from(p).ok())
            .ok_or_else(|| format!("call parameter {i} missing or negative"))
    }
}

/// A host function an external-call step runs (see [`CallArgs`]).
pub(crate) type HostFn = fn(&CallArgs<'_>) -> Result<(), String>;

/// The registered host functions, by name. An external-call step names one
/// of these; a new kind of call plugs in as one more entry.
const HOST_FUNCTIONS: [(&str, HostFn); 5] = [
    ("gemm", |a| gemm(a, GemmImpl::Lossgraph)),
    ("gemm_crate", |a| gemm(a, GemmImpl::Crate)),
    ("conv", conv),
    ("pool", pool_call),
    ("all_reduce_mean", all_reduce_mean),
];

/// The external-call step of an `all_reduce_mean` of `numel` f32: buffers
/// `[out, x]` (the same buffer when the memory plan reduces in place),
/// parameter `[numel]`.
pub(crate) fn all_reduce_step(out: CallBuf, x: CallBuf, numel: usize) -> Result<Step, String> {
    let n = i64::try_from(numel).map_err(|_| format!("all_reduce of {numel} elements"))?;
    Step::call("all_reduce_mean", vec![out, x], vec![n], 1)
}

/// The all-reduce host function: copies `x` into `out` unless they are one
/// buffer, then replaces `out` by its mean over the communicator's ranks,
/// in place (the communicator's own call; nothing is allocated here).
fn all_reduce_mean(args: &CallArgs<'_>) -> Result<(), String> {
    let numel = args.param(0)?;
    let ((out, out_len), (x, x_len)) = (args.buf(0)?, args.buf(1)?);
    let bytes = numel
        .checked_mul(4)
        .filter(|&b| b <= out_len && b <= x_len)
        .ok_or_else(|| format!("all_reduce of {numel} f32: outside its buffers"))?;
    if out != x {
        // SAFETY: (F) both ranges were checked inside their arenas above;
        // distinct planned buffers live at the same time do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(x, out, bytes) };
    }
    // SAFETY: (F) `out .. out + bytes` lies inside its arena (checked) and is
    // 64-byte aligned; (E) no other reference into the arenas exists during
    // a run, and the communicator only reads and writes this slice.
    let buf = unsafe { std::slice::from_raw_parts_mut(out as *mut f32, numel) };
    crate::collective::all_reduce_mean_f32(args.comm, buf)
}

/// The registered host function called `name`.
pub(crate) fn host_function(name: &str) -> Option<HostFn> {
    HOST_FUNCTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, f)| f)
}

/// The external-call step of one (batched) GEMM `C := op(A)·op(B)` on
/// row-major buffers: buffers `[C, A, B, workspace]` (the workspace holds one
/// slice of `ws_stride` floats per thread; `Lossgraph` only), parameters
/// `[batch, m, n, k, trans_a, trans_b, ws_stride]` (products `m·k`, `k·n`
/// and `m·n` elements apart).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_step(
    imp: GemmImpl,
    batch: usize,
    (m, n, k): (usize, usize, usize),
    (trans_a, trans_b): (bool, bool),
    [c, a, b, ws]: [CallBuf; 4],
    ws_stride: usize,
    threads: usize,
) -> Result<Step, String> {
    let name = match imp {
        GemmImpl::Lossgraph => "gemm",
        GemmImpl::Crate => "gemm_crate",
    };
    let params = [
        batch,
        m,
        n,
        k,
        trans_a as usize,
        trans_b as usize,
        ws_stride,
    ]
    .iter()
    .map(|&x| i64::try_from(x).map_err(|_| format!("gemm parameter {x} too large")))
    .collect::<Result<Vec<_>, _>>()?;
    Step::call(name, vec![c, a, b, ws], params, threads)
}

/// The GEMM host function: decodes [`gemm_step`]'s arguments and runs every
/// product of the batch with `imp` (parts on the step's pool).
fn gemm(args: &CallArgs<'_>, imp: GemmImpl) -> Result<(), String> {
    let batch = args.param(0)?;
    let (m, n, k) = (args.param(1)?, args.param(2)?, args.param(3)?);
    let d = sgemm::Dims::row_major(m, n, k, args.param(4)? != 0, args.param(5)? != 0);
    let ws_stride = args.param(6)?;
    let ((c, c_len), (a, a_len), (b, b_len)) = (args.buf(0)?, args.buf(1)?, args.buf(2)?);
    let span = |rs: isize, cs: isize, r: usize, c: usize| {
        if r == 0 || c == 0 {
            0
        } else {
            ((r - 1) as isize * rs + (c - 1) as isize * cs) as usize + 1
        }
    };
    let fits =
        |off: usize, elems: usize, len: usize| off.checked_add(elems * 4).is_some_and(|e| e <= len);
    for bi in 0..batch {
        let (co, ao, bo) = (bi * m * n * 4, bi * m * k * 4, bi * k * n * 4);
        if !fits(co, m * n, c_len)
            || !fits(ao, span(d.a_rs, d.a_cs, m, k), a_len)
            || !fits(bo, span(d.b_rs, d.b_cs, k, n), b_len)
        {
            return Err(format!("gemm {m}x{n}x{k}: operands outside their buffers"));
        }
        let (c, a, b) = (c.wrapping_add(co), a.wrapping_add(ao), b.wrapping_add(bo));
        if k == 0 {
            // SAFETY: (F) C's range checked above; zeroing f32 bytes gives 0.0.
            unsafe { std::ptr::write_bytes(c, 0, m * n * 4) };
            continue;
        }
        if imp == GemmImpl::Lossgraph {
            let (ws, ws_len) = args.buf(3)?;
            let ws_floats = d.workspace_floats();
            let parts = args.threads.max(1);
            if !sgemm::available()
                || !d.supported()
                || ws_stride < ws_floats
                || ((parts - 1) * ws_stride + ws_floats) * 4 > ws_len
            {
                return Err(format!(
                    "gemm {m}x{n}x{k}: no AVX-512, strides too large or workspace too small"
                ));
            }
            let task = Task::Gemm(GemmTask {
                d,
                c: c as *mut f32,
                a: a as *const f32,
                b: b as *const f32,
                ws: ws as *mut f32,
                ws_stride,
            });
            // SAFETY: (F) the operand ranges and `parts` workspaces were
            // checked inside their buffers above; C overlaps neither the
            // operands (distinct live planned buffers) nor the workspace
            // (placed after every planned buffer); AVX-512F is present; parts
            // write disjoint blocks of C.
            match args.pool {
                Some(p) if parts > 1 => unsafe { p.run(task, parts) },
                _ => unsafe { task.run_part(0, 1) },
            }
            continue;
        }
        let par = if args.threads > 1 {
            gemm::Parallelism::Rayon(args.threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: (F) all three ranges were checked inside their buffers with
        // the strides passed; C does not overlap A/B (distinct planned
        // buffers live at the same time); no Rust reference to either arena
        // exists during a run (E). C := 0·C + 1·A×B.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c as *mut f32,
                1,
                n as isize,
                false,
                a as *const f32,
                d.a_cs,
                d.a_rs,
                b as *const f32,
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

/// The convolution pass codes of a `conv` call's first parameter.
fn pass_code(p: ConvPass) -> usize {
    match p {
        ConvPass::Forward => 0,
        ConvPass::DataGrad => 1,
        ConvPass::FilterGrad => 2,
    }
}

/// A recognised call's geometry as the runtime convolution states it:
/// `[batch, H, W, C, KH, KW, F, stride_h, stride_w, dilation_h,
/// dilation_w]` (a 1-d call as `H = KH = 1`); the image is the stored,
/// already padded operand, so there is no padding, and one group.
fn conv_geometry(call: &ConvCall) -> Result<[usize; 11], String> {
    let two = |v: &[usize]| match *v {
        [w] => Ok([1, w]),
        [h, w] => Ok([h, w]),
        _ => Err(format!(
            "conv {}: {} spatial axes (1 or 2 supported)",
            call.pass.name(),
            v.len()
        )),
    };
    let ([h, w], [kh, kw]) = (two(&call.spatial)?, two(&call.window)?);
    let ([sh, sw], [dh, dw]) = (two(&call.strides)?, two(&call.dilation)?);
    let (n, c, f) = (call.batch, call.channels, call.filters);
    Ok([n, h, w, c, kh, kw, f, sh, sw, dh, dw])
}

/// Validated dimensions of [`conv_geometry`]'s list.
#[cfg(target_arch = "x86_64")]
fn conv_dims(geo: [usize; 11]) -> Result<conv::ConvDims, conv::DimsError> {
    let [batch, height, width, channels, kernel_h, kernel_w, filters, stride_h, stride_w, dilation_h, dilation_w] =
        geo;
    conv::ConvDims::new(conv::ConvSpec {
        batch,
        height,
        width,
        channels,
        kernel_h,
        kernel_w,
        filters,
        stride_h,
        stride_w,
        dilation_h,
        dilation_w,
        pad_top: 0,
        pad_bottom: 0,
        pad_left: 0,
        pad_right: 0,
        groups: 1,
    })
}

/// Workspace floats a convolution call needs: `(per part, shared by all
/// parts)` (the filter gradient's chunk sums are one region).
pub(crate) fn conv_workspace(call: &ConvCall) -> Result<(usize, usize), String> {
    #[cfg(target_arch = "x86_64")]
    {
        let d = conv_dims(conv_geometry(call)?)
            .map_err(|e| format!("conv {}: {e}", call.pass.name()))?;
        Ok(match call.pass {
            ConvPass::Forward => (d.forward_workspace_floats(), 0),
            ConvPass::DataGrad => (d.data_grad_workspace_floats(), 0),
            ConvPass::FilterGrad => (0, d.filter_grad_workspace_floats()),
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err(format!(
            "conv {}: convolution calls need x86-64",
            call.pass.name()
        ))
    }
}

/// The external-call step of one convolution pass: buffers `[out, a, b,
/// workspace]` (`a`, `b` as [`ConvPass`] lists the operands; the
/// workspace holds `ws_stride` floats per part, or the shared region),
/// parameters `[pass, batch, H, W, C, KH, KW, F, stride_h, stride_w,
/// dilation_h, dilation_w, ws_stride]`.
pub(crate) fn conv_step(
    call: &ConvCall,
    bufs: [CallBuf; 4],
    ws_stride: usize,
    threads: usize,
) -> Result<Step, String> {
    let mut params = vec![pass_code(call.pass)];
    params.extend(conv_geometry(call)?);
    params.push(ws_stride);
    let params = params
        .iter()
        .map(|&x| i64::try_from(x).map_err(|_| format!("conv parameter {x} too large")))
        .collect::<Result<Vec<_>, _>>()?;
    Step::call("conv", bufs.to_vec(), params, threads)
}

/// The convolution host function: decodes [`conv_step`]'s arguments,
/// checks every buffer against the dimensions and runs the pass's parts
/// on the step's pool (the filter gradient in two phases: chunk sums, then
/// their reduction in chunk order, so the result does not depend on the
/// thread count).
fn conv(args: &CallArgs<'_>) -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    {
        let p = |i| args.param(i);
        let pass = match p(0)? {
            0 => ConvPass::Forward,
            1 => ConvPass::DataGrad,
            2 => ConvPass::FilterGrad,
            other => return Err(format!("conv: unknown pass {other}")),
        };
        let mut geo = [0; 11];
        for (i, g) in geo.iter_mut().enumerate() {
            *g = p(1 + i)?;
        }
        let d = conv_dims(geo).map_err(|e| format!("conv {}: {e}", pass.name()))?;
        let ws_stride = p(12)?;
        let parts = args.threads.max(1);
        let (out_n, a_n, b_n, ws_n) = match pass {
            ConvPass::Forward => (
                d.output_len(),
                d.input_len(),
                d.kernel_len(),
                (parts - 1) * ws_stride + d.forward_workspace_floats(),
            ),
            ConvPass::DataGrad => (
                d.input_len(),
                d.output_len(),
                d.kernel_len(),
                (parts - 1) * ws_stride + d.data_grad_workspace_floats(),
            ),
            ConvPass::FilterGrad => (
                d.kernel_len(),
                d.input_len(),
                d.output_len(),
                d.filter_grad_workspace_floats(),
            ),
        };
        let per_part = match pass {
            ConvPass::Forward => d.forward_workspace_floats(),
            ConvPass::DataGrad => d.data_grad_workspace_floats(),
            ConvPass::FilterGrad => 0,
        };
        let (out, a, b, ws) = (args.buf(0)?, args.buf(1)?, args.buf(2)?, args.buf(3)?);
        if !sgemm::available()
            || out.1 < out_n * 4
            || a.1 < a_n * 4
            || b.1 < b_n * 4
            || ws.1 < ws_n * 4
            || ws_stride < per_part
        {
            return Err(format!(
                "conv {}: no AVX-512, or a buffer shorter than {:?} floats",
                pass.name(),
                (out_n, a_n, b_n, ws_n)
            ));
        }
        let task = |phase| {
            Task::Conv(ConvTask {
                phase,
                d,
                out: out.0 as *mut f32,
                a: a.0 as *const f32,
                b: b.0 as *const f32,
                ws: ws.0 as *mut f32,
                ws_stride,
            })
        };
        let phases: &[ConvPhase] = match pass {
            ConvPass::Forward => &[ConvPhase::Forward],
            ConvPass::DataGrad => &[ConvPhase::DataGrad],
            ConvPass::FilterGrad => &[ConvPhase::FilterSums, ConvPhase::FilterReduce],
        };
        for &phase in phases {
            // SAFETY: (F) every buffer was checked above to hold what `d`
            // needs (module invariant (a) of `conv`; (b) by `ConvDims::new`);
            // the output is a planned buffer distinct from both operands and
            // the workspace (placed after every planned buffer) (c); each
            // part has its own workspace slice (or, for the filter sums, its
            // own units of the shared region); AVX-512F is present; the
            // reduction runs after every sum part finished (`Pool::run`
            // returns only then).
            match args.pool {
                Some(pl) if parts > 1 => unsafe { pl.run(task(phase), parts) },
                _ => unsafe { task(phase).run_part(0, 1) },
            }
        }
        Ok(())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err("conv: convolution calls need x86-64 with AVX-512".into())
    }
}

/// The pooling pass codes of a `pool` call's first parameter.
const POOL_PASSES: [PoolPass; 4] = [
    PoolPass::MaxForward,
    PoolPass::MaxGrad,
    PoolPass::SumForward,
    PoolPass::SumGrad,
];

/// The external-call step of one pooling pass: buffers `[out, x]`
/// (forward passes), `[out, x, dy]` (max gradient) or `[out, dy]` (sum
/// gradient), parameters `[pass, batch, H, W, C, pool_h, pool_w,
/// stride_h, stride_w]` (a 1-d call as `H = pool_h = stride_h = 1`; the
/// image is the stored, already padded operand, so there is no padding).
pub(crate) fn pool_step(
    call: &PoolCall,
    bufs: Vec<CallBuf>,
    threads: usize,
) -> Result<Step, String> {
    let two = |v: &[usize]| match *v {
        [w] => Ok([1, w]),
        [h, w] => Ok([h, w]),
        _ => Err(format!(
            "{}: {} spatial axes (1 or 2 supported)",
            call.pass.name(),
            v.len()
        )),
    };
    let ([h, w], [ph, pw], [sh, sw]) =
        (two(&call.spatial)?, two(&call.window)?, two(&call.strides)?);
    let code = POOL_PASSES
        .iter()
        .position(|&p| p == call.pass)
        .ok_or_else(|| format!("{}: no pass code", call.pass.name()))?;
    let params = [code, call.batch, h, w, call.channels, ph, pw, sh, sw]
        .iter()
        .map(|&x| i64::try_from(x).map_err(|_| format!("pool parameter {x} too large")))
        .collect::<Result<Vec<_>, _>>()?;
    Step::call("pool", bufs, params, threads)
}

/// The pooling host function: decodes [`pool_step`]'s arguments, checks
/// every buffer against the dimensions and runs the pass's parts on the
/// step's pool (forward parts own output rows, gradient parts image rows,
/// so the result does not depend on the thread count).
fn pool_call(args: &CallArgs<'_>) -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    {
        let p = |i| args.param(i);
        let pass = *POOL_PASSES
            .get(p(0)?)
            .ok_or_else(|| format!("pool: unknown pass {}", p(0).unwrap_or(0)))?;
        let d = pool::PoolDims::new(pool::PoolSpec {
            batch: p(1)?,
            height: p(2)?,
            width: p(3)?,
            channels: p(4)?,
            pool_h: p(5)?,
            pool_w: p(6)?,
            stride_h: p(7)?,
            stride_w: p(8)?,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
        })
        .map_err(|e| format!("{}: {e}", pass.name()))?;
        let (image, windows) = (d.input_len(), d.output_len());
        // Each buffer with the floats it must hold: out, then x and/or dy.
        let (out_n, x_at, dy_at) = match pass {
            PoolPass::MaxForward | PoolPass::SumForward => (windows, Some(1), None),
            PoolPass::MaxGrad => (image, Some(1), Some(2)),
            PoolPass::SumGrad => (image, None, Some(1)),
        };
        let out = args.buf(0)?;
        let x = x_at.map(|i| args.buf(i)).transpose()?;
        let dy = dy_at.map(|i| args.buf(i)).transpose()?;
        if out.1 < out_n * 4
            || x.is_some_and(|b| b.1 < image * 4)
            || dy.is_some_and(|b| b.1 < windows * 4)
        {
            return Err(format!(
                "{}: a buffer shorter than its {image}-float image or {windows} windows",
                pass.name()
            ));
        }
        let task = Task::Pool(PoolTask {
            kind: if pass.is_max() {
                pool::PoolKind::Max
            } else {
                pool::PoolKind::Sum
            },
            grad: pass.is_grad(),
            avx512: sgemm::available(),
            d,
            out: out.0 as *mut f32,
            x: x.map_or(std::ptr::null(), |b| b.0 as *const f32),
            dy: dy.map_or(std::ptr::null(), |b| b.0 as *const f32),
        });
        let parts = args.threads.max(1);
        // SAFETY: (F) every buffer was checked above to hold what `d` needs;
        // the output is a planned buffer distinct from the operands (live
        // at the same time); parts write disjoint rows of it.
        match args.pool {
            Some(pl) if parts > 1 => unsafe { pl.run(task, parts) },
            _ => unsafe { task.run_part(0, 1) },
        }
        Ok(())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err("pool: pooling calls need x86-64".into())
    }
}

/// One step of a compiled program.
pub(crate) enum Step {
    Kernel {
        f: KernelFn,
        outer: usize,
        /// Threads to split the outer loop across (1 = run on the caller).
        threads: usize,
        /// The kernel checks ids and may record a fault: the run looks at
        /// the fault slots after it.
        checks_ids: bool,
    },
    /// An external call: a registered host function on resolved buffers.
    Call {
        f: HostFn,
        bufs: Vec<CallBuf>,
        params: Vec<i64>,
        /// Threads the function may use (1 = the caller alone).
        threads: usize,
    },
}

impl Step {
    /// The external-call step of registered host function `name`.
    pub(crate) fn call(
        name: &str,
        bufs: Vec<CallBuf>,
        params: Vec<i64>,
        threads: usize,
    ) -> Result<Step, String> {
        let f = host_function(name).ok_or_else(|| format!("no host function '{name}'"))?;
        Ok(Step::Call {
            f,
            bufs,
            params,
            threads,
        })
    }
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
    Kernel {
        f: KernelFn,
        outer: usize,
        bases: Bases,
    },
    /// One batch item of a GEMM call step on [`crate::sgemm`].
    Gemm(GemmTask),
    /// One phase of a convolution call step on [`crate::conv`].
    #[cfg(target_arch = "x86_64")]
    Conv(ConvTask),
    /// One pooling call step on [`crate::pool`].
    #[cfg(target_arch = "x86_64")]
    Pool(PoolTask),
}

/// Raw operands of one pooling pass (see [`pool_step`]): `x` is null for
/// the sum gradient, `dy` for the forward passes.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct PoolTask {
    kind: pool::PoolKind,
    /// The gradient (`out` is the image's) rather than the forward.
    grad: bool,
    /// Run the AVX-512 build of the loops (the host has AVX-512F).
    avx512: bool,
    d: pool::PoolDims,
    out: *mut f32,
    x: *const f32,
    dy: *const f32,
}

// SAFETY: as for `GemmTask`: the arenas outlive every job; parts write
// disjoint rows of the output.
#[cfg(target_arch = "x86_64")]
unsafe impl Send for PoolTask {}

/// What a [`ConvTask`] computes.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConvPhase {
    Forward,
    DataGrad,
    /// The filter gradient's chunk sums into the workspace.
    FilterSums,
    /// Their reduction into the output, after every sum part.
    FilterReduce,
}

/// Raw operands of one convolution phase (see [`conv_step`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct ConvTask {
    phase: ConvPhase,
    d: conv::ConvDims,
    out: *mut f32,
    a: *const f32,
    b: *const f32,
    ws: *mut f32,
    /// Floats between the workspaces of consecutive parts (forward, data
    /// gradient).
    ws_stride: usize,
}

// SAFETY: as for `GemmTask`: the arenas outlive every job; parts write
// disjoint outputs and their own workspace (the `conv` module's contract).
#[cfg(target_arch = "x86_64")]
unsafe impl Send for ConvTask {}

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

// SAFETY: the pointers address the arenas, which outlive every job (the pool
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
            Task::Kernel { f, outer, bases } => {
                let (lo, hi) = chunk(outer, parts, i);
                // SAFETY: (C) forwarded; chunks of distinct `i` are disjoint.
                unsafe { f(lo, hi, bases.arena, bases.store) }
            }
            Task::Gemm(g) => {
                // SAFETY: forwarded; part i uses its own workspace slice.
                unsafe {
                    sgemm::gemm_part(&g.d, g.c, g.a, g.b, g.ws.add(i * g.ws_stride), i, parts)
                }
            }
            #[cfg(target_arch = "x86_64")]
            Task::Conv(t) => {
                let epi = conv::Epilogue::PLAIN;
                // SAFETY: forwarded (the `conv` module's contracts, checked
                // by the `conv` host function); part i uses its own
                // workspace slice, or its own units of the shared one.
                unsafe {
                    match t.phase {
                        ConvPhase::Forward => conv::forward_part(
                            &t.d,
                            t.out,
                            t.a,
                            t.b,
                            &epi,
                            t.ws.add(i * t.ws_stride),
                            i,
                            parts,
                        ),
                        ConvPhase::DataGrad => conv::data_grad_part(
                            &t.d,
                            t.out,
                            t.a,
                            t.b,
                            &epi,
                            t.ws.add(i * t.ws_stride),
                            i,
                            parts,
                        ),
                        ConvPhase::FilterSums => {
                            conv::filter_grad_part(&t.d, t.a, t.b, t.ws, i, parts)
                        }
                        ConvPhase::FilterReduce => {
                            conv::filter_grad_reduce_part(&t.d, t.out, t.ws, i, parts)
                        }
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Task::Pool(t) => {
                let s = t.d.spec();
                // SAFETY: (F) the `pool` host function checked that `x` holds
                // the image and `dy` the windows (when not null) and that
                // `out` holds the output; part i's rows are its own (the
                // forward's output rows, the gradient's image rows), so no
                // two parts build overlapping mutable slices; `avx512` only
                // when the host has AVX-512F.
                let input = |p: *const f32, n: usize| -> &[f32] {
                    if p.is_null() {
                        &[]
                    } else {
                        unsafe { std::slice::from_raw_parts(p, n) }
                    }
                };
                let (x, dy) = (input(t.x, t.d.input_len()), input(t.dy, t.d.output_len()));
                if t.grad {
                    let rows = t.d.backward_rows(i, parts);
                    let row = s.width * s.channels;
                    let dx = unsafe {
                        std::slice::from_raw_parts_mut(
                            t.out.add(rows.start * row),
                            rows.len() * row,
                        )
                    };
                    if t.avx512 {
                        unsafe { pool::backward_rows_avx512(&t.d, t.kind, x, dy, rows, dx) }
                    } else {
                        pool::backward_rows(&t.d, t.kind, x, dy, rows, dx)
                    }
                } else {
                    let rows = t.d.forward_rows(i, parts);
                    let row = t.d.out_w() * s.channels;
                    let y = unsafe {
                        std::slice::from_raw_parts_mut(
                            t.out.add(rows.start * row),
                            rows.len() * row,
                        )
                    };
                    if t.avx512 {
                        unsafe { pool::forward_rows_avx512(&t.d, t.kind, x, rows, y) }
                    } else {
                        pool::forward_rows(&t.d, t.kind, x, rows, y)
                    }
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

/// A variable update not computed in place: after the steps, `bytes` bytes
/// are copied from `src` (arena or store) to byte `dst` of the store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UpdateCopy {
    pub src: Base,
    pub src_off: usize,
    pub dst: usize,
    pub bytes: usize,
}

/// The fault slot of a node whose ids compiled kernels check (see
/// `lossgraph_compiler::lower_clif::nest::IdFault`): `u64::MAX` while no
/// fault is recorded, else `position << 32 | id as u32` of the first bad id.
pub(crate) struct FaultSlot {
    /// Arena byte offset of the slot.
    pub off: usize,
    /// The node's number in the text format of the program's graph.
    pub num: usize,
    /// The checked node (its op and scope name it in the error).
    pub node: lossgraph_ir::Node,
    /// The type of its ids operand, and the rows of its table.
    pub ids: lossgraph_ir::TensorType,
    pub rows: usize,
}

/// Slot value while no fault is recorded.
pub(crate) const NO_FAULT: u64 = u64::MAX;

/// A compiled program: arena, code, steps, post-run copies.
pub(crate) struct CompiledStep {
    // Field order matters for drop: the pool (which may hold kernel pointers)
    // goes first, then the steps, then the code.
    pool: Option<Pool>,
    steps: Vec<Step>,
    _code: JitCode,
    pub(crate) arena: Arena,
    /// Update copies applied after the steps.
    copies: Vec<UpdateCopy>,
    /// Store bytes the steps address (B): a run refuses a shorter store.
    store_min: usize,
    /// The ranks the `all_reduce_mean` steps reduce across.
    comm: Arc<dyn Communicator>,
    /// Id-fault slots, by node number (the interpreter's evaluation order).
    faults: Vec<FaultSlot>,
}

impl CompiledStep {
    pub(crate) fn new(
        arena: Arena,
        code: JitCode,
        steps: Vec<Step>,
        copies: Vec<UpdateCopy>,
        store_min: usize,
        threads: usize,
        comm: Arc<dyn Communicator>,
    ) -> CompiledStep {
        let pool = (threads > 1).then(|| Pool::new(threads));
        CompiledStep {
            pool,
            steps,
            _code: code,
            arena,
            copies,
            store_min,
            comm,
            faults: Vec::new(),
        }
    }

    /// Installs the id-fault slots the kernels write (each set to "no
    /// fault"); the run reports them in node order.
    pub(crate) fn with_fault_slots(mut self, mut faults: Vec<FaultSlot>) -> Result<Self, String> {
        faults.sort_by_key(|f| f.num);
        for f in &faults {
            if !self.arena.set_u64(f.off, NO_FAULT) {
                return Err(format!("fault slot at {} outside the arena", f.off));
            }
        }
        self.faults = faults;
        Ok(self)
    }

    /// Runs every step in order against `store` (the variable store's
    /// arena), then the update copies. Performs no allocation.
    pub(crate) fn run(&mut self, store: &mut Arena) -> Result<(), String> {
        self.run_timed(store, None)
    }

    /// Like `run`, adding each step's wall time in nanoseconds to `times`
    /// (one slot per step, plus a last slot for the update copies).
    pub(crate) fn run_timed(
        &mut self,
        store: &mut Arena,
        mut times: Option<&mut [u64]>,
    ) -> Result<(), String> {
        if store.len() < self.store_min {
            return Err(format!(
                "variable store has {} bytes, the program addresses {}",
                store.len(),
                self.store_min
            ));
        }
        let bases = Bases {
            arena: self.arena.base,
            store: store.base,
        };
        let mut t = times.as_ref().map(|_| std::time::Instant::now());
        for (i, s) in self.steps.iter().enumerate() {
            match s {
                Step::Kernel {
                    f, outer, threads, ..
                } => match &self.pool {
                    Some(p) if *threads > 1 => {
                        // SAFETY: (C) the compiler marked this kernel splittable
                        // (threads > 1 only then); both arenas (B: the store is
                        // long enough, checked above) and the code are alive (A, D).
                        unsafe {
                            p.run(
                                Task::Kernel {
                                    f: *f,
                                    outer: *outer,
                                    bases,
                                },
                                *threads,
                            )
                        }
                    }
                    _ => {
                        // SAFETY: (A)-(D): the kernel addresses its plan's
                        // buffers from these bases only, over its whole outer
                        // range, on this thread.
                        unsafe { f(0, *outer as i64, bases.arena, bases.store) }
                    }
                },
                Step::Call {
                    f,
                    bufs,
                    params,
                    threads,
                } => f(&CallArgs {
                    bases,
                    arena_len: self.arena.len,
                    store_len: store.len,
                    bufs,
                    params,
                    threads: *threads,
                    pool: self.pool.as_ref(),
                    comm: &*self.comm,
                })?,
            }
            if let Step::Kernel {
                checks_ids: true, ..
            } = s
            {
                // Between kernels, on this thread: no kernel runs (E).
                take_fault(&mut self.arena, &self.faults)?;
            }
            if let (Some(ts), Some(t0)) = (times.as_deref_mut(), t.as_mut()) {
                let now = std::time::Instant::now();
                if let Some(slot) = ts.get_mut(i) {
                    *slot += (now - *t0).as_nanos() as u64;
                }
                *t0 = now;
            }
        }
        for c in &self.copies {
            let ok = match c.src {
                Base::Arena => store.copy_from(c.dst, &self.arena, c.src_off, c.bytes),
                Base::Store => store.copy_within(c.src_off, c.dst, c.bytes),
            };
            if !ok {
                return Err(format!(
                    "update copy {:?}+{} -> store+{} ({} bytes) out of range",
                    c.src, c.src_off, c.dst, c.bytes
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
}

/// After a kernel that checks ids: the error of the first recorded fault in
/// `faults` (lowest node number, then lowest position), with every slot
/// reset for the next run; `Ok` when none is recorded. No allocation unless
/// a fault is found.
fn take_fault(arena: &mut Arena, faults: &[FaultSlot]) -> Result<(), String> {
    let mut first: Option<(usize, u64)> = None;
    for (i, f) in faults.iter().enumerate() {
        let v = arena
            .u64_at(f.off)
            .ok_or_else(|| format!("fault slot at {} outside the arena", f.off))?;
        if v != NO_FAULT && first.is_none() {
            first = Some((i, v));
        }
    }
    let Some((i, v)) = first else {
        return Ok(());
    };
    for f in faults {
        arena.set_u64(f.off, NO_FAULT);
    }
    let f = &faults[i];
    let (pos, id) = ((v >> 32) as usize, v as u32 as i32);
    Err(format!(
        "{}: {}",
        lossgraph_ir::interp::node_at(f.num, &f.node),
        lossgraph_ir::interp::id_out_of_range(&f.node.op, &f.ids, pos, id, f.rows)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTER: usize = 97;
    static HITS: [AtomicUsize; OUTER] = [const { AtomicUsize::new(0) }; OUTER];

    /// A "kernel" that counts how often each index of its range is visited.
    unsafe extern "C" fn count(lo: i64, hi: i64, _arena: *mut u8, _store: *mut u8) {
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
                    bases: Bases {
                        arena: std::ptr::null_mut(),
                        store: std::ptr::null_mut(),
                    },
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
