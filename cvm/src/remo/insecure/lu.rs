//! Dense LU factorization with partial pivoting (f64), for unmixing the
//! small `n × n` matrices of the row-mixing reference scheme.

use crate::remo::error::RemoError;

pub struct Lu {
    n: usize,
    /// `L` (unit diagonal, below) and `U` (on and above), row-major.
    lu: Vec<f64>,
    /// Row `i` of `P·A` is row `piv[i]` of `A`.
    piv: Vec<usize>,
}

impl Lu {
    /// Factors the row-major `n × n` matrix `a` as `P·A = L·U`; fails when a
    /// pivot is zero to working precision.
    pub fn factor(a: &[f64], n: usize) -> Result<Self, RemoError> {
        if a.len() != n * n {
            return Err(RemoError::Param(format!("LU: {} values is not a {n}×{n} matrix", a.len())));
        }
        let mut lu = a.to_vec();
        let mut piv: Vec<usize> = (0..n).collect();
        let tiny = a.iter().fold(0.0f64, |m, v| m.max(v.abs())) * n as f64 * f64::EPSILON;
        for k in 0..n {
            let p = (k..n).max_by(|&i, &j| lu[i * n + k].abs().total_cmp(&lu[j * n + k].abs())).unwrap_or(k);
            let pivot = lu[p * n + k];
            if pivot.is_nan() || pivot.abs() <= tiny {
                return Err(RemoError::Singular { column: k, pivot });
            }
            if p != k {
                for c in 0..n {
                    lu.swap(k * n + c, p * n + c);
                }
                piv.swap(k, p);
            }
            for i in k + 1..n {
                let f = lu[i * n + k] / pivot;
                lu[i * n + k] = f;
                for c in k + 1..n {
                    lu[i * n + c] -= f * lu[k * n + c];
                }
            }
        }
        Ok(Self { n, lu, piv })
    }

    /// Solves `A·X = B` for the row-major `n × cols` right-hand side `b`.
    pub fn solve(&self, b: &[f64], cols: usize) -> Result<Vec<f64>, RemoError> {
        let n = self.n;
        if b.len() != n * cols {
            return Err(RemoError::Param(format!("LU solve: {} values is not {n}×{cols}", b.len())));
        }
        let mut x: Vec<f64> = self.piv.iter().flat_map(|&p| b[p * cols..(p + 1) * cols].iter().copied()).collect();
        // Forward substitution with unit-diagonal L.
        for i in 0..n {
            for k in 0..i {
                let f = self.lu[i * n + k];
                for c in 0..cols {
                    x[i * cols + c] -= f * x[k * cols + c];
                }
            }
        }
        // Back substitution with U.
        for i in (0..n).rev() {
            for k in i + 1..n {
                let f = self.lu[i * n + k];
                for c in 0..cols {
                    x[i * cols + c] -= f * x[k * cols + c];
                }
            }
            let d = self.lu[i * n + i];
            x[i * cols..(i + 1) * cols].iter_mut().for_each(|v| *v /= d);
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_and_detects_singularity() {
        // Needs a row swap: a[0][0] = 0.
        let a = [0.0, 2.0, 1.0, 1.0, 1.0, 0.0, 3.0, 0.0, 1.0];
        let x_true = [1.0, -2.0, 0.5, 3.0, 0.25, -1.0];
        let mut b = [0.0; 6];
        for i in 0..3 {
            for c in 0..2 {
                b[i * 2 + c] = (0..3).map(|k| a[i * 3 + k] * x_true[k * 2 + c]).sum();
            }
        }
        let x = Lu::factor(&a, 3).unwrap().solve(&b, 2).unwrap();
        for (got, want) in x.iter().zip(x_true) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        assert!(matches!(Lu::factor(&[1.0, 2.0, 2.0, 4.0], 2), Err(RemoError::Singular { .. })));
        assert!(Lu::factor(&[1.0; 3], 2).is_err());
    }
}
