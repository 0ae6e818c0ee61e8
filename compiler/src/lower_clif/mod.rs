//! Lowering loop nests to Cranelift IR.
//!
//! Each [`Nest`] becomes one function `fn(lo, hi, arena, store)` (see
//! [`kernel_signature`]) that runs the outermost loop over `lo..hi` (so a
//! thread pool can split it). Buffers are addressed as [`BufAddr`]: a byte
//! offset, baked in as a constant, from one of the two base pointers passed
//! at every call (the program's arena, or the variable store shared by every
//! program of a model), so no address is compiled in.
//!
//! Before emission the nest's dimensions are canonicalised: extent-1
//! dimensions are dropped and adjacent dimensions merged whenever every
//! counter walks them contiguously, so a plain elementwise kernel is one flat
//! loop. All counters are strength-reduced: each loop level keeps one
//! pointer per counter and adds a constant per iteration.
//!
//! The innermost loop runs on `f32x4` vectors (with a scalar tail) when every
//! value is `f32`, every load has unit or zero innermost stride and every
//! store unit stride; a sum or max over the innermost dimension keeps a vector
//! accumulator reduced once per row (a fixed order, so results are
//! deterministic). `a + b*c` becomes `fma` when the host has FMA.
// No `_ =>` over op kinds here or in the submodules: a new op must get its
// CLIF emission, cost and vectorisation answer written, never defaulted. The
// lint covers every enum (Expr, Mode, NodeClass too); those matches are
// written out as well, which keeps them honest when a variant is added.
#![deny(clippy::wildcard_enum_match_arm)]

pub mod matmul;
pub mod nest;

use crate::fusion::CodegenError;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::Ieee32;
use cranelift_codegen::ir::AtomicRmwOp;
use cranelift_codegen::ir::{
    types, AbiParam, Endianness, Function, InstBuilder, MemFlagsData, Signature, Type,
    UserFuncName, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use lossgraph_ir::{BinaryOp, DType, NodeId, Op, UnaryOp};
use nest::{Counter, Expr, IdFault, Mode, Nest, NestRoot};

/// The base pointer a buffer address is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The program's own arena (inputs, constants, scratch): parameter 2.
    Arena,
    /// The variable store shared by the model's programs: parameter 3.
    Store,
}

/// A buffer's address: `offset` bytes after the call's `base` pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufAddr {
    pub base: Base,
    pub offset: usize,
}

/// The signature of every generated function: `(lo: i64, hi: i64, arena:
/// i64, store: i64) -> ()` in `call_conv`, the two last being base addresses.
pub fn kernel_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..4 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig
}

/// The address of `a` as a value: the entry block's base parameter plus
/// the offset and `extra` bytes. `params` are the entry block's parameters.
fn buf_addr(b: &mut FunctionBuilder, params: &[Value], a: BufAddr, extra: i64) -> Value {
    let base = match a.base {
        Base::Arena => params[2],
        Base::Store => params[3],
    };
    b.ins().iadd_imm_s(base, a.offset as i64 + extra)
}

/// Code generation options.
#[derive(Clone, Copy)]
pub struct LowerOptions {
    /// Use `f32x4` inner loops where possible.
    pub simd: bool,
    /// Contract `a + b*c` into `fma` (only when the host has FMA).
    pub fma: bool,
    /// Calling convention of the generated functions (the host's `extern "C"`).
    pub call_conv: CallConv,
    /// Pointer width and ABI facts of the target.
    pub frontend: TargetFrontendConfig,
}

impl LowerOptions {
    /// Options for the running host; fails when Cranelift does not support it.
    pub fn host() -> Result<LowerOptions, CodegenError> {
        #[cfg(target_arch = "x86_64")]
        let fma = std::arch::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let fma = cfg!(target_arch = "aarch64");
        let isa = cranelift_native::builder()
            .map_err(|e| CodegenError(format!("host not supported by Cranelift: {e}")))?
            .finish(cranelift_codegen::settings::Flags::new(
                cranelift_codegen::settings::builder(),
            ))
            .map_err(|e| CodegenError(format!("host ISA: {e}")))?;
        let frontend = isa.frontend_config();
        Ok(LowerOptions {
            simd: true,
            fma,
            call_conv: frontend.default_call_conv,
            frontend,
        })
    }
}

/// A nest after canonicalisation: loop extents and per-counter strides per loop.
#[derive(Clone, Debug)]
pub struct Canon {
    pub dims: Vec<usize>,
    /// `strides[c][d]`: elements counter `c` advances per step of loop `d`.
    pub strides: Vec<Vec<i64>>,
}

/// Drops extent-1 loops and merges contiguous adjacent loops.
pub fn canonicalize(n: &Nest) -> Canon {
    let nd = n.dims.len();
    let mut dims: Vec<usize> = Vec::new();
    let mut strides: Vec<Vec<i64>> = vec![Vec::new(); n.counters.len()];
    for d in 0..nd {
        let last = d + 1 == nd;
        if n.dims[d] == 1 && !(last && n.keep_last) {
            continue;
        }
        dims.push(n.dims[d]);
        for (c, s) in n.counters.iter().zip(strides.iter_mut()) {
            s.push(c.strides[d]);
        }
    }
    // Merge loop i into loop i+1 when every counter satisfies s[i] == s[i+1]*ext[i+1].
    let mut i = 0;
    while i + 1 < dims.len() {
        let protected = n.keep_last && i + 2 == dims.len();
        let ok = !protected
            && strides
                .iter()
                .all(|s| s[i] == s[i + 1] * dims[i + 1] as i64);
        if ok {
            dims[i + 1] *= dims[i];
            dims.remove(i);
            for s in &mut strides {
                s.remove(i);
            }
        } else {
            i += 1;
        }
    }
    if dims.is_empty() {
        dims.push(1);
        for s in &mut strides {
            s.push(0);
        }
    }
    Canon { dims, strides }
}

/// A compiled-ready nest: its function and how to call it.
pub struct LoweredNest {
    pub func: Function,
    /// Extent of the outermost loop (call with `lo..hi` inside `0..outer`).
    pub outer: usize,
    /// True when disjoint `lo..hi` ranges may run concurrently (no two outer
    /// iterations write the same element).
    pub splittable: bool,
    /// Estimated cost for the threading cost model: elements processed
    /// times [`element_cost`] (about one unit per simple vector-lane op).
    pub work: usize,
    /// Whether the inner loop was vectorised.
    pub vectorized: bool,
}

/// Lowers one nest. `addr(node)` is the address of a stored node's buffer,
/// `fault(node)` that of the id-fault slot of a node whose ids the nest
/// checks (see [`nest::IdFault`]).
pub fn lower_nest(
    nest: &Nest,
    addr: &dyn Fn(NodeId) -> Result<BufAddr, CodegenError>,
    fault: &dyn Fn(NodeId) -> Result<BufAddr, CodegenError>,
    opts: &LowerOptions,
) -> Result<LoweredNest, CodegenError> {
    let canon = canonicalize(nest);
    let nd = canon.dims.len();
    let inner = nd - 1;
    let vectorized = opts.simd && vectorizable(nest, &canon);
    let splittable = !nest.serial
        && nest
            .roots
            .iter()
            .all(|r| canon.strides[r.dst][0] != 0 && r.row.is_none())
        && !(nest.roots.iter().any(|r| r.mode == Mode::ArgMax) && nd == 1);

    let sig = kernel_signature(opts.call_conv);
    let mut func = Function::with_name_signature(UserFuncName::testcase(&nest.label), sig);
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (lo, hi) = (params[0], params[1]);
        // Level-0 counter values: base + lo*stride0 (bytes for storage, elements otherwise).
        let mut start = Vec::with_capacity(nest.counters.len());
        for (ci, c) in nest.counters.iter().enumerate() {
            let scale = if c.storage.is_some() { 4 } else { 1 };
            let base_v = match c.storage {
                Some(s) => buf_addr(&mut b, &params, addr(s)?, c.offset * 4),
                None => b.ins().iconst(types::I64, c.offset),
            };
            let s0 = canon.strides[ci][0] * scale;
            let v = if s0 == 0 {
                base_v
            } else {
                let off = b.ins().imul_imm_s(lo, s0);
                b.ins().iadd(base_v, off)
            };
            start.push(v);
        }
        // Fault slot addresses, computed once in the entry block.
        let mut checked = Vec::new();
        nest.id_checks(&mut checked);
        let mut fault_slots = Vec::with_capacity(checked.len());
        for n in checked {
            fault_slots.push((n, buf_addr(&mut b, &params, fault(n)?, 0)));
        }
        let mut em = Emitter {
            nest,
            canon: &canon,
            opts,
            vectorized,
            uses: use_counts(nest),
            fault_slots,
        };
        em.level(&mut b, 0, lo, hi, &start, inner)
            .map_err(|e| nest_error(nest, &e.0))?;
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(opts.frontend);
    }
    let work = canon.dims.iter().product::<usize>() * element_cost(nest);
    Ok(LoweredNest {
        func,
        outer: canon.dims[0],
        splittable,
        work,
        vectorized,
    })
}

/// An emission error in `nest`, naming the nest and the nodes it stores
/// (emission sees expressions, not nodes; the nest's roots locate them).
fn nest_error(nest: &Nest, reason: &str) -> CodegenError {
    let roots: Vec<String> = nest
        .roots
        .iter()
        .filter_map(|r| nest.counters[r.dst].storage)
        .map(|n| format!("%{}", n.index()))
        .collect();
    CodegenError(format!(
        "nest {} storing {}: {reason}",
        nest.label,
        roots.join(", ")
    ))
}

/// Relative cost of one element of `nest`: 1 for loads, stores and simple
/// arithmetic, plus the op table's [`lossgraph_ir::op::Cost::weight`] of
/// every op evaluated (16 per inline transcendental, 4 per division, square
/// root, reciprocal or random draw). Fusion reads the same cost classes.
pub fn element_cost(nest: &Nest) -> usize {
    1 + nest
        .exprs
        .iter()
        .map(|e| match *e {
            Expr::Unary(u, ..) => u.row().cost.weight(),
            Expr::Binary(op, ..) => op.row().cost.weight(),
            Expr::Select(..) => Op::Select.cost().weight(),
            Expr::Cast { .. } => Op::Cast.cost().weight(),
            Expr::OneHot { .. } => Op::OneHot { depth: 0 }.cost().weight(),
            Expr::Random { seed, .. } => Op::RandomUniform { seed }.cost().weight(),
            Expr::RandomNormal { seed, .. } => Op::RandomNormal { seed }.cost().weight(),
            Expr::Gather { .. } => Op::Gather.cost().weight(),
            Expr::Load { .. } | Expr::ImmF(_) | Expr::ImmI(_) => 0,
        })
        .sum::<usize>()
}

fn use_counts(n: &Nest) -> Vec<usize> {
    let mut u = vec![0usize; n.exprs.len()];
    for e in &n.exprs {
        match *e {
            Expr::Unary(_, _, a) | Expr::Cast { e: a, .. } => u[a] += 1,
            Expr::Binary(_, _, a, b) => {
                u[a] += 1;
                u[b] += 1
            }
            Expr::Select(m, a, b, _) => {
                u[m] += 1;
                u[a] += 1;
                u[b] += 1
            }
            Expr::OneHot { label, .. } => u[label] += 1,
            Expr::Random { step, .. } | Expr::RandomNormal { step, .. } => u[step] += 1,
            Expr::Gather { id, .. } => u[id] += 1,
            Expr::Load { .. } | Expr::ImmF(_) | Expr::ImmI(_) => {}
        }
    }
    for r in &n.roots {
        u[r.value] += 1;
        if let Some(row) = r.row {
            u[row.id] += 1;
        }
    }
    u
}

fn vectorizable(n: &Nest, c: &Canon) -> bool {
    let inner = c.dims.len() - 1;
    if c.dims[inner] < 4 {
        return false;
    }
    let exprs_ok = n.exprs.iter().all(|e| match e {
        Expr::Load { counter, dtype } => {
            *dtype == DType::F32 && matches!(c.strides[*counter][inner], 0 | 1)
        }
        Expr::ImmF(_) => true,
        Expr::Unary(_, d, _) | Expr::Binary(_, d, _, _) | Expr::Select(_, _, _, d) => {
            *d == DType::F32
        }
        Expr::ImmI(_)
        | Expr::Cast { .. }
        | Expr::OneHot { .. }
        | Expr::Random { .. }
        | Expr::RandomNormal { .. }
        | Expr::Gather { .. } => false,
    });
    let roots_ok = n.roots.iter().all(|r| {
        r.dtype == DType::F32
            && r.row.is_none()
            && match r.mode {
                Mode::Store => c.strides[r.dst][inner] == 1,
                Mode::Sum | Mode::Max => matches!(c.strides[r.dst][inner], 0 | 1),
                Mode::ArgMax => false,
            }
    });
    exprs_ok && roots_ok
}

struct Emitter<'a> {
    nest: &'a Nest,
    canon: &'a Canon,
    opts: &'a LowerOptions,
    vectorized: bool,
    uses: Vec<usize>,
    /// The fault slot address of every node whose ids the nest checks.
    fault_slots: Vec<(NodeId, Value)>,
}

pub(crate) fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

fn bitflags() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// Moves every counter `vars[c]` on by `lanes` steps of `incs[c]`.
fn advance(b: &mut FunctionBuilder, vars: &[Variable], incs: &[i64], lanes: i64) {
    for (c, v) in vars.iter().enumerate() {
        if incs[c] != 0 {
            let x = b.use_var(*v);
            let y = b.ins().iadd_imm_s(x, incs[c] * lanes);
            b.def_var(*v, y);
        }
    }
}

/// Independent vector accumulators of a vectorised reduction loop (an f32x4
/// add has a 4-cycle latency: one accumulator runs at a quarter of the
/// adder's throughput).
const REDUCE_UNROLL: usize = 4;

/// A counted loop over `start..end` stepping `step` while `iv + step <= end`;
/// returns the first index not processed (where a tail loop starts).
pub(crate) fn counted_loop<E>(
    b: &mut FunctionBuilder,
    start: Value,
    end: Value,
    step: i64,
    body: &mut dyn FnMut(&mut FunctionBuilder, Value) -> Result<(), E>,
) -> Result<Value, E> {
    let iv = b.declare_var(types::I64);
    b.def_var(iv, start);
    let header = b.create_block();
    let body_blk = b.create_block();
    let exit = b.create_block();
    b.ins().jump(header, &[]);
    b.switch_to_block(header);
    let i = b.use_var(iv);
    let next = b.ins().iadd_imm_s(i, step);
    let cond = b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
    b.ins().brif(cond, body_blk, &[], exit, &[]);
    b.switch_to_block(body_blk);
    body(b, i)?;
    b.def_var(iv, next);
    b.ins().jump(header, &[]);
    b.switch_to_block(exit);
    Ok(b.use_var(iv))
}

impl Emitter<'_> {
    fn scale(&self, c: &Counter) -> i64 {
        if c.storage.is_some() {
            4
        } else {
            1
        }
    }

    /// Emits loop level `d` over `lo..hi`, counters starting at `start`.
    fn level(
        &mut self,
        b: &mut FunctionBuilder,
        d: usize,
        lo: Value,
        hi: Value,
        start: &[Value],
        inner: usize,
    ) -> Result<(), CodegenError> {
        let nc = self.nest.counters.len();
        let vars: Vec<Variable> = (0..nc).map(|_| b.declare_var(types::I64)).collect();
        for (v, s) in vars.iter().zip(start) {
            b.def_var(*v, *s);
        }
        let incs: Vec<i64> = (0..nc)
            .map(|c| self.canon.strides[c][d] * self.scale(&self.nest.counters[c]))
            .collect();
        if d < inner {
            let ext = b.ins().iconst(types::I64, self.canon.dims[d + 1] as i64);
            let zero = b.ins().iconst(types::I64, 0);
            counted_loop(b, lo, hi, 1, &mut |b, _i| {
                let cur: Vec<Value> = vars.iter().map(|v| b.use_var(*v)).collect();
                self.level(b, d + 1, zero, ext, &cur, inner)?;
                advance(b, &vars, &incs, 1);
                Ok(())
            })?;
            return Ok(());
        }
        self.innermost(b, lo, hi, &vars, &incs)
    }

    fn innermost(
        &mut self,
        b: &mut FunctionBuilder,
        lo: Value,
        hi: Value,
        vars: &[Variable],
        incs: &[i64],
    ) -> Result<(), CodegenError> {
        let nest = self.nest;
        let inner = self.canon.dims.len() - 1;
        // Register accumulators for roots reducing over the innermost loop.
        struct Acc {
            root: usize,
            var: Variable,
            /// `REDUCE_UNROLL` independent vector accumulators (vector mode).
            vvars: Vec<Variable>,
            idx: Option<Variable>,
        }
        let mut accs: Vec<Acc> = Vec::new();
        for (ri, r) in nest.roots.iter().enumerate() {
            let reg = match r.mode {
                Mode::Store => false,
                Mode::Sum | Mode::Max => self.canon.strides[r.dst][inner] == 0 && r.row.is_none(),
                Mode::ArgMax => true,
            };
            if !reg {
                continue;
            }
            // An argmax accumulates the (f32) best value; its index lives in `idx`.
            let ty = if r.dtype == DType::F32 || r.mode == Mode::ArgMax {
                types::F32
            } else {
                types::I32
            };
            let var = b.declare_var(ty);
            let dst = b.use_var(vars[r.dst]);
            let init = match r.mode {
                Mode::ArgMax => b.ins().f32const(f32::NEG_INFINITY),
                Mode::Store | Mode::Sum | Mode::Max => b.ins().load(ty, flags(), dst, 0),
            };
            b.def_var(var, init);
            let mut vvars = Vec::new();
            if self.vectorized {
                let id = if r.mode == Mode::Sum {
                    0.0
                } else {
                    f32::NEG_INFINITY
                };
                let s = b.ins().f32const(id);
                let sv = b.ins().splat(types::F32X4, s);
                for _ in 0..REDUCE_UNROLL {
                    let v = b.declare_var(types::F32X4);
                    b.def_var(v, sv);
                    vvars.push(v);
                }
            }
            let idx = if r.mode == Mode::ArgMax {
                let v = b.declare_var(types::I64);
                let z = b.ins().iconst(types::I64, 0);
                b.def_var(v, z);
                Some(v)
            } else {
                None
            };
            accs.push(Acc {
                root: ri,
                var,
                vvars,
                idx,
            });
        }
        let mut pos = lo;
        if self.vectorized {
            // One vector iteration, accumulating into vector accumulator `j`.
            let vec_iter = |b: &mut FunctionBuilder, j: usize| -> Result<(), CodegenError> {
                let ptrs: Vec<Value> = vars.iter().map(|v| b.use_var(*v)).collect();
                let vals = self.body(b, &ptrs, true)?;
                for (ri, r) in nest.roots.iter().enumerate() {
                    if let Some(acc) = accs.iter().find(|a| a.root == ri) {
                        let vv = acc.vvars[j];
                        let a = b.use_var(vv);
                        let n = self.accumulate(b, r, a, &vals);
                        b.def_var(vv, n);
                    } else {
                        self.store_root(b, r, &ptrs, &vals)?;
                    }
                }
                advance(b, vars, incs, 4);
                Ok(())
            };
            // Reductions: independent accumulators hide the add latency.
            if !accs.is_empty() {
                pos = counted_loop(b, pos, hi, 4 * REDUCE_UNROLL as i64, &mut |b, _i| {
                    (0..REDUCE_UNROLL).try_for_each(|j| vec_iter(b, j))
                })?;
            }
            pos = counted_loop(b, pos, hi, 4, &mut |b, _i| vec_iter(b, 0))?;
            // Fold the vector accumulators into the scalar ones.
            for acc in &accs {
                let r = &nest.roots[acc.root];
                let mut vv = b.use_var(acc.vvars[0]);
                for &other in &acc.vvars[1..] {
                    let o = b.use_var(other);
                    vv = combine(b, r.mode, r.dtype, vv, o);
                }
                let mut s = b.use_var(acc.var);
                for l in 0..4u8 {
                    let x = b.ins().extractlane(vv, l);
                    s = combine(b, r.mode, r.dtype, s, x);
                }
                b.def_var(acc.var, s);
            }
        }
        counted_loop(b, pos, hi, 1, &mut |b, i| {
            let ptrs: Vec<Value> = vars.iter().map(|v| b.use_var(*v)).collect();
            let vals = self.body(b, &ptrs, false)?;
            for (ri, r) in nest.roots.iter().enumerate() {
                let v = vals[r.value];
                if let Some(acc) = accs.iter().find(|a| a.root == ri) {
                    let a = b.use_var(acc.var);
                    if r.mode == Mode::ArgMax {
                        let iv = acc.idx.expect("argmax has an index variable");
                        let best_i = b.use_var(iv);
                        // v > best, or v is the first NaN (NaN wins, like numpy).
                        let gt = b.ins().fcmp(FloatCC::GreaterThan, v, a);
                        let vnan = b.ins().fcmp(FloatCC::Unordered, v, v);
                        let anum = b.ins().fcmp(FloatCC::Ordered, a, a);
                        let nan_first = b.ins().band(vnan, anum);
                        let take = b.ins().bor(gt, nan_first);
                        let na = b.ins().select(take, v, a);
                        let ni = b.ins().select(take, i, best_i);
                        b.def_var(acc.var, na);
                        b.def_var(iv, ni);
                    } else {
                        let n = self.accumulate(b, r, a, &vals);
                        b.def_var(acc.var, n);
                    }
                } else {
                    self.store_root(b, r, &ptrs, &vals)?;
                }
            }
            advance(b, vars, incs, 1);
            Ok(())
        })?;
        for acc in &accs {
            let r = &nest.roots[acc.root];
            let dst = b.use_var(vars[r.dst]);
            if r.mode == Mode::ArgMax {
                let i = b.use_var(acc.idx.expect("argmax has an index variable"));
                let i32v = b.ins().ireduce(types::I32, i);
                b.ins().store(flags(), i32v, dst, 0);
            } else {
                let s = b.use_var(acc.var);
                b.ins().store(flags(), s, dst, 0);
            }
        }
        Ok(())
    }

    /// `acc ⊕ value` for a Sum/Max root; a sum of a single-use product is one `fma`.
    fn accumulate(
        &self,
        b: &mut FunctionBuilder,
        r: &NestRoot,
        acc: Value,
        vals: &[Value],
    ) -> Value {
        if r.mode == Mode::Sum && self.opts.fma {
            if let Expr::Binary(BinaryOp::Mul, DType::F32, x, y) = self.nest.exprs[r.value] {
                if self.uses[r.value] == 1 {
                    return b.ins().fma(vals[x], vals[y], acc);
                }
            }
        }
        combine(b, r.mode, r.dtype, acc, vals[r.value])
    }

    /// The address of `fault`'s slot (computed in the entry block).
    fn fault_slot(&self, fault: IdFault) -> Result<Value, CodegenError> {
        self.fault_slots
            .iter()
            .find(|s| s.0 == fault.node)
            .map(|s| s.1)
            .ok_or_else(|| {
                CodegenError(format!(
                    "no fault slot for node %{} (lowering bug)",
                    fault.node.index()
                ))
            })
    }

    /// `id` (i32) is in `[0, rows)`: the unsigned comparison also refuses
    /// negative ids.
    fn id_in_range(b: &mut FunctionBuilder, id: Value, rows: u32) -> Value {
        let rows = b.ins().iconst(types::I32, i64::from(rows));
        b.ins().icmp(IntCC::UnsignedLessThan, id, rows)
    }

    /// Branches on `ok`: the main path continues in a new block, where the
    /// caller emits the work the fault path skips, then calls
    /// [`Self::join`] with the returned block; the fault path records `id`
    /// at `fault`'s position in its slot (an atomic unsigned min of
    /// `position << 32 | id as u32`, see [`IdFault`]) and jumps there.
    fn record_fault(
        &self,
        b: &mut FunctionBuilder,
        ok: Value,
        id: Value,
        fault: IdFault,
        ptrs: &[Value],
    ) -> Result<cranelift_codegen::ir::Block, CodegenError> {
        let slot = self.fault_slot(fault)?;
        let work = b.create_block();
        let bad = b.create_block();
        let join = b.create_block();
        b.ins().brif(ok, work, &[], bad, &[]);
        b.switch_to_block(bad);
        let pos = b.ins().ishl_imm_u(ptrs[fault.pos], 32);
        let id64 = b.ins().uextend(types::I64, id);
        let packed = b.ins().bor(pos, id64);
        b.ins().atomic_rmw(
            types::I64,
            MemFlagsData::trusted(),
            AtomicRmwOp::Umin,
            slot,
            packed,
        );
        b.ins().jump(join, &[]);
        b.switch_to_block(work);
        Ok(join)
    }

    /// Ends the guarded block of [`Self::record_fault`] and continues at `join`.
    fn join(b: &mut FunctionBuilder, join: cranelift_codegen::ir::Block) {
        b.ins().jump(join, &[]);
        b.switch_to_block(join);
    }

    fn store_root(
        &self,
        b: &mut FunctionBuilder,
        r: &NestRoot,
        ptrs: &[Value],
        vals: &[Value],
    ) -> Result<(), CodegenError> {
        let v = vals[r.value];
        let p = ptrs[r.dst];
        let (p, guard) = match r.row {
            None => (p, None),
            Some(row) => {
                // An id outside the table writes nothing and records the fault.
                let id = vals[row.id];
                let ok = Self::id_in_range(b, id, row.rows);
                let join = self.record_fault(b, ok, id, row.fault, ptrs)?;
                let id = b.ins().uextend(types::I64, id);
                let off = b.ins().imul_imm_s(id, i64::from(row.width) * 4);
                (b.ins().iadd(p, off), Some(join))
            }
        };
        match r.mode {
            Mode::Store => {
                b.ins().store(flags(), v, p, 0);
            }
            Mode::Sum | Mode::Max => {
                let ty = b.func.dfg.value_type(v);
                let old = b.ins().load(ty, flags(), p, 0);
                let n = self.accumulate(b, r, old, vals);
                b.ins().store(flags(), n, p, 0);
            }
            Mode::ArgMax => {
                return Err(CodegenError(
                    "argmax roots always use register accumulators (lowering bug)".into(),
                ))
            }
        }
        if let Some(join) = guard {
            Self::join(b, join);
        }
        Ok(())
    }

    /// Emits every expression once for one element (or one vector of 4).
    fn body(
        &self,
        b: &mut FunctionBuilder,
        ptrs: &[Value],
        vector: bool,
    ) -> Result<Vec<Value>, CodegenError> {
        let nest = self.nest;
        let inner = self.canon.dims.len() - 1;
        let mut vals: Vec<Value> = Vec::with_capacity(nest.exprs.len());
        for e in &nest.exprs {
            let v = match *e {
                Expr::Load { counter, dtype } => {
                    let ty = scalar_ty(dtype);
                    let p = ptrs[counter];
                    if vector {
                        if self.canon.strides[counter][inner] == 0 {
                            let s = b.ins().load(ty, flags(), p, 0);
                            b.ins().splat(types::F32X4, s)
                        } else {
                            b.ins().load(types::F32X4, flags(), p, 0)
                        }
                    } else {
                        b.ins().load(ty, flags(), p, 0)
                    }
                }
                Expr::ImmF(x) => {
                    let s = b.ins().f32const(Ieee32::with_float(x));
                    if vector {
                        b.ins().splat(types::F32X4, s)
                    } else {
                        s
                    }
                }
                Expr::ImmI(x) => b.ins().iconst(types::I32, x as i64),
                Expr::Unary(u, dt, a) => unary(b, u, dt, vals[a], vector)?,
                Expr::Binary(op, dt, x, y) => {
                    // a + b*c → fma when the product has no other use.
                    let fma_of = |e: usize| {
                        if let Expr::Binary(BinaryOp::Mul, DType::F32, p, q) = nest.exprs[e] {
                            (self.uses[e] == 1).then_some((p, q))
                        } else {
                            None
                        }
                    };
                    if self.opts.fma && op == BinaryOp::Add && dt == DType::F32 {
                        if let Some((p, q)) = fma_of(y) {
                            b.ins().fma(vals[p], vals[q], vals[x])
                        } else if let Some((p, q)) = fma_of(x) {
                            b.ins().fma(vals[p], vals[q], vals[y])
                        } else {
                            binary(b, op, dt, vals[x], vals[y], vector)
                        }
                    } else {
                        binary(b, op, dt, vals[x], vals[y], vector)
                    }
                }
                Expr::Select(m, x, y, _) => {
                    if vector {
                        let z = b.ins().f32const(0.0);
                        let zv = b.ins().splat(types::F32X4, z);
                        let c = b.ins().fcmp(FloatCC::NotEqual, vals[m], zv);
                        let cf = b.ins().bitcast(types::F32X4, bitflags(), c);
                        b.ins().bitselect(cf, vals[x], vals[y])
                    } else {
                        let z = b.ins().f32const(0.0);
                        let c = b.ins().fcmp(FloatCC::NotEqual, vals[m], z);
                        b.ins().select(c, vals[x], vals[y])
                    }
                }
                Expr::Cast { from, to, e } => match (from, to) {
                    (DType::F32, DType::I32) => b.ins().fcvt_to_sint_sat(types::I32, vals[e]),
                    (DType::I32, DType::F32) => b.ins().fcvt_from_sint(types::F32, vals[e]),
                    _ => vals[e],
                },
                Expr::OneHot { label, coord } => {
                    let c = b.ins().ireduce(types::I32, ptrs[coord]);
                    let eq = b.ins().icmp(IntCC::Equal, vals[label], c);
                    let one = b.ins().f32const(1.0);
                    let zero = b.ins().f32const(0.0);
                    b.ins().select(eq, one, zero)
                }
                Expr::Random { seed, step, index } => {
                    let idx = b.ins().ireduce(types::I32, ptrs[index]);
                    random_uniform(b, seed, vals[step], idx)
                }
                Expr::RandomNormal { seed, step, index } => {
                    let idx = b.ins().ireduce(types::I32, ptrs[index]);
                    random_normal(b, seed, vals[step], idx)?
                }
                Expr::Gather {
                    id,
                    table,
                    rows,
                    width,
                    fault,
                } => {
                    // An id outside the table reads row 0 (never outside),
                    // yields 0.0 and records the fault.
                    let id = vals[id];
                    let ok = Self::id_in_range(b, id, rows);
                    let zero = b.ins().iconst(types::I32, 0);
                    let row = b.ins().select(ok, id, zero);
                    let row = b.ins().uextend(types::I64, row);
                    let off = b.ins().imul_imm_s(row, i64::from(width) * 4);
                    let p = b.ins().iadd(ptrs[table], off);
                    let v = b.ins().load(types::F32, flags(), p, 0);
                    let zf = b.ins().f32const(0.0);
                    let v = b.ins().select(ok, v, zf);
                    let join = self.record_fault(b, ok, id, fault, ptrs)?;
                    Self::join(b, join);
                    v
                }
            };
            vals.push(v);
        }
        Ok(vals)
    }
}

fn scalar_ty(d: DType) -> Type {
    match d {
        DType::F32 => types::F32,
        DType::I32 => types::I32,
    }
}

fn combine(b: &mut FunctionBuilder, mode: Mode, dtype: DType, a: Value, v: Value) -> Value {
    match (mode, dtype) {
        (Mode::Sum, DType::F32) => b.ins().fadd(a, v),
        (Mode::Sum, DType::I32) => b.ins().iadd(a, v),
        (_, DType::F32) => b.ins().fmax(a, v),
        (_, DType::I32) => b.ins().smax(a, v),
    }
}

fn splat_f(b: &mut FunctionBuilder, x: f32, vector: bool) -> Value {
    let s = b.ins().f32const(x);
    if vector {
        b.ins().splat(types::F32X4, s)
    } else {
        s
    }
}

/// f32 0/1 mask from a comparison result (i8 for scalars, i32x4 lane masks for vectors).
fn mask_to_f32(b: &mut FunctionBuilder, c: Value, vector: bool) -> Value {
    if vector {
        let one = b.ins().iconst(types::I32, 0x3f80_0000);
        let ones = b.ins().splat(types::I32X4, one);
        let m = b.ins().band(c, ones);
        b.ins().bitcast(types::F32X4, bitflags(), m)
    } else {
        let one = b.ins().f32const(1.0);
        let zero = b.ins().f32const(0.0);
        b.ins().select(c, one, zero)
    }
}

fn fselect(b: &mut FunctionBuilder, c: Value, x: Value, y: Value, vector: bool) -> Value {
    if vector {
        let cf = b.ins().bitcast(types::F32X4, bitflags(), c);
        b.ins().bitselect(cf, x, y)
    } else {
        b.ins().select(c, x, y)
    }
}

/// Errors for an op the type rule admits on `i32` without an `i32` lowering here.
fn unary(
    b: &mut FunctionBuilder,
    u: UnaryOp,
    dt: DType,
    x: Value,
    vector: bool,
) -> Result<Value, CodegenError> {
    use crate::clif_math::{
        emit_cos, emit_erf, emit_exp, emit_log, emit_sigmoid, emit_sin, emit_tanh,
    };
    if dt == DType::I32 {
        return match u {
            UnaryOp::Neg => Ok(b.ins().ineg(x)),
            UnaryOp::Abs => Ok(b.ins().iabs(x)),
            UnaryOp::Sign => {
                let zero = b.ins().iconst(types::I32, 0);
                let one = b.ins().iconst(types::I32, 1);
                let m1 = b.ins().iconst(types::I32, -1);
                let pos = b.ins().icmp(IntCC::SignedGreaterThan, x, zero);
                let neg = b.ins().icmp(IntCC::SignedLessThan, x, zero);
                let t = b.ins().select(neg, m1, zero);
                Ok(b.ins().select(pos, one, t))
            }
            UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Tanh
            | UnaryOp::Sigmoid
            | UnaryOp::Sqrt
            | UnaryOp::Recip
            | UnaryOp::Erf
            | UnaryOp::Sin
            | UnaryOp::Cos => Err(CodegenError(format!("{}: no i32 lowering", u.name()))),
        };
    }
    // Transcendentals: inline polynomial evaluation from [`crate::clif_math`]
    // (f32 or f32x4, a few ulp; no calls).
    Ok(match u {
        UnaryOp::Neg => b.ins().fneg(x),
        UnaryOp::Abs => b.ins().fabs(x),
        UnaryOp::Sqrt => b.ins().sqrt(x),
        UnaryOp::Recip => {
            let one = splat_f(b, 1.0, vector);
            b.ins().fdiv(one, x)
        }
        UnaryOp::Sign => {
            // 1 for x > 0, -1 for x < 0, x itself for ±0 and NaN.
            let zero = splat_f(b, 0.0, vector);
            let one = splat_f(b, 1.0, vector);
            let m1 = splat_f(b, -1.0, vector);
            let pos = b.ins().fcmp(FloatCC::GreaterThan, x, zero);
            let neg = b.ins().fcmp(FloatCC::LessThan, x, zero);
            let t = fselect(b, neg, m1, x, vector);
            fselect(b, pos, one, t, vector)
        }
        UnaryOp::Exp => emit_exp(b, x),
        UnaryOp::Log => emit_log(b, x),
        UnaryOp::Tanh => emit_tanh(b, x),
        UnaryOp::Sigmoid => emit_sigmoid(b, x),
        UnaryOp::Erf => emit_erf(b, x),
        UnaryOp::Sin => emit_sin(b, x),
        UnaryOp::Cos => emit_cos(b, x),
    })
}

fn binary(
    b: &mut FunctionBuilder,
    op: BinaryOp,
    dt: DType,
    x: Value,
    y: Value,
    vector: bool,
) -> Value {
    if dt == DType::I32 {
        let cmp = |b: &mut FunctionBuilder, cc: IntCC| {
            let c = b.ins().icmp(cc, x, y);
            mask_to_f32(b, c, false)
        };
        return match op {
            BinaryOp::Add => b.ins().iadd(x, y),
            BinaryOp::Sub => b.ins().isub(x, y),
            BinaryOp::Mul => b.ins().imul(x, y),
            BinaryOp::Div => {
                // Wrapping division; x/0 = 0 (no trap).
                let zero = b.ins().iconst(types::I32, 0);
                let one = b.ins().iconst(types::I32, 1);
                let m1 = b.ins().iconst(types::I32, -1);
                let min = b.ins().iconst(types::I32, i32::MIN as i64);
                let dz = b.ins().icmp(IntCC::Equal, y, zero);
                let xmin = b.ins().icmp(IntCC::Equal, x, min);
                let ym1 = b.ins().icmp(IntCC::Equal, y, m1);
                let ovf = b.ins().band(xmin, ym1);
                let bad = b.ins().bor(dz, ovf);
                let d = b.ins().select(bad, one, y);
                let q = b.ins().sdiv(x, d);
                b.ins().select(dz, zero, q)
            }
            BinaryOp::Max => b.ins().smax(x, y),
            BinaryOp::Min => b.ins().smin(x, y),
            BinaryOp::Eq => cmp(b, IntCC::Equal),
            BinaryOp::Ne => cmp(b, IntCC::NotEqual),
            BinaryOp::Lt => cmp(b, IntCC::SignedLessThan),
            BinaryOp::Le => cmp(b, IntCC::SignedLessThanOrEqual),
            BinaryOp::Gt => cmp(b, IntCC::SignedGreaterThan),
            BinaryOp::Ge => cmp(b, IntCC::SignedGreaterThanOrEqual),
            BinaryOp::Pow => int_pow(b, x, y),
        };
    }
    let mut cmp = |cc: FloatCC| {
        let c = b.ins().fcmp(cc, x, y);
        mask_to_f32(b, c, vector)
    };
    match op {
        BinaryOp::Eq => cmp(FloatCC::Equal),
        BinaryOp::Ne => cmp(FloatCC::NotEqual),
        BinaryOp::Lt => cmp(FloatCC::LessThan),
        BinaryOp::Le => cmp(FloatCC::LessThanOrEqual),
        BinaryOp::Gt => cmp(FloatCC::GreaterThan),
        BinaryOp::Ge => cmp(FloatCC::GreaterThanOrEqual),
        BinaryOp::Add => b.ins().fadd(x, y),
        BinaryOp::Sub => b.ins().fsub(x, y),
        BinaryOp::Mul => b.ins().fmul(x, y),
        BinaryOp::Div => b.ins().fdiv(x, y),
        BinaryOp::Pow => crate::clif_math::emit_pow(b, x, y),
        // NaN propagates; ties (incl. ±0) give the second operand, like the interpreter.
        BinaryOp::Max | BinaryOp::Min => {
            let cc = if op == BinaryOp::Max {
                FloatCC::GreaterThan
            } else {
                FloatCC::LessThan
            };
            let first = b.ins().fcmp(cc, x, y);
            let r = fselect(b, first, x, y, vector);
            let xnan = b.ins().fcmp(FloatCC::Unordered, x, x);
            fselect(b, xnan, x, r, vector)
        }
    }
}

/// `x^e` on scalar i32, as the interpreter's kernel: for `e ≥ 0` the wrapping
/// power by 31 unrolled square-and-multiply steps (branch-free); for `e < 0`
/// the truncated `1/x^|e|`: `1` for `x = 1`, `±1` for `x = -1` (by the parity
/// of `e`), else `0`.
fn int_pow(b: &mut FunctionBuilder, x: Value, e: Value) -> Value {
    let one = b.ins().iconst(types::I32, 1);
    let mut acc = one;
    let mut base = x;
    for k in 0..31 {
        let bit = b.ins().ushr_imm_u(e, k);
        let bit = b.ins().band_imm_u(bit, 1);
        let factor = b.ins().select(bit, base, one);
        acc = b.ins().imul(acc, factor);
        if k < 30 {
            base = b.ins().imul(base, base);
        }
    }
    let zero = b.ins().iconst(types::I32, 0);
    let m1 = b.ins().iconst(types::I32, -1);
    let odd = b.ins().band_imm_u(e, 1);
    let x_is_one = b.ins().icmp(IntCC::Equal, x, one);
    let x_is_m1 = b.ins().icmp(IntCC::Equal, x, m1);
    let m1_pow = b.ins().select(odd, m1, one);
    let t = b.ins().select(x_is_m1, m1_pow, zero);
    let neg = b.ins().select(x_is_one, one, t);
    let e_neg = b.ins().icmp(IntCC::SignedLessThan, e, zero);
    b.ins().select(e_neg, neg, acc)
}

/// Inline [`lossgraph_ir::op::random_uniform`]: the same 32-bit hash, bit for bit.
fn random_uniform(b: &mut FunctionBuilder, seed: u32, step: Value, idx: Value) -> Value {
    let s = b.ins().imul_imm_s(step, 0x9E37_79B9u32 as i32 as i64);
    let i = b.ins().imul_imm_s(idx, 0x85EB_CA6Bu32 as i32 as i64);
    let h = b.ins().bxor_imm_s(s, seed as i32 as i64);
    let mut h = b.ins().bxor(h, i);
    let t = b.ins().ushr_imm_u(h, 16);
    h = b.ins().bxor(h, t);
    h = b.ins().imul_imm_s(h, 0x7FEB_352Du32 as i32 as i64);
    let t = b.ins().ushr_imm_u(h, 15);
    h = b.ins().bxor(h, t);
    h = b.ins().imul_imm_s(h, 0x846C_A68Bu32 as i32 as i64);
    let t = b.ins().ushr_imm_u(h, 16);
    h = b.ins().bxor(h, t);
    let top = b.ins().ushr_imm_u(h, 8);
    let f = b.ins().fcvt_from_sint(types::F32, top);
    let k = b.ins().f32const(1.0 / 16_777_216.0);
    b.ins().fmul(f, k)
}

/// Inline [`lossgraph_ir::op::random_normal`]: Box–Muller on two uniform
/// draws, the logarithm as [`UnaryOp::Log`]'s polynomial, the cosine as
/// [`lossgraph_ir::op::cos_turn`]'s Horner scheme (plain multiply and add).
fn random_normal(
    b: &mut FunctionBuilder,
    seed: u32,
    step: Value,
    idx: Value,
) -> Result<Value, CodegenError> {
    use lossgraph_ir::op::{COS_COEFFS, NORMAL_SECOND_STREAM};
    let u1 = random_uniform(b, seed, step, idx);
    let u2 = random_uniform(b, seed ^ NORMAL_SECOND_STREAM, step, idx);
    let one = b.ins().f32const(1.0);
    let q = b.ins().fsub(one, u1);
    let ln = unary(b, UnaryOp::Log, DType::F32, q, false)?;
    let m2 = b.ins().f32const(-2.0);
    let r2 = b.ins().fmul(m2, ln);
    let r = b.ins().sqrt(r2);
    let half = b.ins().f32const(0.5);
    let t = b.ins().fsub(u2, half);
    let tau = b.ins().f32const(std::f32::consts::TAU);
    let x = b.ins().fmul(t, tau);
    let x2 = b.ins().fmul(x, x);
    let mut p = b.ins().f32const(COS_COEFFS[9]);
    for &c in COS_COEFFS[..9].iter().rev() {
        let m = b.ins().fmul(p, x2);
        let c = b.ins().f32const(c);
        p = b.ins().fadd(m, c);
    }
    let cos = b.ins().fneg(p);
    Ok(b.ins().fmul(r, cos))
}

/// Every kernel's Cranelift IR as text, in execution order; GEMM calls are
/// listed by shape. Store offsets are those of a store holding only this
/// graph's variables, in graph order. For `dump-ir --stage clif`.
pub fn clif_text(
    plan: &crate::fusion::Plan,
    body_opts: &nest::BodyOptions,
) -> Result<String, CodegenError> {
    use std::fmt::Write as _;
    let bodies: Vec<nest::KernelBody> = (0..plan.kernels.len())
        .map(|k| nest::kernel_body(plan, k, body_opts))
        .collect::<Result<_, _>>()?;
    let mem = crate::memplan::plan_memory(plan, &bodies)?;
    let mut var_offset = vec![0usize; plan.graph.len()];
    let mut top = 0;
    for (_, p) in plan.graph.params() {
        var_offset[p.index()] = top;
        top += (plan.graph.node(p).ty.numel() * 4)
            .div_ceil(crate::memplan::ALIGN)
            .max(1)
            * crate::memplan::ALIGN;
    }
    let fault = |n: NodeId| {
        mem.faults
            .iter()
            .find(|f| f.0 == n)
            .map(|f| BufAddr {
                base: Base::Arena,
                offset: f.1,
            })
            .ok_or_else(|| CodegenError(format!("node %{} has no fault slot", n.index())))
    };
    let addr = |n: NodeId| match mem.location[n.index()] {
        Some(crate::memplan::Location::Arena(offset)) => Ok(BufAddr {
            base: Base::Arena,
            offset,
        }),
        Some(crate::memplan::Location::Variable(p)) => Ok(BufAddr {
            base: Base::Store,
            offset: var_offset[p.index()],
        }),
        None => Err(CodegenError(format!("node %{} has no storage", n.index()))),
    };
    let opts = LowerOptions::host()?;
    let mut s = String::new();
    for (k, body) in bodies.iter().enumerate() {
        match body {
            nest::KernelBody::Nests(ns) => {
                for n in ns {
                    let l = lower_nest(n, &addr, &fault, &opts)?;
                    let _ = writeln!(
                        s,
                        "; kernel {k} ({}), loops {:?}, vectorized {}, splittable {}",
                        n.label,
                        canonicalize(n).dims,
                        l.vectorized,
                        l.splittable
                    );
                    let _ = writeln!(s, "{}", l.func.display());
                }
            }
            nest::KernelBody::SmallMatmul(g) => {
                let l = matmul::lower_matmul(g, &addr, &opts, &format!("k{k}.matmul"))?;
                let _ = writeln!(
                    s,
                    "; kernel {k}: register-blocked matmul m {} n {} k {} batch {}",
                    g.m, g.n, g.k, g.batch
                );
                let _ = writeln!(s, "{}", l.func.display());
            }
            nest::KernelBody::Conv(c) => {
                let _ = writeln!(
                    s,
                    "; kernel {k}: convolution call {}, image {:?}x{} window {:?} strides {:?} dilation {:?} filters {} (out %{}, operands %{} %{})\n",
                    c.pass.name(),
                    c.spatial,
                    c.channels,
                    c.window,
                    c.strides,
                    c.dilation,
                    c.filters,
                    c.out.index(),
                    c.operands[0].index(),
                    c.operands[1].index()
                );
            }
            nest::KernelBody::Pool(c) => {
                let ops: Vec<String> = c
                    .operands
                    .iter()
                    .map(|o| format!("%{}", o.index()))
                    .collect();
                let _ = writeln!(
                    s,
                    "; kernel {k}: pooling call {}, image {:?}x{} window {:?} strides {:?} (out %{}, operands {})\n",
                    c.pass.name(),
                    c.spatial,
                    c.channels,
                    c.window,
                    c.strides,
                    c.out.index(),
                    ops.join(" ")
                );
            }
            nest::KernelBody::AllReduce { out, x, numel } => {
                let _ = writeln!(
                    s,
                    "; kernel {k}: all_reduce_mean call, {numel} f32 (out %{}, x %{})\n",
                    out.index(),
                    x.index()
                );
            }
            nest::KernelBody::Gemm(g) => {
                let _ = writeln!(
                    s,
                    "; kernel {k}: GEMM routine call, batch {} m {} n {} k {} trans_a {} trans_b {} (out %{}, a %{}, b %{})\n",
                    g.batch,
                    g.m,
                    g.n,
                    g.k,
                    g.trans_a,
                    g.trans_b,
                    g.out.index(),
                    g.a.index(),
                    g.b.index()
                );
            }
        }
    }
    Ok(s)
}
