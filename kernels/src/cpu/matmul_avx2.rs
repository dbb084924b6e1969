//! f32 matmul for CPUs with AVX2 and FMA but no AVX-512 (EPYC Rome and
//! Milan, the CPUs of many SEV-SNP machines; older Xeons), on every weight
//! type: a weight row is read 32 values at a time, widened or dequantized
//! in registers to exact f32 (four 8-lane vectors, natural order), and
//! multiplied into 8 lane-wise partial sums.
//!
//! Every output element sums the same way whatever the tile or the number
//! of rows: lane `l` accumulates values `l, l+8, l+16, l+24` of each
//! 32-value chunk in chunk order, then a fixed reduction tree. So a row's
//! result is bit-identical alone or in a batch (not bit-equal to the
//! AVX-512 path's 16-lane sums).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::marker::PhantomData;

use half::{bf16, f16};

use super::dot_avx512::pack_x;
use super::parallel::{aligned_ranges, run_tasks, threads, SharedMut};
use super::scratch::with_f32;
use crate::weight::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BLOCK};
use crate::weight::{WeightData, WeightMatrix};

/// Values per chunk.
const CHUNK: usize = 32;

/// How a weight type yields 32 f32 values.
pub(super) trait Lanes32 {
    type Elem: Copy + Sync;
    /// Values per `Elem` (1, or 32 for a quant block).
    const ITEM: usize = 1;
    /// Values `e .. e + 32` of the row at `row` (`e` a multiple of 32).
    unsafe fn load32(row: *const Self::Elem, e: usize) -> [__m256; 4];
    /// Values `e .. e + n` (`n < 32`), zero beyond.
    unsafe fn load_partial(row: *const Self::Elem, e: usize, n: usize) -> [__m256; 4];
}

/// A plain type's partial chunk, through a zero-padded copy.
#[inline(always)]
unsafe fn partial_via_copy<L: Lanes32>(row: *const L::Elem, e: usize, n: usize, zero: L::Elem) -> [__m256; 4] {
    let mut buf = [zero; CHUNK];
    std::ptr::copy_nonoverlapping(row.add(e), buf.as_mut_ptr(), n);
    L::load32(buf.as_ptr(), 0)
}

pub(super) struct F32L;
pub(super) struct Bf16L;
pub(super) struct F16L;
pub(super) struct BlockL<B>(PhantomData<B>);

impl Lanes32 for F32L {
    type Elem = f32;
    #[inline(always)]
    unsafe fn load32(row: *const f32, e: usize) -> [__m256; 4] {
        std::array::from_fn(|q| _mm256_loadu_ps(row.add(e + 8 * q)))
    }
    unsafe fn load_partial(row: *const f32, e: usize, n: usize) -> [__m256; 4] {
        partial_via_copy::<Self>(row, e, n, 0.0)
    }
}

impl Lanes32 for Bf16L {
    type Elem = bf16;
    #[inline(always)]
    unsafe fn load32(row: *const bf16, e: usize) -> [__m256; 4] {
        std::array::from_fn(|q| {
            let v = _mm256_cvtepu16_epi32(_mm_loadu_si128(row.add(e + 8 * q).cast()));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v))
        })
    }
    unsafe fn load_partial(row: *const bf16, e: usize, n: usize) -> [__m256; 4] {
        partial_via_copy::<Self>(row, e, n, bf16::ZERO)
    }
}

impl Lanes32 for F16L {
    type Elem = f16;
    #[inline(always)]
    unsafe fn load32(row: *const f16, e: usize) -> [__m256; 4] {
        std::array::from_fn(|q| _mm256_cvtph_ps(_mm_loadu_si128(row.add(e + 8 * q).cast())))
    }
    unsafe fn load_partial(row: *const f16, e: usize, n: usize) -> [__m256; 4] {
        partial_via_copy::<Self>(row, e, n, f16::ZERO)
    }
}

/// The f16 at `p` as f32, broadcast.
#[inline(always)]
unsafe fn scale8(p: *const f16) -> __m256 {
    let bits = std::ptr::read_unaligned(p.cast::<u16>());
    _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// 16 nibble bytes as `q·d + m`: values 0..8, 8..16 (low nibbles), 16..24,
/// 24..32 (high nibbles). The product is exact, so the fused multiply-add
/// rounds like ggml's `q·d + m`.
#[inline(always)]
unsafe fn nibbles(qs: *const u8, d: __m256, m: __m256) -> [__m256; 4] {
    let bytes = [_mm_loadl_epi64(qs.cast()), _mm_loadl_epi64(qs.add(8).cast())];
    std::array::from_fn(|q| {
        let v = _mm256_cvtepu8_epi32(bytes[q & 1]);
        let v = if q < 2 { _mm256_and_si256(v, _mm256_set1_epi32(0x0F)) } else { _mm256_srli_epi32::<4>(v) };
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), d, m)
    })
}

/// A quant block the AVX2 kernel dequantizes in registers.
pub(super) trait Block8: Copy + Sync {
    unsafe fn decode(b: *const Self) -> [__m256; 4];
}

impl Block8 for BlockQ4_0 {
    #[inline(always)]
    unsafe fn decode(b: *const Self) -> [__m256; 4] {
        let d = scale8(&raw const (*b).d);
        nibbles((*b).qs.as_ptr(), d, _mm256_mul_ps(d, _mm256_set1_ps(-8.0)))
    }
}

impl Block8 for BlockQ4_1 {
    #[inline(always)]
    unsafe fn decode(b: *const Self) -> [__m256; 4] {
        nibbles((*b).qs.as_ptr(), scale8(&raw const (*b).d), scale8(&raw const (*b).m))
    }
}

impl Block8 for BlockQ8_0 {
    #[inline(always)]
    unsafe fn decode(b: *const Self) -> [__m256; 4] {
        let d = scale8(&raw const (*b).d);
        let qs = (*b).qs.as_ptr();
        std::array::from_fn(|q| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(qs.add(8 * q).cast()))), d))
    }
}

impl<B: Block8> Lanes32 for BlockL<B> {
    type Elem = B;
    const ITEM: usize = BLOCK;
    #[inline(always)]
    unsafe fn load32(row: *const B, e: usize) -> [__m256; 4] {
        B::decode(row.add(e / BLOCK))
    }
    unsafe fn load_partial(_: *const B, _: usize, _: usize) -> [__m256; 4] {
        unreachable!("quantized rows are whole blocks")
    }
}

/// `out (rows × w.rows) = x (rows × w.cols) · Wᵀ`. Caller checked shapes and AVX2+FMA.
pub(crate) fn matmul(x: &[f32], rows: usize, w: &WeightMatrix, out: &mut [f32]) {
    match &w.data {
        WeightData::F32(v) => run::<F32L>(x, rows, w.cols, v, w.rows, out),
        WeightData::Bf16(v) => run::<Bf16L>(x, rows, w.cols, v, w.rows, out),
        WeightData::F16(v) => run::<F16L>(x, rows, w.cols, v, w.rows, out),
        WeightData::Q4_0(v) => run::<BlockL<_>>(x, rows, w.cols, v, w.rows, out),
        WeightData::Q4_1(v) => run::<BlockL<_>>(x, rows, w.cols, v, w.rows, out),
        WeightData::Q8_0(v) => run::<BlockL<_>>(x, rows, w.cols, v, w.rows, out),
    }
}

fn run<L: Lanes32>(x: &[f32], rows: usize, k: usize, w: &[L::Elem], n: usize, out: &mut [f32]) {
    // Activations padded with zeros to whole chunks, so they load unmasked.
    let kp = k.div_ceil(CHUNK) * CHUNK;
    with_f32(|xp| {
        pack_x(x, rows, k, kp, false, xp);
        let xp: &[f32] = xp;
        let out_ptr = SharedMut(out.as_mut_ptr());
        let ranges = aligned_ranges(n, threads() * 4, 16);
        run_tasks(ranges.len(), rows * n * k, |t| {
            // SAFETY: AVX2+FMA checked by the caller; tasks write disjoint output columns.
            unsafe { tiles::<L>(xp, kp, rows, k, w, ranges[t].clone(), out_ptr, n) };
        });
    });
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles<L: Lanes32>(
    xp: &[f32],
    kp: usize,
    rows: usize,
    k: usize,
    w: &[L::Elem],
    cols: std::ops::Range<usize>,
    out: SharedMut<f32>,
    n: usize,
) {
    let stride = k / L::ITEM;
    let wp = |j: usize| w.as_ptr().add(j.min(cols.end - 1) * stride);
    let xr = |r: usize| xp.as_ptr().add(r.min(rows - 1) * kp);
    let store = |r: usize, j: usize, v: f32| {
        if r < rows && j < cols.end {
            *out.get().add(r * n + j) = v;
        }
    };
    for j0 in cols.clone().step_by(2) {
        let ws = [wp(j0), wp(j0 + 1)];
        let mut r0 = 0;
        while r0 + 2 < rows {
            let res = dot_tile::<L, 4, 2>(std::array::from_fn(|i| xr(r0 + i)), ws, k);
            (0..4).for_each(|i| (0..2).for_each(|j| store(r0 + i, j0 + j, res[i][j])));
            r0 += 4;
        }
        while r0 < rows {
            let res = dot_tile::<L, 1, 2>([xr(r0)], ws, k);
            (0..2).for_each(|j| store(r0, j0 + j, res[0][j]));
            r0 += 1;
        }
    }
}

/// `MR × NR` dot products of padded activation rows with weight rows of `k`
/// values; `out[i][j] = x[i] · w[j]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_tile<L: Lanes32, const MR: usize, const NR: usize>(
    x: [*const f32; MR],
    w: [*const L::Elem; NR],
    k: usize,
) -> [[f32; NR]; MR] {
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
    let full = k / CHUNK;
    let rest = k % CHUNK;
    for c in 0..=full {
        let e = c * CHUNK;
        if c == full && rest == 0 {
            break;
        }
        let wv: [[__m256; 4]; NR] = std::array::from_fn(|j| if c < full { L::load32(w[j], e) } else { L::load_partial(w[j], e, rest) });
        for q in 0..4 {
            for (acc_i, x_i) in acc.iter_mut().zip(&x) {
                let xv = _mm256_loadu_ps(x_i.add(e + 8 * q));
                for (a, w_j) in acc_i.iter_mut().zip(&wv) {
                    *a = _mm256_fmadd_ps(w_j[q], xv, *a);
                }
            }
        }
    }
    std::array::from_fn(|i| std::array::from_fn(|j| hsum(acc[i][j])))
}

/// The 8 lanes' sum in a fixed order.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
}
