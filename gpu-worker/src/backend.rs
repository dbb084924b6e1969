//! Where the worker's matrix products run. One seam, chosen at run time:
//! CPU always; CUDA when a driver and a device are present.

use talaria_kernels::cpu::{matmul, matmul_f64};
use talaria_models::{OpId, WorkerWeights};

pub trait MatmulBackend: Send {
    fn name(&self) -> String;
    /// Exact mode: f64 rows, weights widened, f64 accumulation.
    fn matmul_f64(&mut self, id: OpId, x: &[f64], rows: usize, out: &mut [f64]) -> anyhow::Result<()>;
    /// Plain mode: f32 rows (a backend may round them, e.g. to bf16).
    fn matmul_f32(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()>;
    /// Fast masked mode: f32 rows taken at full f32 precision (masked rows
    /// are κ times larger than the data, so no rounding of the input is
    /// allowed), f32 accumulation.
    fn matmul_fast(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()>;
}

pub struct CpuBackend {
    weights: std::sync::Arc<WorkerWeights>,
}

impl CpuBackend {
    pub fn new(weights: std::sync::Arc<WorkerWeights>) -> Self {
        Self { weights }
    }
}

impl MatmulBackend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }
    fn matmul_f64(&mut self, id: OpId, x: &[f64], rows: usize, out: &mut [f64]) -> anyhow::Result<()> {
        let w = self.weights.get(id).ok_or_else(|| anyhow::anyhow!("no weight for {id}"))?;
        matmul_f64(x, rows, w, out);
        Ok(())
    }
    fn matmul_f32(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        let w = self.weights.get(id).ok_or_else(|| anyhow::anyhow!("no weight for {id}"))?;
        matmul(x, rows, w, out);
        Ok(())
    }
    /// The CPU f32 kernels already take f32 rows exactly (AMX splits them
    /// into three bf16 limbs; the AVX-512 path multiplies in f32).
    fn matmul_fast(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        self.matmul_f32(id, x, rows, out)
    }
}
