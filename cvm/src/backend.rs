//! Chooses the `Linear` backend at run time: confidential (ReMO to a worker,
//! the default), plain (unmasked rows to a worker: the baseline for the
//! attack suite), or local (weights in this process: the unprotected
//! single-process baseline).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::ValueEnum;
use talaria_attest::AttesterChoice;
use talaria_engine::{Linear, LocalLinear};
use talaria_kernels::{Precision, Rows, RowsMut, WeightFormat};
use talaria_models::{Checkpoint, OpId, WorkerWeights};
use talaria_protocol::PublicParams;
use talaria_remo::{default_kappa, pad_pool_bound_bytes, RemoParams, RemoReport, RowBuckets, WorkerBusy, WorkerMatmul};
use talaria_transport::WorkerAddress;

use crate::masked_linear::MaskedLinear;
use crate::session::SessionRecipe;
use crate::worker::{LinkStats, RemoteSecurity, SpawnConfig, WorkerLink, WorkerTarget};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// ReMO: the worker only sees masked, shuffled rows (default).
    Confidential,
    /// Unmasked rows to the worker: the insecure baseline, for comparison.
    Plain,
    /// No worker: weights in this process (unprotected single-process baseline).
    Local,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Confidential => "confidential",
            Mode::Plain => "plain",
            Mode::Local => "local",
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct BackendArgs {
    /// confidential (ReMO, default), plain (unmasked rows to a worker: the
    /// insecure baseline) or local (weights in this process).
    #[arg(long, value_enum, default_value_t = Mode::Confidential)]
    pub mode: Mode,
    /// A worker listening on TCP (`tcp://host:port`), reached over mutual
    /// TLS (needs --worker-cert); default: spawn a local worker over shared
    /// memory.
    #[arg(long)]
    pub worker: Option<String>,
    /// The remote worker's certificate (PEM, from `talaria-gpu-worker
    /// gen-identity`), pinned byte for byte: a worker presenting any other
    /// is refused.
    #[arg(long, requires = "worker")]
    pub worker_cert: Option<PathBuf>,
    /// Development and measurement only: allow the unprotected modes
    /// (`--mode plain`, `--mode local`) and a remote worker over plain TCP
    /// (no --worker-cert).
    #[arg(long)]
    pub insecure: bool,
    /// ReMO pads and wire: `exact` (f64, the default: logits equal to the
    /// plain exact engine's) or `fast` (f32, about twice the throughput on a
    /// CPU worker, at a smaller default κ; fidelity and leakage in
    /// bench/RESULTS.md).
    #[arg(long, default_value = "exact")]
    pub precision: Precision,
    /// ReMO privacy level κ (pad σ = κ · channel scale); default 1e4 for
    /// `--precision exact`, 1e3 for `fast`.
    #[arg(long)]
    pub privacy_level: Option<f64>,
    /// Online calls padded with masked dummy rows up to a bucket, so the
    /// worker does not see the exact number of prompt tokens or running
    /// sequences: `pow2` (the next power of two, default) or `exact` (no
    /// padding; for measuring its cost).
    #[arg(long, default_value = "pow2")]
    pub row_buckets: RowBuckets,
    /// Refuse to start a confidential session whose pad pools could take
    /// more than this (e.g. `6GiB`); the figure is logged at start-up.
    #[arg(long, value_parser = crate::byte_size::parse_bytes)]
    pub max_pad_memory: Option<u64>,
    /// CVM threads that draw, mix, unmix and check pad batches off the
    /// engine thread (0: on the engine thread); default: this machine's
    /// cores.
    #[arg(long)]
    pub pad_threads: Option<usize>,
    /// The most rows one step sends (the scheduler's token budget); pools
    /// grow to serve a call this large.
    #[arg(skip = 2048usize)]
    pub max_call_rows: usize,
    /// Fault in one round of recycled pad storage once the pools are full
    /// (`RemoParams::reserve_storage`): for servers, not one-shot runs.
    #[arg(skip = false)]
    pub reserve_pad_storage: bool,
    /// Ask the spawned worker to record everything it receives into DIR.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// With --record: record only these layers (comma-separated, -1 =
    /// lm_head); default all.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, requires = "record")]
    pub record_layers: Option<Vec<i32>>,
    /// Where this CVM's attestation evidence comes from: `auto` (configfs-tsm
    /// when the kernel offers it, else `simulated` with a warning), `sev-snp`,
    /// `tdx` (both through /sys/kernel/config/tsm/report) or `simulated` (a
    /// software report that every verifier refuses without
    /// `--allow-simulated`).
    #[arg(long, default_value = "auto", env = "TALARIA_ATTESTATION")]
    pub attestation: AttesterChoice,
    /// Extra arguments for the first spawned worker (tests: fault injection).
    #[arg(long, hide = true, allow_hyphen_values = true)]
    pub worker_test_args: Vec<String>,
}

impl BackendArgs {
    /// κ: the one given, else the precision's default.
    pub fn kappa(&self) -> f64 {
        self.privacy_level.unwrap_or_else(|| default_kappa(self.precision))
    }

    /// Pad threads: the ones given, else one per core.
    pub fn pad_threads(&self) -> usize {
        self.pad_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl Default for BackendArgs {
    fn default() -> Self {
        Self {
            mode: Mode::Confidential,
            worker: None,
            worker_cert: None,
            insecure: false,
            precision: Precision::F64,
            privacy_level: None,
            row_buckets: RowBuckets::PowersOfTwo,
            max_pad_memory: None,
            pad_threads: None,
            max_call_rows: 2048,
            reserve_pad_storage: false,
            record: None,
            record_layers: None,
            attestation: AttesterChoice::Auto,
            worker_test_args: Vec::new(),
        }
    }
}

/// Builds the backend for `args` over the model in `ck`. For the worker
/// modes this spawns or reaches the worker, checks it holds the same model,
/// and (confidential) measures the public channel scales.
pub fn build_linear(args: &BackendArgs, ck: &Checkpoint, dtype: WeightFormat) -> anyhow::Result<Backend> {
    check_insecure(args)?;
    if args.mode == Mode::Local {
        let weights = WorkerWeights::load(ck, dtype)?;
        tracing::info!("weight matrices: {:.0} MiB ({}, --dtype {dtype})", mib(weights.size_bytes()), weights.dtype_summary());
        return Ok(Backend::Local(LocalLinear::new(Arc::new(weights))));
    }
    let kappa = args.kappa();
    anyhow::ensure!(kappa.is_finite() && kappa > 0.0, "--privacy-level must be positive");
    let params = RemoParams {
        row_buckets: args.row_buckets,
        pad_threads: args.pad_threads(),
        reserve_storage: args.reserve_pad_storage,
        ..RemoParams::with_kappa(kappa)
    };
    if args.mode == Mode::Confidential {
        check_pad_memory(args, ck, &params)?;
    }
    let target = match &args.worker {
        Some(addr) => {
            anyhow::ensure!(args.record.is_none(), "--record applies to a spawned worker; start the remote worker with --record instead");
            let addr = addr.parse::<WorkerAddress>().with_context(|| format!("bad --worker {addr}"))?;
            anyhow::ensure!(matches!(addr, WorkerAddress::Tcp { .. }), "--worker takes tcp://host:port");
            let security = match &args.worker_cert {
                Some(cert) => RemoteSecurity::mutual_tls(args.attestation, cert)?,
                None => RemoteSecurity::Plain,
            };
            WorkerTarget::Remote(addr, security)
        }
        None => {
            let mut cfg = SpawnConfig::new(ck.path.clone(), dtype.name())?;
            cfg.record = args.record.clone();
            cfg.record_layers = args.record_layers.clone();
            cfg.first_spawn_args = args.worker_test_args.clone();
            // Only the plain baseline needs a worker that serves unmasked rows.
            cfg.insecure = args.mode == Mode::Plain && args.insecure;
            WorkerTarget::Local(cfg)
        }
    };
    let confidential = args.mode == Mode::Confidential;
    let public = PublicParams {
        mode: if confidential { "remo" } else { "plain" }.into(),
        scheme: match (confidential, args.precision) {
            (true, Precision::F64) => "remo",
            (true, Precision::F32) => "remo-fast",
            _ => "plain",
        }
        .into(),
        kappa: if confidential { kappa } else { 0.0 },
        precision: remo_precision_name(args.precision).into(),
        calibration: "channel peaks × SCALE_HEADROOM over talaria_cvm::calibration::CALIBRATION_TEXTS, measured by the CVM with plain calls at session start (public text)".into(),
    };
    let mut link = WorkerLink::connect(target, ck.manifest_hash(), public)?;
    let recipe =
        SessionRecipe { remo: confidential.then_some((args.precision, params)), checkpoint: ck.path.clone(), role: ck.role(), dtype };
    let scheme = recipe.start_with(ck, &mut link)?;
    Ok(Backend::Worker(Box::new(MaskedLinear::restartable(scheme, link, Box::new(recipe)))))
}

/// Logs what the pad pools of this model can take, and refuses (before any
/// worker starts) when that is over `--max-pad-memory`.
fn check_pad_memory(args: &BackendArgs, ck: &Checkpoint, params: &RemoParams) -> anyhow::Result<()> {
    let rows = args.row_buckets.bucket(args.max_call_rows.max(1));
    let bound = pad_pool_bound_bytes(&ck.config, params, args.precision, rows);
    tracing::info!(
        "pad pools and their recycled storage: {:.0} MiB at the low-water mark, up to {:.0} MiB when a step sends {rows} rows ({} pads)",
        mib(pad_pool_bound_bytes(&ck.config, params, args.precision, 1)),
        mib(bound),
        args.precision.mode_name()
    );
    if let Some(limit) = args.max_pad_memory {
        anyhow::ensure!(
            bound as u64 <= limit,
            "the pad pools of this model can take {:.0} MiB, more than --max-pad-memory {:.0} MiB: raise the limit, lower the token budget per step, use --precision fast (half the bytes), or serve a smaller model",
            mib(bound),
            mib(limit as usize)
        );
    }
    Ok(())
}

/// The unprotected modes and plain TCP need `--insecure`; when they run,
/// they say so loudly.
fn check_insecure(args: &BackendArgs) -> anyhow::Result<()> {
    let unprotected = match args.mode {
        Mode::Plain => Some("--mode plain sends every activation row to the worker unmasked"),
        Mode::Local => Some("--mode local holds the model weights in this process"),
        Mode::Confidential => None,
    };
    let plain_tcp = args.worker.is_some() && args.worker_cert.is_none() && args.mode != Mode::Local;
    if !args.insecure {
        if let Some(what) = unprotected {
            anyhow::bail!("{what}: it is an unprotected baseline for development and measurement only; pass --insecure to run it");
        }
        anyhow::ensure!(
            !plain_tcp,
            "--worker without --worker-cert would talk to the worker over plain TCP, unauthenticated: pass --worker-cert FILE (the worker's certificate), or --insecure for development"
        );
        return Ok(());
    }
    let mut lines = vec!["INSECURE: development and measurement only (--insecure)".to_string()];
    lines.extend(unprotected.map(str::to_string));
    if plain_tcp {
        lines.push("the worker link is plain TCP: neither end is authenticated".into());
    }
    if lines.len() > 1 {
        let bar = "!".repeat(78);
        eprintln!("{bar}");
        for l in &lines {
            eprintln!("!! {l}");
        }
        eprintln!("!! prompts and outputs are NOT protected in this run");
        eprintln!("{bar}");
    }
    Ok(())
}

/// The name recordings and logs give a ReMO precision.
fn remo_precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F64 => "exact-f64",
        Precision::F32 => "fast-f32",
    }
}

/// The backend a CVM run uses: weights in process, or a worker behind
/// ReMO (or the plain baseline). Typed access to what each one reports.
pub enum Backend {
    Local(LocalLinear),
    Worker(Box<MaskedLinear<WorkerLink>>),
}

impl Backend {
    /// ReMO's statistics and leakage bound (confidential mode only).
    pub fn remo_report(&self) -> Option<RemoReport> {
        match self {
            Self::Worker(m) => m.report(),
            Self::Local(_) => None,
        }
    }

    /// The worker link's counters (worker modes).
    pub fn link_stats(&self) -> Option<LinkStats> {
        match self {
            Self::Worker(m) => Some(m.worker().stats),
            Self::Local(_) => None,
        }
    }

    /// The worker's own busy time per call kind so far (worker modes).
    pub fn worker_busy(&mut self) -> Option<WorkerBusy> {
        match self {
            Self::Worker(m) => WorkerMatmul::worker_busy(m.worker_mut()),
            Self::Local(_) => None,
        }
    }

    fn linear(&self) -> &dyn Linear {
        match self {
            Self::Local(l) => l,
            Self::Worker(m) => m.as_ref(),
        }
    }

    fn linear_mut(&mut self) -> &mut dyn Linear {
        match self {
            Self::Local(l) => l,
            Self::Worker(m) => m.as_mut(),
        }
    }
}

impl Linear for Backend {
    fn forward(&mut self, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        self.linear_mut().forward(id, rows, x, out)
    }
    fn precision(&self) -> Precision {
        self.linear().precision()
    }
    fn name(&self) -> String {
        self.linear().name()
    }
    fn idle(&mut self, budget: std::time::Duration) -> anyhow::Result<bool> {
        self.linear_mut().idle(budget)
    }
    fn after_step(&mut self) -> anyhow::Result<()> {
        self.linear_mut().after_step()
    }
    fn summary(&self) -> Option<String> {
        self.linear().summary()
    }
    fn background_fill(&self) -> Option<f64> {
        self.linear().background_fill()
    }
    fn masking_counters(&self) -> Option<talaria_engine::MaskingCounters> {
        self.linear().masking_counters()
    }
}

/// Bytes as MiB, for load-time lines.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}
