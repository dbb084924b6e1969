//! Which side of the split opens a checkpoint, and which tensors each side
//! holds (docs/DESIGN.md §1). The lists here are the one definition the
//! loaders, the role checks, the manifest hash and `split-model` share.

use crate::config::{ModelConfig, RopeScaling, ROPE_FREQS};

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

/// The per-layer vectors the CVM applies (docs/DESIGN.md §1): the norm
/// gains around each sublayer (applied to the normed rows before they are
/// masked), biases added to unmasked products, and per-head q/k norms. The
/// matrices stay as stored, so nothing is folded into them.
fn layer_vectors(c: &ModelConfig) -> Vec<&'static str> {
    let mut v = vec!["input_layernorm.weight", "post_attention_layernorm.weight"];
    if c.sandwich_norms {
        v.extend(["pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"]);
    }
    if c.attention_bias {
        v.extend(["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"]);
    }
    if c.qk_norm {
        v.extend(["self_attn.q_norm.weight", "self_attn.k_norm.weight"]);
    }
    v
}

/// The per-layer matrices the worker multiplies by.
const LAYER_MATRICES: [&str; 7] =
    ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

/// The CVM's tensors (HF names): the embedding (also the head when tied),
/// every layer's vectors (`layer_vectors`), the final norm and, for GGUF's
/// Llama 3 scaling, the RoPE divisors.
pub fn cvm_tensor_names(c: &ModelConfig) -> Vec<String> {
    let mut v = vec!["model.embed_tokens.weight".to_string()];
    let per_layer = layer_vectors(c);
    v.extend((0..c.num_hidden_layers).flat_map(|i| per_layer.iter().map(move |n| format!("model.layers.{i}.{n}"))));
    v.push("model.norm.weight".into());
    if matches!(c.rope_scaling, Some(RopeScaling::Factors(_))) {
        v.push(ROPE_FREQS.into());
    }
    v
}

/// The worker's tensors (HF names), in the fixed order of the manifest hash:
/// per layer its seven matrices, then, for an untied head, `lm_head`.
pub fn worker_tensor_names(c: &ModelConfig) -> Vec<String> {
    let mut v: Vec<String> =
        (0..c.num_hidden_layers).flat_map(|i| LAYER_MATRICES.map(|n| format!("model.layers.{i}.{n}.weight"))).collect();
    if !c.tie_word_embeddings {
        v.push("lm_head.weight".into());
    }
    v
}

/// Whether the CVM may hold this tensor.
pub fn is_cvm_tensor(c: &ModelConfig, hf_name: &str) -> bool {
    cvm_tensor_names(c).iter().any(|n| n == hf_name)
}
