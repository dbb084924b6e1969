//! One model step over a `StepPlan`: the forward pass of the planned
//! chunks, then each sequence advanced past its chunk and sampled when it
//! reached its end. The serving engine and `generate()` both run it.

use talaria_models::Tokenizer;

use crate::kv_cache::KvPool;
use crate::linear::Linear;
use crate::model::{DecoderModel, ForwardError, LogitsWanted, SeqChunk, StepTimings};

use super::policy::StepPlan;
use super::request::SeqOutput;
use super::sequence::Sequence;

/// The forward pass of the plan's chunks; the logits rows each chunk asked
/// for, in plan order.
pub(crate) fn forward_plan(
    model: &DecoderModel,
    kv: &mut KvPool,
    linear: &mut dyn Linear,
    running: &[Sequence],
    plan: &StepPlan,
    timings: &mut StepTimings,
) -> Result<Vec<f32>, ForwardError> {
    let chunks: Vec<SeqChunk> = plan
        .chunks
        .iter()
        .map(|c| SeqChunk {
            blocks: running[c.seq].blocks.as_ref().expect("planned sequences hold blocks"),
            tokens: &running[c.seq].tokens[c.tokens.clone()],
            logits: c.logits,
        })
        .collect();
    model.forward(&chunks, kv, linear, timings)
}

/// Advances the planned sequences past their chunk, scores the prompt
/// tokens of chunks that asked for every position's logits, and samples
/// the sequences at their end; `emit(sequence, logits row, output)` sees
/// each sample.
pub(crate) fn advance_and_sample(
    running: &mut [Sequence],
    plan: &StepPlan,
    logits: &[f32],
    vocab: usize,
    tok: &Tokenizer,
    mut emit: impl FnMut(&Sequence, &[f32], SeqOutput),
) {
    let mut rest = logits;
    for c in &plan.chunks {
        let rows = c.logits.positions(c.tokens.len()).len();
        let (chunk_logits, after) = rest.split_at(rows * vocab);
        rest = after;
        let s = &mut running[c.seq];
        s.blocks.as_mut().expect("planned sequences hold blocks").advance(c.tokens.len());
        if c.logits == LogitsWanted::All {
            s.score_prompt(c.tokens.start, chunk_logits.chunks_exact(vocab));
        }
        if s.pending() == 0 {
            let row = chunk_logits.chunks_exact(vocab).next_back().expect("a chunk that ends the known tokens has logits");
            let out = s.sample_next(row, tok);
            emit(s, row, out);
        }
    }
}
