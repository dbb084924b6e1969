//! Portable matmul for CPUs without AVX-512: plain Rust the compiler can
//! auto-vectorize. Each output is 16 lane-wise partial sums reduced in a
//! fixed order, so it is batch-invariant too (but not bit-equal to the
//! AVX-512 path, which fuses multiply and add).

use super::parallel::{run_tasks, SharedMut};
use crate::weight::WeightMatrix;

pub(crate) fn matmul(x: &[f32], rows: usize, w: &WeightMatrix, out: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    let out_ptr = SharedMut(out.as_mut_ptr());
    const BLOCK: usize = 16;
    run_tasks(n.div_ceil(BLOCK), rows * n * k, |b| {
        let mut w_row = vec![0f32; k];
        for j in b * BLOCK..((b + 1) * BLOCK).min(n) {
            w.dequantize_rows(j..j + 1, &mut w_row);
            for (r, xr) in x.chunks_exact(k).take(rows).enumerate() {
                // SAFETY: task `b` alone writes columns of its block.
                unsafe { *out_ptr.get().add(r * n + j) = dot16(xr, &w_row) };
            }
        }
    });
}

/// Dot product with 16 independent partial sums (vectorizable, fixed order).
pub(crate) fn dot16(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ar.iter().zip(br).enumerate() {
        acc[l] += x * y;
    }
    let mut width = 8;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0]
}
