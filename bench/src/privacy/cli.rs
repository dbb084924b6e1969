//! `bench privacy`: runs the attack suite on worker recordings or on
//! synthetic ones, writes privacy.md / privacy.json / privacy.svg.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use talaria_kernels::WeightFormat;
use talaria_models::{fetch::resolve_model, op_dims, Checkpoint, Op};

use super::candidates::{Candidates, Layer0Dictionary};
use super::engine_candidates::EngineCandidates;
use super::gate;
use super::outputs::write_outputs;
use super::report::{leakage_bits, LeakageRow, SuiteReport};
use super::runner::{attack_recording, attacks, baseline, load_recorded, AttackOptions, RecordingLabel};
use super::synth::scheme::Scheme;
use super::synth::simulate::{simulate, SimInput};
use super::synth::{channel_scales, conversations, Setting};
use super::tokens::TokensFile;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A worker recording folder (`talaria-gpu-worker --record DIR`) with
    /// its tokens.json; repeatable.
    #[arg(long = "recording")]
    pub recordings: Vec<PathBuf>,
    /// Simulate every scheme in-process from the model's layer-0 inputs.
    #[arg(long)]
    pub synthetic: bool,
    /// CI size (fewer sequences, cheaper attack settings).
    #[arg(long)]
    pub quick: bool,
    /// Output folder for privacy.md, privacy.json and privacy.svg.
    #[arg(long, default_value = "target/privacy")]
    pub out: PathBuf,
    /// GGUF file or HF folder; default: the default model.
    /// The model the candidates come from (default: the default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Never download the model.
    #[arg(long)]
    pub offline: bool,
    /// ReMO privacy levels to sweep (synthetic).
    #[arg(long, value_delimiter = ',')]
    pub kappas: Option<Vec<f64>>,
    /// Number of built-in conversations (synthetic, at most 24).
    #[arg(long)]
    pub sequences: Option<usize>,
    /// Settings to simulate: decode-b1, prefill.
    #[arg(long, value_delimiter = ',')]
    pub settings: Option<Vec<String>>,
    /// Schemes to simulate (plain, permute, mix, lowrank, static-pad,
    /// remo-nomix, remo-1round, remo); default all.
    #[arg(long, value_delimiter = ',')]
    pub schemes: Option<Vec<String>>,
    /// Sequences (0-based) that are the worker's own requests: it knows
    /// their tokens (chosen plaintext), and they are not scored. Give the
    /// flag with no value for none. Applies to synthetic runs and to every
    /// recording of more than one sequence.
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "0")]
    pub attacker_sequences: Vec<usize>,
    /// Attacks to run (names as in the report); default all.
    #[arg(long, value_delimiter = ',')]
    pub attacks: Option<Vec<String>>,
    /// Seed of the synthetic recordings.
    #[arg(long, default_value_t = 0x7a1a_41a5)]
    pub seed: u64,
    /// Also save each synthetic recording (worker format + tokens.json).
    #[arg(long)]
    pub write_recordings: Option<PathBuf>,
    /// Fail (non-zero exit) when the gate fails.
    #[arg(long)]
    pub gate: bool,
    /// For --recording: also score every deeper op, running the plain model
    /// on the recovered prefix (slow: one forward per candidate).
    #[arg(long)]
    pub deep: bool,
    /// Null twins (each attack's floor on pure pads) for every masked
    /// recording, not only those at a mode's default κ (3 more runs of
    /// every attack per recording).
    #[arg(long)]
    pub null_twins: bool,
    /// The worker's weight dtype (`--dtype` of talaria-gpu-worker), for --deep.
    #[arg(long, default_value = "stored")]
    pub worker_dtype: WeightFormat,
}

fn options(quick: bool, seed: u64) -> AttackOptions {
    AttackOptions {
        omp_screen: if quick { 32 } else { 64 },
        omp_atoms: 8,
        complement_iterations: if quick { 2 } else { 3 },
        ica_components: if quick { 64 } else { 128 },
        ica_iterations: if quick { 100 } else { 200 },
        rerank: 64,
        fast_top_k: 32,
        seed,
    }
}

pub fn run(args: Args) -> Result<()> {
    if !args.synthetic && args.recordings.is_empty() {
        bail!("give --synthetic and/or --recording DIR");
    }
    let t0 = Instant::now();
    let path = resolve_model(args.model.as_deref(), args.offline).context("getting the model")?;
    let ck = Checkpoint::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut dict = Layer0Dictionary::from_checkpoint(&ck)?;
    let cfg = ck.config.clone();
    let opts = options(args.quick, args.seed);
    let mut list = attacks(&opts);
    if let Some(keep) = &args.attacks {
        list.retain(|a| keep.contains(&a.name()));
    }
    let mut rows = Vec::new();
    let mut baselines = Vec::new();
    let mut sequences = 0;
    let mut kappas: Vec<f64> = Vec::new();

    if args.synthetic {
        let n = args.sequences.unwrap_or(if args.quick { 8 } else { 24 });
        let seqs = conversations(&ck.tokenizer, n)?;
        let mut attacker_marked = Setting::Prefill.tokens_file(seqs.clone());
        attacker_marked.mark_attacker(&args.attacker_sequences)?;
        let seqs = attacker_marked.sequences;
        sequences += seqs.len();
        let scales = channel_scales(&dict.rows, &ck.tokenizer)?;
        kappas = args.kappas.clone().unwrap_or_else(|| if args.quick { vec![1.0, 10.0, 1e4] } else { vec![1.0, 10.0, 100.0, 1000.0, 1e4] });
        let settings: Vec<Setting> = match &args.settings {
            None => vec![Setting::DecodeB1, Setting::Prefill],
            Some(v) => v
                .iter()
                .map(|s| {
                    [Setting::DecodeB1, Setting::Prefill]
                        .into_iter()
                        .find(|x| x.name() == s)
                        .with_context(|| format!("unknown setting {s}"))
                })
                .collect::<Result<_>>()?,
        };
        let mut schemes: Vec<(Scheme, f64)> = Scheme::all_weak().iter().map(|&s| (s, gate::DEFAULT_KAPPA)).collect();
        schemes.extend(kappas.iter().map(|&k| (Scheme::REMO, k)));
        if let Some(keep) = &args.schemes {
            schemes.retain(|(s, _)| keep.contains(&s.name()));
        }
        for setting in settings {
            let tokens = setting.tokens_file(seqs.clone());
            baselines.push(baseline(setting.name(), &tokens, dict.rows.rows));
            for (i, &(scheme, kappa)) in schemes.iter().enumerate() {
                let input = SimInput { config: &cfg, dict: &dict.rows, scales: &scales };
                let (rec, sources) = simulate(scheme, kappa, &tokens, &input, args.seed.wrapping_add(i as u64 * 1000 + setting as u64))?;
                let tokens = TokensFile { row_sources: Some(sources), ..tokens.clone() };
                if let Some(dir) = &args.write_recordings {
                    let d = dir.join(format!("{}-k{kappa}-{}", scheme.name(), setting.name()));
                    rec.save(&d)?;
                    tokens.save(&d.join("tokens.json"))?;
                }
                let label = RecordingLabel {
                    scheme: scheme.name(),
                    kappa: scheme.uses_kappa().then_some(kappa),
                    setting: setting.name().into(),
                    weak: scheme.is_weak(),
                    null_twins: args.null_twins,
                };
                rows.extend(attack_recording(&rec, &tokens, &mut dict, &list, &label)?);
            }
        }
    }
    let mut deep = if args.deep && !args.recordings.is_empty() {
        Some(EngineCandidates::load(&ck, args.worker_dtype, cfg.max_position_embeddings.min(4096))?)
    } else {
        None
    };
    for dir in &args.recordings {
        let provider: &mut dyn Candidates = match &mut deep {
            Some(e) => e,
            None => &mut dict,
        };
        let (rec, mut tokens) = load_recorded(dir, provider)?;
        if tokens.sequences.len() > 1 {
            tokens.mark_attacker(&args.attacker_sequences).with_context(|| format!("--attacker-sequences on {}", dir.display()))?;
        }
        sequences += tokens.sequences.len();
        let k = rec.manifest.kappa();
        let scheme = rec.manifest.scheme().to_string();
        let setting = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "recorded".into());
        let weak = !scheme.starts_with("remo") && scheme != "exact";
        baselines.push(baseline(&setting, &tokens, provider.vocab_size()));
        if k > 0.0 && !kappas.contains(&k) {
            kappas.push(k);
        }
        let label = RecordingLabel {
            scheme: if scheme == "exact" { "remo".into() } else { scheme },
            kappa: (k > 0.0).then_some(k),
            setting,
            weak,
            null_twins: args.null_twins,
        };
        rows.extend(attack_recording(&rec, &tokens, provider, &list, &label)?);
    }

    kappas.sort_by(f64::total_cmp);
    let layer0 = [op_dims(&cfg, Op::Qkv).0];
    let all_ops: Vec<usize> = (0..cfg.num_hidden_layers)
        .flat_map(|_| Op::LAYER_OPS.map(|op| op_dims(&cfg, op).0))
        .chain((!cfg.tie_word_embeddings).then(|| op_dims(&cfg, Op::LmHead).0))
        .collect();
    let leakage = kappas
        .iter()
        .map(|&k| LeakageRow { kappa: k, bits_recorded_ops: leakage_bits(k, &layer0), bits_all_ops: leakage_bits(k, &all_ops) })
        .collect();
    let gate = gate::evaluate(&rows);
    let report = SuiteReport {
        mode: if args.quick { "quick".into() } else { "full".into() },
        model: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        vocab: dict.rows.rows,
        candidates: format!("all {} tokens of the vocabulary", dict.rows.rows),
        recorded_ops: if deep.is_some() { "every op of every layer".into() } else { "layer-0 qkv".into() },
        sequences,
        options: opts,
        baselines,
        rows,
        leakage,
        gate,
        seconds: t0.elapsed().as_secs_f64(),
    };
    write_outputs(&report, &args.out)?;
    eprintln!(
        "privacy suite: gate {}; report in {}",
        if report.gate.passed { "passed" } else { "FAILED" },
        args.out.join("privacy.md").display()
    );
    if args.gate && !report.gate.passed {
        bail!("privacy gate failed:\n{}", report.gate.failures.join("\n"));
    }
    Ok(())
}
