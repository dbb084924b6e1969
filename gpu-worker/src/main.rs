//! `talaria-gpu-worker`: serves a CVM over a shared-memory region it
//! inherits (`--shm-fd`, spawned by the CVM on the same host) or over
//! mutually authenticated TLS (`--listen host:port`).

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use talaria_gpu_worker::identity::{self, TlsSettings};
use talaria_gpu_worker::listen::{serve_forever, Security, Timeouts};
use talaria_gpu_worker::recorder::Recorder;
use talaria_gpu_worker::{CpuBackend, CudaBackend, MatmulBackend, WorkerService};
use talaria_kernels::WeightFormat;
use talaria_models::{fetch::resolve_model, Checkpoint, WorkerWeights};
use talaria_transport::{ShmRing, TcpWorkerListener};
use tracing::{info, warn};

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Make the worker's TLS identity (the model owner's key and a
    /// self-signed certificate); CVMs pin the certificate (--worker-cert).
    GenIdentity {
        /// Where to write the certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Where to write the private key (PEM, mode 0600).
        #[arg(long)]
        key: PathBuf,
        /// Host names or IP addresses the certificate names (repeatable);
        /// default: localhost.
        #[arg(long = "name")]
        names: Vec<String>,
    },
}

#[derive(Parser, Debug)]
#[command(name = "talaria-gpu-worker", version, about = "Talaria's untrusted worker: serves masked linear calls")]
#[command(args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// GGUF file, HF folder, or a model fetched by name (smollm2-135m, gemma3-270m); default: smollm2-135m.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Never download the default model.
    #[arg(long)]
    offline: bool,
    /// How the weights are held in memory: `stored` (the file's own quant
    /// blocks or floats, exact), `f32` (exact, larger), `bf16` or `f16`
    /// (rounded).
    #[arg(long, default_value = "stored")]
    dtype: WeightFormat,
    /// Serve the CVM over the shared-memory region inherited as this file
    /// descriptor (the CVM spawns the worker with it).
    #[arg(long, conflicts_with = "listen")]
    shm_fd: Option<i32>,
    /// Serve CVMs on host:port, one session at a time, over mutual TLS
    /// (--tls-cert, --tls-key, --cvm-policy); plain TCP only with --insecure.
    #[arg(long)]
    listen: Option<String>,
    /// The worker's certificate (PEM; `gen-identity` makes one).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The worker's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The policy a CVM's attestation must pass (JSON): allowed launch
    /// measurements and minimum TCB.
    #[arg(long)]
    cvm_policy: Option<PathBuf>,
    /// Admit CVMs with simulated attestation (proves nothing: development
    /// and CI only).
    #[arg(long)]
    allow_simulated: bool,
    /// Development and measurement only: serve unmasked (plain) sessions,
    /// and with --listen but no --tls-cert, plain TCP to anyone.
    #[arg(long)]
    insecure: bool,
    /// Seconds a frame that has begun may go without progress before the
    /// session is ended (tests shorten it).
    #[arg(long, hide = true, default_value_t = 30)]
    frame_stall_s: u64,
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
    if let Some(Command::GenIdentity { cert, key, names }) = &a.command {
        identity::generate(cert, key, names)?;
        println!("wrote {} and {} (pin the certificate on the CVM with --worker-cert)", cert.display(), key.display());
        return Ok(());
    }
    // Checked before the weights load: a misconfigured worker fails fast.
    let security = match &a.listen {
        Some(_) => Some(security_of(&a)?),
        None => None,
    };
    let path = resolve_model(a.model.as_deref(), a.offline)?;
    let t0 = Instant::now();
    let ck = Checkpoint::open_for(&path, talaria_models::Role::Worker)?;
    let weights = Arc::new(WorkerWeights::load(&ck, a.dtype)?);
    let manifest_hash = ck.manifest_hash();
    info!(
        "loaded {} worker weights ({:.0} MiB {}) in {:.2}s",
        path.display(),
        weights.size_bytes() as f64 / (1 << 20) as f64,
        weights.dtype_summary(),
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
    let weight_dtype = weights.dtype_summary();
    let mut svc = WorkerService {
        config: ck.config.clone(),
        manifest_hash,
        weights,
        backend,
        recorder,
        weight_dtype,
        busy: Default::default(),
        insecure: a.insecure,
    };
    drop(ck);
    if a.insecure {
        warn!("--insecure: unmasked (plain) sessions are served; development and measurement only");
    }

    if let Some(fd) = a.shm_fd {
        let mut conn = ShmRing::open_fd(inherited_fd(fd)?).with_context(|| format!("opening the shared-memory region on fd {fd}"))?;
        let end = svc.serve(&mut conn)?;
        info!("session ended: {end:?}");
        return Ok(());
    }
    let (Some(addr), Some(security)) = (a.listen.as_deref(), security) else {
        anyhow::bail!("give --shm-fd N (spawned by the CVM) or --listen host:port");
    };
    let listener = TcpWorkerListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    info!("listening on {addr}");
    let timeouts = Timeouts { frame_stall: Duration::from_secs(a.frame_stall_s.max(1)), ..Timeouts::default() };
    serve_forever(&listener, &security, timeouts, &mut svc)
}

/// TLS from the identity and policy flags; plain TCP only with --insecure.
fn security_of(a: &Args) -> anyhow::Result<Security> {
    match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            let cvm_policy = a.cvm_policy.clone().context("--listen with TLS needs --cvm-policy FILE (the CVM measurements to admit)")?;
            let tls = TlsSettings { cert: cert.clone(), key: key.clone(), cvm_policy, allow_simulated: a.allow_simulated };
            Ok(Security::Tls(tls.server_config()?))
        }
        _ if a.insecure => {
            warn!("--insecure without --tls-cert: plain TCP, no authentication of either end");
            Ok(Security::Plain)
        }
        _ => anyhow::bail!(
            "--listen needs --tls-cert FILE --tls-key FILE --cvm-policy FILE (make an identity with `talaria-gpu-worker gen-identity`), or --insecure for plain TCP"
        ),
    }
}

/// Takes ownership of the region descriptor the CVM passed down, after
/// checking it is open.
fn inherited_fd(fd: i32) -> anyhow::Result<OwnedFd> {
    anyhow::ensure!(fd > 2, "--shm-fd {fd}: not a region descriptor");
    // SAFETY: F_GETFD only queries the descriptor's flags.
    anyhow::ensure!(unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0, "--shm-fd {fd}: no such open file descriptor");
    // SAFETY: the descriptor is open and nothing else in this process owns
    // it: it was inherited for this purpose and is used once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
