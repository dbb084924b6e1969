//! `POST /v1/completions`: one prompt or a list of them (vLLM), each with
//! `n` choices, optionally echoing the prompt (with its logprobs).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use talaria_engine::scheduler::{EngineRequest, SeqOutput};
use talaria_engine::SampledToken;

use super::error::ApiError;
use super::generation::{admit, new_id, sse_response, token_text, tokenize_off_thread, ChunkFormat, Submission};
use super::protocol::{
    about_prompt, check_completion_extras, check_model, check_prompt_chars, parse_body, prompt_list, CompletionRequest, Prompt,
    RequestTemplate, COMPLETION_KEYS,
};
use super::state::{unix_now, SharedState};

pub async fn completions(State(st): State<SharedState>, body: Bytes) -> Response {
    handle(st, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn handle(st: SharedState, body: Bytes) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse_body(&body, COMPLETION_KEYS)?;
    check_model(&req.common.model, &st.model_name)?;
    check_completion_extras(&req)?;
    let prompts = prompt_list(req.prompt, st.limits.max_prompts_per_request)?;
    let echo = req.echo == Some(true);
    let (mut template, opts) =
        RequestTemplate::new(&req.common, (req.common.max_tokens, "max_tokens"), req.logprobs, st.engine.limits(), &st.limits)?;
    if echo && req.logprobs.is_some() {
        template = template.with_prompt_logprobs();
    }
    let slot = admit(&st, prompts.len() * opts.n)?;
    let (reqs, echoes) = engine_requests(&st, prompts, &template, echo).await?;
    let continuous = req.common.stream_options.as_ref().and_then(|o| o.continuous_usage_stats).unwrap_or(false);
    let sub = Submission::start(&st, reqs, opts, slot)?;
    let texts = ChoiceTexts { st: st.clone(), n: sub.opts.n, logprobs: sub.opts.logprobs.is_some(), echoes };
    let (id, created) = (new_id("cmpl"), unix_now());
    if sub.opts.stream {
        let offsets = vec![None; sub.choices()];
        return Ok(sse_response(sub, Box::new(CompletionChunks { texts, id, created, offsets }), continuous));
    }
    let (choices, sub) = sub.collect().await?;
    let choices: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (text, logprobs) = texts.piece(i, &mut None, &c.text, &c.tokens, c.prompt_logprobs.as_deref());
            json!({"index": i, "text": text, "logprobs": logprobs, "finish_reason": c.finish.map(|f| f.as_str())})
        })
        .collect();
    Ok(Json(json!({"id": id, "object": "text_completion", "created": created, "model": st.model_name, "choices": choices, "usage": sub.usage()}))
        .into_response())
}

/// The engine request of every prompt (and, with `echo`, what each echoes),
/// all checked before any is submitted; an error names its prompt.
async fn engine_requests(
    st: &SharedState,
    prompts: Vec<Prompt>,
    template: &RequestTemplate,
    echo: bool,
) -> Result<(Vec<EngineRequest>, Vec<Echo>), ApiError> {
    let count = prompts.len();
    let mut reqs = Vec::with_capacity(count);
    let mut echoes = Vec::new();
    for (i, prompt) in prompts.into_iter().enumerate() {
        let (ids, given) = match prompt {
            Prompt::Text(s) => {
                let given = echo.then(|| s.clone());
                (encode(st, s).await.map_err(|e| about_prompt(e, i, count))?, given)
            }
            Prompt::Tokens(t) => (t, None),
        };
        let req = template.for_prompt(ids, st.engine.limits()).map_err(|e| about_prompt(e, i, count))?;
        if echo {
            echoes.push(Echo::new(st, given, &req.prompt_ids));
        }
        reqs.push(req);
    }
    Ok((reqs, echoes))
}

/// Tokenizes a text prompt (size checked first) off the async threads.
async fn encode(st: &SharedState, prompt: String) -> Result<Vec<u32>, ApiError> {
    let max_chars = st.limits.max_prompt_chars;
    tokenize_off_thread(st, move |tokenizer| {
        check_prompt_chars(&prompt, max_chars, "prompt")?;
        tokenizer.encode(&prompt).map_err(|e| ApiError::bad_param("prompt", format!("cannot tokenize the prompt: {e}")))
    })
    .await
}

/// What `echo` puts before each choice of one prompt.
struct Echo {
    /// The prompt as given, or its tokens decoded.
    text: String,
    ids: Vec<u32>,
}

impl Echo {
    fn new(st: &SharedState, given: Option<String>, ids: &[u32]) -> Self {
        let text = given.unwrap_or_else(|| st.tokenizer.decode(ids, false).unwrap_or_default());
        Self { text, ids: ids.to_vec() }
    }
}

/// Completions-style logprobs of a choice (or of a streamed piece of it):
/// parallel lists, `null` where there is no value (the first prompt token,
/// which nothing predicts).
#[derive(Serialize, Default, Debug)]
struct CompletionLogprobs {
    tokens: Vec<String>,
    token_logprobs: Vec<Option<f32>>,
    top_logprobs: Vec<Option<Map<String, Value>>>,
    text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// Token `id` at text offset `offset` (advanced past it), with its
    /// score when there is one; its alternatives include itself, as OpenAI's.
    fn push(&mut self, st: &SharedState, id: u32, scored: Option<&SampledToken>, offset: &mut usize) {
        let text = token_text(st, id);
        self.text_offset.push(*offset);
        *offset += text.len();
        self.token_logprobs.push(scored.map(|t| t.logprob));
        self.top_logprobs.push(scored.map(|t| {
            let mut top: Map<String, Value> = t.top_logprobs.iter().map(|&(alt, lp)| (token_text(st, alt), json!(lp))).collect();
            top.entry(text.clone()).or_insert(json!(t.logprob));
            top
        }));
        self.tokens.push(text);
    }

    /// The echoed prompt: `scored[k]` is prompt token `k + 1` (see `SeqOutput`).
    fn push_prompt(&mut self, st: &SharedState, ids: &[u32], scored: Option<&[SampledToken]>, offset: &mut usize) {
        for (k, &id) in ids.iter().enumerate() {
            let score = k.checked_sub(1).and_then(|prev| scored.and_then(|s| s.get(prev)));
            self.push(st, id, score, offset);
        }
    }

    fn push_sampled(&mut self, st: &SharedState, tokens: &[SampledToken], offset: &mut usize) {
        for t in tokens {
            self.push(st, t.id, Some(t), offset);
        }
    }
}

/// How a completion's choices read: `n` per prompt, each after its
/// prompt's echo when asked for.
struct ChoiceTexts {
    st: SharedState,
    n: usize,
    logprobs: bool,
    /// One per prompt with `echo`; empty without.
    echoes: Vec<Echo>,
}

impl ChoiceTexts {
    /// The `text` and `logprobs` of choice `index`'s next piece. `offset`
    /// is the choice's text offset so far, `None` before its first piece,
    /// which starts with the echo.
    fn piece(
        &self,
        index: usize,
        offset: &mut Option<usize>,
        text: &str,
        tokens: &[SampledToken],
        prompt_scores: Option<&[SampledToken]>,
    ) -> (String, Option<CompletionLogprobs>) {
        let echo = if offset.is_none() { self.echoes.get(index / self.n) } else { None };
        let at = offset.get_or_insert(0);
        let mut logprobs = self.logprobs.then(CompletionLogprobs::default);
        let mut out = String::new();
        if let Some(e) = echo {
            out.push_str(&e.text);
            if let Some(lp) = &mut logprobs {
                lp.push_prompt(&self.st, &e.ids, prompt_scores, at);
            }
        }
        out.push_str(text);
        if let Some(lp) = &mut logprobs {
            lp.push_sampled(&self.st, tokens, at);
        }
        (out, logprobs)
    }
}

struct CompletionChunks {
    texts: ChoiceTexts,
    id: String,
    created: u64,
    /// Per choice: its text offset so far, `None` before its first chunk.
    offsets: Vec<Option<usize>>,
}

impl CompletionChunks {
    fn chunk(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": "text_completion", "created": self.created, "model": self.texts.st.model_name, "choices": choices})
    }
}

impl ChunkFormat for CompletionChunks {
    fn opening(&mut self, _n: usize) -> Vec<Value> {
        Vec::new()
    }

    fn delta(&mut self, out: &SeqOutput) -> Option<Value> {
        let offset = self.offsets.get_mut(out.index)?;
        let echoing = offset.is_none() && !self.texts.echoes.is_empty();
        let with_lp = self.texts.logprobs && !out.tokens.is_empty();
        if out.text.is_empty() && out.finish.is_none() && !with_lp && !echoing {
            return None;
        }
        let (text, logprobs) = self.texts.piece(out.index, offset, &out.text, &out.tokens, out.prompt_logprobs.as_deref());
        let choice = json!({"index": out.index, "text": text, "logprobs": logprobs, "finish_reason": out.finish.map(|f| f.as_str())});
        Some(self.chunk(json!([choice])))
    }

    fn usage(&mut self, usage: Value) -> Value {
        let mut c = self.chunk(json!([]));
        c["usage"] = usage;
        c
    }
}
