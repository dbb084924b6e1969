//! The request a caller submits to the engine and the events it streams
//! back, one `SeqOutput` per sequence per step that produced a token.

use std::sync::Arc;

use crate::prefix_hash::CacheSalt;
use crate::sampling::{SampledToken, SamplingParams};

pub type RequestId = u64;

#[derive(Clone, Debug)]
pub struct EngineRequest {
    pub prompt_ids: Vec<u32>,
    pub params: SamplingParams,
    /// Independent samples of the same prompt (choices `0..n`).
    pub n: usize,
    pub max_tokens: usize,
    pub stop_strings: Vec<String>,
    /// Extra tokens that end a sequence (honoured even with `ignore_eos`).
    pub stop_token_ids: Vec<u32>,
    /// Keep generating past the model's own end-of-text tokens.
    pub ignore_eos: bool,
    /// Who may share this request's cached K/V blocks (the prefix cache):
    /// requests with the same salt only. `None`: it neither reads nor fills
    /// the cache.
    pub cache_salt: Option<CacheSalt>,
}

impl EngineRequest {
    /// A greedy request for `max_tokens` tokens, one choice.
    pub fn greedy(prompt_ids: Vec<u32>, max_tokens: usize) -> Self {
        Self {
            prompt_ids,
            params: SamplingParams::greedy(),
            n: 1,
            max_tokens,
            stop_strings: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            cache_salt: None,
        }
    }
}

/// Why a sequence ended.
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

/// New output of one sequence (choice `index`) after a step.
#[derive(Clone, Debug)]
pub struct SeqOutput {
    pub index: usize,
    /// Tokens sampled this step (one, or none when only text was flushed).
    pub tokens: Vec<SampledToken>,
    /// Text that became final this step (held back while it might still be
    /// the start of a stop string; never contains a stop string).
    pub text: String,
    /// Set on the sequence's last output.
    pub finish: Option<FinishReason>,
    /// On a choice's first sampled token, when `prompt_logprobs` was asked
    /// for: the logprob of each prompt token after the first given the ones
    /// before it (one entry per prompt token but the first; shared by the
    /// request's choices).
    pub prompt_logprobs: Option<Arc<[SampledToken]>>,
}

#[derive(Clone, Debug)]
pub enum RequestEvent {
    Output(SeqOutput),
    /// Refused before it ran; no other event follows.
    Rejected(RejectReason),
    /// Stopped by the engine (forward failure, shutdown); no other event follows.
    Aborted {
        reason: String,
    },
}

/// Why a request cannot be served at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("n must be at least 1")]
    ZeroN,
    #[error("max_tokens must be at least 1")]
    ZeroMaxTokens,
    #[error("This model's maximum context length is {context} tokens. However, you requested {} tokens ({prompt} in the prompt, {max_tokens} for the completion). Please reduce the prompt or max_tokens.", prompt + max_tokens)]
    TooLong { prompt: usize, max_tokens: usize, context: usize },
    #[error("the request needs up to {needed} tokens of KV cache per sequence but the cache holds only {capacity}; reduce the prompt or max_tokens")]
    ExceedsKvCache { needed: usize, capacity: usize },
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    BadToken { id: u32, vocab: usize },
    #[error("invalid sampling parameters: {0}")]
    BadParams(String),
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// Where the engine delivers a request's events. Returning `false` means the
/// receiver is gone (client disconnected): the engine drops the request and
/// its KV blocks.
pub type EventSink = Box<dyn FnMut(RequestEvent) -> bool + Send>;
