//! A model checkpoint on disk: a GGUF file, an HF folder (config.json,
//! *.safetensors, tokenizer.json), or a folder written by `split-model`
//! (`cvm.*` and `worker.*` bundles). Tensors are served by their HF names and
//! dequantized to f32; GGUF's Q/K row permutation is undone here.
//!
//! A checkpoint is opened for a `Role`. Opened for the CVM, no weight file is
//! mapped: the headers and the CVM's own tensors are read with positional
//! reads, and asking for a worker tensor is an error (docs/DESIGN.md §1, §8).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
pub(crate) use crate::part::Part;
use crate::progress::{Progress, Unit};
use crate::role::{is_cvm_tensor, worker_tensor_names, Role};
use crate::safetensors_file::SafetensorsFile;
use crate::storage::{Access, ReadCounter, ReadStats};
use crate::tokenizer::Tokenizer;
use talaria_kernels::{WeightDType, WeightFormat, WeightMatrix};

/// Metadata keys of split bundles (GGUF metadata; safetensors `__metadata__`).
pub const BUNDLE_KEY: &str = "talaria.bundle";
pub const WORKER_MANIFEST_KEY: &str = "talaria.worker_manifest_hash";
pub const TIED_KEY: &str = "talaria.tie_word_embeddings";

/// Files of a split folder (`split-model`).
pub const CVM_GGUF: &str = "cvm.gguf";
pub const WORKER_GGUF: &str = "worker.gguf";
pub const CVM_SAFETENSORS: &str = "cvm.safetensors";
pub const WORKER_SAFETENSORS: &str = "worker.safetensors";

pub struct Checkpoint {
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub path: PathBuf,
    role: Role,
    parts: Vec<Part>,
    counter: Arc<ReadCounter>,
    /// The worker manifest hash: set at open for the CVM (read from its
    /// bundle, or streamed from an unsplit file), else computed on first use.
    manifest: OnceLock<String>,
}

/// What a path holds.
enum Layout {
    GgufFile,
    HfFolder,
    SplitGguf,
    SplitHf,
}

impl Layout {
    fn of(path: &Path) -> Self {
        if !path.is_dir() {
            Layout::GgufFile
        } else if path.join(CVM_GGUF).exists() || path.join(WORKER_GGUF).exists() {
            Layout::SplitGguf
        } else if path.join(CVM_SAFETENSORS).exists() || path.join(WORKER_SAFETENSORS).exists() {
            Layout::SplitHf
        } else {
            Layout::HfFolder
        }
    }
}

impl Checkpoint {
    /// Opens a `.gguf` file, an HF model folder or a split folder with both
    /// halves (`Role::Both`: local mode, tests and tools).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_for(path, Role::Both)
    }

    /// Opens a checkpoint for one side of the split. `Role::Cvm` maps nothing
    /// and reads only the headers and the CVM's tensors; from a split folder
    /// it needs only `cvm.*`, `Role::Worker` only `worker.*`.
    pub fn open_for(path: impl AsRef<Path>, role: Role) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let counter = Arc::new(ReadCounter::default());
        let access = if role == Role::Cvm { Access::Positional } else { Access::Mapped };
        let layout = Layout::of(&path);
        let halves = |cvm: &str, worker: &str| -> Vec<PathBuf> {
            match role {
                Role::Cvm => vec![path.join(cvm)],
                Role::Worker => vec![path.join(worker)],
                Role::Both => vec![path.join(cvm), path.join(worker)],
            }
        };
        let (config, tokenizer, parts) = match layout {
            Layout::GgufFile | Layout::SplitGguf => {
                let files = if matches!(layout, Layout::GgufFile) { vec![path.clone()] } else { halves(CVM_GGUF, WORKER_GGUF) };
                let parts =
                    files.iter().map(|f| GgufFile::open_with(f, access, counter.clone()).map(Part::Gguf)).collect::<Result<Vec<_>>>()?;
                let Part::Gguf(first) = &parts[0] else { unreachable!("GGUF parts") };
                (ModelConfig::from_gguf(first)?, Tokenizer::from_gguf(first)?, parts)
            }
            Layout::HfFolder | Layout::SplitHf => {
                let config = ModelConfig::from_hf_json(&path.join("config.json"))?;
                let tokenizer = Tokenizer::from_file(&path.join("tokenizer.json"))?;
                let files =
                    if matches!(layout, Layout::HfFolder) { hf_shards(&path)? } else { halves(CVM_SAFETENSORS, WORKER_SAFETENSORS) };
                let parts = files
                    .iter()
                    .map(|f| SafetensorsFile::open(f, access, counter.clone()).map(Part::Safetensors))
                    .collect::<Result<Vec<_>>>()?;
                (config, tokenizer, parts)
            }
        };
        let ck = Self { config, tokenizer, path, role, parts, counter, manifest: OnceLock::new() };
        ck.check_bundles()?;
        match role {
            Role::Cvm => {
                // A CVM bundle carries the worker's hash; an unsplit file is
                // streamed through SHA-256 once (deployments use bundles).
                let hash = match ck.stored_worker_manifest() {
                    Some(h) => h,
                    None => ck.compute_worker_manifest()?,
                };
                ck.manifest.set(hash).expect("set once");
            }
            Role::Worker | Role::Both => {
                // Every worker tensor must be readable, so hashing the
                // mapped bytes later cannot fail.
                for name in worker_tensor_names(&ck.config) {
                    ck.part_of(&name)?.n_bytes(&name)?;
                }
                if let (Role::Both, Some(stored)) = (role, ck.stored_worker_manifest()) {
                    let computed = ck.compute_worker_manifest()?;
                    if computed != stored {
                        return Err(ModelError::Corrupt {
                            path: ck.path.clone(),
                            offset: 0,
                            what: format!("the CVM bundle names worker manifest {stored}, the worker bundle hashes to {computed}: bundles from different splits"),
                        });
                    }
                    ck.manifest.set(computed).expect("set once");
                }
            }
        }
        Ok(ck)
    }

    /// The side this checkpoint was opened for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Bytes read with positional reads so far (all zero when mapped).
    pub fn read_stats(&self) -> ReadStats {
        self.counter.stats()
    }

    pub fn has_tensor(&self, hf_name: &str) -> bool {
        self.allowed(hf_name).is_ok() && self.part_of(hf_name).is_ok()
    }

    /// The tensor named as in HF checkpoints, as f32, with its shape checked.
    pub fn tensor(&self, hf_name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        self.allowed(hf_name)?;
        let part = self.part_of(hf_name)?;
        let (shape, mut data) = part.tensor_f32(hf_name)?;
        if shape != expected {
            return Err(ModelError::Shape { path: part.path().into(), tensor: hf_name.into(), got: shape, expected: expected.to_vec() });
        }
        if let Some(heads) = self.rope_permuted_heads(part, hf_name) {
            data = unpermute_rope_rows(&data, heads, self.config.head_dim, expected[1]);
        }
        Ok(data)
    }

    /// A norm's gain as the forward pass multiplies by it: Gemma's HF
    /// checkpoints store `γ` for a `1 + γ` gain (added in f32, as HF does),
    /// its GGUFs store `1 + γ` itself (llama.cpp's converter adds the 1).
    pub fn norm_gain(&self, hf_name: &str, len: usize) -> Result<Vec<f32>> {
        let mut g = self.tensor(hf_name, &[len])?;
        let offset = self.config.family.norm_gain_offset();
        if offset != 0.0 && matches!(self.part_of(hf_name)?, Part::Safetensors(_)) {
            g.iter_mut().for_each(|v| *v += offset);
        }
        Ok(g)
    }

    /// A weight matrix made of the tensors `names` (each `rows × cols`,
    /// stacked in this order, as `q_proj | k_proj | v_proj`), held as
    /// `format` asks. `Stored` keeps the file's bytes when all the tensors
    /// share one stored type; a stack of Q4_0, Q5_0 and Q8_0 tensors (as
    /// llama.cpp's K-quant mixes write) is held as Q8_0 blocks of the same
    /// values; any other mix is held as exact f32 values (never a rounding).
    pub fn weight_matrix(&self, names: &[(&str, usize)], cols: usize, format: WeightFormat) -> Result<WeightMatrix> {
        let rows: usize = names.iter().map(|(_, r)| r).sum();
        if format == WeightFormat::Stored {
            let types: Vec<Option<WeightDType>> = names.iter().map(|(n, _)| self.part_of(n).ok().and_then(|p| p.stored_dtype(n))).collect();
            let corrupt = |what: String| ModelError::Corrupt { path: self.path.clone(), offset: 0, what: format!("{names:?}: {what}") };
            if let Some(dtype) = types[0].filter(|d| d.kernels_read() && types.iter().all(|t| *t == Some(*d))) {
                let mut bytes = Vec::new();
                for &(name, r) in names {
                    bytes.extend_from_slice(&self.stored_rows(name, r, cols, dtype)?);
                }
                return WeightMatrix::from_stored(rows, cols, dtype, &bytes).map_err(corrupt);
            }
            let as_q8_0 = |t: &Option<WeightDType>| matches!(t, Some(WeightDType::Q4_0 | WeightDType::Q5_0 | WeightDType::Q8_0));
            if types.iter().all(as_q8_0) {
                let mut bytes = Vec::new();
                for (&(name, r), dtype) in names.iter().zip(&types) {
                    let dtype = dtype.expect("checked above");
                    let stored = self.stored_rows(name, r, cols, dtype)?;
                    bytes.extend(talaria_kernels::weight::stored_as_q8_0(dtype, &stored).expect("a type that converts"));
                }
                return WeightMatrix::from_stored(rows, cols, WeightDType::Q8_0, &bytes).map_err(corrupt);
            }
            tracing::debug!("{names:?} are stored as {types:?} (a mix with no common block type): held as their exact f32 values");
        }
        let dtype = match format {
            WeightFormat::Stored => WeightDType::F32,
            WeightFormat::Convert(d) => d,
        };
        let mut values = Vec::with_capacity(rows * cols);
        for &(name, r) in names {
            values.extend(self.tensor(name, &[r, cols])?);
        }
        Ok(WeightMatrix::from_f32(rows, cols, values, dtype))
    }

    /// The stored bytes of a `rows × cols` tensor of `dtype`, shape checked,
    /// with GGUF's Q/K row permutation undone (whole rows move).
    fn stored_rows(&self, hf_name: &str, rows: usize, cols: usize, dtype: WeightDType) -> Result<Vec<u8>> {
        self.allowed(hf_name)?;
        let part = self.part_of(hf_name)?;
        let shape = part.shape(hf_name).unwrap_or_default();
        if shape != [rows, cols] {
            return Err(ModelError::Shape { path: part.path().into(), tensor: hf_name.into(), got: shape, expected: vec![rows, cols] });
        }
        let bytes = part.tensor_bytes(hf_name)?;
        let row_bytes = dtype.bytes_for(cols).ok_or_else(|| ModelError::Unsupported {
            path: part.path().into(),
            what: format!("{hf_name}: rows of {cols} values are not whole {} blocks", dtype.name()),
        })?;
        Ok(match self.rope_permuted_heads(part, hf_name) {
            Some(heads) => unpermute_rope_rows(&bytes, heads, self.config.head_dim, row_bytes),
            None => bytes.into_owned(),
        })
    }

    /// For GGUF's Q and K projections, the head count their rows are permuted by.
    fn rope_permuted_heads(&self, part: &Part, hf_name: &str) -> Option<usize> {
        // llama.cpp's converter permutes the Llama layout only; Qwen and
        // Gemma files keep HF's row order.
        if !matches!(part, Part::Gguf(g) if g.architecture() == "llama") {
            return None;
        }
        let c = &self.config;
        if hf_name.ends_with("self_attn.q_proj.weight") {
            Some(c.num_attention_heads)
        } else if hf_name.ends_with("self_attn.k_proj.weight") {
            Some(c.num_key_value_heads)
        } else {
            None
        }
    }

    /// The tensor's stored bytes, bit for bit (quantized blocks as stored,
    /// GGUF's Q/K row order as stored).
    pub fn tensor_bytes(&self, hf_name: &str) -> Result<Cow<'_, [u8]>> {
        self.allowed(hf_name)?;
        self.part_of(hf_name)?.tensor_bytes(hf_name)
    }

    /// Identifies the weights the worker serves, so the CVM can know it
    /// without their matrices: SHA-256 over the config and, per worker tensor
    /// in `worker_tensor_names` order, its name, stored type, shape and the
    /// SHA-256 of its stored bytes. Both ends compare it at the handshake
    /// (docs/DESIGN.md §5), and it is the same from every source:
    /// - the worker (or `Role::Both`) hashes the worker tensors it maps, from
    ///   an unsplit file or its `worker.*` bundle;
    /// - the CVM reads it from its `cvm.*` bundle, where `split-model` stored
    ///   it; deployments give the CVM a split bundle, so it never even
    ///   streams a worker tensor;
    /// - the CVM on an unsplit file streams each worker tensor once through
    ///   SHA-256 in 1 MiB chunks at open, holding none (`ReadStats::hashed_bytes`).
    pub fn manifest_hash(&self) -> String {
        self.manifest.get_or_init(|| self.compute_worker_manifest().expect("worker tensors were checked readable at open")).clone()
    }

    /// The stored type of a tensor ("Q4_1", "BF16", …), for logs.
    pub fn stored_type(&self, hf_name: &str) -> Option<String> {
        self.part_of(hf_name).ok()?.stored_type(hf_name)
    }

    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The CVM may not read a worker tensor, whatever its files hold.
    fn allowed(&self, hf_name: &str) -> Result<()> {
        if self.role == Role::Cvm && !is_cvm_tensor(&self.config, hf_name) {
            return Err(ModelError::NotForRole { path: self.path.clone(), tensor: hf_name.into(), role: self.role.name() });
        }
        Ok(())
    }

    fn part_of(&self, hf_name: &str) -> Result<&Part> {
        self.parts
            .iter()
            .find(|p| p.contains(hf_name))
            .ok_or_else(|| ModelError::MissingTensor { path: self.path.clone(), tensor: hf_name.into() })
    }

    /// The worker manifest hash a CVM bundle carries.
    fn stored_worker_manifest(&self) -> Option<String> {
        self.parts.iter().filter(|p| p.bundle().as_deref() == Some("cvm")).find_map(|p| p.meta_str(WORKER_MANIFEST_KEY))
    }

    /// A bundle opened for a role must be that role's bundle.
    fn check_bundles(&self) -> Result<()> {
        for p in &self.parts {
            let bundle = p.bundle();
            let wrong = matches!((self.role, bundle.as_deref()), (Role::Cvm, Some("worker")) | (Role::Worker, Some("cvm")));
            if wrong {
                return Err(ModelError::Unsupported {
                    path: p.path().into(),
                    what: format!("a {} bundle cannot be opened for the {} role", bundle.unwrap_or_default(), self.role.name()),
                });
            }
        }
        Ok(())
    }

    /// Streams each worker tensor through SHA-256 (bounded chunks when
    /// positional; nothing is kept).
    fn compute_worker_manifest(&self) -> Result<String> {
        let mut h = Sha256::new();
        h.update(b"talaria worker manifest v2\n");
        h.update(serde_json::to_vec(&self.config).expect("config serializes"));
        let names = worker_tensor_names(&self.config);
        let progress = Progress::new("hashing the worker's tensors", names.len() as u64, Unit::Items("tensors"));
        for name in names {
            let part = self.part_of(&name)?;
            let ty = part.stored_type(&name).unwrap_or_default();
            let shape = part.shape(&name).unwrap_or_default();
            h.update(format!("\n{name}:{ty}:{shape:?}:"));
            h.update(part.tensor_sha256(&name)?);
            progress.inc(1);
        }
        Ok(hex::encode(h.finalize()))
    }
}

/// The safetensors files of an HF folder (sharded through its index, or one).
fn hf_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.exists() {
        return Ok(vec![dir.join("model.safetensors")]);
    }
    let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::corrupt(&index_path, 0, e.to_string()))?;
    let map = v["weight_map"].as_object().ok_or_else(|| ModelError::corrupt(&index_path, 0, "no weight_map"))?;
    let mut files: Vec<PathBuf> = map.values().filter_map(|f| f.as_str()).map(|f| dir.join(f)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Maps an HF tensor name to llama.cpp's GGUF name in a file of
/// architecture `arch` (Gemma 3 files name their sandwich norms apart from
/// the Llama layout's `ffn_norm`).
pub(crate) fn gguf_name(hf: &str, arch: &str) -> String {
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
                "self_attn.q_proj.bias" => "attn_q.bias",
                "self_attn.k_proj.bias" => "attn_k.bias",
                "self_attn.v_proj.bias" => "attn_v.bias",
                "self_attn.q_norm.weight" => "attn_q_norm.weight",
                "self_attn.k_norm.weight" => "attn_k_norm.weight",
                "self_attn.o_proj.weight" => "attn_output.weight",
                "post_attention_layernorm.weight" if arch == "gemma3" => "post_attention_norm.weight",
                "post_attention_layernorm.weight" | "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
                "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
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
/// layout (pairs i, i+hd/2) to interleaved pairs (2i, 2i+1); undo it. A row
/// is `cols` items (values, or a quantized row's bytes).
pub fn unpermute_rope_rows<T: Copy + Default>(w: &[T], n_heads: usize, head_dim: usize, cols: usize) -> Vec<T> {
    let half = head_dim / 2;
    let mut out = vec![T::default(); w.len()];
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
        assert_eq!(gguf_name("model.layers.7.self_attn.o_proj.weight", "llama"), "blk.7.attn_output.weight");
        assert_eq!(gguf_name("model.embed_tokens.weight", "llama"), "token_embd.weight");
        assert_eq!(gguf_name("model.layers.0.mlp.down_proj.weight", "qwen2"), "blk.0.ffn_down.weight");
        assert_eq!(gguf_name("model.layers.3.post_attention_layernorm.weight", "llama"), "blk.3.ffn_norm.weight");
        assert_eq!(gguf_name("model.layers.3.post_attention_layernorm.weight", "gemma3"), "blk.3.post_attention_norm.weight");
        assert_eq!(gguf_name("model.layers.3.pre_feedforward_layernorm.weight", "gemma3"), "blk.3.ffn_norm.weight");
        assert_eq!(gguf_name("model.layers.1.self_attn.k_proj.bias", "qwen2"), "blk.1.attn_k.bias");
    }
}
