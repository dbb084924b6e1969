//! Submitting a request to the engine (one engine request per prompt) and
//! turning its events into either one response (collect) or an SSE stream.
//! Dropping a `Submission` before it finished (client gone, handler
//! cancelled, one prompt failed) cancels its requests in the engine, which
//! frees their KV blocks.
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
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::error::ApiError;
use super::limits::{QueueSlot, RETRY_AFTER_S};
use super::metrics::RequestRecord;
use super::protocol::{reject_to_error, ResponseOptions};
use super::state::SharedState;

/// One choice, accumulated.
#[derive(Default, Debug)]
pub struct Choice {
    pub text: String,
    pub tokens: Vec<SampledToken>,
    pub finish: Option<FinishReason>,
    /// Its prompt's tokens scored, when asked for (see `SeqOutput`).
    pub prompt_logprobs: Option<Arc<[SampledToken]>>,
}

fn usage_json(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Takes a place in the bounded request queue for `seqs` sequences (every
/// choice of every prompt), or answers 503 with `Retry-After` when the
/// queue is full. Taken before tokenizing, so an overloaded server does no
/// work for a request it will refuse.
pub fn admit(state: &SharedState, seqs: usize) -> Result<Arc<QueueSlot>, ApiError> {
    let stats = state.engine.stats();
    let limits = &state.limits;
    let waiting = usize::try_from(stats.waiting_seqs).unwrap_or(usize::MAX);
    let running = usize::try_from(stats.running_seqs).unwrap_or(usize::MAX);
    QueueSlot::admit(&limits.gates, seqs, waiting, running, limits.max_waiting_requests).map(Arc::new).ok_or_else(|| {
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

/// The engine requests of one API request, one per prompt, read as one:
/// choice `j` of prompt `i` is choice `i * n + j`.
pub struct Submission {
    state: SharedState,
    /// One per prompt, in order.
    ids: Vec<RequestId>,
    /// This request's place in the queue, shared with the engine's sinks.
    slot: Arc<QueueSlot>,
    /// Every prompt's events.
    rx: UnboundedReceiver<RequestEvent>,
    pub opts: ResponseOptions,
    prompt_tokens: usize,
    start: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    /// Generated tokens per choice.
    tokens_per_choice: Vec<usize>,
    open_choices: usize,
    finish_reason: Option<FinishReason>,
}

/// What the next engine event means for the response.
pub enum Progress {
    Output(SeqOutput),
    /// Every choice has finished.
    Done,
    Failed(ApiError),
}

impl Submission {
    /// Submits one engine request per prompt (`opts.n` choices each). Every
    /// prompt was checked before; should the engine still refuse one, the
    /// ones already submitted are cancelled (dropping the half-built value).
    pub fn start(state: &SharedState, reqs: Vec<EngineRequest>, opts: ResponseOptions, slot: Arc<QueueSlot>) -> Result<Self, ApiError> {
        let (tx, rx) = unbounded_channel();
        let choices = reqs.len() * opts.n;
        let mut sub = Self {
            state: state.clone(),
            ids: Vec::with_capacity(reqs.len()),
            slot,
            rx,
            prompt_tokens: reqs.iter().map(|r| r.prompt_ids.len()).sum(),
            opts,
            start: Instant::now(),
            first_token: None,
            last_token: None,
            tokens_per_choice: vec![0; choices],
            open_choices: choices,
            finish_reason: None,
        };
        for (i, req) in reqs.into_iter().enumerate() {
            let sink = event_sink(tx.clone(), sub.slot.clone(), i * sub.opts.n);
            let id = state.engine.submit(req, sink).map_err(|r| reject_to_error(&r, "max_tokens"))?;
            sub.ids.push(id);
        }
        Ok(sub)
    }

    /// Choices of all prompts together.
    pub fn choices(&self) -> usize {
        self.tokens_per_choice.len()
    }

    pub fn completion_tokens(&self) -> usize {
        self.tokens_per_choice.iter().sum()
    }

    /// Usage so far: every prompt once, every choice's tokens.
    pub fn usage(&self) -> Value {
        usage_json(self.prompt_tokens, self.completion_tokens())
    }

    pub async fn next(&mut self) -> Progress {
        if self.open_choices == 0 {
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
            Some(RequestEvent::Rejected(r)) => Progress::Failed(reject_to_error(&r, "max_tokens")),
            Some(RequestEvent::Aborted { reason }) => Progress::Failed(ApiError::unavailable(format!("the request was aborted: {reason}"))),
            None => Progress::Failed(ApiError::internal("the engine stopped")),
        }
    }

    /// Waits for every choice to finish.
    pub async fn collect(mut self) -> Result<(Vec<Choice>, Self), ApiError> {
        let mut choices: Vec<Choice> = (0..self.choices()).map(|_| Choice::default()).collect();
        loop {
            match self.next().await {
                Progress::Output(o) => {
                    if let Some(c) = choices.get_mut(o.index) {
                        c.text.push_str(&o.text);
                        c.tokens.extend(o.tokens);
                        c.finish = c.finish.or(o.finish);
                        c.prompt_logprobs = c.prompt_logprobs.take().or(o.prompt_logprobs);
                    }
                }
                Progress::Done => return Ok((choices, self)),
                Progress::Failed(e) => return Err(e),
            }
        }
    }
}

/// Where the engine delivers one prompt's events (on its thread): choice
/// indexes shifted by `first_choice`, and the queue count following the
/// engine's own view, whether or not the client reads the events.
fn event_sink(tx: UnboundedSender<RequestEvent>, slot: Arc<QueueSlot>, first_choice: usize) -> EventSink {
    Box::new(move |mut ev| {
        match &mut ev {
            RequestEvent::Output(o) => {
                o.index += first_choice;
                if o.finish.is_some() {
                    slot.release_one();
                }
            }
            RequestEvent::Rejected(_) | RequestEvent::Aborted { .. } => slot.release_all(),
        }
        tx.send(ev).is_ok()
    })
}

impl Drop for Submission {
    fn drop(&mut self) {
        let finished = self.open_choices == 0;
        if !finished {
            // The client went away, the handler was dropped or one prompt
            // failed: free every prompt's KV blocks now (a request the
            // engine already ended ignores its cancel).
            for &id in &self.ids {
                self.state.engine.cancel(id);
            }
            self.slot.release_all();
        }
        if self.ids.is_empty() {
            return;
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
            prompt_tokens: self.prompt_tokens,
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
    let queue: VecDeque<Event> = fmt.opening(sub.choices()).iter().map(data).collect();
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
                            chunk = st.fmt.with_usage(chunk, st.sub.usage());
                        }
                        st.queue.push_back(data(&chunk));
                    }
                }
                Progress::Done => {
                    if st.sub.opts.include_usage {
                        let chunk = st.fmt.usage(st.sub.usage());
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
