//! `split-model`: writes a checkpoint as two bundles, so the CVM's machine
//! never holds the worker's matrices, not even on disk (docs/DESIGN.md §1, §8):
//!
//! - `cvm.gguf` (or `cvm.safetensors` for HF input): the CVM's tensors
//!   (`cvm_tensor_names`) and all metadata (config, tokenizer, chat
//!   template), plus the worker manifest hash it checks at the handshake;
//! - `worker.gguf` / `worker.safetensors`: every other tensor, and the same
//!   metadata;
//! - `manifest.json`: each bundle's file SHA-256 and the worker manifest hash.
//!
//! HF input also gets its `config.json`, `tokenizer.json` (and the small
//! tokenizer / generation JSON files) copied next to the bundles. Tensor bytes
//! are copied as stored (quantized blocks bit for bit).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::{
    gguf_name, Checkpoint, Part, BUNDLE_KEY, CVM_GGUF, CVM_SAFETENSORS, TIED_KEY, WORKER_GGUF, WORKER_MANIFEST_KEY, WORKER_SAFETENSORS,
};
use crate::config::ROPE_FREQS;
use crate::error::{ModelError, Result};
use crate::gguf::{write_gguf, GgufFile, GgufTensorOut, GgufValue};
use crate::role::{cvm_tensor_names, is_cvm_tensor, Role};

/// `manifest.json` of a split folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// "talaria-split-v1".
    pub format: String,
    /// "gguf" or "safetensors".
    pub weights: String,
    /// `Checkpoint::manifest_hash()` of the model (the worker's identity).
    pub worker_manifest_hash: String,
    pub cvm: BundleFile,
    pub worker: BundleFile,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleFile {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub tensors: usize,
}

pub const SPLIT_FORMAT: &str = "talaria-split-v1";
pub const MANIFEST_FILE: &str = "manifest.json";
/// Small files of an HF folder both halves need (config and tokenizer).
const HF_SIDE_FILES: [&str; 5] =
    ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

/// Splits the GGUF file or HF folder `src` into `out` (created if absent).
pub fn split_model(src: &Path, out: &Path) -> Result<SplitManifest> {
    let ck = Checkpoint::open_for(src, Role::Both)?;
    if ck.parts().iter().any(|p| p.bundle().is_some()) {
        return Err(ModelError::Unsupported { path: src.into(), what: "already split (give the original model)".into() });
    }
    let hash = ck.manifest_hash();
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let (weights, ((cvm_file, cvm_n), (worker_file, worker_n))) = match ck.parts() {
        [Part::Gguf(g)] => ("gguf", write_gguf_bundles(&ck, g, out, &hash)?),
        parts if parts.iter().all(|p| matches!(p, Part::Safetensors(_))) => {
            for f in HF_SIDE_FILES {
                let from = src.join(f);
                if from.exists() {
                    std::fs::copy(&from, out.join(f)).map_err(|e| ModelError::io(&from, e))?;
                }
            }
            ("safetensors", write_safetensors_bundles(&ck, out, &hash)?)
        }
        _ => return Err(ModelError::Unsupported { path: src.into(), what: "mixed or multi-file GGUF checkpoints cannot be split".into() }),
    };
    let manifest = SplitManifest {
        format: SPLIT_FORMAT.into(),
        weights: weights.into(),
        worker_manifest_hash: hash,
        cvm: bundle_file(out, cvm_file, cvm_n)?,
        worker: bundle_file(out, worker_file, worker_n)?,
    };
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    write_then_rename(&out.join(MANIFEST_FILE), |p| std::fs::write(p, &text).map_err(|e| ModelError::io(p, e)))?;
    Ok(manifest)
}

/// Reads `DIR/manifest.json`.
pub fn read_split_manifest(dir: &Path) -> Result<SplitManifest> {
    let p = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&p).map_err(|e| ModelError::io(&p, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::corrupt(&p, 0, e.to_string()))
}

type Written = ((&'static str, usize), (&'static str, usize));

fn write_gguf_bundles(ck: &Checkpoint, g: &GgufFile, out: &Path, hash: &str) -> Result<Written> {
    let cvm_names: Vec<String> = cvm_tensor_names(&ck.config).iter().map(|n| gguf_name(n, g.architecture())).collect();
    let bytes = g.tensors.iter().map(|t| g.tensor_bytes(&t.name)).collect::<Result<Vec<_>>>()?;
    let (mut cvm, mut worker) = (Vec::new(), Vec::new());
    for (t, b) in g.tensors.iter().zip(&bytes) {
        let o = || GgufTensorOut { name: t.name.clone(), dims: t.dims.clone(), type_code: t.type_code, bytes: b };
        // The RoPE divisors are part of the config both halves hash.
        if t.name == ROPE_FREQS {
            worker.push(o());
        }
        if cvm_names.contains(&t.name) {
            cvm.push(o())
        } else {
            worker.push(o())
        }
    }
    let meta = |bundle: &str| -> Vec<(String, GgufValue)> {
        let mut m: Vec<(String, GgufValue)> =
            g.metadata.iter().filter(|(k, _)| !k.starts_with("talaria.")).map(|(k, v)| (k.clone(), v.clone())).collect();
        m.push((BUNDLE_KEY.into(), GgufValue::String(bundle.into())));
        m.push((TIED_KEY.into(), GgufValue::Bool(ck.config.tie_word_embeddings)));
        m.push((WORKER_MANIFEST_KEY.into(), GgufValue::String(hash.into())));
        m
    };
    write_then_rename(&out.join(CVM_GGUF), |p| write_gguf(p, &meta("cvm"), &cvm))?;
    write_then_rename(&out.join(WORKER_GGUF), |p| write_gguf(p, &meta("worker"), &worker))?;
    Ok(((CVM_GGUF, cvm.len()), (WORKER_GGUF, worker.len())))
}

fn write_safetensors_bundles(ck: &Checkpoint, out: &Path, hash: &str) -> Result<Written> {
    let (mut cvm, mut worker) = (Vec::new(), Vec::new());
    for part in ck.parts() {
        let Part::Safetensors(s) = part else { unreachable!("checked by the caller") };
        for (name, info) in &s.tensors {
            let bytes = s.tensor_bytes(name)?;
            let bytes = match bytes {
                std::borrow::Cow::Borrowed(b) => b,
                std::borrow::Cow::Owned(_) => unreachable!("opened mapped"),
            };
            let view = TensorView::new(info.dtype, info.shape.clone(), bytes)
                .map_err(|e| ModelError::corrupt(s.path(), 0, format!("tensor {name}: {e:?}")))?;
            if is_cvm_tensor(&ck.config, name) {
                cvm.push((name.clone(), view))
            } else {
                worker.push((name.clone(), view))
            }
        }
    }
    let (n_cvm, n_worker) = (cvm.len(), worker.len());
    let meta = |bundle: &str| {
        Some(HashMap::from([
            ("format".to_string(), "pt".to_string()),
            (BUNDLE_KEY.to_string(), bundle.to_string()),
            (WORKER_MANIFEST_KEY.to_string(), hash.to_string()),
        ]))
    };
    let write = |views: Vec<(String, TensorView<'_>)>, bundle: &str, path: &Path| {
        write_then_rename(path, |p| {
            safetensors::serialize_to_file(views, &meta(bundle), p).map_err(|e| ModelError::io(p, std::io::Error::other(format!("{e:?}"))))
        })
    };
    write(cvm, "cvm", &out.join(CVM_SAFETENSORS))?;
    write(worker, "worker", &out.join(WORKER_SAFETENSORS))?;
    Ok(((CVM_SAFETENSORS, n_cvm), (WORKER_SAFETENSORS, n_worker)))
}

/// Writes to `PATH.partial`, then renames: a reader never sees half a file.
fn write_then_rename(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    write(&partial)?;
    std::fs::rename(&partial, path).map_err(|e| ModelError::io(path, e))
}

fn bundle_file(dir: &Path, file: &str, tensors: usize) -> Result<BundleFile> {
    let p = dir.join(file);
    let mut f = File::open(&p).map_err(|e| ModelError::io(&p, e))?;
    let mut h = Sha256::new();
    let bytes = std::io::copy(&mut f, &mut h).map_err(|e| ModelError::io(&p, e))?;
    Ok(BundleFile { file: file.into(), sha256: hex::encode(h.finalize()), bytes, tensors })
}
