//! Least squares through the normal equations: the Gram matrix `G = AᵀA`,
//! its blocked Cholesky factor `L`, and solves with it. ReMO's answer
//! verification solves one such system per op at session start (DESIGN §3,
//! "Verification"): `A` is a whitened Gaussian pad batch, so `G` is well
//! conditioned (cond ≈ 50–200), and the Gram matrix and factor are formed in
//! f32 (half the work of f64) with the solution refined to f64 accuracy by
//! the caller (iterative refinement against f64 residuals).

use super::parallel::threads;
use crate::Float;
use rayon::prelude::*;

/// Diagonal block of the blocked Cholesky: the trailing updates between
/// blocks are `gemm` calls, which carry almost all of the work.
const BLOCK: usize = 96;

fn parallelism() -> gemm::Parallelism {
    if threads() > 1 {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    }
}

/// `g (cols × cols) = aᵀ·a` for a row-major `a` (`rows × cols`).
pub fn gram<T: Float>(a: &[T], rows: usize, cols: usize, g: &mut [T]) {
    assert_eq!(a.len(), rows * cols, "gram: a is not rows × cols");
    assert_eq!(g.len(), cols * cols, "gram: g is not cols × cols");
    // SAFETY: shapes checked above. dst is g, row-major (column stride 1,
    // row stride cols). lhs is aᵀ (cols × rows): element (i, p) = a[p][i],
    // column stride cols, row stride 1. rhs is a (rows × cols): element
    // (p, j) = a[p][j], column stride 1, row stride cols.
    unsafe {
        gemm::gemm(
            cols,
            cols,
            rows,
            g.as_mut_ptr(),
            1,
            cols as isize,
            false,
            a.as_ptr(),
            cols as isize,
            1,
            a.as_ptr(),
            1,
            cols as isize,
            T::from_f64(0.0),
            T::from_f64(1.0),
            false,
            false,
            false,
            parallelism(),
        );
    }
}

/// Solves `L·Lᵀ·z = b` for a Cholesky factor `l` (`n × n`, row-major,
/// lower triangle) and `nrhs` right-hand sides (`b`, `n × nrhs` row-major,
/// overwritten by `z`), the substitutions in f64.
pub fn cholesky_solve<T: Float>(l: &[T], n: usize, b: &mut [f64], nrhs: usize) {
    assert_eq!(l.len(), n * n, "cholesky: l is not n × n");
    assert_eq!(b.len(), n * nrhs, "cholesky: b is not n × nrhs");
    // L·y = b (row by row), then Lᵀ·z = y (column by column of L).
    for i in 0..n {
        let (done, rest) = b.split_at_mut(i * nrhs);
        let bi = &mut rest[..nrhs];
        for (k, bk) in done.chunks_exact(nrhs).enumerate() {
            let lik = l[i * n + k].to_f64();
            bi.iter_mut().zip(bk).for_each(|(v, &w)| *v -= lik * w);
        }
        let d = l[i * n + i].to_f64();
        bi.iter_mut().for_each(|v| *v /= d);
    }
    for i in (0..n).rev() {
        let (before, rest) = b.split_at_mut(i * nrhs);
        let bi = &mut rest[..nrhs];
        let d = l[i * n + i].to_f64();
        bi.iter_mut().for_each(|v| *v /= d);
        for (k, bk) in before.chunks_exact_mut(nrhs).enumerate() {
            let lik = l[i * n + k].to_f64();
            bk.iter_mut().zip(bi.iter()).for_each(|(v, &w)| *v -= lik * w);
        }
    }
}

/// Overwrites the lower triangle of a symmetric positive definite `g`
/// (`n × n`, row-major) with its Cholesky factor `L`. Returns the column
/// whose pivot was not positive, if any.
pub fn cholesky<T: Float>(g: &mut [T], n: usize) -> Result<(), usize> {
    assert_eq!(g.len(), n * n, "cholesky: g is not n × n");
    cholesky_in_place(g, n)
}

/// Right-looking blocked Cholesky: factor a diagonal block, solve the panel
/// below it, subtract the panel's outer product from the trailing matrix.
fn cholesky_in_place<T: Float>(g: &mut [T], n: usize) -> Result<(), usize> {
    let dot = |a: &[T], b: &[T]| a.iter().zip(b).fold(T::default(), |acc, (&x, &y)| acc + x * y);
    let mut k0 = 0;
    while k0 < n {
        let k1 = (k0 + BLOCK).min(n);
        // The diagonal block (already updated by every earlier panel).
        for j in k0..k1 {
            let d = g[j * n + j].to_f64() - dot(&g[j * n + k0..j * n + j], &g[j * n + k0..j * n + j]).to_f64();
            if !(d > 0.0 && d.is_finite()) {
                return Err(j);
            }
            let d = d.sqrt();
            g[j * n + j] = T::from_f64(d);
            let inv = T::from_f64(1.0 / d);
            for i in j + 1..k1 {
                let s = g[i * n + j] - dot(&g[i * n + k0..i * n + j], &g[j * n + k0..j * n + j]);
                g[i * n + j] = s * inv;
            }
        }
        // The panel below it: row i solves x·L_kkᵀ = g[i, k0..k1].
        let inv: Vec<T> = (k0..k1).map(|j| T::from_f64(1.0 / g[j * n + j].to_f64())).collect();
        let (top, panel) = g.split_at_mut(k1 * n);
        panel.par_chunks_exact_mut(n).for_each(|row| {
            for j in k0..k1 {
                let s = row[j] - dot(&row[k0..j], &top[j * n + k0..j * n + j]);
                row[j] = s * inv[j - k0];
            }
        });
        if k1 < n {
            let m = n - k1;
            let w = k1 - k0;
            // SAFETY: every index stays inside `g` (n × n). dst is the
            // trailing block g[k1.., k1..] (column stride 1, row stride n);
            // lhs is the panel g[k1.., k0..k1] (m × w; column stride 1, row
            // stride n); rhs is its transpose (w × m): element (p, j) =
            // g[k1 + j][k0 + p], column stride n, row stride 1. dst does not
            // overlap the panel (columns k1.. against k0..k1).
            unsafe {
                let base = g.as_mut_ptr();
                gemm::gemm(
                    m,
                    m,
                    w,
                    base.add(k1 * n + k1),
                    1,
                    n as isize,
                    true,
                    base.add(k1 * n + k0),
                    1,
                    n as isize,
                    base.add(k1 * n + k0),
                    n as isize,
                    1,
                    T::from_f64(1.0),
                    T::from_f64(-1.0),
                    false,
                    false,
                    false,
                    parallelism(),
                );
            }
        }
        k0 = k1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_least_squares_problem() {
        // a: 300 × 200 with pseudo-random entries; b = aᵀ·a·z_true. 200 >
        // BLOCK, so the blocked path runs; f64 throughout here.
        let (rows, cols, nrhs) = (300, 200, 3);
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let a: Vec<f64> = (0..rows * cols).map(|_| next()).collect();
        let z_true: Vec<f64> = (0..cols * nrhs).map(|_| next()).collect();
        let mut g = vec![0.0; cols * cols];
        gram(&a, rows, cols, &mut g);
        let gz = |g: &[f64]| -> Vec<f64> {
            (0..cols)
                .flat_map(|i| (0..nrhs).map(move |r| (i, r)))
                .map(|(i, r)| (0..cols).map(|c| g[i * cols + c] * z_true[c * nrhs + r]).sum())
                .collect()
        };
        let mut b = gz(&g);
        cholesky(&mut g, cols).unwrap();
        cholesky_solve(&g, cols, &mut b, nrhs);
        let err = b.iter().zip(&z_true).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(err < 1e-9, "max error {err:e}");
    }

    #[test]
    fn a_matrix_that_is_not_positive_definite_is_refused() {
        let mut g = vec![1.0f32, 2.0, 2.0, 1.0];
        assert_eq!(cholesky(&mut g, 2), Err(1));
    }
}
