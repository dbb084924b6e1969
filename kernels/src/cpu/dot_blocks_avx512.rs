//! Quant blocks (Q4_0, Q4_1, Q8_0) as AVX-512 lanes for the f32 and exact
//! f64 dot-product tiles: each block is dequantized in registers to its
//! exact f32 values (see `weight::blocks`), in natural order, so a stored
//! matrix multiplies bit for bit like its f32 conversion.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::marker::PhantomData;

use super::dot_avx512::WeightLanes;
use super::dot_f64_avx512::WeightLanes64;
use crate::weight::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QuantBlock, BLOCK};

/// A block type the AVX-512 kernels can dequantize in registers.
pub(crate) trait BlockDecode: QuantBlock + Copy {
    /// Values 0..16 and 16..32 of the block at `b`, exact, as f32.
    unsafe fn decode(b: *const Self) -> (__m512, __m512);
}

/// The lanes of a block type (one `Elem` is one block of 32 values).
#[derive(Clone, Copy)]
pub(crate) struct BlockLanes<B>(PhantomData<B>);

/// The f16 at `p` as f32, broadcast.
#[inline(always)]
unsafe fn scale16(p: *const half::f16) -> __m512 {
    let bits = std::ptr::read_unaligned(p.cast::<u16>());
    _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// 16 nibble bytes: (low nibbles, high nibbles) as `q·d + m`. The 16
/// possible values are made once (`table[q] = fma(q, d, m)`, exactly as a
/// value-by-value dequantization rounds) and looked up by `vpermps`, which
/// reads only an index's low 4 bits: no masking of the low nibbles and no
/// int-to-float conversions.
#[inline(always)]
unsafe fn nibbles(qs: *const u8, d: __m512, m: __m512) -> (__m512, __m512) {
    let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(qs.cast()));
    let iota = _mm512_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0);
    let table = _mm512_fmadd_ps(iota, d, m);
    (_mm512_permutexvar_ps(q, table), _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(q), table))
}

impl BlockDecode for BlockQ4_0 {
    #[inline(always)]
    unsafe fn decode(b: *const Self) -> (__m512, __m512) {
        let d = scale16(&raw const (*b).d);
        nibbles((*b).qs.as_ptr(), d, _mm512_mul_ps(d, _mm512_set1_ps(-8.0)))
    }
}

impl BlockDecode for BlockQ4_1 {
    #[inline(always)]
    unsafe fn decode(b: *const Self) -> (__m512, __m512) {
        nibbles((*b).qs.as_ptr(), scale16(&raw const (*b).d), scale16(&raw const (*b).m))
    }
}

impl BlockDecode for BlockQ8_0 {
    #[inline(always)]
    unsafe fn decode(b: *const Self) -> (__m512, __m512) {
        let d = scale16(&raw const (*b).d);
        let qs = (*b).qs.as_ptr();
        let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs.cast())));
        let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs.add(16).cast())));
        (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
    }
}

impl<B: BlockDecode> WeightLanes for BlockLanes<B> {
    type Elem = B;
    const CHUNK: usize = BLOCK;
    const ITEM: usize = BLOCK;
    const STEPS: usize = 2;
    #[inline(always)]
    unsafe fn load(p: *const B) -> (__m512, __m512) {
        B::decode(p)
    }
    unsafe fn load_partial(_: *const B, _: usize) -> (__m512, __m512) {
        unreachable!("quantized rows are whole blocks")
    }
}

impl<B: BlockDecode> WeightLanes64 for BlockLanes<B> {
    type Elem = B;
    const ITEM: usize = BLOCK;
    #[inline(always)]
    unsafe fn load8_at(row: *const B, e: usize) -> __m512d {
        Self::quarter(B::decode(row.add(e / BLOCK)), (e % BLOCK) / 8)
    }
    unsafe fn load_partial_at(_: *const B, _: usize, _: usize) -> __m512d {
        unreachable!("quantized rows are whole blocks")
    }
    type Wide = (__m512, __m512);
    #[inline(always)]
    unsafe fn load32_at(row: *const B, e: usize) -> Self::Wide {
        B::decode(row.add(e / BLOCK))
    }
    #[inline(always)]
    unsafe fn quarter((lo, hi): Self::Wide, q: usize) -> __m512d {
        let half = if q < 2 { lo } else { hi };
        let bits = _mm512_castps_pd(half);
        let eight = if q & 1 == 0 { _mm512_castpd512_pd256(bits) } else { _mm512_extractf64x4_pd::<1>(bits) };
        _mm512_cvtps_pd(_mm256_castpd_ps(eight))
    }
}
