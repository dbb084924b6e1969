//! `--record DIR`: writes exactly what the worker was sent (docs/DESIGN.md §5), so
//! anyone can attack it: `manifest.json`, `calls.jsonl`, `calls/NNNNNN.npy`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use npyz::WriterBuilder;
use talaria_models::{ModelConfig, Op};
use talaria_protocol::{CallKind, PublicParams};
use talaria_transport::{DType, FrameHeader};

pub struct Recorder {
    dir: PathBuf,
    calls: File,
    seq: u64,
    /// Only these layers (-1 = lm_head) are written, when set: a size knob
    /// for long attack runs (a pad batch of `down` is 2048 × 1536 f64).
    layers: Option<Vec<i32>>,
}

impl Recorder {
    /// Creates `dir` (appending to an existing recording continues its
    /// sequence numbers, e.g. after a worker restart).
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("calls")).with_context(|| format!("creating recording dir {}", dir.display()))?;
        let calls_path = dir.join("calls.jsonl");
        let seq = std::fs::read_to_string(&calls_path).map(|s| s.lines().count() as u64).unwrap_or(0);
        let calls =
            OpenOptions::new().create(true).append(true).open(&calls_path).with_context(|| format!("opening {}", calls_path.display()))?;
        Ok(Self { dir: dir.into(), calls, seq, layers: None })
    }

    /// Restricts recording to `layers` (-1 = lm_head).
    pub fn only_layers(mut self, layers: Vec<i32>) -> Self {
        self.layers = Some(layers);
        self
    }

    /// Writes `manifest.json` with the model config and the public ReMO
    /// parameters the CVM announced (and which layers were recorded).
    pub fn write_manifest(&self, config: &ModelConfig, remo: &PublicParams) -> anyhow::Result<()> {
        let mut m = serde_json::json!({"format_version": 1, "model": config, "remo": remo});
        if let Some(l) = &self.layers {
            m["recorded_layers"] = serde_json::json!(l);
        }
        let p = self.dir.join("manifest.json");
        std::fs::write(&p, serde_json::to_vec_pretty(&m)?).with_context(|| format!("writing {}", p.display()))
    }

    /// Records one received call matrix (payload as little-endian bytes).
    pub fn record(&mut self, kind: CallKind, op: Op, h: &FrameHeader, payload: &[u8]) -> anyhow::Result<()> {
        let (layer, rows, cols) = (h.layer, h.rows as usize, h.cols as usize);
        if self.layers.as_ref().is_some_and(|l| !l.contains(&layer)) {
            return Ok(());
        }
        let (descr, dname) = match h.dtype {
            DType::F64 => ("<f8", "f64"),
            DType::F32 => ("<f4", "f32"),
            other => anyhow::bail!("cannot record dtype {other:?}"),
        };
        let file = format!("calls/{:06}.npy", self.seq);
        let path = self.dir.join(&file);
        write_matrix(&path, descr, rows, cols, payload).with_context(|| format!("writing {}", path.display()))?;
        let line = serde_json::json!({"seq": self.seq, "kind": kind.name(), "layer": layer, "op": op.name(), "rows": rows, "cols": cols, "dtype": dname, "file": file});
        writeln!(self.calls, "{line}").context("appending calls.jsonl")?;
        self.seq += 1;
        Ok(())
    }
}

/// Writes `payload`, little-endian `descr` elements, as a `rows × cols`
/// C-order `.npy`. npyz writes the header; the payload is already in the
/// file's byte order, so it is copied as is rather than element by element.
fn write_matrix(path: &Path, descr: &str, rows: usize, cols: usize, payload: &[u8]) -> anyhow::Result<()> {
    let type_str: npyz::TypeStr = descr.parse().with_context(|| format!("npy dtype {descr:?}"))?;
    let width = type_str.num_bytes().with_context(|| format!("npy dtype {descr} has no fixed width"))?;
    ensure!(
        rows.checked_mul(cols).and_then(|n| n.checked_mul(width)) == Some(payload.len()),
        "payload has {} bytes, a {rows} × {cols} {descr} matrix needs {rows} × {cols} × {width}",
        payload.len()
    );
    let mut out = BufWriter::new(File::create(path)?);
    npyz::WriteOptions::new_header_only()
        .dtype(npyz::DType::new_scalar(type_str))
        .shape(&[rows as u64, cols as u64])
        .writer(&mut out)
        .write_header_only()?;
    out.write_all(payload)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_matrix;

    #[test]
    fn writes_a_c_order_matrix_npyz_reads_back() {
        let dir = std::env::temp_dir().join(format!("talaria-recorder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.npy");
        let values = [1.5f64, -2.0, 3.25, 1e10, 0.0, -7.0];
        let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_matrix(&path, "<f8", 2, 3, &payload).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // numpy's alignment: the data starts on a 64-byte boundary.
        assert_eq!((bytes.len() - payload.len()) % 64, 0);
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!((npy.shape(), npy.order(), npy.dtype().descr()), (&[2u64, 3][..], npyz::Order::C, "'<f8'".to_string()));
        assert_eq!(npy.into_vec::<f64>().unwrap(), values);

        let short = write_matrix(&path, "<f4", 2, 3, &payload[..20]).unwrap_err();
        assert!(format!("{short:#}").contains("needs 2 × 3 × 4"), "{short:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
