//! Offline throughput of the plain engine on the real model: prefill of
//! 128- and 512-token prompts and decode at batch 1 (and larger batches),
//! for the weights as stored and converted to bf16 and f32.

use std::sync::Arc;
use std::time::Instant;

use talaria_engine::{DecoderModel, KvPool, Linear, LocalLinear, LogitsWanted, SeqChunk, StepTimings};
use talaria_kernels::WeightFormat;
use talaria_models::{fetch::resolve_model, Checkpoint, CvmWeights, Progress, Unit, WorkerWeights};

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF file, an HF folder or a model fetched by name (smollm2-135m,
    /// gemma3-270m); default: smollm2-135m.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Weight precisions to measure.
    #[arg(long, value_delimiter = ',', default_value = "stored,bf16,f32")]
    dtypes: Vec<WeightFormat>,
    /// Prompt lengths for prefill.
    #[arg(long, value_delimiter = ',', default_value = "128,512")]
    prefill: Vec<usize>,
    /// Decode batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    batch: Vec<usize>,
    /// Decode steps per measurement.
    #[arg(long, default_value_t = 64)]
    decode_steps: usize,
    /// Prompt tokens of each sequence before its decode steps (decode at a
    /// long context is bound by reading the KV cache, not the weights).
    #[arg(long, default_value_t = 32)]
    decode_context: usize,
    /// Append the table to bench/RESULTS.md.
    #[arg(long)]
    record: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let ck = Checkpoint::open(resolve_model(a.model.as_deref(), false)?)?;
    let mut table = String::from("| weights | measurement | tokens/s |\n|---|---|---|\n");
    let runs = a.dtypes.len() * (a.prefill.len() + a.batch.len());
    let progress = Progress::new("measurements", runs as u64, Unit::Items("measurements"));
    for d in &a.dtypes {
        let dtype = *d;
        let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(&ck, dtype)?)?;
        let mut linear = LocalLinear::new(Arc::new(WorkerWeights::load(&ck, dtype)?));
        let max_batch = a.batch.iter().copied().max().unwrap_or(1);
        let max_len = a.prefill.iter().copied().max().unwrap_or(128).max(a.decode_context + a.decode_steps + 32);
        let mut kv = KvPool::with_precision(&model.config, (max_len.div_ceil(16) + 1) * max_batch.max(1) + 8, 16, linear.precision());
        for &n in &a.prefill {
            let tokens: Vec<u32> = (0..n as u32).map(|i| 100 + (i * 7919) % 40000).collect();
            // One warm-up, then the best of three.
            let (mut best, mut best_t) = (f64::MAX, StepTimings::default());
            for _ in 0..4 {
                let mut seq = kv.new_sequence();
                seq.reserve(n)?;
                let mut t = StepTimings::default();
                let t0 = Instant::now();
                model.forward(&[SeqChunk { blocks: &seq, tokens: &tokens, logits: LogitsWanted::Last }], &mut kv, &mut linear, &mut t)?;
                let dt = t0.elapsed().as_secs_f64();
                if dt < best {
                    (best, best_t) = (dt, t);
                }
            }
            let tps = n as f64 / best;
            let linear_pct = 100.0 * best_t.linear_s / (best_t.linear_s + best_t.cvm_s);
            progress.suspend(|| println!("{d}: prefill {n}: {tps:.0} tokens/s (linear {linear_pct:.0}%)"));
            table.push_str(&format!("| {d} | prefill {n} tokens | {tps:.0} |\n"));
            progress.inc(1);
        }
        for &b in &a.batch {
            let mut seqs: Vec<_> = (0..b).map(|_| kv.new_sequence()).collect();
            let prompt: Vec<u32> = (0..a.decode_context as u32).map(|i| 200 + (i * 7919) % 40000).collect();
            for s in seqs.iter_mut() {
                s.reserve(a.decode_context + a.decode_steps + 1)?;
                model.forward(
                    &[SeqChunk { blocks: s, tokens: &prompt, logits: LogitsWanted::Last }],
                    &mut kv,
                    &mut linear,
                    &mut StepTimings::default(),
                )?;
                s.advance(a.decode_context);
            }
            let step_tokens: Vec<[u32; 1]> = (0..b).map(|i| [300 + i as u32]).collect();
            let mut t = StepTimings::default();
            let t0 = Instant::now();
            for _ in 0..a.decode_steps {
                let chunks: Vec<SeqChunk> =
                    seqs.iter().zip(&step_tokens).map(|(s, tok)| SeqChunk { blocks: s, tokens: tok, logits: LogitsWanted::Last }).collect();
                model.forward(&chunks, &mut kv, &mut linear, &mut t)?;
                drop(chunks);
                seqs.iter_mut().for_each(|s| s.advance(1));
            }
            let dt = t0.elapsed().as_secs_f64();
            let tps = (a.decode_steps * b) as f64 / dt;
            progress.suspend(|| {
                println!(
                    "{d}: decode batch {b}: {tps:.1} tokens/s ({:.2} ms/step; linear {:.0}%)",
                    dt * 1e3 / a.decode_steps as f64,
                    100.0 * t.linear_s / (t.linear_s + t.cvm_s)
                )
            });
            let at = if a.decode_context == 32 { String::new() } else { format!(" after {} tokens", a.decode_context) };
            table.push_str(&format!("| {d} | decode batch {b}{at} | {tps:.1} |\n"));
            progress.inc(1);
        }
    }
    drop(progress);
    println!("\n{table}");
    if a.record {
        crate::machine::append_results("Offline throughput, plain engine (`bench throughput`)", &table)?;
    }
    Ok(())
}
