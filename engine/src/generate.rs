//! One request, start to finish, on a model + KV pool + linear backend:
//! chunked prefill, then decode until a stop condition, through the
//! scheduler's step. The CLI and the fidelity tests use it; the server's
//! engine batches the same steps.

use std::sync::Arc;
use std::time::Instant;

use talaria_models::Tokenizer;

use crate::kv_cache::{KvFull, KvPool};
use crate::linear::Linear;
use crate::model::{DecoderModel, ForwardError, StepTimings};
use crate::sampling::{SampledToken, Sampler, SamplingParams};
use crate::scheduler::{advance_and_sample, forward_plan, FinishReason, Scheduler, SchedulerConfig, SeqSpec, Sequence};
use crate::stop::StopStrings;

/// Prefill is cut into chunks of this many tokens to bound activation memory.
pub const PREFILL_CHUNK: usize = 512;

#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt_ids: Vec<u32>,
    pub params: SamplingParams,
    pub max_tokens: usize,
    pub stop_strings: Vec<String>,
    pub ignore_eos: bool,
}

#[derive(Debug)]
pub struct GenerateOutput {
    pub tokens: Vec<SampledToken>,
    pub text: String,
    pub finish: FinishReason,
    pub prefill_s: f64,
    pub decode_s: f64,
    pub timings: StepTimings,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("prompt is empty")]
    EmptyPrompt,
    #[error("prompt of {prompt} tokens plus max_tokens {max_tokens} exceeds the context length {context}")]
    TooLong { prompt: usize, max_tokens: usize, context: usize },
    #[error(transparent)]
    Kv(#[from] crate::kv_cache::KvFull),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error(transparent)]
    Tokenizer(#[from] talaria_models::ModelError),
}

/// Generates for one request: a loop over the scheduler's step (prefill in
/// chunks of `PREFILL_CHUNK`, then one token per step) on one sequence, so
/// sampling, detokenizing and stop strings are the serving engine's.
/// `on_step(logits, token, text_piece)` sees the logits each token was
/// sampled from and the text that became final with it.
pub fn generate(
    model: &DecoderModel,
    kv: &mut KvPool,
    linear: &mut dyn Linear,
    tok: &Tokenizer,
    req: &GenerateRequest,
    mut on_step: impl FnMut(&[f32], &SampledToken, &str),
) -> Result<GenerateOutput, GenerateError> {
    let n = req.prompt_ids.len();
    if n == 0 {
        return Err(GenerateError::EmptyPrompt);
    }
    let context = model.config.max_position_embeddings;
    if n + req.max_tokens > context {
        return Err(GenerateError::TooLong { prompt: n, max_tokens: req.max_tokens, context });
    }
    let stop_ids: Vec<u32> = if req.ignore_eos { Vec::new() } else { tok.stop_ids.clone() };
    let spec = SeqSpec {
        max_tokens: req.max_tokens,
        stop_ids: stop_ids.into(),
        stops: Arc::new(StopStrings::new(req.stop_strings.clone())),
        cache_salt: None,
    };
    let mut sched = Scheduler::new(SchedulerConfig { max_num_batched_tokens: PREFILL_CHUNK, max_num_seqs: 1, max_swap_bytes: Some(0) });
    sched.enqueue(Sequence::new(0, 0, 0, req.prompt_ids.clone(), Sampler::new(req.params.clone()), &spec));

    let mut timings = StepTimings::default();
    let t0 = Instant::now();
    let mut prefill_s: Option<f64> = None;
    let mut tokens = Vec::new();
    let mut finish = None;
    while finish.is_none() {
        let (plan, never_fit) = sched.schedule(kv);
        if plan.is_empty() || !never_fit.is_empty() {
            let a = kv.allocator();
            let needed = (n + tokens.len()).div_ceil(kv.block_size);
            return Err(KvFull { needed, free: a.free_blocks(), total: a.total_blocks() }.into());
        }
        let logits = forward_plan(model, kv, linear, &sched.running, &plan, &mut timings)?;
        advance_and_sample(&mut sched.running, &plan, &logits, model.config.vocab_size, tok, |_, row, out| {
            prefill_s.get_or_insert_with(|| t0.elapsed().as_secs_f64());
            if let Some(t) = out.tokens.first() {
                on_step(row, t, &out.text);
                tokens.push(t.clone());
            }
            finish = out.finish;
        });
    }
    let prefill_s = prefill_s.unwrap_or_default();
    let text = sched.running.first().map(|s| s.text().to_string()).unwrap_or_default();
    let finish = finish.expect("the loop ends on a finish");
    Ok(GenerateOutput { tokens, text, finish, prefill_s, decode_s: t0.elapsed().as_secs_f64() - prefill_s, timings })
}
