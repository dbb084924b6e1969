//! The CUDA backend: weights uploaded once, exact masked GEMM (f64
//! activations, f64 accumulation on the FP64 tensor cores) for ReMO calls,
//! the three-bf16-limb GEMM for the fast masked mode, the plain bf16 GEMM
//! for unmasked calls, all reading the weights as stored (bf16, f16, f32 or
//! quant blocks). Calls the GPU kernels cannot take (f32-activation calls
//! of more than 8 rows on f16 or f32 weights) run on the CPU backend.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use talaria_kernels::{mixed, Rows, RowsMut};
use talaria_kernels_cuda::{CudaMatmul, DeviceWeight, MatmulMode};
use talaria_models::{OpId, WorkerWeights};
use talaria_protocol::{CallKind, WorkerCall};

use crate::backend::{CpuBackend, MatmulBackend};

pub struct CudaBackend {
    gpu: CudaMatmul,
    weights: HashMap<OpId, DeviceWeight>,
    cpu: CpuBackend,
}

impl CudaBackend {
    /// Opens device 0 and uploads every weight matrix.
    pub fn new(host: Arc<WorkerWeights>) -> anyhow::Result<Self> {
        let gpu = CudaMatmul::new(0).context("opening CUDA device 0")?;
        let mut weights = HashMap::new();
        for id in host.op_ids() {
            let w = host.get(id).expect("listed op");
            weights.insert(id, gpu.upload_weight(w).with_context(|| format!("uploading {id}"))?);
        }
        Ok(Self { gpu, weights, cpu: CpuBackend::new(host) })
    }
}

impl MatmulBackend for CudaBackend {
    fn name(&self) -> String {
        let d = self.gpu.device();
        format!("cuda ({}, sm_{}{})", d.name, d.compute_capability.0, d.compute_capability.1)
    }

    fn matmul(&mut self, call: &WorkerCall, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        let (id, rows) = (call.id, call.rows);
        let w = self.weights.get(&id).ok_or_else(|| anyhow::anyhow!("no weight for {id}"))?;
        let mode = match (&x, call.kind) {
            (Rows::F64(_), _) => MatmulMode::Exact,
            (_, CallKind::Plain) => MatmulMode::Plain,
            _ => MatmulMode::Fast,
        };
        if !self.gpu.takes(mode, rows, w) {
            return self.cpu.matmul(call, x, out);
        }
        match (x, out) {
            (Rows::F64(x), RowsMut::F64(out)) => {
                self.gpu.matmul_exact(x, rows, w, out).with_context(|| format!("{id}: exact GEMM on the GPU"))
            }
            (Rows::F32(x), RowsMut::F32(out)) if call.kind == CallKind::Plain => {
                self.gpu.matmul_plain(x, rows, w, out).with_context(|| format!("{id}: plain GEMM on the GPU"))
            }
            (Rows::F32(x), RowsMut::F32(out)) => {
                self.gpu.matmul_fast(x, rows, w, out).with_context(|| format!("{id}: fast masked GEMM (bf16 limbs of x) on the GPU"))
            }
            (x, out) => Err(mixed(x, &out)),
        }
    }
}
