//! `talaria-gpu-worker`: serves a CVM over a shared-memory region (`--shm`,
//! spawned by the CVM on the same host) or TCP (`--listen host:port`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use talaria_gpu_worker::recorder::Recorder;
use talaria_gpu_worker::{CpuBackend, CudaBackend, MatmulBackend, SessionEnd, WorkerService};
use talaria_kernels::WeightDType;
use talaria_models::{fetch::ensure_default_model, Checkpoint, WorkerWeights};
use talaria_transport::{ShmRing, TcpWorkerListener};
use tracing::info;

#[derive(Parser, Debug)]
#[command(name = "talaria-gpu-worker", version, about = "Talaria's untrusted worker: serves masked linear calls")]
struct Args {
    /// GGUF file or HF folder; default: the default model (fetched if needed).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Never download the default model.
    #[arg(long)]
    offline: bool,
    /// Weight precision in memory (widened in the kernels): f32 or bf16.
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Serve the CVM over this shared-memory region (created by the CVM).
    #[arg(long, conflicts_with = "listen")]
    shm: Option<PathBuf>,
    /// Serve CVMs over TCP on host:port, one session at a time.
    #[arg(long)]
    listen: Option<String>,
    /// Record every received matrix into DIR (docs/DESIGN.md §5).
    #[arg(long)]
    record: Option<PathBuf>,
    /// With --record: record only these layers (comma-separated, -1 =
    /// lm_head); default all.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, requires = "record")]
    record_layers: Option<Vec<i32>>,
    /// Compute backend.
    #[arg(long, default_value = "auto", value_parser = ["auto", "cpu", "cuda"])]
    backend: String,
    /// Test-only fault injection: exit@N, nan@N or error@N.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true)]
    fault: Option<talaria_gpu_worker::fault::Fault>,
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    talaria_kernels::cpu::join_global_pool();
    if let Err(e) = run(Args::parse()) {
        eprintln!("talaria-gpu-worker: error: {e:#}");
        std::process::exit(1);
    }
}

/// `auto`: CUDA when a driver and a device are present (checked before any
/// other CUDA call), else CPU; `cuda` must succeed; `cpu` never touches CUDA.
fn choose_backend(which: &str, weights: &Arc<WorkerWeights>) -> anyhow::Result<Box<dyn MatmulBackend>> {
    let want_cuda = match which {
        "cpu" => false,
        "cuda" => true,
        _ => talaria_kernels_cuda::driver_present() && talaria_kernels_cuda::device_count().unwrap_or(0) > 0,
    };
    if !want_cuda {
        if which == "auto" {
            info!("no CUDA driver or device found: using the CPU backend");
        }
        return Ok(Box::new(CpuBackend::new(weights.clone())));
    }
    match CudaBackend::new(weights.clone()) {
        Ok(b) => Ok(Box::new(b)),
        Err(e) if which == "auto" => {
            tracing::warn!("CUDA backend unavailable ({e:#}); using the CPU backend");
            Ok(Box::new(CpuBackend::new(weights.clone())))
        }
        Err(e) => Err(e.context("--backend cuda")),
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    let dtype = WeightDType::parse(&a.dtype).with_context(|| format!("unknown --dtype {}", a.dtype))?;
    let path = match &a.model {
        Some(p) => p.clone(),
        None => ensure_default_model(a.offline)?,
    };
    let t0 = Instant::now();
    let ck = Checkpoint::open(&path)?;
    let weights = Arc::new(WorkerWeights::load(&ck, dtype)?);
    let manifest_hash = ck.manifest_hash();
    info!(
        "loaded {} worker weights ({:.0} MiB {}) in {:.2}s",
        path.display(),
        weights.size_bytes() as f64 / (1 << 20) as f64,
        dtype.name(),
        t0.elapsed().as_secs_f64()
    );
    let backend = choose_backend(&a.backend, &weights)?;
    #[cfg(feature = "fault-injection")]
    let backend: Box<dyn MatmulBackend> = match a.fault {
        Some(f) => Box::new(talaria_gpu_worker::fault::FaultyBackend::new(backend, f)),
        None => backend,
    };
    info!("backend: {}", backend.name());
    let recorder = match (a.record.as_deref().map(Recorder::create).transpose()?, a.record_layers.clone()) {
        (Some(r), Some(layers)) => Some(r.only_layers(layers)),
        (r, _) => r,
    };
    let mut svc = WorkerService {
        config: ck.config.clone(),
        manifest_hash,
        weights,
        backend,
        recorder,
        weight_dtype: dtype.name().into(),
        busy: Default::default(),
    };
    drop(ck);

    if let Some(shm) = &a.shm {
        let mut conn = ShmRing::open(shm).with_context(|| format!("opening shared-memory region {}", shm.display()))?;
        let end = svc.serve(&mut conn)?;
        info!("session ended: {end:?}");
        return Ok(());
    }
    let addr = a.listen.as_deref().context("give --shm PATH or --listen host:port")?;
    let listener = TcpWorkerListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    info!("listening on {addr}");
    loop {
        let mut conn = listener.accept()?;
        match svc.serve(&mut conn) {
            Ok(SessionEnd::Shutdown) => info!("session shut down; waiting for the next CVM"),
            Ok(SessionEnd::PeerGone) => info!("CVM went away; waiting for the next"),
            Err(e) => tracing::warn!("session failed: {e:#}"),
        }
    }
}
