//! A model checkpoint on disk: a GGUF file or an HF folder (config.json,
//! *.safetensors, tokenizer.json). Tensors are served by their HF names and
//! dequantized to f32; GGUF's Q/K row permutation is undone here.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

pub struct Checkpoint {
    pub config: LlamaConfig,
    pub tokenizer: Tokenizer,
    pub path: PathBuf,
    source: Source,
}

enum Source {
    Gguf(GgufFile),
    Hf(HfFolder),
}

struct HfFolder {
    files: Vec<(PathBuf, Mmap)>,
    /// tensor name -> index into `files`
    index: HashMap<String, usize>,
}

impl Checkpoint {
    /// Opens a `.gguf` file or an HF model folder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.is_dir() {
            let config = LlamaConfig::from_hf_json(&path.join("config.json"))?;
            let tokenizer = Tokenizer::from_file(&path.join("tokenizer.json"))?;
            let source = Source::Hf(HfFolder::open(&path)?);
            Ok(Self { config, tokenizer, path, source })
        } else {
            let g = GgufFile::open(&path)?;
            let config = LlamaConfig::from_gguf(&g)?;
            let tokenizer = Tokenizer::from_gguf(&g)?;
            Ok(Self { config, tokenizer, path, source: Source::Gguf(g) })
        }
    }

    pub fn has_tensor(&self, hf_name: &str) -> bool {
        match &self.source {
            Source::Gguf(g) => g.tensor(&gguf_name(hf_name)).is_some(),
            Source::Hf(h) => h.index.contains_key(hf_name),
        }
    }

    /// The tensor named as in HF checkpoints, as f32, with its shape checked.
    pub fn tensor(&self, hf_name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (shape, mut data) = match &self.source {
            Source::Gguf(g) => g.tensor_f32(&gguf_name(hf_name))?,
            Source::Hf(h) => h.tensor_f32(&self.path, hf_name)?,
        };
        if shape != expected {
            return Err(ModelError::Shape { path: self.path.clone(), tensor: hf_name.into(), got: shape, expected: expected.to_vec() });
        }
        if matches!(self.source, Source::Gguf(_)) {
            let c = &self.config;
            if hf_name.ends_with("self_attn.q_proj.weight") {
                data = unpermute_rope_rows(&data, c.num_attention_heads, c.head_dim, c.hidden_size);
            } else if hf_name.ends_with("self_attn.k_proj.weight") {
                data = unpermute_rope_rows(&data, c.num_key_value_heads, c.head_dim, c.hidden_size);
            }
        }
        Ok(data)
    }

    /// Identifies the exact weights: SHA-256 over the config and every
    /// tensor's name, shape, type and stored bytes. Both the CVM and the
    /// worker compute it from the file they loaded and compare at handshake.
    pub fn manifest_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&self.config).expect("config serializes"));
        match &self.source {
            Source::Gguf(g) => {
                for t in &g.tensors {
                    h.update(format!("{}:{:?}:{}\n", t.name, t.dims, t.type_code));
                }
                h.update(g.raw_data());
            }
            Source::Hf(f) => {
                for (p, m) in &f.files {
                    h.update(p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
                    h.update(&m[..]);
                }
            }
        }
        hex::encode(h.finalize())
    }

    /// The stored type of a tensor ("Q4_1", "BF16", …), for logs.
    pub fn stored_type(&self, hf_name: &str) -> Option<String> {
        match &self.source {
            Source::Gguf(g) => g.tensor_type_name(&gguf_name(hf_name)),
            Source::Hf(h) => {
                let (_, m) = &h.files[*h.index.get(hf_name)?];
                SafeTensors::deserialize(m).ok()?.tensor(hf_name).ok().map(|t| format!("{:?}", t.dtype()))
            }
        }
    }
}

/// Maps an HF tensor name to llama.cpp's GGUF name.
fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    if let Some(rest) = hf.strip_prefix("model.layers.") {
        if let Some((layer, part)) = rest.split_once('.') {
            let g = match part {
                "input_layernorm.weight" => "attn_norm.weight",
                "self_attn.q_proj.weight" => "attn_q.weight",
                "self_attn.k_proj.weight" => "attn_k.weight",
                "self_attn.v_proj.weight" => "attn_v.weight",
                "self_attn.o_proj.weight" => "attn_output.weight",
                "post_attention_layernorm.weight" => "ffn_norm.weight",
                "mlp.gate_proj.weight" => "ffn_gate.weight",
                "mlp.up_proj.weight" => "ffn_up.weight",
                "mlp.down_proj.weight" => "ffn_down.weight",
                other => other,
            };
            return format!("blk.{layer}.{g}");
        }
    }
    hf.to_string()
}

/// llama.cpp's converter reorders each head's rows from HF's rotate-half
/// layout (pairs i, i+hd/2) to interleaved pairs (2i, 2i+1); undo it.
pub fn unpermute_rope_rows(w: &[f32], n_heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * cols;
                let dst = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

impl HfFolder {
    fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let names: Vec<PathBuf> = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::corrupt(&index_path, 0, e.to_string()))?;
            let map = v["weight_map"].as_object().ok_or_else(|| ModelError::corrupt(&index_path, 0, "no weight_map"))?;
            let mut files: Vec<PathBuf> = map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
            files.sort();
            files.dedup();
            files
        } else {
            vec![dir.join("model.safetensors")]
        };
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for p in names {
            let f = File::open(&p).map_err(|e| ModelError::io(&p, e))?;
            // SAFETY: read-only map of a file we do not modify.
            let m = unsafe { Mmap::map(&f) }.map_err(|e| ModelError::io(&p, e))?;
            let st = SafeTensors::deserialize(&m).map_err(|e| ModelError::corrupt(&p, 0, e.to_string()))?;
            for name in st.names() {
                index.insert(name.to_string(), files.len());
            }
            drop(st);
            files.push((p, m));
        }
        Ok(Self { files, index })
    }

    fn tensor_f32(&self, dir: &Path, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let i = *self.index.get(name).ok_or_else(|| ModelError::MissingTensor { path: dir.into(), tensor: name.into() })?;
        let (p, m) = &self.files[i];
        let st = SafeTensors::deserialize(m).map_err(|e| ModelError::corrupt(p, 0, e.to_string()))?;
        let t = st.tensor(name).map_err(|e| ModelError::corrupt(p, 0, e.to_string()))?;
        let b = t.data();
        let data: Vec<f32> = match t.dtype() {
            Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => return Err(ModelError::UnsupportedTensorType { path: p.clone(), tensor: name.into(), ty: format!("{other:?}") }),
        };
        Ok((t.shape().to_vec(), data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2)
        let (heads, hd, cols) = (2, 4, 3);
        let hf: Vec<f32> = (0..heads * hd * cols).map(|v| v as f32).collect();
        let mut permuted = vec![0f32; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    let src = (h * hd + j * hd / 2 + i) * cols;
                    let dst = (h * hd + i * 2 + j) * cols;
                    permuted[dst..dst + cols].copy_from_slice(&hf[src..src + cols]);
                }
            }
        }
        assert_eq!(unpermute_rope_rows(&permuted, heads, hd, cols), hf);
    }

    #[test]
    fn gguf_names() {
        assert_eq!(gguf_name("model.layers.7.self_attn.o_proj.weight"), "blk.7.attn_output.weight");
        assert_eq!(gguf_name("model.embed_tokens.weight"), "token_embd.weight");
        assert_eq!(gguf_name("model.layers.0.mlp.down_proj.weight"), "blk.0.ffn_down.weight");
    }
}
