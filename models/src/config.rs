//! The architecture parameters of a decoder-only model, read from an HF
//! `config.json` or from GGUF metadata. Field names follow HF. One type
//! covers every supported family; what differs between them (biases, q/k
//! norms, sandwich norms, activation, sliding windows, RoPE scaling) is a
//! field, and `Family` names the checkpoint layout.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
pub use talaria_kernels::cpu::Activation;

/// GGUF's per-frequency RoPE divisors (Llama 3 scaling), a CVM tensor.
pub const ROPE_FREQS: &str = "rope_freqs.weight";

/// The model families Talaria serves (HF `model_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama 1–3.x, SmolLM/SmolLM2.
    #[default]
    Llama,
    /// Mistral (Llama layout, optional sliding window).
    Mistral,
    /// Qwen2 / Qwen2.5: biases on q, k and v.
    Qwen2,
    /// Qwen3: per-head RMSNorm on q and k before RoPE.
    Qwen3,
    /// Gemma 3 text: scaled embedding, `(1 + γ)` norms, norms around both
    /// sublayers, q/k norms, GELU-tanh gating, local and global layers.
    Gemma3,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma3 => "gemma3",
        }
    }

    /// From HF `model_type` (or a GGUF `general.architecture`, which uses
    /// the same names except that Mistral GGUFs say "llama").
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "llama" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            "gemma3" | "gemma3_text" => Some(Family::Gemma3),
            _ => None,
        }
    }

    /// HF `architectures` entry of a causal LM of this family.
    fn from_architecture(a: &str) -> Option<Self> {
        match a {
            "LlamaForCausalLM" => Some(Family::Llama),
            "MistralForCausalLM" => Some(Family::Mistral),
            "Qwen2ForCausalLM" => Some(Family::Qwen2),
            "Qwen3ForCausalLM" => Some(Family::Qwen3),
            "Gemma3ForCausalLM" => Some(Family::Gemma3),
            _ => None,
        }
    }

    /// Gemma's norms scale by `1 + γ` where the others scale by `γ`.
    pub fn norm_gain_offset(self) -> f32 {
        if self == Family::Gemma3 {
            1.0
        } else {
            0.0
        }
    }
}

/// RoPE frequency scaling: each frequency `θ^(-2i/d)` is divided by a factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeScaling {
    /// Every frequency divided by `factor` (position interpolation).
    Linear { factor: f64 },
    /// Llama 3.1's piecewise scaling.
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
    /// One divisor per frequency, as GGUF stores Llama 3 scaling (`rope_freqs.weight`).
    Factors(Vec<f32>),
}

impl RopeScaling {
    /// The divisor of each of the `head_dim / 2` frequencies.
    pub fn divisors(&self, head_dim: usize, theta: f64) -> Vec<f64> {
        let half = head_dim / 2;
        match self {
            RopeScaling::Linear { factor } => vec![*factor; half],
            RopeScaling::Factors(f) => f.iter().map(|&v| v as f64).collect(),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => (0..half)
                .map(|i| {
                    let freq = theta.powf(-((2 * i) as f64) / head_dim as f64);
                    let wavelen = 2.0 * std::f64::consts::PI / freq;
                    let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
                    if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        *factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    }
                })
                .collect(),
        }
    }
}

/// Whether a layer attends to the whole context or a sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerAttention {
    Full,
    Sliding,
}

/// Fields past the Llama set default to "absent" when deserialized, so
/// records written before they existed still load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    #[serde(default)]
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub hidden_act: Activation,
    /// Biases on q, k and v (Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
    /// Per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3).
    #[serde(default)]
    pub qk_norm: bool,
    /// Norms after attention and after the MLP too (Gemma 3).
    #[serde(default)]
    pub sandwich_norms: bool,
    /// The embedding rows are multiplied by this (Gemma: √hidden_size).
    #[serde(default)]
    pub embedding_scale: Option<f32>,
    /// Attention scores are scaled by `query_pre_attn_scalar^-½` (Gemma)
    /// rather than `head_dim^-½`.
    #[serde(default)]
    pub query_pre_attn_scalar: Option<f32>,
    /// Positions a sliding-window layer sees (its own included).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Per layer, full or sliding attention.
    #[serde(default)]
    pub layer_types: Vec<LayerAttention>,
    /// RoPE base of the sliding layers when it differs (Gemma 3: 10⁴).
    #[serde(default)]
    pub rope_local_base_freq: Option<f32>,
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
    tie_word_embeddings: Option<bool>,
    rope_scaling: Option<serde_json::Value>,
    /// Transformers ≥ 5 writes `rope_theta` and the scaling here (Gemma 3:
    /// one entry per layer type).
    rope_parameters: Option<serde_json::Value>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
    attention_bias: Option<bool>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
    sliding_window_pattern: Option<usize>,
    rope_local_base_freq: Option<f32>,
    query_pre_attn_scalar: Option<f32>,
    final_logit_softcapping: Option<f32>,
    attn_logit_softcapping: Option<f32>,
}

impl ModelConfig {
    /// A Llama-layout config with `head_dim = hidden / heads` and default
    /// settings (tied head, ε 1e-5, θ 10⁴, 2048 positions): the base that
    /// tests and synthetic settings adjust.
    pub fn llama(vocab_size: usize, hidden_size: usize, intermediate_size: usize, layers: usize, heads: usize, kv_heads: usize) -> Self {
        Self {
            family: Family::Llama,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim: hidden_size / heads.max(1),
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 2048,
            tie_word_embeddings: true,
            hidden_act: Activation::Silu,
            attention_bias: false,
            qk_norm: false,
            sandwich_norms: false,
            embedding_scale: None,
            query_pre_attn_scalar: None,
            sliding_window: None,
            layer_types: vec![LayerAttention::Full; layers],
            rope_local_base_freq: None,
        }
    }

    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// The scale of attention scores.
    pub fn attention_scale(&self) -> f64 {
        1.0 / (self.query_pre_attn_scalar.map_or(self.head_dim as f64, |s| s as f64)).sqrt()
    }

    /// The window of `layer`, if it slides.
    pub fn window_of(&self, layer: usize) -> Option<usize> {
        match self.layer_types.get(layer) {
            Some(LayerAttention::Sliding) => self.sliding_window,
            _ => None,
        }
    }

    /// The RoPE base of `layer`.
    pub fn rope_theta_of(&self, layer: usize) -> f32 {
        match (self.layer_types.get(layer), self.rope_local_base_freq) {
            (Some(LayerAttention::Sliding), Some(local)) => local,
            _ => self.rope_theta,
        }
    }

    /// The scaling of `layer`'s RoPE frequencies (Gemma 3 scales its global
    /// layers only).
    pub fn rope_scaling_of(&self, layer: usize) -> Option<&RopeScaling> {
        match (self.layer_types.get(layer), self.rope_local_base_freq) {
            (Some(LayerAttention::Sliding), Some(_)) => None,
            _ => self.rope_scaling.as_ref(),
        }
    }

    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let bad = |what: String| ModelError::Config { path: path.into(), what };
        let unsupported = |what: String| ModelError::Unsupported { path: path.into(), what };
        let hf: HfConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let family = hf
            .model_type
            .as_deref()
            .and_then(Family::parse)
            .or_else(|| hf.architectures.iter().find_map(|a| Family::from_architecture(a)))
            .ok_or_else(|| {
                unsupported(format!(
                    "model_type {:?} / architectures {:?}: supported are llama, mistral, qwen2, qwen3 and gemma3 (text)",
                    hf.model_type, hf.architectures
                ))
            })?;
        if let Some(cap) = hf.final_logit_softcapping.or(hf.attn_logit_softcapping) {
            return Err(unsupported(format!("logit soft-capping ({cap}) is not implemented")));
        }
        if hf.mlp_bias.unwrap_or(false) || (family != Family::Qwen2 && hf.attention_bias.unwrap_or(false)) {
            return Err(unsupported("biases on o_proj or the MLP are not implemented".into()));
        }
        let gemma = family == Family::Gemma3;
        // (rope_theta, scaling) of the full layers, and the sliding layers' base.
        let (rope_theta, rope_scaling, local_theta) = match hf.rope_parameters.as_ref().filter(|v| !v.is_null()) {
            Some(rp) if rp.get("full_attention").is_some() => {
                let (theta, scaling) = parse_rope_parameters(&rp["full_attention"]).map_err(&unsupported)?;
                let local = rp.get("sliding_attention").map(parse_rope_parameters).transpose().map_err(&unsupported)?;
                if local.as_ref().is_some_and(|(_, s)| s.is_some()) {
                    return Err(unsupported("RoPE scaling on sliding layers is not implemented".into()));
                }
                (theta, scaling, local.and_then(|(t, _)| t))
            }
            Some(rp) => {
                let (theta, scaling) = parse_rope_parameters(rp).map_err(&unsupported)?;
                (theta, scaling, None)
            }
            None => {
                let scaling =
                    hf.rope_scaling.as_ref().filter(|v| !v.is_null()).map(parse_rope_scaling).transpose().map_err(&unsupported)?;
                (hf.rope_theta, scaling.flatten(), hf.rope_local_base_freq)
            }
        };
        let act = hf.hidden_activation.as_deref().or(hf.hidden_act.as_deref()).unwrap_or("silu");
        let hidden_act = match act {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" if family == Family::Gemma3 => Activation::GeluTanh,
            other => return Err(unsupported(format!("hidden_act {other}"))),
        };
        let heads = hf.num_attention_heads;
        let layers = hf.num_hidden_layers;
        let sliding_window = match family {
            // Qwen2's window is off unless `use_sliding_window`.
            Family::Qwen2 | Family::Qwen3 if !hf.use_sliding_window.unwrap_or(false) => None,
            _ => hf.sliding_window,
        };
        let layer_types = match (&hf.layer_types, sliding_window) {
            (_, None) => vec![LayerAttention::Full; layers],
            (Some(types), Some(_)) => types
                .iter()
                .map(|t| match t.as_str() {
                    "sliding_attention" => Ok(LayerAttention::Sliding),
                    "full_attention" => Ok(LayerAttention::Full),
                    other => Err(unsupported(format!("layer type {other}"))),
                })
                .collect::<Result<Vec<_>>>()?,
            (None, Some(_)) if gemma => {
                // Older Gemma 3 configs give a pattern: every n-th layer is global.
                let n = hf.sliding_window_pattern.unwrap_or(6).max(1);
                (0..layers).map(|i| if (i + 1) % n == 0 { LayerAttention::Full } else { LayerAttention::Sliding }).collect()
            }
            (None, Some(_)) => {
                // Qwen: layers from `max_window_layers` on slide; Mistral: all.
                let from = if matches!(family, Family::Qwen2 | Family::Qwen3) { hf.max_window_layers.unwrap_or(0) } else { 0 };
                (0..layers).map(|i| if i >= from { LayerAttention::Sliding } else { LayerAttention::Full }).collect()
            }
        };
        let cfg = Self {
            family,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / heads.max(1)),
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: hf.max_position_embeddings,
            // Gemma ties its head unless told otherwise; the others do not.
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(gemma),
            hidden_act,
            attention_bias: family == Family::Qwen2 || hf.attention_bias.unwrap_or(false),
            qk_norm: matches!(family, Family::Qwen3 | Family::Gemma3),
            sandwich_norms: gemma,
            embedding_scale: gemma.then(|| (hf.hidden_size as f32).sqrt()),
            query_pre_attn_scalar: if gemma { hf.query_pre_attn_scalar } else { None },
            sliding_window,
            layer_types,
            rope_local_base_freq: if gemma { Some(local_theta.unwrap_or(10_000.0)) } else { None },
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let path = g.path();
        let bad = |what: String| ModelError::Config { path: path.into(), what };
        let arch = g.meta("general.architecture").and_then(|v| v.as_str()).unwrap_or("");
        let family = Family::parse(arch).filter(|f| *f != Family::Mistral).ok_or_else(|| ModelError::Unsupported {
            path: path.into(),
            what: format!("general.architecture {arch:?}: supported are llama, qwen2, qwen3 and gemma3"),
        })?;
        let key = |k: &str| format!("{arch}.{k}");
        let int = |k: &str| g.meta(&key(k)).and_then(|v| v.as_u64()).map(|v| v as usize).ok_or_else(|| bad(format!("missing {}", key(k))));
        let float = |k: &str| g.meta(&key(k)).and_then(|v| v.as_f64());
        let heads = int("attention.head_count")?;
        let hidden = int("embedding_length")?;
        let layers = int("block_count")?;
        let vocab = match int("vocab_size") {
            Ok(v) => v,
            Err(_) => {
                g.meta("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map(|a| a.len()).ok_or_else(|| bad("no vocab size".into()))?
            }
        };
        let head_dim = int("attention.key_length").or_else(|_| int("rope.dimension_count")).unwrap_or(hidden / heads.max(1));
        let gemma = family == Family::Gemma3;
        let sliding_window = if gemma { int("attention.sliding_window").ok() } else { None };
        // llama.cpp: the pattern is one flag per layer (true: sliding), or
        // "every n-th layer is global" (6 when absent).
        let pattern = g.meta(&key("attention.sliding_window_pattern"));
        let layer_types = match (sliding_window, pattern.and_then(|v| v.as_array())) {
            (None, _) => vec![LayerAttention::Full; layers],
            (Some(_), Some(flags)) => flags
                .iter()
                .map(|f| match f.as_bool() {
                    Some(true) => Ok(LayerAttention::Sliding),
                    Some(false) => Ok(LayerAttention::Full),
                    None => Err(bad("sliding_window_pattern holds a non-boolean".into())),
                })
                .collect::<Result<Vec<_>>>()?,
            (Some(_), None) => {
                let n = pattern.and_then(|v| v.as_u64()).unwrap_or(6).max(1) as usize;
                (0..layers).map(|i| if (i + 1) % n == 0 { LayerAttention::Full } else { LayerAttention::Sliding }).collect()
            }
        };
        let rope_scaling = match g.tensor(ROPE_FREQS) {
            Some(_) => Some(RopeScaling::Factors(g.tensor_f32(ROPE_FREQS)?.1)),
            None => match g.meta(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
                None | Some("none") => None,
                Some("linear") => Some(RopeScaling::Linear { factor: float("rope.scaling.factor").unwrap_or(1.0) }),
                Some(other) => {
                    return Err(ModelError::Unsupported { path: path.into(), what: format!("rope scaling {other:?}") });
                }
            },
        };
        let cfg = Self {
            family,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: int("attention.head_count_kv").unwrap_or(heads),
            head_dim,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon").ok_or_else(|| bad("missing rms epsilon".into()))? as f32,
            rope_theta: float("rope.freq_base").unwrap_or(10_000.0) as f32,
            rope_scaling,
            max_position_embeddings: int("context_length")?,
            // A split bundle says so itself (its head may be in the other half).
            tie_word_embeddings: match g.meta(crate::checkpoint::TIED_KEY).and_then(|v| v.as_bool()) {
                Some(tied) => tied,
                None => g.tensor("output.weight").is_none(),
            },
            hidden_act: if gemma { Activation::GeluTanh } else { Activation::Silu },
            // From the architecture, as HF does (not from the tensors: each
            // half of a split bundle holds only its own).
            attention_bias: family == Family::Qwen2,
            qk_norm: matches!(family, Family::Qwen3 | Family::Gemma3),
            sandwich_norms: gemma,
            embedding_scale: gemma.then(|| (hidden as f32).sqrt()),
            // llama.cpp scales Gemma 3 scores by head_dim^-½ except for the 27B.
            query_pre_attn_scalar: None,
            sliding_window,
            layer_types,
            rope_local_base_freq: gemma.then(|| float("rope.freq_base_swa").unwrap_or(10_000.0) as f32),
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
        if self.layer_types.len() != self.num_hidden_layers {
            return Err(format!("{} layer types for {} layers", self.layer_types.len(), self.num_hidden_layers));
        }
        if self.sliding_window == Some(0) {
            return Err("sliding_window is 0".into());
        }
        if let Some(RopeScaling::Factors(f)) = &self.rope_scaling {
            if f.len() != self.head_dim / 2 || f.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                return Err(format!("rope_freqs holds {} factors (need {} positive ones)", f.len(), self.head_dim / 2));
            }
        }
        Ok(())
    }
}

/// HF `rope_scaling` (`rope_type`, or the older `type`); `None` for the
/// default (unscaled) RoPE.
fn parse_rope_scaling(v: &serde_json::Value) -> std::result::Result<Option<RopeScaling>, String> {
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("");
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).ok_or_else(|| format!("rope_scaling {kind}: missing {k}"));
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: num("factor")? })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        })),
        _ => Err(format!("rope_scaling {v} is not implemented (supported: linear, llama3)")),
    }
}

/// Transformers 5's `rope_parameters`: the base and the scaling in one object.
fn parse_rope_parameters(v: &serde_json::Value) -> std::result::Result<(Option<f32>, Option<RopeScaling>), String> {
    let theta = v.get("rope_theta").and_then(|t| t.as_f64()).map(|t| t as f32);
    let scaled = v.get("rope_type").or_else(|| v.get("type")).is_some();
    Ok((theta, if scaled { parse_rope_scaling(v)? } else { None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_divisors_follow_the_three_bands() {
        let s = RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192.0 };
        let d = s.divisors(128, 500_000.0);
        assert_eq!(d.len(), 64);
        assert_eq!(d[0], 1.0, "highest frequency unscaled");
        assert_eq!(d[63], 8.0, "lowest frequency divided by the factor");
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "monotone between the bands");
    }
}
