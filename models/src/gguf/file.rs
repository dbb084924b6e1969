//! Parses a GGUF file over a read-only memory map. Every length and offset
//! is checked against the file size, so a truncated or corrupt file gives an
//! error naming the byte where it went wrong.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::quant::{dequantize, GgmlType};
use super::value::GgufValue;
use crate::error::{ModelError, Result};

/// Limits that keep a corrupt header from asking for absurd allocations.
const MAX_STRING: u64 = 1 << 24;
const MAX_ARRAY: u64 = 1 << 26;
const MAX_DIMS: u32 = 4;

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
}

pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    data_start: u64,
}

struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len() as u64);
        match end {
            Some(end) => {
                let s = &self.buf[self.pos as usize..end as usize];
                self.pos = end;
                Ok(s)
            }
            None => Err(ModelError::corrupt(self.path, self.pos, format!("file ends while reading {what} ({n} bytes needed)"))),
        }
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
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| ModelError::corrupt(self.path, at, format!("{what}: invalid UTF-8")))
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
                let mut v = Vec::with_capacity(n as usize);
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

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
        // SAFETY: the file is opened read-only; a concurrent truncation by
        // another process is outside what a model loader can defend against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
        let mut c = Cursor { path: &path, buf: &mmap, pos: 0 };
        let magic: [u8; 4] = c.take(4, "magic").map_err(|_| ModelError::NotGguf { path: path.clone(), magic: [0; 4] })?.try_into().unwrap();
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
            let type_code = c.u32(&name)?;
            let offset = c.u64(&name)?;
            tensors.push(GgufTensorInfo { name, dims, type_code, offset });
        }
        let alignment = metadata.get("general.alignment").and_then(|v| v.as_u64()).unwrap_or(32).max(1);
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let file = Self { path, mmap, version, metadata, tensors, data_start };
        file.check_tensor_bounds()?;
        Ok(file)
    }

    /// Every tensor of a supported type must lie inside the file.
    fn check_tensor_bounds(&self) -> Result<()> {
        for t in &self.tensors {
            let Some(ty) = GgmlType::from_code(t.type_code) else { continue };
            let n = t.n_elements();
            let bytes = ty.bytes_for(n).ok_or_else(|| {
                ModelError::corrupt(
                    &self.path,
                    self.data_start + t.offset,
                    format!("tensor {}: {n} elements is not a whole number of {} blocks", t.name, ty.name()),
                )
            })?;
            let end = self.data_start + t.offset + bytes as u64;
            if end > self.mmap.len() as u64 {
                return Err(ModelError::corrupt(
                    &self.path,
                    self.mmap.len() as u64,
                    format!("file is truncated: tensor {} needs bytes up to {end}, file has {}", t.name, self.mmap.len()),
                ));
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn meta(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// The tensor dequantized to f32, with its shape in PyTorch order.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.tensor(name).ok_or_else(|| ModelError::MissingTensor { path: self.path.clone(), tensor: name.into() })?;
        let ty = GgmlType::from_code(t.type_code).ok_or_else(|| ModelError::UnsupportedTensorType {
            path: self.path.clone(),
            tensor: name.into(),
            ty: GgmlType::code_name(t.type_code),
        })?;
        let n = t.n_elements();
        let start = (self.data_start + t.offset) as usize;
        // Bounds were checked at open.
        let bytes = &self.mmap[start..start + ty.bytes_for(n).expect("checked at open")];
        let mut out = vec![0f32; n];
        dequantize(ty, bytes, &mut out);
        Ok((t.shape(), out))
    }

    /// The raw stored type name of a tensor (for manifests and logs).
    pub fn tensor_type_name(&self, name: &str) -> Option<String> {
        self.tensor(name).map(|t| GgmlType::code_name(t.type_code))
    }
}

impl GgufFile {
    /// The whole tensor-data section, for hashing.
    pub fn raw_data(&self) -> &[u8] {
        &self.mmap[(self.data_start as usize).min(self.mmap.len())..]
    }
}
