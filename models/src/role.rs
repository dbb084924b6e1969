//! Which side of the split opens a checkpoint, and which tensors each side
//! holds (docs/DESIGN.md §1). The lists here are the one definition the
//! loaders, the role checks, the manifest hash and `split-model` share.

use crate::config::LlamaConfig;

/// Who opens a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The trusted CVM: reads only its own tensors, never maps a weight file.
    Cvm,
    /// The untrusted worker: every weight matrix and the norm gains it folds.
    Worker,
    /// Both halves in one process (local mode, tests, tools).
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

/// The CVM's tensors (HF names): the embedding (also the head when tied) and,
/// for a tied head, the final norm gain (the CVM computes those logits).
pub fn cvm_tensor_names(c: &LlamaConfig) -> Vec<String> {
    let mut v = vec!["model.embed_tokens.weight".to_string()];
    if c.tie_word_embeddings {
        v.push("model.norm.weight".into());
    }
    v
}

/// The worker's tensors (HF names), in the fixed order of the manifest hash:
/// per layer its two norm gains and seven matrices, then, for an untied
/// head, the final norm gain and `lm_head`.
pub fn worker_tensor_names(c: &LlamaConfig) -> Vec<String> {
    const LAYER: [&str; 9] = [
        "input_layernorm",
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "post_attention_layernorm",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ];
    let mut v: Vec<String> = (0..c.num_hidden_layers).flat_map(|i| LAYER.map(|n| format!("model.layers.{i}.{n}.weight"))).collect();
    if !c.tie_word_embeddings {
        v.push("model.norm.weight".into());
        v.push("lm_head.weight".into());
    }
    v
}

/// Whether the CVM may hold this tensor.
pub fn is_cvm_tensor(c: &LlamaConfig, hf_name: &str) -> bool {
    hf_name == "model.embed_tokens.weight" || (c.tie_word_embeddings && hf_name == "model.norm.weight")
}
