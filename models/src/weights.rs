//! The model's weights split the way Talaria deploys them (docs/DESIGN.md §1):
//! `CvmWeights` (the embedding, every norm gain and the final norm) and
//! `WorkerWeights` (every weight matrix, as the file stores it by default).

use talaria_kernels::{WeightFormat, WeightMatrix};

use crate::checkpoint::Checkpoint;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::op::{Op, OpId};

/// One decoder layer's vectors (`model.layers.N.*`), as multiplicative
/// gains (Gemma's `1 + γ` already added).
pub struct CvmLayer {
    pub input_layernorm: Vec<f32>,
    /// Before the MLP, or (with sandwich norms) on the attention output.
    pub post_attention_layernorm: Vec<f32>,
    /// Sandwich norms (Gemma 3): before the MLP, and on its output.
    pub pre_feedforward_layernorm: Option<Vec<f32>>,
    pub post_feedforward_layernorm: Option<Vec<f32>>,
    pub self_attn: CvmAttn,
}

impl CvmLayer {
    /// The gain of the norm in front of the MLP.
    pub fn mlp_input_norm(&self) -> &[f32] {
        self.pre_feedforward_layernorm.as_deref().unwrap_or(&self.post_attention_layernorm)
    }

    /// The gain of the norm on the attention output (sandwich norms only).
    pub fn attention_output_norm(&self) -> Option<&[f32]> {
        self.pre_feedforward_layernorm.as_ref().map(|_| self.post_attention_layernorm.as_slice())
    }

    fn size_bytes(&self) -> usize {
        let a = &self.self_attn;
        let opt = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, Vec::len);
        4 * (self.input_layernorm.len()
            + self.post_attention_layernorm.len()
            + opt(&self.pre_feedforward_layernorm)
            + opt(&self.post_feedforward_layernorm)
            + opt(&a.q_norm)
            + opt(&a.k_norm)
            + opt(&a.qkv_bias))
    }
}

/// The attention's vectors the CVM applies around the worker's products.
pub struct CvmAttn {
    /// Per-head RMSNorm gains of q and k (`head_dim` each).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// `q_proj.bias | k_proj.bias | v_proj.bias`, added to the unmasked
    /// fused product.
    pub qkv_bias: Option<Vec<f32>>,
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
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = |n: &str| format!("model.layers.{i}.{n}");
                let gain = |n: &str, len: usize| ck.norm_gain(&p(n), len);
                let sandwich = |n: &str| c.sandwich_norms.then(|| gain(n, d)).transpose();
                let qk = |n: &str| c.qk_norm.then(|| gain(n, c.head_dim)).transpose();
                let qkv_bias = if c.attention_bias {
                    let mut b = ck.tensor(&p("self_attn.q_proj.bias"), &[c.q_dim()])?;
                    b.extend(ck.tensor(&p("self_attn.k_proj.bias"), &[c.kv_dim()])?);
                    b.extend(ck.tensor(&p("self_attn.v_proj.bias"), &[c.kv_dim()])?);
                    Some(b)
                } else {
                    None
                };
                Ok(CvmLayer {
                    input_layernorm: gain("input_layernorm.weight", d)?,
                    post_attention_layernorm: gain("post_attention_layernorm.weight", d)?,
                    pre_feedforward_layernorm: sandwich("pre_feedforward_layernorm.weight")?,
                    post_feedforward_layernorm: sandwich("post_feedforward_layernorm.weight")?,
                    self_attn: CvmAttn { q_norm: qk("self_attn.q_norm.weight")?, k_norm: qk("self_attn.k_norm.weight")?, qkv_bias },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens: ck.weight_matrix(&[("model.embed_tokens.weight", c.vocab_size)], d, format)?,
            layers,
            norm: ck.norm_gain("model.norm.weight", d)?,
            tied_head: c.tie_word_embeddings,
        })
    }

    pub fn size_bytes(&self) -> usize {
        self.embed_tokens.size_bytes() + self.layers.iter().map(CvmLayer::size_bytes).sum::<usize>() + self.norm.len() * 4
    }
}

/// The output dimension of each op.
pub fn op_dims(c: &ModelConfig, op: Op) -> (usize, usize) {
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
