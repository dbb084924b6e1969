//! Exact-mode (f64) matmul for a few rows (≤ 32) on CPUs with AVX2 and FMA
//! but no AVX-512 (EPYC Rome/Milan, most SEV-SNP hosts): a weight row is
//! read 32 values at a time, widened or dequantized in registers to its
//! exact f32 values (the AVX2 f32 kernel's lanes), then to f64; every
//! product and sum is f64. Without it these CPUs widened each weight row
//! into a scratch buffer and ran a scalar-order loop.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::matmul_avx2::{Bf16L, BlockL, DecodeTile, Lanes32, F16L, F32L};
use super::parallel::{aligned_ranges, run_tasks, threads, SharedMut};
use super::scratch::with_f64;
use crate::weight::WeightMatrix;

/// Values per weight chunk.
const CHUNK: usize = 32;

/// `out (rows × w.rows) = x (rows × w.cols) · Wᵀ` in f64. Caller checked
/// shapes and AVX2+FMA+F16C.
pub(super) fn matmul(x: &[f64], rows: usize, w: &WeightMatrix, out: &mut [f64]) {
    crate::match_weight_data!(&w.data,
        F32(v) => run::<F32L>(x, rows, w.cols, v, w.rows, out),
        Bf16(v) => run::<Bf16L>(x, rows, w.cols, v, w.rows, out),
        F16(v) => run::<F16L>(x, rows, w.cols, v, w.rows, out),
        Blocks(v) => run::<BlockL<_>>(x, rows, w.cols, v, w.rows, out),
    )
}

fn run<L: Lanes32>(x: &[f64], rows: usize, k: usize, w: &[L::Elem], n: usize, out: &mut [f64]) {
    // Rows padded with zeros to whole chunks (only when `k` is not a
    // multiple of 32), so every chunk loads unmasked.
    let kp = k.div_ceil(CHUNK) * CHUNK;
    with_f64(|padded| {
        let xs: &[f64] = if kp == k {
            x
        } else {
            padded.resize(rows * kp, 0.0);
            for (dst, src) in padded.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
                dst[..k].copy_from_slice(src);
            }
            padded
        };
        let out_ptr = SharedMut(out.as_mut_ptr());
        let ranges = aligned_ranges(n, threads() * 4, 16);
        run_tasks(ranges.len(), rows * n * k, |t| {
            // SAFETY: AVX2+FMA+F16C checked by the caller; tasks write disjoint output columns.
            unsafe { tiles::<L>(xs, kp, rows, k, w, ranges[t].clone(), out_ptr, n) };
        });
    });
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles<L: Lanes32>(
    xs: &[f64],
    kp: usize,
    rows: usize,
    k: usize,
    w: &[L::Elem],
    cols: std::ops::Range<usize>,
    out: SharedMut<f64>,
    n: usize,
) {
    let stride = k / L::ITEM;
    let wp = |j: usize| w.as_ptr().add(j.min(cols.end - 1) * stride);
    let xr = |r: usize| xs.as_ptr().add(r.min(rows - 1) * kp);
    let store = |r: usize, j: usize, v: f64| {
        if r < rows && j < cols.end {
            *out.get().add(r * n + j) = v;
        }
    };
    if rows == 1 {
        // Decode: a GEMV bound by weight reads; four weight rows with two
        // accumulators each keep eight FMA chains in flight.
        for j0 in cols.clone().step_by(4) {
            let w = std::array::from_fn(|j| wp(j0 + j));
            let res = match L::DECODE {
                DecodeTile::FourOneByOne => dot_tile::<L, 1, 4, 2, true>([xr(0)], w, k),
                _ => dot_tile::<L, 1, 4, 2, false>([xr(0)], w, k),
            };
            (0..4).for_each(|j| store(0, j0 + j, res[0][j]));
        }
        return;
    }
    for j0 in cols.clone().step_by(2) {
        let ws = [wp(j0), wp(j0 + 1)];
        let mut r0 = 0;
        while r0 + 2 < rows {
            let res = dot_tile::<L, 4, 2, 1, false>(std::array::from_fn(|i| xr(r0 + i)), ws, k);
            (0..4).for_each(|i| (0..2).for_each(|j| store(r0 + i, j0 + j, res[i][j])));
            r0 += 4;
        }
        while r0 < rows {
            let res = dot_tile::<L, 1, 2, 1, false>([xr(r0)], ws, k);
            (0..2).for_each(|j| store(r0, j0 + j, res[0][j]));
            r0 += 1;
        }
    }
}

/// `MR × NR` f64 dot products of zero-padded activation rows with weight
/// rows of `k` values, `ACC` accumulators per product (the 4-value parts of
/// a chunk take them in turn); `out[i][j] = x[i] · w[j]`. `ONE_BY_ONE`:
/// see the f32 kernel's `DecodeTile`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_tile<L: Lanes32, const MR: usize, const NR: usize, const ACC: usize, const ONE_BY_ONE: bool>(
    x: [*const f64; MR],
    w: [*const L::Elem; NR],
    k: usize,
) -> [[f64; NR]; MR] {
    let mut acc = [[[_mm256_setzero_pd(); ACC]; NR]; MR];
    let (full, rest) = (k / CHUNK, k % CHUNK);
    let mut heads: [L::Head; NR] = std::array::from_fn(|j| L::head(w[j], 0));
    for c in 0..full + usize::from(rest != 0) {
        let e = c * CHUNK;
        if L::head_changes_at(e) {
            heads = std::array::from_fn(|j| L::head(w[j], e));
        }
        let load = |j: usize| if c < full { L::load32_in(w[j], e, &heads[j]) } else { L::load_partial(w[j], e, rest) };
        if MR == 1 && ONE_BY_ONE {
            // As in the f32 kernel: one row's decoded chunk live at a time.
            for (j, a) in acc[0].iter_mut().enumerate() {
                let wv = load(j);
                for part in 0..8 {
                    let half = if part % 2 == 0 { _mm256_castps256_ps128(wv[part / 2]) } else { _mm256_extractf128_ps::<1>(wv[part / 2]) };
                    let xv = _mm256_loadu_pd(x[0].add(e + 4 * part));
                    a[part % ACC] = _mm256_fmadd_pd(_mm256_cvtps_pd(half), xv, a[part % ACC]);
                }
            }
            continue;
        }
        let wv: [[__m256; 4]; NR] = std::array::from_fn(load);
        // `q` picks the same quarter of every column's chunk, so it is an index, not an item.
        #[allow(clippy::needless_range_loop)]
        for q in 0..4 {
            for h in 0..2 {
                let wd: [__m256d; NR] = std::array::from_fn(|j| {
                    let half = if h == 0 { _mm256_castps256_ps128(wv[j][q]) } else { _mm256_extractf128_ps::<1>(wv[j][q]) };
                    _mm256_cvtps_pd(half)
                });
                let part = 2 * q + h;
                for (acc_i, x_i) in acc.iter_mut().zip(&x) {
                    let xv = _mm256_loadu_pd(x_i.add(e + 4 * part));
                    for (a, w_j) in acc_i.iter_mut().zip(&wd) {
                        a[part % ACC] = _mm256_fmadd_pd(*w_j, xv, a[part % ACC]);
                    }
                }
            }
        }
    }
    std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let total = acc[i][j][1..].iter().fold(acc[i][j][0], |s, &a| _mm256_add_pd(s, a));
            hsum(total)
        })
    })
}

/// The 4 lanes' sum in a fixed order.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum(v: __m256d) -> f64 {
    let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
    _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
}
