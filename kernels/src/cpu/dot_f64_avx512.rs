//! AVX-512 f64 dot-product tiles for the exact (masked-input) matmul:
//! weights are widened to f64 in registers (exact for f32, bf16 and f16),
//! every product and sum is f64.

#![cfg(target_arch = "x86_64")]

use half::{bf16, f16};
use std::arch::x86_64::*;

/// How a weight type yields 8 f64 lanes.
pub(crate) trait WeightLanes64: Copy {
    type Elem: Copy;
    unsafe fn load8(p: *const Self::Elem) -> __m512d;
    /// First `n < 8` elements, zero elsewhere.
    unsafe fn load_partial(p: *const Self::Elem, n: usize) -> __m512d;
}

#[derive(Clone, Copy)]
pub(crate) struct F32To64;
#[derive(Clone, Copy)]
pub(crate) struct Bf16To64;
#[derive(Clone, Copy)]
pub(crate) struct F16To64;

impl WeightLanes64 for F32To64 {
    type Elem = f32;
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> __m512d {
        _mm512_cvtps_pd(_mm256_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f32, n: usize) -> __m512d {
        _mm512_cvtps_pd(_mm256_maskz_loadu_ps(((1u32 << n) - 1) as u8, p))
    }
}

impl WeightLanes64 for Bf16To64 {
    type Elem = bf16;
    #[inline(always)]
    unsafe fn load8(p: *const bf16) -> __m512d {
        widen_bf16(_mm_loadu_si128(p.cast()))
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const bf16, n: usize) -> __m512d {
        widen_bf16(_mm_maskz_loadu_epi16(((1u32 << n) - 1) as u8, p.cast()))
    }
}

impl WeightLanes64 for F16To64 {
    type Elem = f16;
    #[inline(always)]
    unsafe fn load8(p: *const f16) -> __m512d {
        _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128(p.cast())))
    }
    #[inline(always)]
    unsafe fn load_partial(p: *const f16, n: usize) -> __m512d {
        _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_maskz_loadu_epi16(((1u32 << n) - 1) as u8, p.cast())))
    }
}

#[inline(always)]
unsafe fn widen_bf16(v: __m128i) -> __m512d {
    let f = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v)));
    _mm512_cvtps_pd(f)
}

/// `NR` f64 dot products of one activation row with `NR` weight rows, `k`
/// long, consuming a whole 64-byte line of every bf16 weight row per step
/// (32 elements), and prefetching the next `NR` rows (the next tile, when
/// rows are contiguous) one line per row per step. A one-row GEMV is bound by
/// cold weight reads: `dot_tile_f64` (16 bytes of 4 rows per step) streamed
/// 5 GB/s per core on the 2-vCPU VM, this 8.6 (2 cores: 8.6 → 15 GB/s).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
#[inline]
pub(crate) unsafe fn dot_lines_f64<L: WeightLanes64, const NR: usize>(x: *const f64, w: [*const L::Elem; NR], k: usize) -> [f64; NR] {
    let mut acc = [[_mm512_setzero_pd(); 2]; NR];
    let steps = k / 32;
    for s in 0..steps {
        let c = s * 32;
        let xv: [__m512d; 4] = std::array::from_fn(|q| _mm512_loadu_pd(x.add(c + q * 8)));
        // The next tile's rows follow these in memory: fetch their line of
        // this step into L2 now (a prefetch never faults, even past the end).
        for wj in w {
            _mm_prefetch::<_MM_HINT_T1>(wj.wrapping_add(NR * k + c).cast());
        }
        for j in 0..NR {
            for q in 0..4 {
                acc[j][q & 1] = _mm512_fmadd_pd(L::load8(w[j].add(c + q * 8)), xv[q], acc[j][q & 1]);
            }
        }
    }
    let mut c = steps * 32;
    while c < k {
        let n = (k - c).min(8);
        let xv = _mm512_maskz_loadu_pd(((1u32 << n) - 1) as u8, x.add(c));
        for j in 0..NR {
            acc[j][0] = _mm512_fmadd_pd(L::load_partial(w[j].add(c), n), xv, acc[j][0]);
        }
        c += n;
    }
    std::array::from_fn(|j| _mm512_reduce_add_pd(_mm512_add_pd(acc[j][0], acc[j][1])))
}

/// `MR × NR` f64 dot products of activation rows `x[i]` with weight rows
/// `w[j]`, each `k` long; `out[i][j]`. With `prefetch_ahead`, also pulls
/// the weights that many elements on into L2 (callers pass the next tile).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
#[inline]
pub(crate) unsafe fn dot_tile_f64<L: WeightLanes64, const MR: usize, const NR: usize>(
    x: [*const f64; MR],
    w: [*const L::Elem; NR],
    k: usize,
    prefetch_ahead: Option<usize>,
) -> [[f64; NR]; MR] {
    let mut acc = [[_mm512_setzero_pd(); NR]; MR];
    let full = k / 8;
    for c in 0..full {
        if let Some(ahead) = prefetch_ahead {
            // Into L2, the same columns `ahead` elements further on (the next
            // tile's rows); a prefetch never faults, even past the end.
            for wj in w {
                _mm_prefetch::<_MM_HINT_T1>(wj.wrapping_add(ahead + c * 8).cast());
            }
        }
        let wv: [__m512d; NR] = std::array::from_fn(|j| L::load8(w[j].add(c * 8)));
        for i in 0..MR {
            let xv = _mm512_loadu_pd(x[i].add(c * 8));
            for j in 0..NR {
                acc[i][j] = _mm512_fmadd_pd(wv[j], xv, acc[i][j]);
            }
        }
    }
    let rest = k % 8;
    if rest != 0 {
        let wv: [__m512d; NR] = std::array::from_fn(|j| L::load_partial(w[j].add(full * 8), rest));
        for i in 0..MR {
            let xv = _mm512_maskz_loadu_pd(((1u32 << rest) - 1) as u8, x[i].add(full * 8));
            for j in 0..NR {
                acc[i][j] = _mm512_fmadd_pd(wv[j], xv, acc[i][j]);
            }
        }
    }
    let mut out = [[0f64; NR]; MR];
    for i in 0..MR {
        for j in 0..NR {
            out[i][j] = _mm512_reduce_add_pd(acc[i][j]);
        }
    }
    out
}
