//! The worker link as ReMO's `WorkerMatmul`, and as a plain `Linear` for
//! public-data calls (calibration).

use talaria_engine::Linear;
use talaria_models::OpId;

use super::link::WorkerLink;
use crate::remo::worker::through_buffers;
use crate::remo::{CallKind, WorkerMatmul};

impl WorkerMatmul for WorkerLink {
    fn matmul(&mut self, id: OpId, kind: CallKind, x: &[f64], rows: usize) -> anyhow::Result<Vec<f64>> {
        let (_, d_out) = self.shape(id).ok_or_else(|| anyhow::anyhow!("the worker does not serve {id}"))?;
        let mut out = vec![0f64; rows * d_out];
        WorkerLink::matmul(self, id, kind, x, rows, &mut out)?;
        Ok(out)
    }

    fn matmul_in_place(
        &mut self,
        id: OpId,
        kind: CallKind,
        rows: usize,
        d_in: usize,
        d_out: usize,
        fill: &mut dyn FnMut(&mut [f64]),
        take: &mut dyn FnMut(&[f64]),
    ) -> anyhow::Result<()> {
        let shape = self.shape(id).ok_or_else(|| anyhow::anyhow!("the worker does not serve {id}"))?;
        anyhow::ensure!(shape == (d_in, d_out), "{id}: the worker's shape {shape:?} is not {d_in}×{d_out}");
        if WorkerLink::matmul_in_place(self, id, kind, rows, fill, take)? {
            return Ok(());
        }
        // Too many rows for one frame: through buffers (`matmul` chunks them).
        through_buffers(self, id, kind, rows, (d_in, d_out), fill, take)
    }

    fn matmul_in_place_f32(
        &mut self,
        id: OpId,
        kind: CallKind,
        rows: usize,
        d_in: usize,
        d_out: usize,
        fill: &mut dyn FnMut(&mut [f32]),
        take: &mut dyn FnMut(&[f32]),
    ) -> anyhow::Result<()> {
        let shape = self.shape(id).ok_or_else(|| anyhow::anyhow!("the worker does not serve {id}"))?;
        anyhow::ensure!(shape == (d_in, d_out), "{id}: the worker's shape {shape:?} is not {d_in}×{d_out}");
        if WorkerLink::matmul_in_place(self, id, kind, rows, fill, take)? {
            return Ok(());
        }
        // Too many rows for one frame: through f32 buffers, chunked.
        let mut x = vec![0f32; rows * d_in];
        fill(&mut x);
        let mut y = vec![0f32; rows * d_out];
        WorkerLink::matmul(self, id, kind, &x, rows, &mut y)?;
        take(&y);
        Ok(())
    }

    fn worker_busy(&mut self) -> Option<serde_json::Value> {
        match WorkerLink::worker_busy(self) {
            Ok(b) => serde_json::to_value(b.busy_s).ok(),
            Err(e) => {
                tracing::warn!("no busy-time report from the worker: {e:#}");
                None
            }
        }
    }

    fn stats(&self) -> serde_json::Value {
        self.stats.to_json()
    }
}

/// Unmasked f32 calls: only for public data (the calibration text).
pub struct PublicDataLinear<'a>(pub &'a mut WorkerLink);

impl Linear for PublicDataLinear<'_> {
    fn forward(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        self.0.matmul(id, CallKind::Plain, x, rows, out)
    }
    fn name(&self) -> String {
        "public-data".into()
    }
}
