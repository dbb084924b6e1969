//! AVX-512 f64 dot-product tiles for the exact (masked-input) matmul:
//! weights are widened to f64 in registers (exact for f32, bf16, f16 and
//! the quant blocks' f32 values), every product and sum is f64.

#![cfg(target_arch = "x86_64")]

use half::{bf16, f16};
use std::arch::x86_64::*;

use super::prefetch::prefetch_lines;

/// How a weight type yields 8 f64 lanes.
pub(crate) trait WeightLanes64: Copy {
    type Elem: Copy;
    /// Values per `Elem` (1, or a quant block's 32 or 256).
    const ITEM: usize = 1;
    /// Values `e .. e + 8` of the row at `row` (`e` a multiple of 8).
    unsafe fn load8_at(row: *const Self::Elem, e: usize) -> __m512d;
    /// Values `e .. e + n` (`n < 8`), zero elsewhere.
    unsafe fn load_partial_at(row: *const Self::Elem, e: usize, n: usize) -> __m512d;
    /// Values `e .. e + 32` (`e` a multiple of 32), in whatever form makes
    /// [`Self::quarter`] cheapest: a pointer for plain types (loaded lazily),
    /// the block decoded once for quant types (`load32_in`).
    type Wide: Copy;
    /// What the 32-value steps of one `Elem` share (a K-quant
    /// super-block's unpacked scales), made once per `Elem`; `()` else.
    type Head: Copy;
    /// The head of the `Elem` holding value `e` of the row at `row`.
    unsafe fn head(row: *const Self::Elem, e: usize) -> Self::Head;
    /// Whether the 32-value step at `e` starts a new `Elem` with its own head.
    #[inline(always)]
    fn head_changes_at(e: usize) -> bool {
        Self::ITEM > 32 && e.is_multiple_of(Self::ITEM)
    }
    /// The 32 values from `e` (`head`: that of the `Elem` holding `e`).
    unsafe fn load32_in(row: *const Self::Elem, e: usize, head: &Self::Head) -> Self::Wide;
    /// Values `8q .. 8q + 8` of a `load32_in` result.
    unsafe fn quarter(w: Self::Wide, q: usize) -> __m512d;
}

/// The lazy `Wide` of the plain types: the row pointer and offset.
macro_rules! lazy_wide {
    ($elem:ty) => {
        type Wide = (*const $elem, usize);
        type Head = ();
        #[inline(always)]
        unsafe fn head(_: *const $elem, _: usize) {}
        #[inline(always)]
        unsafe fn load32_in(row: *const $elem, e: usize, _: &()) -> Self::Wide {
            (row, e)
        }
        #[inline(always)]
        unsafe fn quarter((row, e): Self::Wide, q: usize) -> __m512d {
            Self::load8_at(row, e + 8 * q)
        }
    };
}

#[derive(Clone, Copy)]
pub(crate) struct F32To64;
#[derive(Clone, Copy)]
pub(crate) struct Bf16To64;
#[derive(Clone, Copy)]
pub(crate) struct F16To64;

impl WeightLanes64 for F32To64 {
    type Elem = f32;
    lazy_wide!(f32);
    #[inline(always)]
    unsafe fn load8_at(row: *const f32, e: usize) -> __m512d {
        _mm512_cvtps_pd(_mm256_loadu_ps(row.add(e)))
    }
    #[inline(always)]
    unsafe fn load_partial_at(row: *const f32, e: usize, n: usize) -> __m512d {
        _mm512_cvtps_pd(_mm256_maskz_loadu_ps(((1u32 << n) - 1) as u8, row.add(e)))
    }
}

impl WeightLanes64 for Bf16To64 {
    type Elem = bf16;
    lazy_wide!(bf16);
    #[inline(always)]
    unsafe fn load8_at(row: *const bf16, e: usize) -> __m512d {
        widen_bf16(_mm_loadu_si128(row.add(e).cast()))
    }
    #[inline(always)]
    unsafe fn load_partial_at(row: *const bf16, e: usize, n: usize) -> __m512d {
        widen_bf16(_mm_maskz_loadu_epi16(((1u32 << n) - 1) as u8, row.add(e).cast()))
    }
}

impl WeightLanes64 for F16To64 {
    type Elem = f16;
    lazy_wide!(f16);
    #[inline(always)]
    unsafe fn load8_at(row: *const f16, e: usize) -> __m512d {
        _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128(row.add(e).cast())))
    }
    #[inline(always)]
    unsafe fn load_partial_at(row: *const f16, e: usize, n: usize) -> __m512d {
        _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_maskz_loadu_epi16(((1u32 << n) - 1) as u8, row.add(e).cast())))
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
    let mut heads: [L::Head; NR] = std::array::from_fn(|j| L::head(w[j], 0));
    for s in 0..steps {
        let c = s * 32;
        if s > 0 && L::head_changes_at(c) {
            heads = std::array::from_fn(|j| L::head(w[j], c));
        }
        let xv: [__m512d; 4] = std::array::from_fn(|q| _mm512_loadu_pd(x.add(c + q * 8)));
        // The next tile's rows follow these in memory: fetch their line of
        // this step into L2 now (a prefetch never faults, even past the end).
        for wj in w {
            prefetch_lines(wj, NR * k + c, L::ITEM, 1);
        }
        for j in 0..NR {
            let wide = L::load32_in(w[j], c, &heads[j]);
            for q in 0..4 {
                acc[j][q & 1] = _mm512_fmadd_pd(L::quarter(wide, q), xv[q], acc[j][q & 1]);
            }
        }
    }
    let mut c = steps * 32;
    while c < k {
        let n = (k - c).min(8);
        let xv = _mm512_maskz_loadu_pd(((1u32 << n) - 1) as u8, x.add(c));
        for j in 0..NR {
            acc[j][0] = _mm512_fmadd_pd(L::load_partial_at(w[j], c, n), xv, acc[j][0]);
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
    // Whole 32-value steps (each weight row's values loaded or decoded
    // once), then 8-value steps; the sums run over the 8-value steps in
    // order either way.
    let wide_steps = if L::ITEM > 1 { k / 32 } else { 0 };
    let mut heads: [L::Head; NR] = std::array::from_fn(|j| L::head(w[j], 0));
    for s in 0..wide_steps {
        let c = s * 32;
        if s > 0 && L::head_changes_at(c) {
            heads = std::array::from_fn(|j| L::head(w[j], c));
        }
        if let Some(ahead) = prefetch_ahead {
            for wj in w {
                prefetch_lines(wj, ahead + c, L::ITEM, 1);
            }
        }
        let wide: [L::Wide; NR] = std::array::from_fn(|j| L::load32_in(w[j], c, &heads[j]));
        for q in 0..4 {
            let wv: [__m512d; NR] = std::array::from_fn(|j| L::quarter(wide[j], q));
            for i in 0..MR {
                let xv = _mm512_loadu_pd(x[i].add(c + q * 8));
                for j in 0..NR {
                    acc[i][j] = _mm512_fmadd_pd(wv[j], xv, acc[i][j]);
                }
            }
        }
    }
    for c in wide_steps * 4..full {
        if let Some(ahead) = prefetch_ahead {
            // Into L2, the same columns `ahead` elements further on (the next
            // tile's rows); a prefetch never faults, even past the end.
            for wj in w {
                prefetch_lines(wj, ahead + c * 8, L::ITEM, 1);
            }
        }
        let wv: [__m512d; NR] = std::array::from_fn(|j| L::load8_at(w[j], c * 8));
        for i in 0..MR {
            let xv = _mm512_loadu_pd(x[i].add(c * 8));
            for j in 0..NR {
                acc[i][j] = _mm512_fmadd_pd(wv[j], xv, acc[i][j]);
            }
        }
    }
    let rest = k % 8;
    if rest != 0 {
        let wv: [__m512d; NR] = std::array::from_fn(|j| L::load_partial_at(w[j], full * 8, rest));
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
