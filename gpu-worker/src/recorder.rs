//! `--record DIR`: writes exactly what the worker was sent (docs/DESIGN.md §5), so
//! anyone can attack it: `manifest.json`, `calls.jsonl`, `calls/NNNNNN.npy`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use talaria_models::{LlamaConfig, Op};
use talaria_transport::{DType, FrameHeader};

use crate::npy::write_npy;
use talaria_protocol::{CallKind, PublicParams};

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
    pub fn write_manifest(&self, config: &LlamaConfig, remo: &PublicParams) -> anyhow::Result<()> {
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
        write_npy(&self.dir.join(&file), descr, rows, cols, payload).with_context(|| format!("writing {file}"))?;
        let line = serde_json::json!({"seq": self.seq, "kind": kind.name(), "layer": layer, "op": op.name(), "rows": rows, "cols": cols, "dtype": dname, "file": file});
        writeln!(self.calls, "{line}").context("appending calls.jsonl")?;
        self.seq += 1;
        Ok(())
    }
}
