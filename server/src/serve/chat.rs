//! `POST /v1/chat/completions` (ChatML through the tokenizer's template).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use talaria_engine::scheduler::SeqOutput;
use talaria_models::ChatMessage;

use super::error::ApiError;
use super::generation::{admit, chat_logprobs, new_id, sse_response, tokenize_off_thread, ChunkFormat, Submission};
use super::protocol::{
    check_chat_extras, check_model, check_prompt_chars, message_text, parse_body, ChatRequest, MessageIn, RequestTemplate, CHAT_KEYS,
};
use super::state::{unix_now, SharedState};

pub async fn chat_completions(State(st): State<SharedState>, body: Bytes) -> Response {
    handle(st, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// The ChatML messages of a request (roles checked, text parts only).
pub fn chat_messages(messages: &Option<Vec<MessageIn>>) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(messages) = messages else {
        return Err(ApiError::bad_param("messages", "messages is required"));
    };
    if messages.is_empty() {
        return Err(ApiError::bad_param("messages", "messages must not be empty"));
    }
    messages
        .iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::bad_param(
                        "messages",
                        format!("unsupported message role {other:?} (system, developer, user, assistant)"),
                    ))
                }
            };
            Ok(ChatMessage::new(role, &message_text(m)?))
        })
        .collect()
}

async fn handle(st: SharedState, body: Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = parse_body(&body, CHAT_KEYS)?;
    check_model(&req.common.model, &st.model_name)?;
    check_chat_extras(&req)?;
    if req.chat_template.is_some() && !st.limits.trust_request_chat_template {
        return Err(ApiError::bad_param(
            "chat_template",
            "this server does not run templates sent by clients (start talaria-serve with --trust-request-chat-template to allow them)",
        ));
    }
    let messages = chat_messages(&req.messages)?;
    let (max_tokens, param) = match req.max_completion_tokens {
        Some(m) => (Some(m), "max_completion_tokens"),
        None => (req.common.max_tokens, "max_tokens"),
    };
    let top_n = req.top_logprobs.unwrap_or(0);
    let logprobs = (req.logprobs == Some(true)).then_some(top_n);
    let (template, opts) =
        RequestTemplate::new(&req.common, (max_tokens, param), logprobs, st.engine.limits(), &st.limits).map_err(rename_logprobs_param)?;
    let slot = admit(&st, opts.n)?;
    let max_chars = st.limits.max_prompt_chars;
    let (chat_template, add_generation_prompt) = (req.chat_template.clone(), req.add_generation_prompt.unwrap_or(true));
    let prompt_ids = tokenize_off_thread(&st, move |tokenizer| {
        // The rendered prompt is checked: many empty messages are short
        // in JSON but not once each gets its template's header.
        let param = if chat_template.is_some() { "chat_template" } else { "messages" };
        let prompt = tokenizer
            .chat_prompt_with(&messages, chat_template.as_deref(), add_generation_prompt)
            .map_err(|e| ApiError::bad_param(param, e))?;
        check_prompt_chars(&prompt, max_chars, "messages")?;
        tokenizer.encode(&prompt).map_err(|e| ApiError::bad_param("messages", format!("cannot tokenize the messages: {e}")))
    })
    .await?;
    let ereq = template.for_prompt(prompt_ids, st.engine.limits())?;
    let continuous = req.common.stream_options.as_ref().and_then(|o| o.continuous_usage_stats).unwrap_or(false);
    let sub = Submission::start(&st, vec![ereq], opts, slot)?;
    let (id, created) = (new_id("chatcmpl"), unix_now());
    if sub.opts.stream {
        let fmt = ChatChunks { st: st.clone(), id, created, logprobs };
        return Ok(sse_response(sub, Box::new(fmt), continuous));
    }
    let (choices, sub) = sub.collect().await?;
    let choices: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let lp = match logprobs {
                Some(k) => json!({"content": chat_logprobs(&st, &c.tokens, k)}),
                None => Value::Null,
            };
            json!({"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": lp, "finish_reason": c.finish.map(|f| f.as_str())})
        })
        .collect();
    Ok(Json(json!({"id": id, "object": "chat.completion", "created": created, "model": st.model_name, "choices": choices, "usage": sub.usage()}))
        .into_response())
}

/// Chat calls the per-token count `top_logprobs`.
fn rename_logprobs_param(mut e: ApiError) -> ApiError {
    if e.param.as_deref() == Some("logprobs") {
        e.param = Some("top_logprobs".into());
    }
    e
}

struct ChatChunks {
    st: SharedState,
    id: String,
    created: u64,
    logprobs: Option<usize>,
}

impl ChatChunks {
    fn chunk(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.st.model_name, "choices": choices})
    }
}

impl ChunkFormat for ChatChunks {
    fn opening(&mut self, n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| {
                self.chunk(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]))
            })
            .collect()
    }

    fn delta(&mut self, out: &SeqOutput) -> Option<Value> {
        let with_lp = self.logprobs.is_some() && !out.tokens.is_empty();
        if out.text.is_empty() && out.finish.is_none() && !with_lp {
            return None;
        }
        let lp = match self.logprobs {
            Some(k) if with_lp => json!({"content": chat_logprobs(&self.st, &out.tokens, k)}),
            _ => Value::Null,
        };
        let delta = if out.text.is_empty() { json!({}) } else { json!({"content": out.text}) };
        Some(self.chunk(json!([{"index": out.index, "delta": delta, "logprobs": lp, "finish_reason": out.finish.map(|f| f.as_str())}])))
    }

    fn usage(&mut self, usage: Value) -> Value {
        let mut c = self.chunk(json!([]));
        c["usage"] = usage;
        c
    }
}
