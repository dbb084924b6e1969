//! A worker process spawned by the CVM on this host, talking over a fresh
//! shared-memory region that only it inherits (an anonymous memfd, passed
//! as fd [`REGION_FD`]: no file name another process could open). Killed
//! and reaped on `Drop`.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
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
    /// Pass `--insecure` (the worker then serves unmasked sessions): only
    /// for the CVM's own `--mode plain --insecure`.
    pub insecure: bool,
}

/// The descriptor number the region has in the worker.
pub const REGION_FD: i32 = 3;

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
            insecure: false,
        })
    }
}

pub struct LocalWorker {
    child: Child,
}

impl LocalWorker {
    /// Creates a region, starts the worker on it, and returns the CVM's end.
    pub fn spawn(cfg: &SpawnConfig, extra_args: &[String]) -> anyhow::Result<(Self, ShmEndpoint)> {
        let (mut endpoint, region) = ShmRing::create_memfd("talaria-ring", cfg.ring_capacity).context("creating the shared-memory ring")?;
        let mut cmd = Command::new(&cfg.bin);
        cmd.arg("--shm-fd").arg(REGION_FD.to_string()).arg("--model").arg(&cfg.model).arg("--dtype").arg(&cfg.dtype).arg("--offline");
        if cfg.insecure {
            cmd.arg("--insecure");
        }
        if let Some(dir) = &cfg.record {
            cmd.arg("--record").arg(dir);
            if let Some(layers) = &cfg.record_layers {
                cmd.arg(format!("--record-layers={}", layers.iter().map(i32::to_string).collect::<Vec<_>>().join(",")));
            }
        }
        cmd.args(extra_args).stdin(Stdio::null());
        let src = region.as_raw_fd();
        // SAFETY: runs in the forked child before exec and only makes
        // async-signal-safe calls (dup2, fcntl). The memfd is close-on-exec,
        // like every other descriptor of ours, so this copy is the only one
        // the worker inherits.
        unsafe {
            cmd.pre_exec(move || inherit_as(src, REGION_FD));
        }
        let child = cmd.spawn().with_context(|| format!("spawning {}", cfg.bin.display()))?;
        drop(region); // the mapping keeps our side alive
        endpoint.expect_peer_pid(child.id());
        tracing::info!("spawned worker pid {} on an inherited memfd region", child.id());
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

/// In the child: makes `src` available as `dst` across exec (dup2 clears
/// close-on-exec on the copy; when they are the same number, clear it).
fn inherit_as(src: i32, dst: i32) -> std::io::Result<()> {
    // SAFETY: plain syscalls on descriptors of this (forked) process.
    let rc = unsafe {
        if src == dst {
            let flags = libc::fcntl(dst, libc::F_GETFD);
            if flags < 0 {
                -1
            } else {
                libc::fcntl(dst, libc::F_SETFD, flags & !libc::FD_CLOEXEC)
            }
        } else {
            libc::dup2(src, dst)
        }
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
