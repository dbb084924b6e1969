//! An in-process stand-in for the untrusted worker, for tests and attack
//! experiments (never for serving): it holds its own f64 weights, computes
//! in f64, and records everything it is sent.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use talaria_models::OpId;

use talaria_kernels::{Precision, Rows, RowsMut};
use talaria_remo::{CallKind, WorkerCall, WorkerMatmul};

/// One matrix the worker received.
#[derive(Clone, Debug)]
pub struct ReceivedCall {
    pub seq: u64,
    pub id: OpId,
    pub kind: CallKind,
    pub rows: usize,
    pub cols: usize,
    /// The matrix itself (empty when recording of data is off).
    pub data: Vec<f64>,
}

impl ReceivedCall {
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

struct Weight {
    d_in: usize,
    d_out: usize,
    /// `d_out × d_in`, row-major (`y = x·Wᵀ`).
    w: Vec<f64>,
}

pub struct RecordingWorker {
    weights: BTreeMap<OpId, Weight>,
    calls: Vec<ReceivedCall>,
    record_data: bool,
    seq: u64,
}

impl RecordingWorker {
    /// Weights with i.i.d. `N(0, 1/d_in)` entries from a seeded (public,
    /// non-secret) generator, for each `(id, d_in, d_out)`.
    pub fn random(shapes: &[(OpId, usize, usize)], seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let weights = shapes
            .iter()
            .map(|&(id, d_in, d_out)| {
                let s = 1.0 / (d_in as f64).sqrt();
                let w = (0..d_in * d_out).map(|_| s * rng.sample::<f64, _>(StandardNormal)).collect();
                (id, Weight { d_in, d_out, w })
            })
            .collect();
        Self { weights, calls: Vec::new(), record_data: true, seq: 0 }
    }

    /// Keep only call metadata (for large runs).
    pub fn record_data(mut self, on: bool) -> Self {
        self.record_data = on;
        self
    }

    pub fn calls(&self) -> &[ReceivedCall] {
        &self.calls
    }

    pub fn clear_calls(&mut self) {
        self.calls.clear();
    }

    /// `W` of `id` as `d_out × d_in`, row-major.
    pub fn weight(&self, id: OpId) -> Option<&[f64]> {
        self.weights.get(&id).map(|w| w.w.as_slice())
    }

    /// The exact product `x·Wᵀ`, without recording.
    pub fn exact(&self, id: OpId, x: &[f64], rows: usize) -> anyhow::Result<Vec<f64>> {
        let w = self.weights.get(&id).ok_or_else(|| anyhow::anyhow!("worker: no weight for {id}"))?;
        anyhow::ensure!(x.len() == rows * w.d_in, "worker: {id}: {} values is not {rows} rows of {}", x.len(), w.d_in);
        let mut y = vec![0.0; rows * w.d_out];
        y.par_chunks_mut(w.d_out).zip(x.par_chunks(w.d_in)).for_each(|(y_row, x_row)| {
            for (o, w_row) in y_row.iter_mut().zip(w.w.chunks_exact(w.d_in)) {
                *o = dot(x_row, w_row);
            }
        });
        Ok(y)
    }
}

/// Dot product with eight partial sums (vectorizes; pairwise-ish rounding).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Computes in f64 whatever the call's precision, and answers in it.
impl WorkerMatmul for RecordingWorker {
    fn call(&mut self, call: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), take: &mut dyn FnMut(Rows<'_>)) -> anyhow::Result<()> {
        let WorkerCall { id, kind, rows, d_in, .. } = call;
        let x: Vec<f64> = match call.precision {
            Precision::F64 => {
                let mut x = vec![0f64; rows * d_in];
                fill(RowsMut::F64(&mut x));
                x
            }
            Precision::F32 => {
                let mut x = vec![0f32; rows * d_in];
                fill(RowsMut::F32(&mut x));
                x.iter().map(|&v| v as f64).collect()
            }
        };
        let y = self.exact(id, &x, rows)?;
        let data = if self.record_data { x } else { Vec::new() };
        self.calls.push(ReceivedCall { seq: self.seq, id, kind, rows, cols: d_in, data });
        self.seq += 1;
        match call.precision {
            Precision::F64 => take(Rows::F64(&y)),
            Precision::F32 => take(Rows::F32(&y.iter().map(|&v| v as f32).collect::<Vec<_>>())),
        }
        Ok(())
    }
}
