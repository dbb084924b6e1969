//! The CUDA backend: weights uploaded once, exact masked GEMM (f64
//! activations, f64 accumulation on the FP64 tensor cores) for ReMO calls,
//! the three-bf16-limb GEMM for the fast masked mode, the plain bf16 GEMM
//! for unmasked calls. Ops the GPU kernels cannot take
//! (plain calls on non-bf16 weights) run on the CPU backend.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use talaria_kernels::{mixed, Rows, RowsMut, WeightDType};
use talaria_kernels_cuda::{CudaMatmul, DeviceWeight};
use talaria_models::{OpId, WorkerWeights};
use talaria_protocol::{CallKind, WorkerCall};

use crate::backend::{CpuBackend, MatmulBackend};

pub struct CudaBackend {
    gpu: CudaMatmul,
    weights: HashMap<OpId, DeviceWeight>,
    plain_on_gpu: bool,
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
        let plain_on_gpu = host.op_ids().iter().all(|&id| host.get(id).is_some_and(|w| w.dtype() == WeightDType::Bf16));
        Ok(Self { gpu, weights, plain_on_gpu, cpu: CpuBackend::new(host) })
    }
}

impl MatmulBackend for CudaBackend {
    fn name(&self) -> String {
        let d = self.gpu.device();
        format!("cuda ({}, sm_{}{})", d.name, d.compute_capability.0, d.compute_capability.1)
    }

    fn matmul(&mut self, call: &WorkerCall, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        let (id, rows) = (call.id, call.rows);
        if matches!(x, Rows::F32(_)) && !self.plain_on_gpu {
            return self.cpu.matmul(call, x, out);
        }
        let w = self.weights.get(&id).ok_or_else(|| anyhow::anyhow!("no weight for {id}"))?;
        match (x, out) {
            (Rows::F64(x), RowsMut::F64(out)) => {
                self.gpu.matmul_exact(x, rows, w, out).with_context(|| format!("{id}: exact GEMM on the GPU"))
            }
            (Rows::F32(x), RowsMut::F32(out)) if call.kind == CallKind::Plain => {
                self.gpu.matmul_plain(x, rows, w, out).with_context(|| format!("{id}: plain bf16 GEMM on the GPU"))
            }
            (Rows::F32(x), RowsMut::F32(out)) => {
                self.gpu.matmul_fast(x, rows, w, out).with_context(|| format!("{id}: fast masked GEMM (bf16 limbs) on the GPU"))
            }
            (x, out) => Err(mixed(x, &out)),
        }
    }
}
