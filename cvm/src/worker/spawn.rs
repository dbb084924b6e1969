//! A worker process spawned by the CVM on this host, talking over a fresh
//! shared-memory region. Killed and reaped on `Drop`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use talaria_transport::{ShmEndpoint, ShmRing};

/// How to start a local worker.
#[derive(Clone, Debug)]
pub struct SpawnConfig {
    pub bin: PathBuf,
    pub model: PathBuf,
    pub dtype: String,
    pub record: Option<PathBuf>,
    /// With `record`: only these layers (-1 = lm_head).
    pub record_layers: Option<Vec<i32>>,
    /// Extra arguments for the first spawn only (test fault injection).
    pub first_spawn_args: Vec<String>,
    /// Bytes per direction of the shared-memory ring.
    pub ring_capacity: usize,
}

impl SpawnConfig {
    pub fn new(model: PathBuf, dtype: &str) -> anyhow::Result<Self> {
        Ok(Self {
            bin: find_worker_binary()?,
            model,
            dtype: dtype.into(),
            record: None,
            record_layers: None,
            first_spawn_args: Vec::new(),
            ring_capacity: 128 << 20,
        })
    }
}

pub struct LocalWorker {
    child: Child,
}

impl LocalWorker {
    /// Creates a region, starts the worker on it, and returns the CVM's end.
    pub fn spawn(cfg: &SpawnConfig, extra_args: &[String]) -> anyhow::Result<(Self, ShmEndpoint)> {
        let (mut endpoint, path) = ShmRing::create("talaria-ring", cfg.ring_capacity).context("creating the shared-memory ring")?;
        let mut cmd = Command::new(&cfg.bin);
        cmd.arg("--shm").arg(&path).arg("--model").arg(&cfg.model).arg("--dtype").arg(&cfg.dtype).arg("--offline");
        if let Some(dir) = &cfg.record {
            cmd.arg("--record").arg(dir);
            if let Some(layers) = &cfg.record_layers {
                cmd.arg(format!("--record-layers={}", layers.iter().map(i32::to_string).collect::<Vec<_>>().join(",")));
            }
        }
        cmd.args(extra_args).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("spawning {}", cfg.bin.display()))?;
        endpoint.expect_peer_pid(child.id());
        tracing::info!("spawned worker pid {} on {}", child.id(), path.display());
        Ok((Self { child }, endpoint))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$TALARIA_WORKER_BIN`, else `talaria-gpu-worker` next to this executable
/// (or one folder up, for test binaries in `target/*/deps`), else on PATH.
pub fn find_worker_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TALARIA_WORKER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let name = "talaria-gpu-worker";
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let cand = dir.join(name);
            if cand.is_file() {
                return Ok(cand);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(p) = std::env::split_paths(&path).map(|d| d.join(name)).find(|p: &PathBuf| Path::is_file(p)) {
            return Ok(p);
        }
    }
    anyhow::bail!("cannot find the {name} binary: build it (cargo build --release -p talaria-gpu-worker) or set TALARIA_WORKER_BIN")
}
