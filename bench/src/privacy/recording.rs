//! A worker recording (docs/DESIGN.md §5): `manifest.json`, `calls.jsonl` and one
//! `.npy` per received matrix. Read for the attacks, written by the
//! synthetic scheme simulator in the same format as `talaria-gpu-worker
//! --record`.

use std::io::Write;
use std::path::{Component, Path};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use talaria_models::{ModelConfig, Op, OpId};

use super::mat::Rows64;
use super::npy::{read_npy, write_npy, NpyDtype};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// `U = M·R`: a mixed batch of pads (ReMO refill).
    PadBatch,
    /// Masked real rows.
    Online,
    /// Unprotected rows (the baseline).
    Plain,
}

/// One line of `calls.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallMeta {
    pub seq: u64,
    pub kind: CallKind,
    pub layer: i32,
    pub op: String,
    pub rows: usize,
    pub cols: usize,
    pub dtype: String,
    pub file: String,
}

impl CallMeta {
    pub fn op_id(&self) -> Result<OpId> {
        let op = Op::parse(&self.op).with_context(|| format!("call {}: unknown op {:?}", self.seq, self.op))?;
        ensure!(
            (op == Op::LmHead) == (self.layer == -1) && self.layer >= -1,
            "call {}: layer {} does not fit op {}",
            self.seq,
            self.layer,
            self.op
        );
        Ok(OpId { layer: self.layer, op })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub model: ModelConfig,
    /// Public ReMO parameters as the CVM announced them. Keys read here:
    /// `mode`, `kappa`, `channel_scales` (`{"<layer>.<op>": [s_c…]}`),
    /// `pad_rows`, and for the synthetic schemes `scheme`, `rank`.
    #[serde(default)]
    pub remo: serde_json::Value,
}

/// The key of an op in `remo.channel_scales`: `"0.qkv"`, `"-1.lm_head"`.
pub fn op_key(id: OpId) -> String {
    format!("{}.{}", id.layer, id.op.name())
}

impl Manifest {
    /// The privacy level κ (0 when the recording is unmasked).
    pub fn kappa(&self) -> f64 {
        self.remo.get("kappa").and_then(|v| v.as_f64()).unwrap_or(0.0)
    }

    pub fn mode(&self) -> &str {
        self.remo.get("mode").and_then(|v| v.as_str()).unwrap_or("unknown")
    }

    /// The scheme name (synthetic recordings), else the mode.
    pub fn scheme(&self) -> &str {
        self.remo.get("scheme").and_then(|v| v.as_str()).unwrap_or_else(|| self.mode())
    }

    /// The public per-channel RMS `s_c` of an op's input, when announced.
    pub fn channel_scales(&self, id: OpId) -> Option<Vec<f64>> {
        let v = self.remo.get("channel_scales")?.get(op_key(id))?.as_array()?;
        v.iter().map(|x| x.as_f64()).collect()
    }

    pub fn usize_param(&self, key: &str) -> Option<usize> {
        self.remo.get(key).and_then(|v| v.as_u64()).map(|v| v as usize)
    }
}

/// One received matrix.
#[derive(Clone, Debug)]
pub struct Call {
    pub seq: u64,
    pub kind: CallKind,
    pub id: OpId,
    pub dtype: NpyDtype,
    pub data: Rows64,
}

#[derive(Clone, Debug)]
pub struct Recording {
    pub manifest: Manifest,
    pub calls: Vec<Call>,
}

impl Recording {
    /// Loads a recording, keeping only the calls `keep` accepts (a full
    /// 30-layer recording of many steps does not fit in memory at once).
    pub fn load(dir: &Path, keep: impl Fn(&CallMeta) -> bool) -> Result<Self> {
        let mpath = dir.join("manifest.json");
        let text = std::fs::read_to_string(&mpath).with_context(|| format!("reading {}", mpath.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).with_context(|| format!("parsing {}", mpath.display()))?;
        ensure!(manifest.format_version == 1, "{}: format_version {} is not supported (want 1)", mpath.display(), manifest.format_version);
        let cpath = dir.join("calls.jsonl");
        let lines = std::fs::read_to_string(&cpath).with_context(|| format!("reading {}", cpath.display()))?;
        let mut calls = Vec::new();
        for (n, line) in lines.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let meta: CallMeta = serde_json::from_str(line).with_context(|| format!("{} line {}", cpath.display(), n + 1))?;
            let id = meta.op_id()?;
            if !keep(&meta) {
                continue;
            }
            let dtype = NpyDtype::from_name(&meta.dtype).with_context(|| format!("call {}", meta.seq))?;
            let rel = Path::new(&meta.file);
            ensure!(
                rel.components().all(|c| matches!(c, Component::Normal(_))),
                "call {}: file {:?} leaves the recording folder",
                meta.seq,
                meta.file
            );
            let data = read_npy(&dir.join(rel), dtype).with_context(|| format!("call {}", meta.seq))?;
            ensure!(
                (data.rows, data.cols) == (meta.rows, meta.cols),
                "call {}: {} holds {} × {}, calls.jsonl says {} × {}",
                meta.seq,
                meta.file,
                data.rows,
                data.cols,
                meta.rows,
                meta.cols
            );
            calls.push(Call { seq: meta.seq, kind: meta.kind, id, dtype, data });
        }
        Ok(Self { manifest, calls })
    }

    /// Writes the recording in the worker's format.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir.join("calls")).with_context(|| format!("creating {}", dir.display()))?;
        let m = serde_json::to_vec_pretty(&self.manifest)?;
        std::fs::write(dir.join("manifest.json"), m).with_context(|| format!("writing {}/manifest.json", dir.display()))?;
        let mut lines = std::io::BufWriter::new(
            std::fs::File::create(dir.join("calls.jsonl")).with_context(|| format!("creating {}/calls.jsonl", dir.display()))?,
        );
        for c in &self.calls {
            let file = format!("calls/{:06}.npy", c.seq);
            write_npy(&dir.join(&file), &c.data, c.dtype)?;
            let meta = CallMeta {
                seq: c.seq,
                kind: c.kind,
                layer: c.id.layer,
                op: c.id.op.name().into(),
                rows: c.data.rows,
                cols: c.data.cols,
                dtype: c.dtype.name().into(),
                file,
            };
            writeln!(lines, "{}", serde_json::to_string(&meta)?)?;
        }
        lines.flush().context("writing calls.jsonl")
    }

    /// The pad batches sent for op `id`, in order.
    pub fn pad_batches(&self, id: OpId) -> impl Iterator<Item = &Call> {
        self.calls.iter().filter(move |c| c.kind == CallKind::PadBatch && c.id == id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tiny_config() -> ModelConfig {
        ModelConfig { max_position_embeddings: 32, ..ModelConfig::llama(16, 4, 8, 1, 1, 1) }
    }

    #[test]
    fn save_load_round_trip_and_filter() {
        let dir = std::env::temp_dir().join(format!("talaria-rec-{}", std::process::id()));
        let manifest = Manifest {
            format_version: 1,
            model: tiny_config(),
            remo: serde_json::json!({"mode": "exact", "kappa": 100.0, "channel_scales": {"0.qkv": [1.0, 2.0, 3.0, 4.0]}}),
        };
        let id = OpId::new(0, Op::Qkv);
        let calls = vec![
            Call {
                seq: 0,
                kind: CallKind::PadBatch,
                id,
                dtype: NpyDtype::F64,
                data: Rows64::from_vec(2, 4, (0..8).map(f64::from).collect()).unwrap(),
            },
            Call { seq: 1, kind: CallKind::Online, id, dtype: NpyDtype::F32, data: Rows64::from_vec(1, 4, vec![0.5; 4]).unwrap() },
        ];
        Recording { manifest, calls }.save(&dir).unwrap();
        let r = Recording::load(&dir, |_| true).unwrap();
        assert_eq!(r.calls.len(), 2);
        assert_eq!(r.calls[0].data.data[7], 7.0);
        assert_eq!(r.calls[1].kind, CallKind::Online);
        assert_eq!(r.manifest.kappa(), 100.0);
        assert_eq!(r.manifest.channel_scales(id).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(r.pad_batches(id).count(), 1);
        let only_online = Recording::load(&dir, |m| m.kind == CallKind::Online).unwrap();
        assert_eq!(only_online.calls.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_escaping_paths_and_bad_ops() {
        let meta = CallMeta {
            seq: 0,
            kind: CallKind::Online,
            layer: -1,
            op: "qkv".into(),
            rows: 1,
            cols: 1,
            dtype: "f64".into(),
            file: "x".into(),
        };
        assert!(meta.op_id().is_err());
        let dir = std::env::temp_dir().join(format!("talaria-rec-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = Manifest { format_version: 1, model: tiny_config(), remo: serde_json::Value::Null };
        std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
        std::fs::write(
            dir.join("calls.jsonl"),
            r#"{"seq":0,"kind":"online","layer":0,"op":"qkv","rows":1,"cols":4,"dtype":"f64","file":"../etc/x.npy"}"#,
        )
        .unwrap();
        let err = Recording::load(&dir, |_| true).unwrap_err();
        assert!(format!("{err:#}").contains("leaves the recording folder"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
