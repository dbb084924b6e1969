//! **INSECURE**: sends `A·X` for a fresh random invertible `n × n` matrix
//! `A` per call and unmixes with `A⁻¹`. With `n < d_in` every plaintext row
//! lies in the span of the rows the worker saw, which a span-membership
//! test finds. Attack-suite reference only.

use talaria_models::OpId;

use super::lu::Lu;
use crate::remo::error::RemoError;
use crate::remo::scheme::{dims_from_buffers, MaskScheme};
use crate::remo::secure_rng::SecureRng;
use crate::remo::worker::{check_answer, CallKind, WorkerMatmul};

/// Redraws of `A` before giving up on a (measure-zero) singular draw.
const MAX_DRAWS: usize = 8;

/// **INSECURE** row mixing (see the module docs).
pub struct RowMixing {
    rng: SecureRng,
}

impl RowMixing {
    pub fn new() -> Result<Self, RemoError> {
        Ok(Self { rng: SecureRng::from_os()? })
    }

    fn invertible(&mut self, n: usize) -> Result<(Vec<f64>, Lu), RemoError> {
        let mut last = None;
        for _ in 0..MAX_DRAWS {
            let a: Vec<f64> = (0..n * n).map(|_| self.rng.standard_normal()).collect();
            match Lu::factor(&a, n) {
                Ok(lu) => return Ok((a, lu)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(RemoError::Param("no invertible mixing drawn".into())))
    }
}

impl MaskScheme for RowMixing {
    fn name(&self) -> &str {
        "mix"
    }

    fn secure(&self) -> bool {
        false
    }

    fn matmul(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        let (d_in, d_out) = dims_from_buffers(id, x.len(), out.len(), rows)?;
        let (a, lu) = self.invertible(rows)?;
        let mut sent = vec![0.0; rows * d_in];
        for i in 0..rows {
            for k in 0..rows {
                let f = a[i * rows + k];
                for (s, &v) in sent[i * d_in..(i + 1) * d_in].iter_mut().zip(&x[k * d_in..(k + 1) * d_in]) {
                    *s += f * f64::from(v);
                }
            }
        }
        let y = worker.matmul(id, CallKind::Online, &sent, rows)?;
        check_answer(id, &y, rows, d_out)?;
        let xw = lu.solve(&y, d_out)?;
        out.iter_mut().zip(&xw).for_each(|(o, &v)| *o = v as f32);
        Ok(())
    }
}
