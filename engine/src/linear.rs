//! The seam between the weight-free forward pass and the weight matrices.
//! Every weight-matrix product of the model goes through `Linear`: the
//! plain in-process backend here, or the ReMO remote backend of the CVM.

use std::sync::Arc;

use talaria_kernels::cpu::{matmul, matmul_f64};
use talaria_models::{OpId, WorkerWeights};

use crate::precision::Precision;

pub trait Linear: Send {
    /// `out (rows × d_out) = x (rows × d_in) · Wᵀ` for the weight `id`
    /// (norm gains already folded into W).
    fn forward(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()>;

    /// The activations this backend wants: `F64` for the exact backends, so
    /// the whole weight-free half runs in f64 around them (`Precision`).
    fn precision(&self) -> Precision {
        Precision::F32
    }

    /// `forward` on f64 rows, called instead of it when `precision()` is
    /// `F64`. The default goes through f32 (for backends that have no f64
    /// path and say so with `precision()`).
    fn forward_f64(&mut self, id: OpId, x: &[f64], rows: usize, out: &mut [f64]) -> anyhow::Result<()> {
        through_f32(x, out, |x32, out32| self.forward(id, x32, rows, out32))
    }

    /// A short name for logs ("plain-local", "remo", …).
    fn name(&self) -> String;

    /// Background work while no step is pending (ReMO pad refills). Returns
    /// whether anything was done, so callers can go idle when not.
    fn idle(&mut self, _budget: std::time::Duration) -> anyhow::Result<bool> {
        Ok(false)
    }

    /// Work that must keep pace with a busy engine, run after each step once
    /// its outputs are delivered (ReMO: pad refills paced to consumption,
    /// so no step has to make a whole round of them).
    fn after_step(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Backend counters for logs and benchmarks (JSON object, or null).
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The remote worker's own busy seconds per call kind so far (JSON
    /// object), for exact time splits; `None` for in-process backends.
    fn worker_busy(&mut self) -> Option<serde_json::Value> {
        None
    }

    /// A few lines for a human at the end of a run (ReMO: pools, refill
    /// phases, leakage bound); `None` when there is nothing to say.
    fn summary(&self) -> Option<String> {
        None
    }
}

/// Runs an f32 product on f64 rows: rounds `x` to f32, widens the answer
/// (for f32-only backends asked for f64 rows).
pub fn through_f32(x: &[f64], out: &mut [f64], f32_product: impl FnOnce(&[f32], &mut [f32]) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let mut out32 = vec![0f32; out.len()];
    f32_product(&x32, &mut out32)?;
    out.iter_mut().zip(&out32).for_each(|(o, &v)| *o = v as f64);
    Ok(())
}

/// How the local backend accumulates products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulate {
    /// f32 activations and accumulation: the fast plain engine.
    F32,
    /// Rows widened to f64 and accumulated in f64, like the worker's exact
    /// mode, with the engine's activations in f64 too (`Precision::F64`):
    /// the reference the confidential mode must reproduce.
    F64,
}

/// How long the pool keeps polling after a local linear call: longer than
/// the gap between two calls of a step, short enough to park soon after.
const POOL_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// Unprotected in-process backend: the baseline and the reference.
pub struct LocalLinear {
    weights: Arc<WorkerWeights>,
    accumulate: Accumulate,
}

impl LocalLinear {
    pub fn new(weights: Arc<WorkerWeights>) -> Self {
        Self { weights, accumulate: Accumulate::F32 }
    }

    pub fn exact(weights: Arc<WorkerWeights>) -> Self {
        Self { weights, accumulate: Accumulate::F64 }
    }
}

impl Linear for LocalLinear {
    fn forward(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        let w = self.weights.get(id).ok_or_else(|| anyhow::anyhow!("no weight for {id}"))?;
        anyhow::ensure!(x.len() == rows * w.cols && out.len() == rows * w.rows, "{id}: shape mismatch");
        // In-process, nothing else needs this CPU between the step's many
        // small parallel kernels: keep the pool polling instead of parking
        // (decode batch 1: +11–14 %, bench throughput A/B).
        talaria_kernels::cpu::keep_pool_warm(POOL_LINGER);
        match self.accumulate {
            Accumulate::F32 => matmul(x, rows, w, out),
            Accumulate::F64 => {
                let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let mut yd = vec![0f64; out.len()];
                matmul_f64(&xd, rows, w, &mut yd);
                out.iter_mut().zip(&yd).for_each(|(o, &y)| *o = y as f32);
            }
        }
        Ok(())
    }

    fn precision(&self) -> Precision {
        match self.accumulate {
            Accumulate::F32 => Precision::F32,
            Accumulate::F64 => Precision::F64,
        }
    }

    fn forward_f64(&mut self, id: OpId, x: &[f64], rows: usize, out: &mut [f64]) -> anyhow::Result<()> {
        let w = self.weights.get(id).ok_or_else(|| anyhow::anyhow!("no weight for {id}"))?;
        anyhow::ensure!(x.len() == rows * w.cols && out.len() == rows * w.rows, "{id}: shape mismatch");
        talaria_kernels::cpu::keep_pool_warm(POOL_LINGER);
        matmul_f64(x, rows, w, out);
        Ok(())
    }

    fn name(&self) -> String {
        match self.accumulate {
            Accumulate::F32 => "plain-local".into(),
            Accumulate::F64 => "plain-local-f64".into(),
        }
    }
}
