//! `POST /v1/completions`.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use talaria_engine::scheduler::SeqOutput;

use super::error::ApiError;
use super::generation::{admit, completion_logprobs, new_id, sse_response, tokenize_off_thread, usage_json, ChunkFormat, Submission};
use super::protocol::{
    build_request, check_completion_extras, check_model, check_prompt_chars, parse_body, CompletionRequest, PromptInput, COMPLETION_KEYS,
};
use super::state::{unix_now, SharedState};

pub async fn completions(State(st): State<SharedState>, body: Bytes) -> Response {
    handle(st, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn handle(st: SharedState, body: Bytes) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse_body(&body, COMPLETION_KEYS)?;
    check_model(&req.common.model, &st.model_name)?;
    check_completion_extras(&req)?;
    let slot = admit(&st, req.common.n)?;
    let prompt_ids = match req.prompt {
        None => return Err(ApiError::bad_param("prompt", "prompt is required")),
        Some(PromptInput::Text(s)) => encode(&st, s).await?,
        Some(PromptInput::Tokens(t)) => t,
        Some(PromptInput::Texts(mut v)) if v.len() == 1 => encode(&st, v.remove(0)).await?,
        Some(PromptInput::TokenLists(mut v)) if v.len() == 1 => v.remove(0),
        Some(_) => return Err(ApiError::bad_param("prompt", "exactly one prompt per request is supported")),
    };
    let (ereq, opts) =
        build_request(&req.common, prompt_ids, (req.common.max_tokens, "max_tokens"), req.logprobs, st.engine.limits(), &st.limits)?;
    let continuous = req.common.stream_options.as_ref().and_then(|o| o.continuous_usage_stats).unwrap_or(false);
    let sub = Submission::start(&st, ereq, opts, slot)?;
    let (id, created) = (new_id("cmpl"), unix_now());
    if sub.opts.stream {
        let n = sub.opts.n;
        let fmt = CompletionChunks { st: st.clone(), id, created, logprobs: sub.opts.logprobs.is_some(), offsets: vec![0; n] };
        return Ok(sse_response(sub, Box::new(fmt), continuous));
    }
    let (choices, sub) = sub.collect().await?;
    let choices: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let logprobs = if sub.opts.logprobs.is_some() { completion_logprobs(&st, &c.tokens, &mut 0) } else { Value::Null };
            json!({"index": i, "text": c.text, "logprobs": logprobs, "finish_reason": c.finish.map(|f| f.as_str())})
        })
        .collect();
    let usage = usage_json(sub.opts.prompt_tokens, sub.completion_tokens());
    Ok(Json(json!({"id": id, "object": "text_completion", "created": created, "model": st.model_name, "choices": choices, "usage": usage}))
        .into_response())
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

struct CompletionChunks {
    st: SharedState,
    id: String,
    created: u64,
    logprobs: bool,
    /// Text offset per choice, for `logprobs.text_offset`.
    offsets: Vec<usize>,
}

impl CompletionChunks {
    fn chunk(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": "text_completion", "created": self.created, "model": self.st.model_name, "choices": choices})
    }
}

impl ChunkFormat for CompletionChunks {
    fn opening(&mut self, _n: usize) -> Vec<Value> {
        Vec::new()
    }

    fn delta(&mut self, out: &SeqOutput) -> Option<Value> {
        let with_lp = self.logprobs && !out.tokens.is_empty();
        if out.text.is_empty() && out.finish.is_none() && !with_lp {
            return None;
        }
        let logprobs = match self.offsets.get_mut(out.index) {
            Some(off) if self.logprobs => completion_logprobs(&self.st, &out.tokens, off),
            _ => Value::Null,
        };
        let choice = json!({"index": out.index, "text": out.text, "logprobs": logprobs, "finish_reason": out.finish.map(|f| f.as_str())});
        Some(self.chunk(json!([choice])))
    }

    fn usage(&mut self, usage: Value) -> Value {
        let mut c = self.chunk(json!([]));
        c["usage"] = usage;
        c
    }
}
