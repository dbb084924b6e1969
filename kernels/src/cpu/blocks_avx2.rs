//! Every GGUF quant block type as AVX2 registers: 32 values at a time (a
//! block, or a chunk of a K-quant super-block), dequantized in registers
//! to exactly the f32 values of `QuantBlock::chunk` (same products, same
//! single rounding), in natural order. The AVX2 f32 and f64 kernels read
//! them, and the AVX-512 kernels for the types without a wider decoder.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use half::f16;

use super::matmul_avx2::DecodeTile;

use crate::weight::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QuantBlock};
use crate::weight::k_blocks::{BlockQ4K, BlockQ5K, BlockQ6K, Q6Chunk};

/// A quant block the AVX2 kernels dequantize in registers.
pub(super) trait Block8: QuantBlock + Copy {
    /// What a block's chunks share, unpacked once per block by kernels
    /// that walk a row (a K-quant's eight or sixteen scales: unpacking
    /// them for every chunk made K-quant decode 3-4x slower than Q8_0's).
    type Head: Copy;
    /// How the one-row kernel walks rows of this type.
    const DECODE: DecodeTile;
    unsafe fn head(b: *const Self) -> Self::Head;
    /// Chunk `c` (values `32c .. 32c + 32`) of block `b`, as four vectors of 8.
    unsafe fn chunk8(b: *const Self, head: &Self::Head, c: usize) -> [__m256; 4];
}

/// The blocks of 32 values: nothing to share between chunks.
macro_rules! one_chunk_blocks {
    ($($t:ty: $decode:ident),*) => {$(
        impl Block8 for $t {
            type Head = ();
            const DECODE: DecodeTile = DecodeTile::$decode;
            #[inline(always)]
            unsafe fn head(_: *const Self) {}
            #[inline(always)]
            unsafe fn chunk8(b: *const Self, _: &(), _: usize) -> [__m256; 4] {
                Self::decode_block(b)
            }
        }
    )*};
}
one_chunk_blocks!(BlockQ4_0: FourTogether, BlockQ4_1: FourTogether, BlockQ5_0: FourTogether, BlockQ5_1: FourTogether, BlockQ8_0: FourTogether);

/// A 32-value block's decoder.
trait DecodeBlock {
    unsafe fn decode_block(b: *const Self) -> [__m256; 4];
}

/// The f16 at `p` as f32, broadcast.
#[inline(always)]
unsafe fn scale8(p: *const f16) -> __m256 {
    let bits = std::ptr::read_unaligned(p.cast::<u16>());
    _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// Bytes `8q .. 8q + 8` at `p`, widened to eight i32 lanes (unsigned).
#[inline(always)]
unsafe fn bytes8(p: *const u8, q: usize) -> __m256i {
    _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(8 * q).cast()))
}

/// The 32 4-bit quants of a 16-byte block of nibbles (values 0..16 in the
/// low nibbles, 16..32 in the high ones).
#[inline(always)]
unsafe fn nibbles(qs: *const u8) -> [__m256i; 4] {
    std::array::from_fn(|q| {
        let v = bytes8(qs, q & 1);
        if q < 2 {
            _mm256_and_si256(v, _mm256_set1_epi32(0x0F))
        } else {
            _mm256_srli_epi32::<4>(v)
        }
    })
}

/// 32 bytes as four vectors of 8 i32 lanes, sign-extended, natural order.
#[inline(always)]
unsafe fn widen_i8(v: __m256i) -> [__m256i; 4] {
    let (lo, hi) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)].map(|b| _mm256_cvtepi8_epi32(b))
}

/// Row `byte` of a table: bit `l` of `byte` as the value `16`, plus
/// `offset`, in lane `l` (the fifth bits of eight consecutive quants in
/// one aligned load: spreading them with vector shifts took five
/// operations per vector of 8 and left Q5_0 the slowest decoder per value).
#[repr(C, align(32))]
struct FifthBits([[i32; 8]; 256]);

impl FifthBits {
    const fn with_offset(offset: i32) -> Self {
        let mut t = [[0i32; 8]; 256];
        let mut b = 0;
        while b < 256 {
            let mut l = 0;
            while l < 8 {
                t[b][l] = ((((b >> l) & 1) as i32) << 4) + offset;
                l += 1;
            }
            b += 1;
        }
        Self(t)
    }
}

/// Q5_1's fifth bits, and Q5_0's with its `−16` folded in.
static FIFTH: FifthBits = FifthBits::with_offset(0);
static FIFTH_LESS_16: FifthBits = FifthBits::with_offset(-16);

/// The 32 5-bit quants of a Q5 block (from `table`): nibbles with bit `i`
/// of `qh` above value `i`.
#[inline(always)]
unsafe fn five_bit_lanes(qs: *const u8, qh: [u8; 4], table: &FifthBits) -> [__m256i; 4] {
    let low = nibbles(qs);
    std::array::from_fn(|q| _mm256_add_epi32(low[q], _mm256_load_si256(table.0[qh[q] as usize].as_ptr().cast())))
}

/// `q·d + m` (the product is exact, so the fused multiply-add rounds once,
/// like ggml's `q·d + m`).
#[inline(always)]
unsafe fn fma_values(q: [__m256i; 4], d: __m256, m: __m256) -> [__m256; 4] {
    q.map(|q| _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), d, m))
}

impl DecodeBlock for BlockQ4_0 {
    #[inline(always)]
    unsafe fn decode_block(b: *const Self) -> [__m256; 4] {
        let d = scale8(&raw const (*b).d);
        // `q·d − 8d`, as `QuantBlock::chunk` computes it.
        fma_values(nibbles((*b).qs.as_ptr()), d, _mm256_mul_ps(d, _mm256_set1_ps(-8.0)))
    }
}

impl DecodeBlock for BlockQ4_1 {
    #[inline(always)]
    unsafe fn decode_block(b: *const Self) -> [__m256; 4] {
        fma_values(nibbles((*b).qs.as_ptr()), scale8(&raw const (*b).d), scale8(&raw const (*b).m))
    }
}

impl DecodeBlock for BlockQ5_0 {
    #[inline(always)]
    unsafe fn decode_block(b: *const Self) -> [__m256; 4] {
        let d = scale8(&raw const (*b).d);
        five_bit_lanes((*b).qs.as_ptr(), (*b).qh, &FIFTH_LESS_16).map(|q| _mm256_mul_ps(_mm256_cvtepi32_ps(q), d))
    }
}

impl DecodeBlock for BlockQ5_1 {
    #[inline(always)]
    unsafe fn decode_block(b: *const Self) -> [__m256; 4] {
        fma_values(five_bit_lanes((*b).qs.as_ptr(), (*b).qh, &FIFTH), scale8(&raw const (*b).d), scale8(&raw const (*b).m))
    }
}

impl DecodeBlock for BlockQ8_0 {
    #[inline(always)]
    unsafe fn decode_block(b: *const Self) -> [__m256; 4] {
        let d = scale8(&raw const (*b).d);
        let qs = (*b).qs.as_ptr();
        std::array::from_fn(|q| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(qs.add(8 * q).cast()))), d))
    }
}

/// A Q4_K/Q5_K block's eight sub-block scales `d·sc` and negated mins
/// `−dmin·m` (all exact in f32).
#[derive(Clone, Copy)]
pub(super) struct KScales {
    pub(super) scale: [f32; 8],
    pub(super) neg_min: [f32; 8],
}

#[inline(always)]
unsafe fn k_scales(d: *const f16, dmin: *const f16, scales: &[u8; 12]) -> KScales {
    // The eight 6-bit scales and mins as bytes, as ggml's `utmp` shuffle
    // unpacks them (the values `scale_min_k4` gives one at a time).
    const LOW6: u32 = 0x3F3F_3F3F;
    const LOW4: u32 = 0x0F0F_0F0F;
    const LOW2: u32 = 0x0303_0303;
    let u: [u32; 3] = std::array::from_fn(|i| u32::from_le_bytes(std::array::from_fn(|b| scales[4 * i + b])));
    let sc = [u[0] & LOW6, (u[2] & LOW4) | (((u[0] >> 6) & LOW2) << 4)];
    let m = [u[1] & LOW6, ((u[2] >> 4) & LOW4) | (((u[1] >> 6) & LOW2) << 4)];
    let as_f32 = |b: [u32; 2]| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, b[1] as i32, b[0] as i32)));
    let mut out = KScales { scale: [0.0; 8], neg_min: [0.0; 8] };
    _mm256_storeu_ps(out.scale.as_mut_ptr(), _mm256_mul_ps(as_f32(sc), _mm256_set1_ps(f16_at(d))));
    _mm256_storeu_ps(out.neg_min.as_mut_ptr(), _mm256_mul_ps(as_f32(m), _mm256_set1_ps(-f16_at(dmin))));
    out
}

/// The f16 at `p` as f32 (F16C, not a library call per chunk).
#[inline(always)]
unsafe fn f16_at(p: *const f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p.cast::<u16>()) as i32)))
}

/// Q4_K/Q5_K sub-block `s`: `d·sc · q − dmin·m` (exact product, one rounding).
/// Sub-blocks `2p` and `2p + 1` share bytes `32p .. 32p + 32`, low then
/// high nibbles; with `fifth`, sub-block `s` takes bit `s` of each byte.
#[inline(always)]
unsafe fn k_values(head: &KScales, qs: *const u8, s: usize, fifth: Option<*const u8>) -> [__m256; 4] {
    let shift = _mm_cvtsi32_si128(4 * (s % 2) as i32);
    let q: [__m256i; 4] = std::array::from_fn(|q| {
        let v = _mm256_and_si256(_mm256_srl_epi32(bytes8(qs.add((s / 2) * 32), q), shift), _mm256_set1_epi32(0x0F));
        match fifth {
            Some(qh) => {
                let bit = _mm256_srl_epi32(bytes8(qh, q), _mm_cvtsi32_si128(s as i32));
                _mm256_or_si256(v, _mm256_slli_epi32::<4>(_mm256_and_si256(bit, _mm256_set1_epi32(1))))
            }
            None => v,
        }
    });
    fma_values(q, _mm256_broadcast_ss(&head.scale[s]), _mm256_broadcast_ss(&head.neg_min[s]))
}

/// Q4_K and Q5_K: the same scales and nibbles; `$fifth` gives a block's
/// fifth bits (none for Q4_K).
macro_rules! k4_blocks {
    ($($t:ty => $fifth:expr),*) => {$(
        impl Block8 for $t {
            type Head = KScales;
            const DECODE: DecodeTile = DecodeTile::FourOneByOne;
            #[inline(always)]
            unsafe fn head(b: *const Self) -> KScales {
                k_scales(&raw const (*b).d, &raw const (*b).dmin, &(*b).scales)
            }
            #[inline(always)]
            unsafe fn chunk8(b: *const Self, head: &KScales, c: usize) -> [__m256; 4] {
                k_values(head, (*b).qs.as_ptr(), c, $fifth(b))
            }
        }
    )*};
}
k4_blocks!(BlockQ4K => |_| None, BlockQ5K => |b: *const BlockQ5K| Some((*b).qh.as_ptr()));

impl Block8 for BlockQ6K {
    /// The sixteen `d·sc` (exact); chunk `c` uses `2c` and `2c + 1`.
    type Head = [f32; 16];
    const DECODE: DecodeTile = DecodeTile::FourOneByOne;
    #[inline(always)]
    unsafe fn head(b: *const Self) -> [f32; 16] {
        let d = _mm256_set1_ps(f16_at(&raw const (*b).d));
        let sc = _mm_loadu_si128((*b).scales.as_ptr().cast());
        let mut out = [0.0; 16];
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)), d));
        _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(sc))), d));
        out
    }
    #[inline(always)]
    unsafe fn chunk8(b: *const Self, head: &[f32; 16], c: usize) -> [__m256; 4] {
        let q = widen_i8(q6_quants(b, c));
        // (d · scale) · q, in ggml's order: the second product may round.
        std::array::from_fn(|v| _mm256_mul_ps(_mm256_cvtepi32_ps(q[v]), _mm256_broadcast_ss(&head[2 * c + v / 2])))
    }
}

/// Chunk `c` of a Q6_K block: its 32 signed quants (`q − 32`) as bytes.
#[inline(always)]
pub(super) unsafe fn q6_quants(b: *const BlockQ6K, c: usize) -> __m256i {
    let at = Q6Chunk::at(c);
    let (ql_shift, qh_shift) = (_mm_cvtsi32_si128(at.ql_shift as i32), _mm_cvtsi32_si128(at.qh_shift as i32));
    let ql = _mm256_loadu_si256((*b).ql.as_ptr().add(at.ql0).cast());
    let qh = _mm256_loadu_si256((*b).qh.as_ptr().add(at.qh0).cast());
    // Bytes: nibble | two high bits << 4, less 32 (16-bit shifts; the
    // masks drop what crossed from the neighbouring byte).
    let low = _mm256_and_si256(_mm256_srl_epi16(ql, ql_shift), _mm256_set1_epi8(0x0F));
    let high = _mm256_and_si256(_mm256_srl_epi16(qh, qh_shift), _mm256_set1_epi8(3));
    _mm256_sub_epi8(_mm256_or_si256(low, _mm256_slli_epi16::<4>(high)), _mm256_set1_epi8(32))
}
