//! Quant blocks as AVX-512 lanes for the f32 and exact f64 dot-product
//! tiles: 32 values at a time (a block, or a K-quant chunk) dequantized in
//! registers to their exact f32 values (`QuantBlock::chunk`), in natural
//! order, so a stored matrix multiplies bit for bit like its f32
//! conversion. Q4_0, Q4_1 and Q8_0 have 16-lane decoders; the other types
//! join two halves of their AVX2 decoder (`blocks_avx2`).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::marker::PhantomData;

use super::blocks_avx2::Block8;
use super::dot_avx512::WeightLanes;
use super::dot_f64_avx512::WeightLanes64;
use crate::weight::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QuantBlock, BLOCK};
use crate::weight::k_blocks::{BlockQ4K, BlockQ5K, BlockQ6K};

/// A block type the AVX-512 kernels can dequantize in registers.
pub(super) trait BlockDecode: QuantBlock + Copy {
    /// What a block's chunks share (a K-quant's unpacked scales), made
    /// once per block by kernels that walk a row.
    type Head: Copy;
    /// See `WeightLanes::ONE_BY_ONE`.
    const ONE_BY_ONE: bool = true;
    unsafe fn head(b: *const Self) -> Self::Head;
    /// Chunk `c` of block `b` (values `32c .. 32c + 16` and `32c + 16 ..
    /// 32c + 32`), exact, as f32.
    unsafe fn chunk16(b: *const Self, head: &Self::Head, c: usize) -> (__m512, __m512);
    /// Values `e .. e + 32` of a row of blocks at `row` (`e` a multiple of
    /// 32), for callers that take one chunk at a time.
    #[inline(always)]
    unsafe fn decode32(row: *const Self, e: usize) -> (__m512, __m512) {
        let b = row.add(e / Self::VALUES);
        Self::chunk16(b, &Self::head(b), (e % Self::VALUES) / BLOCK)
    }
}

/// The lanes of a block type (one `Elem` is one block of 32 values).
#[derive(Clone, Copy)]
pub(super) struct BlockLanes<B>(PhantomData<B>);

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
    type Head = ();
    #[inline(always)]
    unsafe fn head(_: *const Self) {}
    #[inline(always)]
    unsafe fn chunk16(b: *const Self, _: &(), _: usize) -> (__m512, __m512) {
        let d = scale16(&raw const (*b).d);
        nibbles((*b).qs.as_ptr(), d, _mm512_mul_ps(d, _mm512_set1_ps(-8.0)))
    }
}

impl BlockDecode for BlockQ4_1 {
    type Head = ();
    #[inline(always)]
    unsafe fn head(_: *const Self) {}
    #[inline(always)]
    unsafe fn chunk16(b: *const Self, _: &(), _: usize) -> (__m512, __m512) {
        nibbles((*b).qs.as_ptr(), scale16(&raw const (*b).d), scale16(&raw const (*b).m))
    }
}

impl BlockDecode for BlockQ8_0 {
    type Head = ();
    const ONE_BY_ONE: bool = false;
    #[inline(always)]
    unsafe fn head(_: *const Self) {}
    #[inline(always)]
    unsafe fn chunk16(b: *const Self, _: &(), _: usize) -> (__m512, __m512) {
        let d = scale16(&raw const (*b).d);
        let qs = (*b).qs.as_ptr();
        let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs.cast())));
        let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs.add(16).cast())));
        (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
    }
}

/// The other types: their AVX2 decoder's four 8-lane vectors, joined.
macro_rules! decode_via_avx2 {
    ($($block:ty),*) => {$(
        impl BlockDecode for $block {
            type Head = <Self as Block8>::Head;
            #[inline(always)]
            unsafe fn head(b: *const Self) -> Self::Head {
                <Self as Block8>::head(b)
            }
            #[inline(always)]
            unsafe fn chunk16(b: *const Self, head: &Self::Head, c: usize) -> (__m512, __m512) {
                let v = <Self as Block8>::chunk8(b, head, c);
                (join(v[0], v[1]), join(v[2], v[3]))
            }
        }
    )*};
}
decode_via_avx2!(BlockQ5_0, BlockQ5_1, BlockQ4K, BlockQ5K, BlockQ6K);

/// `lo` in lanes 0..8 and `hi` in lanes 8..16.
#[inline(always)]
unsafe fn join(lo: __m256, hi: __m256) -> __m512 {
    let wide = _mm512_castpd256_pd512(_mm256_castps_pd(lo));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(wide, _mm256_castps_pd(hi)))
}

impl<B: BlockDecode> WeightLanes for BlockLanes<B> {
    type Elem = B;
    const CHUNK: usize = BLOCK;
    const ITEM: usize = B::VALUES;
    const STEPS: usize = 2;
    const ONE_BY_ONE: bool = B::ONE_BY_ONE;
    type Head = B::Head;
    #[inline(always)]
    unsafe fn head(row: *const B, e: usize) -> B::Head {
        B::head(row.add(e / B::VALUES))
    }
    #[inline(always)]
    unsafe fn load_in(row: *const B, e: usize, head: &B::Head) -> (__m512, __m512) {
        B::chunk16(row.add(e / B::VALUES), head, (e % B::VALUES) / BLOCK)
    }
    unsafe fn load_partial_at(_: *const B, _: usize, _: usize) -> (__m512, __m512) {
        unreachable!("quantized rows are whole blocks")
    }
}

impl<B: BlockDecode> WeightLanes64 for BlockLanes<B> {
    type Elem = B;
    const ITEM: usize = B::VALUES;
    #[inline(always)]
    unsafe fn load8_at(row: *const B, e: usize) -> __m512d {
        Self::quarter(B::decode32(row, e / BLOCK * BLOCK), (e % BLOCK) / 8)
    }
    unsafe fn load_partial_at(_: *const B, _: usize, _: usize) -> __m512d {
        unreachable!("quantized rows are whole blocks")
    }
    type Wide = (__m512, __m512);
    type Head = B::Head;
    #[inline(always)]
    unsafe fn head(row: *const B, e: usize) -> B::Head {
        B::head(row.add(e / B::VALUES))
    }
    #[inline(always)]
    unsafe fn load32_in(row: *const B, e: usize, head: &B::Head) -> Self::Wide {
        B::chunk16(row.add(e / B::VALUES), head, (e % B::VALUES) / BLOCK)
    }
    #[inline(always)]
    unsafe fn quarter((lo, hi): Self::Wide, q: usize) -> __m512d {
        let half = if q < 2 { lo } else { hi };
        let bits = _mm512_castps_pd(half);
        let eight = if q & 1 == 0 { _mm512_castpd512_pd256(bits) } else { _mm512_extractf64x4_pd::<1>(bits) };
        _mm512_cvtps_pd(_mm256_castpd_ps(eight))
    }
}
