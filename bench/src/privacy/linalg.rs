//! The dense linear algebra the attacks need, on faer: products, a
//! rank-revealing orthonormal basis of a call's row space (column-pivoted
//! QR), symmetric eigendecompositions and small least squares.

use anyhow::{Context, Result};
use faer::linalg::matmul::matmul;
use faer::prelude::SolveLstsq;
use faer::{Accum, Mat, Par, Side};

use super::mat::{Rows, Rows32, Rows64};

fn par() -> Par {
    Par::rayon(0)
}

/// `a · bᵀ` (`a`: m × k, `b`: n × k) as an m × n row-major matrix.
pub fn gemm_abt32(a: &Rows32, b: &Rows32) -> Rows32 {
    assert_eq!(a.cols, b.cols, "inner dimensions differ");
    let mut out = Rows32::zeros(a.rows, b.rows);
    matmul(out.view_mut(), Accum::Replace, a.view(), b.view().transpose(), 1.0f32, par());
    out
}

/// `a · bᵀ` in f64.
pub fn gemm_abt64(a: &Rows64, b: &Rows64) -> Rows64 {
    assert_eq!(a.cols, b.cols, "inner dimensions differ");
    let mut out = Rows64::zeros(a.rows, b.rows);
    matmul(out.view_mut(), Accum::Replace, a.view(), b.view().transpose(), 1.0f64, par());
    out
}

/// `aᵀ · a` (k × k) for `a` m × k.
pub fn gram_cols64(a: &Rows64) -> Rows64 {
    let mut out = Rows64::zeros(a.cols, a.cols);
    matmul(out.view_mut(), Accum::Replace, a.view().transpose(), a.view(), 1.0f64, par());
    out
}

fn to_rows<T: Copy + Default>(m: faer::MatRef<'_, T>) -> Rows<T> {
    let mut r = Rows::zeros(m.nrows(), m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            r.data[i * m.ncols() + j] = m[(i, j)];
        }
    }
    r
}

/// An orthonormal basis (as rows) of the span of `y`'s rows, and its
/// rank: the pivots of a column-pivoted QR of `yᵀ` whose |R_ii| exceed
/// `rel_tol · |R_00|`.
pub fn row_space_basis(y: &Rows64, rel_tol: f64) -> Rows64 {
    if y.rows == 0 {
        return Rows64::empty(y.cols);
    }
    let qr = y.view().transpose().col_piv_qr();
    let r = qr.thin_R();
    let lead = r[(0, 0)].abs();
    let k = r.nrows().min(r.ncols());
    let rank = if lead == 0.0 { 0 } else { (0..k).take_while(|&i| r[(i, i)].abs() > rel_tol * lead).count() };
    let q = qr.compute_thin_Q();
    to_rows(q.as_ref().get(.., ..rank).transpose())
}

/// Eigenvalues (descending) and eigenvectors (as rows, same order) of a
/// symmetric matrix.
pub fn sym_eigen_desc(a: &Rows64) -> Result<(Vec<f64>, Rows64)> {
    let evd = a.view().self_adjoint_eigen(Side::Lower).map_err(|e| anyhow::anyhow!("eigendecomposition failed: {e:?}"))?;
    let n = a.rows;
    let s = evd.S().column_vector();
    let u = evd.U();
    let mut vals = Vec::with_capacity(n);
    let mut vecs = Rows64::zeros(n, n);
    for (out, j) in (0..n).rev().enumerate() {
        vals.push(s[j]);
        for i in 0..n {
            vecs.data[out * n + i] = u[(i, j)];
        }
    }
    Ok((vals, vecs))
}

/// Least squares `g = argmin ‖y − g·x‖` for `y` (m × d), `x` (r × d, full
/// row rank): returns `g` (m × r).
pub fn lstsq_rows(y: &Rows64, x: &Rows64) -> Result<Rows64> {
    anyhow::ensure!(y.cols == x.cols && x.rows <= x.cols, "lstsq shapes: y {}×{}, x {}×{}", y.rows, y.cols, x.rows, x.cols);
    // xᵀ gᵀ ≈ yᵀ: a d × r system with m right-hand sides.
    let a: Mat<f64> = x.view().transpose().to_owned();
    let rhs: Mat<f64> = y.view().transpose().to_owned();
    let sol = a.qr().solve_lstsq(&rhs);
    let g = to_rows(sol.as_ref().transpose());
    anyhow::ensure!(g.data.iter().all(|v| v.is_finite()), "least squares produced non-finite values");
    Ok(g)
}

/// A random orthonormal basis of `k` directions in `R^d` (rows), from the
/// QR of a Gaussian matrix.
pub fn orthonormal_rows_from(gaussian: &Rows64) -> Result<Rows64> {
    let b = row_space_basis(gaussian, 1e-10);
    anyhow::ensure!(b.rows == gaussian.rows, "random basis is rank-deficient");
    Ok(b)
}

/// The top-`k` eigenvectors (rows) of `aᵀa`: the principal directions of
/// the rows of `a` (uncentered), and all eigenvalues (descending).
pub fn top_row_directions(a: &Rows64, k: usize) -> Result<(Rows64, Vec<f64>)> {
    let g = gram_cols64(a);
    let (vals, vecs) = sym_eigen_desc(&g).context("principal directions")?;
    Ok((vecs.select(&(0..k.min(vecs.rows)).collect::<Vec<_>>()), vals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basis_has_the_right_rank_and_spans_the_rows() {
        // Row 2 = row 0 + row 1: rank 2.
        let y = Rows64::from_vec(3, 4, vec![1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 3.0, 1.0, 1.0, 2.0, 3.0]).unwrap();
        let q = row_space_basis(&y, 1e-9);
        assert_eq!(q.rows, 2);
        let qq = gemm_abt64(&q, &q);
        assert!((qq.data[0] - 1.0).abs() < 1e-12 && qq.data[1].abs() < 1e-12);
        // Each row of y is reproduced by its projection on q.
        let c = gemm_abt64(&y, &q);
        for i in 0..3 {
            for j in 0..4 {
                let p: f64 = (0..2).map(|k| c.row(i)[k] * q.row(k)[j]).sum();
                assert!((p - y.row(i)[j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn eigen_is_descending_and_lstsq_recovers_coefficients() {
        let a = Rows64::from_vec(2, 2, vec![2.0, 1.0, 1.0, 2.0]).unwrap();
        let (vals, vecs) = sym_eigen_desc(&a).unwrap();
        assert!((vals[0] - 3.0).abs() < 1e-12 && (vals[1] - 1.0).abs() < 1e-12);
        assert!((vecs.row(0)[0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        let x = Rows64::from_vec(2, 3, vec![1.0, 0.0, 1.0, 0.0, 1.0, 1.0]).unwrap();
        let g_true = Rows64::from_vec(2, 2, vec![2.0, -1.0, 0.5, 3.0]).unwrap();
        let y = Rows64::from_vec(
            2,
            3,
            (0..2)
                .flat_map(|i| (0..3).map(move |j| (i, j)))
                .map(|(i, j)| g_true.row(i)[0] * x.row(0)[j] + g_true.row(i)[1] * x.row(1)[j])
                .collect(),
        )
        .unwrap();
        let g = lstsq_rows(&y, &x).unwrap();
        for (a, b) in g.data.iter().zip(&g_true.data) {
            assert!((a - b).abs() < 1e-10);
        }
        let f = gemm_abt32(&x.to_f32(), &x.to_f32());
        assert_eq!(f.data, vec![2.0, 1.0, 1.0, 2.0]);
    }
}
