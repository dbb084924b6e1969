//! What the forward pass does differently per activation precision: which
//! `Linear` entry it calls, which KV pools and attention kernel it uses.

use talaria_kernels::cpu::{paged_attention, paged_attention_f64, Activation, AttnQuery, KernelError};
use talaria_models::OpId;

use crate::kv_cache::KvPool;
use crate::linear::Linear;

/// The forward pass's activation buffers (residual, normed rows, qkv,
/// attention, projection, gate_up, SiLU output), per precision.
#[derive(Default)]
pub(crate) struct ForwardScratch {
    f32: [Vec<f32>; 7],
    f64: [Vec<f64>; 7],
}

pub(crate) trait Lane: Activation {
    fn buffers(s: &mut ForwardScratch) -> &mut [Vec<Self>; 7];
    fn linear(linear: &mut dyn Linear, id: OpId, x: &[Self], rows: usize, out: &mut [Self]) -> anyhow::Result<()>;
    fn write_kv(kv: &mut KvPool, layer: usize, block: u32, offset: usize, k: &[Self], v: &[Self]) -> Result<(), KernelError>;
    fn attention(
        queries: &[AttnQuery<Self>],
        kv: &KvPool,
        layer: usize,
        n_heads: usize,
        scale: f64,
        out: &mut [Self],
    ) -> Result<(), KernelError>;
}

impl Lane for f32 {
    fn buffers(s: &mut ForwardScratch) -> &mut [Vec<f32>; 7] {
        &mut s.f32
    }
    fn linear(linear: &mut dyn Linear, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        linear.forward(id, x, rows, out)
    }
    fn write_kv(kv: &mut KvPool, layer: usize, block: u32, offset: usize, k: &[f32], v: &[f32]) -> Result<(), KernelError> {
        kv.write(layer, block, offset, k, v)
    }
    fn attention(q: &[AttnQuery<f32>], kv: &KvPool, layer: usize, n_heads: usize, scale: f64, out: &mut [f32]) -> Result<(), KernelError> {
        paged_attention(q, &kv.layer(layer)?, n_heads, scale as f32, out)
    }
}

impl Lane for f64 {
    fn buffers(s: &mut ForwardScratch) -> &mut [Vec<f64>; 7] {
        &mut s.f64
    }
    fn linear(linear: &mut dyn Linear, id: OpId, x: &[f64], rows: usize, out: &mut [f64]) -> anyhow::Result<()> {
        linear.forward_f64(id, x, rows, out)
    }
    fn write_kv(kv: &mut KvPool, layer: usize, block: u32, offset: usize, k: &[f64], v: &[f64]) -> Result<(), KernelError> {
        kv.write_f64(layer, block, offset, k, v)
    }
    fn attention(q: &[AttnQuery<f64>], kv: &KvPool, layer: usize, n_heads: usize, scale: f64, out: &mut [f64]) -> Result<(), KernelError> {
        paged_attention_f64(q, &kv.layer_f64(layer)?, n_heads, scale, out)
    }
}
