//! Exact-mode matmul: f64 activations × stored weights widened to f64,
//! f64 accumulation throughout (no f32 intermediate), for masked inputs
//! whose rounding error the mask amplifies.
//!
//! Few rows (≤ 32) stream the weights through register-widening f64 dot
//! tiles (AVX-512, or AVX2 in `matmul_f64_avx2`); many rows widen weight panels to f64 once and use the `gemm`
//! crate. Each path is batch-invariant on its own, but the two sum in
//! different orders, so results across the 32-row threshold can differ in
//! the last bits (the masked protocol's random pads make bit-identity moot).

use super::parallel::{aligned_ranges, run_tasks, threads, SharedMut};
use super::scratch::with_f64;
use crate::weight::WeightMatrix;

/// Up to this many rows the dot-tile path is used.
const DOT_MAX_ROWS: usize = 32;
/// Weight rows widened per `gemm` call (a 768 × 1536 f64 panel is 9 MiB).
const GEMM_PANEL_ROWS: usize = 768;

/// `out (rows × w.rows) = x (rows × w.cols) · Wᵀ` in f64.
///
/// # Panics
/// When the slice lengths do not match the shapes (a caller bug).
pub fn matmul_f64(x: &[f64], rows: usize, w: &WeightMatrix, out: &mut [f64]) {
    super::matmul::check_shapes(x.len(), rows, w, out.len());
    if rows == 0 || w.rows == 0 {
        return;
    }
    if w.cols == 0 {
        out.fill(0.0);
        return;
    }
    if rows > DOT_MAX_ROWS {
        return gemm_path(x, rows, w, out);
    }
    #[cfg(target_arch = "x86_64")]
    {
        let features = super::features::CpuFeatures::get();
        if features.avx512 {
            return avx512::matmul(x, rows, w, out);
        }
        if features.avx2 {
            return super::matmul_f64_avx2::matmul(x, rows, w, out);
        }
    }
    portable(x, rows, w, out)
}

fn widen_rows(w: &WeightMatrix, rows: std::ops::Range<usize>, dst: &mut Vec<f64>) {
    dst.clear();
    dst.resize(rows.len() * w.cols, 0.0);
    w.dequantize_rows(rows, dst);
}

/// Many rows: f64 panels of W through `gemm` (its own rayon parallelism).
fn gemm_path(x: &[f64], rows: usize, w: &WeightMatrix, out: &mut [f64]) {
    let (n, k) = (w.rows, w.cols);
    let panels = n.div_ceil(GEMM_PANEL_ROWS);
    let par = if threads() > 1 { gemm::Parallelism::Rayon(threads()) } else { gemm::Parallelism::None };
    with_f64(|panel| {
        for range in aligned_ranges(n, panels, 16) {
            widen_rows(w, range.clone(), panel);
            // SAFETY: shapes checked; dst is `rows × range.len()` inside `out`
            // with row stride `n`; lhs is `rows × k` row-major; rhs (k × cols)
            // is the panel read transposed (row stride 1, column stride k).
            unsafe {
                gemm::gemm(
                    rows,
                    range.len(),
                    k,
                    out.as_mut_ptr().add(range.start),
                    1,
                    n as isize,
                    false,
                    x.as_ptr(),
                    1,
                    k as isize,
                    panel.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
        }
    });
}

pub(crate) fn portable(x: &[f64], rows: usize, w: &WeightMatrix, out: &mut [f64]) {
    let (n, k) = (w.rows, w.cols);
    let out_ptr = SharedMut(out.as_mut_ptr());
    let ranges = aligned_ranges(n, threads() * 4, 16);
    run_tasks(ranges.len(), rows * n * k, |t| {
        with_f64(|wr| {
            for j in ranges[t].clone() {
                widen_rows(w, j..j + 1, wr);
                for (r, xr) in x.chunks_exact(k).take(rows).enumerate() {
                    let mut acc = [0f64; 8];
                    for (c, (a, b)) in xr.iter().zip(wr.iter()).enumerate() {
                        acc[c % 8] += a * b;
                    }
                    // SAFETY: task `t` alone writes the columns of its range.
                    unsafe { *out_ptr.get().add(r * n + j) = acc.iter().sum() };
                }
            }
        })
    });
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::dot_blocks_avx512::BlockLanes;
    use super::super::dot_f64_avx512::{dot_lines_f64, dot_tile_f64, Bf16To64, F16To64, F32To64, WeightLanes64};
    use super::super::parallel::{aligned_ranges, run_tasks, threads, SharedMut};
    use crate::weight::WeightMatrix;

    pub(super) fn matmul(x: &[f64], rows: usize, w: &WeightMatrix, out: &mut [f64]) {
        crate::match_weight_data!(&w.data,
            F32(v) => run::<F32To64>(x, rows, w.cols, v, w.rows, out),
            Bf16(v) => run::<Bf16To64>(x, rows, w.cols, v, w.rows, out),
            F16(v) => run::<F16To64>(x, rows, w.cols, v, w.rows, out),
            Blocks(v) => run::<BlockLanes<_>>(x, rows, w.cols, v, w.rows, out),
        )
    }

    fn run<L: WeightLanes64>(x: &[f64], rows: usize, k: usize, w: &[L::Elem], n: usize, out: &mut [f64])
    where
        L::Elem: Sync,
    {
        let out_ptr = SharedMut(out.as_mut_ptr());
        let ranges = aligned_ranges(n, threads() * 4, 16);
        run_tasks(ranges.len(), rows * n * k, |t| {
            // SAFETY: AVX-512 checked by the caller; task `t` writes only its columns.
            unsafe { tiles::<L>(x, rows, k, w, ranges[t].clone(), out_ptr, n) }
        });
    }

    /// Weight rows per step when there are fewer than 3 activation rows.
    const LINES_NR: usize = 8;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn tiles<L: WeightLanes64>(
        x: &[f64],
        rows: usize,
        k: usize,
        w: &[L::Elem],
        cols: std::ops::Range<usize>,
        out: SharedMut<f64>,
        n: usize,
    ) {
        let wp = |j: usize| w.as_ptr().add(j.min(cols.end - 1) * (k / L::ITEM));
        let xp = |r: usize| x.as_ptr().add(r.min(rows - 1) * k);
        let store = |r0: usize, j0: usize, i: usize, j: usize, v: f64| {
            if r0 + i < rows && j0 + j < cols.end {
                *out.get().add((r0 + i) * n + j0 + j) = v;
            }
        };
        if rows < 3 {
            // Decode: one activation row (or two) against many weight rows,
            // whole weight lines per step (see `dot_lines_f64`).
            for j0 in cols.clone().step_by(LINES_NR) {
                let ws: [_; LINES_NR] = std::array::from_fn(|j| wp(j0 + j));
                for r in 0..rows {
                    let res = dot_lines_f64::<L, LINES_NR>(xp(r), ws, k);
                    (0..LINES_NR).for_each(|j| store(r, j0, 0, j, res[j]));
                }
            }
            return;
        }
        for j0 in cols.clone().step_by(4) {
            let ws: [_; 4] = std::array::from_fn(|j| wp(j0 + j));
            let mut r0 = 0;
            while r0 + 2 < rows {
                // The first row group streams these weight rows in from memory:
                // it also fetches the next four (the tile after) into L2.
                let ahead = (r0 == 0).then_some(4 * k);
                let res = dot_tile_f64::<L, 4, 4>(std::array::from_fn(|i| xp(r0 + i)), ws, k, ahead);
                (0..4).for_each(|i| (0..4).for_each(|j| store(r0, j0, i, j, res[i][j])));
                r0 += 4;
            }
            while r0 < rows {
                let res = dot_tile_f64::<L, 1, 4>([xp(r0)], ws, k, None);
                (0..4).for_each(|j| store(r0, j0, 0, j, res[0][j]));
                r0 += 1;
            }
        }
    }
}
