//! ReMO's pad-batch mixing `M = Π_k (H·D_k·P_k)`: per round a secret row
//! permutation, a diagonal of random signs times log-normal magnitudes,
//! then the public orthonormal Walsh–Hadamard transform. `O(N log N)` per
//! column; zero rounds is the identity (the unmixed weak variant).

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, LogNormal};

use crate::privacy::hadamard::fwht_rows;
use crate::privacy::mat::Rows64;

pub struct Butterfly {
    /// (permutation: output row i takes input row perm[i], diagonal).
    rounds: Vec<(Vec<usize>, Vec<f64>)>,
}

impl Butterfly {
    pub fn random(n: usize, rounds: usize, rng: &mut impl Rng) -> Result<Self> {
        anyhow::ensure!(n.is_power_of_two(), "pad batch size {n} must be a power of two");
        let mag = LogNormal::new(0.0, 0.5).expect("valid log-normal");
        let rounds = (0..rounds)
            .map(|_| {
                let mut perm: Vec<usize> = (0..n).collect();
                perm.shuffle(rng);
                let diag = (0..n).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 } * mag.sample(rng)).collect();
                (perm, diag)
            })
            .collect();
        Ok(Self { rounds })
    }

    /// `M·r`.
    pub fn apply(&self, r: &Rows64) -> Result<Rows64> {
        let mut m = r.clone();
        for (perm, diag) in &self.rounds {
            let mut next = m.select(perm);
            for (i, &d) in diag.iter().enumerate() {
                next.row_mut(i).iter_mut().for_each(|v| *v *= d);
            }
            fwht_rows(&mut next)?;
            m = next;
        }
        Ok(m)
    }

    /// `M⁻¹·u` (what the CVM applies to the returned batch).
    #[cfg(test)]
    pub fn invert(&self, u: &Rows64) -> Result<Rows64> {
        let mut m = u.clone();
        for (perm, diag) in self.rounds.iter().rev() {
            fwht_rows(&mut m)?;
            for (i, &d) in diag.iter().enumerate() {
                m.row_mut(i).iter_mut().for_each(|v| *v /= d);
            }
            let mut prev = Rows64::zeros(m.rows, m.cols);
            for (i, &p) in perm.iter().enumerate() {
                prev.row_mut(p).copy_from_slice(m.row(i));
            }
            m = prev;
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn inverts_and_mixes_densely() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let n = 16;
        let r = Rows64::from_vec(n, 3, (0..n * 3).map(|i| (i as f64).sin()).collect()).unwrap();
        let m = Butterfly::random(n, 3, &mut rng).unwrap();
        let u = m.apply(&r).unwrap();
        let back = m.invert(&u).unwrap();
        for (a, b) in back.data.iter().zip(&r.data) {
            assert!((a - b).abs() < 1e-10);
        }
        // A unit row spreads over every output row.
        let mut e = Rows64::zeros(n, 1);
        e.data[5] = 1.0;
        assert!(m.apply(&e).unwrap().data.iter().all(|v| v.abs() > 1e-9));
        let id = Butterfly::random(n, 0, &mut rng).unwrap();
        assert_eq!(id.apply(&r).unwrap(), r);
    }
}
