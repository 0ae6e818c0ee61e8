//! Register-blocked matmul kernels for small products.
//!
//! `fn(lo, hi, arena, store)` ([`super::kernel_signature`]) computes rows `lo..hi` of `out = op(a)·op(b)` (for a batched
//! product, `lo..hi` ranges over the batch). When `b` is not transposed,
//! blocks of 4 rows × 8 columns are held in eight `f32x4` accumulators (then
//! 4-column and single-column blocks, then single rows), streaming `a[i,p]`
//! as splats and `b[p,·]` as vectors with strength-reduced pointers; when `b` is transposed each output element is a dot product
//! along `p` with an `f32x4` accumulator reduced once (lanes in order), so
//! results are deterministic. Products use `fma` when the host has it.

use super::{buf_addr, flags, kernel_signature, BufAddr, LowerOptions, LoweredNest};
use crate::fusion::CodegenError;
use crate::lower_clif::nest::GemmCall;
use cranelift_codegen::ir::{types, Function, InstBuilder, UserFuncName, Value};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

/// [`super::counted_loop`] with a body that cannot fail.
fn for_range(
    b: &mut FunctionBuilder,
    start: Value,
    end: Value,
    step: i64,
    body: &mut dyn FnMut(&mut FunctionBuilder, Value),
) -> Value {
    let r: Result<Value, std::convert::Infallible> =
        super::counted_loop(b, start, end, step, &mut |b, i| {
            body(b, i);
            Ok(())
        });
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

struct Mm {
    m: i64,
    n: i64,
    k: i64,
    /// Element strides of a over (i, p) and b over (p, j).
    a_i: i64,
    a_p: i64,
    b_p: i64,
    b_j: i64,
    fma: bool,
}

impl Mm {
    fn madd(&self, b: &mut FunctionBuilder, x: Value, y: Value, acc: Value) -> Value {
        if self.fma {
            b.ins().fma(x, y, acc)
        } else {
            let p = b.ins().fmul(x, y);
            b.ins().fadd(acc, p)
        }
    }

    /// `ptr + idx·stride` elements (4 bytes each).
    fn at(b: &mut FunctionBuilder, ptr: Value, idx: Value, stride: i64) -> Value {
        let off = b.ins().imul_imm_s(idx, stride * 4);
        b.ins().iadd(ptr, off)
    }

    /// One output row `i` of one matrix: `a`, `bm`, `out` point at the matrix.
    /// Output rows `i .. i + rows` of one matrix (`b` not transposed): column
    /// blocks of 8, 4, then 1, with `rows × (1 or 2)` independent accumulators
    /// so consecutive `fma`s do not wait on each other.
    fn rows_block(
        &self,
        b: &mut FunctionBuilder,
        a: Value,
        bm: Value,
        out: Value,
        i: Value,
        rows: usize,
    ) {
        let zero = b.ins().iconst(types::I64, 0);
        let n = b.ins().iconst(types::I64, self.n);
        let k = b.ins().iconst(types::I64, self.k);
        let arows: Vec<Value> = (0..rows)
            .map(|r| {
                let ir = b.ins().iadd_imm_s(i, r as i64);
                Self::at(b, a, ir, self.a_i)
            })
            .collect();
        let orows: Vec<Value> = (0..rows)
            .map(|r| {
                let ir = b.ins().iadd_imm_s(i, r as i64);
                Self::at(b, out, ir, self.n)
            })
            .collect();
        let mut j = zero;
        for width in [8i64, 4, 1] {
            j = for_range(b, j, n, width, &mut |b, j| {
                let vec = width > 1;
                let ty = if vec { types::F32X4 } else { types::F32 };
                let nacc = if width == 8 { 2 } else { 1 };
                let z = b.ins().f32const(0.0);
                let z = if vec {
                    b.ins().splat(types::F32X4, z)
                } else {
                    z
                };
                let vars: Vec<Vec<_>> = (0..rows)
                    .map(|_| {
                        (0..nacc)
                            .map(|_| {
                                let v = b.declare_var(ty);
                                b.def_var(v, z);
                                v
                            })
                            .collect()
                    })
                    .collect();
                // Strength-reduced pointers: a[i+r, p] and b[p, j] advance per p.
                let bptr = b.declare_var(types::I64);
                let b0 = Self::at(b, bm, j, 1);
                b.def_var(bptr, b0);
                let aptrs: Vec<_> = arows
                    .iter()
                    .map(|&ar| {
                        let v = b.declare_var(types::I64);
                        b.def_var(v, ar);
                        v
                    })
                    .collect();
                for_range(b, zero, k, 1, &mut |b, _p| {
                    let bp = b.use_var(bptr);
                    let bvs: Vec<Value> = (0..nacc)
                        .map(|q| b.ins().load(ty, flags(), bp, q * 16))
                        .collect();
                    for (r, ap_var) in aptrs.iter().enumerate() {
                        let ap = b.use_var(*ap_var);
                        let av = b.ins().load(types::F32, flags(), ap, 0);
                        let av = if vec {
                            b.ins().splat(types::F32X4, av)
                        } else {
                            av
                        };
                        for (q, v) in vars[r].iter().enumerate() {
                            let acc = b.use_var(*v);
                            let res = self.madd(b, av, bvs[q], acc);
                            b.def_var(*v, res);
                        }
                        let next = b.ins().iadd_imm_s(ap, self.a_p * 4);
                        b.def_var(*ap_var, next);
                    }
                    let next = b.ins().iadd_imm_s(bp, self.b_p * 4);
                    b.def_var(bptr, next);
                });
                for (r, &orow) in orows.iter().enumerate() {
                    let optr = Self::at(b, orow, j, 1);
                    for (q, v) in vars[r].iter().enumerate() {
                        let acc = b.use_var(*v);
                        b.ins().store(flags(), acc, optr, (q * 16) as i32);
                    }
                }
            });
        }
    }

    /// Rows `lo..hi` of one matrix: blocks of 4 rows, then single rows.
    fn rows(&self, b: &mut FunctionBuilder, a: Value, bm: Value, out: Value, lo: Value, hi: Value) {
        if self.b_j == 1 {
            let rest = for_range(b, lo, hi, 4, &mut |b, i| {
                self.rows_block(b, a, bm, out, i, 4)
            });
            for_range(b, rest, hi, 1, &mut |b, i| {
                self.rows_block(b, a, bm, out, i, 1)
            });
        } else {
            for_range(b, lo, hi, 1, &mut |b, i| self.row(b, a, bm, out, i));
        }
    }

    /// One output row `i` of one matrix with `b` transposed: dot products
    /// along `p`, four output columns at a time (four independent
    /// accumulators), vectorised over `p` when `a` and `b` are contiguous in `p`.
    fn row(&self, b: &mut FunctionBuilder, a: Value, bm: Value, out: Value, i: Value) {
        let arow = Self::at(b, a, i, self.a_i);
        let orow = Self::at(b, out, i, self.n);
        let zero = b.ins().iconst(types::I64, 0);
        let n = b.ins().iconst(types::I64, self.n);
        let k = b.ins().iconst(types::I64, self.k);
        let vec_p = self.a_p == 1 && self.b_p == 1 && self.k >= 4;
        let mut j0 = zero;
        for cols in [4usize, 1] {
            j0 = for_range(b, j0, n, cols as i64, &mut |b, j| {
                let bcols: Vec<Value> = (0..cols)
                    .map(|c| {
                        let jc = b.ins().iadd_imm_s(j, c as i64);
                        Self::at(b, bm, jc, self.b_j)
                    })
                    .collect();
                let z = b.ins().f32const(0.0);
                let sums: Vec<_> = (0..cols)
                    .map(|_| {
                        let s = b.declare_var(types::F32);
                        b.def_var(s, z);
                        s
                    })
                    .collect();
                let mut p0 = zero;
                if vec_p {
                    let zv = b.ins().splat(types::F32X4, z);
                    let vs: Vec<_> = (0..cols)
                        .map(|_| {
                            let v = b.declare_var(types::F32X4);
                            b.def_var(v, zv);
                            v
                        })
                        .collect();
                    p0 = for_range(b, zero, k, 4, &mut |b, p| {
                        let ap = Self::at(b, arow, p, 1);
                        let x = b.ins().load(types::F32X4, flags(), ap, 0);
                        for (c, v) in vs.iter().enumerate() {
                            let bp = Self::at(b, bcols[c], p, 1);
                            let y = b.ins().load(types::F32X4, flags(), bp, 0);
                            let acc = b.use_var(*v);
                            let r = self.madd(b, x, y, acc);
                            b.def_var(*v, r);
                        }
                    });
                    for (c, v) in vs.iter().enumerate() {
                        let acc = b.use_var(*v);
                        let mut t = b.use_var(sums[c]);
                        for l in 0..4u8 {
                            let e = b.ins().extractlane(acc, l);
                            t = b.ins().fadd(t, e);
                        }
                        b.def_var(sums[c], t);
                    }
                }
                for_range(b, p0, k, 1, &mut |b, p| {
                    let ap = Self::at(b, arow, p, self.a_p);
                    let x = b.ins().load(types::F32, flags(), ap, 0);
                    for (c, s) in sums.iter().enumerate() {
                        let bp = Self::at(b, bcols[c], p, self.b_p);
                        let y = b.ins().load(types::F32, flags(), bp, 0);
                        let acc = b.use_var(*s);
                        let r = self.madd(b, x, y, acc);
                        b.def_var(*s, r);
                    }
                });
                let optr = Self::at(b, orow, j, 1);
                for (c, s) in sums.iter().enumerate() {
                    let acc = b.use_var(*s);
                    b.ins().store(flags(), acc, optr, (c * 4) as i32);
                }
            });
        }
    }
}

/// Lowers a small matmul (see the module docs); `addr(node)` gives buffer addresses.
pub fn lower_matmul(
    gc: &GemmCall,
    addr: &dyn Fn(lossgraph_ir::NodeId) -> Result<BufAddr, CodegenError>,
    opts: &LowerOptions,
    label: &str,
) -> Result<LoweredNest, CodegenError> {
    let (m, n, k) = (gc.m as i64, gc.n as i64, gc.k as i64);
    let mm = Mm {
        m,
        n,
        k,
        a_i: if gc.trans_a { 1 } else { k },
        a_p: if gc.trans_a { m } else { 1 },
        b_p: if gc.trans_b { 1 } else { n },
        b_j: if gc.trans_b { k } else { 1 },
        fma: opts.fma,
    };
    let (a0, b0, o0) = (addr(gc.a)?, addr(gc.b)?, addr(gc.out)?);
    let sig = kernel_signature(opts.call_conv);
    let mut func = Function::with_name_signature(UserFuncName::testcase(label), sig);
    let mut fctx = FunctionBuilderContext::new();
    let batched = gc.batch > 1;
    {
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (lo, hi) = (params[0], params[1]);
        let a = buf_addr(&mut b, &params, a0, 0);
        let bm = buf_addr(&mut b, &params, b0, 0);
        let out = buf_addr(&mut b, &params, o0, 0);
        if batched {
            for_range(&mut b, lo, hi, 1, &mut |b, t| {
                let ab = Mm::at(b, a, t, mm.m * mm.k);
                let bb = Mm::at(b, bm, t, mm.k * mm.n);
                let ob = Mm::at(b, out, t, mm.m * mm.n);
                let zero = b.ins().iconst(types::I64, 0);
                let mv = b.ins().iconst(types::I64, mm.m);
                mm.rows(b, ab, bb, ob, zero, mv);
            });
        } else {
            mm.rows(&mut b, a, bm, out, lo, hi);
        }
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(opts.frontend);
    }
    Ok(LoweredNest {
        func,
        outer: if batched { gc.batch } else { gc.m },
        splittable: true,
        work: gc.batch * gc.m * gc.n * gc.k.max(1),
        vectorized: true,
    })
}
