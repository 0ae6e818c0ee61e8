//! Accuracy tests of the inline Cranelift math routines (`lossgraph_compiler::clif_math`).
//!
//! Each function is JIT-compiled into `extern "C" fn(in, out, n)` that walks the array four
//! lanes at a time through the `f32x4` path and finishes with a scalar `f32` tail; a second
//! kernel runs every element through the scalar path. Both are compared with an `f64`
//! reference rounded to `f32` (≤ 0.5 ulp from the true value, up to `f64` error) on a few
//! million inputs per function: edge cases, a dense sweep of the interesting range, runs of
//! consecutive floats around critical points, and random bit patterns covering every
//! exponent. Errors are measured in ulps as the distance between the two `f32` values in the
//! ordered integer representation, so subnormal results count in units of 2⁻¹⁴⁹ and no
//! absolute-error fallback is needed anywhere (the odd functions keep full relative accuracy
//! near 0, `log` near 1). Special values (NaN, ±inf, signed zeros) must match exactly.
//!
//! Run with `--nocapture` to see the measured maxima.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I64};
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, Value};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};
use lossgraph_compiler::clif_math::{self, MathCtx};
use lossgraph_ir::rng::SplitMix64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fun {
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Erf,
    Sin,
    Cos,
}

impl Fun {
    fn emit(self, ctx: MathCtx, b: &mut FunctionBuilder, x: Value) -> Value {
        match self {
            Fun::Exp => ctx.exp(b, x),
            Fun::Log => ctx.log(b, x),
            Fun::Tanh => ctx.tanh(b, x),
            Fun::Sigmoid => ctx.sigmoid(b, x),
            Fun::Erf => ctx.erf(b, x),
            Fun::Sin => ctx.sin(b, x),
            Fun::Cos => ctx.cos(b, x),
        }
    }

    /// Independent reference: the function evaluated in f64, rounded to f32.
    fn reference(self, x: f32) -> f32 {
        let x = f64::from(x);
        (match self {
            Fun::Exp => x.exp(),
            Fun::Log => x.ln(),
            Fun::Tanh => x.tanh(),
            Fun::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Fun::Erf => erf64(x),
            Fun::Sin => x.sin(),
            Fun::Cos => x.cos(),
        }) as f32
    }

    /// Rust's own f32 function (for the report only).
    fn std_f32(self, x: f32) -> f32 {
        match self {
            Fun::Exp => x.exp(),
            Fun::Log => x.ln(),
            Fun::Tanh => x.tanh(),
            Fun::Sigmoid => (1.0 / (1.0 + (-f64::from(x)).exp())) as f32,
            Fun::Erf => erf64(f64::from(x)) as f32,
            Fun::Sin => x.sin(),
            Fun::Cos => x.cos(),
        }
    }
}

/// erf in f64: for |x| < 3 the everywhere-positive series
/// `erf x = 2/√π · e^{−x²} · Σ 2ⁿ x^{2n+1} / (1·3·…·(2n+1))` (no cancellation); for
/// 3 ≤ |x| < 6 `1 − erfc x` with erfc from its continued fraction
/// `erfc x = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`; ±1 beyond.
fn erf64(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let a = x.abs();
    let r = if a < 3.0 {
        erf_series(a)
    } else if a < 6.0 {
        1.0 - erfc_cf(a)
    } else {
        1.0
    };
    r.copysign(x)
}

fn erf_series(a: f64) -> f64 {
    let two_x2 = 2.0 * a * a;
    let mut term = a;
    let mut sum = a;
    let mut n = 0.0;
    while term > sum * 1e-18 {
        term *= two_x2 / (2.0 * n + 3.0);
        sum += term;
        n += 1.0;
    }
    2.0 / std::f64::consts::PI.sqrt() * (-a * a).exp() * sum
}

fn erfc_cf(a: f64) -> f64 {
    // Evaluate the continued fraction backwards from a deep level.
    let mut f = a;
    for k in (1..=80).rev() {
        f = a + (k as f64 / 2.0) / f;
    }
    (-a * a).exp() / std::f64::consts::PI.sqrt() / f
}

#[test]
fn erf_reference_matches_tabulated_values() {
    // Tabulated values (Abramowitz & Stegun table 7.1, extended precision).
    let table = [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
        (4.0, 0.999_999_984_582_742_1),
    ];
    for (x, want) in table {
        let got = erf64(x);
        assert!(
            (got - want).abs() < 4e-16,
            "erf64({x}) = {got}, want {want}"
        );
        assert_eq!(erf64(-x), -got);
    }
    // The two methods agree where they meet.
    for x in [2.5, 3.0, 3.5] {
        let (s, c) = (erf_series(x), 1.0 - erfc_cf(x));
        assert!(
            (s - c).abs() < 1e-15,
            "series {s} vs continued fraction {c} at {x}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// JIT harness.

type Kernel = unsafe extern "C" fn(*const f32, *mut f32, usize);

fn host_isa() -> cranelift_codegen::isa::OwnedTargetIsa {
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").unwrap();
    let isa = cranelift_native::builder().unwrap();
    isa.finish(settings::Flags::new(flags)).unwrap()
}

/// A compiled kernel `out[i] = f(in[i])` for `i < n`. With `vector`, blocks of four go through
/// the f32x4 code and the rest through the scalar code; otherwise everything is scalar.
struct Compiled {
    _module: JITModule,
    kernel: Kernel,
    /// Whether the compiled code contains a call (it must not: everything is inline).
    calls: bool,
}

fn compile(fun: Fun, ctx: MathCtx, vector: bool) -> Compiled {
    let mut module = JITModule::new(JITBuilder::with_isa(host_isa(), default_libcall_names()));
    let mut sig = module.make_signature();
    for _ in 0..3 {
        sig.params.push(AbiParam::new(I64));
    }
    let id = module
        .declare_function("kernel", Linkage::Local, &sig)
        .unwrap();
    let mut cctx = module.make_context();
    cctx.func.signature = sig;
    cctx.set_disasm(true);
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut cctx.func, &mut fctx);
        let entry = b.create_block();
        let vhead = b.create_block();
        let vbody = b.create_block();
        let shead = b.create_block();
        let sbody = b.create_block();
        let exit = b.create_block();
        for blk in [vhead, vbody, shead, sbody] {
            b.append_block_param(blk, I64);
        }
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let (pin, pout, n) = {
            let p = b.block_params(entry);
            (p[0], p[1], p[2])
        };
        let zero = b.ins().iconst(I64, 0);
        let first = if vector { vhead } else { shead };
        b.ins().jump(first, &[zero.into()]);
        let flags = MemFlagsData::new().with_notrap();

        // Vector loop: while i + 4 <= n.
        b.switch_to_block(vhead);
        let i = b.block_params(vhead)[0];
        let i4 = b.ins().iadd_imm_s(i, 4);
        let more = b.ins().icmp(IntCC::UnsignedLessThanOrEqual, i4, n);
        b.ins().brif(more, vbody, &[i.into()], shead, &[i.into()]);
        b.switch_to_block(vbody);
        let i = b.block_params(vbody)[0];
        let off = b.ins().ishl_imm_s(i, 2);
        let src = b.ins().iadd(pin, off);
        let dst = b.ins().iadd(pout, off);
        let x = b.ins().load(F32X4, flags, src, 0);
        let y = fun.emit(ctx, &mut b, x);
        b.ins().store(flags, y, dst, 0);
        let next = b.ins().iadd_imm_s(i, 4);
        b.ins().jump(vhead, &[next.into()]);

        // Scalar loop: while i < n.
        b.switch_to_block(shead);
        let i = b.block_params(shead)[0];
        let more = b.ins().icmp(IntCC::UnsignedLessThan, i, n);
        b.ins().brif(more, sbody, &[i.into()], exit, &[]);
        b.switch_to_block(sbody);
        let i = b.block_params(sbody)[0];
        let off = b.ins().ishl_imm_s(i, 2);
        let src = b.ins().iadd(pin, off);
        let dst = b.ins().iadd(pout, off);
        let x = b.ins().load(F32, flags, src, 0);
        let y = fun.emit(ctx, &mut b, x);
        b.ins().store(flags, y, dst, 0);
        let next = b.ins().iadd_imm_s(i, 1);
        b.ins().jump(shead, &[next.into()]);

        b.switch_to_block(exit);
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(module.target_config());
    }
    module.define_function(id, &mut cctx).unwrap();
    let vcode = cctx
        .compiled_code()
        .and_then(|c| c.vcode.clone())
        .unwrap_or_default();
    let calls = vcode.lines().any(|l| l.trim_start().starts_with("call"));
    module.clear_context(&mut cctx);
    module.finalize_definitions().unwrap();
    let ptr = module.get_finalized_function(id);
    // SAFETY: `ptr` is the finalized code of the function declared above with the signature
    // (i64, i64, i64) -> () in the host calling convention, which matches `Kernel`.
    let kernel = unsafe { std::mem::transmute::<*const u8, Kernel>(ptr) };
    Compiled {
        _module: module,
        kernel,
        calls,
    }
}

fn run(c: &Compiled, xs: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; xs.len()];
    // SAFETY: the kernel reads `n` f32 from `in` and writes `n` f32 to `out` (unaligned
    // accesses are allowed); both slices have exactly `n` elements and do not overlap.
    unsafe { (c.kernel)(xs.as_ptr(), out.as_mut_ptr(), xs.len()) };
    out
}

// ---------------------------------------------------------------------------------------------
// Inputs and error measurement.

/// f32 → integer monotone in the float order (−0 and +0 both map to 0).
fn ordered(x: f32) -> i64 {
    let b = x.to_bits() as i32;
    i64::from(if b < 0 { i32::MIN - b } else { b })
}

/// ulp distance; `u64::MAX` when special values (NaN, ±inf, sign of zero) do not match.
fn ulps(got: f32, want: f32) -> u64 {
    if want.is_nan() || got.is_nan() {
        return if want.is_nan() && got.is_nan() {
            0
        } else {
            u64::MAX
        };
    }
    if want.is_infinite() || got.is_infinite() {
        return if want == got { 0 } else { u64::MAX };
    }
    if want == 0.0 && got == 0.0 && want.is_sign_negative() != got.is_sign_negative() {
        return u64::MAX;
    }
    (ordered(got) - ordered(want)).unsigned_abs()
}

fn edge_cases() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7fa0_0001), // signalling-NaN pattern
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
        f32::from_bits(0x007f_ffff),
        f32::from_bits(0x0040_0000),
        f32::EPSILON,
        1.0,
        -1.0,
        0.5,
        2.0,
        88.722_83,
        88.722_84,
        88.72,
        89.0,
        -87.336_55,
        -103.278_93,
        -103.972_08,
        -103.972_07,
        -104.0,
        -150.0,
        std::f32::consts::LN_2,
        std::f32::consts::FRAC_1_SQRT_2,
        std::f32::consts::SQRT_2,
        0.625,
        0.875,
        4.0,
        9.0,
        9.010_913,
        20.0,
    ];
    let base = v.clone();
    for x in base {
        for k in 1..=64u32 {
            v.push(f32::from_bits(x.to_bits().wrapping_add(k)));
            v.push(f32::from_bits(x.to_bits().wrapping_sub(k)));
        }
        v.push(-x);
    }
    v
}

/// `n` evenly spaced points on `[lo, hi]`.
fn sweep(lo: f32, hi: f32, n: usize, out: &mut Vec<f32>) {
    for i in 0..n {
        let t = i as f64 / (n - 1) as f64;
        out.push((f64::from(lo) + t * (f64::from(hi) - f64::from(lo))) as f32);
    }
}

/// `n` consecutive floats starting at `x`.
fn run_of(x: f32, n: u32, out: &mut Vec<f32>) {
    let b = x.to_bits();
    out.extend((0..n).map(|k| f32::from_bits(b.wrapping_add(k))));
}

fn inputs(fun: Fun) -> Vec<f32> {
    let mut v = edge_cases();
    let mut rng = SplitMix64::new(fun as u64);
    // Random bit patterns: every exponent, both signs, NaNs included.
    for _ in 0..1_000_000 {
        v.push(f32::from_bits((rng.next_u64() >> 32) as u32));
    }
    // Dense sweeps of the interesting range plus runs around critical points.
    match fun {
        Fun::Exp => {
            sweep(-104.5, 89.5, 1_000_000, &mut v);
            sweep(-1.0, 1.0, 200_000, &mut v);
            run_of(88.0, 100_000, &mut v); // up to and past the overflow threshold
            run_of(-103.0, 100_000, &mut v); // the subnormal range
            run_of(-87.0, 50_000, &mut v);
        }
        Fun::Log => {
            sweep(0.0, 4.0, 600_000, &mut v);
            sweep(0.0, 1e6, 200_000, &mut v);
            run_of(1.0, 200_000, &mut v);
            run_of(1.0 - 200_000.0 * f32::EPSILON / 2.0, 200_000, &mut v);
            run_of(f32::from_bits(1), 100_000, &mut v); // subnormals
            run_of(std::f32::consts::FRAC_1_SQRT_2 - 1e-3, 50_000, &mut v);
            run_of(std::f32::consts::SQRT_2 - 2e-3, 50_000, &mut v);
        }
        Fun::Tanh => {
            sweep(-12.0, 12.0, 1_000_000, &mut v);
            sweep(-1.0, 1.0, 400_000, &mut v);
            run_of(0.62, 100_000, &mut v);
            run_of(8.9, 50_000, &mut v);
        }
        Fun::Sigmoid => {
            sweep(-110.0, 30.0, 1_000_000, &mut v);
            sweep(-8.0, 8.0, 400_000, &mut v);
            run_of(-89.0, 100_000, &mut v); // exp(−x) overflow, result still normal
            run_of(-104.0, 100_000, &mut v); // subnormal results
        }
        Fun::Erf => {
            sweep(-5.0, 5.0, 1_000_000, &mut v);
            sweep(-1.0, 1.0, 300_000, &mut v);
            run_of(0.87, 100_000, &mut v);
            run_of(3.85, 100_000, &mut v);
        }
        Fun::Sin | Fun::Cos => {
            sweep(-SINCOS_ACCURATE, SINCOS_ACCURATE, 2_000_000, &mut v);
            sweep(-7.0, 7.0, 400_000, &mut v);
            run_of(std::f32::consts::PI - 1e-4, 100_000, &mut v); // around a zero of sin
            run_of(std::f32::consts::FRAC_PI_2 - 1e-4, 100_000, &mut v); // of cos
            run_of(1e-30, 100_000, &mut v);
            // The accurate reduction range only (plus ±inf and NaN): see `sincos_wide_range`.
            v.retain(|x| x.is_infinite() || x.is_nan() || x.abs() <= SINCOS_ACCURATE);
        }
    }
    v
}

/// sin/cos: the range of the exact Cody–Waite products (2¹³·π/2, rounded down).
const SINCOS_ACCURATE: f32 = 12_867.0;

struct Report {
    max_ulp: u64,
    worst_x: f32,
    max_ulp_std: u64,
}

/// Checks vector and scalar kernels for bit-identical results and measures the error.
fn measure(fun: Fun, ctx: MathCtx, xs: &[f32]) -> Report {
    let vk = compile(fun, ctx, true);
    let sk = compile(fun, ctx, false);
    assert!(!vk.calls, "{fun:?}: the generated code must not call out");
    let vy = run(&vk, xs);
    let sy = run(&sk, xs);
    let mut rep = Report {
        max_ulp: 0,
        worst_x: 0.0,
        max_ulp_std: 0,
    };
    for ((&x, &v), &s) in xs.iter().zip(&vy).zip(&sy) {
        assert!(
            v.to_bits() == s.to_bits() || (v.is_nan() && s.is_nan()),
            "{fun:?}({x:e}): vector path {v:e} != scalar path {s:e}"
        );
        let want = fun.reference(x);
        let u = ulps(v, want);
        assert!(
            u != u64::MAX,
            "{fun:?}({x:e} = {:#010x}) = {v:e}, reference {want:e}: special value mismatch",
            x.to_bits()
        );
        if u > rep.max_ulp {
            rep.max_ulp = u;
            rep.worst_x = x;
        }
        let us = ulps(v, fun.std_f32(x));
        if us != u64::MAX {
            rep.max_ulp_std = rep.max_ulp_std.max(us);
        }
    }
    rep
}

fn check(fun: Fun, bound: u64) {
    let xs = inputs(fun);
    let mut ctxs = vec![MathCtx { fma: false }];
    if MathCtx::host().fma {
        ctxs.push(MathCtx { fma: true });
    }
    for ctx in ctxs {
        let rep = measure(fun, ctx, &xs);
        println!(
            "{fun:?} (fma: {}): {} points, max error {} ulp at x = {:e} ({:#010x}); \
             {} ulp from Rust's f32 function",
            ctx.fma,
            xs.len(),
            rep.max_ulp,
            rep.worst_x,
            rep.worst_x.to_bits(),
            rep.max_ulp_std
        );
        assert!(
            rep.max_ulp <= bound,
            "{fun:?} (fma: {}): max error {} ulp at x = {:e} exceeds {bound}",
            ctx.fma,
            rep.max_ulp,
            rep.worst_x
        );
    }
}

#[test]
fn exp_accuracy() {
    check(Fun::Exp, 1);
}

#[test]
fn log_accuracy() {
    check(Fun::Log, 1);
}

#[test]
fn tanh_accuracy() {
    check(Fun::Tanh, 2);
}

#[test]
fn sigmoid_accuracy() {
    check(Fun::Sigmoid, 2);
}

#[test]
fn erf_accuracy() {
    check(Fun::Erf, 2);
}

/// Absolute error against f64 over the accurate range; the ulp error is reported by
/// `check` (large relative error only near the function's zeros, where the reduced
/// argument's absolute error ~2⁻⁵⁶·|j| is divided by a tiny result).
fn abs_error(fun: Fun, xs: &[f32]) -> (f64, f32) {
    let c = compile(fun, MathCtx::host(), true);
    let ys = run(&c, xs);
    let mut worst = (0.0f64, 0.0f32);
    for (&x, &y) in xs.iter().zip(&ys) {
        let want = match fun {
            Fun::Sin => f64::from(x).sin(),
            _ => f64::from(x).cos(),
        };
        let e = (f64::from(y) - want).abs();
        if e > worst.0 {
            worst = (e, x);
        }
    }
    worst
}

#[test]
fn sin_accuracy() {
    check(Fun::Sin, 2);
    let xs: Vec<f32> = inputs(Fun::Sin)
        .into_iter()
        .filter(|x| x.is_finite())
        .collect();
    let (e, at) = abs_error(Fun::Sin, &xs);
    println!("Sin: max absolute error {e:e} at x = {at:e} on |x| <= {SINCOS_ACCURATE}");
    assert!(e < 1.2e-7, "sin: absolute error {e:e} at {at:e}");
}

#[test]
fn cos_accuracy() {
    check(Fun::Cos, 2);
    let xs: Vec<f32> = inputs(Fun::Cos)
        .into_iter()
        .filter(|x| x.is_finite())
        .collect();
    let (e, at) = abs_error(Fun::Cos, &xs);
    println!("Cos: max absolute error {e:e} at x = {at:e} on |x| <= {SINCOS_ACCURATE}");
    assert!(e < 1.2e-7, "cos: absolute error {e:e} at {at:e}");
}

/// Beyond the accurate range: the absolute error grows with |x| (reported per decade);
/// beyond 2²² the result is NaN by design.
#[test]
fn sincos_wide_range() {
    for fun in [Fun::Sin, Fun::Cos] {
        for (lo, hi) in [(12_867.0f32, 1e5f32), (1e5, 1e6), (1e6, 4_194_304.0)] {
            let mut xs = Vec::new();
            sweep(lo, hi, 200_000, &mut xs);
            let (e, at) = abs_error(fun, &xs);
            println!("{fun:?}: max absolute error {e:e} at x = {at:e} on [{lo:e}, {hi:e}]");
            // Bounded by the input's own spacing (an f32 near x is only known to ±ulp(x)/2).
            assert!(e < f64::from(hi) * 2e-7, "{fun:?}: {e:e} at {at:e}");
        }
        let c = compile(fun, MathCtx::host(), true);
        let ys = run(&c, &[4_194_305.0, -1e7, 1e30, f32::MAX]);
        assert!(ys.iter().all(|y| y.is_nan()), "{fun:?}: {ys:?}");
    }
}

/// Hand-checked special values through the public free functions (host options).
#[test]
fn special_values() {
    type Emit = fn(&mut FunctionBuilder, Value) -> Value;
    type Case<'a> = (Fun, Emit, &'a [(f32, f32)]);
    let cases: [Case; 5] = [
        (
            Fun::Exp,
            clif_math::emit_exp,
            &[
                (0.0, 1.0),
                (-0.0, 1.0),
                (f32::NEG_INFINITY, 0.0),
                (f32::INFINITY, f32::INFINITY),
                (89.0, f32::INFINITY),
                (f32::MAX, f32::INFINITY),
                (-104.0, 0.0),
                (f32::MIN, 0.0),
                (f32::NAN, f32::NAN),
            ],
        ),
        (
            Fun::Log,
            clif_math::emit_log,
            &[
                (1.0, 0.0),
                (0.0, f32::NEG_INFINITY),
                (-0.0, f32::NEG_INFINITY),
                (-1.0, f32::NAN),
                (f32::NEG_INFINITY, f32::NAN),
                (f32::INFINITY, f32::INFINITY),
                (f32::NAN, f32::NAN),
                // ln(2^-149) = -149·ln 2 = -103.27892990343184…
                (f32::from_bits(1), -103.278_93),
            ],
        ),
        (
            Fun::Tanh,
            clif_math::emit_tanh,
            &[
                (0.0, 0.0),
                (-0.0, -0.0),
                (f32::INFINITY, 1.0),
                (f32::NEG_INFINITY, -1.0),
                (20.0, 1.0),
                (f32::NAN, f32::NAN),
            ],
        ),
        (
            Fun::Sigmoid,
            clif_math::emit_sigmoid,
            &[
                (0.0, 0.5),
                (-0.0, 0.5),
                (f32::INFINITY, 1.0),
                (f32::NEG_INFINITY, 0.0),
                (f32::MAX, 1.0),
                (f32::MIN, 0.0),
                (f32::NAN, f32::NAN),
            ],
        ),
        (
            Fun::Erf,
            clif_math::emit_erf,
            &[
                (0.0, 0.0),
                (-0.0, -0.0),
                (f32::INFINITY, 1.0),
                (f32::NEG_INFINITY, -1.0),
                (5.0, 1.0),
                (-5.0, -1.0),
                (f32::NAN, f32::NAN),
            ],
        ),
    ];
    for (fun, emit, table) in cases {
        let c = compile_with(emit);
        let xs: Vec<f32> = table.iter().map(|p| p.0).collect();
        let ys = run(&c, &xs);
        for (&(x, want), &got) in table.iter().zip(&ys) {
            let ok = if want.is_nan() {
                got.is_nan()
            } else {
                got.to_bits() == want.to_bits()
            };
            assert!(ok, "{fun:?}({x:e}) = {got:e}, want {want:e}");
        }
    }
}

fn compile_with(f: impl Fn(&mut FunctionBuilder, Value) -> Value) -> Compiled {
    // Minimal kernel: a scalar loop over all elements.
    let mut module = JITModule::new(JITBuilder::with_isa(host_isa(), default_libcall_names()));
    let mut sig = module.make_signature();
    for _ in 0..3 {
        sig.params.push(AbiParam::new(I64));
    }
    let id = module
        .declare_function("kernel", Linkage::Local, &sig)
        .unwrap();
    let mut cctx = module.make_context();
    cctx.func.signature = sig;
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut cctx.func, &mut fctx);
        let entry = b.create_block();
        let head = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.append_block_param(head, I64);
        b.append_block_param(body, I64);
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let (pin, pout, n) = {
            let p = b.block_params(entry);
            (p[0], p[1], p[2])
        };
        let zero = b.ins().iconst(I64, 0);
        b.ins().jump(head, &[zero.into()]);
        b.switch_to_block(head);
        let i = b.block_params(head)[0];
        let more = b.ins().icmp(IntCC::UnsignedLessThan, i, n);
        b.ins().brif(more, body, &[i.into()], exit, &[]);
        b.switch_to_block(body);
        let i = b.block_params(body)[0];
        let off = b.ins().ishl_imm_s(i, 2);
        let src = b.ins().iadd(pin, off);
        let dst = b.ins().iadd(pout, off);
        let flags = MemFlagsData::new().with_notrap();
        let x = b.ins().load(F32, flags, src, 0);
        let y = f(&mut b, x);
        b.ins().store(flags, y, dst, 0);
        let next = b.ins().iadd_imm_s(i, 1);
        b.ins().jump(head, &[next.into()]);
        b.switch_to_block(exit);
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(module.target_config());
    }
    module.define_function(id, &mut cctx).unwrap();
    module.clear_context(&mut cctx);
    module.finalize_definitions().unwrap();
    let ptr = module.get_finalized_function(id);
    // SAFETY: as in `compile`: the signature (i64, i64, i64) -> () matches `Kernel`.
    let kernel = unsafe { std::mem::transmute::<*const u8, Kernel>(ptr) };
    Compiled {
        _module: module,
        kernel,
        calls: false,
    }
}

/// Machine instructions of `fn(in, out) { *out = f(*in) }` on one f32x4, minus those of the
/// same function without `f` (load, store, prologue, return), and whether it calls out.
fn vector_insts(f: Option<Fun>, ctx: MathCtx) -> (usize, bool) {
    let mut module = JITModule::new(JITBuilder::with_isa(host_isa(), default_libcall_names()));
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(I64));
    sig.params.push(AbiParam::new(I64));
    let id = module
        .declare_function("one", Linkage::Local, &sig)
        .unwrap();
    let mut cctx = module.make_context();
    cctx.func.signature = sig;
    cctx.set_disasm(true);
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut cctx.func, &mut fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let (pin, pout) = (b.block_params(entry)[0], b.block_params(entry)[1]);
        let flags = MemFlagsData::new().with_notrap();
        let x = b.ins().load(F32X4, flags, pin, 0);
        let y = match f {
            Some(fun) => fun.emit(ctx, &mut b, x),
            None => x,
        };
        b.ins().store(flags, y, pout, 0);
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(module.target_config());
    }
    module.define_function(id, &mut cctx).unwrap();
    let vcode = cctx
        .compiled_code()
        .and_then(|c| c.vcode.clone())
        .unwrap_or_default();
    let insts = vcode
        .lines()
        .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with("unwind"))
        .count();
    let calls = vcode.lines().any(|l| l.trim_start().starts_with("call"));
    if std::env::var_os("CLIF_MATH_DUMP").is_some() {
        println!("{f:?}:\n{}\n{vcode}", cctx.func.display());
    }
    (insts, calls)
}

/// Reports the machine-instruction count of one f32x4 evaluation of each function and checks
/// that no function calls out and the code stays compact.
#[test]
fn instruction_counts() {
    let ctx = MathCtx::host();
    let (base, _) = vector_insts(None, ctx);
    for fun in [
        Fun::Exp,
        Fun::Log,
        Fun::Tanh,
        Fun::Sigmoid,
        Fun::Erf,
        Fun::Sin,
        Fun::Cos,
    ] {
        let (n, calls) = vector_insts(Some(fun), ctx);
        let n = n - base;
        println!(
            "{fun:?} (fma: {}): {n} instructions per f32x4 evaluation",
            ctx.fma
        );
        assert!(!calls, "{fun:?}: no calls expected");
        assert!(n > 10 && n < 120, "{fun:?}: {n} instructions");
    }
}

/// `pow(x, y)` for fixed exponents against `f64` `powf` rounded to f32 (scalar path,
/// host options): the error grows with `|y·ln x|` (`ln`'s rounding is scaled by
/// `t = y·ln x` before `exp`). Reports the maximum ulp error per exponent over
/// x in (0, 64] and checks it stays within `2·(2 + |t|)` ulp (measured: 1.74·(2 + |t|)).
#[test]
fn pow_accuracy() {
    let mut xs = Vec::new();
    sweep(1e-3, 64.0, 200_000, &mut xs);
    run_of(1.0, 20_000, &mut xs);
    for y in [-3.7f32, -1.0, 0.5, 2.5, 7.3, 20.0] {
        let c = compile_with(move |b, x| {
            let yv = b.ins().f32const(y);
            clif_math::emit_pow(b, x, yv)
        });
        let got = run(&c, &xs);
        let (mut worst, mut at, mut worst_ratio) = (0u64, 0f32, 0f64);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = f64::from(x).powf(f64::from(y)) as f32;
            if !want.is_finite() || want == 0.0 {
                continue;
            }
            let u = ulps(g, want);
            let t = (f64::from(y) * f64::from(x).ln()).abs();
            let ratio = u as f64 / (2.0 + t);
            worst_ratio = worst_ratio.max(ratio);
            if u > worst {
                worst = u;
                at = x;
            }
        }
        println!("Pow(x, {y}): max error {worst} ulp at x = {at:e}; max ulp/(2 + |y·ln x|) = {worst_ratio:.2}");
        assert!(worst_ratio <= 2.0, "pow(x, {y}): {worst} ulp at {at:e}");
    }
}
