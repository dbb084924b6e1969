//! One request, start to finish, on a model + KV pool + linear backend:
//! chunked prefill, then decode until a stop condition. The CLI and the
//! fidelity tests use it; the server's scheduler batches the same steps.

use std::time::Instant;

use talaria_models::{DecodeStream, Tokenizer};

use crate::kv_cache::KvPool;
use crate::linear::Linear;
use crate::model::{ForwardError, LlamaModel, LogitsWanted, SeqChunk, StepTimings};
use crate::sampling::{SampledToken, Sampler, SamplingParams};
use crate::stop::{StopScan, StopStrings};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
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

/// Generates for one request. `on_step(logits, token, text_piece)` sees the
/// logits each token was sampled from and the newly emitted text.
pub fn generate(
    model: &LlamaModel,
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
    let mut seq = kv.new_sequence();
    let mut timings = StepTimings::default();
    let mut sampler = Sampler::new(req.params.clone());
    let stops = StopStrings::new(req.stop_strings.clone());
    let mut stream = DecodeStream::new(true);
    let (mut text, mut emitted) = (String::new(), 0usize);

    let t0 = Instant::now();
    let mut logits = Vec::new();
    for (i, chunk) in req.prompt_ids.chunks(PREFILL_CHUNK).enumerate() {
        seq.reserve(chunk.len())?;
        let last = (i + 1) * PREFILL_CHUNK >= n;
        let wanted = if last { LogitsWanted::Last } else { LogitsWanted::None };
        logits = model.forward(&[SeqChunk { blocks: &seq, tokens: chunk, logits: wanted }], kv, linear, &mut timings)?;
        seq.advance(chunk.len());
    }
    let prefill_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let mut tokens = Vec::new();
    let mut finish = FinishReason::Length;
    while tokens.len() < req.max_tokens {
        let t = sampler.sample(&logits);
        sampler.observe(t.id);
        let is_stop_token = !req.ignore_eos && tok.stop_ids.contains(&t.id);
        text.push_str(&stream.step(tok, t.id)?);
        let (piece_end, stop_hit) = match stops.scan(&text) {
            StopScan::Stop { at } => (at, true),
            StopScan::Continue { safe } => (if is_stop_token { text.len() } else { safe }, false),
        };
        let piece = text.get(emitted..piece_end.max(emitted)).unwrap_or("").to_string();
        emitted = emitted.max(piece_end);
        on_step(&logits, &t, &piece);
        tokens.push(t);
        if stop_hit {
            text.truncate(piece_end);
            finish = FinishReason::Stop;
            break;
        }
        if is_stop_token {
            finish = FinishReason::Stop;
            break;
        }
        if tokens.len() == req.max_tokens {
            break;
        }
        seq.reserve(1)?;
        let last = [tokens.last().expect("nonempty").id];
        logits = model.forward(&[SeqChunk { blocks: &seq, tokens: &last, logits: LogitsWanted::Last }], kv, linear, &mut timings)?;
        seq.advance(1);
    }
    if finish == FinishReason::Length && emitted < text.len() {
        // Flush text held back for a stop string that never completed.
        let piece = text[emitted..].to_string();
        if let Some(t) = tokens.last() {
            on_step(&[], t, &piece);
        }
    }
    Ok(GenerateOutput { tokens, text, finish, prefill_s, decode_s: t1.elapsed().as_secs_f64(), timings })
}
