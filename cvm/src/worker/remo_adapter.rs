//! The worker link as ReMO's `WorkerMatmul`, and as a plain `Linear` for
//! public-data calls (calibration).

use talaria_engine::Linear;
use talaria_models::OpId;

use super::link::{WireFloat, WorkerLink};
use crate::remo::{CallKind, WorkerCall, WorkerMatmul};

impl WorkerMatmul for WorkerLink {
    fn matmul(&mut self, id: OpId, kind: CallKind, x: &[f64], rows: usize) -> anyhow::Result<Vec<f64>> {
        let (_, d_out) = self.shape(id).ok_or_else(|| anyhow::anyhow!("the worker does not serve {id}"))?;
        let mut out = vec![0f64; rows * d_out];
        WorkerLink::matmul(self, id, kind, x, rows, &mut out)?;
        Ok(out)
    }

    fn matmul_in_place(&mut self, call: WorkerCall, fill: &mut dyn FnMut(&mut [f64]), take: &mut dyn FnMut(&[f64])) -> anyhow::Result<()> {
        in_place(self, call, fill, take)
    }

    fn matmul_in_place_f32(
        &mut self,
        call: WorkerCall,
        fill: &mut dyn FnMut(&mut [f32]),
        take: &mut dyn FnMut(&[f32]),
    ) -> anyhow::Result<()> {
        in_place(self, call, fill, take)
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

/// One frame each way when the rows fit, else through buffers in frame-sized
/// chunks; rows and answer in `T` on the wire either way.
fn in_place<T: WireFloat>(
    link: &mut WorkerLink,
    WorkerCall { id, kind, rows, d_in, d_out }: WorkerCall,
    fill: &mut dyn FnMut(&mut [T]),
    take: &mut dyn FnMut(&[T]),
) -> anyhow::Result<()> {
    let shape = link.shape(id).ok_or_else(|| anyhow::anyhow!("the worker does not serve {id}"))?;
    anyhow::ensure!(shape == (d_in, d_out), "{id}: the worker's shape {shape:?} is not {d_in}×{d_out}");
    if link.matmul_in_place(id, kind, rows, fill, take)? {
        return Ok(());
    }
    let mut x = vec![T::zeroed(); rows * d_in];
    fill(&mut x);
    let mut y = vec![T::zeroed(); rows * d_out];
    link.matmul(id, kind, &x, rows, &mut y)?;
    take(&y);
    Ok(())
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
