//! Where the worker's matrix products run. One seam, chosen at run time:
//! CPU always; CUDA when a driver and a device are present.

use talaria_kernels::cpu::{matmul, matmul_f64};
use talaria_kernels::{mixed, Rows, RowsMut};
use talaria_models::WorkerWeights;
use talaria_protocol::WorkerCall;

pub trait MatmulBackend: Send {
    fn name(&self) -> String;
    /// `out = x · W_idᵀ` for one call. f64 rows: the exact mode (weights
    /// widened, f64 accumulation). f32 rows: plain calls (`CallKind::Plain`,
    /// which a backend may round, e.g. to bf16) or the fast masked mode
    /// (taken at full f32 precision: masked rows are κ times larger than
    /// the data, so no rounding of the input is allowed; f32 accumulation).
    fn matmul(&mut self, call: &WorkerCall, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()>;
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
    /// The CPU f32 kernels take f32 rows exactly (AMX splits them into
    /// three bf16 limbs; the AVX-512 path multiplies in f32), so plain and
    /// fast calls run the same kernel.
    fn matmul(&mut self, call: &WorkerCall, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        let id = call.id;
        let w = self.weights.get(id).ok_or_else(|| anyhow::anyhow!("no weight for {id}"))?;
        match (x, out) {
            (Rows::F64(x), RowsMut::F64(out)) => matmul_f64(x, call.rows, w, out),
            (Rows::F32(x), RowsMut::F32(out)) => matmul(x, call.rows, w, out),
            (x, out) => return Err(mixed(x, &out)),
        }
        Ok(())
    }
}
