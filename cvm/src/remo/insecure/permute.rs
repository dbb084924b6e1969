//! **INSECURE**: sends `Π·X`, a fresh random row permutation of the
//! plaintext rows. Every row goes out in the clear; only the order is
//! hidden. Attack-suite reference only.

use talaria_models::OpId;

use crate::remo::error::RemoError;
use crate::remo::scheme::{dims_from_buffers, MaskScheme};
use crate::remo::secure_rng::SecureRng;
use crate::remo::worker::{check_answer, CallKind, WorkerMatmul};

/// **INSECURE** row permutation (see the module docs).
pub struct RowPermutation {
    rng: SecureRng,
    perm: Vec<usize>,
    sent: Vec<f64>,
}

impl RowPermutation {
    pub fn new() -> Result<Self, RemoError> {
        Ok(Self { rng: SecureRng::from_os()?, perm: Vec::new(), sent: Vec::new() })
    }
}

impl MaskScheme for RowPermutation {
    fn name(&self) -> &str {
        "permute"
    }

    fn secure(&self) -> bool {
        false
    }

    fn matmul(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        let (d_in, d_out) = dims_from_buffers(id, x.len(), out.len(), rows)?;
        self.rng.permutation(rows, &mut self.perm);
        self.sent.clear();
        for &i in &self.perm {
            self.sent.extend(x[i * d_in..(i + 1) * d_in].iter().map(|&v| f64::from(v)));
        }
        let y = worker.matmul(id, CallKind::Online, &self.sent, rows)?;
        check_answer(id, &y, rows, d_out)?;
        for (j, &i) in self.perm.iter().enumerate() {
            for (o, &v) in out[i * d_out..(i + 1) * d_out].iter_mut().zip(&y[j * d_out..(j + 1) * d_out]) {
                *o = v as f32;
            }
        }
        Ok(())
    }
}
