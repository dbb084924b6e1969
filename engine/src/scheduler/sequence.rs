//! One sequence (one choice of one request): its tokens, how many of them
//! have K/V in the cache, its block table, its own sampler, and the text it
//! has produced so far (incremental detokenization and stop strings).

use std::sync::Arc;

use talaria_models::{DecodeStream, Tokenizer};

use super::request::FinishReason;
use crate::kv_cache::{SeqBlocks, SwappedKv};
use crate::sampling::{SampledToken, Sampler};
use crate::stop::{StopScan, StopStrings};

use super::request::{RequestId, SeqOutput};

pub(crate) struct Sequence {
    pub req_id: RequestId,
    /// Choice index within the request.
    pub index: usize,
    /// Global admission order: older sequences are served first and are
    /// the last to be preempted.
    pub arrival: u64,
    pub prompt_len: usize,
    /// Prompt followed by the generated tokens.
    pub tokens: Vec<u32>,
    /// `None` while waiting (never run, or preempted: blocks given back).
    pub blocks: Option<SeqBlocks>,
    /// The K/V of a preempted sequence kept in CVM memory (swapped out of
    /// the pool): it resumes without recomputing.
    pub swapped: Option<SwappedKv>,
    pub finished: bool,
    sampler: Sampler,
    max_tokens: usize,
    stop_ids: Arc<[u32]>,
    stops: Arc<StopStrings>,
    stream: DecodeStream,
    text: String,
    emitted: usize,
}

/// What a sequence needs besides its prompt; shared by a request's choices.
pub(crate) struct SeqSpec {
    pub max_tokens: usize,
    /// Tokens that end the sequence (EOS unless ignored, plus the request's).
    pub stop_ids: Arc<[u32]>,
    pub stops: Arc<StopStrings>,
}

impl Sequence {
    pub fn new(req_id: RequestId, index: usize, arrival: u64, prompt: Vec<u32>, sampler: Sampler, spec: &SeqSpec) -> Self {
        Self {
            req_id,
            index,
            arrival,
            prompt_len: prompt.len(),
            tokens: prompt,
            blocks: None,
            swapped: None,
            finished: false,
            sampler,
            max_tokens: spec.max_tokens,
            stop_ids: spec.stop_ids.clone(),
            stops: spec.stops.clone(),
            stream: DecodeStream::new(true),
            text: String::new(),
            emitted: 0,
        }
    }

    /// Tokens whose K/V are in the cache.
    pub fn computed(&self) -> usize {
        match (&self.blocks, &self.swapped) {
            (Some(b), _) => b.len(),
            (None, Some(s)) => s.len,
            (None, None) => 0,
        }
    }

    /// Tokens still to run through the model (1 for a decode).
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.computed()
    }

    /// The text produced so far (cut at a stop string).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn num_generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Gives the KV blocks back; the sequence will recompute prompt and
    /// generated tokens when it runs again.
    pub fn preempt(&mut self) {
        self.blocks = None;
        self.swapped = None;
    }

    /// Samples the next token from `logits` and returns what became final.
    pub fn sample_next(&mut self, logits: &[f32], tok: &Tokenizer) -> SeqOutput {
        let t = self.sampler.sample(logits);
        self.accept(t, tok)
    }

    /// Appends a sampled token: detokenizes it, checks stop tokens, stop
    /// strings and max_tokens, and releases the text that is now final.
    fn accept(&mut self, t: SampledToken, tok: &Tokenizer) -> SeqOutput {
        self.sampler.observe(t.id);
        self.tokens.push(t.id);
        let is_stop_token = self.stop_ids.contains(&t.id);
        let before = self.text.len();
        match self.stream.step(tok, t.id) {
            Ok(piece) => self.text.push_str(&piece),
            // A decode failure loses this token's text but not the request.
            Err(e) => tracing::warn!("detokenizing token {}: {e}", t.id),
        }
        let (mut end, stop_hit) = match self.stops.scan(&self.text, before) {
            StopScan::Stop { at } => (at, true),
            StopScan::Continue { safe } => (if is_stop_token { self.text.len() } else { safe }, false),
        };
        let finish = if stop_hit || is_stop_token {
            Some(FinishReason::Stop)
        } else if self.num_generated() >= self.max_tokens {
            // Flush text held back for a stop string that never completed.
            end = self.text.len();
            Some(FinishReason::Length)
        } else {
            None
        };
        let text = self.text.get(self.emitted..end.max(self.emitted)).unwrap_or("").to_string();
        self.emitted = self.emitted.max(end);
        if stop_hit {
            self.text.truncate(end);
        }
        self.finished = finish.is_some();
        SeqOutput { index: self.index, tokens: vec![t], text, finish }
    }
}

impl Sequence {
    /// Ends the sequence early (it can never fit in the KV cache): flushes
    /// the held-back text and reports `length`.
    pub fn finish_early(&mut self) -> SeqOutput {
        let text = self.text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = self.text.len();
        self.finished = true;
        SeqOutput { index: self.index, tokens: Vec::new(), text, finish: Some(FinishReason::Length) }
    }
}

/// Where a forked choice goes.
pub(crate) enum Forked {
    /// Its KV is forked and its first token sampled.
    Running(Sequence),
    /// It must compute its prompt itself.
    Waiting(Sequence),
}
