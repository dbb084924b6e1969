//! Submitting a request to the engine and turning its events into either
//! one response (collect) or an SSE stream. Dropping a `Submission` before
//! it finished (client gone, handler cancelled) cancels the request in the
//! engine, which frees its KV blocks.
//!
//! Before that: admission into the bounded request queue (503 when full),
//! and tokenization on a bounded pool of blocking threads, so a huge prompt
//! never stalls the async threads that serve every other connection.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::{json, Value};
use talaria_engine::scheduler::{EngineRequest, EventSink, RequestEvent, RequestId, SeqOutput};
use talaria_engine::{FinishReason, SampledToken};
use talaria_models::Tokenizer;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::error::ApiError;
use super::limits::{QueueSlot, MAX_N, RETRY_AFTER_S};
use super::metrics::RequestRecord;
use super::protocol::{reject_to_error, ResponseOptions};
use super::state::SharedState;

/// One choice, accumulated.
#[derive(Default, Debug)]
pub struct Choice {
    pub text: String,
    pub tokens: Vec<SampledToken>,
    pub finish: Option<FinishReason>,
}

pub fn usage_json(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Takes a place in the bounded request queue for a request of `n`
/// choices, or answers 503 with `Retry-After` when the queue is full.
/// Taken before tokenizing, so an overloaded server does no work for a
/// request it will refuse.
pub fn admit(state: &SharedState, n: Option<usize>) -> Result<Arc<QueueSlot>, ApiError> {
    let stats = state.engine.stats();
    let limits = &state.limits;
    // `n` is validated later; an out-of-range one is refused then.
    let n = n.unwrap_or(1).clamp(1, MAX_N);
    let waiting = usize::try_from(stats.waiting_seqs).unwrap_or(usize::MAX);
    let running = usize::try_from(stats.running_seqs).unwrap_or(usize::MAX);
    QueueSlot::admit(&limits.gates, n, waiting, running, limits.max_waiting_requests).map(Arc::new).ok_or_else(|| {
        ApiError::overloaded(
            format!("the server is overloaded: {} requests are already waiting; retry later", limits.max_waiting_requests),
            RETRY_AFTER_S,
        )
    })
}

/// Runs `encode` (chat-template rendering, size checks, tokenization) on a
/// blocking thread, at most a few at once.
pub async fn tokenize_off_thread<F>(state: &SharedState, encode: F) -> Result<Vec<u32>, ApiError>
where
    F: FnOnce(&Tokenizer) -> Result<Vec<u32>, ApiError> + Send + 'static,
{
    let permit = state
        .limits
        .gates
        .tokenizers
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal(format!("tokenizer pool closed: {e}")))?;
    let tokenizer = state.tokenizer.clone();
    tokio::task::spawn_blocking(move || {
        // Held by the thread, not the handler: a client that goes away
        // does not let more tokenizations run than the pool allows.
        let _permit = permit;
        encode(&tokenizer)
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizing failed: {e}")))?
}

pub struct Submission {
    state: SharedState,
    id: RequestId,
    /// This request's place in the queue, shared with the engine's sink.
    slot: Arc<QueueSlot>,
    rx: UnboundedReceiver<RequestEvent>,
    pub opts: ResponseOptions,
    start: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    /// Generated tokens per choice.
    tokens_per_choice: Vec<usize>,
    open_choices: usize,
    finish_reason: Option<FinishReason>,
    done: bool,
}

/// What the next engine event means for the response.
pub enum Progress {
    Output(SeqOutput),
    /// Every choice has finished.
    Done,
    Failed(ApiError),
}

impl Submission {
    pub fn start(state: &SharedState, req: EngineRequest, opts: ResponseOptions, slot: Arc<QueueSlot>) -> Result<Self, ApiError> {
        let (tx, rx) = unbounded_channel();
        let sink_slot = slot.clone();
        // Runs on the engine thread: the queue count follows the engine's
        // own view, whether or not the client reads its events.
        let sink: EventSink = Box::new(move |ev| {
            match &ev {
                RequestEvent::Output(o) if o.finish.is_some() => sink_slot.release_one(),
                RequestEvent::Rejected(_) | RequestEvent::Aborted { .. } => sink_slot.release_all(),
                RequestEvent::Output(_) => {}
            }
            tx.send(ev).is_ok()
        });
        let n = req.n;
        let id = state.engine.submit(req, sink).map_err(|r| reject_to_error(&r, "max_tokens"))?;
        Ok(Self {
            state: state.clone(),
            id,
            slot,
            rx,
            opts,
            start: Instant::now(),
            first_token: None,
            last_token: None,
            tokens_per_choice: vec![0; n],
            open_choices: n,
            finish_reason: None,
            done: false,
        })
    }

    pub fn completion_tokens(&self) -> usize {
        self.tokens_per_choice.iter().sum()
    }

    pub async fn next(&mut self) -> Progress {
        if self.open_choices == 0 {
            self.done = true;
            return Progress::Done;
        }
        match self.rx.recv().await {
            Some(RequestEvent::Output(o)) => {
                if !o.tokens.is_empty() {
                    let now = Instant::now();
                    self.first_token.get_or_insert(now);
                    self.last_token = Some(now);
                }
                if let Some(c) = self.tokens_per_choice.get_mut(o.index) {
                    *c += o.tokens.len();
                }
                if let Some(f) = o.finish {
                    self.open_choices = self.open_choices.saturating_sub(1);
                    // Report "length" if any choice was cut.
                    if self.finish_reason != Some(FinishReason::Length) {
                        self.finish_reason = Some(f);
                    }
                }
                Progress::Output(o)
            }
            Some(RequestEvent::Rejected(r)) => {
                self.done = true;
                Progress::Failed(reject_to_error(&r, "max_tokens"))
            }
            Some(RequestEvent::Aborted { reason }) => {
                self.done = true;
                Progress::Failed(ApiError::unavailable(format!("the request was aborted: {reason}")))
            }
            None => {
                self.done = true;
                Progress::Failed(ApiError::internal("the engine stopped"))
            }
        }
    }

    /// Waits for every choice to finish.
    pub async fn collect(mut self) -> Result<(Vec<Choice>, Self), ApiError> {
        let mut choices: Vec<Choice> = (0..self.opts.n).map(|_| Choice::default()).collect();
        loop {
            match self.next().await {
                Progress::Output(o) => {
                    if let Some(c) = choices.get_mut(o.index) {
                        c.text.push_str(&o.text);
                        c.tokens.extend(o.tokens);
                        c.finish = c.finish.or(o.finish);
                    }
                }
                Progress::Done => return Ok((choices, self)),
                Progress::Failed(e) => return Err(e),
            }
        }
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        let finished = self.open_choices == 0;
        if !self.done && !finished {
            // The client went away (or the handler was dropped): free the KV blocks now.
            self.state.engine.cancel(self.id);
            self.slot.release_all();
        }
        let e2e = self.start.elapsed().as_secs_f64();
        let gen = self.completion_tokens();
        let per_choice = self.tokens_per_choice.iter().copied().max().unwrap_or(0);
        let tpot = match (self.first_token, self.last_token) {
            (Some(a), Some(b)) if per_choice > 1 => Some((b - a).as_secs_f64() / (per_choice - 1) as f64),
            _ => None,
        };
        let reason = if finished { self.finish_reason.map_or("stop", FinishReason::as_str) } else { "abort" };
        self.state.metrics.record(&RequestRecord {
            prompt_tokens: self.opts.prompt_tokens,
            generation_tokens: gen,
            ttft_s: self.first_token.map(|t| (t - self.start).as_secs_f64()),
            tpot_s: tpot,
            e2e_s: e2e,
            finished_reason: reason,
        });
    }
}

/// How an endpoint shapes its streamed chunks.
pub trait ChunkFormat: Send + 'static {
    /// Chunks sent before any output (chat: the assistant role per choice).
    fn opening(&mut self, n: usize) -> Vec<Value>;
    /// The chunk for one sequence output, or None when there is nothing
    /// to say (no text, no finish, no logprobs).
    fn delta(&mut self, out: &SeqOutput) -> Option<Value>;
    /// The closing usage chunk.
    fn usage(&mut self, usage: Value) -> Value;
    /// Adds running usage to a chunk (`continuous_usage_stats`).
    fn with_usage(&mut self, mut chunk: Value, usage: Value) -> Value {
        chunk["usage"] = usage;
        chunk
    }
}

struct StreamState {
    sub: Submission,
    fmt: Box<dyn ChunkFormat>,
    queue: VecDeque<Event>,
    finished: bool,
    continuous_usage: bool,
}

fn data(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

/// The SSE response: chunks as they come, then usage (if asked), then
/// `data: [DONE]`. An engine failure becomes an error event.
pub fn sse_response(sub: Submission, mut fmt: Box<dyn ChunkFormat>, continuous_usage: bool) -> Response {
    let queue: VecDeque<Event> = fmt.opening(sub.opts.n).iter().map(data).collect();
    let st = StreamState { sub, fmt, queue, finished: false, continuous_usage };
    Sse::new(event_stream(st)).into_response()
}

fn event_stream(st: StreamState) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.queue.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.finished {
                return None;
            }
            match st.sub.next().await {
                Progress::Output(o) => {
                    if let Some(mut chunk) = st.fmt.delta(&o) {
                        if st.continuous_usage {
                            let u = usage_json(st.sub.opts.prompt_tokens, st.sub.completion_tokens());
                            chunk = st.fmt.with_usage(chunk, u);
                        }
                        st.queue.push_back(data(&chunk));
                    }
                }
                Progress::Done => {
                    if st.sub.opts.include_usage {
                        let u = usage_json(st.sub.opts.prompt_tokens, st.sub.completion_tokens());
                        let chunk = st.fmt.usage(u);
                        st.queue.push_back(data(&chunk));
                    }
                    st.queue.push_back(Event::default().data("[DONE]"));
                    st.finished = true;
                }
                Progress::Failed(e) => {
                    st.queue.push_back(data(&e.body()));
                    st.queue.push_back(Event::default().data("[DONE]"));
                    st.finished = true;
                }
            }
        }
    })
}

/// The text of one token for logprobs (special tokens included).
pub fn token_text(state: &SharedState, id: u32) -> String {
    state.tokenizer.decode(&[id], false).unwrap_or_default()
}

/// Completions-style logprobs for `tokens`; `offset` is the text offset of
/// the first token and is advanced.
pub fn completion_logprobs(state: &SharedState, tokens: &[SampledToken], offset: &mut usize) -> Value {
    let mut toks = Vec::new();
    let mut lps = Vec::new();
    let mut tops = Vec::new();
    let mut offsets = Vec::new();
    for t in tokens {
        let text = token_text(state, t.id);
        offsets.push(*offset);
        *offset += text.len();
        let mut top = serde_json::Map::new();
        for &(id, lp) in &t.top_logprobs {
            top.insert(token_text(state, id), json!(lp));
        }
        top.entry(text.clone()).or_insert(json!(t.logprob));
        toks.push(text);
        lps.push(t.logprob);
        tops.push(Value::Object(top));
    }
    json!({"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

/// Chat-style logprobs entries (`logprobs.content`) for `tokens`.
pub fn chat_logprobs(state: &SharedState, tokens: &[SampledToken], top_n: usize) -> Vec<Value> {
    let entry = |id: u32, lp: f32| {
        let text = token_text(state, id);
        let bytes: Vec<u8> = text.as_bytes().to_vec();
        json!({"token": text, "logprob": lp, "bytes": bytes})
    };
    tokens
        .iter()
        .map(|t| {
            let mut e = entry(t.id, t.logprob);
            e["top_logprobs"] = Value::Array(t.top_logprobs.iter().take(top_n).map(|&(id, lp)| entry(id, lp)).collect());
            e
        })
        .collect()
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:032x}", rand::random::<u128>())
}
