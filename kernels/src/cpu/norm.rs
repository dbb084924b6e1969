//! RMSNorm over rows: `out = x / sqrt(mean(x²) + eps) [· gain]`.

use crate::precision::Float;
use rayon::prelude::*;

/// Rows at least this many elements in total are normalized in parallel.
const PARALLEL_ELEMS: usize = 1 << 16;

/// Normalizes each row of length `d` of `x` into `out`; `gain` (length `d`)
/// multiplies afterwards when given. The mean of squares is accumulated in
/// f64, so the result does not depend on how rows are batched. Rows are
/// f32 in the fast engine, f64 in the exact mode.
///
/// # Panics
/// When `x` and `out` differ in length, it is not a multiple of `d`, or
/// `gain` is not `d` long (caller bugs).
pub fn rms_norm<T: Float>(x: &[T], d: usize, eps: f32, gain: Option<&[f32]>, out: &mut [T]) {
    assert_eq!(x.len(), out.len(), "rms_norm: input and output lengths differ");
    if d == 0 {
        return;
    }
    assert_eq!(x.len() % d, 0, "rms_norm: length {} is not a multiple of d = {d}", x.len());
    if let Some(g) = gain {
        assert_eq!(g.len(), d, "rms_norm: gain has {} values, not d = {d}", g.len());
    }
    let row = |(xr, or): (&[T], &mut [T])| norm_row(xr, eps, gain, or);
    if x.len() >= PARALLEL_ELEMS {
        x.par_chunks_exact(d).zip(out.par_chunks_exact_mut(d)).for_each(row);
    } else {
        x.chunks_exact(d).zip(out.chunks_exact_mut(d)).for_each(row);
    }
}

fn norm_row<T: Float>(x: &[T], eps: f32, gain: Option<&[f32]>, out: &mut [T]) {
    let sum_sq: f64 = x.iter().map(|&v| v.to_f64() * v.to_f64()).sum();
    let inv = T::from_f64(1.0 / (sum_sq / x.len() as f64 + eps as f64).sqrt());
    match gain {
        Some(g) => out.iter_mut().zip(x).zip(g).for_each(|((o, &v), &g)| *o = (v * inv) * T::from_f32(g)),
        None => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v * inv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], eps: f64, g: Option<&[f32]>) -> Vec<f64> {
        let ms = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        x.iter().enumerate().map(|(i, &v)| v as f64 * inv * g.map_or(1.0, |g| g[i] as f64)).collect()
    }

    #[test]
    fn matches_reference_with_and_without_gain() {
        let d = 37;
        let rows = 5;
        let x: Vec<f32> = (0..rows * d).map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.5).collect();
        let g: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 / 40.0).collect();
        for gain in [None, Some(g.as_slice())] {
            let mut out = vec![0f32; rows * d];
            rms_norm(&x, d, 1e-5, gain, &mut out);
            for r in 0..rows {
                let want = reference(&x[r * d..(r + 1) * d], 1e-5, gain);
                for (a, b) in out[r * d..(r + 1) * d].iter().zip(&want) {
                    assert!((*a as f64 - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn large_batch_matches_rows_alone() {
        let d = 576;
        let rows = 200;
        let x: Vec<f32> = (0..rows * d).map(|i| ((i * 31) % 97) as f32 - 48.0).collect();
        let mut all = vec![0f32; rows * d];
        rms_norm(&x, d, 1e-5, None, &mut all);
        let mut one = vec![0f32; d];
        rms_norm(&x[150 * d..151 * d], d, 1e-5, None, &mut one);
        assert_eq!(&all[150 * d..151 * d], one.as_slice());
    }

    #[test]
    fn f64_rows_match_the_reference_to_f64_precision() {
        let d = 37;
        let x: Vec<f32> = (0..d).map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.5).collect();
        let g: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 / 40.0).collect();
        let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let mut out = vec![0f64; d];
        rms_norm(&xd, d, 1e-5, Some(&g), &mut out);
        for (a, b) in out.iter().zip(reference(&x, 1e-5f32 as f64, Some(&g))) {
            assert!((a - b).abs() <= 1e-14 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn zero_row_stays_finite() {
        let mut out = vec![1f32; 8];
        rms_norm(&[0.0; 8], 8, 1e-5, None, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }
}
