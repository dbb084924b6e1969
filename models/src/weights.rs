//! The model's weights split the way Talaria deploys them (docs/DESIGN.md §1):
//! `CvmWeights` (embedding, plus the final norm gain when the head is tied
//! and computed in the CVM) and `WorkerWeights` (every weight matrix, norm
//! gains folded in: `W' = W·diag(γ)` on the input channels).

use rayon::prelude::*;
use talaria_kernels::{WeightDType, WeightMatrix};

use crate::checkpoint::Checkpoint;
use crate::config::LlamaConfig;
use crate::error::Result;
use crate::op::{Op, OpId};

pub struct CvmWeights {
    /// `model.embed_tokens` (vocab × hidden); also the head when tied.
    pub embed_tokens: WeightMatrix,
    /// `model.norm` gain, only for tied heads (the CVM computes the logits).
    pub norm: Option<Vec<f32>>,
}

pub struct SelfAttn {
    /// q_proj | k_proj | v_proj rows, `input_layernorm` folded in.
    pub qkv_proj: WeightMatrix,
    pub o_proj: WeightMatrix,
}

pub struct Mlp {
    /// gate_proj | up_proj rows, `post_attention_layernorm` folded in.
    pub gate_up_proj: WeightMatrix,
    pub down_proj: WeightMatrix,
}

pub struct WorkerLayer {
    pub self_attn: SelfAttn,
    pub mlp: Mlp,
}

pub struct WorkerWeights {
    pub layers: Vec<WorkerLayer>,
    /// Untied head with `model.norm` folded in.
    pub lm_head: Option<WeightMatrix>,
}

impl WorkerWeights {
    pub fn load(ck: &Checkpoint, dtype: WeightDType) -> Result<Self> {
        let c = &ck.config;
        let layers = (0..c.num_hidden_layers).map(|i| load_layer(ck, i, dtype)).collect::<Result<Vec<_>>>()?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            let gain = ck.tensor("model.norm.weight", &[c.hidden_size])?;
            let w = ck.tensor("lm_head.weight", &[c.vocab_size, c.hidden_size])?;
            Some(folded(w, &gain, c.vocab_size, c.hidden_size, dtype))
        };
        Ok(Self { layers, lm_head })
    }

    pub fn get(&self, id: OpId) -> Option<&WeightMatrix> {
        if id.op == Op::LmHead {
            return self.lm_head.as_ref().filter(|_| id.layer == -1);
        }
        let l = self.layers.get(usize::try_from(id.layer).ok()?)?;
        Some(match id.op {
            Op::Qkv => &l.self_attn.qkv_proj,
            Op::O => &l.self_attn.o_proj,
            Op::GateUp => &l.mlp.gate_up_proj,
            Op::Down => &l.mlp.down_proj,
            Op::LmHead => unreachable!(),
        })
    }

    /// Every op the worker serves, in forward order.
    pub fn op_ids(&self) -> Vec<OpId> {
        let mut v: Vec<OpId> = (0..self.layers.len()).flat_map(|l| Op::LAYER_OPS.map(|op| OpId::new(l, op))).collect();
        if self.lm_head.is_some() {
            v.push(OpId::lm_head());
        }
        v
    }

    pub fn size_bytes(&self) -> usize {
        self.op_ids().iter().filter_map(|id| self.get(*id)).map(|w| w.size_bytes()).sum()
    }
}

impl CvmWeights {
    pub fn load(ck: &Checkpoint, dtype: WeightDType) -> Result<Self> {
        let c = &ck.config;
        let e = ck.tensor("model.embed_tokens.weight", &[c.vocab_size, c.hidden_size])?;
        let norm = if c.tie_word_embeddings { Some(ck.tensor("model.norm.weight", &[c.hidden_size])?) } else { None };
        Ok(Self { embed_tokens: WeightMatrix::from_f32(c.vocab_size, c.hidden_size, e, dtype), norm })
    }
}

/// The output dimension of each op.
pub fn op_dims(c: &LlamaConfig, op: Op) -> (usize, usize) {
    let d = c.hidden_size;
    match op {
        Op::Qkv => (d, c.q_dim() + 2 * c.kv_dim()),
        Op::O => (c.q_dim(), d),
        Op::GateUp => (d, 2 * c.intermediate_size),
        Op::Down => (c.intermediate_size, d),
        Op::LmHead => (d, c.vocab_size),
    }
}

fn load_layer(ck: &Checkpoint, i: usize, dtype: WeightDType) -> Result<WorkerLayer> {
    let c = &ck.config;
    let d = c.hidden_size;
    let p = |n: &str| format!("model.layers.{i}.{n}.weight");
    let attn_gain = ck.tensor(&p("input_layernorm"), &[d])?;
    let mut qkv = ck.tensor(&p("self_attn.q_proj"), &[c.q_dim(), d])?;
    qkv.extend(ck.tensor(&p("self_attn.k_proj"), &[c.kv_dim(), d])?);
    qkv.extend(ck.tensor(&p("self_attn.v_proj"), &[c.kv_dim(), d])?);
    let o = ck.tensor(&p("self_attn.o_proj"), &[d, c.q_dim()])?;
    let mlp_gain = ck.tensor(&p("post_attention_layernorm"), &[d])?;
    let mut gate_up = ck.tensor(&p("mlp.gate_proj"), &[c.intermediate_size, d])?;
    gate_up.extend(ck.tensor(&p("mlp.up_proj"), &[c.intermediate_size, d])?);
    let down = ck.tensor(&p("mlp.down_proj"), &[d, c.intermediate_size])?;
    Ok(WorkerLayer {
        self_attn: SelfAttn {
            qkv_proj: folded(qkv, &attn_gain, c.q_dim() + 2 * c.kv_dim(), d, dtype),
            o_proj: WeightMatrix::from_f32(d, c.q_dim(), o, dtype),
        },
        mlp: Mlp {
            gate_up_proj: folded(gate_up, &mlp_gain, 2 * c.intermediate_size, d, dtype),
            down_proj: WeightMatrix::from_f32(d, c.intermediate_size, down, dtype),
        },
    })
}

/// `W·diag(γ)`: scales input channel `c` of every row by `γ_c`, so the
/// caller can send the gain-free `RMSNorm(x)`.
fn folded(mut w: Vec<f32>, gain: &[f32], rows: usize, cols: usize, dtype: WeightDType) -> WeightMatrix {
    w.par_chunks_mut(cols).for_each(|row| row.iter_mut().zip(gain).for_each(|(v, g)| *v *= g));
    WeightMatrix::from_f32(rows, cols, w, dtype)
}
