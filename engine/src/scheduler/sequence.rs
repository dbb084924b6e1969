//! One sequence (one choice of one request): its tokens, how many of them
//! have K/V in the cache, its block table, its own sampler, the text it
//! has produced so far (incremental detokenization and stop strings), and
//! its prompt's logprobs when asked for.

use std::sync::Arc;

use talaria_models::{DecodeStream, Tokenizer};

use super::request::FinishReason;
use crate::kv_cache::{KvPool, SeqBlocks, SwappedKv};
use crate::model::LogitsWanted;
use crate::prefix_hash::{extend_block_hashes, BlockHash, CacheSalt};
use crate::sampling::{score_token, SampledToken, Sampler};
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
    /// Positions whose rows have gone to the backend at least once (by this
    /// sequence, or by the choice it was forked from): computing one of
    /// them again is a re-send, and is counted.
    pub sent: usize,
    prefix: Option<PrefixKey>,
    sampler: Sampler,
    max_tokens: usize,
    stop_ids: Arc<[u32]>,
    stops: Arc<StopStrings>,
    stream: DecodeStream,
    text: String,
    emitted: usize,
    prompt_logprobs: PromptLogprobs,
}

/// The logprobs of a sequence's prompt tokens, scored from the logits of
/// its prefill chunks (which ask for every position's logits meanwhile).
enum PromptLogprobs {
    /// Not asked for.
    Off,
    /// `scored[p]` is prompt token `p + 1` given the tokens before it, with
    /// the `top` most likely alternatives.
    Scoring { top: usize, scored: Vec<SampledToken> },
    /// Every prompt token after the first; shared with the choices forked
    /// from this sequence.
    Done(Arc<[SampledToken]>),
}

impl PromptLogprobs {
    fn new(top: Option<usize>, prompt_len: usize) -> Self {
        match top {
            None => Self::Off,
            Some(_) if prompt_len < 2 => Self::Done(Arc::from([])),
            Some(top) => Self::Scoring { top, scored: Vec::with_capacity(prompt_len - 1) },
        }
    }

    /// The position whose logits score the next prompt token, while some
    /// are left.
    fn next_position(&self) -> Option<usize> {
        match self {
            Self::Scoring { scored, .. } => Some(scored.len()),
            Self::Off | Self::Done(_) => None,
        }
    }
}

/// A sequence's place in the prefix cache.
struct PrefixKey {
    salt: CacheSalt,
    /// Hashes of its full blocks so far.
    hashes: Vec<BlockHash>,
    /// Blocks already offered to the cache.
    offered: usize,
}

/// What a sequence needs besides its prompt; shared by a request's choices.
pub(crate) struct SeqSpec {
    pub max_tokens: usize,
    /// Tokens that end the sequence (EOS unless ignored, plus the request's).
    pub stop_ids: Arc<[u32]>,
    pub stops: Arc<StopStrings>,
    pub cache_salt: Option<CacheSalt>,
}

impl Sequence {
    pub fn new(req_id: RequestId, index: usize, arrival: u64, prompt: Vec<u32>, mut sampler: Sampler, spec: &SeqSpec) -> Self {
        sampler.observe_prompt(&prompt);
        let prompt_logprobs = PromptLogprobs::new(sampler.params().prompt_logprobs, prompt.len());
        Self {
            req_id,
            index,
            arrival,
            prompt_len: prompt.len(),
            tokens: prompt,
            blocks: None,
            swapped: None,
            finished: false,
            sent: 0,
            prefix: spec.cache_salt.map(|salt| PrefixKey { salt, hashes: Vec::new(), offered: 0 }),
            sampler,
            max_tokens: spec.max_tokens,
            stop_ids: spec.stop_ids.clone(),
            stops: spec.stops.clone(),
            stream: DecodeStream::new(true),
            text: String::new(),
            emitted: 0,
            prompt_logprobs,
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

    /// A block table for a sequence that holds none: the cached blocks of
    /// the longest prefix of its tokens this client computed before (never
    /// the last token, whose logits the next step needs), else an empty one.
    /// A sequence scoring its prompt computes every position itself.
    pub fn fresh_blocks(&mut self, kv: &KvPool) -> SeqBlocks {
        let scoring = self.prompt_logprobs.next_position().is_some();
        let Some(p) = self.prefix.as_mut().filter(|_| !scoring) else { return kv.new_sequence() };
        extend_block_hashes(&p.salt, &self.tokens[..self.tokens.len() - 1], kv.block_size, &mut p.hashes);
        let blocks = kv.new_sequence_from_cache(&p.hashes);
        p.offered = blocks.block_table().len();
        blocks
    }

    /// Offers the sequence's full, computed blocks to the prefix cache.
    pub fn offer_computed_blocks(&mut self, kv: &KvPool) {
        let (Some(p), Some(b)) = (self.prefix.as_mut(), self.blocks.as_ref()) else { return };
        let full = b.len() / kv.block_size;
        if full <= p.offered {
            return;
        }
        extend_block_hashes(&p.salt, &self.tokens[..b.len()], kv.block_size, &mut p.hashes);
        kv.cache_blocks(&b.block_table()[p.offered..full], &p.hashes[p.offered..full]);
        p.offered = full;
    }

    /// Gives the KV blocks back; the sequence will recompute prompt and
    /// generated tokens when it runs again.
    pub fn preempt(&mut self) {
        self.blocks = None;
        self.swapped = None;
        if let Some(p) = self.prefix.as_mut() {
            p.offered = 0;
        }
    }

    /// Which logits a chunk of `n` tokens from position `from` needs: every
    /// position's while it holds prompt positions still to score, else the
    /// last one's when it ends the known tokens (the next is sampled).
    pub fn logits_wanted(&self, from: usize, n: usize) -> LogitsWanted {
        if self.prompt_logprobs.next_position().is_some_and(|p| (from..from + n).contains(&p)) {
            LogitsWanted::All
        } else if from + n == self.tokens.len() {
            LogitsWanted::Last
        } else {
            LogitsWanted::None
        }
    }

    /// Scores the prompt tokens predicted by `rows`, the logits of every
    /// position of a chunk from position `from`; positions already scored
    /// (a recompute after preemption) are skipped.
    pub fn score_prompt<'a>(&mut self, from: usize, rows: impl Iterator<Item = &'a [f32]>) {
        let PromptLogprobs::Scoring { top, scored } = &mut self.prompt_logprobs else { return };
        for (pos, row) in (from..).zip(rows) {
            if pos == scored.len() && pos + 1 < self.prompt_len {
                scored.push(score_token(row, self.tokens[pos + 1], *top));
            }
        }
        if scored.len() + 1 >= self.prompt_len {
            self.prompt_logprobs = PromptLogprobs::Done(std::mem::take(scored).into());
        }
    }

    /// A choice forked from `parent` (same prompt) takes its scored prompt
    /// instead of scoring it again.
    pub fn share_prompt_logprobs(&mut self, parent: &Sequence) {
        if let PromptLogprobs::Done(scored) = &parent.prompt_logprobs {
            self.prompt_logprobs = PromptLogprobs::Done(scored.clone());
        }
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
        let prompt_logprobs = match &self.prompt_logprobs {
            PromptLogprobs::Done(scored) if self.num_generated() == 1 => Some(scored.clone()),
            _ => None,
        };
        SeqOutput { index: self.index, tokens: vec![t], text, finish, prompt_logprobs }
    }
}

impl Sequence {
    /// Ends the sequence early (it can never fit in the KV cache): flushes
    /// the held-back text and reports `length`.
    pub fn finish_early(&mut self) -> SeqOutput {
        let text = self.text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = self.text.len();
        self.finished = true;
        SeqOutput { index: self.index, tokens: Vec::new(), text, finish: Some(FinishReason::Length), prompt_logprobs: None }
    }
}

/// Where a forked choice goes.
pub(crate) enum Forked {
    /// Its KV is forked and its first token sampled.
    Running(Sequence),
    /// It must compute its prompt itself.
    Waiting(Sequence),
}
