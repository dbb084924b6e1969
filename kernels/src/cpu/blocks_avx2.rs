//! Every GGUF quant block type as AVX2 registers: 32 values at a time (a
//! block, or a chunk of a K-quant super-block), dequantized in registers
//! to exactly the f32 values of `QuantBlock::chunk` (same products, same
//! single rounding), in natural order. The AVX2 f32 and f64 kernels read
//! them, and the AVX-512 kernels for the types without a wider decoder.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use half::f16;

use crate::weight::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QuantBlock, BLOCK};
use crate::weight::k_blocks::{k_sub_block, q6_chunk, BlockQ4K, BlockQ5K, BlockQ6K, K_VALUES};

/// A quant block the AVX2 kernels dequantize in registers.
pub(super) trait Block8: QuantBlock + Copy {
    /// Values `e .. e + 32` of a row of blocks starting at `row` (`e` a
    /// multiple of 32), as four vectors of 8.
    unsafe fn decode32(row: *const Self, e: usize) -> [__m256; 4];
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

/// The 32 5-bit quants of a Q5 block: nibbles with bit `i` of `qh` above value `i`.
#[inline(always)]
unsafe fn five_bits(qs: *const u8, qh: [u8; 4]) -> [__m256i; 4] {
    let qh = _mm256_set1_epi32(u32::from_le_bytes(qh) as i32);
    let low = nibbles(qs);
    std::array::from_fn(|q| {
        let bit = _mm256_srlv_epi32(qh, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        let bit = _mm256_srl_epi32(bit, _mm_cvtsi32_si128(8 * q as i32));
        _mm256_or_si256(low[q], _mm256_slli_epi32::<4>(_mm256_and_si256(bit, _mm256_set1_epi32(1))))
    })
}

/// `q·d + m` (the product is exact, so the fused multiply-add rounds once,
/// like ggml's `q·d + m`).
#[inline(always)]
unsafe fn fma_values(q: [__m256i; 4], d: __m256, m: __m256) -> [__m256; 4] {
    q.map(|q| _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), d, m))
}

/// `(q − offset)·d`, exact.
#[inline(always)]
unsafe fn centred_values(q: [__m256i; 4], offset: i32, d: __m256) -> [__m256; 4] {
    q.map(|q| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(offset))), d))
}

impl Block8 for BlockQ4_0 {
    #[inline(always)]
    unsafe fn decode32(row: *const Self, e: usize) -> [__m256; 4] {
        let b = row.add(e / BLOCK);
        let d = scale8(&raw const (*b).d);
        // `q·d − 8d`, as `QuantBlock::chunk` computes it.
        fma_values(nibbles((*b).qs.as_ptr()), d, _mm256_mul_ps(d, _mm256_set1_ps(-8.0)))
    }
}

impl Block8 for BlockQ4_1 {
    #[inline(always)]
    unsafe fn decode32(row: *const Self, e: usize) -> [__m256; 4] {
        let b = row.add(e / BLOCK);
        fma_values(nibbles((*b).qs.as_ptr()), scale8(&raw const (*b).d), scale8(&raw const (*b).m))
    }
}

impl Block8 for BlockQ5_0 {
    #[inline(always)]
    unsafe fn decode32(row: *const Self, e: usize) -> [__m256; 4] {
        let b = row.add(e / BLOCK);
        centred_values(five_bits((*b).qs.as_ptr(), (*b).qh), 16, scale8(&raw const (*b).d))
    }
}

impl Block8 for BlockQ5_1 {
    #[inline(always)]
    unsafe fn decode32(row: *const Self, e: usize) -> [__m256; 4] {
        let b = row.add(e / BLOCK);
        fma_values(five_bits((*b).qs.as_ptr(), (*b).qh), scale8(&raw const (*b).d), scale8(&raw const (*b).m))
    }
}

impl Block8 for BlockQ8_0 {
    #[inline(always)]
    unsafe fn decode32(row: *const Self, e: usize) -> [__m256; 4] {
        let b = row.add(e / BLOCK);
        let d = scale8(&raw const (*b).d);
        let qs = (*b).qs.as_ptr();
        std::array::from_fn(|q| _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(qs.add(8 * q).cast()))), d))
    }
}

/// Q4_K/Q5_K sub-block `s`: `d·sc · q − dmin·m` (exact product, one rounding).
#[inline(always)]
unsafe fn k_values(d: f16, dmin: f16, scales: &[u8; 12], qs: &[u8; 128], s: usize, fifth: Option<&[u8; 32]>) -> [__m256; 4] {
    let sub = k_sub_block(d, dmin, scales, s);
    let shift = _mm_cvtsi32_si128(if sub.high_nibble { 4 } else { 0 });
    let q: [__m256i; 4] = std::array::from_fn(|q| {
        let v = _mm256_and_si256(_mm256_srl_epi32(bytes8(qs.as_ptr().add(sub.byte0), q), shift), _mm256_set1_epi32(0x0F));
        match fifth {
            // Sub-block `s` takes its fifth bits from bit `s` of each qh byte.
            Some(qh) => {
                let bit = _mm256_srl_epi32(bytes8(qh.as_ptr(), q), _mm_cvtsi32_si128(s as i32));
                _mm256_or_si256(v, _mm256_slli_epi32::<4>(_mm256_and_si256(bit, _mm256_set1_epi32(1))))
            }
            None => v,
        }
    });
    fma_values(q, _mm256_set1_ps(sub.scale), _mm256_set1_ps(-sub.min))
}

impl Block8 for BlockQ4K {
    #[inline(always)]
    unsafe fn decode32(row: *const Self, e: usize) -> [__m256; 4] {
        let b = &*row.add(e / K_VALUES);
        k_values(b.d, b.dmin, &b.scales, &b.qs, (e % K_VALUES) / BLOCK, None)
    }
}

impl Block8 for BlockQ5K {
    #[inline(always)]
    unsafe fn decode32(row: *const Self, e: usize) -> [__m256; 4] {
        let b = &*row.add(e / K_VALUES);
        k_values(b.d, b.dmin, &b.scales, &b.qs, (e % K_VALUES) / BLOCK, Some(&b.qh))
    }
}

impl Block8 for BlockQ6K {
    #[inline(always)]
    unsafe fn decode32(row: *const Self, e: usize) -> [__m256; 4] {
        let b = &*row.add(e / K_VALUES);
        let c = q6_chunk(b, (e % K_VALUES) / BLOCK);
        let (ql_shift, qh_shift) = (_mm_cvtsi32_si128(c.ql_shift as i32), _mm_cvtsi32_si128(c.qh_shift as i32));
        std::array::from_fn(|q| {
            let low = _mm256_and_si256(_mm256_srl_epi32(bytes8(b.ql.as_ptr().add(c.ql0), q), ql_shift), _mm256_set1_epi32(0x0F));
            let high = _mm256_and_si256(_mm256_srl_epi32(bytes8(b.qh.as_ptr().add(c.qh0), q), qh_shift), _mm256_set1_epi32(3));
            let quant = _mm256_sub_epi32(_mm256_or_si256(low, _mm256_slli_epi32::<4>(high)), _mm256_set1_epi32(32));
            // (d · scale) · q, in ggml's order: the second product may round.
            _mm256_mul_ps(_mm256_cvtepi32_ps(quant), _mm256_set1_ps(c.scales[q / 2]))
        })
    }
}
