//! Orthogonal matching pursuit in the Gram domain: with unit-norm atoms,
//! their Gram matrix `G` and the target's correlations `c`, the least-
//! squares fit on a support S is `β = G_SS⁻¹ c_S` and the residual is
//! `‖y‖² − c_Sᵀβ`; the next atom maximises `|c − G_{·S} β|`. No vector of
//! length d_in is touched inside the loop, so it runs per candidate.

use crate::privacy::mat::Rows64;

#[derive(Clone, Debug, PartialEq)]
pub struct OmpFit {
    pub support: Vec<usize>,
    /// Coefficients on the (unit-norm) atoms of `support`.
    pub coefs: Vec<f64>,
    pub residual2: f64,
}

/// Reusable buffers, so the per-candidate loop does not allocate.
#[derive(Default)]
pub struct OmpScratch {
    support: Vec<usize>,
    coefs: Vec<f64>,
    gss: Vec<f64>,
    cs: Vec<f64>,
}

/// Greedy sparse fit of a target with `‖y‖² = target_norm2` and
/// `corr[i] = ⟨y, a_i⟩` over atoms with Gram matrix `gram`.
pub fn omp_gram(gram: &Rows64, corr: &[f64], target_norm2: f64, max_atoms: usize, rel_tol: f64) -> OmpFit {
    let mut sc = OmpScratch::default();
    let residual2 = omp_gram_with(&mut sc, gram, corr, target_norm2, max_atoms, rel_tol);
    OmpFit { support: sc.support, coefs: sc.coefs, residual2 }
}

/// As `omp_gram`, into `sc` (support and coefficients left there);
/// returns the squared residual.
pub fn omp_gram_with(sc: &mut OmpScratch, gram: &Rows64, corr: &[f64], target_norm2: f64, max_atoms: usize, rel_tol: f64) -> f64 {
    let n = corr.len();
    sc.support.clear();
    sc.coefs.clear();
    let mut residual2 = target_norm2;
    while sc.support.len() < max_atoms.min(n) && residual2 > rel_tol * rel_tol * target_norm2 {
        let (support, coefs) = (&sc.support, &sc.coefs);
        let r = |i: usize| corr[i] - support.iter().zip(coefs).map(|(&s, b)| gram.row(i)[s] * b).sum::<f64>();
        let Some(next) = (0..n).filter(|i| !support.contains(i)).max_by(|&a, &b| r(a).abs().total_cmp(&r(b).abs())) else { break };
        sc.support.push(next);
        let k = sc.support.len();
        sc.gss.clear();
        sc.cs.clear();
        for &a in &sc.support {
            sc.gss.extend(sc.support.iter().map(|&b| gram.row(a)[b]));
            sc.cs.push(corr[a]);
        }
        match cholesky_solve(&sc.gss, &sc.cs, k) {
            Some(beta) => {
                let fitted: f64 = sc.cs.iter().zip(&beta).map(|(c, b)| c * b).sum();
                sc.coefs = beta;
                residual2 = (target_norm2 - fitted).max(0.0);
            }
            None => {
                // The new atom is (numerically) a combination of the others.
                sc.support.pop();
                break;
            }
        }
    }
    residual2
}

/// Solves `a·x = b` for a small symmetric positive definite `a` (k × k,
/// row-major); `None` when it is not numerically positive definite.
pub fn cholesky_solve(a: &[f64], b: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s: f64 = a[i * k + j] - (0..j).map(|p| l[i * k + p] * l[j * k + p]).sum::<f64>();
            if i == j {
                if s <= 1e-10 * a[i * k + i].abs().max(1e-300) {
                    return None;
                }
                l[i * k + i] = s.sqrt();
            } else {
                l[i * k + j] = s / l[j * k + j];
            }
        }
    }
    let mut z = vec![0f64; k];
    for i in 0..k {
        z[i] = (b[i] - (0..i).map(|p| l[i * k + p] * z[p]).sum::<f64>()) / l[i * k + i];
    }
    let mut x = vec![0f64; k];
    for i in (0..k).rev() {
        x[i] = (z[i] - (i + 1..k).map(|p| l[p * k + i] * x[p]).sum::<f64>()) / l[i * k + i];
    }
    Some(x)
}

/// Unit-norm copies of the rows (zero rows stay zero) and their norms.
pub fn normalize_rows(m: &Rows64) -> (Rows64, Vec<f64>) {
    let mut out = m.clone();
    let mut norms = Vec::with_capacity(m.rows);
    for i in 0..m.rows {
        let n = out.row(i).iter().map(|v| v * v).sum::<f64>().sqrt();
        norms.push(n);
        if n > 0.0 {
            out.row_mut(i).iter_mut().for_each(|v| *v /= n);
        }
    }
    (out, norms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::linalg::gemm_abt64;
    use crate::privacy::mat::dot64;

    #[test]
    fn recovers_a_two_sparse_combination() {
        // Five unit atoms in R^4 (not orthogonal); y = 2·a1 − 0.5·a3.
        let raw = Rows64::from_vec(
            5,
            4,
            vec![1.0, 0.0, 0.0, 0.0, 0.6, 0.8, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.6, 0.0, 0.8, 0.5, 0.5, 0.5, 0.5],
        )
        .unwrap();
        let (atoms, _) = normalize_rows(&raw);
        let y: Vec<f64> = (0..4).map(|j| 2.0 * atoms.row(1)[j] - 0.5 * atoms.row(3)[j]).collect();
        let gram = gemm_abt64(&atoms, &atoms);
        let corr: Vec<f64> = (0..5).map(|i| dot64(atoms.row(i), &y)).collect();
        let fit = omp_gram(&gram, &corr, dot64(&y, &y), 3, 1e-9);
        let mut s = fit.support.clone();
        s.sort();
        assert_eq!(s, vec![1, 3]);
        assert!(fit.residual2 < 1e-18);
        let c1 = fit.coefs[fit.support.iter().position(|&i| i == 1).unwrap()];
        assert!((c1 - 2.0).abs() < 1e-9);
    }

    #[test]
    fn cholesky_rejects_singular() {
        assert!(cholesky_solve(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0], 2).is_none());
        assert_eq!(cholesky_solve(&[4.0], &[2.0], 1), Some(vec![0.5]));
    }
}
