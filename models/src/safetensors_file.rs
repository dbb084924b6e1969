//! One `.safetensors` file read through a `StoredFile`: the header (8-byte
//! length, then JSON) is parsed on its own, so positional access reads only
//! the header and the tensors asked for. The `safetensors` crate parses the
//! JSON; offsets and sizes are checked here against the file size.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;
use talaria_kernels::weight::dequantize_stored;
use talaria_kernels::WeightDType;

use crate::error::{ModelError, Result};
use crate::storage::{Access, Purpose, ReadCounter, StoredFile};

/// The safetensors crate's own limit on the header.
const MAX_HEADER: u64 = 100_000_000;

pub(crate) struct SafetensorsFile {
    file: StoredFile,
    data_start: u64,
    pub(crate) tensors: HashMap<String, TensorInfo>,
    /// The `__metadata__` strings.
    pub(crate) metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    pub(crate) fn open(path: &Path, access: Access, counter: Arc<ReadCounter>) -> Result<Self> {
        let file = StoredFile::open(path, access, counter)?;
        let n = u64::from_le_bytes(file.read(0, 8, Purpose::Header, "the header length")?.as_ref().try_into().expect("8 bytes"));
        if n > MAX_HEADER {
            return Err(ModelError::corrupt(path, 0, format!("header length {n} is implausible")));
        }
        let header = file.read(8, n, Purpose::Header, "the header")?;
        let text = std::str::from_utf8(&header).map_err(|_| ModelError::corrupt(path, 8, "header is not UTF-8"))?;
        let meta: Metadata = serde_json::from_str(text).map_err(|e| ModelError::corrupt(path, 8, format!("header: {e}")))?;
        let data_start = 8 + n;
        let tensors: HashMap<String, TensorInfo> = meta.tensors().into_iter().map(|(k, v)| (k, v.clone())).collect();
        for (name, t) in &tensors {
            let (s, e) = t.data_offsets;
            let elems = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if e < s || elems.and_then(|n| n.checked_mul(t.dtype.size())) != Some(e - s) {
                return Err(ModelError::corrupt(
                    path,
                    data_start,
                    format!("tensor {name}: offsets {s}..{e} do not fit {:?} {:?}", t.dtype, t.shape),
                ));
            }
            let end = data_start.checked_add(e as u64);
            if end.is_none_or(|end| end > file.len()) {
                return Err(ModelError::corrupt(
                    path,
                    file.len(),
                    format!("file is truncated: tensor {name} needs bytes up to {data_start} + {e}, file has {}", file.len()),
                ));
            }
        }
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(Self { file, data_start, tensors, metadata })
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.get(name).ok_or_else(|| ModelError::MissingTensor { path: self.path().into(), tensor: name.into() })
    }

    /// The tensor's stored bytes, bit for bit.
    pub(crate) fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let (s, e) = self.info(name)?.data_offsets;
        self.file.read(self.data_start + s as u64, (e - s) as u64, Purpose::Tensor, name)
    }

    pub(crate) fn tensor_sha256(&self, name: &str) -> Result<[u8; 32]> {
        let (s, e) = self.info(name)?.data_offsets;
        self.file.sha256(self.data_start + s as u64, (e - s) as u64, name)
    }

    /// The tensor as f32 (F32, F16 and BF16 are stored types we read).
    pub(crate) fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.info(name)?;
        let b = self.tensor_bytes(name)?;
        let dtype = dtype_of(t.dtype).ok_or_else(|| ModelError::UnsupportedTensorType {
            path: self.path().into(),
            tensor: name.into(),
            ty: format!("{:?}", t.dtype),
        })?;
        let mut data = vec![0f32; b.len() / dtype.block().1];
        dequantize_stored(dtype, &b, &mut data);
        Ok((t.shape.clone(), data))
    }
}

/// The element type of a safetensors dtype this build reads.
pub(crate) fn dtype_of(d: Dtype) -> Option<WeightDType> {
    match d {
        Dtype::F32 => Some(WeightDType::F32),
        Dtype::BF16 => Some(WeightDType::Bf16),
        Dtype::F16 => Some(WeightDType::F16),
        _ => None,
    }
}
