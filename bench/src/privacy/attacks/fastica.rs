//! FastICA (Hyvärinen's fixed-point algorithm, symmetric, g = tanh):
//! PCA whitening through the eigenvectors of the samples' Gram matrix,
//! then `W ← E[g(WZ)Zᵀ] − diag(E[g′(WZ)])·W` with symmetric
//! decorrelation `W ← (WWᵀ)^{-1/2}·W` until the rows stop turning.

use anyhow::{ensure, Result};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::privacy::linalg::{gemm_abt64, sym_eigen_desc};
use crate::privacy::mat::Rows64;

pub struct IcaResult {
    /// Estimated sources, `k × samples`, unit variance.
    pub sources: Rows64,
    pub iterations: usize,
    pub converged: bool,
}

/// `x`: signals × samples (each row one observed mixture).
pub fn fast_ica(x: &Rows64, k: usize, max_iter: usize, tol: f64, rng: &mut impl Rng) -> Result<IcaResult> {
    let n = x.cols;
    ensure!(n >= 2 && x.rows >= 1, "ICA needs at least two samples");
    let k = k.min(x.rows).min(n - 1).max(1);
    let mut xc = x.clone();
    for i in 0..xc.rows {
        let row = xc.row_mut(i);
        let mean = row.iter().sum::<f64>() / n as f64;
        row.iter_mut().for_each(|v| *v -= mean);
    }
    // Whitened samples Z = √n·V_kᵀ, V_k the top eigenvectors of XᵀX.
    let xt = xc.transpose();
    let (vals, vecs) = sym_eigen_desc(&gemm_abt64(&xt, &xt))?;
    let k = k.min(vals.iter().filter(|&&v| v > 1e-10 * vals[0].max(1e-300)).count()).max(1);
    let mut z = vecs.select(&(0..k).collect::<Vec<_>>());
    z.data.iter_mut().for_each(|v| *v *= (n as f64).sqrt());

    let mut w = Rows64::from_vec(k, k, (0..k * k).map(|_| rng.sample::<f64, _>(StandardNormal)).collect())?;
    w = sym_decorrelate(&w)?;
    let (mut iterations, mut converged) = (0, false);
    for it in 0..max_iter {
        iterations = it + 1;
        let wz = gemm_abt64(&w, &z.transpose());
        let mut gz = wz.clone();
        // g = tanh in place; E[g′] = E[1 − tanh²] per component.
        let gprime: Vec<f64> = (0..k)
            .map(|i| {
                let mut acc = 0.0;
                for v in gz.row_mut(i) {
                    let t = v.tanh();
                    acc += 1.0 - t * t;
                    *v = t;
                }
                acc / n as f64
            })
            .collect();
        let mut w_new = gemm_abt64(&gz, &z);
        w_new.data.iter_mut().for_each(|v| *v /= n as f64);
        for (i, gp) in gprime.iter().enumerate() {
            w_new.row_mut(i).iter_mut().zip(w.row(i)).for_each(|(a, b)| *a -= gp * b);
        }
        let w_new = sym_decorrelate(&w_new)?;
        let lim = (0..k).map(|i| (1.0 - crate::privacy::mat::dot64(w_new.row(i), w.row(i)).abs()).abs()).fold(0.0, f64::max);
        w = w_new;
        if lim < tol {
            converged = true;
            break;
        }
    }
    let sources = gemm_abt64(&w, &z.transpose());
    Ok(IcaResult { sources, iterations, converged })
}

/// `(WWᵀ)^{-1/2}·W`.
fn sym_decorrelate(w: &Rows64) -> Result<Rows64> {
    let (vals, vecs) = sym_eigen_desc(&gemm_abt64(w, w))?;
    let k = w.rows;
    // E·diag(λ^{-1/2})·Eᵀ with eigenvectors as rows of `vecs`.
    let mut inv_sqrt = Rows64::zeros(k, k);
    for (e, &l) in vals.iter().enumerate() {
        let s = 1.0 / l.max(1e-300).sqrt();
        for i in 0..k {
            for j in 0..k {
                inv_sqrt.data[i * k + j] += vecs.row(e)[i] * s * vecs.row(e)[j];
            }
        }
    }
    Ok(gemm_abt64(&inv_sqrt, &w.transpose()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn corr(a: &[f64], b: &[f64]) -> f64 {
        let m = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (ma, mb) = (m(a), m(b));
        let c: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let na: f64 = a.iter().map(|x| (x - ma).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum::<f64>().sqrt();
        c / (na * nb)
    }

    #[test]
    fn separates_non_gaussian_sources() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 4000;
        // Uniform, Laplace-like, and a square wave: all non-Gaussian.
        let s: Vec<Vec<f64>> = vec![
            (0..n).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect(),
            (0..n)
                .map(|_| {
                    let u: f64 = rng.random::<f64>() - 0.5;
                    -u.signum() * (1.0 - 2.0 * u.abs()).max(1e-12).ln()
                })
                .collect(),
            (0..n).map(|i| if (i / 37) % 2 == 0 { 1.0 } else { -1.0 }).collect(),
        ];
        let a = [[1.0, 0.5, -0.3], [0.2, 1.0, 0.7], [-0.6, 0.4, 1.0], [0.3, -0.2, 0.5]];
        let x = Rows64::from_vec(
            4,
            n,
            a.iter().flat_map(|r| (0..n).map(|t| (0..3).map(|j| r[j] * s[j][t]).sum::<f64>()).collect::<Vec<_>>()).collect(),
        )
        .unwrap();
        let res = fast_ica(&x, 3, 500, 1e-8, &mut rng).unwrap();
        assert!(res.converged);
        for src in &s {
            let best = (0..3).map(|i| corr(res.sources.row(i), src).abs()).fold(0.0, f64::max);
            assert!(best > 0.98, "a source was not recovered (best |corr| {best})");
        }
    }
}
