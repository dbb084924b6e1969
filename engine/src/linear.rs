//! The seam between the weight-free forward pass and the weight matrices.
//! Every weight-matrix product of the model goes through `Linear`: the
//! plain in-process backend here, or the ReMO remote backend of the CVM.

use std::sync::Arc;

use talaria_kernels::cpu::matmul;
use talaria_models::{OpId, WorkerWeights};

pub trait Linear: Send {
    /// `out (rows × d_out) = x (rows × d_in) · Wᵀ` for the weight `id`
    /// (norm gains already folded into W).
    fn forward(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()>;

    /// A short name for logs ("plain-local", "remo", …).
    fn name(&self) -> String;
}

/// Unprotected in-process backend: the baseline and the reference.
pub struct LocalLinear {
    weights: Arc<WorkerWeights>,
}

impl LocalLinear {
    pub fn new(weights: Arc<WorkerWeights>) -> Self {
        Self { weights }
    }
}

impl Linear for LocalLinear {
    fn forward(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        let w = self.weights.get(id).ok_or_else(|| anyhow::anyhow!("no weight for {id}"))?;
        anyhow::ensure!(x.len() == rows * w.cols && out.len() == rows * w.rows, "{id}: shape mismatch");
        matmul(x, rows, w, out);
        Ok(())
    }

    fn name(&self) -> String {
        "plain-local".into()
    }
}
