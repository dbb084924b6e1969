//! One model step over a `StepPlan`: the forward pass of the planned
//! chunks, then each sequence advanced past its chunk and sampled when it
//! reached its end. The serving engine and `generate()` both run it.

use talaria_models::Tokenizer;

use crate::kv_cache::KvPool;
use crate::linear::Linear;
use crate::model::{ForwardError, LlamaModel, SeqChunk, StepTimings};

use super::policy::StepPlan;
use super::request::SeqOutput;
use super::sequence::Sequence;

/// The forward pass of the plan's chunks; logits of the chunks that end
/// their sequence's known tokens, in plan order.
pub(crate) fn forward_plan(
    model: &LlamaModel,
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

/// Advances the planned sequences past their chunk and samples those at
/// their end; `emit(sequence, logits row, output)` sees each sample.
pub(crate) fn advance_and_sample(
    running: &mut [Sequence],
    plan: &StepPlan,
    logits: &[f32],
    vocab: usize,
    tok: &Tokenizer,
    mut emit: impl FnMut(&Sequence, &[f32], SeqOutput),
) {
    let mut rows = logits.chunks_exact(vocab);
    for c in &plan.chunks {
        let s = &mut running[c.seq];
        s.blocks.as_mut().expect("planned sequences hold blocks").advance(c.tokens.len());
        if s.pending() == 0 {
            let row = rows.next().expect("one logits row per sequence that asked");
            let out = s.sample_next(row, tok);
            emit(s, row, out);
        }
    }
}
