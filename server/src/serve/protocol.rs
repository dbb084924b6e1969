//! Request bodies of the generation endpoints, their validation, and their
//! mapping to an `EngineRequest`. Unknown fields are refused (as OpenAI
//! does) and a value of the wrong type names its field.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use talaria_engine::prefix_hash::CacheSalt;
use talaria_engine::scheduler::{EngineLimits, EngineRequest, RejectReason};
use talaria_engine::SamplingParams;

use super::error::ApiError;
use super::limits::{RequestLimits, MAX_CACHE_SALT_BYTES, MAX_LOGPROBS, MAX_N, MAX_STOP_TOKEN_IDS};

const COMMON_KEYS: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "stop",
    "stop_token_ids",
    "seed",
    "n",
    "ignore_eos",
    "presence_penalty",
    "frequency_penalty",
    "stream",
    "stream_options",
    "user",
    "logit_bias",
    "cache_salt",
    "repetition_penalty",
];
pub const COMPLETION_KEYS: &[&str] = &["prompt", "logprobs", "echo", "suffix", "best_of"];
pub const CHAT_KEYS: &[&str] = &[
    "messages",
    "chat_template",
    "add_generation_prompt",
    "max_completion_tokens",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "store",
    "metadata",
    "service_tier",
];

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct CommonFields {
    pub model: Option<String>,
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub stop: Option<StopInput>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub seed: Option<i64>,
    pub n: Option<usize>,
    pub ignore_eos: Option<bool>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub user: Option<String>,
    /// Token id (as a string, OpenAI's format) to the bias added to its logit.
    pub logit_bias: Option<HashMap<String, f32>>,
    /// vLLM's extra field (HF semantics); 1 means off.
    pub repetition_penalty: Option<f32>,
    /// vLLM's extra field: requests share cached prompt blocks only with
    /// requests of the same salt (`--prefix-caching`).
    pub cache_salt: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
    #[serde(default)]
    pub continuous_usage_stats: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum StopInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
    Texts(Vec<String>),
    TokenLists(Vec<Vec<u32>>),
}

/// One prompt of a completion request, as given.
#[derive(Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct CompletionRequest {
    #[serde(flatten)]
    pub common: CommonFields,
    pub prompt: Option<PromptInput>,
    pub logprobs: Option<usize>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub best_of: Option<usize>,
}

#[derive(Deserialize, Debug)]
pub struct MessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Option<ContentIn>,
    /// Accepted and ignored: ChatML has no participant names.
    #[serde(default, rename = "name")]
    _name: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum ContentIn {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Debug)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct ChatRequest {
    #[serde(flatten)]
    pub common: CommonFields,
    pub messages: Option<Vec<MessageIn>>,
    /// A Jinja template for this request instead of the model's (vLLM).
    pub chat_template: Option<String>,
    /// End the prompt with the assistant's header (default true, vLLM).
    pub add_generation_prompt: Option<bool>,
    pub max_completion_tokens: Option<usize>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<usize>,
    pub response_format: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub store: Option<bool>,
    pub metadata: Option<Value>,
    pub service_tier: Option<Value>,
}

/// Parses a request body: UTF-8, a JSON object, only `known` (plus the
/// common) fields, each of the right type.
pub fn parse_body<T: DeserializeOwned>(body: &[u8], known: &[&str]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    };
    for (key, v) in &obj {
        if !COMMON_KEYS.contains(&key.as_str()) && !known.contains(&key.as_str()) {
            return Err(ApiError::bad_param(key, format!("Unrecognized request argument supplied: {key}")));
        }
        // Checked one by one so the error names the field.
        let single = Value::Object([(key.clone(), v.clone())].into_iter().collect());
        if let Err(e) = serde_json::from_value::<T>(single) {
            return Err(ApiError::bad_param(key, format!("invalid value for `{key}`: {e}")));
        }
    }
    serde_json::from_value(Value::Object(obj)).map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// Parses a body into a type that lists its own fields (and refuses
/// others with `deny_unknown_fields`).
pub fn parse_strict<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid UTF-8: {e}")))?;
    serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// What the response needs to know besides the engine's events.
#[derive(Clone, Debug)]
pub struct ResponseOptions {
    pub stream: bool,
    pub include_usage: bool,
    pub n: usize,
    /// Top logprobs per token, when logprobs were asked for.
    pub logprobs: Option<usize>,
}

/// Checks the model name: absent or the served one.
pub fn check_model(requested: &Option<String>, served: &str) -> Result<(), ApiError> {
    match requested {
        Some(m) if m != served => Err(ApiError::model_not_found(m)),
        _ => Ok(()),
    }
}

/// Refuses a prompt longer than `max_chars` characters before it is
/// tokenized (`param` names the field).
pub fn check_prompt_chars(text: &str, max_chars: usize, param: &str) -> Result<(), ApiError> {
    // A character is at least one byte: most prompts pass without counting.
    if text.len() <= max_chars {
        return Ok(());
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(ApiError::bad_param(param, format!("the prompt has {chars} characters, more than this server's limit of {max_chars}")));
    }
    Ok(())
}

/// The stop strings of a request, within the server's caps (their number
/// and length bound the cost of matching them after every token).
fn stop_strings(stop: &Option<StopInput>, caps: &RequestLimits) -> Result<Vec<String>, ApiError> {
    let stops = match stop {
        None => Vec::new(),
        Some(StopInput::One(s)) => vec![s.clone()],
        Some(StopInput::Many(v)) => v.clone(),
    };
    if stops.len() > caps.max_stop_strings {
        return Err(ApiError::bad_param("stop", format!("at most {} stop strings, got {}", caps.max_stop_strings, stops.len())));
    }
    if let Some((i, s)) = stops.iter().enumerate().find(|(_, s)| s.len() > caps.max_stop_string_bytes) {
        return Err(ApiError::bad_param(
            "stop",
            format!("stop string {i} is {} bytes long, more than this server's limit of {} bytes", s.len(), caps.max_stop_string_bytes),
        ));
    }
    Ok(stops)
}

/// The prompts of a completion request: one, or a list of them (vLLM), at
/// most `max`.
pub fn prompt_list(input: Option<PromptInput>, max: usize) -> Result<Vec<Prompt>, ApiError> {
    let prompts: Vec<Prompt> = match input {
        None => return Err(ApiError::bad_param("prompt", "prompt is required")),
        Some(PromptInput::Text(s)) => vec![Prompt::Text(s)],
        Some(PromptInput::Tokens(t)) => vec![Prompt::Tokens(t)],
        Some(PromptInput::Texts(v)) => v.into_iter().map(Prompt::Text).collect(),
        Some(PromptInput::TokenLists(v)) => v.into_iter().map(Prompt::Tokens).collect(),
    };
    if prompts.is_empty() {
        return Err(ApiError::bad_param("prompt", "the list of prompts is empty"));
    }
    if prompts.len() > max {
        return Err(ApiError::bad_param(
            "prompt",
            format!("at most {max} prompts per request, got {} (--max-prompts-per-request)", prompts.len()),
        ));
    }
    Ok(prompts)
}

/// Names prompt `i` in an error about it, when the request has several.
pub fn about_prompt(mut e: ApiError, i: usize, prompts: usize) -> ApiError {
    if prompts > 1 {
        e.message = format!("prompt {i}: {}", e.message);
    }
    e
}

/// The `logit_bias` entries, sorted by token id, each key a token id of
/// the vocabulary (their number and values are `SamplingParams::validate`'s
/// to check).
fn logit_bias(bias: &Option<HashMap<String, f32>>, vocab_size: usize) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(bias) = bias else { return Ok(Vec::new()) };
    let mut entries = Vec::with_capacity(bias.len());
    for (key, &value) in bias {
        let id: u32 = key.parse().map_err(|_| ApiError::bad_param("logit_bias", format!("logit_bias key {key:?} is not a token id")))?;
        if id as usize >= vocab_size {
            return Err(ApiError::bad_param(
                "logit_bias",
                format!("logit_bias token id {id} is outside the vocabulary (size {vocab_size})"),
            ));
        }
        entries.push((id, value));
    }
    entries.sort_unstable_by_key(|&(id, _)| id);
    Ok(entries)
}

/// A request's settings, validated once before any prompt, then applied to
/// each of its prompts (`for_prompt`).
#[derive(Debug)]
pub struct RequestTemplate {
    params: SamplingParams,
    n: usize,
    /// As asked; `None`: the rest of the context, within the cap.
    max_tokens: Option<usize>,
    /// The endpoint's name for `max_tokens`, in errors.
    max_tokens_param: &'static str,
    max_tokens_cap: Option<usize>,
    stop_strings: Vec<String>,
    stop_token_ids: Vec<u32>,
    ignore_eos: bool,
    cache_salt: Option<CacheSalt>,
}

impl RequestTemplate {
    /// Validates the common fields. `max_tokens` is the endpoint's
    /// effective completion limit and its field's name; `logprobs` the top
    /// logprobs per token asked for; `caps` the server's per-request limits.
    pub fn new(
        c: &CommonFields,
        max_tokens: (Option<usize>, &'static str),
        logprobs: Option<usize>,
        limits: &EngineLimits,
        caps: &RequestLimits,
    ) -> Result<(Self, ResponseOptions), ApiError> {
        let (max_tokens, max_tokens_param) = max_tokens;
        match (max_tokens, caps.max_tokens_cap) {
            (Some(0), _) => return Err(ApiError::bad_param(max_tokens_param, format!("{max_tokens_param} must be at least 1"))),
            (Some(m), Some(cap)) if m > cap => {
                return Err(ApiError::bad_param(
                    max_tokens_param,
                    format!("{max_tokens_param} is {m}, more than this server's limit of {cap} tokens per completion"),
                ))
            }
            _ => {}
        }
        let n = c.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(ApiError::bad_param("n", format!("n must be between 1 and {MAX_N}, got {n}")));
        }
        if let Some(k) = logprobs.filter(|&k| k > MAX_LOGPROBS) {
            return Err(ApiError::bad_param("logprobs", format!("at most {MAX_LOGPROBS} logprobs per token, got {k}")));
        }
        let stream = c.stream.unwrap_or(false);
        if c.stream_options.is_some() && !stream {
            return Err(ApiError::bad_param("stream_options", "stream_options is only allowed when stream is true"));
        }
        let stop_strings = stop_strings(&c.stop, caps)?;
        let stop_token_ids = c.stop_token_ids.clone().unwrap_or_default();
        if stop_token_ids.len() > MAX_STOP_TOKEN_IDS {
            return Err(ApiError::bad_param(
                "stop_token_ids",
                format!("at most {MAX_STOP_TOKEN_IDS} stop token ids, got {}", stop_token_ids.len()),
            ));
        }
        let params = sampling_params(c, logprobs, limits)?;
        if let Some(s) = c.cache_salt.as_deref().filter(|s| s.is_empty() || s.len() > MAX_CACHE_SALT_BYTES) {
            return Err(ApiError::bad_param(
                "cache_salt",
                format!("cache_salt must be 1 to {MAX_CACHE_SALT_BYTES} bytes long, got {}", s.len()),
            ));
        }
        let include_usage = c.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
        let template = Self {
            params,
            n,
            max_tokens,
            max_tokens_param,
            max_tokens_cap: caps.max_tokens_cap,
            stop_strings,
            stop_token_ids,
            ignore_eos: c.ignore_eos.unwrap_or(false),
            cache_salt: caps.prefix_caching.salt_for(c.cache_salt.as_deref()),
        };
        Ok((template, ResponseOptions { stream, include_usage, n, logprobs }))
    }

    /// Also scores the prompt's tokens, with as many alternatives as the
    /// completion's (completions' `echo` with `logprobs`).
    pub fn with_prompt_logprobs(mut self) -> Self {
        self.params.prompt_logprobs = self.params.logprobs;
        self
    }

    /// The engine request for one tokenized prompt.
    pub fn for_prompt(&self, prompt_ids: Vec<u32>, limits: &EngineLimits) -> Result<EngineRequest, ApiError> {
        let prompt = prompt_ids.len();
        if prompt == 0 {
            return Err(ApiError::bad_param("prompt", "the prompt is empty"));
        }
        let context = limits.context_len.min(limits.kv_capacity_tokens);
        if prompt >= context {
            return Err(ApiError::bad_param(
                "prompt",
                format!("This model's maximum context length is {context} tokens. However, your prompt has {prompt} tokens, which leaves no room for a completion."),
            )
            .with_code("context_length_exceeded"));
        }
        let room = context - prompt;
        let max_tokens = self.max_tokens.unwrap_or_else(|| self.max_tokens_cap.map_or(room, |cap| cap.min(room)));
        let req = EngineRequest {
            prompt_ids,
            params: self.params.clone(),
            n: self.n,
            max_tokens,
            stop_strings: self.stop_strings.clone(),
            stop_token_ids: self.stop_token_ids.clone(),
            ignore_eos: self.ignore_eos,
            cache_salt: self.cache_salt,
        };
        limits.check(&req).map_err(|r| reject_to_error(&r, self.max_tokens_param))?;
        Ok(req)
    }
}

/// The sampling parameters of the common fields, validated (errors name
/// their field).
fn sampling_params(c: &CommonFields, logprobs: Option<usize>, limits: &EngineLimits) -> Result<SamplingParams, ApiError> {
    let top_k = match c.top_k {
        None | Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => k as usize,
        Some(k) => return Err(ApiError::bad_param("top_k", format!("top_k must be -1 (off) or positive, got {k}"))),
    };
    let params = SamplingParams {
        temperature: c.temperature.unwrap_or(1.0),
        top_k,
        top_p: c.top_p.unwrap_or(1.0),
        min_p: c.min_p.unwrap_or(0.0),
        presence_penalty: c.presence_penalty.unwrap_or(0.0),
        frequency_penalty: c.frequency_penalty.unwrap_or(0.0),
        seed: c.seed.map(|s| s as u64),
        logprobs,
        prompt_logprobs: None,
        logit_bias: logit_bias(&c.logit_bias, limits.vocab_size)?,
        repetition_penalty: c.repetition_penalty.unwrap_or(1.0),
    };
    if let Err(msg) = params.validate() {
        // Each message starts with the field it is about.
        let param = msg.split_whitespace().next().unwrap_or("").to_string();
        return Err(ApiError::bad_param(&param, msg));
    }
    Ok(params)
}

/// The 400 for a request the engine refuses.
pub fn reject_to_error(r: &RejectReason, max_tokens_param: &str) -> ApiError {
    let param = match r {
        RejectReason::EmptyPrompt | RejectReason::BadToken { .. } => "prompt",
        RejectReason::ZeroN => "n",
        RejectReason::ZeroMaxTokens | RejectReason::ExceedsKvCache { .. } => max_tokens_param,
        RejectReason::TooLong { .. } => return ApiError::bad_param(max_tokens_param, r.to_string()).with_code("context_length_exceeded"),
        RejectReason::BadParams(_) => "",
        RejectReason::ShuttingDown => return ApiError::unavailable(r.to_string()),
    };
    if param.is_empty() {
        ApiError::bad_request(r.to_string())
    } else {
        ApiError::bad_param(param, r.to_string())
    }
}

/// The text of a chat message's content (plain text parts only).
pub fn message_text(m: &MessageIn) -> Result<String, ApiError> {
    match &m.content {
        None => Ok(String::new()),
        Some(ContentIn::Text(t)) => Ok(t.clone()),
        Some(ContentIn::Parts(parts)) => {
            let mut s = String::new();
            for p in parts {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => s.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::bad_param(
                            "messages",
                            format!("content parts of type {kind:?} are not supported (text only)"),
                        ))
                    }
                }
            }
            Ok(s)
        }
    }
}

/// Checks the chat-only fields that change behaviour and that we do not
/// support.
pub fn check_chat_extras(r: &ChatRequest) -> Result<(), ApiError> {
    if r.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_param("tools", "tool calling is not supported"));
    }
    match &r.tool_choice {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "none" || s == "auto" => {}
        Some(_) => return Err(ApiError::bad_param("tool_choice", "tool calling is not supported")),
    }
    if let Some(f) = &r.response_format {
        if f.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::bad_param("response_format", "only response_format {\"type\": \"text\"} is supported"));
        }
    }
    if r.top_logprobs.is_some() && r.logprobs != Some(true) {
        return Err(ApiError::bad_param("top_logprobs", "top_logprobs requires logprobs to be true"));
    }
    if r.max_tokens_conflict() {
        return Err(ApiError::bad_param(
            "max_completion_tokens",
            "give max_tokens or max_completion_tokens, not both with different values",
        ));
    }
    Ok(())
}

impl ChatRequest {
    fn max_tokens_conflict(&self) -> bool {
        matches!((self.common.max_tokens, self.max_completion_tokens), (Some(a), Some(b)) if a != b)
    }
}

/// Checks the completion-only fields that change behaviour and that we do
/// not support.
pub fn check_completion_extras(r: &CompletionRequest) -> Result<(), ApiError> {
    if r.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_param("suffix", "suffix is not supported"));
    }
    if let Some(b) = r.best_of {
        if b != r.common.n.unwrap_or(1) {
            return Err(ApiError::bad_param("best_of", "best_of other than n is not supported"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> EngineLimits {
        EngineLimits { context_len: 100, kv_capacity_tokens: 1000, vocab_size: 50 }
    }

    /// The server's caps as the flags `extra` set them.
    fn caps(extra: &[&str]) -> RequestLimits {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            limits: RequestLimits,
        }
        <Flags as clap::Parser>::parse_from(std::iter::once("talaria-serve").chain(extra.iter().copied())).limits
    }

    fn with_stop(stop: StopInput) -> CommonFields {
        CommonFields { stop: Some(stop), ..Default::default() }
    }

    /// The engine request for one prompt, as the endpoints build it.
    fn build_request(
        c: &CommonFields,
        prompt_ids: Vec<u32>,
        max_tokens: (Option<usize>, &'static str),
        logprobs: Option<usize>,
        limits: &EngineLimits,
        caps: &RequestLimits,
    ) -> Result<(EngineRequest, ResponseOptions), ApiError> {
        let (template, opts) = RequestTemplate::new(c, max_tokens, logprobs, limits, caps)?;
        Ok((template.for_prompt(prompt_ids, limits)?, opts))
    }

    fn build(c: &CommonFields, caps: &RequestLimits) -> Result<EngineRequest, ApiError> {
        build_request(c, vec![1; 10], (c.max_tokens, "max_tokens"), None, &limits(), caps).map(|(r, _)| r)
    }

    #[test]
    fn stop_strings_are_capped_in_number_and_length() {
        let defaults = caps(&[]);
        assert_eq!((defaults.max_stop_strings, defaults.max_stop_string_bytes), (16, 1024));
        let sixteen = with_stop(StopInput::Many(vec!["x".repeat(1024); 16]));
        assert_eq!(build(&sixteen, &defaults).unwrap().stop_strings.len(), 16, "at the caps is fine");
        let seventeen = with_stop(StopInput::Many(vec!["x".into(); 17]));
        let e = build(&seventeen, &defaults).unwrap_err();
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("stop")));
        // 16 stop strings of 128 KB (the hostile case), and one too long alone.
        let huge = with_stop(StopInput::Many(vec!["y".repeat(128 << 10); 16]));
        let e = build(&huge, &defaults).unwrap_err();
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("stop")));
        assert!(e.message.contains("1024 bytes"), "{}", e.message);
        let e = build(&with_stop(StopInput::One("é".repeat(513))), &defaults).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stop"), "the limit is in bytes, not characters");
        let tight = caps(&["--max-stop-strings", "2", "--max-stop-string-bytes", "4"]);
        assert!(build(&with_stop(StopInput::Many(vec!["abcd".into(), "ef".into()])), &tight).is_ok());
        assert_eq!(build(&with_stop(StopInput::Many(vec!["a".into(); 3])), &tight).unwrap_err().param.as_deref(), Some("stop"));
        assert_eq!(build(&with_stop(StopInput::One("abcde".into())), &tight).unwrap_err().param.as_deref(), Some("stop"));
        let ids = CommonFields { stop_token_ids: Some(vec![1; MAX_STOP_TOKEN_IDS + 1]), ..Default::default() };
        assert_eq!(build(&ids, &defaults).unwrap_err().param.as_deref(), Some("stop_token_ids"));
    }

    #[test]
    fn max_tokens_cap_refuses_above_and_bounds_the_default() {
        let capped = caps(&["--max-tokens-cap", "8"]);
        let c = CommonFields { max_tokens: Some(9), ..Default::default() };
        let e = build(&c, &capped).unwrap_err();
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("max_tokens")));
        let e = build_request(&c, vec![1; 10], (Some(9), "max_completion_tokens"), None, &limits(), &capped).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_completion_tokens"), "chat's field is named");
        let c = CommonFields { max_tokens: Some(8), ..Default::default() };
        assert_eq!(build(&c, &capped).unwrap().max_tokens, 8);
        assert_eq!(build(&CommonFields::default(), &capped).unwrap().max_tokens, 8, "the cap is the default");
        let near_end = build_request(&CommonFields::default(), vec![1; 95], (None, "max_tokens"), None, &limits(), &capped).unwrap();
        assert_eq!(near_end.0.max_tokens, 5, "the context still bounds the default");
        assert_eq!(build(&CommonFields::default(), &caps(&[])).unwrap().max_tokens, 90, "no cap: the rest of the context");
    }

    #[test]
    fn prompt_length_is_capped_in_characters() {
        let defaults = caps(&[]);
        assert_eq!(defaults.max_prompt_chars, 1 << 20);
        assert!(check_prompt_chars(&"a".repeat(1 << 20), defaults.max_prompt_chars, "prompt").is_ok());
        let e = check_prompt_chars(&"a".repeat((1 << 20) + 1), defaults.max_prompt_chars, "prompt").unwrap_err();
        assert_eq!((e.status.as_u16(), e.param.as_deref()), (400, Some("prompt")));
        // Three bytes each but one character: within a limit of 4.
        assert!(check_prompt_chars("€€€€", 4, "messages").is_ok());
        assert_eq!(check_prompt_chars("€€€€€", 4, "messages").unwrap_err().param.as_deref(), Some("messages"));
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let e = parse_body::<CompletionRequest>(br#"{"prompt": "hi", "bogus": 1}"#, COMPLETION_KEYS).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("bogus"));
        let e = parse_body::<CompletionRequest>(br#"{"prompt": "hi", "temperature": "hot"}"#, COMPLETION_KEYS).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = parse_body::<ChatRequest>(br#"{"messages": [], "n": -1}"#, CHAT_KEYS).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
        assert!(parse_body::<CompletionRequest>(b"{\"prompt\": \"\xff\"}", COMPLETION_KEYS).unwrap_err().message.contains("UTF-8"));
        assert!(parse_body::<CompletionRequest>(b"{\"prompt\": ", COMPLETION_KEYS).unwrap_err().message.contains("JSON"));
        let ok = parse_body::<CompletionRequest>(
            br#"{"prompt": [1, 2], "stop": "x", "max_tokens": 3, "stream_options": null}"#,
            COMPLETION_KEYS,
        )
        .unwrap();
        assert!(matches!(ok.prompt, Some(PromptInput::Tokens(ref t)) if t == &[1, 2]));
        assert!(matches!(ok.common.stop, Some(StopInput::One(ref s)) if s == "x"));
    }

    #[test]
    fn limits_map_to_the_right_fields() {
        let c = CommonFields { max_tokens: Some(95), ..Default::default() };
        let e = build_request(&c, vec![1; 10], (c.max_tokens, "max_tokens"), None, &limits(), &caps(&[])).unwrap_err();
        assert_eq!((e.param.as_deref(), e.code.as_deref()), (Some("max_tokens"), Some("context_length_exceeded")));
        let e = build_request(&CommonFields::default(), vec![1; 100], (None, "max_tokens"), None, &limits(), &caps(&[])).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
        let c = CommonFields { n: Some(MAX_N + 1), ..Default::default() };
        assert_eq!(build_request(&c, vec![1], (None, "max_tokens"), None, &limits(), &caps(&[])).unwrap_err().param.as_deref(), Some("n"));
        let c = CommonFields { temperature: Some(-1.0), ..Default::default() };
        assert_eq!(
            build_request(&c, vec![1], (None, "max_tokens"), None, &limits(), &caps(&[])).unwrap_err().param.as_deref(),
            Some("temperature")
        );
        let (req, opts) =
            build_request(&CommonFields::default(), vec![1; 10], (None, "max_tokens"), Some(2), &limits(), &caps(&[])).unwrap();
        assert_eq!((req.max_tokens, req.n, opts.logprobs), (90, 1, Some(2)));
        assert_eq!(req.params.temperature, 1.0, "OpenAI's default temperature");
    }

    fn param_of(r: Result<EngineRequest, ApiError>) -> Option<String> {
        r.unwrap_err().param
    }

    #[test]
    fn logit_bias_is_parsed_sorted_and_checked() {
        use talaria_engine::sampling::MAX_LOGIT_BIAS;
        let bias = |pairs: &[(&str, f32)]| CommonFields {
            logit_bias: Some(pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()),
            ..Default::default()
        };
        let req = build(&bias(&[("7", -100.0), ("3", 100.0)]), &caps(&[])).unwrap();
        assert_eq!(req.params.logit_bias, vec![(3, 100.0), (7, -100.0)]);
        assert!(build(&CommonFields::default(), &caps(&[])).unwrap().params.logit_bias.is_empty());
        // Vocabulary of 50 in these tests.
        for bad in [&[("50", 1.0)][..], &[("-1", 1.0)], &[("x", 1.0)], &[("1", 100.5)], &[("1", -101.0)]] {
            assert_eq!(param_of(build(&bias(bad), &caps(&[]))).as_deref(), Some("logit_bias"), "{bad:?}");
        }
        let many: Vec<(String, f32)> = (0..=MAX_LOGIT_BIAS).map(|i| (i.to_string(), 1.0)).collect();
        let c = CommonFields { logit_bias: Some(many.into_iter().collect()), ..Default::default() };
        let big_vocab = EngineLimits { vocab_size: 2 * MAX_LOGIT_BIAS, ..limits() };
        let e = build_request(&c, vec![1], (None, "max_tokens"), None, &big_vocab, &caps(&[])).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logit_bias"));
        assert!(e.message.contains("at most 1024"), "{}", e.message);
    }

    #[test]
    fn repetition_penalty_defaults_to_off_and_must_be_positive() {
        assert_eq!(build(&CommonFields::default(), &caps(&[])).unwrap().params.repetition_penalty, 1.0);
        let with = |r: f32| CommonFields { repetition_penalty: Some(r), ..Default::default() };
        assert_eq!(build(&with(1.3), &caps(&[])).unwrap().params.repetition_penalty, 1.3);
        for bad in [0.0, -0.5] {
            assert_eq!(param_of(build(&with(bad), &caps(&[]))).as_deref(), Some("repetition_penalty"));
        }
        let body = br#"{"prompt": "hi", "repetition_penalty": 1.1, "logit_bias": {"5": -3}}"#;
        let r = parse_body::<CompletionRequest>(body, COMPLETION_KEYS).unwrap();
        assert_eq!((r.common.repetition_penalty, r.common.logit_bias.unwrap()["5"]), (Some(1.1), -3.0));
        let e = parse_body::<ChatRequest>(br#"{"messages": [], "repetition_penalty": "high"}"#, CHAT_KEYS).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("repetition_penalty"));
        let e = parse_body::<ChatRequest>(br#"{"messages": [], "logit_bias": {"5": "up"}}"#, CHAT_KEYS).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("logit_bias"));
    }

    #[test]
    fn prompts_come_as_one_or_a_list_within_the_cap() {
        let parse = |body: &str| parse_body::<CompletionRequest>(body.as_bytes(), COMPLETION_KEYS).unwrap().prompt;
        let text = |s: &str| Prompt::Text(s.into());
        assert_eq!(prompt_list(parse(r#"{"prompt": "a"}"#), 2).unwrap(), vec![text("a")]);
        assert_eq!(prompt_list(parse(r#"{"prompt": ["a", "b"]}"#), 2).unwrap(), vec![text("a"), text("b")]);
        assert_eq!(prompt_list(parse(r#"{"prompt": [1, 2]}"#), 2).unwrap(), vec![Prompt::Tokens(vec![1, 2])]);
        assert_eq!(
            prompt_list(parse(r#"{"prompt": [[1], [2, 3]]}"#), 2).unwrap(),
            vec![Prompt::Tokens(vec![1]), Prompt::Tokens(vec![2, 3])]
        );
        let e = prompt_list(parse(r#"{"prompt": ["a", "b", "c"]}"#), 2).unwrap_err();
        assert_eq!((e.param.as_deref(), e.message.contains("at most 2 prompts")), (Some("prompt"), true), "{}", e.message);
        assert_eq!(prompt_list(None, 2).unwrap_err().param.as_deref(), Some("prompt"));
        assert_eq!(caps(&[]).max_prompts_per_request, 64);
        // Errors about one of several prompts say which.
        let (template, _) = RequestTemplate::new(&CommonFields::default(), (None, "max_tokens"), None, &limits(), &caps(&[])).unwrap();
        let e = about_prompt(template.for_prompt(vec![1; 100], &limits()).unwrap_err(), 1, 2);
        assert_eq!(e.param.as_deref(), Some("prompt"));
        assert!(e.message.starts_with("prompt 1: "), "{}", e.message);
        assert!(!about_prompt(ApiError::bad_param("prompt", "x"), 0, 1).message.contains("prompt 0"));
    }

    #[test]
    fn a_request_is_cached_under_its_own_salt_only() {
        let build = |salt: Option<&str>, flags: &[&str]| {
            let c = CommonFields { cache_salt: salt.map(str::to_string), ..Default::default() };
            RequestTemplate::new(&c, (None, "max_tokens"), None, &limits(), &caps(flags)).map(|(t, _)| t.for_prompt(vec![1; 4], &limits()))
        };
        let salt_of = |salt, flags| build(salt, flags).unwrap().unwrap().cache_salt;
        assert_eq!(salt_of(None, &[]), None, "salted (the default): no salt, no caching");
        assert!(salt_of(Some("alice"), &[]).is_some());
        assert_ne!(salt_of(Some("alice"), &[]), salt_of(Some("bob"), &[]));
        assert_eq!(salt_of(Some("alice"), &[]), salt_of(Some("alice"), &["--prefix-caching", "shared"]));
        let shared = salt_of(None, &["--prefix-caching", "shared"]);
        assert!(shared.is_some());
        assert_ne!(shared, salt_of(Some("shared"), &[]), "no request salt reaches the shared cache");
        assert_eq!(salt_of(Some("alice"), &["--prefix-caching", "off"]), None);
        for bad in [String::new(), "x".repeat(MAX_CACHE_SALT_BYTES + 1)] {
            assert_eq!(build(Some(&bad), &[]).unwrap_err().param.as_deref(), Some("cache_salt"));
        }
    }

    #[test]
    fn echo_with_logprobs_asks_for_the_prompt_logprobs() {
        let (template, _) = RequestTemplate::new(&CommonFields::default(), (None, "max_tokens"), Some(3), &limits(), &caps(&[])).unwrap();
        assert_eq!(template.for_prompt(vec![1; 4], &limits()).unwrap().params.prompt_logprobs, None, "only when asked");
        let req = template.with_prompt_logprobs().for_prompt(vec![1; 4], &limits()).unwrap();
        assert_eq!((req.params.logprobs, req.params.prompt_logprobs), (Some(3), Some(3)));
        let echo = parse_body::<CompletionRequest>(br#"{"prompt": "hi", "echo": true}"#, COMPLETION_KEYS).unwrap();
        assert!(check_completion_extras(&echo).is_ok());
    }
}
