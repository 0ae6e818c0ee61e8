//! Inline, vectorised transcendental functions emitted as Cranelift IR.
//!
//! Every function here appends straight-line (branch-free) CLIF to the current block of a
//! [`FunctionBuilder`] and returns the result value; nothing is called at run time. The input
//! may be `f32` or `f32x4` (lane-wise). A scalar `f32` is evaluated by the very same `f32x4`
//! sequence (`scalar_to_vector` … `extractlane 0`): on x86-64 and AArch64 scalar and vector
//! float arithmetic cost the same, and the scalar tail of a loop then produces bit-identical
//! results to the vector body, so a result never depends on an element's position in an array.
//!
//! Algorithms (coefficients are minimax fits computed for this module, rounded to `f32` one at
//! a time with the remaining coefficients refitted):
//! - `exp`: clamp to `[-104, 89]` (NaN passes through), `n = round(x·log2 e)` by the
//!   1.5·2²³ "magic number" trick, Cody–Waite `r = x − n·ln2_hi − n·ln2_lo`,
//!   `e^r = 1 + r + r²·P(r)` (degree-4 `P`), then the scale `2ⁿ` is applied as two
//!   multiplications by `2^⌊n/2⌋` and `2^(n−⌊n/2⌋)` (both normal numbers), so overflow gives
//!   `+inf`, and results in the subnormal range are rounded once, correctly from `e^r`
//!   (gradual underflow, not flush-to-zero); below `ln 2⁻¹⁵⁰` the result is `+0`.
//! - `log`: subnormals are scaled by 2²³ first; the mantissa is reduced to `m ∈ [√½, √2)`,
//!   `f = m − 1`, `s = f/(2+f)`, `log(1+f) = f − f²/2 + s·(f²/2 + R(s²))` (degree-3 `R`,
//!   fdlibm's arrangement), plus `k·ln2` split hi/lo. Special cases by lane selects:
//!   `log(±0) = −inf`, `log(+inf) = +inf`, `log(x<0) = log(NaN) = NaN`.
//! - `tanh`: `|x| < 0.625`: odd polynomial `x + x³·P(x²)`; otherwise
//!   `(1 − e)/(1 + e)` with `e = exp(−2|x|)` (argument clamped at −20, beyond which the
//!   result is 1); the sign of `x` is copied onto the result (so `tanh(−0) = −0`).
//! - `sigmoid`: `e = exp(−|x|) ∈ [0, 1]`, result `1/(1+e)` for `x ≥ 0` and `e/(1+e)` for
//!   `x < 0`: never overflows, keeps relative accuracy (and subnormals) deep in the negative
//!   tail, `sigmoid(−inf) = 0`, `sigmoid(+inf) = 1`.
//! - `erf`: `|x| < 0.875`: `x + x·Q(x²)`; otherwise `1 − exp(−x²)·G(t)` with
//!   `t = 1/(1 + |x|/2)` and `|x|` clamped at 4 (where `erf` rounds to 1 in `f32`); sign
//!   copied from `x`, so `erf(±inf) = ±1` and `erf(−0) = −0`.
//! - `sin`, `cos`: `j = round(x·2/π)` (magic number), Cody–Waite
//!   `r = x − j·P₁ − j·P₂ − j·P₃ − j·P₄` with π/2 split into three 11-bit parts and an `f32`
//!   remainder (57 bits in all), so every `j·Pᵢ` with `|j| < 2¹³` is exact and `r` is
//!   accurate to ~2⁻⁵⁶·|j| for `|x| ≤ 2¹³·π/2 ≈ 12868`; then `sin r = r + r³·S(r²)` and
//!   `cos r = 1 − r²/2 + r⁴·C(r²)` (degree-2 `S`, `C`, minimax on `|r| ≤ π/4`), picked and
//!   negated by the quadrant `j mod 4` (`cos` uses quadrant `j + 1`). Beyond `|x| ≈ 12868`
//!   the products `j·P₂` may round and the error can grow with `|x|` (measured: still
//!   ≤ 3.0e-7 absolute up to 2²²); for `|x| > 2²²` (where the rounding trick fails and an `f32`
//!   is spaced ≥ 0.5 apart) the result is NaN, not a silently wrong value; `±inf` gives NaN.
//! - `pow(x, y)`: `|x|^y = exp(y·ln|x|)` with the routines above, then C's special cases by
//!   selects: the sign of `x` for odd integer `y`, NaN for finite `x < 0` with non-integer
//!   `y`, 1 for `y = ±0`, `x = 1` or (`x = −1`, `y = ±inf`); `±0` and `±inf` bases follow
//!   from `ln 0 = −inf`, `ln inf = inf`. The relative error grows with `|y·ln x|`
//!   (the rounding of `ln` is multiplied by `y`): measured ≤ `1.74·(2 + |y·ln x|)` ulp.
//!
//! NaN inputs produce NaN outputs in every function (the clamps are NaN-preserving
//! `min`/`max` patterns and every special-case select tests for it).
//!
//! # Fused multiply-add
//! [`MathCtx`] says whether to emit `fma`. It must match the target ISA: on x86-64 Cranelift
//! lowers `fma` to `vfmadd213ps` only when the ISA has the `has_avx`+`has_fma` flags, and to a
//! libcall otherwise. The free functions ([`emit_exp`] …) use [`MathCtx::host`], which is right
//! when the module's ISA comes from `cranelift_native::builder()` (the JIT's case); code built
//! for another ISA should use [`MathCtx::from_isa`] and the methods of [`MathCtx`]. Results
//! with and without `fma` differ by rounding only; both are within the documented bounds.
//!
//! # Accuracy (measured by `compiler/tests/clif_math.rs` against `f64` references)
//! Maximum error against the correctly rounded result (an `f64` evaluation rounded to `f32`),
//! over ~2.5 million inputs each (every exponent, special values, dense sweeps, subnormals),
//! identical with and without `fma`: `exp` 1 ulp, `log` 1 ulp, `tanh` 2 ulp, `sigmoid` 2 ulp,
//! `erf` 2 ulp. Subnormal results count in units of 2⁻¹⁴⁹. Special values are exact.
//! `sin`, `cos` on `|x| ≤ 12867` (~3.3 million inputs each, incl. runs of consecutive
//! floats at the zeros near π and π/2): 2 ulp, absolute error ≤ 1.02e-7 (both with and
//! without `fma`); beyond it (`sincos_wide_range`, 200 000-point sweeps) absolute error
//! ≤ 1.07e-7 up to 10⁶ and ≤ 3.0e-7 up to 2²², NaN above. `pow` (`pow_accuracy`, fixed
//! exponents −3.7 … 20 over `x ∈ (0, 64]`): at most `1.74·(2 + |y·ln x|)` ulp, e.g. 2 ulp
//! for `√x`, 42 ulp for `x^7.3` and 145 ulp (8.6e-6 relative) for `x^20` at `x ≈ 58`;
//! an extended-precision `ln` would remove the growth.
//!
//! # Cost
//! Machine instructions per `f32x4` evaluation on x86-64 with AVX+FMA (constant loads
//! included): `exp` 38, `log` 50, `tanh` 58, `sigmoid` 48, `erf` 72, `sin` 57, `cos` 54.

use std::sync::OnceLock;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::Ieee32;
use cranelift_codegen::ir::types::{F32, F32X4, I32X4};
use cranelift_codegen::ir::{Endianness, InstBuilder, MemFlagsData, Type, Value};
use cranelift_codegen::isa::TargetIsa;
use cranelift_frontend::FunctionBuilder;

/// Code-generation options for the math routines.
///
/// Invariant: `fma` may be `true` only if the target ISA executes `fma` natively
/// ([`TargetIsa::has_native_fma`]); otherwise Cranelift would lower it to a libcall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MathCtx {
    /// Emit fused multiply-adds (one rounding) instead of `fmul` + `fadd`.
    pub fma: bool,
}

impl MathCtx {
    /// The options matching an ISA: `fma` iff the ISA has native FMA.
    pub fn from_isa(isa: &dyn TargetIsa) -> Self {
        MathCtx {
            fma: isa.has_native_fma(),
        }
    }

    /// The options matching the host ISA as configured by `cranelift_native::builder()`
    /// (computed once and cached). Falls back to `fma: false` if the host is unsupported.
    pub fn host() -> Self {
        static HOST: OnceLock<MathCtx> = OnceLock::new();
        *HOST.get_or_init(|| {
            let flags =
                cranelift_codegen::settings::Flags::new(cranelift_codegen::settings::builder());
            match cranelift_native::builder().map(|b| b.finish(flags)) {
                Ok(Ok(isa)) => MathCtx::from_isa(&*isa),
                _ => MathCtx { fma: false },
            }
        })
    }

    /// `exp(x)` for `x: f32 | f32x4`; see the module docs for the algorithm and special cases.
    pub fn exp(&self, b: &mut FunctionBuilder, x: Value) -> Value {
        self.lanewise(b, x, |e, v| e.exp(v, Some(EXP_LO), Some(EXP_HI), true))
    }

    /// Natural logarithm `ln(x)` for `x: f32 | f32x4`.
    pub fn log(&self, b: &mut FunctionBuilder, x: Value) -> Value {
        self.lanewise(b, x, |e, v| e.log(v))
    }

    /// `tanh(x)` for `x: f32 | f32x4`.
    pub fn tanh(&self, b: &mut FunctionBuilder, x: Value) -> Value {
        self.lanewise(b, x, |e, v| e.tanh(v))
    }

    /// The logistic sigmoid `1/(1+exp(−x))` for `x: f32 | f32x4`.
    pub fn sigmoid(&self, b: &mut FunctionBuilder, x: Value) -> Value {
        self.lanewise(b, x, |e, v| e.sigmoid(v))
    }

    /// The error function `erf(x)` for `x: f32 | f32x4`.
    pub fn erf(&self, b: &mut FunctionBuilder, x: Value) -> Value {
        self.lanewise(b, x, |e, v| e.erf(v))
    }

    /// `sin(x)` for `x: f32 | f32x4` (radians).
    pub fn sin(&self, b: &mut FunctionBuilder, x: Value) -> Value {
        self.lanewise(b, x, |e, v| e.sincos(v, false))
    }

    /// `cos(x)` for `x: f32 | f32x4` (radians).
    pub fn cos(&self, b: &mut FunctionBuilder, x: Value) -> Value {
        self.lanewise(b, x, |e, v| e.sincos(v, true))
    }

    /// `x^y` (C's `pow` special cases) for `x`, `y` both `f32` or both `f32x4`.
    pub fn pow(&self, b: &mut FunctionBuilder, x: Value, y: Value) -> Value {
        let ty = b.func.dfg.value_type(y);
        let yv = if ty == F32 {
            b.ins().scalar_to_vector(F32X4, y)
        } else {
            y
        };
        self.lanewise(b, x, |e, v| e.pow(v, yv))
    }

    /// Run `f` on the `f32x4` form of `x` and convert back to `x`'s type.
    ///
    /// Panics if `x` is neither `f32` nor `f32x4`: callers (the code generator) only lower
    /// `f32` tensors, so any other type is a bug in the caller, not a user error.
    fn lanewise(
        &self,
        b: &mut FunctionBuilder,
        x: Value,
        f: impl FnOnce(&mut Em<'_, '_>, Value) -> Value,
    ) -> Value {
        let ty = b.func.dfg.value_type(x);
        let mut em = Em { b, fma: self.fma };
        if ty == F32X4 {
            f(&mut em, x)
        } else if ty == F32 {
            let v = em.b.ins().scalar_to_vector(F32X4, x);
            let r = f(&mut em, v);
            em.b.ins().extractlane(r, 0)
        } else {
            panic!("clif_math: expected an f32 or f32x4 operand, got {ty}")
        }
    }
}

/// `exp(x)` for `x: f32 | f32x4` with [`MathCtx::host`] options (see the module docs).
pub fn emit_exp(b: &mut FunctionBuilder, x: Value) -> Value {
    MathCtx::host().exp(b, x)
}

/// `ln(x)` for `x: f32 | f32x4` with [`MathCtx::host`] options (see the module docs).
pub fn emit_log(b: &mut FunctionBuilder, x: Value) -> Value {
    MathCtx::host().log(b, x)
}

/// `tanh(x)` for `x: f32 | f32x4` with [`MathCtx::host`] options (see the module docs).
pub fn emit_tanh(b: &mut FunctionBuilder, x: Value) -> Value {
    MathCtx::host().tanh(b, x)
}

/// `1/(1+exp(−x))` for `x: f32 | f32x4` with [`MathCtx::host`] options (see the module docs).
pub fn emit_sigmoid(b: &mut FunctionBuilder, x: Value) -> Value {
    MathCtx::host().sigmoid(b, x)
}

/// `erf(x)` for `x: f32 | f32x4` with [`MathCtx::host`] options (see the module docs).
pub fn emit_erf(b: &mut FunctionBuilder, x: Value) -> Value {
    MathCtx::host().erf(b, x)
}

/// `sin(x)` for `x: f32 | f32x4` with [`MathCtx::host`] options (see the module docs).
pub fn emit_sin(b: &mut FunctionBuilder, x: Value) -> Value {
    MathCtx::host().sin(b, x)
}

/// `cos(x)` for `x: f32 | f32x4` with [`MathCtx::host`] options (see the module docs).
pub fn emit_cos(b: &mut FunctionBuilder, x: Value) -> Value {
    MathCtx::host().cos(b, x)
}

/// `x^y` for `x`, `y` both `f32` or both `f32x4` with [`MathCtx::host`] options.
pub fn emit_pow(b: &mut FunctionBuilder, x: Value, y: Value) -> Value {
    MathCtx::host().pow(b, x, y)
}

// ---------------------------------------------------------------------------------------------
// Constants.

/// exp: inputs below this give +0 (exp(−104) < 2⁻¹⁵⁰, which rounds to 0).
const EXP_LO: f32 = -104.0;
/// exp: inputs above this give +inf (exp(89) > f32::MAX).
const EXP_HI: f32 = 89.0;
/// 1.5·2²³: adding it to |y| < 2²² rounds y to an integer held in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 rounded to 16 significant bits (0x3f317200): `n·LN2_HI` is exact for |n| < 256.
const LN2_HI: f32 = 0.693_145_75;
/// ln 2 − LN2_HI, rounded to f32.
const LN2_LO: f32 = 1.428_606_8e-6;
/// exp: e^r = 1 + r + r²·P(r), |r| ≤ ln2/2; relative error of the fit ≈ 0.06·2⁻²⁴.
const EXP_P: [f32; 5] = [
    0.499_999_94,
    0.166_665_15,
    0.041_668_084,
    0.008_369_349,
    0.001_384_039_9,
];
/// log: R(z) = z·(L0 + z·(L1 + z·L2)) ≈ 2·atanh(s)/s − 2 for z = s², |s| ≤ (√2−1)/(√2+1).
const LOG_R: [f32; 3] = [0.666_667_76, 0.399_775_68, 0.298_714_6];
/// Bits of √½ (rounded to f32): the mantissa is reduced to [√½, √2).
const SQRT_HALF_BITS: i32 = 0x3f35_04f3;
/// tanh: |x| below this uses the odd polynomial.
const TANH_SMALL: f32 = 0.625;
/// tanh: tanh(x) = x + x³·P(x²) on |x| ≤ 0.625; relative fit error ≈ 0.003·2⁻²⁴.
const TANH_P: [f32; 6] = [
    -0.333_333_3,
    0.133_332_21,
    -0.053_948_18,
    0.021_706_894,
    -0.008_190_014,
    0.002_152_687_2,
];
/// erf: |x| below this uses the polynomial x + x·Q(x²).
const ERF_SMALL: f32 = 0.875;
/// erf: |x| is clamped here for the tail formula (erf(4) rounds to 1 in f32).
const ERF_CLAMP: f32 = 4.0;
/// erf: erf(x)/x − 1 ≈ Q(x²) on |x| ≤ 0.875; relative fit error ≈ 0.02·2⁻²⁴.
const ERF_Q: [f32; 7] = [
    0.128_379_17,
    -0.376_126_3,
    0.112_836_23,
    -0.026_855_364,
    0.005_190_948_5,
    -0.000_802_705_3,
    7.875_355_4e-5,
];
/// erf: erfc(x)·exp(x²) ≈ G(t), t = 1/(1 + x/2), on 0.875 ≤ x ≤ 4; the fit's error
/// times exp(−x²) is ≈ 0.006·2⁻²⁴.
const ERF_G: [f32; 6] = [
    0.001_622_789_8,
    0.261_426_45,
    0.390_858_3,
    -0.054_262_526,
    0.627_961_9,
    -0.227_830_54,
];

/// sin/cos: π/2 = P1 + P2 + P3 + P4 to 57 bits; P1..P3 have 11 significant bits, so
/// `j·Pᵢ` is exact for `|j| < 2¹³` (0x3fc90000, 0x39fda000, 0x33a22000, 0x2c34611a).
const PIO2: [f32; 4] = [1.570_312_5, 4.837_513e-4, 7.549_533_6e-8, 2.563_344e-12];
/// sin/cos: |x| above this gives NaN (the reduction's rounding trick needs |x·2/π| < 2²²).
const SINCOS_MAX: f32 = 4_194_304.0;
/// sin r = r + r³·S(r²) on |r| ≤ π/4; relative fit error ≈ 0.06·2⁻²⁴.
const SIN_S: [f32; 3] = [-0.166_666_55, 0.008_332_161, -0.000_195_152_84];
/// cos r = 1 − r²/2 + r⁴·C(r²) on |r| ≤ π/4; relative fit error ≈ 0.002·2⁻²⁴.
const COS_C: [f32; 3] = [0.041_666_646, -0.001_388_731_6, 2.443_315_5e-5];

// ---------------------------------------------------------------------------------------------
// The emitter: a thin layer over `FunctionBuilder` working on f32x4 / i32x4 values.

struct Em<'a, 'f> {
    b: &'a mut FunctionBuilder<'f>,
    fma: bool,
}

impl Em<'_, '_> {
    fn f(&mut self, v: f32) -> Value {
        let s = self.b.ins().f32const(Ieee32::with_bits(v.to_bits()));
        self.b.ins().splat(F32X4, s)
    }
    fn fbits(&mut self, bits: u32) -> Value {
        self.f(f32::from_bits(bits))
    }
    fn i(&mut self, v: i32) -> Value {
        let s = self
            .b
            .ins()
            .iconst(cranelift_codegen::ir::types::I32, i64::from(v));
        self.b.ins().splat(I32X4, s)
    }
    fn cast(&mut self, ty: Type, v: Value) -> Value {
        let flags = MemFlagsData::new().with_endianness(Endianness::Little);
        self.b.ins().bitcast(ty, flags, v)
    }
    fn int_bits(&mut self, v: Value) -> Value {
        self.cast(I32X4, v)
    }
    fn float_bits(&mut self, v: Value) -> Value {
        self.cast(F32X4, v)
    }
    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    /// `a·b + c`, fused when the context allows.
    fn mad(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }
    /// Horner evaluation of `c[0] + c[1]·x + … + c[n−1]·xⁿ⁻¹` (`c` non-empty).
    fn poly(&mut self, x: Value, c: &[f32]) -> Value {
        let (last, rest) = c
            .split_last()
            .expect("invariant: polynomial has coefficients");
        let mut acc = self.f(*last);
        for &k in rest.iter().rev() {
            let kv = self.f(k);
            acc = self.mad(acc, x, kv);
        }
        acc
    }
    /// Lane mask (as f32x4 all-ones/all-zeros lanes) of `a cc b`.
    fn cmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        let m = self.b.ins().fcmp(cc, a, b);
        self.float_bits(m)
    }
    /// Lane-wise `mask ? t : e` for an f32x4 mask from [`Em::cmp`].
    fn sel(&mut self, mask: Value, t: Value, e: Value) -> Value {
        self.b.ins().bitselect(mask, t, e)
    }
    /// `min(c, x)` that returns `x` when `x` is NaN (lowers to `minps c, x` on x86-64).
    fn min_c(&mut self, x: Value, c: f32) -> Value {
        let cv = self.f(c);
        let m = self.cmp(FloatCC::LessThan, cv, x);
        self.sel(m, cv, x)
    }
    /// `max(c, x)` that returns `x` when `x` is NaN (lowers to `maxps c, x` on x86-64).
    fn max_c(&mut self, x: Value, c: f32) -> Value {
        let cv = self.f(c);
        let m = self.cmp(FloatCC::LessThan, x, cv);
        self.sel(m, cv, x)
    }
    fn abs(&mut self, x: Value) -> Value {
        let m = self.fbits(0x7fff_ffff);
        self.b.ins().band(x, m)
    }
    /// `r` with the sign bit of `x` or-ed in (`r` must be non-negative or NaN).
    fn with_sign_of(&mut self, r: Value, x: Value) -> Value {
        let m = self.fbits(0x8000_0000);
        let s = self.b.ins().band(x, m);
        self.b.ins().bor(r, s)
    }
    /// `2^n` for integer lanes `n ∈ [−126, 127]`, built in the exponent field.
    fn pow2i(&mut self, n: Value) -> Value {
        let bias = self.i(127);
        let e = self.b.ins().iadd(n, bias);
        let bits = self.b.ins().ishl_imm_s(e, 23);
        self.float_bits(bits)
    }

    /// `exp(x)`. `lo`/`hi` clamp the argument (NaN-preserving); without them the caller
    /// guarantees the argument range. `wide` applies the scale in two steps, needed when the
    /// result may overflow or be subnormal (n outside [−126, 127]).
    fn exp(&mut self, x: Value, lo: Option<f32>, hi: Option<f32>, wide: bool) -> Value {
        let mut x = x;
        if let Some(hi) = hi {
            x = self.min_c(x, hi);
        }
        if let Some(lo) = lo {
            x = self.max_c(x, lo);
        }
        let log2e = self.f(LOG2_E);
        let magic = self.f(MAGIC);
        // t = magic + round(x·log2e); nf = round(x·log2e) exactly.
        let t = self.mad(x, log2e, magic);
        let nf = self.sub(t, magic);
        // Cody–Waite: r = x − nf·ln2 with nf·LN2_HI exact.
        let mhi = self.f(-LN2_HI);
        let mlo = self.f(-LN2_LO);
        let r = self.mad(nf, mhi, x);
        let r = self.mad(nf, mlo, r);
        // e^r = 1 + (r + r²·P(r)).
        let p = self.poly(r, &EXP_P);
        let r2 = self.mul(r, r);
        let q = self.mad(r2, p, r);
        let one = self.f(1.0);
        let er = self.add(q, one);
        // n as an integer: the low bits of t.
        let ti = self.int_bits(t);
        let magic_i = self.i(MAGIC.to_bits() as i32);
        let n = self.b.ins().isub(ti, magic_i);
        if wide {
            let n1 = self.b.ins().sshr_imm_s(n, 1);
            let n2 = self.b.ins().isub(n, n1);
            let s1 = self.pow2i(n1);
            let s2 = self.pow2i(n2);
            let y = self.mul(er, s1);
            self.mul(y, s2)
        } else {
            let s = self.pow2i(n);
            self.mul(er, s)
        }
    }

    fn log(&mut self, x: Value) -> Value {
        // Scale subnormals (and, harmlessly, zeros/negatives, fixed up below) by 2^23.
        let min_normal = self.f(f32::MIN_POSITIVE);
        let tiny = self.b.ins().fcmp(FloatCC::LessThan, x, min_normal);
        let tiny_f = self.float_bits(tiny);
        let two23 = self.f(8_388_608.0);
        let xs0 = self.mul(x, two23);
        let xs = self.sel(tiny_f, xs0, x);
        let m23 = self.i(-23);
        let kadj = self.b.ins().band(tiny, m23);
        // Reduce: bits − bits(√½) = k·2^23 + mantissa offset.
        let bits = self.int_bits(xs);
        let sh = self.i(SQRT_HALF_BITS);
        let ix = self.b.ins().isub(bits, sh);
        let k0 = self.b.ins().sshr_imm_s(ix, 23);
        let k = self.b.ins().iadd(k0, kadj);
        let mant_mask = self.i(0x007f_ffff);
        let mant = self.b.ins().band(ix, mant_mask);
        let mbits = self.b.ins().iadd(mant, sh);
        let m = self.float_bits(mbits);
        let one = self.f(1.0);
        let f = self.sub(m, one);
        let two = self.f(2.0);
        let den = self.add(f, two);
        let s = self.div(f, den);
        let z = self.mul(s, s);
        let rz = self.poly(z, &LOG_R);
        let r = self.mul(z, rz);
        let half = self.f(0.5);
        let hf = self.mul(half, f);
        let hfsq = self.mul(hf, f);
        let kf = self.b.ins().fcvt_from_sint(F32X4, k);
        // log = k·ln2_hi − ((hfsq − (s·(hfsq+R) + k·ln2_lo)) − f)
        let lo = self.f(LN2_LO);
        let klo = self.mul(kf, lo);
        let hr = self.add(hfsq, r);
        let t1 = self.mad(s, hr, klo);
        let t2 = self.sub(hfsq, t1);
        let t3 = self.sub(t2, f);
        let hi = self.f(LN2_HI);
        let khi = self.mul(kf, hi);
        let res = self.sub(khi, t3);
        // Special cases.
        let inf = self.f(f32::INFINITY);
        let is_inf = self.cmp(FloatCC::Equal, x, inf);
        let res = self.sel(is_inf, inf, res);
        let zero = self.f(0.0);
        let is_zero = self.cmp(FloatCC::Equal, x, zero);
        let ninf = self.f(f32::NEG_INFINITY);
        let res = self.sel(is_zero, ninf, res);
        // x < 0 or NaN  <=>  (0 > x) or unordered.
        let bad = self.cmp(FloatCC::UnorderedOrGreaterThan, zero, x);
        let nan = self.f(f32::NAN);
        self.sel(bad, nan, res)
    }

    fn tanh(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        // Small: a + a³·P(a²).
        let z = self.mul(a, a);
        let p = self.poly(z, &TANH_P);
        let a3 = self.mul(a, z);
        let small = self.mad(a3, p, a);
        // Large: (1 − e)/(1 + e), e = exp(−2a).
        let m2 = self.f(-2.0);
        let arg = self.mul(a, m2);
        let e = self.exp(arg, Some(-20.0), None, false);
        let one = self.f(1.0);
        let num = self.sub(one, e);
        let den = self.add(one, e);
        let large = self.div(num, den);
        let thr = self.f(TANH_SMALL);
        let is_small = self.cmp(FloatCC::LessThan, a, thr);
        let r = self.sel(is_small, small, large);
        self.with_sign_of(r, x)
    }

    fn sigmoid(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        let na = self.b.ins().fneg(a);
        let e = self.exp(na, Some(EXP_LO), None, true);
        let one = self.f(1.0);
        let den = self.add(one, e);
        let zero = self.f(0.0);
        let nonneg = self.cmp(FloatCC::LessThanOrEqual, zero, x);
        let num = self.sel(nonneg, one, e);
        self.div(num, den)
    }

    /// `sin x` (or `cos x` with `cos`), see the module docs.
    fn sincos(&mut self, x: Value, cos: bool) -> Value {
        let two_over_pi = self.f(std::f32::consts::FRAC_2_PI);
        let magic = self.f(MAGIC);
        let t = self.mad(x, two_over_pi, magic);
        let j = self.sub(t, magic);
        let mut r = x;
        for p in PIO2 {
            let mp = self.f(-p);
            r = self.mad(j, mp, r);
        }
        // The quadrant: the low bits of t hold j.
        let ti = self.int_bits(t);
        let magic_i = self.i(MAGIC.to_bits() as i32);
        let mut q = self.b.ins().isub(ti, magic_i);
        if cos {
            let one = self.i(1);
            q = self.b.ins().iadd(q, one);
        }
        let z = self.mul(r, r);
        let s = self.poly(z, &SIN_S);
        let r3 = self.mul(r, z);
        let sin_r = self.mad(r3, s, r);
        let c = self.poly(z, &COS_C);
        let z2 = self.mul(z, z);
        let mhalf = self.f(-0.5);
        let one = self.f(1.0);
        let w = self.mad(z, mhalf, one);
        let cos_r = self.mad(z2, c, w);
        // Odd quadrants take the other function; quadrants 2 and 3 negate.
        let bit0 = self.i(1);
        let odd = self.b.ins().band(q, bit0);
        let odd = self.b.ins().icmp(IntCC::Equal, odd, bit0);
        let odd = self.float_bits(odd);
        let v = self.sel(odd, cos_r, sin_r);
        let bit1 = self.i(2);
        let neg = self.b.ins().band(q, bit1);
        let sign = self.b.ins().ishl_imm_s(neg, 30);
        let sign = self.float_bits(sign);
        let v = self.b.ins().bxor(v, sign);
        // Beyond the reduction's range (and ±inf): NaN.
        let a = self.abs(x);
        let lim = self.f(SINCOS_MAX);
        let big = self.cmp(FloatCC::GreaterThan, a, lim);
        let nan = self.f(f32::NAN);
        let v = self.sel(big, nan, v);
        if cos {
            v
        } else {
            // sin(±0) = ±0 (the polynomial's r + r³·S turns −0 into +0).
            let zero = self.f(0.0);
            let is_zero = self.cmp(FloatCC::Equal, x, zero);
            self.sel(is_zero, x, v)
        }
    }

    /// `x^y`, see the module docs.
    fn pow(&mut self, x: Value, y: Value) -> Value {
        let a = self.abs(x);
        let l = self.log(a);
        let t = self.mul(y, l);
        let e = self.exp(t, Some(EXP_LO), Some(EXP_HI), true);
        // y integer / odd integer (trunc(±inf) = ±inf counts as an even integer).
        let ty = self.b.ins().trunc(y);
        let is_int = self.cmp(FloatCC::Equal, y, ty);
        let half = self.f(0.5);
        let h = self.mul(y, half);
        let th = self.b.ins().trunc(h);
        let half_frac = self.cmp(FloatCC::NotEqual, h, th);
        let odd = self.b.ins().band(is_int, half_frac);
        let sign_mask = self.fbits(0x8000_0000);
        let sx = self.b.ins().band(x, sign_mask);
        let sx = self.b.ins().band(sx, odd);
        let r = self.b.ins().bor(e, sx);
        // A finite negative base needs an integer exponent.
        let zero = self.f(0.0);
        let ninf = self.f(f32::NEG_INFINITY);
        let lt0 = self.cmp(FloatCC::LessThan, x, zero);
        let fin = self.cmp(FloatCC::GreaterThan, x, ninf);
        let neg_fin = self.b.ins().band(lt0, fin);
        let bad = self.b.ins().band_not(neg_fin, is_int);
        let nan = self.f(f32::NAN);
        let r = self.sel(bad, nan, r);
        // Exactly 1: y = ±0, x = 1, or x = −1 with y = ±inf.
        let one = self.f(1.0);
        let y0 = self.cmp(FloatCC::Equal, y, zero);
        let x1 = self.cmp(FloatCC::Equal, x, one);
        let m1 = self.f(-1.0);
        let xm1 = self.cmp(FloatCC::Equal, x, m1);
        let ay = self.abs(y);
        let inf = self.f(f32::INFINITY);
        let yinf = self.cmp(FloatCC::Equal, ay, inf);
        let m1inf = self.b.ins().band(xm1, yinf);
        let ones = self.b.ins().bor(y0, x1);
        let ones = self.b.ins().bor(ones, m1inf);
        self.sel(ones, one, r)
    }

    fn erf(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        // Small: a + a·Q(a²).
        let z = self.mul(a, a);
        let q = self.poly(z, &ERF_Q);
        let small = self.mad(a, q, a);
        // Large: 1 − exp(−a²)·G(1/(1 + a/2)), a clamped at ERF_CLAMP.
        let ac = self.min_c(a, ERF_CLAMP);
        let half = self.f(0.5);
        let one = self.f(1.0);
        let d = self.mad(ac, half, one);
        let t = self.div(one, d);
        let g = self.poly(t, &ERF_G);
        let ac2 = self.mul(ac, ac);
        let nac2 = self.b.ins().fneg(ac2);
        let e = self.exp(nac2, None, None, false);
        let eg = self.mul(e, g);
        let large = self.sub(one, eg);
        let thr = self.f(ERF_SMALL);
        let is_small = self.cmp(FloatCC::LessThan, a, thr);
        let r = self.sel(is_small, small, large);
        self.with_sign_of(r, x)
    }
}
