//! Writes GGUF files (version 3): header, metadata, tensor table and the
//! tensor data, each tensor aligned to `general.alignment` (32 by default).
//! Tensor bytes are written as given, so quantized blocks are kept bit for bit.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::value::GgufValue;
use crate::error::{ModelError, Result};

/// One tensor to write: its GGUF name, dims in GGUF order (fastest first),
/// type code and stored bytes.
pub struct GgufTensorOut<'a> {
    pub name: String,
    pub dims: Vec<usize>,
    pub type_code: u32,
    pub bytes: &'a [u8],
}

/// Writes `metadata` (in the order given) and `tensors` to `path`.
pub fn write_gguf(path: &Path, metadata: &[(String, GgufValue)], tensors: &[GgufTensorOut<'_>]) -> Result<()> {
    let io = |e: std::io::Error| ModelError::io(path, e);
    let alignment = metadata.iter().find(|(k, _)| k == "general.alignment").and_then(|(_, v)| v.as_u64()).unwrap_or(32).max(1);
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_string(&mut head, k);
        head.extend_from_slice(&type_code(v).to_le_bytes());
        put_value(&mut head, v);
    }
    let mut offset = 0u64;
    let mut offsets = Vec::with_capacity(tensors.len());
    for t in tensors {
        put_string(&mut head, &t.name);
        head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            head.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        head.extend_from_slice(&t.type_code.to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + t.bytes.len() as u64).div_ceil(alignment) * alignment;
    }
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    w.write_all(&head).map_err(io)?;
    let data_start = (head.len() as u64).div_ceil(alignment) * alignment;
    let mut at = pad_to(&mut w, head.len() as u64, data_start).map_err(io)?;
    for (t, off) in tensors.iter().zip(offsets) {
        at = pad_to(&mut w, at, data_start + off).map_err(io)?;
        w.write_all(t.bytes).map_err(io)?;
        at += t.bytes.len() as u64;
    }
    w.flush().map_err(io)?;
    w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)
}

fn pad_to(w: &mut impl Write, at: u64, to: u64) -> std::io::Result<u64> {
    w.write_all(&vec![0u8; (to - at) as usize])?;
    Ok(to)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn type_code(v: &GgufValue) -> u32 {
    match v {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.push(*x as u8),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(*x as u8),
        GgufValue::String(s) => put_string(out, s),
        GgufValue::Array(items) => {
            // The parsed value keeps no element type of its own: an empty
            // array is written as an array of u8 (it reads back the same).
            out.extend_from_slice(&items.first().map_or(0, type_code).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    #[test]
    fn round_trips_metadata_and_aligned_tensors() {
        let dir = std::env::temp_dir().join(format!("talaria-gguf-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.gguf");
        let meta = vec![
            ("general.architecture".to_string(), GgufValue::String("llama".into())),
            ("x.list".to_string(), GgufValue::Array(vec![GgufValue::I32(-1), GgufValue::I32(7)])),
            ("x.empty".to_string(), GgufValue::Array(vec![])),
            ("x.f".to_string(), GgufValue::F64(0.5)),
        ];
        let a: Vec<u8> = (0..12).collect();
        let b: Vec<u8> = (0..34).map(|i| i as u8 ^ 0x5a).collect();
        let tensors = [
            GgufTensorOut { name: "a".into(), dims: vec![3], type_code: 0, bytes: &a },
            GgufTensorOut { name: "b".into(), dims: vec![32], type_code: 8, bytes: &b },
        ];
        write_gguf(&p, &meta, &tensors).unwrap();
        let g = GgufFile::open(&p).unwrap();
        for (k, v) in &meta {
            assert_eq!(g.meta(k), Some(v), "{k}");
        }
        assert_eq!(&*g.tensor_bytes("a").unwrap(), &a[..]);
        assert_eq!(&*g.tensor_bytes("b").unwrap(), &b[..]);
        assert_eq!(g.tensor("b").unwrap().offset % 32, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
