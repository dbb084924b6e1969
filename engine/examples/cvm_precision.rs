//! Times the weight-free half of one prefill and of decode steps in f32 and
//! in f64 activations (both over f64-accumulated local products), to see
//! what the exact mode's f64 CVM half costs.
//!
//!   cargo run --release -p talaria-engine --example cvm_precision [-- PREFILL [STREAMS]]
//!
//! Decode runs `STREAMS` sequences (default 1) together, each after its
//! own prefill; the decode times are per step.
//!
//! `ONLY=f32` or `ONLY=f64` runs one precision (for profiling);
//! `TALARIA_MODEL` names another model (`gemma3-270m`, or a path).

use std::sync::Arc;

use talaria_engine::{DecoderModel, KvPool, Linear, LocalLinear, LogitsWanted, Rows, RowsMut, SeqChunk, StepTimings};
use talaria_kernels::WeightFormat;
use talaria_models::{fetch::resolve_model, Checkpoint, CvmWeights, WorkerWeights};

/// f64-accumulated products either way; only the activations differ.
struct ExactProducts {
    inner: LocalLinear,
    f64_activations: bool,
}

impl Linear for ExactProducts {
    fn forward(&mut self, id: talaria_models::OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        self.inner.forward(id, rows, x, out)
    }
    fn precision(&self) -> talaria_engine::Precision {
        if self.f64_activations {
            talaria_engine::Precision::F64
        } else {
            talaria_engine::Precision::F32
        }
    }
    fn name(&self) -> String {
        "exact-products".into()
    }
}

fn main() -> anyhow::Result<()> {
    let prefill: usize = std::env::args().nth(1).map_or(512, |v| v.parse().unwrap());
    let ck = Checkpoint::open(resolve_model(std::env::var_os("TALARIA_MODEL").as_deref().map(std::path::Path::new), false)?)?;
    let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(&ck, WeightFormat::Stored)?)?;
    let weights = Arc::new(WorkerWeights::load(&ck, WeightFormat::Stored)?);
    let streams: usize = std::env::args().nth(2).map_or(1, |v| v.parse().unwrap());
    let tokens: Vec<u32> = (0..prefill as u32).map(|i| 100 + (i * 37) % 5000).collect();
    for round in 0..2 {
        for f64_activations in [false, true].into_iter().filter(|&f| std::env::var("ONLY").map_or(true, |o| (o == "f64") == f)) {
            let mut linear = ExactProducts { inner: LocalLinear::exact(weights.clone()), f64_activations };
            let mut kv = KvPool::with_precision(&model.config, streams * (prefill.div_ceil(16) + 4), 16, linear.precision());
            let mut seqs = Vec::new();
            let mut t = StepTimings::default();
            for _ in 0..streams {
                let mut seq = kv.new_sequence();
                seq.reserve(prefill + 16)?;
                model.forward(&[SeqChunk { blocks: &seq, tokens: &tokens, logits: LogitsWanted::Last }], &mut kv, &mut linear, &mut t)?;
                seq.advance(prefill);
                seqs.push(seq);
            }
            let mut td = StepTimings::default();
            for i in 0..16 {
                let next = [200 + i];
                let chunks: Vec<SeqChunk> =
                    seqs.iter().map(|seq| SeqChunk { blocks: seq, tokens: &next, logits: LogitsWanted::Last }).collect();
                model.forward(&chunks, &mut kv, &mut linear, &mut td)?;
                seqs.iter_mut().for_each(|seq| seq.advance(1));
            }
            println!(
                "round {round} {}: prefill {prefill} (x{streams}): CVM {:.1} ms, linear {:.1} ms | decode, {streams} streams: CVM {:.2} ms/step, linear {:.2} ms/step",
                if f64_activations { "f64" } else { "f32" },
                t.cvm_s * 1e3,
                t.linear_s * 1e3,
                td.cvm_s * 1e3 / 16.0,
                td.linear_s * 1e3 / 16.0
            );
        }
    }
    Ok(())
}
