//! Starting the server: load the model, build the linear backend (plain or
//! confidential, through `build_linear`), size the KV cache, start the
//! engine thread, make the RA-TLS identity, listen, and shut down
//! gracefully on SIGTERM / SIGINT.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use talaria_engine::scheduler::{Engine, EngineHandle, SchedulerConfig};
use talaria_engine::{DecoderModel, KvPool, Linear, DEFAULT_BLOCK_SIZE};
use talaria_models::{Checkpoint, CvmWeights};
use tokio::signal::unix::{signal, SignalKind};

use super::args::ServeArgs;
use super::auth::ApiKey;
use super::listener::EdgeLimits;
use super::metrics::ServerMetrics;
use super::routes::router;
use super::state::{unix_now, AppState, SharedState};
use super::tls::{self, TlsEdge};
use talaria_cvm::backend::{build_linear, BackendArgs};

/// Runs the server until SIGTERM / SIGINT and the drain that follows.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    check_insecure_flags(&args)?;
    // The identity comes first: a server that cannot attest should fail
    // before spending minutes loading the model.
    let tls = if args.edge.plain_http { None } else { Some(tls::prepare(&args)?) };
    let (tls_config, attestation) = match tls {
        Some(TlsEdge { config, attestation }) => (Some(config), Some(attestation)),
        None => (None, None),
    };
    let state = Arc::new(load(&args, attestation)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("talaria-http")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let served = rt.block_on(serve(state.clone(), &args, tls_config));
    // In-flight requests are done (or aborted); stop the engine thread.
    if !state.engine.shutdown_within(Some(ENGINE_STOP_LIMIT)) {
        anyhow::bail!("the engine did not stop within {ENGINE_STOP_LIMIT:?} (a step stuck in the backend?)");
    }
    drop(rt);
    served
}

/// How long the engine gets to stop after the last connection closed, and
/// how long aborted requests get to wind down before the process exits.
const ENGINE_STOP_LIMIT: Duration = Duration::from_secs(10);

/// `--plain-http` sends prompts in the clear: only with `--insecure`.
fn check_insecure_flags(args: &ServeArgs) -> anyhow::Result<()> {
    if args.edge.plain_http {
        anyhow::ensure!(args.backend.insecure, "--plain-http serves prompts unencrypted and unattested; add --insecure to confirm");
        tracing::warn!("--plain-http: INSECURE, prompts and completions cross the network in the clear");
    }
    Ok(())
}

fn load(args: &ServeArgs, attestation: Option<super::attestation::AttestationService>) -> anyhow::Result<AppState> {
    let path = args.model.resolve()?;
    let ck = Checkpoint::open_for(&path, crate::cli::checkpoint_role(args.backend.mode))
        .with_context(|| format!("opening {}", path.display()))?;
    let dtype = args.model.dtype;
    let cvm = CvmWeights::load(&ck, dtype).context("loading the CVM weights")?;
    let cvm_mib = talaria_cvm::backend::mib(cvm.size_bytes());
    let backend = BackendArgs { max_call_rows: args.max_num_batched_tokens, reserve_pad_storage: true, ..args.backend.clone() };
    let linear = build_linear(&backend, &ck, dtype).context("building the linear backend")?;
    let config = ck.config.clone();
    let tokenizer = Arc::new(ck.tokenizer);
    // The cache holds activations in the backend's precision (f64 in the
    // exact confidential mode), so the same budget holds half the tokens.
    let precision = linear.precision();
    let budget = usize::try_from(args.kv_cache_memory).unwrap_or(usize::MAX);
    let blocks = KvPool::blocks_for_budget(&config, budget, DEFAULT_BLOCK_SIZE, precision);
    let kv = KvPool::with_precision(&config, blocks, DEFAULT_BLOCK_SIZE, precision);
    let sched =
        SchedulerConfig { max_num_batched_tokens: args.max_num_batched_tokens, max_num_seqs: args.max_num_seqs, max_swap_bytes: None };
    let model = DecoderModel::new(config, cvm).context("building the model")?;
    let engine = Engine::new(model, kv, Box::new(linear), tokenizer.clone(), sched);
    let limits = engine.limits();
    tracing::info!(
        "model {} | backend {} | {} weights (CVM's {:.0} MiB), {} activations | context {} | KV cache {} blocks of {} = {} tokens | {} tokens/step, {} seqs/step",
        path.display(),
        engine.linear_name(),
        dtype.name(),
        cvm_mib,
        precision.name(),
        limits.context_len,
        blocks,
        DEFAULT_BLOCK_SIZE,
        limits.kv_capacity_tokens,
        sched.max_num_batched_tokens,
        sched.max_num_seqs
    );
    let engine = EngineHandle::spawn(engine).context("starting the engine thread")?;
    let model_name = args.served_model_name.clone().unwrap_or_else(|| default_name(&path));
    Ok(AppState {
        engine,
        tokenizer,
        metrics: ServerMetrics::new(&model_name),
        model_name,
        limits: args.limits.clone(),
        started: unix_now(),
        attestation,
        api_key: args.edge.api_key.as_deref().map(ApiKey::new),
        metrics_key: args.edge.metrics_key.as_deref().map(ApiKey::new),
        body_timeout: Duration::from_secs_f64(args.edge.body_timeout),
    })
}

/// The model file's (or folder's) name without `.gguf`.
fn default_name(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    name.strip_suffix(".gguf").map(str::to_string).unwrap_or(name)
}

async fn serve(state: SharedState, args: &ServeArgs, tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if state.api_key.is_none() {
        tracing::warn!("no --api-key: anyone who can reach {addr} may use the API");
    }
    tracing::info!("serving {} on {scheme}://{addr}", state.model_name);
    // The machine-readable ready line (tests and `bench serve` wait for it).
    println!("talaria-serve listening on {scheme}://{addr}");
    let _ = std::io::stdout().flush();
    let grace = Duration::from_secs_f64(args.shutdown_timeout.max(0.0));
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let drained = {
        let state = state.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down: no new connections; in-flight requests get {grace:?}");
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                tracing::warn!("shutdown grace period over: aborting the requests still in flight");
                state.engine.abort_all("the server is shutting down");
                tokio::time::sleep(ENGINE_STOP_LIMIT).await;
                tracing::error!(
                    "requests still in flight {ENGINE_STOP_LIMIT:?} after they were aborted (a step stuck in the backend?); exiting"
                );
                std::process::exit(1);
            });
        }
    };
    let limits = EdgeLimits {
        max_connections: args.edge.max_connections as usize,
        handshake_timeout: Duration::from_secs_f64(args.edge.handshake_timeout),
        header_timeout: Duration::from_secs_f64(args.edge.header_timeout),
        write_timeout: Duration::from_secs_f64(args.edge.write_timeout),
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    super::listener::serve(listener, router(state), acceptor, limits, drained).await;
    tracing::info!("all connections closed");
    Ok(())
}
