//! The `.npy` matrices of worker recordings (docs/DESIGN.md §5), through
//! npyz: `rows × cols`, C order, `<f8` or `<f4`. Everything is widened to
//! f64 on read.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use npyz::WriterBuilder;

use super::mat::Rows64;

/// Element type stored in a recorded `.npy` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDtype {
    F32,
    F64,
}

impl NpyDtype {
    /// numpy's type string.
    fn descr(self) -> &'static str {
        match self {
            Self::F32 => "<f4",
            Self::F64 => "<f8",
        }
    }

    /// The name `calls.jsonl` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F64 => "f64",
        }
    }

    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "f64" => Ok(Self::F64),
            "f32" => Ok(Self::F32),
            other => bail!("unsupported dtype {other:?} (want \"f64\" or \"f32\")"),
        }
    }

    fn npyz(self) -> npyz::DType {
        npyz::DType::new_scalar(self.descr().parse().expect("a valid numpy type string"))
    }
}

/// Reads a matrix whose elements must be `expected`.
pub fn read_npy(path: &Path, expected: NpyDtype) -> Result<Rows64> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_matrix(BufReader::new(file), expected).with_context(|| format!("reading {}", path.display()))
}

fn read_matrix(reader: impl std::io::Read, expected: NpyDtype) -> Result<Rows64> {
    let npy = npyz::NpyFile::new(reader)?;
    let found = npy.dtype().descr();
    ensure!(found == format!("'{}'", expected.descr()), "dtype {found}, expected '{}'", expected.descr());
    ensure!(npy.order() == npyz::Order::C, "Fortran-order arrays are not supported");
    let (rows, cols) = match *npy.shape() {
        [r, c] => (usize::try_from(r)?, usize::try_from(c)?),
        ref other => bail!("shape {other:?}, expected a 2-D matrix"),
    };
    let data = match expected {
        NpyDtype::F64 => npy.into_vec::<f64>()?,
        NpyDtype::F32 => npy.into_vec::<f32>()?.into_iter().map(f64::from).collect(),
    };
    Rows64::from_vec(rows, cols, data)
}

pub fn write_npy(path: &Path, m: &Rows64, dtype: NpyDtype) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_matrix(BufWriter::new(file), m, dtype).with_context(|| format!("writing {}", path.display()))
}

fn write_matrix(out: impl std::io::Write, m: &Rows64, dtype: NpyDtype) -> Result<()> {
    let shape = [m.rows as u64, m.cols as u64];
    match dtype {
        NpyDtype::F64 => write_elements(out, dtype, &shape, m.data.iter().copied()),
        NpyDtype::F32 => write_elements(out, dtype, &shape, m.data.iter().map(|&v| v as f32)),
    }
}

fn write_elements<T: npyz::Serialize>(
    out: impl std::io::Write,
    dtype: NpyDtype,
    shape: &[u64],
    values: impl Iterator<Item = T>,
) -> Result<()> {
    let mut w = npyz::WriteOptions::new().dtype(dtype.npyz()).shape(shape).writer(out).begin_nd()?;
    w.extend(values)?;
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_f64_and_f32() {
        let m = Rows64::from_vec(2, 3, vec![1.5, -2.0, 3.25, 1e10, 0.0, -7.0]).unwrap();
        for dt in [NpyDtype::F64, NpyDtype::F32] {
            let mut bytes = Vec::new();
            write_matrix(&mut bytes, &m, dt).unwrap();
            assert_eq!(read_matrix(&bytes[..], dt).unwrap(), m);
        }
    }

    #[test]
    fn reads_recordings_written_before_npyz() {
        // The header the worker's hand-written writer produced: no comma
        // after the last dimension, padded with spaces to 64 bytes.
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }";
        let pad = (10 + dict.len() + 1).div_ceil(64) * 64 - (10 + dict.len() + 1);
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.extend(std::iter::repeat_n(b' ', pad));
        b.push(b'\n');
        b.extend_from_slice(&1.0f64.to_le_bytes());
        b.extend_from_slice(&2.0f64.to_le_bytes());
        let m = read_matrix(&b[..], NpyDtype::F64).unwrap();
        assert_eq!((m.rows, m.cols, m.data), (1, 2, vec![1.0, 2.0]));
    }

    #[test]
    fn rejects_other_dtypes_and_shapes_with_context() {
        let m = Rows64::from_vec(1, 2, vec![1.0, 2.0]).unwrap();
        let mut bytes = Vec::new();
        write_matrix(&mut bytes, &m, NpyDtype::F32).unwrap();
        let err = read_matrix(&bytes[..], NpyDtype::F64).unwrap_err();
        assert!(format!("{err:#}").contains("dtype '<f4', expected '<f8'"), "{err:#}");

        let mut vector = Vec::new();
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[3]).writer(&mut vector).begin_nd().unwrap();
        w.extend([1.0f64, 2.0, 3.0]).unwrap();
        w.finish().unwrap();
        let err = read_matrix(&vector[..], NpyDtype::F64).unwrap_err();
        assert!(format!("{err:#}").contains("shape [3], expected a 2-D matrix"), "{err:#}");
        assert!(read_matrix(&b"hello"[..], NpyDtype::F64).is_err());
    }
}
