//! Quant blocks as AVX-512 lanes for the f32 and exact f64 dot-product
//! tiles: 32 values at a time (a block, or a K-quant chunk) dequantized in
//! registers to their exact f32 values (`QuantBlock::chunk`), in natural
//! order, so a stored matrix multiplies bit for bit like its f32
//! conversion. The K-quants share the AVX2 walk's unpacked scales and Q6_K
//! its byte assembly (`blocks_avx2`).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::marker::PhantomData;

use super::blocks_avx2::{q6_quants, Block8, KScales};
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
    /// See `WeightLanes::STREAM_MAX_ROWS`.
    const STREAM_MAX_ROWS: usize = 16;
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

/// The f16 pair at `p` (a block's `d`, then its `m`) as two broadcast f32
/// vectors: one load and one conversion for both.
#[inline(always)]
unsafe fn scale_pair16(p: *const half::f16) -> (__m512, __m512) {
    let bits = std::ptr::read_unaligned(p.cast::<u32>());
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    (_mm512_broadcastss_ps(dm), _mm512_broadcastss_ps(_mm_movehdup_ps(dm)))
}

/// 16 nibble bytes: (low nibbles, high nibbles) as `q·d + m`. The 16
/// possible values are made once (`table[q] = fma(q, d, m)`, exactly as a
/// value-by-value dequantization rounds) and looked up by `vpermps`, which
/// reads only an index's low 4 bits: no masking of the low nibbles and no
/// int-to-float conversions.
#[inline(always)]
unsafe fn nibbles(qs: *const u8, d: __m512, m: __m512) -> (__m512, __m512) {
    let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(qs.cast()));
    let table = _mm512_fmadd_ps(iota16(), d, m);
    (_mm512_permutexvar_ps(q, table), _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(q), table))
}

/// A Q5 block's 32 values from its 32 possible ones (`low[q]` for the
/// quants 0..16, `high[q - 16]` for 16..32): each nibble with its fifth bit
/// (a mask register from `qh`) is a 5-bit index into the two tables
/// (`vpermt2ps`), in place of the AVX2 walk's per-8-value table loads,
/// conversions and products.
#[inline(always)]
unsafe fn five_bit_values(qs: *const u8, qh: [u8; 4], low: __m512, high: __m512) -> (__m512, __m512) {
    let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(qs.cast()));
    let bits = u32::from_le_bytes(qh);
    let sixteen = _mm512_set1_epi32(16);
    let lo = _mm512_and_si512(q, _mm512_set1_epi32(0x0F));
    let lo = _mm512_mask_or_epi32(lo, bits as u16, lo, sixteen);
    let hi = _mm512_srli_epi32::<4>(q);
    let hi = _mm512_mask_or_epi32(hi, (bits >> 16) as u16, hi, sixteen);
    (_mm512_permutex2var_ps(low, lo, high), _mm512_permutex2var_ps(low, hi, high))
}

/// 0, 1, …, 15.
#[inline(always)]
unsafe fn iota16() -> __m512 {
    _mm512_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0)
}

/// The blocks of 32 values: nothing shared between chunks (no head);
/// `$decode(b)` gives a block's values.
macro_rules! block32 {
    ($($t:ty => $decode:ident, one_by_one: $one_by_one:expr);* $(;)?) => {$(
        impl BlockDecode for $t {
            type Head = ();
            const ONE_BY_ONE: bool = $one_by_one;
            #[inline(always)]
            unsafe fn head(_: *const Self) {}
            #[inline(always)]
            unsafe fn chunk16(b: *const Self, _: &(), _: usize) -> (__m512, __m512) {
                $decode(b)
            }
        }
    )*};
}
block32! {
    BlockQ4_0 => q4_0, one_by_one: true;
    BlockQ4_1 => q4_1, one_by_one: true;
    BlockQ5_0 => q5_0, one_by_one: true;
    BlockQ5_1 => q5_1, one_by_one: true;
    BlockQ8_0 => q8_0, one_by_one: false;
}

#[inline(always)]
unsafe fn q4_0(b: *const BlockQ4_0) -> (__m512, __m512) {
    let d = scale16(&raw const (*b).d);
    nibbles((*b).qs.as_ptr(), d, _mm512_mul_ps(d, _mm512_set1_ps(-8.0)))
}

#[inline(always)]
unsafe fn q4_1(b: *const BlockQ4_1) -> (__m512, __m512) {
    let (d, m) = scale_pair16(&raw const (*b).d);
    nibbles((*b).qs.as_ptr(), d, m)
}

#[inline(always)]
unsafe fn q5_0(b: *const BlockQ5_0) -> (__m512, __m512) {
    // `(q − 16)·d`: exact products, as `QuantBlock::chunk` makes them.
    let d = scale16(&raw const (*b).d);
    let iota = iota16();
    let low = _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(16.0)), d);
    five_bit_values((*b).qs.as_ptr(), (*b).qh, low, _mm512_mul_ps(iota, d))
}

#[inline(always)]
unsafe fn q5_1(b: *const BlockQ5_1) -> (__m512, __m512) {
    // `q·d + m` (exact product, one rounding).
    let (d, m) = scale_pair16(&raw const (*b).d);
    let iota = iota16();
    let high = _mm512_fmadd_ps(_mm512_add_ps(iota, _mm512_set1_ps(16.0)), d, m);
    five_bit_values((*b).qs.as_ptr(), (*b).qh, _mm512_fmadd_ps(iota, d, m), high)
}

#[inline(always)]
unsafe fn q8_0(b: *const BlockQ8_0) -> (__m512, __m512) {
    let d = scale16(&raw const (*b).d);
    let qs = (*b).qs.as_ptr();
    let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs.cast())));
    let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(qs.add(16).cast())));
    (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
}

/// Q4_K/Q5_K sub-block `s` (chunk `s`): `d·sc·q − dmin·m`, looked up in
/// the 16 (Q4_K) or 32 (Q5_K, `fifth`) possible values made once per chunk
/// (the AVX2 walk converts and multiplies every value).
#[inline(always)]
unsafe fn k_values16(head: &KScales, qs: *const u8, s: usize, fifth: Option<*const u8>) -> (__m512, __m512) {
    // Sub-blocks 2p and 2p + 1 share bytes 32p .. 32p + 32: low nibbles, then high.
    let bytes = qs.add((s / 2) * 32);
    let shift = _mm_cvtsi32_si128(4 * (s % 2) as i32);
    let lo = _mm512_srl_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(bytes.cast())), shift);
    let hi = _mm512_srl_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(bytes.add(16).cast())), shift);
    let (scale, neg_min) = (_mm512_set1_ps(head.scale[s]), _mm512_set1_ps(head.neg_min[s]));
    let iota = iota16();
    let low = _mm512_fmadd_ps(iota, scale, neg_min);
    let Some(qh) = fifth else {
        // `vpermps` reads an index's low 4 bits: the nibble.
        return (_mm512_permutexvar_ps(lo, low), _mm512_permutexvar_ps(hi, low));
    };
    // Bit s of each of the 32 bytes of `qh`, moved to the bytes' top bits
    // (a 16-bit shift by 7 − s moves each byte's bit s to its bit 7).
    let top = _mm256_sll_epi16(_mm256_loadu_si256(qh.cast()), _mm_cvtsi32_si128(7 - s as i32));
    let bits = _mm256_movemask_epi8(top) as u32;
    let (nib, sixteen) = (_mm512_set1_epi32(0x0F), _mm512_set1_epi32(16));
    let (lo, hi) = (_mm512_and_si512(lo, nib), _mm512_and_si512(hi, nib));
    let lo = _mm512_mask_or_epi32(lo, bits as u16, lo, sixteen);
    let hi = _mm512_mask_or_epi32(hi, (bits >> 16) as u16, hi, sixteen);
    let high = _mm512_fmadd_ps(_mm512_add_ps(iota, _mm512_set1_ps(16.0)), scale, neg_min);
    (_mm512_permutex2var_ps(low, lo, high), _mm512_permutex2var_ps(low, hi, high))
}

/// Q4_K and Q5_K: the AVX2 walk's scales (`KScales`), 16-lane values.
macro_rules! k4_blocks {
    ($($t:ty => $fifth:expr),*) => {$(
        impl BlockDecode for $t {
            type Head = KScales;
            #[inline(always)]
            unsafe fn head(b: *const Self) -> KScales {
                <Self as Block8>::head(b)
            }
            #[inline(always)]
            unsafe fn chunk16(b: *const Self, head: &KScales, c: usize) -> (__m512, __m512) {
                k_values16(head, (*b).qs.as_ptr(), c, $fifth(b))
            }
        }
    )*};
}
k4_blocks!(BlockQ4K => |_| None, BlockQ5K => |b: *const BlockQ5K| Some((*b).qh.as_ptr()));

impl BlockDecode for BlockQ6K {
    type Head = [f32; 16];
    // Its decoder is the costliest: decoding a row once into a panel beats
    // decoding it once per four rows from 8 rows on (0.79-0.89x the time
    // at 8 rows, 0.52-0.54x at 16; `kernel_bench --quick shapes q6_k`,
    // session 25), while every other type streams as fast or faster up to 16.
    const STREAM_MAX_ROWS: usize = 4;
    #[inline(always)]
    unsafe fn head(b: *const Self) -> [f32; 16] {
        <Self as Block8>::head(b)
    }
    #[inline(always)]
    unsafe fn chunk16(b: *const Self, head: &[f32; 16], c: usize) -> (__m512, __m512) {
        let q = q6_quants(b, c);
        let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
        let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256::<1>(q)));
        // (d · scale) · q, in ggml's order: the second product may round.
        (_mm512_mul_ps(lo, _mm512_set1_ps(head[2 * c])), _mm512_mul_ps(hi, _mm512_set1_ps(head[2 * c + 1])))
    }
}

impl<B: BlockDecode> WeightLanes for BlockLanes<B> {
    type Elem = B;
    const CHUNK: usize = BLOCK;
    const ITEM: usize = B::VALUES;
    const STEPS: usize = 2;
    const ONE_BY_ONE: bool = B::ONE_BY_ONE;
    const STREAM_MAX_ROWS: usize = B::STREAM_MAX_ROWS;
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
