//! f32 matmul for CPUs with AVX2 and FMA but no AVX-512 (EPYC Rome and
//! Milan, the CPUs of many SEV-SNP machines; older Xeons), on every weight
//! type: a weight row is read 32 values at a time, widened or dequantized
//! in registers to exact f32 (four 8-lane vectors, natural order), and
//! multiplied into 8 lane-wise partial sums.
//!
//! Every output element sums the same way whatever the tile or the number
//! of rows: lane `l` accumulates values `l, l+8, l+16, l+24` of each
//! 32-value chunk in chunk order, then a fixed reduction tree. So a row's
//! result is bit-identical alone or in a batch, and with the weights
//! widened to f32 first, as prefill does per panel (not bit-equal to the
//! AVX-512 path's 16-lane sums).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::marker::PhantomData;
use std::ops::Range;

use half::{bf16, f16};

use super::blocks_avx2::Block8;
use super::dot_avx512::pack_x;
use super::parallel::{aligned_ranges, run_tasks, threads, SharedMut};
use super::prefetch::prefetch_lines;
use super::scratch::{with_f32, with_f32_overwritten};
use crate::weight::WeightMatrix;

/// Values per chunk.
const CHUNK: usize = 32;

/// How the one-row (decode) kernel walks weight rows. Two rows left each
/// accumulator four dependent FMAs per chunk; four keep four chains in
/// flight (15-20 % faster on Q8_0, Q4 and bf16 rows). Where decoding
/// dominates, four rows' decoded chunks (16 registers) spill: K-quants
/// decode and use one row's chunk at a time (with their scales unpacked
/// once per block, 2.1-2.5x faster than two rows together before). Q5
/// blocks go four together since their fifth bits come from a table
/// (EPYC Zen 3, `kernel_bench --rows=1`).
#[derive(Clone, Copy)]
pub(super) enum DecodeTile {
    FourTogether,
    FourOneByOne,
}

/// How a weight type yields 32 f32 values.
pub(super) trait Lanes32 {
    type Elem: Copy + Sync;
    /// Whether the elements are f32 already (a panel is a copy: only for many rows).
    const IS_F32: bool = false;
    /// Values per `Elem` (1, or a quant block's 32 or 256).
    const ITEM: usize = 1;
    /// How the one-row kernel walks weight rows.
    const DECODE: DecodeTile = DecodeTile::FourTogether;
    /// What the chunks of one item share (a K-quant block's scales), so a
    /// kernel walking a row unpacks it once per item; `()` for the rest.
    type Head: Copy;
    /// The head of the item holding value `e` of the row at `row`.
    unsafe fn head(row: *const Self::Elem, e: usize) -> Self::Head;
    /// Whether value `e` starts an item with a head of its own (a walk
    /// along a row reads the first head before it starts).
    #[inline(always)]
    fn head_changes_at(e: usize) -> bool {
        Self::ITEM > CHUNK && e > 0 && e.is_multiple_of(Self::ITEM)
    }
    /// Values `e .. e + 32` of the row at `row` (`e` a multiple of 32),
    /// with the head of their item.
    unsafe fn load32_in(row: *const Self::Elem, e: usize, head: &Self::Head) -> [__m256; 4];
    /// Values `e .. e + 32` of the row at `row` (`e` a multiple of 32).
    #[inline(always)]
    unsafe fn load32(row: *const Self::Elem, e: usize) -> [__m256; 4] {
        Self::load32_in(row, e, &Self::head(row, e))
    }
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
    const IS_F32: bool = true;
    type Head = ();
    #[inline(always)]
    unsafe fn head(_: *const f32, _: usize) {}
    #[inline(always)]
    unsafe fn load32_in(row: *const f32, e: usize, _: &()) -> [__m256; 4] {
        std::array::from_fn(|q| _mm256_loadu_ps(row.add(e + 8 * q)))
    }
    unsafe fn load_partial(row: *const f32, e: usize, n: usize) -> [__m256; 4] {
        partial_via_copy::<Self>(row, e, n, 0.0)
    }
}

impl Lanes32 for Bf16L {
    type Elem = bf16;
    type Head = ();
    #[inline(always)]
    unsafe fn head(_: *const bf16, _: usize) {}
    #[inline(always)]
    unsafe fn load32_in(row: *const bf16, e: usize, _: &()) -> [__m256; 4] {
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
    type Head = ();
    #[inline(always)]
    unsafe fn head(_: *const f16, _: usize) {}
    #[inline(always)]
    unsafe fn load32_in(row: *const f16, e: usize, _: &()) -> [__m256; 4] {
        std::array::from_fn(|q| _mm256_cvtph_ps(_mm_loadu_si128(row.add(e + 8 * q).cast())))
    }
    unsafe fn load_partial(row: *const f16, e: usize, n: usize) -> [__m256; 4] {
        partial_via_copy::<Self>(row, e, n, f16::ZERO)
    }
}

impl<B: Block8> Lanes32 for BlockL<B> {
    type Elem = B;
    const ITEM: usize = B::VALUES;
    const DECODE: DecodeTile = B::DECODE;
    type Head = B::Head;
    #[inline(always)]
    unsafe fn head(row: *const B, e: usize) -> B::Head {
        B::head(row.add(e / B::VALUES))
    }
    #[inline(always)]
    unsafe fn load32_in(row: *const B, e: usize, head: &B::Head) -> [__m256; 4] {
        B::chunk8(row.add(e / B::VALUES), head, (e % B::VALUES) / CHUNK)
    }
    unsafe fn load_partial(_: *const B, _: usize, _: usize) -> [__m256; 4] {
        unreachable!("quantized rows are whole blocks")
    }
}

/// `out (rows × w.rows) = x (rows × w.cols) · Wᵀ`. Caller checked shapes and AVX2+FMA.
pub(crate) fn matmul(x: &[f32], rows: usize, w: &WeightMatrix, out: &mut [f32]) {
    crate::match_weight_data!(&w.data,
        F32(v) => run::<F32L>(x, rows, w.cols, v, w.rows, out),
        Bf16(v) => run::<Bf16L>(x, rows, w.cols, v, w.rows, out),
        F16(v) => run::<F16L>(x, rows, w.cols, v, w.rows, out),
        Blocks(v) => run::<BlockL<_>>(x, rows, w.cols, v, w.rows, out),
    )
}

/// Up to this many activation rows the weights are streamed (decoded in
/// registers per tile); above, widened once per panel to f32 (at 16 and 32
/// rows, measured 1-8 % faster than decoding once per four rows).
const STREAM_MAX_ROWS: usize = 4;
/// From this many rows f32 weights are copied into panels too, for the
/// panels' L1-sized activation groups (prefill 512: 13-30 % faster per
/// matrix; at 16 rows the copy cost as much as it saved).
const F32_PANEL_MIN_ROWS: usize = 64;
/// Activation rows per panel task.
const PANEL_X_ROWS: usize = 256;
/// Weight rows per panel, at most.
const PANEL_MAX_ROWS: usize = 64;
/// Activation rows that pass over a panel together where they and a
/// weight pair fit in L1 (32 KiB, the smallest in AVX2 server CPUs); four,
/// slice by slice, where they do not.
const PANEL_X_GROUP: usize = 8;

fn run<L: Lanes32>(x: &[f32], rows: usize, k: usize, w: &[L::Elem], n: usize, out: &mut [f32]) {
    // Activations padded with zeros to whole chunks, so they load unmasked.
    let kp = k.div_ceil(CHUNK) * CHUNK;
    with_f32(|xp| {
        pack_x(x, rows, k, kp, false, xp);
        let xp: &[f32] = xp;
        let out_ptr = SharedMut(out.as_mut_ptr());
        let macs = rows * n * k;
        if rows <= STREAM_MAX_ROWS || (L::IS_F32 && rows < F32_PANEL_MIN_ROWS) {
            let ranges = aligned_ranges(n, threads() * 4, 16);
            run_tasks(ranges.len(), macs, |t| {
                // SAFETY: AVX2+FMA checked by the caller; tasks write disjoint output columns.
                unsafe { tiles::<L>(xp, kp, rows, k, w, ranges[t].clone(), out_ptr, n) };
            });
            return;
        }
        // Prefill: a panel of weight rows (up to ~256 KiB of f32, inside L2)
        // is widened once, with the same values in the same lane order, and
        // every activation tile of a task passes over it.
        let panel_rows = (65536 / kp).clamp(4, PANEL_MAX_ROWS) / 4 * 4;
        let panels = n.div_ceil(panel_rows);
        let x_blocks = rows.div_ceil(PANEL_X_ROWS);
        let stride = k / L::ITEM;
        run_tasks(panels * x_blocks, macs, |t| {
            let (p, b) = (t / x_blocks, t % x_blocks);
            let w_rows = p * panel_rows..((p + 1) * panel_rows).min(n);
            let x_rows = b * PANEL_X_ROWS..((b + 1) * PANEL_X_ROWS).min(rows);
            // Every value of the panel is written (widen_row fills to `kp`).
            with_f32_overwritten(w_rows.len() * kp, |panel| {
                for (j, dst) in w_rows.clone().zip(panel.chunks_exact_mut(kp)) {
                    // SAFETY: row `j` of `w` holds `k` values; AVX2 checked by the caller.
                    unsafe { widen_row::<L>(w.as_ptr().add(j * stride), k, dst) };
                }
                // A few activation rows at a time pass over the whole panel,
                // staying in L1 while it streams from L2 (with the panel's
                // rows outermost, every weight pair re-read all of the task's
                // activation rows from L2, or from L3 for prefill: gate_up at
                // 512 rows was 1.3x slower). Long rows go in slices.
                let long = (PANEL_X_GROUP + 2) * kp * size_of::<f32>() > 32 << 10;
                let group = if long { 4 } else { PANEL_X_GROUP };
                for g in x_rows.clone().step_by(group) {
                    let g = g..(g + group).min(x_rows.end);
                    let out_tile = SharedMut(out_ptr.get().wrapping_add(g.start * n + w_rows.start));
                    let x_tile = &xp[g.start * kp..g.end * kp];
                    // SAFETY: as above; `out_tile` is this task's block of the output (row stride `n`).
                    unsafe {
                        if long && g.len() >= 3 {
                            sliced_panel_tiles(x_tile, kp, g.len(), panel, w_rows.len(), out_tile, n);
                        } else {
                            tiles::<F32L>(x_tile, kp, g.len(), kp, panel, 0..w_rows.len(), out_tile, n);
                        }
                    }
                }
            });
        });
    });
}

/// Rows of quant blocks (`k` values each) as exact f32 into `panel` (`kp`
/// per row, `kp ≥ k`, zeros past `k`): the values of
/// `QuantBlock::dequantize`, decoded a vector at a time. AVX-512's panels
/// use it too (every AVX-512 CPU has AVX2), instead of the scalar walk.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn widen_block_rows<B: Block8>(w: &[B], k: usize, kp: usize, panel: &mut [f32]) {
    let stride = k / B::VALUES;
    for (src, dst) in w.chunks_exact(stride).zip(panel.chunks_exact_mut(kp)) {
        widen_row::<BlockL<B>>(src.as_ptr(), k, dst);
        dst[k..].fill(0.0);
    }
}

/// One weight row of `k` values as f32 into `dst` (`kp` long, zero past `k`).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen_row<L: Lanes32>(row: *const L::Elem, k: usize, dst: &mut [f32]) {
    let mut head = L::head(row, 0);
    for e in (0..k).step_by(CHUNK) {
        if L::head_changes_at(e) {
            head = L::head(row, e);
        }
        let v = if e + CHUNK <= k { L::load32_in(row, e, &head) } else { L::load_partial(row, e, k - e) };
        for (q, v) in v.iter().enumerate() {
            _mm256_storeu_ps(dst.as_mut_ptr().add(e + 8 * q), *v);
        }
    }
}

/// Output columns `cols` for every activation row: two weight rows at a
/// time for four activation rows (eight accumulators), four for one row.
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
    if rows == 1 {
        // Decode. Streaming these weight rows in, each tile also pulls the
        // next tile's into L2.
        macro_rules! decode {
            ($nr:literal, $one_by_one:literal) => {
                for j0 in cols.clone().step_by($nr) {
                    let res = dot_tile::<L, 1, $nr, $one_by_one>([xr(0)], std::array::from_fn(|j| wp(j0 + j)), k, $nr * stride);
                    (0..$nr).for_each(|j| store(0, j0 + j, res[0][j]));
                }
            };
        }
        match L::DECODE {
            DecodeTile::FourTogether => decode!(4, false),
            DecodeTile::FourOneByOne => decode!(4, true),
        }
        return;
    }
    for j0 in cols.clone().step_by(2) {
        let ws = [wp(j0), wp(j0 + 1)];
        let mut r0 = 0;
        // The first row group streams these weight rows in from memory: it
        // also pulls the next two (the tile after) into L2.
        let ahead = |r0: usize| if r0 == 0 { 2 * stride } else { 0 };
        while r0 + 2 < rows {
            let res = dot_tile::<L, 4, 2, false>(std::array::from_fn(|i| xr(r0 + i)), ws, k, ahead(r0));
            (0..4).for_each(|i| (0..2).for_each(|j| store(r0 + i, j0 + j, res[i][j])));
            r0 += 4;
        }
        while r0 < rows {
            let res = dot_tile::<L, 1, 2, false>([xr(r0)], ws, k, ahead(r0));
            (0..2).for_each(|j| store(r0, j0 + j, res[0][j]));
            r0 += 1;
        }
    }
}

/// `MR × NR` dot products of padded activation rows with weight rows of `k`
/// values; `out[i][j] = x[i] · w[j]`. With `ahead` (in elements, 0 for
/// none), also prefetches each row's values that far on into L2. With
/// `ONE_BY_ONE` (one activation row), each weight row's chunk is decoded
/// and multiplied before the next is decoded (same sums, fewer live
/// registers).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_tile<L: Lanes32, const MR: usize, const NR: usize, const ONE_BY_ONE: bool>(
    x: [*const f32; MR],
    w: [*const L::Elem; NR],
    k: usize,
    ahead: usize,
) -> [[f32; NR]; MR] {
    let zero = [[_mm256_setzero_ps(); NR]; MR];
    let acc = dot_lanes::<L, MR, NR, ONE_BY_ONE>(x, w, k, 0..k.div_ceil(CHUNK), ahead, zero);
    std::array::from_fn(|i| std::array::from_fn(|j| hsum(acc[i][j])))
}

/// `dot_tile`'s lane sums over the 32-value chunks `chunks` only, going on
/// from `acc`: calls over consecutive chunk ranges give one call's sums.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_lanes<L: Lanes32, const MR: usize, const NR: usize, const ONE_BY_ONE: bool>(
    x: [*const f32; MR],
    w: [*const L::Elem; NR],
    k: usize,
    chunks: Range<usize>,
    ahead: usize,
    mut acc: [[__m256; NR]; MR],
) -> [[__m256; NR]; MR] {
    let full = k / CHUNK;
    let rest = k % CHUNK;
    let mut heads: [L::Head; NR] = std::array::from_fn(|j| L::head(w[j], chunks.start * CHUNK));
    for c in chunks {
        let e = c * CHUNK;
        if ahead != 0 {
            for w_j in w {
                prefetch_lines(w_j, ahead * L::ITEM + e, L::ITEM, 2);
            }
        }
        if L::head_changes_at(e) {
            heads = std::array::from_fn(|j| L::head(w[j], e));
        }
        let load = |j: usize| if c < full { L::load32_in(w[j], e, &heads[j]) } else { L::load_partial(w[j], e, rest) };
        if MR == 1 && ONE_BY_ONE {
            let xv: [__m256; 4] = std::array::from_fn(|q| _mm256_loadu_ps(x[0].add(e + 8 * q)));
            for (j, a) in acc[0].iter_mut().enumerate() {
                let wv = load(j);
                for q in 0..4 {
                    *a = _mm256_fmadd_ps(wv[q], xv[q], *a);
                }
            }
            continue;
        }
        if L::IS_F32 && c < full {
            // Plain f32 rows (panels): loaded a vector at a time, next to
            // their FMAs (a whole chunk of two rows held in registers beside
            // eight accumulators spilled). Same FMAs in the same order.
            for q in 0..4 {
                let wq: [__m256; NR] = std::array::from_fn(|j| _mm256_loadu_ps(w[j].cast::<f32>().add(e + 8 * q)));
                for (acc_i, x_i) in acc.iter_mut().zip(&x) {
                    let xv = _mm256_loadu_ps(x_i.add(e + 8 * q));
                    for (a, w_j) in acc_i.iter_mut().zip(&wq) {
                        *a = _mm256_fmadd_ps(*w_j, xv, *a);
                    }
                }
            }
            continue;
        }
        let wv: [[__m256; 4]; NR] = std::array::from_fn(load);
        for q in 0..4 {
            for (acc_i, x_i) in acc.iter_mut().zip(&x) {
                let xv = _mm256_loadu_ps(x_i.add(e + 8 * q));
                for (a, w_j) in acc_i.iter_mut().zip(&wv) {
                    *a = _mm256_fmadd_ps(w_j[q], xv, *a);
                }
            }
        }
    }
    acc
}

/// Chunks per slice of a long panel row: four activation rows' slices and
/// a weight pair's (24 KiB at 768 values) stay in L1 while a tile runs.
const SLICE_CHUNKS: usize = 24;

/// Up to four activation rows (`x`, `rows` of `kp` values) against every
/// row of an f32 panel (`np ≤ 64` rows of `kp`), slice by slice of `k`:
/// each slice of the activation rows passes over the whole panel while it
/// is in L1, the weight pairs' lane sums kept between slices (so the sums
/// are `tiles`' own, bit for bit).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sliced_panel_tiles(x: &[f32], kp: usize, rows: usize, panel: &[f32], np: usize, out: SharedMut<f32>, n: usize) {
    debug_assert!(rows <= 4 && np <= PANEL_MAX_ROWS && kp.is_multiple_of(CHUNK));
    let xs: [*const f32; 4] = std::array::from_fn(|i| x.as_ptr().add(i.min(rows - 1) * kp));
    let pair = |p: usize| -> [*const f32; 2] { std::array::from_fn(|j| panel.as_ptr().add((2 * p + j).min(np - 1) * kp)) };
    let mut acc = [[[_mm256_setzero_ps(); 2]; 4]; PANEL_MAX_ROWS / 2];
    let chunks = kp / CHUNK;
    for s in (0..chunks).step_by(SLICE_CHUNKS) {
        for (p, a) in acc[..np.div_ceil(2)].iter_mut().enumerate() {
            *a = dot_lanes::<F32L, 4, 2, false>(xs, pair(p), kp, s..(s + SLICE_CHUNKS).min(chunks), 0, *a);
        }
    }
    for (p, a) in acc[..np.div_ceil(2)].iter().enumerate() {
        for (i, a_i) in a.iter().enumerate().take(rows) {
            for (j, &a_ij) in a_i.iter().enumerate().filter(|&(j, _)| 2 * p + j < np) {
                *out.get().add(i * n + 2 * p + j) = hsum(a_ij);
            }
        }
    }
}

/// The 8 lanes' sum in a fixed order.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
}
