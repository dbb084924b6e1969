//! The inner loops of paged attention for `NJ` query heads that share one
//! KV head: scores against a transposed K block, and the weighted sum of V.
//!
//! Every value is an FMA chain in a fixed order (over `d` for a score, over
//! positions for an output element) whatever lane or tile computes it: the
//! AVX-512, AVX2 and scalar paths give the same bits, and so does a query
//! alone or among others (batch invariance).

/// Positions scored at once.
const LANES: usize = 16;
/// Columns of V accumulated at once.
const V_COLS: usize = 16;

/// The vector width of the inner loops: 16 lanes as two AVX2 registers
/// (or scalar code, per the build's target) or one AVX-512 register.
pub(crate) trait TileIsa {
    /// `acc[j][l] = fma(q[j·hd + d], kt[d·bs + l], acc[j][l])` for d = 0..hd.
    ///
    /// # Safety
    /// `kt` must be readable at `d·bs + 0..LANES` for every `d < hd`, and
    /// the CPU must have the ISA.
    unsafe fn scores_full<const NJ: usize>(q: &[f32], kt: *const f32, hd: usize, bs: usize, acc: &mut [[f32; LANES]; NJ]);
    /// `acc[j][l] = Σ_p fma(w[j·ctx + p], v[rows[p] + l], ·)` over p in order.
    ///
    /// # Safety
    /// `v` must be readable at `rows[p] + 0..V_COLS` for every p, and the
    /// CPU must have the ISA.
    unsafe fn weighted_cols<const NJ: usize>(w: &[f32], ctx: usize, v: *const f32, rows: &[usize], acc: &mut [[f32; V_COLS]; NJ]);
}

/// The build's baseline: AVX2 (x86-64-v3) or scalar code.
pub(crate) struct Baseline;

impl TileIsa for Baseline {
    #[inline(always)]
    unsafe fn scores_full<const NJ: usize>(q: &[f32], kt: *const f32, hd: usize, bs: usize, acc: &mut [[f32; LANES]; NJ]) {
        simd::scores_full::<NJ>(q, kt, hd, bs, acc)
    }
    #[inline(always)]
    unsafe fn weighted_cols<const NJ: usize>(w: &[f32], ctx: usize, v: *const f32, rows: &[usize], acc: &mut [[f32; V_COLS]; NJ]) {
        simd::weighted_cols::<NJ>(w, ctx, v, rows, acc)
    }
}

/// Scores of `NJ` query heads (`q`, `NJ × hd`) against the first `n`
/// positions of one transposed K block (`kt`, `hd × bs`), times `scale`,
/// into `dst[j·ctx + p0 + slot]`.
///
/// # Safety
/// The CPU must have `I`'s ISA.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn block_scores<I: TileIsa, const NJ: usize>(
    q: &[f32],
    kt: &[f32],
    hd: usize,
    bs: usize,
    n: usize,
    scale: f32,
    dst: &mut [f32],
    ctx: usize,
    p0: usize,
) {
    assert!(q.len() == NJ * hd && kt.len() >= hd * bs && n <= bs);
    for c in (0..n).step_by(LANES) {
        let w = LANES.min(n - c);
        let mut acc = [[0f32; LANES]; NJ];
        if w == LANES {
            // SAFETY: rows d·bs + c .. + LANES are inside kt (c + LANES ≤ n ≤ bs).
            unsafe { I::scores_full::<NJ>(q, kt.as_ptr().add(c), hd, bs, &mut acc) };
        } else {
            for d in 0..hd {
                let k = &kt[d * bs + c..d * bs + c + w];
                for (j, a) in acc.iter_mut().enumerate() {
                    let qd = q[j * hd + d];
                    a.iter_mut().zip(k).for_each(|(a, &k)| *a = qd.mul_add(k, *a));
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            dst[j * ctx + p0 + c..][..w].iter_mut().zip(a).for_each(|(s, &a)| *s = a * scale);
        }
    }
}

/// `out[j] = Σ_p w[j·ctx + p] · V[p]` for `NJ` heads (`out`: `NJ × hd`),
/// V row `p` starting at `v[v_at(p)]`.
///
/// # Safety
/// The CPU must have `I`'s ISA.
#[inline(always)]
pub(crate) unsafe fn weighted_v<I: TileIsa, const NJ: usize>(
    w: &[f32],
    ctx: usize,
    v: &[f32],
    v_at: impl Fn(usize) -> usize,
    hd: usize,
    out: &mut [f32],
) {
    assert!(w.len() == NJ * ctx && out.len() == NJ * hd);
    // Row offsets once, not once per column block (a division each).
    let rows: Vec<usize> = (0..ctx).map(v_at).collect();
    assert!(rows.iter().all(|&r| r + hd <= v.len()), "V rows inside the cache");
    for c in (0..hd).step_by(V_COLS) {
        let cols = V_COLS.min(hd - c);
        let mut acc = [[0f32; V_COLS]; NJ];
        if cols == V_COLS {
            // SAFETY: every row holds hd ≥ c + V_COLS values (checked above).
            unsafe { I::weighted_cols::<NJ>(w, ctx, v.as_ptr().add(c), &rows, &mut acc) };
        } else {
            for (p, &at) in rows.iter().enumerate() {
                let row = &v[at + c..][..cols];
                for (j, a) in acc.iter_mut().enumerate() {
                    let wj = w[j * ctx + p];
                    a.iter_mut().zip(row).for_each(|(a, &x)| *a = wj.mul_add(x, *a));
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            out[j * hd + c..][..cols].copy_from_slice(&a[..cols]);
        }
    }
}

/// One AVX-512 register per 16 lanes (half the loads and FMAs of AVX2).
/// Its intrinsics inline only into callers compiled with `avx512f`.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl TileIsa for Avx512 {
    #[inline(always)]
    unsafe fn scores_full<const NJ: usize>(q: &[f32], kt: *const f32, hd: usize, bs: usize, acc: &mut [[f32; LANES]; NJ]) {
        use std::arch::x86_64::*;
        let mut sums = [_mm512_setzero_ps(); NJ];
        for d in 0..hd {
            let k = _mm512_loadu_ps(kt.add(d * bs));
            for (j, s) in sums.iter_mut().enumerate() {
                *s = _mm512_fmadd_ps(_mm512_set1_ps(*q.get_unchecked(j * hd + d)), k, *s);
            }
        }
        for (a, s) in acc.iter_mut().zip(sums) {
            _mm512_storeu_ps(a.as_mut_ptr(), s);
        }
    }
    #[inline(always)]
    unsafe fn weighted_cols<const NJ: usize>(w: &[f32], ctx: usize, v: *const f32, rows: &[usize], acc: &mut [[f32; V_COLS]; NJ]) {
        use std::arch::x86_64::*;
        let mut sums = [_mm512_setzero_ps(); NJ];
        for (p, &at) in rows.iter().enumerate() {
            let r = _mm512_loadu_ps(v.add(at));
            for (j, s) in sums.iter_mut().enumerate() {
                *s = _mm512_fmadd_ps(_mm512_set1_ps(*w.get_unchecked(j * ctx + p)), r, *s);
            }
        }
        for (a, s) in acc.iter_mut().zip(sums) {
            _mm512_storeu_ps(a.as_mut_ptr(), s);
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
mod simd {
    use super::{LANES, V_COLS};
    use std::arch::x86_64::*;

    /// `acc[j][l] = fma(q[j·hd + d], kt[d·bs + l], acc[j][l])` for d = 0..hd.
    ///
    /// # Safety
    /// `kt` must be readable at `d·bs + 0..LANES` for every `d < hd`.
    #[inline(always)]
    pub unsafe fn scores_full<const NJ: usize>(q: &[f32], kt: *const f32, hd: usize, bs: usize, acc: &mut [[f32; LANES]; NJ]) {
        let mut lo = [_mm256_setzero_ps(); NJ];
        let mut hi = [_mm256_setzero_ps(); NJ];
        for d in 0..hd {
            let k0 = _mm256_loadu_ps(kt.add(d * bs));
            let k1 = _mm256_loadu_ps(kt.add(d * bs + 8));
            for j in 0..NJ {
                let qd = _mm256_set1_ps(*q.get_unchecked(j * hd + d));
                lo[j] = _mm256_fmadd_ps(qd, k0, lo[j]);
                hi[j] = _mm256_fmadd_ps(qd, k1, hi[j]);
            }
        }
        for j in 0..NJ {
            _mm256_storeu_ps(acc[j].as_mut_ptr(), lo[j]);
            _mm256_storeu_ps(acc[j].as_mut_ptr().add(8), hi[j]);
        }
    }

    /// `acc[j][l] = Σ_p fma(w[j·ctx + p], v[rows[p] + l], ·)` over p in
    /// order, the sums held in registers.
    ///
    /// # Safety
    /// `v` must be readable at `rows[p] + 0..V_COLS` for every p.
    #[inline(always)]
    pub unsafe fn weighted_cols<const NJ: usize>(w: &[f32], ctx: usize, v: *const f32, rows: &[usize], acc: &mut [[f32; V_COLS]; NJ]) {
        let mut lo = [_mm256_setzero_ps(); NJ];
        let mut hi = [_mm256_setzero_ps(); NJ];
        for (p, &at) in rows.iter().enumerate() {
            let r0 = _mm256_loadu_ps(v.add(at));
            let r1 = _mm256_loadu_ps(v.add(at + 8));
            for j in 0..NJ {
                let wj = _mm256_set1_ps(w[j * ctx + p]);
                lo[j] = _mm256_fmadd_ps(wj, r0, lo[j]);
                hi[j] = _mm256_fmadd_ps(wj, r1, hi[j]);
            }
        }
        for j in 0..NJ {
            _mm256_storeu_ps(acc[j].as_mut_ptr(), lo[j]);
            _mm256_storeu_ps(acc[j].as_mut_ptr().add(8), hi[j]);
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
mod simd {
    use super::{LANES, V_COLS};

    /// Scalar form of the AVX2 path (same FMA chains).
    ///
    /// # Safety
    /// `kt` must be readable at `d·bs + 0..LANES` for every `d < hd`.
    #[inline(always)]
    pub unsafe fn scores_full<const NJ: usize>(q: &[f32], kt: *const f32, hd: usize, bs: usize, acc: &mut [[f32; LANES]; NJ]) {
        for d in 0..hd {
            let k = std::slice::from_raw_parts(kt.add(d * bs), LANES);
            for (j, a) in acc.iter_mut().enumerate() {
                let qd = q[j * hd + d];
                a.iter_mut().zip(k).for_each(|(a, &k)| *a = qd.mul_add(k, *a));
            }
        }
    }

    /// # Safety
    /// `v` must be readable at `rows[p] + 0..V_COLS` for every p.
    #[inline(always)]
    pub unsafe fn weighted_cols<const NJ: usize>(w: &[f32], ctx: usize, v: *const f32, rows: &[usize], acc: &mut [[f32; V_COLS]; NJ]) {
        for (p, &at) in rows.iter().enumerate() {
            let row = std::slice::from_raw_parts(v.add(at), V_COLS);
            for (j, a) in acc.iter_mut().enumerate() {
                let wj = w[j * ctx + p];
                a.iter_mut().zip(row).for_each(|(a, &x)| *a = wj.mul_add(x, *a));
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[target_feature(enable = "avx512f")]
    unsafe fn scores_avx512<const NJ: usize>(q: &[f32], kt: &[f32], hd: usize, bs: usize, n: usize, dst: &mut [f32]) {
        block_scores::<Avx512, NJ>(q, kt, hd, bs, n, 0.125, dst, bs, 0)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn values_avx512<const NJ: usize>(w: &[f32], ctx: usize, v: &[f32], hd: usize, out: &mut [f32]) {
        weighted_v::<Avx512, NJ>(w, ctx, v, |p| p * hd, hd, out)
    }

    /// The AVX-512 tiles sum every lane in the baseline's order: same bits.
    #[test]
    fn avx512_tiles_give_the_baseline_bits() {
        if !crate::cpu::CpuFeatures::get().avx512 {
            return;
        }
        let values =
            |len: usize, seed: usize| (0..len).map(|i| (((i * 7919 + seed) % 1013) as f32 / 1013.0 - 0.5) * 3.7).collect::<Vec<f32>>();
        const NJ: usize = 3;
        for (hd, bs, n) in [(64, 16, 16), (64, 16, 11), (256, 32, 32), (80, 16, 16)] {
            let (q, kt) = (values(NJ * hd, 1), values(hd * bs, 2));
            let (mut want, mut got) = (vec![0f32; NJ * bs], vec![0f32; NJ * bs]);
            // SAFETY: the baseline is the build's ISA; AVX-512F checked above.
            unsafe {
                block_scores::<Baseline, NJ>(&q, &kt, hd, bs, n, 0.125, &mut want, bs, 0);
                scores_avx512::<NJ>(&q, &kt, hd, bs, n, &mut got);
            }
            assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "scores hd {hd} bs {bs} n {n}");
            let ctx = 37;
            let (w, v) = (values(NJ * ctx, 3), values(ctx * hd, 4));
            let (mut want, mut got) = (vec![0f32; NJ * hd], vec![0f32; NJ * hd]);
            // SAFETY: as above.
            unsafe {
                weighted_v::<Baseline, NJ>(&w, ctx, &v, |p| p * hd, hd, &mut want);
                values_avx512::<NJ>(&w, ctx, &v, hd, &mut got);
            }
            assert!(want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "values hd {hd}");
        }
    }
}
