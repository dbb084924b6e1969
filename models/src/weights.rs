//! The model's weights split the way Talaria deploys them (docs/DESIGN.md §1):
//! `CvmWeights` (the embedding, every norm gain and the final norm) and
//! `WorkerWeights` (every weight matrix, as the file stores it by default).

use talaria_kernels::{WeightFormat, WeightMatrix};

use crate::checkpoint::Checkpoint;
use crate::config::LlamaConfig;
use crate::error::Result;
use crate::op::{Op, OpId};

/// One decoder layer's norm gains (`model.layers.N.*`).
pub struct CvmLayer {
    pub input_layernorm: Vec<f32>,
    pub post_attention_layernorm: Vec<f32>,
}

pub struct CvmWeights {
    /// `model.embed_tokens` (vocab × hidden); also the head when tied.
    pub embed_tokens: WeightMatrix,
    pub layers: Vec<CvmLayer>,
    /// `model.norm`.
    pub norm: Vec<f32>,
    /// Whether `embed_tokens` is also the head (the CVM computes the logits).
    pub tied_head: bool,
}

pub struct SelfAttn {
    /// q_proj | k_proj | v_proj rows.
    pub qkv_proj: WeightMatrix,
    pub o_proj: WeightMatrix,
}

pub struct Mlp {
    /// gate_proj | up_proj rows.
    pub gate_up_proj: WeightMatrix,
    pub down_proj: WeightMatrix,
}

pub struct WorkerLayer {
    pub self_attn: SelfAttn,
    pub mlp: Mlp,
}

pub struct WorkerWeights {
    pub layers: Vec<WorkerLayer>,
    /// The untied head.
    pub lm_head: Option<WeightMatrix>,
}

impl WorkerWeights {
    pub fn load(ck: &Checkpoint, format: WeightFormat) -> Result<Self> {
        let c = &ck.config;
        let layers = (0..c.num_hidden_layers).map(|i| load_layer(ck, i, format)).collect::<Result<Vec<_>>>()?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(ck.weight_matrix(&[("lm_head.weight", c.vocab_size)], c.hidden_size, format)?)
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

    /// The element types the matrices are held in, for logs and the
    /// handshake ("q4_1", or "q4_1+q8_0" when they differ).
    pub fn dtype_summary(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        for w in self.op_ids().iter().filter_map(|id| self.get(*id)) {
            if !names.contains(&w.dtype().name()) {
                names.push(w.dtype().name());
            }
        }
        names.join("+")
    }
}

impl CvmWeights {
    pub fn load(ck: &Checkpoint, format: WeightFormat) -> Result<Self> {
        let c = &ck.config;
        let d = c.hidden_size;
        let gain = |name: String| ck.tensor(&name, &[d]);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                Ok(CvmLayer {
                    input_layernorm: gain(format!("model.layers.{i}.input_layernorm.weight"))?,
                    post_attention_layernorm: gain(format!("model.layers.{i}.post_attention_layernorm.weight"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens: ck.weight_matrix(&[("model.embed_tokens.weight", c.vocab_size)], d, format)?,
            layers,
            norm: gain("model.norm.weight".into())?,
            tied_head: c.tie_word_embeddings,
        })
    }

    pub fn size_bytes(&self) -> usize {
        self.embed_tokens.size_bytes() + (2 * self.layers.len() + 1) * self.norm.len() * 4
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

fn load_layer(ck: &Checkpoint, i: usize, format: WeightFormat) -> Result<WorkerLayer> {
    let c = &ck.config;
    let d = c.hidden_size;
    let p = |n: &str| format!("model.layers.{i}.{n}.weight");
    let (q, k, v) = (p("self_attn.q_proj"), p("self_attn.k_proj"), p("self_attn.v_proj"));
    let (o, gate, up, down) = (p("self_attn.o_proj"), p("mlp.gate_proj"), p("mlp.up_proj"), p("mlp.down_proj"));
    Ok(WorkerLayer {
        self_attn: SelfAttn {
            qkv_proj: ck.weight_matrix(&[(&q, c.q_dim()), (&k, c.kv_dim()), (&v, c.kv_dim())], d, format)?,
            o_proj: ck.weight_matrix(&[(&o, d)], c.q_dim(), format)?,
        },
        mlp: Mlp {
            gate_up_proj: ck.weight_matrix(&[(&gate, c.intermediate_size), (&up, c.intermediate_size)], d, format)?,
            down_proj: ck.weight_matrix(&[(&down, d)], c.intermediate_size, format)?,
        },
    })
}
