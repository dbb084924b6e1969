//! Which side of the split opens a checkpoint, and which tensors each side
//! holds (docs/DESIGN.md §1). The lists here are the one definition the
//! loaders, the role checks, the manifest hash and `split-model` share.

use crate::config::LlamaConfig;

/// Who opens a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The trusted CVM: reads only its own tensors, never maps a weight file.
    Cvm,
    /// The untrusted worker: every weight matrix.
    Worker,
    /// Both halves in one process (local mode, tests and tools).
    Both,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Cvm => "cvm",
            Role::Worker => "worker",
            Role::Both => "both",
        }
    }
}

/// The per-layer norm gains, applied by the CVM to the normed rows before
/// they are masked (the matrices stay as stored, so no gain is folded in).
const LAYER_NORMS: [&str; 2] = ["input_layernorm", "post_attention_layernorm"];

/// The per-layer matrices the worker multiplies by.
const LAYER_MATRICES: [&str; 7] =
    ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

/// The CVM's tensors (HF names): the embedding (also the head when tied),
/// every norm gain (small vectors the weight-free half applies) and the
/// final norm.
pub fn cvm_tensor_names(c: &LlamaConfig) -> Vec<String> {
    let mut v = vec!["model.embed_tokens.weight".to_string()];
    v.extend((0..c.num_hidden_layers).flat_map(|i| LAYER_NORMS.map(|n| format!("model.layers.{i}.{n}.weight"))));
    v.push("model.norm.weight".into());
    v
}

/// The worker's tensors (HF names), in the fixed order of the manifest hash:
/// per layer its seven matrices, then, for an untied head, `lm_head`.
pub fn worker_tensor_names(c: &LlamaConfig) -> Vec<String> {
    let mut v: Vec<String> =
        (0..c.num_hidden_layers).flat_map(|i| LAYER_MATRICES.map(|n| format!("model.layers.{i}.{n}.weight"))).collect();
    if !c.tie_word_embeddings {
        v.push("lm_head.weight".into());
    }
    v
}

/// Whether the CVM may hold this tensor.
pub fn is_cvm_tensor(c: &LlamaConfig, hf_name: &str) -> bool {
    cvm_tensor_names(c).iter().any(|n| n == hf_name)
}
