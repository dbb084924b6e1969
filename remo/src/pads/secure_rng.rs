//! The only randomness ReMO uses for secrets: ChaCha20 seeded from the OS,
//! and bulk streams keyed from it for the Gaussian pads (AES-256-CTR where
//! the CPU has AES instructions, else ChaCha12: `bulk_stream`). There is
//! deliberately no way to seed any of them deterministically.
//!
//! Pads draw ~10⁹ Gaussians per serving minute: the keystream is read in
//! bulk and the ziggurat runs eight lanes at a time (`gaussian`).

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use talaria_kernels::Float;

use crate::error::RemoError;
use crate::pads::bulk_stream::{BulkKind, BulkStream};
use crate::pads::gaussian::{fill_standard_normal, Keystream};
use crate::pads::wipe::wipe;

/// Values per parallel chunk when filling large Gaussian matrices.
const GAUSSIAN_CHUNK: usize = 1 << 14;
/// Standard normals drawn at once (then scaled per column).
const NORMALS_AT_ONCE: usize = 256;

pub struct SecureRng {
    rng: ChaCha20Rng,
}

impl SecureRng {
    /// A fresh generator seeded from the operating system's CSPRNG.
    pub fn from_os() -> Result<Self, RemoError> {
        let rng = ChaCha20Rng::try_from_os_rng().map_err(|e| RemoError::OsRng(e.to_string()))?;
        Ok(Self { rng })
    }

    /// The underlying ChaCha20 stream.
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// An independent generator keyed from this one, for another thread.
    pub fn fork(&mut self) -> Self {
        Self { rng: ChaCha20Rng::from_rng(&mut self.rng) }
    }

    /// An independent bulk stream keyed from this one (Gaussian pads).
    fn fork_bulk(&mut self, kind: BulkKind) -> BulkStream {
        BulkStream::keyed(kind, &mut self.rng)
    }

    /// Writes a uniformly random permutation of `0..n` into `out`.
    pub fn permutation(&mut self, n: usize, out: &mut Vec<usize>) {
        out.clear();
        out.extend(0..n);
        out.shuffle(&mut self.rng);
    }

    /// One standard normal draw.
    pub fn standard_normal(&mut self) -> f64 {
        self.rng.sample(StandardNormal)
    }

    /// One standard normal draw conditioned on `|g| ≤ bound` (rejection).
    pub fn truncated_normal(&mut self, bound: f64) -> f64 {
        loop {
            let g = self.standard_normal();
            if g.abs() <= bound {
                return g;
            }
        }
    }

    /// A uniformly random sign.
    pub fn sign(&mut self) -> f64 {
        if self.rng.next_u32() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// Fills the row-major matrix `out` (`cols` = `sigma.len()` columns) with
    /// independent `N(0, sigma[c]²)` entries, in parallel over row chunks
    /// (each chunk on its own bulk stream keyed from this generator).
    pub fn fill_gaussian_rows<T: Float>(&mut self, out: &mut [T], sigma: &[f64]) {
        let cols = sigma.len();
        if cols == 0 {
            return;
        }
        let chunk = (GAUSSIAN_CHUNK / cols).max(1) * cols;
        let kind = BulkKind::for_this_cpu();
        let streams: Vec<BulkStream> = (0..out.len().div_ceil(chunk)).map(|_| self.fork_bulk(kind)).collect();
        out.par_chunks_mut(chunk).zip(streams).for_each(|(block, mut stream)| {
            let mut keystream = Keystream::new(&mut stream);
            let mut z = [0.0f64; NORMALS_AT_ONCE];
            for row in block.chunks_exact_mut(cols) {
                for (values, sigma) in row.chunks_mut(NORMALS_AT_ONCE).zip(sigma.chunks(NORMALS_AT_ONCE)) {
                    let z = &mut z[..values.len()];
                    fill_standard_normal(&mut keystream, z);
                    values.iter_mut().zip(sigma).zip(z.iter()).for_each(|((v, &s), &g)| *v = T::from_f64(s * g));
                }
            }
            wipe(&mut z);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_rows_have_the_requested_scales() {
        let mut rng = SecureRng::from_os().unwrap();
        let sigma = [1.0, 10.0, 0.0, 3.0];
        let rows = 20_000;
        let mut m = vec![0.0f64; rows * sigma.len()];
        rng.fill_gaussian_rows(&mut m, &sigma);
        for (c, &s) in sigma.iter().enumerate() {
            let var: f64 = m.iter().skip(c).step_by(sigma.len()).map(|v| v * v).sum::<f64>() / rows as f64;
            assert!((var.sqrt() - s).abs() <= 0.03 * s + 1e-12, "channel {c}: rms {} vs {s}", var.sqrt());
        }
    }

    #[test]
    fn two_generators_differ_and_permutations_are_permutations() {
        let (mut a, mut b) = (SecureRng::from_os().unwrap(), SecureRng::from_os().unwrap());
        assert_ne!(a.rng().next_u64(), b.rng().next_u64());
        let mut p = Vec::new();
        a.permutation(100, &mut p);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(p, sorted, "a 100-permutation came out as the identity");
    }

    #[test]
    fn truncated_normal_respects_bound() {
        let mut rng = SecureRng::from_os().unwrap();
        assert!((0..10_000).all(|_| rng.truncated_normal(1.0).abs() <= 1.0));
    }
}
