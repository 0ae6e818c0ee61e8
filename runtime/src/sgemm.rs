//! lossgraph's own f32 GEMM: `C = A·B` on raw arena pointers with AVX-512,
//! packing into caller-provided workspace (so a compiled step allocates
//! nothing) and split into deterministic parts for the step's thread pool.
//!
//! Why not only the `gemm` crate: it allocates its packing buffers on every
//! call and threads through rayon, outside the step's pool. It stays as the
//! fallback on hosts without AVX-512 and as the benchmark baseline
//! (`JitOptions::gemm`; `lossgraph bench --gemm-impl crate`). Measured
//! single-threaded on the workloads' shapes (`sgemm::speed`), this GEMM runs
//! at 0.8–1.1× the crate's speed; the step gains from no allocation, no
//! rayon hand-off, and a lower inline-matmul threshold (see the executor).
//!
//! Layout (BLIS loop order, with the roles of A and B swapped because C is
//! row-major): the micro-kernel keeps a `MR × NR` tile of C (12 rows × two
//! 16-lane vectors) in 24 registers and, for each `p`, broadcasts 12 values
//! of A against one 32-wide row of B. Per `KC`-deep slice, the part's rows
//! of A are packed into `MR`-row panels; per `KC × NC` block, B is packed
//! into zero-padded `NR`-column panels (packing B also avoids the L1 set
//! conflicts of power-of-two row strides). A B panel stays in L1 while the
//! A panels stream past it.
//!
//! Invariants the `unsafe` code relies on (the caller states them once in
//! [`gemm_part`]'s contract): every element `A[i,p]` at
//! `a + i·a_rs + p·a_cs`, `B[p,j]` at `b + p·b_rs + j·b_cs` (`i < m`, `p <
//! k`, `j < n`) and `C[i,j]` at `c + i·n + j` is inside one live allocation;
//! C overlaps neither A, B nor the workspace; the workspace holds
//! [`Dims::workspace_floats`] floats for each part. Tails are handled with
//! masked loads, gathers and stores, so no lane outside these ranges is
//! touched.
//! Each `C` element is summed in the same order whatever the number of parts,
//! so results do not depend on the thread count.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows of C per micro-tile.
const MR: usize = 12;
/// Columns of C per micro-tile (two 16-lane vectors).
const NR: usize = 32;
/// Depth of a block (balanced: `k` is cut into equal blocks of at most this).
/// Measured on wide, same-binary A/B over 4 rounds: 384 beat 256 in every
/// round; 512 vs 384 was a tie; mnist was neutral.
const KC: usize = 384;
/// Columns of a B block (balanced like `KC`).
const NC: usize = 512;
/// Rows of A per block (a multiple of `MR`): `MC × KC` floats of packed A
/// stay in L2 while the B panels of a block pass.
const MC: usize = 20 * MR;

/// Shape and strides (in elements) of one `C[m×n] = A[m×k]·B[k×n]`; C is
/// dense row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_rs: isize,
    pub a_cs: isize,
    pub b_rs: isize,
    pub b_cs: isize,
}

/// `ceil(x / ceil(x / max))`: equal blocks of at most `max`, rounded up to `align`.
fn balanced(x: usize, max: usize, align: usize) -> usize {
    let blocks = x.div_ceil(max).max(1);
    x.div_ceil(blocks).div_ceil(align) * align
}

impl Dims {
    /// The product of row-major A (`m×k`, or `k×m` read transposed when
    /// `trans_a`) and row-major B (`k×n`, or `n×k` when `trans_b`).
    pub(crate) fn row_major(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> Dims {
        let (a_rs, a_cs) = if trans_a {
            (1, m as isize)
        } else {
            (k as isize, 1)
        };
        let (b_rs, b_cs) = if trans_b {
            (1, k as isize)
        } else {
            (n as isize, 1)
        };
        Dims {
            m,
            n,
            k,
            a_rs,
            a_cs,
            b_rs,
            b_cs,
        }
    }

    /// Whether [`gemm_part`] handles these strides: the packers gather up
    /// to 31 rows or columns apart with 32-bit element indices.
    pub(crate) fn supported(&self) -> bool {
        let limit = (i32::MAX / 31) as isize;
        self.a_rs.abs() <= limit && self.b_cs.abs() <= limit
    }

    fn kc(&self) -> usize {
        balanced(self.k, KC, 1)
    }

    fn nc(&self) -> usize {
        balanced(self.n, NC, NR)
    }

    /// Workspace floats one part needs: a packed B block and the packed A
    /// panels of every row.
    pub(crate) fn workspace_floats(&self) -> usize {
        (self.nc() + self.m.div_ceil(MR) * MR) * self.kc()
    }

    /// The `(rows, cols)` ranges of C that part `part` of `parts` computes:
    /// the larger dimension is cut at whole micro-tiles.
    fn part(&self, part: usize, parts: usize) -> ((usize, usize), (usize, usize)) {
        let parts = parts.max(1);
        let col_tiles = self.n.div_ceil(NR);
        let row_tiles = self.m.div_ceil(MR);
        if col_tiles >= row_tiles {
            let lo = (col_tiles * part / parts * NR).min(self.n);
            let hi = (col_tiles * (part + 1) / parts * NR).min(self.n);
            ((0, self.m), (lo, hi))
        } else {
            let lo = (row_tiles * part / parts * MR).min(self.m);
            let hi = (row_tiles * (part + 1) / parts * MR).min(self.m);
            ((lo, hi), (0, self.n))
        }
    }
}

/// Whether this host runs [`gemm_part`] (x86-64 with AVX-512F).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Computes part `part` of `parts` of `C = A·B` (see [`Dims::part`]).
///
/// # Safety
/// [`available`] and `d.supported()` returned true; the pointers satisfy the
/// module invariants for `d`; `ws` holds `d.workspace_floats()` floats used by no other part
/// running at the same time; parts running concurrently have distinct
/// `part` values and the same `parts`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn gemm_part(
    d: &Dims,
    c: *mut f32,
    a: *const f32,
    b: *const f32,
    ws: *mut f32,
    part: usize,
    parts: usize,
) {
    let (rows, cols) = d.part(part, parts);
    // SAFETY: forwarded contract; the block lies inside C.
    unsafe { gemm_block(d, c, a, b, ws, rows, cols) }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn gemm_part(
    _d: &Dims,
    _c: *mut f32,
    _a: *const f32,
    _b: *const f32,
    _ws: *mut f32,
    _part: usize,
    _parts: usize,
) {
    unreachable!("gemm_part called although `available()` is false")
}

/// Lane masks of the two vectors of a tile `nr` columns wide.
#[cfg(target_arch = "x86_64")]
fn masks(nr: usize) -> (__mmask16, __mmask16) {
    let m = |w: usize| -> __mmask16 {
        if w >= 16 {
            0xFFFF
        } else {
            ((1u32 << w) - 1) as __mmask16
        }
    };
    (m(nr), m(nr.saturating_sub(16)))
}

/// The rows `rows.0..rows.1` × columns `cols.0..cols.1` block of C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gemm_block(
    d: &Dims,
    c: *mut f32,
    a: *const f32,
    b: *const f32,
    ws: *mut f32,
    rows: (usize, usize),
    cols: (usize, usize),
) {
    let (r0, r1) = rows;
    let (j0, j1) = cols;
    if r0 >= r1 || j0 >= j1 {
        return;
    }
    let n = d.n;
    if d.k == 0 {
        for i in r0..r1 {
            // SAFETY: row i, columns j0..j1 of C are inside C.
            unsafe { std::ptr::write_bytes(c.add(i * n + j0), 0, j1 - j0) };
        }
        return;
    }
    let (kc_max, nc_max) = (d.kc(), d.nc());
    // SAFETY: the A panels follow the B block in the workspace.
    let a_panels = unsafe { ws.add(kc_max * nc_max) };
    let mut pc = 0;
    while pc < d.k {
        let kc = kc_max.min(d.k - pc);
        let mut ic = r0;
        while ic < r1 {
            // SAFETY: A[ic.., pc..] is inside A; panel (ic - r0)/MR lies
            // inside the workspace's round_up(m, MR)·kc_max A floats.
            unsafe {
                let a_tile = a.offset(ic as isize * d.a_rs + pc as isize * d.a_cs);
                pack_a(
                    a_tile,
                    d.a_rs,
                    d.a_cs,
                    MR.min(r1 - ic),
                    kc,
                    a_panels.add((ic - r0) * kc),
                );
            }
            ic += MR;
        }
        let mut jc = j0;
        while jc < j1 {
            let nc = nc_max.min(j1 - jc);
            // SAFETY: B[pc.., jc..] is inside B.
            let b_blk = unsafe { b.offset(pc as isize * d.b_rs + jc as isize * d.b_cs) };
            // SAFETY: ws holds kc_max·nc_max ≥ kc·round_up(nc, NR) floats.
            unsafe { pack_b(b_blk, d.b_rs, d.b_cs, kc, nc, ws) };
            // Rows in blocks of MC, so the A panels a B panel meets stay in L2.
            let mut ib = r0;
            while ib < r1 {
                let ie = (ib + MC).min(r1);
                let mut jr = 0;
                while jr < nc {
                    let nr = NR.min(nc - jr);
                    // SAFETY: panel jr/NR of the packed block.
                    let bt = unsafe { ws.add(jr * kc) as *const f32 };
                    let (m0, m1) = masks(nr);
                    let mut ic = ib;
                    while ic < ie {
                        let mr = MR.min(ie - ic);
                        // SAFETY: as when packing above.
                        let a_panel = unsafe { a_panels.add((ic - r0) * kc) };
                        // SAFETY: C[ic.., jc+jr..] is inside C.
                        let ct = unsafe { c.add(ic * n + jc + jr) };
                        let t = Tile {
                            kc,
                            a: a_panel,
                            b: bt,
                            c: ct,
                            c_rs: n,
                            m0,
                            m1,
                            accumulate: pc > 0,
                        };
                        // SAFETY: the tile's mr rows and masked columns are in range.
                        unsafe { tile_dispatch(mr, &t) };
                        ic += MR;
                    }
                    jr += NR;
                }
                ib = ie;
            }
            jc += nc;
        }
        pc += kc;
    }
}

/// Copies the `kc × nc` block of B at `b` into `NR`-wide panels
/// (`panel[p·NR + j]`), zero-padding the last panel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(b: *const f32, b_rs: isize, b_cs: isize, kc: usize, nc: usize, ws: *mut f32) {
    let mut jr = 0;
    while jr < nc {
        let nr = NR.min(nc - jr);
        // SAFETY: panel jr/NR lies inside the workspace (see caller).
        let panel = unsafe { ws.add(jr * kc) };
        if b_cs == 1 {
            let (m0, m1) = masks(nr);
            for p in 0..kc {
                // SAFETY: row p, columns jr..jr+nr of the block are inside B;
                // masked lanes are not read.
                unsafe {
                    let src = b.offset(p as isize * b_rs).add(jr);
                    let v0 = _mm512_maskz_loadu_ps(m0, src);
                    let v1 = _mm512_maskz_loadu_ps(m1, src.add(16));
                    _mm512_storeu_ps(panel.add(p * NR), v0);
                    _mm512_storeu_ps(panel.add(p * NR + 16), v1);
                }
            }
        } else {
            // Columns are `b_cs` apart: gather 16 of them per vector.
            let (m0, m1) = masks(nr);
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let idx0 = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(b_cs as i32));
            let idx1 = _mm512_add_epi32(idx0, _mm512_set1_epi32(16 * b_cs as i32));
            // SAFETY: column jr of the block is inside B.
            let col = unsafe { b.offset(jr as isize * b_cs) };
            for p in 0..kc {
                // SAFETY: B[p, jr + j] for unmasked j < nr is inside B; the
                // panel holds kc·NR floats.
                unsafe {
                    let src = col.offset(p as isize * b_rs);
                    let z = _mm512_setzero_ps();
                    let v0 = _mm512_mask_i32gather_ps::<4>(z, m0, idx0, src);
                    let v1 = _mm512_mask_i32gather_ps::<4>(z, m1, idx1, src);
                    _mm512_storeu_ps(panel.add(p * NR), v0);
                    _mm512_storeu_ps(panel.add(p * NR + 16), v1);
                }
            }
        }
        jr += NR;
    }
}

/// Copies the `mr × kc` tile of A at `a` into a panel `panel[p·MR + i]`
/// (rows `mr..MR` are left as they are: their products are never stored).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_a(a: *const f32, a_rs: isize, a_cs: isize, mr: usize, kc: usize, panel: *mut f32) {
    if a_rs == 1 {
        let mask = ((1u32 << mr) - 1) as __mmask16;
        for p in 0..kc {
            // SAFETY: column p, rows 0..mr of the tile are inside A; masked
            // lanes are not read or written; the panel holds MR·kc floats.
            unsafe {
                let v = _mm512_maskz_loadu_ps(mask, a.offset(p as isize * a_cs));
                _mm512_mask_storeu_ps(panel.add(p * MR), mask, v);
            }
        }
    } else {
        // Rows are `a_rs` apart: gather the tile's column p in one vector.
        let mask = ((1u32 << mr) - 1) as __mmask16;
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let idx = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(a_rs as i32));
        for p in 0..kc {
            // SAFETY: A[i, p] for unmasked i < mr is inside A; the panel holds MR·kc floats.
            unsafe {
                let src = a.offset(p as isize * a_cs);
                let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, src);
                _mm512_mask_storeu_ps(panel.add(p * MR), mask, v);
            }
        }
    }
}

/// One micro-tile's operands: `C[0..R, masked 0..32] (+)= A[0..R, 0..kc] ·
/// B[0..kc, masked 0..32]`.
#[cfg(target_arch = "x86_64")]
struct Tile {
    kc: usize,
    /// The packed A panel (`a[p·MR + i]`).
    a: *const f32,
    /// The packed B panel (`b[p·NR + j]`).
    b: *const f32,
    c: *mut f32,
    c_rs: usize,
    m0: __mmask16,
    m1: __mmask16,
    /// Add to C instead of overwriting it.
    accumulate: bool,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_dispatch(mr: usize, t: &Tile) {
    // SAFETY: forwarded; `R == mr` rows are in range.
    unsafe {
        match mr {
            12 => tile::<12>(t),
            11 => tile::<11>(t),
            10 => tile::<10>(t),
            9 => tile::<9>(t),
            8 => tile::<8>(t),
            7 => tile::<7>(t),
            6 => tile::<6>(t),
            5 => tile::<5>(t),
            4 => tile::<4>(t),
            3 => tile::<3>(t),
            2 => tile::<2>(t),
            _ => tile::<1>(t),
        }
    }
}

/// The micro-kernel: `R` rows of C, kept in `2R` vector registers; the
/// packed panels are zero-padded, so only the stores to C are masked.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(t: &Tile) {
    // Fetch the C tile now: it is needed only after the k loop, which hides
    // the latency (measured on wide, alternated: 15–25% faster steps).
    for i in 0..R {
        let row = t.c.wrapping_add(i * t.c_rs) as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64));
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let mut a = t.a;
    let mut b = t.b;
    for _ in 0..t.kc {
        // SAFETY: the packed panels hold kc rows of NR (B) and MR (A) floats.
        unsafe {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: row i of the C tile is in range; masked lanes untouched.
        unsafe {
            let c = t.c.add(i * t.c_rs);
            let (mut v0, mut v1) = (row[0], row[1]);
            if t.accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(t.m0, c));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(t.m1, c.add(16)));
            }
            _mm512_mask_storeu_ps(c, t.m0, v0);
            _mm512_mask_storeu_ps(c.add(16), t.m1, v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Row-major operands with the requested transposition, plus the f64
    /// reference product and its magnitude bound `Σ|a||b|` per element.
    struct Case {
        d: Dims,
        a: Vec<f32>,
        b: Vec<f32>,
        want: Vec<f64>,
        bound: Vec<f64>,
    }

    fn case(m: usize, n: usize, k: usize, ta: bool, tb: bool, seed: u64) -> Case {
        let mut rng = lossgraph_ir::rng::SplitMix64::new(seed);
        let mut next = move || rng.uniform(-1.0, 1.0);
        let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
        // A stored as [m,k] (a_rs = k) or as its transpose [k,m] (a_rs = 1).
        let d = Dims::row_major(m, n, k, ta, tb);
        let (a_rs, a_cs, b_rs, b_cs) = (d.a_rs, d.a_cs, d.b_rs, d.b_cs);
        let at = |i: usize, p: usize| a[(i as isize * a_rs + p as isize * a_cs) as usize] as f64;
        let bt = |p: usize, j: usize| b[(p as isize * b_rs + j as isize * b_cs) as usize] as f64;
        let mut want = vec![0.0; m * n];
        let mut bound = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    want[i * n + j] += at(i, p) * bt(p, j);
                    bound[i * n + j] += (at(i, p) * bt(p, j)).abs();
                }
            }
        }
        Case {
            d,
            a,
            b,
            want,
            bound,
        }
    }

    /// Runs all `parts` sequentially; C starts as NaN so unwritten elements show.
    fn run(c: &Case, parts: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; c.d.m * c.d.n];
        let mut ws = vec![0.0f32; c.d.workspace_floats().max(1)];
        for part in 0..parts {
            // SAFETY: operands sized for `c.d`; one part at a time.
            unsafe {
                gemm_part(
                    &c.d,
                    out.as_mut_ptr(),
                    c.a.as_ptr(),
                    c.b.as_ptr(),
                    ws.as_mut_ptr(),
                    part,
                    parts,
                )
            };
        }
        out
    }

    fn check(c: &Case, got: &[f32]) -> Result<(), String> {
        for (i, ((g, w), bd)) in got.iter().zip(&c.want).zip(&c.bound).enumerate() {
            let tol = 2.0 * (c.d.k as f64 + 2.0) * f32::EPSILON as f64 * bd + 1e-30;
            let within = (*g as f64 - w).abs() <= tol; // false for NaN
            if !within {
                return Err(format!("{:?}: C[{}] = {g}, want {w} (tol {tol:e})", c.d, i));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(160))]
        /// Against an f64 reference, every transposition, tails in m, n, k.
        #[test]
        fn matches_reference(m in 0usize..40, n in 0usize..80, k in 0usize..40,
                             ta: bool, tb: bool, parts in 1usize..4, seed: u64) {
            if !available() {
                // No AVX-512 here: nothing to run (a rejecting assumption
                // would fail the whole proptest on such hosts).
                return Ok(());
            }
            let c = case(m, n, k, ta, tb, seed);
            let got = run(&c, parts);
            prop_assert!(check(&c, &got).is_ok(), "{}", check(&c, &got).unwrap_err());
        }
    }

    /// Strides whose 32-bit gather indices would overflow are refused (the
    /// executor sends those products to the `gemm` crate).
    #[test]
    fn huge_strides_are_not_supported() {
        assert!(Dims::row_major(64, 128, 784, false, false).supported());
        assert!(Dims::row_major(3, 5, 10_000_000, true, true).supported());
        assert!(!Dims::row_major(3, 5, 100_000_000, false, false).supported());
        assert!(!Dims::row_major(3, 5, 100_000_000, false, true).supported());
    }

    /// Sizes that cross the K, N and M blocks, and the result is
    /// bit-identical for 1, 2 and 3 parts.
    #[test]
    fn blocked_sizes_and_part_independence() {
        if !available() {
            return;
        }
        for &(m, n, k, ta, tb) in &[
            (50, 1030, 300, false, false),
            (13, 600, 520, true, false),
            (70, 90, 700, false, true),
            (100, 33, 257, true, true),
            (500, 40, 30, false, false),
            (262, 70, 20, true, true),
        ] {
            let c = case(m, n, k, ta, tb, 7);
            let one = run(&c, 1);
            check(&c, &one).unwrap();
            for parts in [2, 3] {
                let got = run(&c, parts);
                assert!(
                    one.iter()
                        .zip(&got)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{:?}: {parts} parts differ from 1",
                    c.d
                );
            }
        }
    }
}

/// The measurement behind choosing this GEMM over the `gemm` crate:
/// `cargo test --release -p lossgraph-runtime --lib sgemm::speed -- --ignored --nocapture`
/// prints single-thread GFLOP/s of both on the workloads' shapes (best of 5).
#[cfg(test)]
mod speed {
    use super::*;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn gflops() {
        let shapes = [
            (64, 128, 784, false, false),
            (784, 128, 64, true, false),
            (256, 2048, 1024, false, false),
            (256, 2048, 2048, false, false),
            (256, 1024, 2048, false, false),
            (256, 2048, 1024, false, true),
            (1024, 2048, 256, true, false),
            (2048, 2048, 256, true, false),
        ];
        for &(m, n, k, ta, tb) in &shapes {
            let d = Dims::row_major(m, n, k, ta, tb);
            let (a_rs, a_cs, b_rs, b_cs) = (d.a_rs, d.a_cs, d.b_rs, d.b_cs);
            let a = vec![0.5f32; m * k];
            let b = vec![0.25f32; k * n];
            let mut c = vec![0.0f32; m * n];
            let mut ws = vec![0.0f32; d.workspace_floats().max(1)];
            let flops = 2.0 * (m * n * k) as f64;
            let reps = ((2e9 / flops) as usize).clamp(3, 2000);
            let mut best_own = f64::MAX;
            let mut best_crate = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..reps {
                    // SAFETY: a, b, c and ws are sized for `d`; one part.
                    unsafe {
                        gemm_part(
                            &d,
                            c.as_mut_ptr(),
                            a.as_ptr(),
                            b.as_ptr(),
                            ws.as_mut_ptr(),
                            0,
                            1,
                        )
                    };
                }
                best_own = best_own.min(t.elapsed().as_secs_f64() / reps as f64);
                let t = Instant::now();
                for _ in 0..reps {
                    // SAFETY: a is m×k, b is k×n, c is m×n with the strides given.
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            c.as_mut_ptr(),
                            1,
                            n as isize,
                            false,
                            a.as_ptr(),
                            a_cs,
                            a_rs,
                            b.as_ptr(),
                            b_cs,
                            b_rs,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        )
                    };
                }
                best_crate = best_crate.min(t.elapsed().as_secs_f64() / reps as f64);
            }
            println!(
                "{m}x{n}x{k} ta={ta} tb={tb}: own {:.1} GF/s ({:.1} us), crate {:.1} GF/s ({:.1} us)",
                flops / best_own / 1e9, best_own * 1e6, flops / best_crate / 1e9, best_crate * 1e6
            );
        }
    }
}
