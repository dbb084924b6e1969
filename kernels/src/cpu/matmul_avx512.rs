//! f32-accumulating matmul drivers on the AVX-512 dot-product kernels.
//!
//! Two schedules, one arithmetic (see `dot_avx512`):
//! - streaming (few rows, decode): weight rows are read once from memory,
//!   widened in registers, and reused across all activation rows;
//! - panel (many rows, prefill): bf16/f16/quant weight panels are widened
//!   once to f32 scratch (exactly, in the same lane order) and kept in L2
//!   while all activation tiles pass over them.

#![cfg(target_arch = "x86_64")]

use super::blocks_avx2::Block8;
use super::dot_avx512::{dot_tile, pack_x, packed_len, Bf16Lanes, F16Lanes, F32Lanes, WeightLanes};
use super::dot_blocks_avx512::{BlockDecode, BlockLanes};
use super::matmul_avx2::widen_block_rows;
use super::parallel::{aligned_ranges, run_tasks, threads, SharedMut};
use super::scratch::{with_f32, with_f32_overwritten};
use crate::weight::WeightMatrix;
use std::arch::x86_64::*;
use std::ops::Range;

/// Weight rows per panel (panel ≤ 64 × 1536 × 4 B = 384 KiB, inside L2).
const PANEL_ROWS: usize = 64;
/// Activation rows per panel task.
const PANEL_X_ROWS: usize = 256;

/// `out (rows × w.rows) = x (rows × w.cols) · Wᵀ`. Caller checked shapes and AVX-512.
pub(crate) fn matmul(x: &[f32], rows: usize, w: &WeightMatrix, out: &mut [f32]) {
    crate::match_weight_data!(&w.data,
        F32(v) => run::<F32Lanes>(x, rows, w.cols, v, w.rows, out, false),
        Bf16(v) => run::<Bf16Lanes>(x, rows, w.cols, v, w.rows, out, true),
        F16(v) => run::<F16Lanes>(x, rows, w.cols, v, w.rows, out, true),
        Blocks(v) => run::<BlockLanes<_>>(x, rows, w.cols, v, w.rows, out, true),
    )
}

/// `needs_panel`: whether prefill widens weight panels to f32 first.
fn run<L: WeightLanes + WidenPanel>(x: &[f32], rows: usize, k: usize, w: &[L::Elem], n: usize, out: &mut [f32], needs_panel: bool)
where
    L::Elem: Sync,
{
    let kp = packed_len::<L>(k);
    with_f32(|xp| {
        pack_x(x, rows, k, kp, L::PAIR_ORDER, xp);
        // Row stride and offsets in `Elem`s (a quant block holds `ITEM` values).
        let stride = k / L::ITEM;
        let xp: &[f32] = xp;
        let out_ptr = SharedMut(out.as_mut_ptr());
        let macs = rows * n * k;
        if rows <= L::STREAM_MAX_ROWS {
            let ranges = aligned_ranges(n, threads() * 4, 16);
            run_tasks(ranges.len(), macs, |t| {
                let tile = WeightTiles { base: w.as_ptr(), stride, k, rows: ranges[t].clone() };
                // SAFETY: AVX-512 checked by the caller; tasks write disjoint output columns.
                unsafe { tiles::<L>(xp, kp, 0..rows, &tile, out_ptr, n, true) };
            });
        } else {
            let panels = n.div_ceil(PANEL_ROWS);
            let x_blocks = rows.div_ceil(PANEL_X_ROWS);
            run_tasks(panels * x_blocks, macs, |t| {
                let (p, b) = (t / x_blocks, t % x_blocks);
                let w_rows = p * PANEL_ROWS..((p + 1) * PANEL_ROWS).min(n);
                let x_rows = b * PANEL_X_ROWS..((b + 1) * PANEL_X_ROWS).min(rows);
                if needs_panel {
                    // Every value of the panel is written (padding included).
                    with_f32_overwritten(w_rows.len() * kp, |panel| {
                        L::widen_panel(&w[w_rows.start * stride..w_rows.end * stride], k, kp, panel);
                        let tile = WeightTiles { base: panel.as_ptr(), stride: kp, k: kp, rows: 0..w_rows.len() };
                        let out_cols = SharedMut(out_ptr.get().wrapping_add(w_rows.start));
                        // SAFETY: as above; `out_cols` offsets the output to this panel's columns.
                        unsafe { tiles::<F32Lanes>(xp, kp, x_rows, &tile, out_cols, n, false) };
                    });
                } else {
                    let tile = WeightTiles { base: w.as_ptr(), stride, k, rows: w_rows };
                    // SAFETY: as above.
                    unsafe { tiles::<L>(xp, kp, x_rows, &tile, out_ptr, n, false) };
                }
            });
        }
    });
}

/// Weight rows `rows` of a row-major matrix at `base` with row `stride`,
/// each `k` long; output column of row `j` is `j`.
struct WeightTiles<E> {
    base: *const E,
    stride: usize,
    k: usize,
    rows: Range<usize>,
}

impl<E> WeightTiles<E> {
    /// Pointers to `NR` rows from `j0`, repeating the last valid row past the end.
    fn ptrs<const NR: usize>(&self, j0: usize) -> [*const E; NR] {
        std::array::from_fn(|t| self.base.wrapping_add((j0 + t).min(self.rows.end - 1) * self.stride))
    }
}

/// All output elements `(x_rows) × (w.rows)`; `w_outer` puts the weight
/// loop outside (weights streamed once) instead of inside (panel in cache).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn tiles<L: WeightLanes>(
    xp: &[f32],
    kp: usize,
    x_rows: Range<usize>,
    w: &WeightTiles<L::Elem>,
    out: SharedMut<f32>,
    n: usize,
    w_outer: bool,
) {
    let full_groups = x_rows.len() / 4;
    let quad_end = x_rows.start + full_groups * 4;
    let x_ptr = |r: usize| xp.as_ptr().add(r * kp);
    let xs4 = |r0: usize| -> [*const f32; 4] { std::array::from_fn(|i| x_ptr(r0 + i)) };
    let w_tiles_4 = (w.rows.start..w.rows.end).step_by(4);
    if w_outer {
        for j0 in w_tiles_4 {
            let wp = w.ptrs::<4>(j0);
            for r0 in (x_rows.start..quad_end).step_by(4) {
                // The first quad streams these rows in: it also pulls the next tile's.
                let ahead = if r0 == x_rows.start { 4 * w.k } else { 0 };
                let res = dot_tile::<L, 4, 4>(xs4(r0), wp, w.k, ahead);
                store(res, 4, 4, r0, j0, w.rows.end, x_rows.end, out, n);
            }
        }
    } else {
        for r0 in (x_rows.start..quad_end).step_by(4) {
            for j0 in w_tiles_4.clone() {
                let res = dot_tile::<L, 4, 4>(xs4(r0), w.ptrs::<4>(j0), w.k, 0);
                store(res, 4, 4, r0, j0, w.rows.end, x_rows.end, out, n);
            }
        }
    }
    // Leftover 1..3 rows: pairs, then a single row, each streaming the
    // weights once (and, when the weights come from memory, pulling the
    // next tile's rows into L2).
    let mut r0 = quad_end;
    if x_rows.end - r0 >= 2 {
        for j0 in (w.rows.start..w.rows.end).step_by(8) {
            let ahead = if w_outer && quad_end == x_rows.start { 8 * w.k } else { 0 };
            let res = dot_tile::<L, 2, 8>([x_ptr(r0), x_ptr(r0 + 1)], w.ptrs::<8>(j0), w.k, ahead);
            store(res, 2, 8, r0, j0, w.rows.end, x_rows.end, out, n);
        }
        r0 += 2;
    }
    if r0 < x_rows.end {
        for j0 in (w.rows.start..w.rows.end).step_by(16) {
            let ahead = if w_outer && r0 == x_rows.start { 16 * w.k } else { 0 };
            let res = dot_tile::<L, 1, 16>([x_ptr(r0)], w.ptrs::<16>(j0), w.k, ahead);
            store(res, 1, 16, r0, j0, w.rows.end, x_rows.end, out, n);
        }
    }
}

/// Writes the valid part of an `mr × nr` result tile (lane `i * nr + j`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn store(res: __m512, mr: usize, nr: usize, r0: usize, j0: usize, j_end: usize, r_end: usize, out: SharedMut<f32>, n: usize) {
    let mut lanes = [0f32; 16];
    _mm512_storeu_ps(lanes.as_mut_ptr(), res);
    for i in 0..mr.min(r_end - r0) {
        let row = out.get().add((r0 + i) * n);
        for j in 0..nr.min(j_end - j0) {
            *row.add(j0 + j) = lanes[i * nr + j];
        }
    }
}

/// Widening of a block of weight rows to the f32 lane order of `F32Lanes`
/// over `kp` (so the panel kernel repeats the streaming kernel's
/// arithmetic). `panel` holds `rows × kp` values, whatever an earlier use
/// left there: every one is written, the padding past `k` with zeros.
pub(crate) trait WidenPanel: WeightLanes {
    fn widen_panel(w: &[Self::Elem], k: usize, kp: usize, panel: &mut [f32]);
}

impl WidenPanel for F32Lanes {
    fn widen_panel(w: &[f32], k: usize, kp: usize, panel: &mut [f32]) {
        for (src, dst) in w.chunks_exact(k).zip(panel.chunks_exact_mut(kp)) {
            dst[..k].copy_from_slice(src);
            dst[k..].fill(0.0);
        }
    }
}

impl WidenPanel for F16Lanes {
    fn widen_panel(w: &[half::f16], k: usize, kp: usize, panel: &mut [f32]) {
        for (src, dst) in w.chunks_exact(k).zip(panel.chunks_exact_mut(kp)) {
            half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, &mut dst[..k]);
            dst[k..].fill(0.0);
        }
    }
}

impl WidenPanel for Bf16Lanes {
    fn widen_panel(w: &[half::bf16], k: usize, kp: usize, panel: &mut [f32]) {
        for (src, dst) in w.chunks_exact(k).zip(panel.chunks_exact_mut(kp)) {
            // A partial last chunk leaves gaps in its pair order: zero from
            // its start.
            dst[k / 32 * 32..].fill(0.0);
            for (c, chunk) in src.chunks(32).enumerate() {
                let base = c * 32;
                for (i, v) in chunk.iter().enumerate() {
                    dst[base + (i & 1) * 16 + i / 2] = v.to_f32();
                }
            }
        }
    }
}

impl<B: BlockDecode + Block8> WidenPanel for BlockLanes<B> {
    fn widen_panel(w: &[B], k: usize, kp: usize, panel: &mut [f32]) {
        // SAFETY: this path runs only on AVX-512 CPUs, which all have AVX2, FMA and F16C.
        unsafe { widen_block_rows(w, k, kp, panel) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weight::blocks::{BlockQ4_1, BlockQ8_0};
    use half::{bf16, f16};

    /// A panel over stale scratch (NaN here) comes out as over zeros:
    /// every value, padding included, is written.
    fn widens_over_stale_values<L: WidenPanel>(w: &[L::Elem], rows: usize, k: usize) {
        let kp = packed_len::<L>(k);
        let mut fresh = vec![0.0f32; rows * kp];
        let mut stale = vec![f32::NAN; rows * kp];
        L::widen_panel(w, k, kp, &mut fresh);
        L::widen_panel(w, k, kp, &mut stale);
        assert!(fresh.iter().zip(&stale).all(|(a, b)| a.to_bits() == b.to_bits()), "k {k}, kp {kp}");
    }

    fn dequantizes_like_the_scalar_walk<B: BlockDecode + Block8>(w: &[B], rows: usize, k: usize)
    where
        BlockLanes<B>: WidenPanel<Elem = B>,
    {
        let kp = packed_len::<BlockLanes<B>>(k);
        let mut panel = vec![f32::NAN; rows * kp];
        BlockLanes::<B>::widen_panel(w, k, kp, &mut panel);
        let mut want = vec![0.0f32; rows * kp];
        for (src, dst) in w.chunks_exact(k / B::VALUES).zip(want.chunks_exact_mut(kp)) {
            src.iter().zip(dst.chunks_exact_mut(B::VALUES)).for_each(|(b, out)| b.dequantize(out));
        }
        assert!(panel.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn panels_overwrite_every_value() {
        let values = |len: usize| (0..len).map(|i| (i % 13) as f32 * 0.25 - 1.5).collect::<Vec<f32>>();
        for k in [16, 40, 64, 70] {
            let rows = 3;
            let v = values(rows * k);
            widens_over_stale_values::<F32Lanes>(&v, rows, k);
            widens_over_stale_values::<F16Lanes>(&v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>(), rows, k);
            widens_over_stale_values::<Bf16Lanes>(&v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>(), rows, k);
        }
        // Quant panels are decoded by the AVX2 walk: the scalar walk's values.
        if !crate::cpu::CpuFeatures::get().avx2 {
            return;
        }
        for blocks_per_row in [1, 3] {
            let rows = 2;
            let q8: Vec<BlockQ8_0> = (0..rows * blocks_per_row)
                .map(|b| BlockQ8_0 { d: f16::from_f32(0.5 + b as f32), qs: std::array::from_fn(|i| i as i8 - 16) })
                .collect();
            widens_over_stale_values::<BlockLanes<BlockQ8_0>>(&q8, rows, 32 * blocks_per_row);
            dequantizes_like_the_scalar_walk(&q8, rows, 32 * blocks_per_row);
            let q4: Vec<BlockQ4_1> = (0..rows * blocks_per_row)
                .map(|b| BlockQ4_1 {
                    d: f16::from_f32(0.25),
                    m: f16::from_f32(-1.0 - b as f32),
                    qs: std::array::from_fn(|i| (i * 7) as u8),
                })
                .collect();
            widens_over_stale_values::<BlockLanes<BlockQ4_1>>(&q4, rows, 32 * blocks_per_row);
            dequantizes_like_the_scalar_walk(&q4, rows, 32 * blocks_per_row);
        }
    }
}
