//! AVX-512 dot-product micro-kernels shared by the f32 GEMV and GEMM paths.
//!
//! Every output element is computed the same way whatever the tile shape or
//! the number of rows in the call: 16 lane-wise partial sums over the K
//! dimension, one fused multiply-add per 16-element step in step order, then
//! the fixed reduction tree of [`reduce16`]. That makes a row's result
//! bit-identical whether it is computed alone (GEMV) or in a batch (GEMM).
//!
//! Weights are widened to f32 in registers. bf16 widening avoids shuffles:
//! a 64-byte load holds 16 pairs; `<< 16` gives the even elements and
//! `& 0xFFFF0000` the odd ones, so activations for bf16 weights are packed
//! per 32-element chunk as `[16 even | 16 odd]` (see [`pack_x_bf16_order`]).

#![cfg(target_arch = "x86_64")]

use half::{bf16, f16};
use std::arch::x86_64::*;

use super::prefetch::prefetch_lines;

/// How a weight type yields f32 lanes for one chunk of K.
pub(super) trait WeightLanes: Copy {
    type Elem: Copy;
    /// Weight values per chunk.
    const CHUNK: usize;
    /// Values per `Elem` (1, or a quant block's 32 or 256).
    const ITEM: usize = 1;
    /// f32 vectors per chunk (1 or 2); the second is unused when 1.
    const STEPS: usize;
    /// Whether activations are packed `[16 even | 16 odd]` per 32 values
    /// (bf16's shuffle-free widening); else in natural order.
    const PAIR_ORDER: bool = false;
    /// Whether a one-row tile decodes and multiplies one weight row's
    /// chunk at a time (decoders with many steps: 16 rows' decoded chunks
    /// at once spill), or lets all rows' loads go first (cheap ones).
    const ONE_BY_ONE: bool = false;
    /// Up to this many activation rows the weights are streamed (decoded
    /// in registers once per four rows), not widened to an f32 panel first.
    const STREAM_MAX_ROWS: usize = 16;
    /// What the chunks of one `Elem` share (a K-quant super-block's
    /// unpacked scales), made once per `Elem` by a row walk; `()` else.
    type Head: Copy;
    /// The head of the `Elem` holding value `e` of the row at `row`.
    unsafe fn head(row: *const Self::Elem, e: usize) -> Self::Head;
    /// Whether the chunk at value `e` starts a new `Elem` with its own head.
    #[inline(always)]
    fn head_changes_at(e: usize) -> bool {
        Self::ITEM > Self::CHUNK && e.is_multiple_of(Self::ITEM)
    }
    /// Loads the chunk of values `e .. e + CHUNK` of the row at `row`
    /// (`head`: that of the `Elem` holding `e`).
    unsafe fn load_in(row: *const Self::Elem, e: usize, head: &Self::Head) -> (__m512, __m512);
    /// Loads values `e .. e + n` (`n < CHUNK`), zero elsewhere.
    unsafe fn load_partial_at(row: *const Self::Elem, e: usize, n: usize) -> (__m512, __m512);
}

#[derive(Clone, Copy)]
pub(crate) struct F32Lanes;
#[derive(Clone, Copy)]
pub(crate) struct Bf16Lanes;
#[derive(Clone, Copy)]
pub(crate) struct F16Lanes;

impl WeightLanes for F32Lanes {
    type Elem = f32;
    const CHUNK: usize = 16;
    const STEPS: usize = 1;
    type Head = ();
    #[inline(always)]
    unsafe fn head(_: *const f32, _: usize) {}
    #[inline(always)]
    unsafe fn load_in(row: *const f32, e: usize, _: &()) -> (__m512, __m512) {
        let v = _mm512_loadu_ps(row.add(e));
        (v, v)
    }
    #[inline(always)]
    unsafe fn load_partial_at(row: *const f32, e: usize, n: usize) -> (__m512, __m512) {
        let v = _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, row.add(e));
        (v, v)
    }
}

impl WeightLanes for Bf16Lanes {
    type Elem = bf16;
    const CHUNK: usize = 32;
    const STEPS: usize = 2;
    const PAIR_ORDER: bool = true;
    type Head = ();
    #[inline(always)]
    unsafe fn head(_: *const bf16, _: usize) {}
    #[inline(always)]
    unsafe fn load_in(row: *const bf16, e: usize, _: &()) -> (__m512, __m512) {
        split_bf16_pairs(_mm512_loadu_si512(row.add(e).cast()))
    }
    #[inline(always)]
    unsafe fn load_partial_at(row: *const bf16, e: usize, n: usize) -> (__m512, __m512) {
        split_bf16_pairs(_mm512_maskz_loadu_epi16(((1u64 << n) - 1) as u32, row.add(e).cast()))
    }
}

impl WeightLanes for F16Lanes {
    type Elem = f16;
    const CHUNK: usize = 16;
    const STEPS: usize = 1;
    type Head = ();
    #[inline(always)]
    unsafe fn head(_: *const f16, _: usize) {}
    #[inline(always)]
    unsafe fn load_in(row: *const f16, e: usize, _: &()) -> (__m512, __m512) {
        let v = _mm512_cvtph_ps(_mm256_loadu_si256(row.add(e).cast()));
        (v, v)
    }
    #[inline(always)]
    unsafe fn load_partial_at(row: *const f16, e: usize, n: usize) -> (__m512, __m512) {
        let v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(((1u32 << n) - 1) as u16, row.add(e).cast()));
        (v, v)
    }
}

/// 32 bf16 values → (the 16 even-indexed, the 16 odd-indexed) as f32, exactly.
#[inline(always)]
unsafe fn split_bf16_pairs(v: __m512i) -> (__m512, __m512) {
    let even = _mm512_slli_epi32::<16>(v);
    let odd = _mm512_and_si512(v, _mm512_set1_epi32(0xFFFF_0000u32 as i32));
    (_mm512_castsi512_ps(even), _mm512_castsi512_ps(odd))
}

/// Length of a packed activation row for weights of type `L`.
pub(crate) fn packed_len<L: WeightLanes>(k: usize) -> usize {
    k.div_ceil(L::CHUNK) * L::CHUNK
}

/// Copies activation rows (`rows × k`) into the padded layout the kernels
/// read (`rows × packed_len`), zero-filled past `k`; bf16 order when `bf16`.
pub(crate) fn pack_x(x: &[f32], rows: usize, k: usize, kp: usize, bf16_order: bool, out: &mut Vec<f32>) {
    out.clear();
    out.resize(rows * kp, 0.0);
    for (src, dst) in x.chunks_exact(k).take(rows).zip(out.chunks_exact_mut(kp)) {
        if bf16_order {
            pack_x_bf16_order(src, dst);
        } else {
            dst[..k].copy_from_slice(src);
        }
    }
}

/// One row into `[16 even | 16 odd]` per 32-element chunk (dst zeroed, len padded).
pub(crate) fn pack_x_bf16_order(src: &[f32], dst: &mut [f32]) {
    for (c, chunk) in src.chunks(32).enumerate() {
        let base = c * 32;
        for (i, &v) in chunk.iter().enumerate() {
            dst[base + (i & 1) * 16 + i / 2] = v;
        }
    }
}

/// Sums each of 16 vectors; lane `t` of the result is the sum of `v[t]`.
/// The tree is fixed per element (128-bit halves, then blocks, then lanes),
/// independent of the other vectors' values.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn reduce16(v: &[__m512; 16]) -> __m512 {
    // Stage 1: 16 → 8 vectors; each holds two inputs as two 128-bit blocks.
    let mut t = [_mm512_setzero_ps(); 8];
    for p in 0..8 {
        let (a, b) = (v[2 * p], v[2 * p + 1]);
        t[p] = _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b));
    }
    // Stage 2: 8 → 4; block j of s[q] is the 4-lane partial of v[4q + j].
    let mut s = [_mm512_setzero_ps(); 4];
    for q in 0..4 {
        let (a, b) = (t[2 * q], t[2 * q + 1]);
        s[q] = _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(a, b), _mm512_shuffle_f32x4::<0xDD>(a, b));
    }
    // Stage 3: 4 → 2 (two lanes per input).
    let r0 = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(s[0], s[1]), _mm512_shuffle_ps::<0xEE>(s[0], s[1]));
    let r1 = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(s[2], s[3]), _mm512_shuffle_ps::<0xEE>(s[2], s[3]));
    // Stage 4: 2 → 1; lane 4j + i now holds the sum of v[4i + j].
    let f = _mm512_add_ps(_mm512_shuffle_ps::<0x88>(r0, r1), _mm512_shuffle_ps::<0xDD>(r0, r1));
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(order, f)
}

/// `MR × NR` dot products of packed activation rows `x[i]` (zero-padded to
/// whole chunks) with weight rows `w[j]` of length `k`. Lane `i * NR + j`
/// of the result is `x[i] · w[j]`. `MR * NR` must be 16. With `ahead` (in
/// values, 0 for none), also prefetches each row's chunk that far on into
/// L2: callers streaming weights from memory pass the next tile's offset.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
#[inline]
pub(crate) unsafe fn dot_tile<L: WeightLanes, const MR: usize, const NR: usize>(
    x: [*const f32; MR],
    w: [*const L::Elem; NR],
    k: usize,
    ahead: usize,
) -> __m512 {
    debug_assert_eq!(MR * NR, 16);
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let full = k / L::CHUNK;
    let rest = k % L::CHUNK;
    // One prefetch per row per 64-byte line consumed (a Q4_1 chunk is 20
    // bytes: a prefetch per chunk tripled the instructions for no lines).
    let every = (64 / (L::CHUNK * std::mem::size_of::<L::Elem>() / L::ITEM)).max(1);
    let mut heads: [L::Head; NR] = std::array::from_fn(|j| L::head(w[j], 0));
    for c in 0..full {
        if ahead != 0 && c % every == 0 {
            for w_j in w {
                prefetch_lines(w_j, ahead + c * L::CHUNK, L::ITEM, 1);
            }
        }
        let e = c * L::CHUNK;
        if c > 0 && L::head_changes_at(e) {
            heads = std::array::from_fn(|j| L::head(w[j], e));
        }
        if MR == 1 && L::ONE_BY_ONE {
            // Each row's chunk is multiplied as soon as it is decoded (the
            // same sums in the same order as below).
            let xp = x[0].add(e);
            let x0 = _mm512_loadu_ps(xp);
            // A one-step chunk's row is padded to 16 values only.
            let x1 = if L::STEPS == 2 { _mm512_loadu_ps(xp.add(16)) } else { x0 };
            for (a, (w_j, head)) in acc[0].iter_mut().zip(w.iter().zip(&heads)) {
                let wv = L::load_in(*w_j, e, head);
                *a = _mm512_fmadd_ps(wv.0, x0, *a);
                if L::STEPS == 2 {
                    *a = _mm512_fmadd_ps(wv.1, x1, *a);
                }
            }
            continue;
        }
        let wv: [(__m512, __m512); NR] = std::array::from_fn(|j| L::load_in(w[j], e, &heads[j]));
        fma_chunk::<L, MR, NR>(&mut acc, &x, &wv, c);
    }
    if rest != 0 {
        let wv: [(__m512, __m512); NR] = std::array::from_fn(|j| L::load_partial_at(w[j], full * L::CHUNK, rest));
        fma_chunk::<L, MR, NR>(&mut acc, &x, &wv, full);
    }
    let mut flat = [_mm512_setzero_ps(); 16];
    for i in 0..MR {
        for j in 0..NR {
            flat[i * NR + j] = acc[i][j];
        }
    }
    reduce16(&flat)
}

#[target_feature(enable = "avx512f,fma")]
#[inline]
unsafe fn fma_chunk<L: WeightLanes, const MR: usize, const NR: usize>(
    acc: &mut [[__m512; NR]; MR],
    x: &[*const f32; MR],
    wv: &[(__m512, __m512); NR],
    c: usize,
) {
    for i in 0..MR {
        let xp = x[i].add(c * L::CHUNK);
        let x0 = _mm512_loadu_ps(xp);
        for j in 0..NR {
            acc[i][j] = _mm512_fmadd_ps(wv[j].0, x0, acc[i][j]);
        }
        if L::STEPS == 2 {
            let x1 = _mm512_loadu_ps(xp.add(16));
            for j in 0..NR {
                acc[i][j] = _mm512_fmadd_ps(wv[j].1, x1, acc[i][j]);
            }
        }
    }
}
