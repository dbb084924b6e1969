//! The architecture parameters of a Llama-family model, read from an HF
//! `config.json` or from GGUF metadata. Field names follow HF.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

/// The subset of HF's config.json we read; unknown fields are ignored.
#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f32,
    rope_theta: Option<f32>,
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    rope_scaling: Option<serde_json::Value>,
    hidden_act: Option<String>,
}

impl LlamaConfig {
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let bad = |what: String| ModelError::Config { path: path.into(), what };
        let hf: HfConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let is_llama = hf.model_type.as_deref() == Some("llama") || hf.architectures.iter().any(|a| a == "LlamaForCausalLM");
        if !is_llama {
            return Err(ModelError::Unsupported {
                path: path.into(),
                what: format!(
                    "model_type {:?} / architectures {:?}: only Llama-family models are supported",
                    hf.model_type, hf.architectures
                ),
            });
        }
        if let Some(s) = hf.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            return Err(ModelError::Unsupported { path: path.into(), what: format!("rope_scaling {s} is not implemented") });
        }
        if let Some(act) = hf.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(ModelError::Unsupported { path: path.into(), what: format!("hidden_act {act}") });
        }
        let heads = hf.num_attention_heads;
        let cfg = Self {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / heads.max(1)),
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta.unwrap_or(10_000.0),
            max_position_embeddings: hf.max_position_embeddings,
            tie_word_embeddings: hf.tie_word_embeddings,
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let path = g.path();
        let bad = |what: String| ModelError::Config { path: path.into(), what };
        let arch = g.meta("general.architecture").and_then(|v| v.as_str()).unwrap_or("");
        if arch != "llama" {
            return Err(ModelError::Unsupported {
                path: path.into(),
                what: format!("general.architecture {arch:?}: only llama is supported"),
            });
        }
        let int = |k: &str| {
            g.meta(&format!("llama.{k}")).and_then(|v| v.as_u64()).map(|v| v as usize).ok_or_else(|| bad(format!("missing llama.{k}")))
        };
        let heads = int("attention.head_count")?;
        let hidden = int("embedding_length")?;
        let vocab = match int("vocab_size") {
            Ok(v) => v,
            Err(_) => {
                g.meta("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map(|a| a.len()).ok_or_else(|| bad("no vocab size".into()))?
            }
        };
        let cfg = Self {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: int("attention.head_count_kv").unwrap_or(heads),
            head_dim: int("rope.dimension_count").unwrap_or(hidden / heads.max(1)),
            rms_norm_eps: g
                .meta("llama.attention.layer_norm_rms_epsilon")
                .and_then(|v| v.as_f64())
                .ok_or_else(|| bad("missing rms epsilon".into()))? as f32,
            rope_theta: g.meta("llama.rope.freq_base").and_then(|v| v.as_f64()).unwrap_or(10_000.0) as f32,
            max_position_embeddings: int("context_length")?,
            // A split bundle says so itself (its head may be in the other half).
            tie_word_embeddings: match g.meta(crate::checkpoint::TIED_KEY).and_then(|v| v.as_bool()) {
                Some(tied) => tied,
                None => g.tensor("output.weight").is_none(),
            },
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((k, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{k} is 0"));
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Err(format!("{} attention heads not divisible by {} KV heads", self.num_attention_heads, self.num_key_value_heads));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} is odd", self.head_dim));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return Err("rms_norm_eps and rope_theta must be positive".into());
        }
        Ok(())
    }
}
