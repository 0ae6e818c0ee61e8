//! The JIT engine: compiles a graph (fusion → memory plan → Cranelift) into a
//! [`CompiledStep`] and binds names to buffers.
//!
//! Variables live in a [`VariableStore`] shared by every program compiled
//! against it; compiling registers the graph's variables there (new ones
//! zero-filled). A run copies each feed into its input slot, calls the
//! kernels and external calls (GEMMs) in order with the arena and store
//! bases, and applies `update/<var>` outputs (in place in the store slot
//! when the memory plan proved it safe, else by a copy into the slot after
//! the steps). Outputs are read as views; nothing is allocated per run.

use crate::budget;
use crate::collective::Communicator;
use crate::error::RuntimeError;
use crate::jit::{
    all_reduce_step, conv_step, conv_workspace, gemm_step, pool_step, Arena, CallBuf, CompiledStep,
    FaultSlot, GemmImpl, JitCode, Step, UpdateCopy,
};
use crate::program::Feed;
use crate::sgemm;
use crate::store::VariableStore;
use lossgraph_compiler::fusion::{self, FusionOptions, Plan};
use lossgraph_compiler::lower_clif::nest::{kernel_body, BodyOptions, KernelBody};
use lossgraph_compiler::lower_clif::{lower_nest, Base, BufAddr, LowerOptions};
use lossgraph_compiler::memplan::{plan_memory, Location, MemoryPlan};
use lossgraph_ir::{DType, Graph, NodeId, Op, TensorType};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Small JIT matmuls split across threads only above this multiple of
/// [`JitOptions::split_min_work`] (in multiply-adds).
const SMALL_MATMUL_SPLIT_FACTOR: usize = 8;

/// `BodyOptions::inline_matmul_max` when lossgraph's AVX-512 GEMM is
/// available: it beats the 128-bit register-blocked JIT loops from 16³ up.
/// Measured (`perf_figures -- --ignored matmul`, one thread, best of 7,
/// square n³, JIT loops vs sgemm): 0.07 vs 0.12 µs at n = 8, 0.38 vs 0.30 at
/// 16, 2.8 vs 0.94 at 32, 31 vs 6.8 at 64; whole steps: tiny 9.8 µs with
/// JIT loops up to 16³ vs 18.1 µs up to 64³, mnist 320 vs 357 µs.
const INLINE_MATMUL_MAX_WITH_SGEMM: usize = 16 * 16 * 16;

/// Options for JIT compilation.
#[derive(Clone, Copy, Debug)]
pub struct JitOptions {
    pub fusion: FusionOptions,
    /// Kernel body choices (inline vs gemm-crate matmuls).
    pub body: BodyOptions,
    pub simd: bool,
    /// Threads for large kernels and GEMMs (1 = single-threaded).
    pub threads: usize,
    /// Minimum elements a kernel must process before it is split across threads.
    pub split_min_work: usize,
    /// Minimum `m·n·k` before a GEMM uses more than one thread.
    pub gemm_min_flops: usize,
    /// The GEMM routine for matmuls above `body.inline_matmul_max`
    /// (`Lossgraph` falls back to `Crate` on hosts without AVX-512).
    pub gemm: GemmImpl,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions {
            fusion: FusionOptions {
                conv_calls: cfg!(target_arch = "x86_64") && sgemm::available(),
                // Measured on `lossgraph bench cnn` (release, same binary,
                // `--pool-calls on|off` alternated): see benches/README.md.
                pool_calls: cfg!(target_arch = "x86_64"),
                ..FusionOptions::default()
            },
            body: BodyOptions {
                inline_matmul_max: if sgemm::available() {
                    INLINE_MATMUL_MAX_WITH_SGEMM
                } else {
                    BodyOptions::default().inline_matmul_max
                },
            },
            simd: true,
            threads: std::thread::available_parallelism()
                .map(|n| n.get().min(2))
                .unwrap_or(1),
            split_min_work: 1 << 15,
            gemm_min_flops: 1 << 21,
            gemm: GemmImpl::Lossgraph,
        }
    }
}

/// Compile-time statistics.
#[derive(Clone, Debug, Default)]
pub struct CompileStats {
    pub kernels: usize,
    pub functions: usize,
    pub gemms: usize,
    /// Convolution calls (passes run without an im2col buffer).
    pub convs: usize,
    /// Pooling calls (passes run on the image, without window buffers).
    pub pools: usize,
    pub arena_bytes: usize,
    pub scratch_bytes: usize,
    pub in_place_updates: usize,
    pub copied_updates: usize,
    pub vectorized: usize,
    pub split: usize,
    pub plan_ms: f64,
    pub codegen_ms: f64,
    pub jit_ms: f64,
}

/// A named buffer: an input (always in the arena) or an output.
#[derive(Clone, Debug)]
struct Slot {
    at: BufAddr,
    ty: TensorType,
}

/// A graph compiled to native code, with its arena; its variables are in
/// the store of id `store_id`.
pub(crate) struct JitProgram {
    step: CompiledStep,
    store_id: u64,
    inputs: Vec<(String, Slot)>,
    outputs: HashMap<String, Slot>,
    plan: Plan,
    body: BodyOptions,
    stats: CompileStats,
    /// One label per step (kernel index, kind, layer, role, type, threads).
    labels: Vec<String>,
}

fn cerr(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Compile(e.to_string())
}

/// Shape and element strides of a GEMM call's row-major operands.
fn gemm_dims(gc: &lossgraph_compiler::lower_clif::nest::GemmCall) -> sgemm::Dims {
    sgemm::Dims::row_major(gc.m, gc.n, gc.k, gc.trans_a, gc.trans_b)
}

/// Where node `n`'s storage is: its arena offset, or its variable's store
/// offset (`var_off`, indexed by param node).
fn addr_of(
    mem: &MemoryPlan,
    var_off: &[usize],
    plan: &Plan,
    n: NodeId,
) -> Result<BufAddr, RuntimeError> {
    let s = plan.storage_of(n);
    match mem.location[s.index()] {
        Some(Location::Arena(offset)) => Ok(BufAddr {
            base: Base::Arena,
            offset,
        }),
        Some(Location::Variable(p)) => Ok(BufAddr {
            base: Base::Store,
            offset: var_off[p.index()],
        }),
        None => {
            let node = plan.graph.node(n);
            Err(RuntimeError::Compile(format!(
                "node %{} ({}) has no planned storage",
                n.index(),
                node.op.name()
            )))
        }
    }
}

/// The arena offset of node `n` (inputs and constants are always there).
fn arena_off(
    mem: &MemoryPlan,
    var_off: &[usize],
    plan: &Plan,
    n: NodeId,
) -> Result<usize, RuntimeError> {
    match addr_of(mem, var_off, plan, n)? {
        BufAddr {
            base: Base::Arena,
            offset,
        } => Ok(offset),
        BufAddr { base, .. } => Err(RuntimeError::Compile(format!(
            "node %{} planned in the {base:?} region, expected the arena",
            n.index()
        ))),
    }
}

/// Writes `n` copies of `value` at byte offset `off`, a block at a time
/// (no buffer of the constant's size); false if out of range.
fn fill_splat<T: Copy>(arena: &mut Arena, off: usize, value: T, n: usize) -> bool {
    const BLOCK: usize = 1024;
    let block = [value; BLOCK];
    (0..n).step_by(BLOCK).all(|start| {
        let len = BLOCK.min(n - start);
        arena.write(off + start * 4, &block[..len])
    })
}

/// A GEMM operand or result as an external-call buffer (its whole storage).
fn call_buf(
    mem: &MemoryPlan,
    var_off: &[usize],
    plan: &Plan,
    n: NodeId,
) -> Result<CallBuf, RuntimeError> {
    let a = addr_of(mem, var_off, plan, n)?;
    Ok(CallBuf {
        base: a.base,
        off: a.offset,
        bytes: plan.graph.node(plan.storage_of(n)).ty.numel() * 4,
    })
}

/// Refuses a program whose arena (`arena_bytes`) plus the variables of
/// `store` and the ones it would register there exceed the memory budget
/// ([`crate::budget`]); the error names the largest new variable and the
/// largest value of the graph, with their shapes and bytes.
fn check_budget(
    graph: &Graph,
    store: &VariableStore,
    arena_bytes: usize,
) -> Result<(), RuntimeError> {
    let budget = budget::memory_budget().map_err(RuntimeError::Budget)?;
    let bytes = |n: NodeId| graph.node(n).ty.numel() as u64 * 4;
    let new_vars: Vec<(String, NodeId)> = graph
        .params()
        .into_iter()
        .filter(|(name, _)| !store.contains(name))
        .collect();
    let new_bytes: u64 = new_vars.iter().map(|(_, p)| bytes(*p)).sum();
    let total = (store.bytes() as u64)
        .saturating_add(new_bytes)
        .saturating_add(arena_bytes as u64);
    if total <= budget {
        return Ok(());
    }
    let describe = |n: NodeId| {
        let node = graph.node(n);
        let scope = if node.scope.is_empty() {
            String::new()
        } else {
            format!(" @{}", node.scope)
        };
        format!(
            "%{} {}{scope} {} ({})",
            n.index(),
            node.op.name(),
            node.ty,
            budget::fmt_bytes(bytes(n))
        )
    };
    let largest_var = new_vars
        .iter()
        .max_by_key(|(_, p)| bytes(*p))
        .map_or(String::new(), |(name, p)| {
            format!("; largest new variable '{name}': {}", describe(*p))
        });
    let largest_value = (0..graph.len())
        .map(NodeId::new)
        .filter(|&n| !matches!(graph.node(n).op, Op::Param { .. }))
        .max_by_key(|&n| bytes(n))
        .map_or(String::new(), |n| {
            format!("; largest value {}", describe(n))
        });
    Err(RuntimeError::Budget(format!(
        "graph '{}' needs {}: variables {} already stored + {} new (optimiser slots, state), arena {}{largest_var}{largest_value}; that exceeds the memory budget of {} (set {} to change it)",
        graph.name,
        budget::fmt_bytes(total),
        budget::fmt_bytes(store.bytes() as u64),
        budget::fmt_bytes(new_bytes),
        budget::fmt_bytes(arena_bytes as u64),
        budget::fmt_bytes(budget),
        budget::BUDGET_ENV
    )))
}

impl JitProgram {
    /// Compiles a verified graph whose variables live in `store` (registered
    /// there now if new) and whose `all_reduce_mean` nodes reduce over `comm`.
    pub(crate) fn compile(
        graph: &Graph,
        opts: &JitOptions,
        store: &mut VariableStore,
        comm: Arc<dyn Communicator>,
    ) -> Result<JitProgram, RuntimeError> {
        let t0 = Instant::now();
        // The convolution routines need AVX-512: elsewhere the patterns stay im2col.
        let fusion_opts = FusionOptions {
            conv_calls: opts.fusion.conv_calls
                && cfg!(target_arch = "x86_64")
                && sgemm::available(),
            // The pooling routines are x86-64 builds only (with the convolution's).
            pool_calls: opts.fusion.pool_calls && cfg!(target_arch = "x86_64"),
            ..opts.fusion
        };
        let plan = fusion::plan(graph, &fusion_opts).map_err(cerr)?;
        let bodies: Vec<KernelBody> = (0..plan.kernels.len())
            .map(|k| kernel_body(&plan, k, &opts.body))
            .collect::<Result<_, _>>()
            .map_err(cerr)?;
        let mem = plan_memory(&plan, &bodies).map_err(cerr)?;
        let t1 = Instant::now();
        let threads = opts.threads.max(1);
        let gemm_imp = if opts.gemm == GemmImpl::Lossgraph && sgemm::available() {
            GemmImpl::Lossgraph
        } else {
            GemmImpl::Crate
        };
        // GEMM and convolution workspace after every planned buffer: one
        // slice per thread sized for the largest call (calls run one at a
        // time), or a region shared by the parts (the filter gradient's
        // chunk sums), whichever is larger.
        let (mut ws_stride, mut ws_shared) = (0usize, 0usize);
        for b in &bodies {
            let (part, shared) = match b {
                KernelBody::Gemm(gc) if gemm_imp == GemmImpl::Lossgraph => {
                    let d = gemm_dims(gc);
                    (
                        if d.supported() {
                            d.workspace_floats()
                        } else {
                            0
                        },
                        0,
                    )
                }
                KernelBody::Conv(cc) => conv_workspace(cc).map_err(cerr)?,
                KernelBody::Gemm(_)
                | KernelBody::SmallMatmul(_)
                | KernelBody::Nests(_)
                | KernelBody::Pool(_)
                | KernelBody::AllReduce { .. } => (0, 0),
            };
            ws_stride = ws_stride.max(part.div_ceil(16) * 16);
            ws_shared = ws_shared.max(shared);
        }
        let ws_off = mem.size.div_ceil(64) * 64;
        let overflow = || {
            RuntimeError::Budget(format!(
                "graph '{}': the workspace size overflows",
                plan.graph.name
            ))
        };
        let ws_bytes = ws_stride
            .checked_mul(threads)
            .map(|w| w.max(ws_shared))
            .and_then(|w| w.checked_mul(4))
            .ok_or_else(overflow)?;
        let arena_bytes = ws_off.checked_add(ws_bytes).ok_or_else(overflow)?;
        check_budget(&plan.graph, store, arena_bytes)?;
        let mut arena = Arena::new(arena_bytes).map_err(RuntimeError::Compile)?;
        let mut var_off = vec![0usize; plan.graph.len()];
        for (name, p) in plan.graph.params() {
            var_off[p.index()] = store.register(&name, &plan.graph.node(p).ty)?;
        }
        let addr = |n: NodeId| {
            addr_of(&mem, &var_off, &plan, n)
                .map_err(|e| lossgraph_compiler::fusion::CodegenError(e.to_string()))
        };
        let fault = |n: NodeId| {
            mem.faults
                .iter()
                .find(|f| f.0 == n)
                .map(|f| BufAddr {
                    base: Base::Arena,
                    offset: f.1,
                })
                .ok_or_else(|| {
                    lossgraph_compiler::fusion::CodegenError(format!(
                        "node %{} has no fault slot",
                        n.index()
                    ))
                })
        };
        let mut lopts = LowerOptions::host().map_err(cerr)?;
        lopts.simd = opts.simd;
        let mut funcs = Vec::new();
        enum Pending {
            Kernel {
                outer: usize,
                threads: usize,
                checks_ids: bool,
            },
            Call(Step),
        }
        let mut pending = Vec::new();
        let mut stats = CompileStats {
            kernels: plan.kernels.len(),
            ..Default::default()
        };
        // One label per step, for profiles: kernel, kind, owning layer, role,
        // stored type and thread count.
        let mut labels = Vec::new();
        let label = |k: usize, threads: usize| {
            let kernel = &plan.kernels[k];
            let node = plan.graph.node(kernel.roots[0]);
            format!(
                "k{k} {} @{} {} {} x{threads}",
                kernel.kind.name(),
                node.scope,
                node.role,
                node.ty
            )
        };
        for (k, body) in bodies.iter().enumerate() {
            match body {
                KernelBody::Nests(nests) => {
                    for n in nests {
                        let l = lower_nest(n, &addr, &fault, &lopts).map_err(cerr)?;
                        let mut checked = Vec::new();
                        n.id_checks(&mut checked);
                        let t = if threads > 1
                            && l.splittable
                            && l.work >= opts.split_min_work
                            && l.outer >= threads
                        {
                            stats.split += 1;
                            threads
                        } else {
                            1
                        };
                        stats.vectorized += l.vectorized as usize;
                        labels.push(label(k, t));
                        pending.push(Pending::Kernel {
                            outer: l.outer,
                            threads: t,
                            checks_ids: !checked.is_empty(),
                        });
                        funcs.push(l.func);
                    }
                }
                KernelBody::SmallMatmul(gc) => {
                    let l = lossgraph_compiler::lower_clif::matmul::lower_matmul(
                        gc, &addr, &lopts, "matmul",
                    )
                    .map_err(cerr)?;
                    // A register-blocked matmul of `m·n·k` multiply-adds does several
                    // times the work per "element" of an elementwise loop, but waking the
                    // pool costs the same: measured on `tiny` (32³ matmuls), splitting at
                    // `split_min_work` ran 16–25k steps/s against 33–35k unsplit.
                    let t = if threads > 1
                        && l.work
                            >= opts
                                .split_min_work
                                .saturating_mul(SMALL_MATMUL_SPLIT_FACTOR)
                        && l.outer >= threads
                    {
                        stats.split += 1;
                        threads
                    } else {
                        1
                    };
                    labels.push(label(k, t));
                    pending.push(Pending::Kernel {
                        outer: l.outer,
                        threads: t,
                        checks_ids: false,
                    });
                    funcs.push(l.func);
                }
                KernelBody::AllReduce { out, x, numel } => {
                    labels.push(label(k, 1));
                    let buf = |n| call_buf(&mem, &var_off, &plan, n);
                    pending.push(Pending::Call(
                        all_reduce_step(buf(*out)?, buf(*x)?, *numel).map_err(cerr)?,
                    ));
                }
                KernelBody::Gemm(gc) => {
                    let d = gemm_dims(gc);
                    stats.gemms += 1;
                    let t = if d.m * d.n * d.k >= opts.gemm_min_flops {
                        threads
                    } else {
                        1
                    };
                    labels.push(label(k, t));
                    // Strides sgemm cannot gather go to the crate.
                    let imp = if d.supported() {
                        gemm_imp
                    } else {
                        GemmImpl::Crate
                    };
                    let ws = CallBuf {
                        base: Base::Arena,
                        off: ws_off,
                        bytes: ws_bytes,
                    };
                    let buf = |n| call_buf(&mem, &var_off, &plan, n);
                    pending.push(Pending::Call(
                        gemm_step(
                            imp,
                            gc.batch,
                            (gc.m, gc.n, gc.k),
                            (gc.trans_a, gc.trans_b),
                            [buf(gc.out)?, buf(gc.a)?, buf(gc.b)?, ws],
                            ws_stride,
                            t,
                        )
                        .map_err(cerr)?,
                    ));
                }
                KernelBody::Conv(cc) => {
                    stats.convs += 1;
                    let t = if cc.macs() >= opts.gemm_min_flops {
                        threads
                    } else {
                        1
                    };
                    labels.push(label(k, t));
                    let ws = CallBuf {
                        base: Base::Arena,
                        off: ws_off,
                        bytes: ws_bytes,
                    };
                    let buf = |n| call_buf(&mem, &var_off, &plan, n);
                    let bufs = [buf(cc.out)?, buf(cc.operands[0])?, buf(cc.operands[1])?, ws];
                    pending.push(Pending::Call(
                        conv_step(cc, bufs, ws_stride, t).map_err(cerr)?,
                    ));
                }
                KernelBody::Pool(pc) => {
                    stats.pools += 1;
                    // Split like a loop nest: by the elements touched.
                    let t = if pc.image_len() >= opts.split_min_work {
                        threads
                    } else {
                        1
                    };
                    labels.push(label(k, t));
                    let mut bufs = vec![call_buf(&mem, &var_off, &plan, pc.out)?];
                    for &o in &pc.operands {
                        bufs.push(call_buf(&mem, &var_off, &plan, o)?);
                    }
                    pending.push(Pending::Call(pool_step(pc, bufs, t).map_err(cerr)?));
                }
            }
        }
        stats.functions = funcs.len();
        let t2 = Instant::now();
        let (code, fns) = JitCode::compile(funcs, threads).map_err(RuntimeError::Compile)?;
        let t3 = Instant::now();
        let mut fns = fns.into_iter();
        let mut steps = Vec::with_capacity(pending.len());
        for p in pending {
            steps.push(match p {
                Pending::Kernel {
                    outer,
                    threads,
                    checks_ids,
                } => Step::Kernel {
                    f: fns
                        .next()
                        .ok_or_else(|| cerr("fewer compiled functions than kernels"))?,
                    outer,
                    threads,
                    checks_ids,
                },
                Pending::Call(s) => s,
            });
        }
        // Constants.
        let g = &plan.graph;
        for id in g.node_ids() {
            if let Op::Const(lit) = &g.node(id).op {
                if mem.location[id.index()].is_none() {
                    continue; // read only as an immediate
                }
                let off = arena_off(&mem, &var_off, &plan, id)?;
                let n = g.node(id).ty.numel();
                let ok = match lit {
                    lossgraph_ir::Literal::F32(v) if v.len() == 1 => {
                        fill_splat(&mut arena, off, v[0], n)
                    }
                    lossgraph_ir::Literal::F32(v) => arena.write(off, v),
                    lossgraph_ir::Literal::I32(v) if v.len() == 1 => {
                        fill_splat(&mut arena, off, v[0], n)
                    }
                    lossgraph_ir::Literal::I32(v) => arena.write(off, v),
                };
                if !ok {
                    return Err(cerr(format!(
                        "constant %{} does not fit its buffer",
                        id.index()
                    )));
                }
            }
        }
        let mut inputs = Vec::new();
        for (name, id) in g.inputs() {
            let at = BufAddr {
                base: Base::Arena,
                offset: arena_off(&mem, &var_off, &plan, id)?,
            };
            inputs.push((
                name,
                Slot {
                    at,
                    ty: g.node(id).ty.clone(),
                },
            ));
        }
        let mut outputs = HashMap::new();
        for (name, id) in g.outputs() {
            let slot = Slot {
                at: addr_of(&mem, &var_off, &plan, *id)?,
                ty: g.node(*id).ty.clone(),
            };
            outputs.insert(name.clone(), slot);
        }
        let mut copies = Vec::new();
        for &(p, src) in &mem.copies {
            let from = addr_of(&mem, &var_off, &plan, src)?;
            copies.push(UpdateCopy {
                src: from.base,
                src_off: from.offset,
                dst: var_off[p.index()],
                bytes: g.node(p).ty.numel() * 4,
            });
        }
        stats.arena_bytes = arena_bytes;
        stats.scratch_bytes = mem.scratch;
        stats.in_place_updates = mem.in_place.len();
        stats.copied_updates = mem.copies.len();
        stats.plan_ms = (t1 - t0).as_secs_f64() * 1e3;
        stats.codegen_ms = (t2 - t1).as_secs_f64() * 1e3;
        stats.jit_ms = (t3 - t2).as_secs_f64() * 1e3;
        // The fault slots, named as the text format numbers the program's
        // graph (the compacted plan graph keeps those numbers).
        let mut faults = Vec::with_capacity(mem.faults.len());
        for &(n, off) in &mem.faults {
            let ops = g.operands(n);
            let (ids, rows) = match g.node(n).op {
                Op::Gather => (ops[1], g.node(ops[0]).ty.shape[0]),
                Op::ScatterAdd { rows } => (ops[0], rows),
                ref other => {
                    return Err(cerr(format!(
                        "node %{} ({}) has an id-fault slot but checks no ids",
                        n.index(),
                        other.name()
                    )))
                }
            };
            faults.push(FaultSlot {
                off,
                num: n.index(),
                node: g.node(n).clone(),
                ids: g.node(ids).ty.clone(),
                rows,
            });
        }
        let step = CompiledStep::new(arena, code, steps, copies, store.bytes(), threads, comm)
            .with_fault_slots(faults)
            .map_err(RuntimeError::Compile)?;
        Ok(JitProgram {
            step,
            store_id: store.id(),
            inputs,
            outputs,
            plan,
            body: opts.body,
            stats,
            labels,
        })
    }

    pub(crate) fn stats(&self) -> &CompileStats {
        &self.stats
    }

    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    pub(crate) fn clif_text(&self) -> Result<String, RuntimeError> {
        lossgraph_compiler::lower_clif::clif_text(&self.plan, &self.body).map_err(cerr)
    }

    /// The store this program's variables live in.
    pub(crate) fn store_id(&self) -> u64 {
        self.store_id
    }

    /// Output `name` of the last run (`store`: the program's variable store).
    pub(crate) fn output<'a>(
        &'a self,
        store: &'a VariableStore,
        name: &str,
    ) -> Option<crate::program::TensorRef<'a>> {
        let s = self.outputs.get(name)?;
        let mem = match s.at.base {
            Base::Arena => &self.step.arena,
            Base::Store => store.arena(),
        };
        let n = s.ty.numel();
        let data = match s.ty.dtype {
            DType::F32 => Feed::F32(mem.f32s(s.at.offset, n)?),
            DType::I32 => Feed::I32(mem.i32s(s.at.offset, n)?),
        };
        Some(crate::program::TensorRef { ty: &s.ty, data })
    }

    /// Checks that `store` is the one this program was compiled against.
    fn check_store(&self, store: &VariableStore) -> Result<(), RuntimeError> {
        if store.id() == self.store_id {
            Ok(())
        } else {
            Err(RuntimeError::Exec(format!(
                "program compiled against variable store {} run with store {}",
                self.store_id,
                store.id()
            )))
        }
    }

    /// Runs `steps` times and returns, for every kernel/GEMM (labelled
    /// `#i kI kind @layer role type xThreads`), the update copies and the
    /// feed copies, the minimum wall time over the runs in nanoseconds
    /// (robust to preemption).
    pub(crate) fn profile(
        &mut self,
        store: &mut VariableStore,
        feeds: &[(&str, Feed<'_>)],
        steps: usize,
    ) -> Result<Vec<(String, f64)>, RuntimeError> {
        self.check_store(store)?;
        let n_steps = self.labels.len();
        let mut times = vec![0u64; n_steps + 2];
        let mut best = vec![u64::MAX; n_steps + 2];
        for _ in 0..steps {
            times.iter_mut().for_each(|t| *t = 0);
            let t0 = Instant::now();
            self.bind(feeds)?;
            let n = times.len();
            times[n - 1] = t0.elapsed().as_nanos() as u64;
            self.step
                .run_timed(store.arena_mut(), Some(&mut times[..n - 1]))
                .map_err(RuntimeError::Exec)?;
            for (b, t) in best.iter_mut().zip(&times) {
                *b = (*b).min(*t);
            }
        }
        Ok(self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| format!("#{i} {l}"))
            .chain(["update copies".to_string(), "feed copies".to_string()])
            .zip(best)
            .map(|(l, t)| (l, t as f64))
            .collect())
    }

    /// Runs once against `store` (the store it was compiled against): binds
    /// the feeds, runs the steps, applies the updates.
    pub(crate) fn run(
        &mut self,
        store: &mut VariableStore,
        feeds: &[(&str, Feed<'_>)],
    ) -> Result<(), RuntimeError> {
        self.check_store(store)?;
        self.bind(feeds)?;
        self.step.run(store.arena_mut()).map_err(RuntimeError::Exec)
    }

    /// Copies each feed into its input slot, checking its type and length.
    fn bind(&mut self, feeds: &[(&str, Feed<'_>)]) -> Result<(), RuntimeError> {
        for (name, slot) in &self.inputs {
            let feed = feeds
                .iter()
                .find(|f| f.0 == name)
                .ok_or_else(|| RuntimeError::Binding {
                    name: name.clone(),
                    message: format!("missing feed for input of type {}", slot.ty),
                })?;
            let ok = match feed.1 {
                Feed::F32(v) if slot.ty.dtype == DType::F32 && v.len() == slot.ty.numel() => {
                    self.step.arena.write(slot.at.offset, v)
                }
                Feed::I32(v) if slot.ty.dtype == DType::I32 && v.len() == slot.ty.numel() => {
                    self.step.arena.write(slot.at.offset, v)
                }
                _ => false,
            };
            if !ok {
                return Err(RuntimeError::Binding {
                    name: name.clone(),
                    message: format!("feed does not match input type {}", slot.ty),
                });
            }
        }
        Ok(())
    }
}
