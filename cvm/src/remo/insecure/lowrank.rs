//! **INSECURE**: adds noise confined to a secret low-rank subspace,
//! `X + Z·B`, with `B` an `r × d_in` basis fixed per op (`r = d_in / 4`) and
//! `Z` fresh Gaussian per call. The CVM learns `B·W` once through the
//! worker and subtracts `Z·(B·W)`. The `d_in − r` dimensions orthogonal to
//! `B` go out in the clear (and `B` itself is estimable from the calls).
//! Attack-suite reference only.

use std::collections::HashMap;

use talaria_models::OpId;

use crate::remo::error::RemoError;
use crate::remo::scheme::{dims_from_buffers, MaskScheme};
use crate::remo::secure_rng::SecureRng;
use crate::remo::worker::{check_answer, CallKind, WorkerMatmul};

struct Basis {
    rank: usize,
    /// `B`, `rank × d_in`, entries N(0, 1).
    b: Vec<f64>,
    /// `B·W`, `rank × d_out`.
    bw: Vec<f64>,
}

/// **INSECURE** low-rank noise (see the module docs).
pub struct LowRankNoise {
    kappa: f64,
    rng: SecureRng,
    bases: HashMap<OpId, Basis>,
}

impl LowRankNoise {
    /// Noise of RMS `κ ×` the RMS of each call's rows.
    pub fn new(kappa: f64) -> Result<Self, RemoError> {
        if !(kappa.is_finite() && kappa > 0.0) {
            return Err(RemoError::Param(format!("κ must be finite and > 0, got {kappa}")));
        }
        Ok(Self { kappa, rng: SecureRng::from_os()?, bases: HashMap::new() })
    }

    fn basis(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, d_in: usize, d_out: usize) -> anyhow::Result<&Basis> {
        if !self.bases.contains_key(&id) {
            let rank = (d_in / 4).max(1);
            let b: Vec<f64> = (0..rank * d_in).map(|_| self.rng.standard_normal()).collect();
            let bw = worker.matmul(id, CallKind::PadBatch, &b, rank)?;
            check_answer(id, &bw, rank, d_out)?;
            self.bases.insert(id, Basis { rank, b, bw });
        }
        self.bases.get(&id).ok_or_else(|| anyhow::anyhow!("{id}: basis missing"))
    }
}

impl MaskScheme for LowRankNoise {
    fn name(&self) -> &str {
        "lowrank"
    }

    fn secure(&self) -> bool {
        false
    }

    fn matmul(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        let (d_in, d_out) = dims_from_buffers(id, x.len(), out.len(), rows)?;
        let rms = (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt().max(f64::MIN_POSITIVE);
        let rank = self.basis(worker, id, d_in, d_out)?.rank;
        // Entries of Z·B then have RMS κ·rms.
        let z_sigma = self.kappa * rms / (rank as f64).sqrt();
        let z: Vec<f64> = (0..rows * rank).map(|_| z_sigma * self.rng.standard_normal()).collect();
        let basis = self.basis(worker, id, d_in, d_out)?;
        let mut sent: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        for i in 0..rows {
            for k in 0..rank {
                let f = z[i * rank + k];
                for (s, &b) in sent[i * d_in..(i + 1) * d_in].iter_mut().zip(&basis.b[k * d_in..(k + 1) * d_in]) {
                    *s += f * b;
                }
            }
        }
        let mut y = worker.matmul(id, CallKind::Online, &sent, rows)?;
        check_answer(id, &y, rows, d_out)?;
        for i in 0..rows {
            for k in 0..rank {
                let f = z[i * rank + k];
                for (o, &bw) in y[i * d_out..(i + 1) * d_out].iter_mut().zip(&basis.bw[k * d_out..(k + 1) * d_out]) {
                    *o -= f * bw;
                }
            }
        }
        out.iter_mut().zip(&y).for_each(|(o, &v)| *o = v as f32);
        Ok(())
    }
}
