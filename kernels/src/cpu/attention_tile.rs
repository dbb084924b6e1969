//! The inner loops of paged attention for `NJ` query heads that share one
//! KV head: scores against a transposed K block, and the weighted sum of V.
//!
//! Every value is an FMA chain in a fixed order (over `d` for a score, over
//! positions for an output element) whatever lane or tile computes it: the
//! AVX2 path and the scalar path give the same bits, and so does a query
//! alone or among others (batch invariance).

/// Positions scored at once.
const LANES: usize = 16;
/// Columns of V accumulated at once.
const V_COLS: usize = 16;

/// Scores of `NJ` query heads (`q`, `NJ × hd`) against the first `n`
/// positions of one transposed K block (`kt`, `hd × bs`), times `scale`,
/// into `dst[j·ctx + p0 + slot]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn block_scores<const NJ: usize>(
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
            unsafe { simd::scores_full::<NJ>(q, kt.as_ptr().add(c), hd, bs, &mut acc) };
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
#[inline(always)]
pub(crate) fn weighted_v<const NJ: usize>(w: &[f32], ctx: usize, v: &[f32], v_at: impl Fn(usize) -> usize, hd: usize, out: &mut [f32]) {
    assert!(w.len() == NJ * ctx && out.len() == NJ * hd);
    // Row offsets once, not once per column block (a division each).
    let rows: Vec<usize> = (0..ctx).map(v_at).collect();
    assert!(rows.iter().all(|&r| r + hd <= v.len()), "V rows inside the cache");
    for c in (0..hd).step_by(V_COLS) {
        let cols = V_COLS.min(hd - c);
        let mut acc = [[0f32; V_COLS]; NJ];
        if cols == V_COLS {
            // SAFETY: every row holds hd ≥ c + V_COLS values (checked above).
            unsafe { simd::weighted_cols::<NJ>(w, ctx, v.as_ptr().add(c), &rows, &mut acc) };
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
