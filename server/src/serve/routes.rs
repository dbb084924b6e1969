//! The router, and the small endpoints: models, health, metrics,
//! tokenize / detokenize.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::attestation::attestation;
use super::auth::require_api_key;
use super::body_timeout::read_body_in_time;
use super::chat::{chat_completions, chat_messages};
use super::completions::completions;
use super::error::ApiError;
use super::generation::tokenize_off_thread;
use super::protocol::{check_model, check_prompt_chars, parse_strict, MessageIn};
use super::state::SharedState;

/// The routes behind the edge middleware: the API key check (outermost, so
/// an unauthenticated client cannot even make the server buffer a body),
/// then the body read under its deadline and size cap.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/v1/attestation", get(attestation))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), read_body_in_time))
        .layer(from_fn_with_state(state.clone(), require_api_key))
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
    let text = st.metrics.render(&st.engine.stats());
    ([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response()
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
    let messages = match (&req.prompt, &req.messages) {
        (Some(_), None) => None,
        (None, Some(_)) => Some(chat_messages(&req.messages)?),
        _ => return Err(ApiError::bad_request("give exactly one of prompt or messages")),
    };
    // Rendering and encoding can take a second on a huge prompt: off the
    // async threads, with the same size cap as the generation routes.
    let (prompt, max_chars) = (req.prompt.clone(), st.limits.max_prompt_chars);
    let tokens = tokenize_off_thread(&st, move |tok| {
        let text = match messages {
            Some(m) => tok.chat_prompt(&m).map_err(|e| ApiError::bad_param("messages", e))?,
            None => prompt.unwrap_or_default(),
        };
        check_prompt_chars(&text, max_chars, "prompt")?;
        tok.encode(&text).map_err(|e| ApiError::bad_request(format!("cannot tokenize: {e}")))
    })
    .await?;
    Ok(Json(json!({"count": tokens.len(), "max_model_len": st.engine.limits().context_len, "tokens": tokens})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetokenizeRequest {
    #[serde(default)]
    model: Option<String>,
    tokens: Vec<u32>,
}

/// Decoding runs on the async thread: bounded so it stays short.
const MAX_DETOKENIZE_IDS: usize = 1 << 17;

async fn detokenize(State(st): State<SharedState>, body: Bytes) -> Result<Json<serde_json::Value>, ApiError> {
    let req: DetokenizeRequest = parse_strict(&body)?;
    check_model(&req.model, &st.model_name)?;
    if req.tokens.len() > MAX_DETOKENIZE_IDS {
        return Err(ApiError::bad_param("tokens", format!("at most {MAX_DETOKENIZE_IDS} token ids per request")));
    }
    let vocab = st.engine.limits().vocab_size;
    if let Some(id) = req.tokens.iter().find(|&&id| id as usize >= vocab) {
        return Err(ApiError::bad_param("tokens", format!("token id {id} is outside the vocabulary (size {vocab})")));
    }
    let text = st.tokenizer.decode(&req.tokens, false).map_err(|e| ApiError::bad_request(format!("cannot detokenize: {e}")))?;
    Ok(Json(json!({"prompt": text})))
}
