//! One weight file of a checkpoint (GGUF or safetensors), addressed by HF
//! tensor names: the seam `Checkpoint` and `split` read tensors through.

use std::borrow::Cow;
use std::path::Path;

use crate::checkpoint::{gguf_name, BUNDLE_KEY};
use crate::error::{ModelError, Result};
use crate::gguf::{code_name, dtype_of_code, GgufFile};
use crate::safetensors_file::{dtype_of, SafetensorsFile};
use talaria_kernels::WeightDType;

/// One weight file of a checkpoint.
pub(crate) enum Part {
    Gguf(GgufFile),
    Safetensors(SafetensorsFile),
}

impl Part {
    pub(crate) fn path(&self) -> &Path {
        match self {
            Part::Gguf(g) => g.path(),
            Part::Safetensors(s) => s.path(),
        }
    }

    pub(crate) fn contains(&self, hf_name: &str) -> bool {
        match self {
            Part::Gguf(g) => g.tensor(&gguf_name(hf_name, g.architecture())).is_some(),
            Part::Safetensors(s) => s.tensors.contains_key(hf_name),
        }
    }

    pub(crate) fn tensor_f32(&self, hf_name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        match self {
            Part::Gguf(g) => g.tensor_f32(&gguf_name(hf_name, g.architecture())),
            Part::Safetensors(s) => s.tensor_f32(hf_name),
        }
    }

    pub(crate) fn tensor_bytes(&self, hf_name: &str) -> Result<Cow<'_, [u8]>> {
        match self {
            Part::Gguf(g) => g.tensor_bytes(&gguf_name(hf_name, g.architecture())),
            Part::Safetensors(s) => s.tensor_bytes(hf_name),
        }
    }

    pub(crate) fn tensor_sha256(&self, hf_name: &str) -> Result<[u8; 32]> {
        match self {
            Part::Gguf(g) => g.tensor_sha256(&gguf_name(hf_name, g.architecture())),
            Part::Safetensors(s) => s.tensor_sha256(hf_name),
        }
    }

    /// Stored size; an error for a tensor this build cannot read.
    pub(crate) fn n_bytes(&self, hf_name: &str) -> Result<u64> {
        let missing = || ModelError::MissingTensor { path: self.path().into(), tensor: hf_name.into() };
        match self {
            Part::Gguf(g) => {
                let t = g.tensor(&gguf_name(hf_name, g.architecture())).ok_or_else(missing)?;
                t.n_bytes().map(|n| n as u64).ok_or_else(|| ModelError::UnsupportedTensorType {
                    path: self.path().into(),
                    tensor: hf_name.into(),
                    ty: code_name(t.type_code),
                })
            }
            Part::Safetensors(s) => s.tensors.get(hf_name).map(|t| (t.data_offsets.1 - t.data_offsets.0) as u64).ok_or_else(missing),
        }
    }

    /// The element type the tensor is stored in, if this build reads it.
    pub(crate) fn stored_dtype(&self, hf_name: &str) -> Option<WeightDType> {
        match self {
            Part::Gguf(g) => g.tensor(&gguf_name(hf_name, g.architecture())).and_then(|t| dtype_of_code(t.type_code)),
            Part::Safetensors(s) => dtype_of(s.tensors.get(hf_name)?.dtype),
        }
    }

    pub(crate) fn stored_type(&self, hf_name: &str) -> Option<String> {
        match self {
            Part::Gguf(g) => g.tensor_type_name(&gguf_name(hf_name, g.architecture())),
            Part::Safetensors(s) => s.tensors.get(hf_name).map(|t| format!("{:?}", t.dtype)),
        }
    }

    /// Shape in PyTorch order.
    pub(crate) fn shape(&self, hf_name: &str) -> Option<Vec<usize>> {
        match self {
            Part::Gguf(g) => g.tensor(&gguf_name(hf_name, g.architecture())).map(|t| t.shape()),
            Part::Safetensors(s) => s.tensors.get(hf_name).map(|t| t.shape.clone()),
        }
    }

    pub(crate) fn meta_str(&self, key: &str) -> Option<String> {
        match self {
            Part::Gguf(g) => g.meta(key).and_then(|v| v.as_str()).map(str::to_owned),
            Part::Safetensors(s) => s.metadata.get(key).cloned(),
        }
    }

    /// "cvm" or "worker" for a split bundle.
    pub(crate) fn bundle(&self) -> Option<String> {
        self.meta_str(BUNDLE_KEY)
    }
}
