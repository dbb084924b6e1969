//! The `talaria` command line.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use talaria_engine::{generate, DecoderModel, GenerateRequest, KvPool, Linear, SamplingParams, DEFAULT_BLOCK_SIZE};
use talaria_models::{ChatMessage, Checkpoint, CvmWeights};

use talaria_cvm::backend::{build_linear, BackendArgs};

use talaria_cvm::model_source::ModelArgs;

#[derive(Parser, Debug)]
#[command(name = "talaria", version, about = "Confidential LLM inference: generate text with the CVM/worker split")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a completion for a prompt (or each line of a file) and print speed.
    Generate(Box<GenerateArgs>),
    /// Write the model as a CVM bundle and a worker bundle (DIR/cvm.*,
    /// DIR/worker.*, DIR/manifest.json), so the CVM host never holds the
    /// worker's matrices.
    SplitModel(crate::split_model::SplitModelArgs),
    /// Download (if needed) and verify a model fetched by name (the default
    /// model unless --model names another); print its path.
    Fetch {
        /// smollm2-135m (the default) or gemma3-270m.
        #[arg(long)]
        model: Option<String>,
        /// Only check the cache; never download.
        #[arg(long)]
        offline: bool,
    },
    /// Verify a talaria-serve's attestation (measurement, TCB, TLS key
    /// binding, fresh nonce) against a policy and pin its certificate.
    Verify(crate::verify::VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (raw text, or the user message with --chat).
    #[arg(long, short, required_unless_present = "prompts_file")]
    pub prompt: Option<String>,
    /// Run each non-empty line of FILE as its own prompt, one after another
    /// in the same session (same worker, same pad pools).
    #[arg(long, conflicts_with = "prompt")]
    pub prompts_file: Option<std::path::PathBuf>,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Most tokens to generate per prompt.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: the smallest set of tokens with this much mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one.
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Seed of the sampler (reproducible sampling).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop strings (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Keep generating past the model's end-of-text tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(a) => run_generate(*a),
        Command::SplitModel(a) => crate::split_model::run(a),
        Command::Fetch { model, offline } => {
            println!("{}", talaria_models::fetch::resolve_model(model.as_deref().map(std::path::Path::new), offline)?.display());
            Ok(())
        }
        Command::Verify(a) => crate::verify::run(a),
    }
}

fn run_generate(a: GenerateArgs) -> anyhow::Result<()> {
    let path = a.model.resolve()?;
    let ck = Checkpoint::open_for(&path, checkpoint_role(a.backend.mode))?;
    let params =
        SamplingParams { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, min_p: a.min_p, seed: a.seed, ..Default::default() };
    params.validate().map_err(anyhow::Error::msg)?;
    let texts: Vec<String> = match (&a.prompt, &a.prompts_file) {
        (Some(p), _) => vec![p.clone()],
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        (None, None) => anyhow::bail!("give --prompt or --prompts-file"),
    };
    anyhow::ensure!(!texts.is_empty(), "no prompts");
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let text =
                if a.chat { ck.tokenizer.chat_prompt(&[ChatMessage::new("user", t)]).map_err(anyhow::Error::msg)? } else { t.clone() };
            Ok(ck.tokenizer.encode(&text)?)
        })
        .collect::<anyhow::Result<_>>()?;
    let cvm = CvmWeights::load(&ck, a.model.dtype)?;
    let mut linear = build_linear(&a.backend, &ck, a.model.dtype)?;
    // Pad batches are made ahead of need (docs/DESIGN.md §3), not on the request's clock.
    linear.fill_ahead()?;
    let model = DecoderModel::new(ck.config.clone(), cvm)?;
    let mut scored = Vec::new();
    for prompt_ids in prompts {
        let tokens_needed = prompt_ids.len() + a.max_tokens;
        let mut kv =
            KvPool::with_precision(&model.config, tokens_needed.div_ceil(DEFAULT_BLOCK_SIZE), DEFAULT_BLOCK_SIZE, linear.precision());
        let req = GenerateRequest {
            prompt_ids,
            params: params.clone(),
            max_tokens: a.max_tokens,
            stop_strings: a.stop.clone(),
            ignore_eos: a.ignore_eos,
        };
        let mut out = std::io::stdout().lock();
        let res = generate(&model, &mut kv, &mut linear, &ck.tokenizer, &req, |_, _, piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        })
        .context("generation failed")?;
        drop(out);
        let n_out = res.tokens.len();
        println!();
        eprintln!(
            "[{} | {} | {} weights] prompt {} tokens: prefill {:.1} tok/s | output {} tokens: decode {:.1} tok/s | finish: {}",
            linear.name(),
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            a.model.dtype.name(),
            req.prompt_ids.len(),
            req.prompt_ids.len() as f64 / res.prefill_s.max(1e-9),
            n_out,
            (n_out.saturating_sub(1)) as f64 / res.decode_s.max(1e-9),
            res.finish.as_str(),
        );
        scored.push((req.prompt_ids, res.tokens.iter().map(|t| t.id).collect::<Vec<_>>()));
    }
    if let Some(dir) = &a.backend.record {
        write_scoring_tokens(dir, &scored)?;
    }
    if let Some(r) = linear.remo_report() {
        let link = linear.link_stats().unwrap_or_default();
        eprintln!(
            "[ReMO κ = {:e}] leakage bound {:.3e} bits per position ({:.3e} at the rows sent) | pads used {} (discarded {}) | pad batches {} ({:.0} ms) | {} rows scaled down to the energy budget | {} | worker retries {}, reconnects {}",
            r.kappa,
            r.leakage_bound_bits,
            r.leakage_bits_at_sent_energy,
            r.pads_used,
            r.pads_discarded,
            r.batches,
            r.refill_ms,
            r.rows_rescaled,
            r.checks,
            link.retries,
            link.reconnects,
        );
    }
    Ok(())
}

/// Writes `tokens.json` next to a worker recording: the ground truth the
/// privacy benchmark scores attacks against (bench/src/privacy/README.md).
/// It is evaluation data written by the CVM, never sent to the worker.
/// `runs`: each sequence's prompt and output ids, in the order they ran.
fn write_scoring_tokens(dir: &std::path::Path, runs: &[(Vec<u32>, Vec<u32>)]) -> anyhow::Result<()> {
    let mut sequences = Vec::new();
    let mut steps: Vec<Vec<[usize; 2]>> = Vec::new();
    for (s, (prompt, output)) in runs.iter().enumerate() {
        // Every generated token but the last was fed back through the model.
        let fed: Vec<u32> = prompt.iter().chain(output.iter().take(output.len().saturating_sub(1))).copied().collect();
        let positions: Vec<usize> = (0..prompt.len()).collect();
        steps.extend(positions.chunks(talaria_engine::generate::PREFILL_CHUNK).map(|c| c.iter().map(|&p| [s, p]).collect()));
        steps.extend((prompt.len()..fed.len()).map(|p| vec![[s, p]]));
        sequences.push(serde_json::json!({"tokens": fed, "prompt_len": prompt.len(), "bos": false}));
    }
    let doc = serde_json::json!({"format_version": 1, "sequences": sequences, "steps": steps});
    let path = dir.join("tokens.json");
    std::fs::write(&path, serde_json::to_vec(&doc)?).with_context(|| format!("writing {}", path.display()))
}

/// The CVM opens only its own tensors unless the weights run in this
/// process (`--mode local`).
pub fn checkpoint_role(mode: talaria_cvm::backend::Mode) -> talaria_models::Role {
    match mode {
        talaria_cvm::backend::Mode::Local => talaria_models::Role::Both,
        _ => talaria_models::Role::Cvm,
    }
}
