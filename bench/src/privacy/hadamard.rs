//! The orthonormal Walsh–Hadamard transform along the row index of a
//! matrix (`H·U` with `H = H_2^{⊗log n}/√n`, symmetric, `H·H = I`): the
//! public layer of ReMO's pad mixing, used by the simulator and peeled
//! off by the structure test.

use anyhow::{ensure, Result};

use super::mat::Rows64;

pub fn fwht_rows(m: &mut Rows64) -> Result<()> {
    let n = m.rows;
    ensure!(n.is_power_of_two(), "Walsh–Hadamard needs a power-of-two row count, got {n}");
    let cols = m.cols;
    let mut h = 1;
    while h < n {
        for base in (0..n).step_by(2 * h) {
            for i in base..base + h {
                let (lo, hi) = m.data.split_at_mut((i + h) * cols);
                let a = &mut lo[i * cols..(i + 1) * cols];
                let b = &mut hi[..cols];
                for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                    let (s, d) = (*x + *y, *x - *y);
                    *x = s;
                    *y = d;
                }
            }
        }
        h *= 2;
    }
    let scale = 1.0 / (n as f64).sqrt();
    m.data.iter_mut().for_each(|v| *v *= scale);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_orthonormal_and_self_inverse() {
        let orig = Rows64::from_vec(4, 2, vec![1.0, 0.0, 2.0, 1.0, -1.0, 3.0, 0.5, 0.0]).unwrap();
        let mut m = orig.clone();
        fwht_rows(&mut m).unwrap();
        // Row 0 is the scaled column sum.
        assert!((m.row(0)[0] - (1.0 + 2.0 - 1.0 + 0.5) / 2.0).abs() < 1e-12);
        let n0: f64 = orig.data.iter().map(|v| v * v).sum();
        let n1: f64 = m.data.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-12);
        fwht_rows(&mut m).unwrap();
        for (a, b) in m.data.iter().zip(&orig.data) {
            assert!((a - b).abs() < 1e-12);
        }
        assert!(fwht_rows(&mut Rows64::zeros(3, 1)).is_err());
    }
}
