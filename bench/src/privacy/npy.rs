//! A tiny `.npy` reader/writer for the 2-D little-endian C-order float
//! matrices that worker recordings hold (docs/DESIGN.md §5). Everything is widened
//! to f64 on read.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::mat::Rows64;

/// Element type stored in a `.npy` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDtype {
    F32,
    F64,
}

impl NpyDtype {
    fn descr(self) -> &'static str {
        match self {
            Self::F32 => "<f4",
            Self::F64 => "<f8",
        }
    }
}

pub fn read_npy(path: &Path) -> Result<Rows64> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_npy(&bytes).with_context(|| format!("parsing {}", path.display()))
}

pub fn parse_npy(bytes: &[u8]) -> Result<Rows64> {
    ensure!(bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY", "not a .npy file (bad magic)");
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated .npy header");
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => bail!("unsupported .npy version {v}"),
    };
    let end = start.checked_add(header_len).filter(|&e| e <= bytes.len()).context("truncated .npy header")?;
    let header = std::str::from_utf8(&bytes[start..end]).context(".npy header is not text")?;
    let dtype = match dict_value(header, "descr")? {
        "'<f8'" => NpyDtype::F64,
        "'<f4'" => NpyDtype::F32,
        other => bail!("unsupported dtype {other} (want '<f8' or '<f4')"),
    };
    ensure!(dict_value(header, "fortran_order")? == "False", "Fortran-order arrays are not supported");
    let (rows, cols) = parse_shape(dict_value(header, "shape")?)?;
    let payload = &bytes[end..];
    let width = match dtype {
        NpyDtype::F32 => 4,
        NpyDtype::F64 => 8,
    };
    let n = rows.checked_mul(cols).context("shape overflows")?;
    ensure!(payload.len() == n * width, "payload has {} bytes, shape ({rows}, {cols}) needs {}", payload.len(), n * width);
    let data: Vec<f64> = match dtype {
        NpyDtype::F64 => payload.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        NpyDtype::F32 => payload.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect(),
    };
    Rows64::from_vec(rows, cols, data)
}

/// The raw text of `key`'s value in the header dict (up to the next
/// top-level comma or closing brace).
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let at = header.find(&pat).with_context(|| format!(".npy header has no '{key}'"))? + pat.len();
    let rest = header[at..].trim_start();
    let mut depth = 0i32;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Ok(rest[..i].trim()),
            _ => {}
        }
    }
    bail!(".npy header value of '{key}' is unterminated")
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let inner = s.strip_prefix('(').and_then(|s| s.strip_suffix(')')).with_context(|| format!("bad shape {s}"))?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<usize>().with_context(|| format!("bad shape {s}")))
        .collect::<Result<_>>()?;
    match dims[..] {
        [r, c] => Ok((r, c)),
        [n] => Ok((1, n)),
        _ => bail!("expected a 2-D array, got shape {s}"),
    }
}

pub fn write_npy(path: &Path, m: &Rows64, dtype: NpyDtype) -> Result<()> {
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}), }}", dtype.descr(), m.rows, m.cols);
    let unpadded = 10 + dict.len() + 1;
    let pad = unpadded.div_ceil(64) * 64 - unpadded;
    let mut out = Vec::with_capacity(unpadded + pad + m.data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    match dtype {
        NpyDtype::F64 => m.data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        NpyDtype::F32 => m.data.iter().for_each(|v| out.extend_from_slice(&(*v as f32).to_le_bytes())),
    }
    let mut f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&out).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_f64_and_f32() {
        let dir = std::env::temp_dir().join(format!("talaria-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = Rows64::from_vec(2, 3, vec![1.5, -2.0, 3.25, 1e10, 0.0, -7.0]).unwrap();
        for dt in [NpyDtype::F64, NpyDtype::F32] {
            let p = dir.join("m.npy");
            write_npy(&p, &m, dt).unwrap();
            assert_eq!(read_npy(&p).unwrap(), m);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_the_workers_header_layout() {
        // Same bytes as talaria-gpu-worker's npy_header for a 1 × 2 f64 matrix.
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }";
        let pad = (10 + dict.len() + 1).div_ceil(64) * 64 - (10 + dict.len() + 1);
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.extend(std::iter::repeat_n(b' ', pad));
        b.push(b'\n');
        b.extend_from_slice(&1.0f64.to_le_bytes());
        b.extend_from_slice(&2.0f64.to_le_bytes());
        assert_eq!(parse_npy(&b).unwrap().data, vec![1.0, 2.0]);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(parse_npy(b"hello").is_err());
        let dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1), }\n";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.extend_from_slice(&[0; 4]);
        assert!(parse_npy(&b).is_err(), "integer dtype");
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }\n";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.extend_from_slice(&[0; 8]);
        assert!(parse_npy(&b).is_err(), "short payload");
    }
}
