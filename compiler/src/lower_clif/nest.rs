//! Loop nests: the target-independent form of a kernel.
//!
//! A [`Nest`] is a loop over a static domain (row-major, outermost first)
//! evaluating an expression DAG per element. Every memory access and every
//! index-valued expression is a [`Counter`]: an affine function of the loop
//! indices (per-dimension stride plus an offset, in elements), which the
//! lowering strength-reduces to pointer increments. `broadcast`, `transpose`,
//! `slice`, `one_hot` and `reshape` (of stored data) only change counters.

use crate::conv_calls::ConvCall;
use crate::fusion::{node_error, CodegenError, KernelKind, NodeClass, Plan};
use crate::pool_calls::PoolCall;
use lossgraph_ir::types::strides as row_strides;
use lossgraph_ir::{BinaryOp, DType, Literal, NodeId, Op, ReduceOp, UnaryOp};
use std::collections::HashMap;

/// Index of an expression in [`Nest::exprs`].
pub type E = usize;

/// One expression of a nest, evaluated per loop element.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Load an element of `dtype` at counter `counter`'s address.
    Load {
        counter: usize,
        dtype: DType,
    },
    ImmF(f32),
    ImmI(i32),
    /// `op` on an operand of type `dtype`.
    Unary(UnaryOp, DType, E),
    /// `op` on operands of type `dtype` (comparisons yield f32 masks).
    Binary(BinaryOp, DType, E, E),
    /// `mask != 0 ? a : b`, values of type `dtype`.
    Select(E, E, E, DType),
    /// f32 ↔ i32 conversion (f32 → i32 truncates and saturates, NaN → 0).
    Cast {
        from: DType,
        to: DType,
        e: E,
    },
    /// 1.0 where the i32 `label` equals the index counter `coord`, else 0.0.
    OneHot {
        label: E,
        coord: usize,
    },
    /// [`lossgraph_ir::op::random_uniform`] of `seed`, the i32 `step` and the index counter `index`.
    Random {
        seed: u32,
        step: E,
        index: usize,
    },
    /// [`lossgraph_ir::op::random_normal`] of `seed`, the i32 `step` and the index counter `index`.
    RandomNormal {
        seed: u32,
        step: E,
        index: usize,
    },
    /// Element `table + id·width` of a stored `f32[rows, width]` table: the
    /// counter `table` addresses column `j` of row 0, `id` is the i32 row.
    /// An id outside `[0, rows)` reads nothing: the value is 0.0 and the
    /// kernel records the fault of gather node `node` (see [`IdFault`]),
    /// `pos` being the index counter of the id's row-major position.
    Gather {
        id: E,
        table: usize,
        rows: u32,
        width: u32,
        fault: IdFault,
    },
}

/// An affine function of the loop indices, in elements. `storage` is the
/// stored node addressed (`None` for a pure index value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    pub storage: Option<NodeId>,
    pub strides: Vec<i64>,
    pub offset: i64,
}

/// How a root's value reaches memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `dst = v`.
    Store,
    /// `dst += v` (dst was initialised to 0).
    Sum,
    /// `dst = max(dst, v)` (dst was initialised to the lowest value).
    Max,
    /// Index (i32) along the innermost dimension of the first maximum.
    ArgMax,
}

/// A value written by a nest.
#[derive(Clone, Debug, PartialEq)]
pub struct NestRoot {
    pub value: E,
    pub dst: usize,
    pub mode: Mode,
    pub dtype: DType,
    /// A data-dependent row (`scatter_add`): the destination is `dst`'s
    /// address plus row `id` of a `[rows, width]` table. Such a root never
    /// accumulates in registers, is never vectorised and its nest never
    /// split across threads.
    pub row: Option<DynRow>,
}

/// The data-dependent row of a [`NestRoot`]: the i32 expression `id`,
/// scaled by `width` elements. An id outside `[0, rows)` writes nothing and
/// records the fault of the `scatter_add` node (see [`IdFault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynRow {
    pub id: E,
    pub rows: u32,
    pub width: u32,
    pub fault: IdFault,
}

/// Where an out-of-range id is reported: the node whose ids are checked
/// (`gather`, `scatter_add`) owns a fault slot (`memplan::MemoryPlan::faults`),
/// a u64 that is `u64::MAX` until a kernel finds an id outside the table and
/// lowers it (an atomic unsigned min) to `position << 32 | id as u32`, so the
/// slot ends with the first bad position in row-major order, whichever
/// thread finds it. `pos` is the index counter of the id's row-major
/// position in the ids operand (below 2³², checked when the nest is built).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdFault {
    pub node: NodeId,
    pub pos: usize,
}

/// A loop nest (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Nest {
    /// Loop extents, outermost first.
    pub dims: Vec<usize>,
    pub counters: Vec<Counter>,
    pub exprs: Vec<Expr>,
    pub roots: Vec<NestRoot>,
    /// The innermost dimension must stay the innermost loop (argmax).
    pub keep_last: bool,
    /// Different outer iterations may add into the same element (a `fold`
    /// of overlapping windows over a single image): never split the loop.
    pub serial: bool,
    /// For dumps: which kernel and what part.
    pub label: String,
}

impl Nest {
    /// Adds the nodes whose ids this nest checks to `out` (once each).
    pub fn id_checks(&self, out: &mut Vec<NodeId>) {
        let gathers = self.exprs.iter().filter_map(|e| match e {
            Expr::Gather { fault, .. } => Some(fault.node),
            Expr::Load { .. }
            | Expr::ImmF(_)
            | Expr::ImmI(_)
            | Expr::Unary(..)
            | Expr::Binary(..)
            | Expr::Select(..)
            | Expr::Cast { .. }
            | Expr::OneHot { .. }
            | Expr::Random { .. }
            | Expr::RandomNormal { .. } => None,
        });
        let rows = self
            .roots
            .iter()
            .filter_map(|r| r.row.map(|d| d.fault.node));
        for n in gathers.chain(rows) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
}

/// A GEMM call: `out = op(a) × op(b)` over `batch` matrices, all row-major stored nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemmCall {
    pub out: NodeId,
    pub a: NodeId,
    pub b: NodeId,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

/// The lowered form of one kernel.
#[derive(Clone, Debug, PartialEq)]
pub enum KernelBody {
    Nests(Vec<Nest>),
    /// A matmul small enough for a register-blocked JIT kernel ([`super::matmul`]).
    SmallMatmul(GemmCall),
    /// A matmul executed by the `gemm` crate.
    Gemm(GemmCall),
    /// A convolution pass run by the runtime's convolution routines; its
    /// `out` and `operands` are storage nodes.
    Conv(ConvCall),
    /// A pooling pass run by the runtime's pooling routines; its `out` and
    /// `operands` are storage nodes.
    Pool(PoolCall),
    /// An `all_reduce_mean` of the stored `f32` buffer `x` into `out`
    /// (`numel` elements each; the same buffer when the memory plan lets
    /// the reduction run in place), run by the communicator.
    AllReduce {
        out: NodeId,
        x: NodeId,
        numel: usize,
    },
}

impl KernelBody {
    /// Every stored node this kernel reads, with the counter used (None for GEMM operands).
    pub fn reads(&self) -> Vec<(NodeId, Option<&Counter>)> {
        match self {
            KernelBody::Nests(ns) => ns
                .iter()
                .flat_map(|n| {
                    n.exprs.iter().filter_map(move |e| match e {
                        Expr::Load { counter, .. } => {
                            let c = &n.counters[*counter];
                            c.storage.map(|s| (s, Some(c)))
                        }
                        // A data-dependent address: no counter describes it.
                        Expr::Gather { table, .. } => n.counters[*table].storage.map(|s| (s, None)),
                        Expr::ImmF(_)
                        | Expr::ImmI(_)
                        | Expr::Unary(..)
                        | Expr::Binary(..)
                        | Expr::Select(..)
                        | Expr::Cast { .. }
                        | Expr::OneHot { .. }
                        | Expr::Random { .. }
                        | Expr::RandomNormal { .. } => None,
                    })
                })
                .collect(),
            KernelBody::Gemm(g) | KernelBody::SmallMatmul(g) => vec![(g.a, None), (g.b, None)],
            KernelBody::Conv(c) => c.operands.iter().map(|&o| (o, None)).collect(),
            KernelBody::Pool(c) => c.operands.iter().map(|&o| (o, None)).collect(),
            KernelBody::AllReduce { x, .. } => vec![(*x, None)],
        }
    }

    /// The nodes whose ids this kernel checks (each may record a fault), in
    /// order of appearance, without repeats.
    pub fn id_checks(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        if let KernelBody::Nests(ns) = self {
            for n in ns {
                n.id_checks(&mut out);
            }
        }
        out
    }
}

type Map = Vec<(Vec<i64>, i64)>;

fn identity(rank: usize) -> Map {
    (0..rank)
        .map(|j| {
            let mut c = vec![0; rank];
            c[j] = 1;
            (c, 0)
        })
        .collect()
}

/// The index map of an `unfold` operand `[N, S.., C]` given the map `map`
/// of its result `[N, O.., K.., C]`: axis `1+i` is `oᵢ·strideᵢ + kᵢ·dilationᵢ`.
fn unfold_map(map: &Map, strides: &[usize], dilation: &[usize]) -> Map {
    let r = strides.len();
    let mut m: Map = Vec::with_capacity(r + 2);
    m.push(map[0].clone());
    for i in 0..r {
        let (oc, oo) = &map[1 + i];
        let (kc, ko) = &map[1 + r + i];
        let (s, d) = (strides[i] as i64, dilation[i] as i64);
        let coef = oc.iter().zip(kc).map(|(a, b)| a * s + b * d).collect();
        m.push((coef, oo * s + ko * d));
    }
    m.push(map[2 * r + 1].clone());
    m
}

struct Builder<'p> {
    plan: &'p Plan,
    rank: usize,
    counters: Vec<Counter>,
    exprs: Vec<Expr>,
    memo: HashMap<(NodeId, Map), E>,
    current: Vec<NodeId>,
}

impl<'p> Builder<'p> {
    fn new(plan: &'p Plan, rank: usize, current: Vec<NodeId>) -> Self {
        Builder {
            plan,
            rank,
            counters: Vec::new(),
            exprs: Vec::new(),
            memo: HashMap::new(),
            current,
        }
    }

    fn push(&mut self, e: Expr) -> E {
        if let Some(i) = self.exprs.iter().position(|x| *x == e) {
            return i;
        }
        self.exprs.push(e);
        self.exprs.len() - 1
    }

    fn counter(&mut self, c: Counter) -> usize {
        if let Some(i) = self.counters.iter().position(|x| *x == c) {
            return i;
        }
        self.counters.push(c);
        self.counters.len() - 1
    }

    /// The counter addressing `shape`-row-major data at index map `map`.
    fn affine(&mut self, storage: Option<NodeId>, shape: &[usize], map: &Map) -> usize {
        let st = row_strides(shape);
        let mut strides = vec![0i64; self.rank];
        let mut offset = 0i64;
        for (j, (coef, c)) in map.iter().enumerate() {
            let s = st[j] as i64;
            for (k, x) in coef.iter().enumerate() {
                strides[k] += s * x;
            }
            offset += s * c;
        }
        self.counter(Counter {
            storage,
            strides,
            offset,
        })
    }

    fn err(&self, n: NodeId, msg: &str) -> CodegenError {
        node_error(&self.plan.graph, n, msg)
    }

    fn expr(&mut self, n: NodeId, map: &Map) -> Result<E, CodegenError> {
        let key = (n, map.clone());
        if let Some(&e) = self.memo.get(&key) {
            return Ok(e);
        }
        let g = &self.plan.graph;
        let node = g.node(n);
        let class = self.plan.class_of(n);
        let compute = match class {
            NodeClass::Inlined => true,
            NodeClass::Root(_) if self.current.contains(&n) => {
                if *map != identity(self.rank) || node.ty.rank() != self.rank {
                    return Err(self.err(n, "kernel root read at another element (fusion bug)"));
                }
                true
            }
            NodeClass::Dead => return Err(self.err(n, "dead node read (fusion bug)")),
            NodeClass::Leaf | NodeClass::Alias(_) | NodeClass::Root(_) => false,
        };
        let e = if !compute {
            // A splat constant is an immediate; everything else stored is loaded.
            let imm = if let Op::Const(lit) = &node.op {
                match lit {
                    Literal::F32(v) if v.len() == 1 => Some(Expr::ImmF(v[0])),
                    Literal::I32(v) if v.len() == 1 => Some(Expr::ImmI(v[0])),
                    Literal::F32(_) | Literal::I32(_) => None,
                }
            } else {
                None
            };
            match imm {
                Some(e) => self.push(e),
                None => {
                    let s = self.plan.storage_of(n);
                    let c = self.affine(Some(s), &node.ty.shape, map);
                    self.push(Expr::Load {
                        counter: c,
                        dtype: node.ty.dtype,
                    })
                }
            }
        } else {
            let ops = g.operands(n);
            let odt = |i: usize| g.node(ops[i]).ty.dtype;
            match &node.op {
                Op::Unary(u) => {
                    let a = self.expr(ops[0], map)?;
                    self.push(Expr::Unary(*u, odt(0), a))
                }
                Op::Binary(b) => {
                    let a = self.expr(ops[0], map)?;
                    let c = self.expr(ops[1], map)?;
                    self.push(Expr::Binary(*b, odt(0), a, c))
                }
                Op::Select => {
                    let m = self.expr(ops[0], map)?;
                    let a = self.expr(ops[1], map)?;
                    let b = self.expr(ops[2], map)?;
                    self.push(Expr::Select(m, a, b, node.ty.dtype))
                }
                Op::Cast => {
                    let a = self.expr(ops[0], map)?;
                    if odt(0) == node.ty.dtype {
                        a
                    } else {
                        self.push(Expr::Cast {
                            from: odt(0),
                            to: node.ty.dtype,
                            e: a,
                        })
                    }
                }
                Op::StopGradient => self.expr(ops[0], map)?,
                Op::Broadcast => {
                    let from = &g.node(ops[0]).ty.shape;
                    let to = &node.ty.shape;
                    let lead = to.len() - from.len();
                    let m: Map = (0..from.len())
                        .map(|j| {
                            if from[j] == 1 && to[j + lead] != 1 {
                                (vec![0; self.rank], 0)
                            } else {
                                map[j + lead].clone()
                            }
                        })
                        .collect();
                    self.expr(ops[0], &m)?
                }
                Op::Transpose { perm } => {
                    let mut m: Map = vec![(vec![], 0); perm.len()];
                    for (i, &p) in perm.iter().enumerate() {
                        m[p] = map[i].clone();
                    }
                    self.expr(ops[0], &m)?
                }
                Op::Slice { axis, start, .. } => {
                    let mut m = map.clone();
                    m[*axis].1 += *start as i64;
                    self.expr(ops[0], &m)?
                }
                Op::Unfold {
                    strides, dilation, ..
                } => {
                    let m = unfold_map(map, strides, dilation);
                    self.expr(ops[0], &m)?
                }
                Op::OneHot { .. } => {
                    let r = node.ty.rank();
                    let label = self.expr(ops[0], &map[..r - 1].to_vec())?;
                    let (coef, c) = map[r - 1].clone();
                    let coord = self.counter(Counter {
                        storage: None,
                        strides: coef,
                        offset: c,
                    });
                    self.push(Expr::OneHot { label, coord })
                }
                Op::RandomUniform { seed } => {
                    let step = self.expr(ops[0], &Vec::new())?;
                    let index = self.affine(None, &node.ty.shape, map);
                    self.push(Expr::Random {
                        seed: *seed,
                        step,
                        index,
                    })
                }
                Op::RandomNormal { seed } => {
                    let step = self.expr(ops[0], &Vec::new())?;
                    let index = self.affine(None, &node.ty.shape, map);
                    self.push(Expr::RandomNormal {
                        seed: *seed,
                        step,
                        index,
                    })
                }
                Op::RandomBernoulli { seed } => {
                    // The uniform draw of the same seed and stream compared
                    // with the scalar `p`: exactly `op::random_bernoulli`.
                    let step = self.expr(ops[0], &Vec::new())?;
                    let p = self.expr(ops[1], &Vec::new())?;
                    let index = self.affine(None, &node.ty.shape, map);
                    let u = self.push(Expr::Random {
                        seed: *seed,
                        step,
                        index,
                    });
                    self.push(Expr::Binary(BinaryOp::Lt, DType::F32, u, p))
                }
                Op::Gather => {
                    // Fusion stores both operands (gather is no fusable consumer).
                    let table = ops[0];
                    if !self.plan.is_materialized(table) {
                        return Err(self.err(n, "gather table is not stored (fusion bug)"));
                    }
                    let tshape = &g.node(table).ty.shape;
                    let (rows, width) = (tshape[0], tshape[1]);
                    let too_big = |x: usize| u32::try_from(x).is_err() || x == 0;
                    if too_big(rows) || too_big(width) {
                        return Err(self.err(n, "gather table extents must be in [1, 2³²)"));
                    }
                    let r = node.ty.rank();
                    let ids_map = map[..r - 1].to_vec();
                    let id = self.expr(ops[1], &ids_map)?;
                    let fault = self.id_fault(n, ops[1], &ids_map)?;
                    let s = self.plan.storage_of(table);
                    let col = vec![(vec![0; self.rank], 0), map[r - 1].clone()];
                    let table = self.affine(Some(s), tshape, &col);
                    self.push(Expr::Gather {
                        id,
                        table,
                        rows: rows as u32,
                        width: width as u32,
                        fault,
                    })
                }
                Op::Input { .. }
                | Op::Param { .. }
                | Op::Const(_)
                | Op::Reshape
                | Op::Reduce { .. }
                | Op::ArgMax { .. }
                | Op::MatMul { .. }
                | Op::Fold { .. }
                | Op::Concat { .. }
                | Op::ScatterAdd { .. }
                | Op::AllReduceMean => {
                    return Err(self.err(n, "cannot be evaluated inside a loop (fusion bug)"))
                }
            }
        };
        self.memo.insert(key, e);
        Ok(e)
    }

    /// The fault record of node `n` checking the ids `ids`, read at `map`.
    fn id_fault(&mut self, n: NodeId, ids: NodeId, map: &Map) -> Result<IdFault, CodegenError> {
        let shape = self.plan.graph.node(ids).ty.shape.to_vec();
        if u32::try_from(shape.iter().product::<usize>()).is_err() {
            return Err(self.err(n, "more than 2³² ids"));
        }
        let pos = self.affine(None, &shape, map);
        Ok(IdFault { node: n, pos })
    }

    fn store_counter(&mut self, n: NodeId, shape: &[usize], map: &Map) -> usize {
        let s = self.plan.storage_of(n);
        self.affine(Some(s), shape, map)
    }

    fn finish(
        self,
        dims: Vec<usize>,
        roots: Vec<NestRoot>,
        keep_last: bool,
        label: String,
    ) -> Nest {
        Nest {
            dims,
            counters: self.counters,
            exprs: self.exprs,
            roots,
            keep_last,
            serial: false,
            label,
        }
    }
}

/// Options for [`kernel_body`].
#[derive(Clone, Copy, Debug)]
pub struct BodyOptions {
    /// Matmuls with `batch·m·n·k` at most this become register-blocked JIT
    /// kernels ([`super::matmul`]: 4 rows × 8 columns of accumulators);
    /// larger ones call a packed GEMM routine (the runtime's own AVX-512
    /// GEMM, or the `gemm` crate without AVX-512), which pays a fixed per-call
    /// cost for packing. The default, 64³, suits the `gemm` crate (measured
    /// with `perf_figures -- --ignored matmul`, one thread: square n³ JIT vs
    /// crate 0.10 vs 0.53 µs at n = 8, 4.5 vs 5.1 at 32, 32 vs 35 at 64, 166
    /// vs 235 at 128); the runtime lowers it to 16³ when its own GEMM runs
    /// (see `lossgraph_runtime::JitOptions`).
    pub inline_matmul_max: usize,
}

impl Default for BodyOptions {
    fn default() -> Self {
        BodyOptions {
            inline_matmul_max: 64 * 64 * 64,
        }
    }
}

/// Lowers kernel `k` of `plan` to loop nests or a GEMM call.
pub fn kernel_body(plan: &Plan, k: usize, opts: &BodyOptions) -> Result<KernelBody, CodegenError> {
    let kernel = &plan.kernels[k];
    let g = &plan.graph;
    let root0 = kernel.roots[0];
    let node0 = g.node(root0);
    match kernel.kind {
        KernelKind::MatMul => {
            let Op::MatMul { trans_a, trans_b } = node0.op else {
                return Err(node_error(
                    g,
                    root0,
                    &format!("kernel {k}: gemm root is not a matmul"),
                ));
            };
            let ops = g.operands(root0);
            let (a, b) = (plan.storage_of(ops[0]), plan.storage_of(ops[1]));
            let at = &g.node(ops[0]).ty.shape;
            let r = at.len();
            let batch = if r == 3 { at[0] } else { 1 };
            let k_ext = if trans_a { at[r - 2] } else { at[r - 1] };
            let os = &node0.ty.shape;
            let gc = GemmCall {
                out: root0,
                a,
                b,
                batch,
                m: os[r - 2],
                n: os[r - 1],
                k: k_ext,
                trans_a,
                trans_b,
            };
            let mults = gc.batch * gc.m * gc.n * gc.k;
            let limit = opts.inline_matmul_max;
            if mults <= limit {
                Ok(KernelBody::SmallMatmul(gc))
            } else {
                Ok(KernelBody::Gemm(gc))
            }
        }
        KernelKind::Conv(pass) => {
            let mut call = crate::conv_calls::match_root(g, root0)
                .filter(|c| c.pass == pass)
                .ok_or_else(|| {
                    node_error(
                        g,
                        root0,
                        &format!(
                            "kernel {k}: not the {} pattern it was planned as",
                            pass.name()
                        ),
                    )
                })?;
            call.out = plan.storage_of(call.out);
            call.operands = call.operands.map(|o| plan.storage_of(o));
            Ok(KernelBody::Conv(call))
        }
        KernelKind::Pool(pass) => {
            let mut call = crate::pool_calls::match_root(g, root0)
                .filter(|c| c.pass == pass)
                .ok_or_else(|| {
                    node_error(
                        g,
                        root0,
                        &format!(
                            "kernel {k}: not the {} pattern it was planned as",
                            pass.name()
                        ),
                    )
                })?;
            call.out = plan.storage_of(call.out);
            for o in call.operands.iter_mut() {
                *o = plan.storage_of(*o);
            }
            Ok(KernelBody::Pool(call))
        }
        KernelKind::Elementwise => {
            let shape = node0.ty.shape.to_vec();
            let rank = shape.len();
            let ident = identity(rank);
            let mut b = Builder::new(plan, rank, kernel.roots.clone());
            let mut roots = Vec::new();
            for &r in &kernel.roots {
                let value = b.expr(r, &ident)?;
                let dst = b.store_counter(r, &shape, &ident);
                roots.push(NestRoot {
                    value,
                    dst,
                    mode: Mode::Store,
                    dtype: g.node(r).ty.dtype,
                    row: None,
                });
            }
            Ok(KernelBody::Nests(vec![b.finish(
                shape,
                roots,
                false,
                format!("k{k}"),
            )]))
        }
        KernelKind::Reduce => {
            let (rop, axes) = crate::fusion::reduce_parts(&node0.op).ok_or_else(|| {
                node_error(
                    g,
                    root0,
                    &format!("kernel {k}: reduce root is not a reduce"),
                )
            })?;
            let x = g.operands(root0)[0];
            let in_shape = g.node(x).ty.shape.to_vec();
            let out_shape = node0.ty.shape.to_vec();
            let dtype = node0.ty.dtype;
            let mut nests = Vec::new();
            let mode = if axes.is_empty() {
                Mode::Store
            } else {
                // Initialisation pass.
                let ident = identity(out_shape.len());
                let mut b = Builder::new(plan, out_shape.len(), vec![]);
                let init = match (rop, dtype) {
                    (ReduceOp::Sum, DType::F32) => Expr::ImmF(0.0),
                    (ReduceOp::Sum, DType::I32) => Expr::ImmI(0),
                    (ReduceOp::Max, DType::F32) => Expr::ImmF(f32::NEG_INFINITY),
                    (ReduceOp::Max, DType::I32) => Expr::ImmI(i32::MIN),
                };
                let value = b.push(init);
                let dst = b.store_counter(root0, &out_shape, &ident);
                let roots = vec![NestRoot {
                    value,
                    dst,
                    mode: Mode::Store,
                    dtype,
                    row: None,
                }];
                nests.push(b.finish(out_shape.clone(), roots, false, format!("k{k}.init")));
                match rop {
                    ReduceOp::Sum => Mode::Sum,
                    ReduceOp::Max => Mode::Max,
                }
            };
            let rank = in_shape.len();
            let ident = identity(rank);
            let mut b = Builder::new(plan, rank, vec![]);
            let value = b.expr(x, &ident)?;
            let out_map: Map = (0..rank)
                .filter(|i| !axes.contains(i))
                .map(|i| ident[i].clone())
                .collect();
            let dst = b.store_counter(root0, &out_shape, &out_map);
            let roots = vec![NestRoot {
                value,
                dst,
                mode,
                dtype,
                row: None,
            }];
            nests.push(b.finish(in_shape, roots, false, format!("k{k}")));
            Ok(KernelBody::Nests(nests))
        }
        KernelKind::AllReduce => {
            if node0.op != Op::AllReduceMean || node0.ty.dtype != DType::F32 {
                return Err(node_error(
                    g,
                    root0,
                    &format!("kernel {k}: all_reduce root is not an f32 all_reduce_mean"),
                ));
            }
            Ok(KernelBody::AllReduce {
                out: root0,
                x: plan.storage_of(g.operands(root0)[0]),
                numel: node0.ty.numel(),
            })
        }
        KernelKind::Scatter => {
            let Op::ScatterAdd { rows } = node0.op else {
                return Err(node_error(
                    g,
                    root0,
                    &format!("kernel {k}: scatter root is not a scatter_add"),
                ));
            };
            let ops = g.operands(root0);
            let (ids, values) = (ops[0], ops[1]);
            let out_shape = node0.ty.shape.to_vec();
            let too_big = |x: usize| u32::try_from(x).is_err() || x == 0;
            if too_big(rows) || too_big(out_shape[1]) {
                return Err(node_error(
                    g,
                    root0,
                    "scatter_add table extents must be in [1, 2³²)",
                ));
            }
            // Zero the table.
            let mut b = Builder::new(plan, 2, vec![]);
            let value = b.push(Expr::ImmF(0.0));
            let dst = b.store_counter(root0, &out_shape, &identity(2));
            let init = NestRoot {
                value,
                dst,
                mode: Mode::Store,
                dtype: DType::F32,
                row: None,
            };
            let mut nests =
                vec![b.finish(out_shape.clone(), vec![init], false, format!("k{k}.init"))];
            // Add value row s into table row ids[s], column by column.
            let vshape = g.node(values).ty.shape.to_vec();
            let rank = vshape.len();
            let ident = identity(rank);
            let mut b = Builder::new(plan, rank, vec![]);
            let value = b.expr(values, &ident)?;
            let ids_map = ident[..rank - 1].to_vec();
            let id = b.expr(ids, &ids_map)?;
            let fault = b.id_fault(root0, ids, &ids_map)?;
            let col: Map = vec![(vec![0; rank], 0), ident[rank - 1].clone()];
            let dst = b.store_counter(root0, &out_shape, &col);
            let root = NestRoot {
                value,
                dst,
                mode: Mode::Sum,
                dtype: DType::F32,
                row: Some(DynRow {
                    id,
                    rows: rows as u32,
                    width: out_shape[1] as u32,
                    fault,
                }),
            };
            nests.push(b.finish(vshape, vec![root], false, format!("k{k}")));
            Ok(KernelBody::Nests(nests))
        }
        KernelKind::ArgMax => {
            let Op::ArgMax { axis } = node0.op else {
                return Err(node_error(
                    g,
                    root0,
                    &format!("kernel {k}: argmax root is not an argmax"),
                ));
            };
            let x = g.operands(root0)[0];
            let in_shape = g.node(x).ty.shape.to_vec();
            let rank = in_shape.len();
            let order: Vec<usize> = (0..rank).filter(|&i| i != axis).chain([axis]).collect();
            let dims: Vec<usize> = order.iter().map(|&i| in_shape[i]).collect();
            let ident = identity(rank);
            // x axis order[p] is loop dimension p.
            let mut xmap: Map = vec![(vec![], 0); rank];
            for (p, &i) in order.iter().enumerate() {
                xmap[i] = ident[p].clone();
            }
            let mut b = Builder::new(plan, rank, vec![]);
            let value = b.expr(x, &xmap)?;
            let out_map: Map = ident[..rank - 1].to_vec();
            let dst = b.store_counter(root0, &node0.ty.shape, &out_map);
            let roots = vec![NestRoot {
                value,
                dst,
                mode: Mode::ArgMax,
                dtype: DType::I32,
                row: None,
            }];
            Ok(KernelBody::Nests(vec![b.finish(
                dims,
                roots,
                true,
                format!("k{k}"),
            )]))
        }
        KernelKind::Fold => {
            let Op::Fold {
                ref window,
                ref strides,
                ref dilation,
            } = node0.op
            else {
                return Err(node_error(
                    g,
                    root0,
                    &format!("kernel {k}: fold root is not a fold"),
                ));
            };
            let out_shape = node0.ty.shape.to_vec();
            // Zero fill, then add every window element at its image position.
            let ident = identity(out_shape.len());
            let mut b = Builder::new(plan, out_shape.len(), vec![]);
            let value = b.push(Expr::ImmF(0.0));
            let dst = b.store_counter(root0, &out_shape, &ident);
            let init = NestRoot {
                value,
                dst,
                mode: Mode::Store,
                dtype: DType::F32,
                row: None,
            };
            let mut nests =
                vec![b.finish(out_shape.clone(), vec![init], false, format!("k{k}.init"))];
            let x = g.operands(root0)[0];
            let in_shape = g.node(x).ty.shape.to_vec();
            let ident = identity(in_shape.len());
            let mut b = Builder::new(plan, in_shape.len(), vec![]);
            let value = b.expr(x, &ident)?;
            let dst = b.store_counter(root0, &out_shape, &unfold_map(&ident, strides, dilation));
            let roots = vec![NestRoot {
                value,
                dst,
                mode: Mode::Sum,
                dtype: DType::F32,
                row: None,
            }];
            let mut nest = b.finish(in_shape.clone(), roots, false, format!("k{k}"));
            // Distinct images (n) are disjoint, and the outer loop is n, or n
            // merged with o₁ only when windows along axis 1 do not overlap.
            // A single image with overlapping windows (span > stride on some
            // axis) may have the outer loop over o, which is not disjoint.
            let r = strides.len();
            let disjoint = (0..r).all(|i| (window[i] - 1) * dilation[i] < strides[i]);
            nest.serial = in_shape[0] == 1 && !disjoint;
            nests.push(nest);
            Ok(KernelBody::Nests(nests))
        }
        KernelKind::Concat => {
            let Op::Concat { axis } = node0.op else {
                return Err(node_error(
                    g,
                    root0,
                    &format!("kernel {k}: concat root is not a concat"),
                ));
            };
            let out_shape = node0.ty.shape.to_vec();
            let mut nests = Vec::new();
            let mut start = 0usize;
            for (p, o) in g.operands(root0).into_iter().enumerate() {
                let shape = g.node(o).ty.shape.to_vec();
                let rank = shape.len();
                let ident = identity(rank);
                let mut b = Builder::new(plan, rank, vec![]);
                let value = b.expr(o, &ident)?;
                let mut out_map = ident.clone();
                out_map[axis].1 = start as i64;
                let dst = b.store_counter(root0, &out_shape, &out_map);
                start += shape[axis];
                let roots = vec![NestRoot {
                    value,
                    dst,
                    mode: Mode::Store,
                    dtype: node0.ty.dtype,
                    row: None,
                }];
                nests.push(b.finish(shape, roots, false, format!("k{k}.part{p}")));
            }
            Ok(KernelBody::Nests(nests))
        }
    }
}
