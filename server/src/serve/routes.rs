//! The router, and the small endpoints: models, health, metrics,
//! tokenize / detokenize.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::chat::{chat_completions, chat_messages};
use super::completions::completions;
use super::error::ApiError;
use super::protocol::{check_model, parse_strict, MessageIn};
use super::state::SharedState;

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

async fn models(State(st): State<SharedState>) -> Json<serde_json::Value> {
    let l = st.engine.limits();
    Json(json!({"object": "list", "data": [{
        "id": st.model_name, "object": "model", "created": st.started, "owned_by": "talaria",
        "root": st.model_name, "parent": null, "max_model_len": l.context_len,
    }]}))
}

/// 200 once requests are served at full speed; 503 while the pad pools
/// fill at start-up (requests are accepted meanwhile, only slower) or when
/// the engine has stopped.
async fn health(State(st): State<SharedState>) -> Response {
    let stats = st.engine.stats();
    if !stats.alive {
        ApiError::unavailable("the engine thread has stopped").into_response()
    } else if !stats.ready {
        ApiError::unavailable("warming up: the pad pools are filling").into_response()
    } else {
        StatusCode::OK.into_response()
    }
}

async fn metrics(State(st): State<SharedState>) -> Response {
    let text = st.metrics.render(&st.engine.stats(), &st.model_name);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<MessageIn>>,
    /// Accepted for vLLM compatibility; the chat template always ends with
    /// the assistant header.
    #[serde(default)]
    add_generation_prompt: Option<bool>,
    #[serde(default)]
    add_special_tokens: Option<bool>,
}

async fn tokenize(State(st): State<SharedState>, body: Bytes) -> Result<Json<serde_json::Value>, ApiError> {
    let req: TokenizeRequest = parse_strict(&body)?;
    check_model(&req.model, &st.model_name)?;
    let _ = (req.add_generation_prompt, req.add_special_tokens);
    let text = match (&req.prompt, &req.messages) {
        (Some(p), None) => p.clone(),
        (None, Some(_)) => st.tokenizer.apply_chat_template(&chat_messages(&req.messages)?),
        _ => return Err(ApiError::bad_request("give exactly one of prompt or messages")),
    };
    let tokens = st.tokenizer.encode(&text).map_err(|e| ApiError::bad_request(format!("cannot tokenize: {e}")))?;
    Ok(Json(json!({"count": tokens.len(), "max_model_len": st.engine.limits().context_len, "tokens": tokens})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    tokens: Vec<u32>,
}

async fn detokenize(State(st): State<SharedState>, body: Bytes) -> Result<Json<serde_json::Value>, ApiError> {
    let req: DetokenizeRequest = parse_strict(&body)?;
    check_model(&req.model, &st.model_name)?;
    let vocab = st.engine.limits().vocab_size;
    if let Some(id) = req.tokens.iter().find(|&&id| id as usize >= vocab) {
        return Err(ApiError::bad_param("tokens", format!("token id {id} is outside the vocabulary (size {vocab})")));
    }
    let text = st.tokenizer.decode(&req.tokens, false).map_err(|e| ApiError::bad_request(format!("cannot detokenize: {e}")))?;
    Ok(Json(json!({"prompt": text})))
}
