//! Parses a GGUF file: header, metadata and tensor table, read through a
//! `StoredFile` (mapped, or positional reads for the CVM). Every length and
//! offset is checked against the file size, so a truncated or corrupt file
//! gives an error naming the byte where it went wrong.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use talaria_kernels::weight::dequantize_stored;
use talaria_kernels::WeightDType;

use super::types::{code_name, dtype_of_code};
use super::value::GgufValue;
use crate::error::{ModelError, Result};
use crate::storage::{Access, Purpose, ReadCounter, StoredFile};

/// Limits that keep a corrupt header from asking for absurd allocations.
const MAX_STRING: u64 = 1 << 24;
const MAX_ARRAY: u64 = 1 << 26;
const MAX_DIMS: u32 = 4;
/// Most values one tensor may hold (2⁴⁸, far past any model's): with each
/// dimension up to 2³², their product and its size in bytes must not wrap.
const MAX_ELEMENTS: u64 = 1 << 48;
/// Header bytes fetched per positional read.
const HEADER_CHUNK: u64 = 1 << 16;

#[derive(Clone, Debug)]
pub struct GgufTensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the fastest-varying (the columns of a matrix).
    pub dims: Vec<usize>,
    pub type_code: u32,
    /// Offset relative to the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
    /// Shape in PyTorch order (rows first).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
    /// Stored bytes, `None` for a type this build cannot read.
    pub fn n_bytes(&self) -> Option<usize> {
        dtype_of_code(self.type_code)?.bytes_for(self.n_elements())
    }
}

pub struct GgufFile {
    file: StoredFile,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    data_start: u64,
}

/// Reads the header front to back, fetching it in chunks.
struct Cursor<'a> {
    file: &'a StoredFile,
    path: &'a Path,
    buf: Cow<'a, [u8]>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.file.len());
        let Some(end) = end else {
            return Err(ModelError::corrupt(self.path, self.pos, format!("file ends while reading {what} ({n} bytes needed)")));
        };
        if end > self.buf_start + self.buf.len() as u64 {
            // Refill from `pos`: the whole rest when mapped (a free slice), else a chunk.
            let want = match self.file.access() {
                Access::Mapped => self.file.len() - self.pos,
                Access::Positional => n.max(HEADER_CHUNK).min(self.file.len() - self.pos),
            };
            self.buf = self.file.read(self.pos, want, Purpose::Header, what)?;
            self.buf_start = self.pos;
        }
        let from = (self.pos - self.buf_start) as usize;
        self.pos = end;
        Ok(&self.buf[from..from + n as usize])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let n = self.u64(what)?;
        if n > MAX_STRING {
            return Err(ModelError::corrupt(self.path, at, format!("{what}: string length {n} is implausible")));
        }
        let b = self.take(n, what)?.to_vec();
        String::from_utf8(b).map_err(|_| ModelError::corrupt(self.path, at, format!("{what}: invalid UTF-8")))
    }
    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<GgufValue> {
        let at = self.pos;
        Ok(match ty {
            0 => GgufValue::U8(self.take(1, what)?[0]),
            1 => GgufValue::I8(self.take(1, what)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap())),
            3 => GgufValue::I16(i16::from_le_bytes(self.take(2, what)?.try_into().unwrap())),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(self.u32(what)? as i32),
            6 => GgufValue::F32(f32::from_le_bytes(self.take(4, what)?.try_into().unwrap())),
            7 => GgufValue::Bool(self.take(1, what)?[0] != 0),
            8 => GgufValue::String(self.string(what)?),
            9 if depth == 0 => {
                let ety = self.u32(what)?;
                let n = self.u64(what)?;
                if n > MAX_ARRAY {
                    return Err(ModelError::corrupt(self.path, at, format!("{what}: array length {n} is implausible")));
                }
                // Capacity bounded: a corrupt count fails on read, not on allocation.
                let mut v = Vec::with_capacity((n as usize).min(1 << 16));
                for _ in 0..n {
                    v.push(self.value(ety, what, depth + 1)?);
                }
                GgufValue::Array(v)
            }
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(self.u64(what)? as i64),
            12 => GgufValue::F64(f64::from_le_bytes(self.take(8, what)?.try_into().unwrap())),
            _ => return Err(ModelError::corrupt(self.path, at, format!("{what}: unknown value type {ty}"))),
        })
    }
}

type Header = (u32, BTreeMap<String, GgufValue>, Vec<GgufTensorInfo>, u64);

fn parse_header(file: &StoredFile) -> Result<Header> {
    let path = file.path().to_path_buf();
    let mut c = Cursor { file, path: &path, buf: Cow::Borrowed(&[]), buf_start: 0, pos: 0 };
    let magic: [u8; 4] = match c.take(4, "magic") {
        Ok(m) => [m[0], m[1], m[2], m[3]],
        Err(_) => return Err(ModelError::NotGguf { path, magic: [0; 4] }),
    };
    if &magic != b"GGUF" {
        return Err(ModelError::NotGguf { path, magic });
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(ModelError::GgufVersion { path, version });
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    if n_tensors > 1 << 20 || n_kv > 1 << 20 {
        return Err(ModelError::corrupt(&path, 8, format!("implausible counts: {n_tensors} tensors, {n_kv} metadata entries")));
    }
    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c.string(&format!("metadata key #{i}"))?;
        let ty = c.u32(&key)?;
        let v = c.value(ty, &key, 0)?;
        metadata.insert(key, v);
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let at = c.pos;
        let name = c.string(&format!("tensor #{i} name"))?;
        let nd = c.u32(&name)?;
        if nd == 0 || nd > MAX_DIMS {
            return Err(ModelError::corrupt(&path, at, format!("tensor {name}: {nd} dimensions")));
        }
        let mut dims = Vec::with_capacity(nd as usize);
        for _ in 0..nd {
            let d = c.u64(&name)?;
            if d == 0 || d > 1 << 32 {
                return Err(ModelError::corrupt(&path, at, format!("tensor {name}: dimension {d}")));
            }
            dims.push(d as usize);
        }
        let n = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64).filter(|&n| n <= MAX_ELEMENTS));
        if n.is_none() {
            return Err(ModelError::corrupt(&path, at, format!("tensor {name}: dimensions {dims:?} hold over 2^48 values")));
        }
        let type_code = c.u32(&name)?;
        let offset = c.u64(&name)?;
        tensors.push(GgufTensorInfo { name, dims, type_code, offset });
    }
    let alignment = metadata.get("general.alignment").and_then(|v| v.as_u64()).unwrap_or(32).max(1);
    let data_start = c.pos.div_ceil(alignment) * alignment;
    Ok((version, metadata, tensors, data_start))
}

impl GgufFile {
    /// Opens a GGUF file memory-mapped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path.as_ref(), Access::Mapped, Arc::default())
    }

    pub(crate) fn open_with(path: &Path, access: Access, counter: Arc<ReadCounter>) -> Result<Self> {
        let file = StoredFile::open(path, access, counter)?;
        let (version, metadata, tensors, data_start) = parse_header(&file)?;
        let g = Self { file, version, metadata, tensors, data_start };
        g.check_tensor_bounds()?;
        Ok(g)
    }
    /// Every tensor of a supported type must lie inside the file.
    fn check_tensor_bounds(&self) -> Result<()> {
        let path = self.file.path();
        for t in &self.tensors {
            let Some(ty) = dtype_of_code(t.type_code) else { continue };
            let n = t.n_elements();
            let bytes = ty.bytes_for(n).ok_or_else(|| {
                ModelError::corrupt(
                    path,
                    self.data_start + t.offset,
                    format!("tensor {}: {n} elements is not a whole number of {} blocks", t.name, ty.name()),
                )
            })?;
            let end = self.data_start.checked_add(t.offset).and_then(|s| s.checked_add(bytes as u64));
            if end.is_none_or(|end| end > self.file.len()) {
                return Err(ModelError::corrupt(
                    path,
                    self.file.len(),
                    format!(
                        "file is truncated: tensor {} needs bytes up to {}, file has {}",
                        t.name,
                        end.unwrap_or(u64::MAX),
                        self.file.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Where the tensor data section starts (the header, metadata and tensor
    /// table end before it).
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// `general.architecture` ("" when missing).
    pub fn architecture(&self) -> &str {
        self.meta("general.architecture").and_then(|v| v.as_str()).unwrap_or("")
    }

    pub fn meta(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// A tensor's info and type, or the error naming it.
    pub(crate) fn typed(&self, name: &str) -> Result<(&GgufTensorInfo, WeightDType)> {
        let path: PathBuf = self.path().into();
        let t = self.tensor(name).ok_or_else(|| ModelError::MissingTensor { path: path.clone(), tensor: name.into() })?;
        let ty = dtype_of_code(t.type_code).ok_or_else(|| ModelError::UnsupportedTensorType {
            path,
            tensor: name.into(),
            ty: code_name(t.type_code),
        })?;
        Ok((t, ty))
    }

    /// The tensor's stored bytes, bit for bit (quantized blocks as stored).
    pub fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let (t, ty) = self.typed(name)?;
        let len = ty.bytes_for(t.n_elements()).expect("checked at open") as u64;
        self.file.read(self.data_start + t.offset, len, Purpose::Tensor, name)
    }

    /// SHA-256 of the tensor's stored bytes, streamed (never held whole).
    pub(crate) fn tensor_sha256(&self, name: &str) -> Result<[u8; 32]> {
        let (t, ty) = self.typed(name)?;
        let len = ty.bytes_for(t.n_elements()).expect("checked at open") as u64;
        self.file.sha256(self.data_start + t.offset, len, name)
    }

    /// The tensor dequantized to f32, with its shape in PyTorch order.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let (t, ty) = self.typed(name)?;
        let bytes = self.tensor_bytes(name)?;
        let mut out = vec![0f32; t.n_elements()];
        dequantize_stored(ty, &bytes, &mut out);
        Ok((t.shape(), out))
    }

    /// The raw stored type name of a tensor (for manifests and logs).
    pub fn tensor_type_name(&self, name: &str) -> Option<String> {
        self.tensor(name).map(|t| code_name(t.type_code))
    }
}
