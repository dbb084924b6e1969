//! The exact mode's attention at the default shape (head_dim 64, blocks of
//! 16) for the query heads that share one KV head, in vector registers:
//! each K row and V row is loaded once for all of them, blocks are scored
//! in independent FMA chains, and a slice of every head's output stays in
//! registers. One body for AVX-512 (8 lanes) and AVX2 (4 lanes); every
//! element sees the operations of `attend_head` in its order, so the
//! results are the same bits on every path.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::attention::{AttnQuery, PagedKv};
use super::attention_f64::{k_block, softmax_from};
use super::features::CpuFeatures;

const HD: usize = 64;
const BS: usize = 16;

/// A vector of f64 lanes. Its intrinsics inline only into callers
/// compiled with the matching target feature.
trait F64Lanes: Copy {
    const N: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f64) -> Self;
    /// The first `N` values of `s` (callers slice it to length).
    unsafe fn load(s: &[f64]) -> Self;
    unsafe fn store(self, d: &mut [f64]);
    /// `a·b + c`, rounded once.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
}

#[derive(Clone, Copy)]
struct Avx512(__m512d);

impl F64Lanes for Avx512 {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(_mm512_setzero_pd())
    }
    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        Self(_mm512_set1_pd(x))
    }
    #[inline(always)]
    unsafe fn load(s: &[f64]) -> Self {
        Self(_mm512_loadu_pd(s[..Self::N].as_ptr()))
    }
    #[inline(always)]
    unsafe fn store(self, d: &mut [f64]) {
        _mm512_storeu_pd(d[..Self::N].as_mut_ptr(), self.0)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        Self(_mm512_fmadd_pd(a.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        Self(_mm512_mul_pd(a.0, b.0))
    }
}

#[derive(Clone, Copy)]
struct Avx2(__m256d);

impl F64Lanes for Avx2 {
    const N: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(_mm256_setzero_pd())
    }
    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        Self(_mm256_set1_pd(x))
    }
    #[inline(always)]
    unsafe fn load(s: &[f64]) -> Self {
        Self(_mm256_loadu_pd(s[..Self::N].as_ptr()))
    }
    #[inline(always)]
    unsafe fn store(self, d: &mut [f64]) {
        _mm256_storeu_pd(d[..Self::N].as_mut_ptr(), self.0)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        Self(_mm256_fmadd_pd(a.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        Self(_mm256_mul_pd(a.0, b.0))
    }
}

/// Attends the query heads `q` (adjacent, all reading KV head `g`) into
/// `out` with the widest registers `features` allow; false (nothing
/// written) where no group kernel fits, and the caller goes head by head.
pub(super) fn attend_group_64x16(
    features: CpuFeatures,
    q: &[f64],
    query: &AttnQuery<f64>,
    kv: &PagedKv<f64>,
    g: usize,
    scale: f64,
    out: &mut [f64],
) -> bool {
    if kv.head_dim != HD || kv.block_size != BS || q.len() != out.len() || !q.len().is_multiple_of(HD) {
        return false;
    }
    let heads = q.len() / HD;
    if features.avx512 {
        // SAFETY: the CPU has AVX-512F (`CpuFeatures::avx512`).
        unsafe {
            match heads {
                1 => group_avx512::<1>(q, query, kv, g, scale, out),
                2 => group_avx512::<2>(q, query, kv, g, scale, out),
                3 => group_avx512::<3>(q, query, kv, g, scale, out),
                4 => group_avx512::<4>(q, query, kv, g, scale, out),
                _ => return false,
            }
        }
        return true;
    }
    if !features.avx2 {
        return false;
    }
    // Sixteen AVX2 registers hold three heads' sums of a block: larger
    // groups go in parts (each head's result is its own, whatever the part).
    let mut h = 0;
    while h < heads {
        let n = if heads - h == 4 { 2 } else { (heads - h).min(3) };
        let (qp, op) = (&q[h * HD..(h + n) * HD], &mut out[h * HD..(h + n) * HD]);
        // SAFETY: the CPU has AVX2 and FMA (`CpuFeatures::avx2`).
        unsafe {
            match n {
                1 => group_avx2::<1>(qp, query, kv, g, scale, op),
                2 => group_avx2::<2>(qp, query, kv, g, scale, op),
                _ => group_avx2::<3>(qp, query, kv, g, scale, op),
            }
        }
        h += n;
    }
    true
}

/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn group_avx512<const G: usize>(q: &[f64], query: &AttnQuery<f64>, kv: &PagedKv<f64>, g: usize, scale: f64, out: &mut [f64]) {
    // Two blocks scored at once (4·G chains), 32 output dimensions a pass.
    attend_group::<Avx512, G, 2, 2, 4>(q, query, kv, g, scale, out)
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn group_avx2<const G: usize>(q: &[f64], query: &AttnQuery<f64>, kv: &PagedKv<f64>, g: usize, scale: f64, out: &mut [f64]) {
    // One block at a time (4·G chains), 16 output dimensions a pass.
    attend_group::<Avx2, G, 1, 4, 4>(q, query, kv, g, scale, out)
}

/// `G` heads; `NB` blocks scored together; `KV = BS / V::N` vectors per
/// block row; `VV` vectors of each head's output per pass over V.
#[inline(always)]
unsafe fn attend_group<V: F64Lanes, const G: usize, const NB: usize, const KV: usize, const VV: usize>(
    q: &[f64],
    query: &AttnQuery<f64>,
    kv: &PagedKv<f64>,
    g: usize,
    scale: f64,
    out: &mut [f64],
) {
    debug_assert_eq!(KV * V::N, BS);
    let ctx = query.context_len;
    out.fill(0.0);
    if ctx == 0 {
        return;
    }
    assert!(q.len() == G * HD && out.len() == G * HD, "group shapes");
    let blocks = &query.block_table[..ctx.div_ceil(BS)];
    let n = blocks.len() * BS;
    // scores[j·n + p]: head j, position p.
    let mut scores = vec![0f64; G * n];
    let sc = V::splat(scale);
    let mut b = 0;
    while b < blocks.len() {
        let took = NB.min(blocks.len() - b);
        let kts: [&[f64]; NB] = std::array::from_fn(|i| k_block::<HD, BS>(kv, blocks[b + i.min(took - 1)], g));
        let mut acc = [[[V::zero(); KV]; NB]; G];
        for d in 0..HD {
            let k: [[V; KV]; NB] = std::array::from_fn(|i| std::array::from_fn(|c| V::load(&kts[i][d * BS + c * V::N..])));
            for (j, a) in acc.iter_mut().enumerate() {
                let qd = V::splat(q[j * HD + d]);
                for (ai, ki) in a.iter_mut().zip(&k) {
                    for c in 0..KV {
                        ai[c] = V::fma(qd, ki[c], ai[c]);
                    }
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            for (i, ai) in a.iter().take(took).enumerate() {
                let at = j * n + (b + i) * BS;
                for (c, v) in ai.iter().enumerate() {
                    V::mul(*v, sc).store(&mut scores[at + c * V::N..]);
                }
            }
        }
        b += took;
    }
    for s in scores.chunks_exact_mut(n) {
        softmax_from(&mut s[..ctx], query.window_start);
    }
    for c0 in (0..HD).step_by(VV * V::N) {
        let mut acc = [[V::zero(); VV]; G];
        for p in 0..ctx {
            let at = kv.v_row(blocks[p / BS], p % BS, g) + c0;
            let v: [V; VV] = std::array::from_fn(|c| V::load(&kv.v[at + c * V::N..]));
            for (j, a) in acc.iter_mut().enumerate() {
                let w = V::splat(scores[j * n + p]);
                for (ac, vc) in a.iter_mut().zip(&v) {
                    *ac = V::fma(w, *vc, *ac);
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            for (c, ac) in a.iter().enumerate() {
                ac.store(&mut out[j * HD + c0 + c * V::N..]);
            }
        }
    }
}
